"""What both launchers share: a job's state, the interface the job store calls, and the jobs metric."""
from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter

from services.inference.training.spec import TrainingJobSpec

# Counted once per job and process: "created" at launch, "succeeded"/"failed" when first seen finished.
TRAINING_JOBS = Counter("training_jobs_total", "Training jobs by status: created, succeeded, failed.", ["status"])


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED)


@dataclass(frozen=True)
class JobState:
    status: JobStatus
    message: str = ""


class JobNotFound(LookupError):
    pass


class TrainingLauncher(Protocol):
    def launch(self, spec: TrainingJobSpec) -> str: ...

    def status(self, job_id: str) -> JobState: ...


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
