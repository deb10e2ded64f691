"""Training jobs behind the InferenceService RPCs: what was asked (kept here), how it runs (the launcher:
a Kubernetes batch/v1 Job in production, a local subprocess chain for `make dev`)."""
from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ferkit import modelrepo
from services.inference.config import Settings
from services.inference.training_jobs import (
    JobNotFound,
    JobStatus,
    KubernetesLauncher,
    LocalJobConfig,
    LocalLauncher,
    TrainingJobSpec,
    TrainingLauncher,
    config_from_env,
)


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
    if settings.training_launcher == "kubernetes":
        return KubernetesLauncher(config_from_env())
    if settings.training_launcher == "local":
        return LocalLauncher(LocalJobConfig(
            data_dir=settings.training_data_dir,
            model_repository=settings.model_repository,
            work_dir=settings.training_work_dir,
            log_dir=settings.training_log_dir,
        ))
    raise ValueError(f"INFERENCE_TRAINING_LAUNCHER must be 'local' or 'kubernetes', not {settings.training_launcher!r}")


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

    async def start(self, dataset: str, recipe: str, gpus: int, model_name: str, requested_by: str) -> JobRecord:
        """ValueError for a bad request (the spec validates paths, names and GPU counts)."""
        spec = TrainingJobSpec(job_id=uuid.uuid4().hex[:16], dataset=dataset, recipe=recipe, gpus=gpus,
                               model_name=model_name or self.settings.model_name)
        record = JobRecord(spec, requested_by,
                           version_before=modelrepo.latest_version(f"{self.settings.model_repository}/{spec.model_name}") or 0)
        await asyncio.to_thread(self.launcher.launch, spec)
        with self._lock:
            self._records[spec.job_id] = record
        return record

    async def get(self, job_id: str) -> JobRecord:
        """LookupError when the job is unknown."""
        with self._lock:
            record = self._records.get(job_id)
        if record is None:
            raise LookupError(f"no training job {job_id!r}")
        if record.status in (JobStatus.SUCCEEDED.value, JobStatus.FAILED.value):
            return record
        try:
            state = await asyncio.to_thread(self.launcher.status, job_id)
        except JobNotFound:
            raise LookupError(f"training job {job_id!r} no longer exists") from None
        record.status, record.message = state.status.value, state.message
        if state.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            record.finished_at = datetime.now(timezone.utc)
        if state.status == JobStatus.SUCCEEDED:
            latest = modelrepo.latest_version(f"{self.settings.model_repository}/{record.spec.model_name}") or 0
            record.model_version = latest if latest > record.version_before else 0
        return record

    async def list(self, page_size: int, offset: int) -> tuple[list[JobRecord], int]:
        with self._lock:
            ids = sorted(self._records, key=lambda i: self._records[i].created_at, reverse=True)
        page = [await self.get(i) for i in ids[offset : offset + page_size]]
        return page, len(ids)
