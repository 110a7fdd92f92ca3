"""idempotency_records: Idempotency-Key on this service's writes (shared/idempotency.py)

Revision ID: 0003_idempotency
Revises: 0002
"""

from alembic import op

from shared.idempotency import create_idempotency_table, drop_idempotency_table

revision = "0003_idempotency"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_idempotency_table(op)


def downgrade() -> None:
    drop_idempotency_table(op)
