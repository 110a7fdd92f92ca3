"""runtime sessions: preview launches (an admin trying a SCO: no enrollment, no events)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runtime_sessions") as batch:
        batch.add_column(sa.Column("preview", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("runtime_sessions") as batch:
        batch.drop_column("preview")
