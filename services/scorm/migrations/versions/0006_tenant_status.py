"""tenant status: the tenants read model (tenant.updated), so a suspended tenant's runtime tokens end

Revision ID: 0006
Revises: 0005_idempotency
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005_idempotency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A tenant no tenant.updated told us about is active (only an active tenant can launch).
    op.create_table(
        "tenants",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tenants")
