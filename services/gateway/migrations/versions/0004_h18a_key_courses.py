"""api_keys.course_ids: per-course API keys (ADR 0019)

Revision ID: 0004_h18a_key_courses
Revises: 0003_idempotency
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_h18a_key_courses"
down_revision = "0003_idempotency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: the key reaches every course of its tenant (every key made before this revision).
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("course_ids", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("course_ids")
