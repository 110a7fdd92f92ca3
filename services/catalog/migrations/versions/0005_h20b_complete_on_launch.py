"""activities.complete_on_launch: whether a scorm activity launching an untracked item (an asset) completes its
attempt at launch (issue 20; null = the default, yes)

Revision ID: 0005_h20b_complete_on_launch
Revises: 0004_h18b_course_team
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_h20b_complete_on_launch"
down_revision = "0004_h18b_course_team"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("activities", sa.Column("complete_on_launch", sa.Boolean, nullable=True))


def downgrade() -> None:
    op.drop_column("activities", "complete_on_launch")
