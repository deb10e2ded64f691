"""The reports service's tables: the results history and the report requests."""
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text
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
    """A report request. The row is written before the job is published (`published` flips after the
    broker confirms), so a request is never lost; the file lives in the row once the job is done."""

    __tablename__ = "reports"
    __table_args__ = (Index("ix_reports_unpublished", "published", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(String(36), index=True)
    result_id: Mapped[str] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
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
