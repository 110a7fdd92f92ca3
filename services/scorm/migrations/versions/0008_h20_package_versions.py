"""package versions and archiving (issue 20): ``version_of`` / ``version`` / ``archived_at`` on packages, the
course title in the courses read model (a refused archive names the courses that use the package)

Revision ID: 0008_h20_versions
Revises: 0007_h20_sha256
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_h20_versions"
down_revision = "0007_h20_sha256"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("scorm_packages", sa.Column("version_of", sa.BigInteger, nullable=True))
    op.add_column("scorm_packages", sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    op.add_column("scorm_packages", sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_scorm_packages_version_of", "scorm_packages", ["tenant_id", "version_of"])
    op.add_column("courses", sa.Column("title", sa.Text, nullable=False, server_default=""))
    # Resumable uploads (tus 1.0.0)
    op.create_table(
        "scorm_uploads",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("tenant_slug", sa.String(63), nullable=False),
        sa.Column("length", sa.BigInteger, nullable=False),
        sa.Column("part_path", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=True),
        sa.Column("package_id", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_scorm_uploads_tenant", "scorm_uploads", ["tenant_id", "id"])
    # Items whose resource is an asset: launchable, untracked
    op.add_column("scorm_scos", sa.Column("tracked", sa.Boolean, nullable=False, server_default=sa.true()))
    # The manifest's time limit, carried into the runtime data model
    for table in ("scorm_scos", "runtime_sessions"):
        op.add_column(table, sa.Column("time_limit_action", sa.String(32), nullable=True))
        op.add_column(table, sa.Column("max_time_allowed", sa.String(64), nullable=True))


def downgrade() -> None:
    for table in ("scorm_scos", "runtime_sessions"):
        op.drop_column(table, "max_time_allowed")
        op.drop_column(table, "time_limit_action")
    op.drop_column("scorm_scos", "tracked")
    op.drop_index("ix_scorm_uploads_tenant", "scorm_uploads")
    op.drop_table("scorm_uploads")
    op.drop_column("courses", "title")
    op.drop_index("ix_scorm_packages_version_of", "scorm_packages")
    op.drop_column("scorm_packages", "archived_at")
    op.drop_column("scorm_packages", "version")
    op.drop_column("scorm_packages", "version_of")
