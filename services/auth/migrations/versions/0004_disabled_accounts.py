"""accounts an administrator disabled; the users list pages on (created_at, id)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_users_created_at", "users", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_users_created_at", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled")
