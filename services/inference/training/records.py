"""The inference service's one table: the training jobs' records (what was asked, how it ended)."""
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ferkit.db import utcnow


class Base(DeclarativeBase):
    pass


class JobRecord(Base):
    """One training job. While it is unfinished its launcher (the Kubernetes Job, the local process)
    is the truth about it, and the status, message and progress here are the last seen."""

    __tablename__ = "training_jobs"
    __table_args__ = (Index("ix_training_jobs_created", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(300))
    recipe: Mapped[str] = mapped_column(String(200))
    gpus: Mapped[int] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String(100))
    # {"epochs": 2, "optim.lr": 0.05}: checked against training.config.TUNABLE.
    overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    model_version: Mapped[int] = mapped_column(BigInteger, default=0)
    # The latest version before the job started: a later one after success is the job's export.
    version_before: Mapped[int] = mapped_column(BigInteger, default=0)
    requested_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # training.progress's dict: epoch, epochs, train_loss, val_accuracy, history.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
