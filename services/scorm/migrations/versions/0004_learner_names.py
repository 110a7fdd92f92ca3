"""learner names: the users read model (user.upserted) and the name each launch started with

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Launches made before this migration keep the empty name they were started with.
    with op.batch_alter_table("runtime_sessions") as batch:
        batch.add_column(sa.Column("learner_name", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("runtime_sessions") as batch:
        batch.drop_column("learner_name")
    op.drop_table("users")
