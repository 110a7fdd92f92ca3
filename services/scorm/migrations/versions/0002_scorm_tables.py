"""packages, SCOs, package blobs, read models (enrollments, courses, activities), runtime sessions

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from shared.blobstore import create_blob_tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scorm_packages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("tenant_slug", sa.String(63), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("title_given", sa.Boolean, nullable=False),
        sa.Column("scorm_version", sa.String(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("organization_identifier", sa.Text, nullable=True),
        sa.Column("warnings", sa.JSON, nullable=False),
        sa.Column("files", sa.Integer, nullable=True),
        sa.Column("upload_path", sa.Text, nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_until", Timestamp, nullable=True),
        sa.Column("import_attempts", sa.Integer, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("ix_scorm_packages_tenant", "scorm_packages", ["tenant_id", "id"])
    op.create_index("ix_scorm_packages_status", "scorm_packages", ["status"])
    op.create_table(
        "scorm_scos",
        sa.Column("package_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("identifier", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("launch_url", sa.Text, nullable=False),
        sa.Column("parameters", sa.Text, nullable=True),
        sa.Column("mastery_score", sa.Float, nullable=True),
        sa.Column("passing_score_scaled", sa.Float, nullable=True),
        sa.Column("parent_identifier", sa.Text, nullable=True),
        sa.Column("resource_identifier", sa.Text, nullable=False),
        sa.Column("objective_ids", sa.JSON, nullable=False),
        sa.Column("completion_threshold", sa.Float, nullable=True),
        sa.Column("launch_data", sa.Text, nullable=True),
    )
    create_blob_tables(op)
    op.create_table(
        "enrollments",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("enrollment_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("course_id", sa.BigInteger, nullable=False),
        sa.Column("course_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at", Timestamp, nullable=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "courses",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("course_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "course_activities",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("course_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("version_number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("activity_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("scorm_package_id", sa.BigInteger, nullable=True),
        sa.Column("sco_identifier", sa.Text, nullable=True),
        sa.Column("passing_score_scaled", sa.Float, nullable=True),
    )
    op.create_table(
        "runtime_sessions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("tenant_slug", sa.String(63), nullable=False),
        sa.Column("enrollment_id", sa.BigInteger, nullable=False),
        sa.Column("activity_id", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("course_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("package_id", sa.BigInteger, nullable=True),
        sa.Column("sco_identifier", sa.Text, nullable=True),
        sa.Column("standard", sa.String(8), nullable=False),
        sa.Column("launch_path", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("mastery_score", sa.Float, nullable=True),
        sa.Column("passing_score_scaled", sa.Float, nullable=True),
        sa.Column("completion_threshold", sa.Float, nullable=True),
        sa.Column("objective_ids", sa.JSON, nullable=False),
        sa.Column("launch_data", sa.Text, nullable=True),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("cmi", sa.JSON, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("reported_session_seconds", sa.Float, nullable=False),
        sa.Column("prior_total_seconds", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("ix_runtime_sessions_activity", "runtime_sessions",
                    ["tenant_id", "enrollment_id", "activity_id", "id"])


def downgrade() -> None:
    for table in ("runtime_sessions", "course_activities", "courses", "enrollments", "blob_chunks", "blobs",
                  "scorm_scos", "scorm_packages"):
        op.drop_table(table)
