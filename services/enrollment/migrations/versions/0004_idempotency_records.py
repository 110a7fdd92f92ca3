"""idempotency_records replace idempotency_keys: the shared Idempotency-Key rule (shared/idempotency.py)

``POST /enrollments`` had its own Idempotency-Key table; every write of every service now follows one rule. The
keys it remembered are carried over (same tenant, same body digest, same answer), so a retry that straddles the
upgrade still replays.

Revision ID: 0004_idempotency
Revises: 0003
"""

import json
import secrets
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from shared.idempotency import create_idempotency_table, drop_idempotency_table, fingerprint, records

revision = "0004_idempotency"
down_revision = "0003"
branch_labels = None
depends_on = None

PATH = "/api/v1/learn/enrollments"
_old = sa.table("idempotency_keys", sa.column("tenant_id", sa.BigInteger), sa.column("key", sa.String),
                sa.column("body_sha256", sa.String), sa.column("status_code", sa.Integer),
                sa.column("response", sa.JSON), sa.column("created_at", sa.DateTime(timezone=True)))


def upgrade() -> None:
    create_idempotency_table(op)
    bind = op.get_bind()
    rows = []
    for old in bind.execute(sa.select(_old)).all():
        created = old.created_at if old.created_at.tzinfo else old.created_at.replace(tzinfo=UTC)
        envelope = {"data": old.response, "next_cursor": None, "request_id": ""}
        rows.append({
            "scope": str(old.tenant_id), "key": old.key, "fingerprint": fingerprint("POST", PATH, old.body_sha256),
            "lease_token": secrets.token_hex(16), "lease_until": created, "status_code": old.status_code,
            "headers": {"Content-Type": "application/json; charset=utf-8"},
            "body": json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode(),
            "created_at": created, "expires_at": max(created + timedelta(hours=24), datetime.now(UTC)),
        })
    if rows:
        bind.execute(sa.insert(records), rows)
    op.drop_table("idempotency_keys")


def downgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    drop_idempotency_table(op)
