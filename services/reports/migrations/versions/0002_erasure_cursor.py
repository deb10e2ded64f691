"""the eraser's cursor over the auth service's deleted accounts (one row)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    cursor = op.create_table(
        "erasure_cursor",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("page_token", sa.String(512), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # The one row exists from the start, so storing the cursor is always an UPDATE (replicas never race to insert).
    op.bulk_insert(cursor, [{"id": 1, "page_token": "", "updated_at": datetime.now(timezone.utc)}])


def downgrade() -> None:
    op.drop_table("erasure_cursor")
