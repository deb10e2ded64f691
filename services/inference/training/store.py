"""The training jobs behind the TrainingService RPCs: what was asked and how it ended (records in the
service's database, so they outlive a restart), how it runs (the launcher: a Kubernetes batch/v1 Job
in production, a local subprocess chain for `make dev`; the truth about a job while it runs)."""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ferkit import modelrepo
from ferkit.db import as_utc, make_sessionmaker
from services.inference.config import Settings
from services.inference.training.launcher import (FINISHED, TRAINING_JOB_SECONDS, JobNotFound, JobState, JobStatus,
                                                  TrainingDisabled, TrainingLauncher)
from services.inference.training.records import JobRecord
from services.inference.training.spec import InvalidJob, TrainingJobSpec, is_job_id
from training.config import OverrideError, check_override, override_arg

log = logging.getLogger(__name__)

FINISHED_VALUES = tuple(s.value for s in FINISHED)
LOG_LINES_DEFAULT = 200
LOG_LINES_MAX = 2000


def make_launcher(settings: Settings) -> TrainingLauncher:
    training = settings.training
    if training.launcher == "kubernetes":
        from services.inference.training.kubernetes import KubernetesLauncher

        return KubernetesLauncher(training)
    from services.inference.training.local import LocalJobConfig, LocalLauncher

    return LocalLauncher(LocalJobConfig(
        data_dir=training.data_dir,
        model_repository=settings.model_repository,
        work_dir=training.work_dir,
        log_dir=training.log_dir,
        kill_after_s=training.kill_after_s,
    ))


def parse_overrides(raw: Mapping[str, str]) -> dict[str, Any]:
    """The request's overrides (each value JSON) checked against the recipe's tunable fields; InvalidJob
    naming the first bad key."""
    checked = {}
    for key in sorted(raw):
        try:
            value = json.loads(raw[key])
        except ValueError:
            raise InvalidJob(f"override {key}: its value is not JSON") from None
        try:
            checked[key] = check_override(key, value)
        except OverrideError as exc:
            raise InvalidJob(str(exc)) from None
    return checked


