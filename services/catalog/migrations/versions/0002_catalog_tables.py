"""courses, the module/lesson/activity tree, published versions, the SCORM package read model

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
        "courses",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("slug", sa.String(100), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("subtitle", sa.String(500)),
        sa.Column("summary", sa.Text),
        sa.Column("language", sa.String(35), nullable=False),
        sa.Column("completion_rule", sa.String(32), nullable=False),
        sa.Column("estimated_minutes", sa.Integer),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("credit_hours", sa.Numeric(12, 4)),
        sa.Column("credit_kind", sa.String(64)),
        sa.Column("credit_expires_after_months", sa.Integer),
        sa.Column("certificate_template_id", sa.BigInteger),
        sa.Column("owner_id", sa.BigInteger),
        sa.Column("owner_name", sa.String(200)),
        sa.Column("version_number", sa.Integer, nullable=False),
        sa.Column("version_status", sa.String(16), nullable=False),
        sa.Column("published_at", Timestamp),
        sa.Column("archived_at", Timestamp),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.UniqueConstraint("tenant_id", "slug", name="uq_courses_tenant_slug"),
    )
    # The list's keyset: WHERE tenant_id = ? AND id < ? ORDER BY id DESC LIMIT n.
    op.create_index("ix_courses_tenant_id", "courses", ["tenant_id", "id"])

    op.create_table(
        "modules",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("course_id", sa.BigInteger, sa.ForeignKey("courses.id", ondelete="CASCADE"), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_index("ix_modules_course_position", "modules", ["tenant_id", "course_id", "position"])

    op.create_table(
        "lessons",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("course_id", sa.BigInteger, nullable=False),
        sa.Column("module_id", sa.BigInteger, sa.ForeignKey("modules.id", ondelete="CASCADE"), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_index("ix_lessons_module_position", "lessons", ["tenant_id", "module_id", "position"])
    op.create_index("ix_lessons_course", "lessons", ["tenant_id", "course_id"])

    op.create_table(
        "activities",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("course_id", sa.BigInteger, nullable=False),
        sa.Column("lesson_id", sa.BigInteger, sa.ForeignKey("lessons.id", ondelete="CASCADE"), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("required", sa.Boolean, nullable=False),
        sa.Column("scorm_package_id", sa.BigInteger),
        sa.Column("sco_identifier", sa.String(255)),
        sa.Column("passing_score_scaled", sa.Numeric(6, 4)),
    )
    op.create_index("ix_activities_lesson_position", "activities", ["tenant_id", "lesson_id", "position"])
    op.create_index("ix_activities_course", "activities", ["tenant_id", "course_id"])

    op.create_table(
        "course_versions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("course_id", sa.BigInteger, sa.ForeignKey("courses.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("published_at", Timestamp, nullable=False),
        sa.Column("snapshot", sa.JSON, nullable=False),
        sa.UniqueConstraint("course_id", "number", name="uq_course_versions_number"),
    )

    op.create_table(
        "scorm_packages",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True),
        sa.Column("package_id", sa.BigInteger, primary_key=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("scorm_version", sa.String(16)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scos", sa.JSON, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("updated_at", Timestamp, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scorm_packages")
    op.drop_table("course_versions")
    op.drop_table("activities")
    op.drop_table("lessons")
    op.drop_table("modules")
    op.drop_table("courses")
