"""The training jobs behind the TrainingService RPCs: what was asked (kept here), how it runs (the
launcher: a Kubernetes batch/v1 Job in production, a local subprocess chain for `make dev`)."""
from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ferkit import modelrepo
from services.inference.config import Settings
from services.inference.training.kubernetes import KubernetesLauncher
from services.inference.training.launcher import FINISHED, JobNotFound, JobStatus, TrainingLauncher
from services.inference.training.local import LocalJobConfig, LocalLauncher
from services.inference.training.spec import TrainingJobSpec


@dataclass
class JobRecord:
    spec: TrainingJobSpec
    requested_by: str
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    finished_at: datetime | None = None
    status: str = JobStatus.QUEUED.value
    message: str = ""
    model_version: int = 0
    # The latest version before the job started: a later one after success is the job's export.
    version_before: int = 0


def make_launcher(settings: Settings) -> TrainingLauncher:
    training = settings.training
    if training.launcher == "kubernetes":
        return KubernetesLauncher(training)
    return LocalLauncher(LocalJobConfig(
        data_dir=training.data_dir,
        model_repository=settings.model_repository,
        work_dir=training.work_dir,
        log_dir=training.log_dir,
    ))


class TrainingJobs:
    """Starts jobs and answers for them. The records live in this process (the Jobs themselves, in
    production, live in the cluster and outlast it)."""

    def __init__(self, settings: Settings, launcher: TrainingLauncher | None = None) -> None:
        self.settings = settings
        self._launcher = launcher
        self._records: dict[str, JobRecord] = {}
        self._lock = threading.Lock()

    @property
    def launcher(self) -> TrainingLauncher:
        # Built on first use: a deployment that never trains needs no cluster credentials.
        if self._launcher is None:
            self._launcher = make_launcher(self.settings)
        return self._launcher

    def _latest_version(self, model_name: str) -> int:
        return modelrepo.latest_version(Path(self.settings.model_repository) / model_name) or 0

    async def start(self, dataset: str, recipe: str, gpus: int, model_name: str, requested_by: str) -> JobRecord:
        """InvalidJob for a bad request (the spec validates paths, names and GPU counts)."""
        spec = TrainingJobSpec(job_id=uuid.uuid4().hex[:16], dataset=dataset, recipe=recipe, gpus=gpus,
                               model_name=model_name or self.settings.model_name)
        record = JobRecord(spec, requested_by, version_before=self._latest_version(spec.model_name))
        await asyncio.to_thread(self.launcher.launch, spec)
        with self._lock:
            self._records[spec.job_id] = record
        return record

    async def get(self, job_id: str) -> JobRecord:
        """JobNotFound when the job is unknown."""
        with self._lock:
            record = self._records.get(job_id)
        if record is None:
            raise JobNotFound(f"no training job {job_id!r}")
        if record.status in FINISHED:
            return record
        try:
            state = await asyncio.to_thread(self.launcher.status, job_id)
        except JobNotFound:
            raise JobNotFound(f"training job {job_id!r} no longer exists") from None
        record.status, record.message = state.status.value, state.message
        if state.status in FINISHED:
            record.finished_at = datetime.now(timezone.utc)
        if state.status == JobStatus.SUCCEEDED:
            latest = self._latest_version(record.spec.model_name)
            record.model_version = latest if latest > record.version_before else 0
        return record

    async def list(self, page_size: int, offset: int) -> tuple[list[JobRecord], int]:
        with self._lock:
            ids = sorted(self._records, key=lambda i: self._records[i].created_at, reverse=True)
        page = [await self.get(i) for i in ids[offset : offset + page_size]]
        return page, len(ids)
