"""What both launchers share: a job's state, the interface the job store calls, and the jobs metric."""
from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter, Histogram

from services.inference.training.spec import TrainingJobSpec

# Counted once per job and process: "created" at launch, "succeeded"/"failed"/"cancelled" when first
# seen finished.
TRAINING_JOBS = Counter("training_jobs_total", "Training jobs by status: created, succeeded, failed, cancelled.",
                        ["status"])
# Observed once per job, by the replica that records its end.
TRAINING_JOB_SECONDS = Histogram("training_job_duration_seconds", "From submission to the end of a training job, by outcome.",
                                 ["status"], buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400))


class TrainingDisabled(RuntimeError):
    """This deployment runs no training jobs (INFERENCE_TRAINING_LAUNCHER=none)."""


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class JobState:
    status: JobStatus
    message: str = ""


class JobNotFound(LookupError):
    pass


class TrainingLauncher(Protocol):
    # A job's status when the launcher no longer knows it and its end was never seen.
    lost_message: str

    def check(self, spec: TrainingJobSpec) -> None:
        """InvalidJob when the job cannot run here (what can be checked before it starts)."""

    def launch(self, spec: TrainingJobSpec) -> str: ...

    def status(self, job_id: str) -> JobState:
        """JobNotFound when the launcher does not know the job (any more)."""

    def progress(self, job_id: str) -> dict[str, Any] | None:
        """training.progress's dict, or None before the first report (or when it cannot be read)."""

    def log_tail(self, job_id: str, lines: int) -> str: ...

    def cancel(self, job_id: str) -> None:
        """Stops the job's processes; JobNotFound when there is nothing to stop."""

    def shutdown(self) -> list[str]:
        """The service is stopping: ends what would not outlive it; returns those jobs' ids."""


def job_name(job_id: str) -> str:
    return f"fer-train-{job_id}"


class FinishedCounter:
    """Counts each job's terminal status once, however often its status is read."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def observe(self, job_id: str, state: JobState) -> JobState:
        if state.status in FINISHED:
            with self._lock:
                if job_id in self._seen:
                    return state
                self._seen.add(job_id)
            TRAINING_JOBS.labels(status=state.status.value).inc()
        return state
