"""tombstones of deleted accounts, which the reports service pages through to erase their data

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deleted_accounts",
        sa.Column("user_id", sa.String(36), primary_key=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_deleted_accounts_deleted_at", "deleted_accounts", ["deleted_at", "user_id"])


def downgrade() -> None:
    op.drop_table("deleted_accounts")
