"""blob_chunks.data stored EXTERNAL: PDFs are already compressed, so PostgreSQL no longer tries pglz on them

A certificate PDF (about 20 KB) starts with plain PDF objects, so pglz does not give up early; it compresses the
whole value and then discards the result (PDF streams are deflated). That attempt cost about 0.1 ms of PostgreSQL
CPU per stored PDF (0.14 against 0.04 ms per row, measured on PostgreSQL 15 with a bench certificate). EXTERNAL
keeps out-of-line TOAST storage without compression. Existing rows are not rewritten (nothing changes for them).

Revision ID: 0004_pdf_chunks_external
Revises: 0003_idempotency
"""

from alembic import op

revision = "0004_pdf_chunks_external"
down_revision = "0003_idempotency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # SQLite has no TOAST
        op.execute("ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTENDED")
