"""read models (tenants, courses, course versions, users), enrollments, idempotency keys, cohorts, attempts

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
        "tenants",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("slug", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "courses",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("course_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("slug", sa.String(100), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version_number", sa.Integer, nullable=False),
        sa.Column("completion_rule", sa.String(32), nullable=False),
        sa.Column("credit", sa.JSON, nullable=False),
        sa.Column("certificate_template_id", sa.BigInteger, nullable=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "course_versions",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("course_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("version_number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("completion_rule", sa.String(32), nullable=False),
        sa.Column("credit", sa.JSON, nullable=False),
        sa.Column("certificate_template_id", sa.BigInteger, nullable=True),
        sa.Column("modules", sa.JSON, nullable=False),
        sa.Column("published_at", Timestamp, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "directory_users",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "enrollments",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("course_id", sa.BigInteger, nullable=False),
        sa.Column("course_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("enrolled_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=True),
        sa.Column("completed_at", Timestamp, nullable=True),
        sa.Column("cancelled_at", Timestamp, nullable=True),
        sa.Column("required_total", sa.Integer, nullable=False),
        sa.Column("required_done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("revision", sa.BigInteger, nullable=False, server_default="1"),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    live = sa.text("status IN ('active', 'completed')")
    op.create_index("uq_enrollments_live", "enrollments", ["tenant_id", "user_id", "course_id"], unique=True,
                    postgresql_where=live, sqlite_where=live)
    op.create_index("ix_enrollments_tenant_id", "enrollments", ["tenant_id", "id"])
    active = sa.text("status = 'active'")
    op.create_index("ix_enrollments_due", "enrollments", ["expires_at"], postgresql_where=active,
                    sqlite_where=active)
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", sa.JSON, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_table(
        "cohorts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("course_ids", sa.JSON, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "cohort_members",
        sa.Column("cohort_id", sa.BigInteger, sa.ForeignKey("cohorts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("granted_at", Timestamp, nullable=False),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("enrollment_id", sa.BigInteger, sa.ForeignKey("enrollments.id"), nullable=False),
        sa.Column("activity_id", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("course_id", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("score_raw", sa.Numeric(18, 6), nullable=True),
        sa.Column("score_scaled", sa.Numeric(8, 6), nullable=True),
        sa.Column("best_score_scaled", sa.Numeric(8, 6), nullable=True),
        sa.Column("passed", sa.Boolean, nullable=True),
        sa.Column("time_started_at", Timestamp, nullable=True),
        sa.Column("time_ended_at", Timestamp, nullable=True),
        sa.Column("total_time_seconds", sa.Numeric(18, 3), nullable=False),
        sa.Column("last_sequence", sa.Integer, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("ix_attempts_enrollment", "attempts", ["enrollment_id", "activity_id"])
    op.create_index("ix_attempts_tenant_id", "attempts", ["tenant_id", "id"])
    op.create_table(
        "attempt_commits",
        sa.Column("attempt_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("sequence", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("attempt_commits", "attempts", "cohort_members", "cohorts", "idempotency_keys", "enrollments",
                  "directory_users", "course_versions", "courses", "tenants"):
        op.drop_table(table)
