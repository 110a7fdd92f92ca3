"""course_team and the staff read model (ADR 0021)

Revision ID: 0004_h18b_course_team
Revises: 0003_idempotency
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_h18b_course_team"
down_revision = "0003_idempotency"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "staff_members",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True),
        sa.Column("staff_id", sa.BigInteger, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
    )
    op.create_table(
        "course_team",
        sa.Column("tenant_id", sa.BigInteger, primary_key=True),
        sa.Column("course_id", sa.BigInteger, sa.ForeignKey("courses.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("staff_id", sa.BigInteger, primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("added_at", _TS, nullable=False),
    )
    op.create_index("ix_course_team_staff", "course_team", ["tenant_id", "staff_id"])


def downgrade() -> None:
    op.drop_table("course_team")
    op.drop_table("staff_members")
