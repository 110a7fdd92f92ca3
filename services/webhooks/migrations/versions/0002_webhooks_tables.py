"""endpoints, messages (the delivery table), attempts (the delivery log)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("tenant_slug", sa.String(63), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("event_types", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("previous_secret", sa.String(100)),
        sa.Column("previous_secret_until", Timestamp),
        sa.Column("failing_since", Timestamp),
        sa.Column("disabled_reason", sa.String(200)),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("ix_endpoints_tenant", "endpoints", ["tenant_id", "id"])
    op.create_table(
        "messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("endpoint_id", sa.BigInteger, sa.ForeignKey("endpoints.id", ondelete="CASCADE"), nullable=False),
        sa.Column("webhook_id", sa.String(100), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", Timestamp),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_attempt_at", Timestamp),
        sa.Column("delivered_at", Timestamp),
        sa.UniqueConstraint("endpoint_id", "webhook_id", name="uq_messages_endpoint_webhook_id"),
    )
    op.create_index("ix_messages_due", "messages", ["status", "next_attempt_at"])
    op.create_index("ix_messages_endpoint", "messages", ["endpoint_id", "id"])
    op.create_table(
        "attempts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.BigInteger, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
        sa.Column("endpoint_id", sa.BigInteger, nullable=False),
        sa.Column("attempted_at", Timestamp, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.String(300)),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("response", sa.Text),
    )
    op.create_index("ix_attempts_message", "attempts", ["message_id", "id"])
    op.create_index("ix_attempts_time", "attempts", ["attempted_at"])


def downgrade() -> None:
    op.drop_table("attempts")
    op.drop_table("messages")
    op.drop_table("endpoints")
