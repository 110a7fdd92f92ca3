"""read models (tenants, users), templates, certificates, regeneration jobs, blob tables

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
        "tenants",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("slug", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "templates",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("orientation", sa.String(16), nullable=False),
        sa.Column("page_size", sa.String(16), nullable=False),
        sa.Column("title_text", sa.String(200), nullable=False),
        sa.Column("body_text", sa.Text, nullable=False),
        sa.Column("primary_color", sa.String(7), nullable=False),
        sa.Column("accent_color", sa.String(7), nullable=False),
        sa.Column("logo", sa.LargeBinary, nullable=True),
        sa.Column("logo_sha256", sa.String(64), nullable=True),
        sa.Column("background_pdf", sa.LargeBinary, nullable=True),
        sa.Column("background_sha256", sa.String(64), nullable=True),
        sa.Column("signatory_name", sa.String(200), nullable=True),
        sa.Column("signatory_title", sa.String(200), nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("ix_templates_tenant", "templates", ["tenant_id", "id"])
    op.create_index("ux_templates_default", "templates", ["tenant_id"], unique=True,
                    postgresql_where=sa.text("is_default"), sqlite_where=sa.text("is_default"))
    op.create_table(
        "certificates",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("enrollment_id", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("course_id", sa.BigInteger, nullable=False),
        sa.Column("course_version", sa.Integer, nullable=False),
        sa.Column("template_id", sa.BigInteger, nullable=True),
        sa.Column("verification_id", sa.String(40), nullable=False),
        sa.Column("recipient_name", sa.String(200), nullable=False),
        sa.Column("course_title", sa.String(300), nullable=False),
        sa.Column("credit_hours", sa.Numeric(12, 4), nullable=True),
        sa.Column("credit_kind", sa.String(64), nullable=True),
        sa.Column("issued_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=True),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.Column("revoked_reason", sa.Text, nullable=True),
        sa.Column("pdf_key", sa.String(300), nullable=False),
        sa.Column("pdf_sha256", sa.String(64), nullable=False),
        sa.Column("pdf_bytes", sa.BigInteger, nullable=False),
        sa.Column("pdf_version", sa.Integer, nullable=False),
        sa.Column("pdf_template_version", sa.Integer, nullable=False),
        sa.Column("pdf_generated_at", Timestamp, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.UniqueConstraint("tenant_id", "enrollment_id", name="ux_certificates_enrollment"),
        sa.UniqueConstraint("verification_id", name="ux_certificates_verification_id"),
    )
    op.create_index("ix_certificates_user", "certificates", ["tenant_id", "user_id", "id"])
    op.create_index("ix_certificates_course", "certificates", ["tenant_id", "course_id", "id"])
    op.create_index("ix_certificates_template", "certificates", ["tenant_id", "template_id", "id"])
    op.create_table(
        "regeneration_jobs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("tenant_slug", sa.String(63), nullable=False),
        sa.Column("template_id", sa.BigInteger, nullable=False),
        sa.Column("template_version", sa.Integer, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.UniqueConstraint("tenant_id", "template_id", "template_version", name="ux_regeneration_jobs_version"),
    )
    op.create_index("ix_regeneration_jobs_open", "regeneration_jobs", ["finished_at", "id"])
    create_blob_tables(op)


def downgrade() -> None:
    op.drop_table("blob_chunks")
    op.drop_table("blobs")
    op.drop_table("regeneration_jobs")
    op.drop_table("certificates")
    op.drop_table("templates")
    op.drop_table("users")
    op.drop_table("tenants")
