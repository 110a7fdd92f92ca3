"""idempotency_records: Idempotency-Key on this service's writes (shared/idempotency.py)

Revision ID: 0005_idempotency
Revises: 0004
"""

from alembic import op

from shared.idempotency import create_idempotency_table, drop_idempotency_table

revision = "0005_idempotency"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_idempotency_table(op)


def downgrade() -> None:
    drop_idempotency_table(op)
