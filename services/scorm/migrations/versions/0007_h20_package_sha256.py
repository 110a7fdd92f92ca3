"""package sha256 index: ``POST /scorm-packages?dedupe=true`` finds the tenant's package with the same bytes

Revision ID: 0007_h20_sha256
Revises: 0006
"""

from alembic import op

revision = "0007_h20_sha256"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_scorm_packages_sha256", "scorm_packages", ["tenant_id", "sha256"])


def downgrade() -> None:
    op.drop_index("ix_scorm_packages_sha256", "scorm_packages")
