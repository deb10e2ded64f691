"""The reports service's tables: the results history, report requests, batches of photos and videos."""
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ferkit.db import new_id, utcnow

STATUSES = ("queued", "running", "done", "failed")
FORMATS = ("pdf", "json")


class Base(DeclarativeBase):
    pass


class Result(Base):
    """One prediction a user kept. Image bytes are deferred: lists never load them."""

    __tablename__ = "results"
    __table_args__ = (Index("ix_results_owner_created", "owner_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[int] = mapped_column(BigInteger)
    model_classes: Mapped[list] = mapped_column(JSON)
    # [{"box": [x, y, w, h], "label": str, "scores": [float, ...], "detection_score": float}, ...]
    faces: Mapped[list] = mapped_column(JSON)
    timings: Mapped[dict] = mapped_column(JSON)
    notes: Mapped[str] = mapped_column(Text, default="")
    message: Mapped[str] = mapped_column(Text, default="")
    filename: Mapped[str] = mapped_column(String(255), default="")
    image_width: Mapped[int] = mapped_column(Integer, default=0)
    image_height: Mapped[int] = mapped_column(Integer, default=0)
    original_content_type: Mapped[str] = mapped_column(String(100), default="")
    original_image: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    annotated_png: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    has_annotated_image: Mapped[bool] = mapped_column(Boolean, default=False)


class Report(Base):
    """A report request on one result, batch or video (exactly one of the three ids is set). The row is
    written before the job is published (`published` flips after the broker confirms), so a request is
    never lost; the file lives in the row once the job is done."""

    __tablename__ = "reports"
    __table_args__ = (Index("ix_reports_unpublished", "published", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(String(36), index=True)
    result_id: Mapped[str | None] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True, nullable=True)
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True, nullable=True)
    video_id: Mapped[str | None] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True, nullable=True)
    format: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    file: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    filename: Mapped[str] = mapped_column(String(255), default="")
    content_type: Mapped[str] = mapped_column(String(100), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ErasureCursor(Base):
    """One row (id 1, written by the migration): how far the eraser has read the auth service's deleted
    accounts (ListDeletedAccounts' opaque token). Stored only after those accounts were erased."""

    __tablename__ = "erasure_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    page_token: Mapped[str] = mapped_column(String(512), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Batch(Base):
    """Many photos analysed in the background, one Result each. Like a report, the row (with its items)
    is committed before the job is published; `done` counts finished items (done or failed), `failed`
    the failed ones. `attempts`: slices in a row that made no progress (the back-off step while the
    inference or auth service is down), back to 0 whenever an item finishes."""

    __tablename__ = "batches"
    __table_args__ = (
        Index("ix_batches_owner_created", "owner_id", "created_at", "id"),
        Index("ix_batches_unpublished", "published", "created_at"),
        Index("ix_batches_active", "status", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    error: Mapped[str] = mapped_column(Text, default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    # inference.FaceMode of every photo.
    mode: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BatchItem(Base):
    """One photo of a batch, in upload order. The image waits here until it is analysed, then it is
    cleared (the Result keeps the photo); `result_id` is set in the transaction that stores the Result
    and counts it, so a redelivered job never analyses or counts a photo twice."""

    __tablename__ = "batch_items"

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str] = mapped_column(String(255), default="")
    content_type: Mapped[str] = mapped_column(String(100), default="")
    image: Mapped[bytes] = mapped_column(LargeBinary, deferred=True, default=b"")
    status: Mapped[str] = mapped_column(String(16), default="queued")
    result_id: Mapped[str | None] = mapped_column(ForeignKey("results.id", ondelete="SET NULL"), nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    faces: Mapped[int] = mapped_column(Integer, default=0)


class Video(Base):
    """An uploaded video and its analysis. The file is kept in `video_chunks`; the sampled frames' faces
    in `video_frames` as they are analysed (`frames_done` of `frames_total`), so a job interrupted by a
    restart resumes at `frames_done`. `tracks` is written once, when the last frame is in.
    `attempts`: as for batches. `unfinished_slices`: slices claimed since the last frames were stored that
    ended without an answer (the worker died or raised); too many fail the video."""

    __tablename__ = "videos"
    __table_args__ = (
        Index("ix_videos_owner_created", "owner_id", "created_at", "id"),
        Index("ix_videos_unpublished", "published", "created_at"),
        Index("ix_videos_active", "status", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    error: Mapped[str] = mapped_column(Text, default="")
    filename: Mapped[str] = mapped_column(String(255), default="")
    content_type: Mapped[str] = mapped_column(String(100), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    fps: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    width: Mapped[int] = mapped_column(Integer, default=0)
    height: Mapped[int] = mapped_column(Integer, default=0)
    frames_total: Mapped[int] = mapped_column(Integer, default=0)
    frames_done: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    model_name: Mapped[str] = mapped_column(String(100), default="")
    model_version: Mapped[int] = mapped_column(BigInteger, default=0)
    model_classes: Mapped[list] = mapped_column(JSON, default=list)
    # services.reports.tracks.link_tracks' list, once done; None while frames are still coming.
    tracks: Mapped[list | None] = mapped_column(JSON, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    unfinished_slices: Mapped[int] = mapped_column(Integer, default=0)
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class VideoChunk(Base):
    """The uploaded file in pieces of at most 1 MiB, read back one at a time: never one large value in
    memory, on either side of the database driver."""

    __tablename__ = "video_chunks"

    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class VideoFrame(Base):
    """One sampled frame's faces: [{"box": [x, y, w, h] in the video's pixels, "label", "scores",
    "detection_score"}, ...] (an empty list: no face in that frame)."""

    __tablename__ = "video_frames"

    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    t: Mapped[float] = mapped_column(Float)
    faces: Mapped[list] = mapped_column(JSON)
