"""complete_on_launch of an activity (issue 20): kept with the published activities (course_activities) and with
each launch (runtime_sessions), so an untracked item's attempt completes at launch only when the author wants it

Revision ID: 0009_h20b_complete_on_launch
Revises: 0008_h20_versions
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_h20b_complete_on_launch"
down_revision = "0008_h20_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("course_activities", sa.Column("complete_on_launch", sa.Boolean, nullable=True))
    op.add_column("runtime_sessions", sa.Column("complete_on_launch", sa.Boolean, nullable=False,
                                                server_default=sa.true()))


def downgrade() -> None:
    op.drop_column("runtime_sessions", "complete_on_launch")
    op.drop_column("course_activities", "complete_on_launch")