class TrainingJobs:
    """Starts jobs and answers for them."""

    def __init__(self, settings: Settings, engine: AsyncEngine, launcher: TrainingLauncher | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions = make_sessionmaker(engine)
        self._launcher = launcher

    @property
    def launcher(self) -> TrainingLauncher:
        # Built on first use: a deployment that never trains needs no cluster credentials.
        if self._launcher is None:
            self._launcher = make_launcher(self.settings)
        return self._launcher

    def _latest_version(self, model_name: str) -> int:
        return modelrepo.latest_version(Path(self.settings.model_repository) / model_name) or 0

    async def start(self, dataset: str, recipe: str, gpus: int, model_name: str, requested_by: str,
                    overrides: Mapping[str, str] | None = None) -> JobRecord:
        """InvalidJob for a request no job can be made of (the spec checks paths, names and GPU counts,
        parse_overrides the overrides, the launcher what it can see: local datasets and recipes)."""
        if self.settings.training.launcher == "none":
            raise TrainingDisabled("this deployment runs no training jobs (the chart's training.enabled is false)")
        checked = parse_overrides(overrides or {})
        spec = TrainingJobSpec(job_id=uuid.uuid4().hex[:16], dataset=dataset, recipe=recipe, gpus=gpus,
                               model_name=model_name or self.settings.model_name,
                               overrides=tuple(override_arg(k, v) for k, v in checked.items()))
        await asyncio.to_thread(self.launcher.check, spec)
        record = JobRecord(id=spec.job_id, dataset=spec.dataset, recipe=spec.recipe, gpus=spec.gpus,
                           model_name=spec.model_name, overrides=checked, status=JobStatus.QUEUED.value, message="",
                           model_version=0, version_before=self._latest_version(spec.model_name),
                           requested_by=requested_by, created_at=datetime.now(timezone.utc))
        # Recorded before it is launched: a job never runs unrecorded.
        async with self.sessions() as session, session.begin():
            session.add(record)
        try:
            await asyncio.to_thread(self.launcher.launch, spec)
        except Exception as exc:
            await self._finish(spec.job_id, JobState(JobStatus.FAILED, f"could not start: {exc}"))
            raise
        return record

    async def _load(self, job_id: str) -> JobRecord:
        if not is_job_id(job_id):  # never sent to the database (PostgreSQL refuses a NUL byte)
            raise JobNotFound(f"no training job {job_id[:40]!r}")
        async with self.sessions() as session:
            record = await session.get(JobRecord, job_id)
        if record is None:
            raise JobNotFound(f"no training job {job_id!r}")
        return record

    async def _save(self, job_id: str, values: dict[str, Any]) -> None:
        """Only an unfinished record changes: a job's end, once recorded, stays (a cancel that another
        replica saw first, a Job cleaned up after its end was seen). The replica that records the end
        observes the job's duration."""
        async with self.sessions() as session, session.begin():
            created_at = await session.scalar(
                update(JobRecord).where(JobRecord.id == job_id, JobRecord.status.notin_(FINISHED_VALUES))
                .values(**values).returning(JobRecord.created_at))
        if created_at is not None and values.get("finished_at"):
            TRAINING_JOB_SECONDS.labels(status=values["status"]).observe((values["finished_at"] - as_utc(created_at)).total_seconds())

    async def _finish(self, job_id: str, state: JobState, progress: dict[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"status": state.status.value, "message": state.message,
                                  "finished_at": datetime.now(timezone.utc)}
        if progress is not None:
            values["progress"] = progress
        await self._save(job_id, values)

    async def _refresh(self, record: JobRecord) -> JobRecord:
        """An unfinished record brought up to date from its launcher."""
        if record.status in FINISHED_VALUES:
            return record
        try:
            state = await asyncio.to_thread(self.launcher.status, record.id)
        except JobNotFound:
            state = JobState(JobStatus.FAILED, self.launcher.lost_message)
        progress = await asyncio.to_thread(self.launcher.progress, record.id)
        values: dict[str, Any] = {"status": state.status.value, "message": state.message}
        if progress is not None:
            values["progress"] = progress
        if state.status in FINISHED:
            values["finished_at"] = datetime.now(timezone.utc)
        if state.status is JobStatus.SUCCEEDED:
            latest = self._latest_version(record.model_name)
            values["model_version"] = latest if latest > record.version_before else 0
        await self._save(record.id, values)
        return await self._load(record.id)

    async def get(self, job_id: str) -> JobRecord:
        """JobNotFound when the job is unknown."""
        return await self._refresh(await self._load(job_id))

    async def list(self, page_size: int, offset: int) -> tuple[list[JobRecord], int]:
        async with self.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(JobRecord))
            rows = (await session.scalars(select(JobRecord).order_by(JobRecord.created_at.desc(), JobRecord.id.desc())
                                          .offset(offset).limit(page_size))).all()
        return [await self._refresh(r) for r in rows], int(total or 0)

    async def log(self, job_id: str, lines: int) -> str:
        """The last `lines` lines of the job's log (LOG_LINES_DEFAULT when 0, at most LOG_LINES_MAX)."""
        await self._load(job_id)
        lines = min(lines or LOG_LINES_DEFAULT, LOG_LINES_MAX)
        if lines < 0:
            raise InvalidJob("lines must be positive")
        return await asyncio.to_thread(self.launcher.log_tail, job_id, lines)

    async def cancel(self, job_id: str, requested_by: str) -> JobRecord:
        """Stops an unfinished job (status cancelled); a finished one is answered as it is."""
        record = await self.get(job_id)
        if record.status in FINISHED_VALUES:
            return record
        try:
            await asyncio.to_thread(self.launcher.cancel, job_id)
        except JobNotFound:
            pass  # nothing left to stop: the record still says who ended it
        progress = await asyncio.to_thread(self.launcher.progress, job_id)
        await self._finish(job_id, JobState(JobStatus.CANCELLED, f"cancelled by {requested_by or 'an administrator'}"),
                           progress)
        log.info("training job %s cancelled by %s", job_id, requested_by)
        return await self._load(job_id)

    async def refresh_unfinished(self) -> int:
        """Brings every unfinished record up to date; returns how many there were."""
        async with self.sessions() as session:
            rows = (await session.scalars(select(JobRecord).where(JobRecord.status.notin_(FINISHED_VALUES)))).all()
        for row in rows:
            try:
                await self._refresh(row)
            except Exception as exc:  # one job's launcher trouble must not stop the others' updates
                log.warning("could not bring training job %s up to date: %s", row.id, exc)
        return len(rows)

    async def close(self) -> None:
        """The service stops: jobs that end with it (local ones) are stopped and recorded as such."""
        if self._launcher is None:
            return
        for job_id in await asyncio.to_thread(self._launcher.shutdown):
            await self._finish(job_id, JobState(JobStatus.FAILED, self._launcher.lost_message))
