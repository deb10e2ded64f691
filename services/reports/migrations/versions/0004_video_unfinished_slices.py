"""videos count the slices that ended without an answer, so a video that crashes its worker fails

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("videos") as table:
        table.add_column(sa.Column("unfinished_slices", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("videos") as table:
        table.drop_column("unfinished_slices")
