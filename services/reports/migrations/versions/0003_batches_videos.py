"""batches of photos, videos (chunks, sampled frames), and reports on a batch or a video

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("mode", sa.Integer, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("published", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # The owner's list (newest first, keyset) and the re-publisher's two questions: unpublished rows,
    # and active rows untouched for a while.
    op.create_index("ix_batches_owner_created", "batches", ["owner_id", "created_at", "id"])
    op.create_index("ix_batches_unpublished", "batches", ["published", "created_at"])
    op.create_index("ix_batches_active", "batches", ["status", "updated_at"])
    op.create_table(
        "batch_items",
        sa.Column("batch_id", sa.String(36), sa.ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("image", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result_id", sa.String(36), sa.ForeignKey("results.id", ondelete="SET NULL")),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("faces", sa.Integer, nullable=False),
    )
    op.create_table(
        "videos",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("fps", sa.Float, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("frames_total", sa.Integer, nullable=False),
        sa.Column("frames_done", sa.Integer, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("model_version", sa.BigInteger, nullable=False),
        sa.Column("model_classes", sa.JSON, nullable=False),
        sa.Column("tracks", sa.JSON),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("published", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_videos_owner_created", "videos", ["owner_id", "created_at", "id"])
    op.create_index("ix_videos_unpublished", "videos", ["published", "created_at"])
    op.create_index("ix_videos_active", "videos", ["status", "updated_at"])
    op.create_table(
        "video_chunks",
        sa.Column("video_id", sa.String(36), sa.ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "video_frames",
        sa.Column("video_id", sa.String(36), sa.ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("index", sa.Integer, primary_key=True),
        sa.Column("t", sa.Float, nullable=False),
        sa.Column("faces", sa.JSON, nullable=False),
    )
    # A report is on a result, a batch or a video. Batch mode: SQLite alters a column by copying the table.
    with op.batch_alter_table("reports") as reports:
        reports.alter_column("result_id", existing_type=sa.String(36), nullable=True)
        reports.add_column(sa.Column("batch_id", sa.String(36)))
        reports.add_column(sa.Column("video_id", sa.String(36)))
        reports.create_foreign_key("fk_reports_batch_id", "batches", ["batch_id"], ["id"], ondelete="CASCADE")
        reports.create_foreign_key("fk_reports_video_id", "videos", ["video_id"], ["id"], ondelete="CASCADE")
        reports.create_index("ix_reports_batch_id", ["batch_id"])
        reports.create_index("ix_reports_video_id", ["video_id"])


def downgrade() -> None:
    # Reports on batches and videos cannot survive without them.
    op.execute("DELETE FROM reports WHERE result_id IS NULL")
    with op.batch_alter_table("reports") as reports:
        reports.drop_index("ix_reports_video_id")
        reports.drop_index("ix_reports_batch_id")
        reports.drop_constraint("fk_reports_video_id", type_="foreignkey")
        reports.drop_constraint("fk_reports_batch_id", type_="foreignkey")
        reports.drop_column("video_id")
        reports.drop_column("batch_id")
        reports.alter_column("result_id", existing_type=sa.String(36), nullable=False)
    op.drop_table("video_frames")
    op.drop_table("video_chunks")
    op.drop_table("videos")
    op.drop_table("batch_items")
    op.drop_table("batches")
