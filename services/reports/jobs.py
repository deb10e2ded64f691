"""The report job: what a worker does with one report id, whichever queue delivered it.

Idempotent on the report id: the job claims the row (queued/running → running, attempts + 1), renders,
and stores the file with a conditional UPDATE that only a not-yet-done report accepts. A redelivered
job for a done (or failed) report does nothing, and two racing deliveries store one file.

A report is on a result (its annotated photo in the file), a batch (its photos' faces), or a video
(its tracks, with the timeline chart); each is loaded into one document (render_json), then rendered.
"""
import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import undefer

from ferkit.db import as_utc, utcnow
from ferkit.vision import CLASSES
from services.reports.annotate import result_png
from services.reports.config import Settings
from services.reports.metrics import JOBS, RENDER_SECONDS
from services.reports.batches import batch_items_and_results
from services.reports.models import Batch, Report, Result, Video
from services.reports.outcomes import ACTIVE, JobResult, Outcome, backoff_s, unclaimed
from services.reports.render_json import build_batch_document, build_document, build_video_document, render_json
from services.reports.render_pdf import render_pdf
from services.reports.timeline import timeline_png
from services.reports.videos import stored_tracks

log = logging.getLogger(__name__)

RENDERERS = {"pdf": (render_pdf, "application/pdf"), "json": (render_json, "application/json")}


class PermanentJobError(Exception):
    """Retrying cannot help (e.g. an unknown format)."""


@dataclass
class Subject:
    """What a report is on, loaded: its document, the picture it carries (drawn in the render thread)
    and the time its file name is stamped with."""

    document: dict
    picture: Callable[[], bytes]
    stamp: datetime


def report_filename(stamp: datetime, report: Report) -> str:
    return f"fer-report-{as_utc(stamp):%Y%m%d-%H%M%S}-{report.id[:8]}.{report.format}"


def render(fmt: str, subject: Subject, settings: Settings) -> bytes:
    if fmt not in RENDERERS:
        raise PermanentJobError(f"unknown report format {fmt!r}")
    if settings.render_delay_s:
        time.sleep(settings.render_delay_s)
    return RENDERERS[fmt][0](subject.document, subject.picture())


async def load_subject(session: AsyncSession, report: Report, settings: Settings) -> Subject:
    """The report's result, batch or video as a document; PermanentJobError when it no longer exists."""
    now = utcnow()
    if report.batch_id:
        batch = await session.get(Batch, report.batch_id)
        if batch is None:
            raise PermanentJobError("the batch of this report no longer exists")
        items, results = await batch_items_and_results(session, batch.id)
        return Subject(build_batch_document(batch, items, results, report, now), lambda: b"", batch.created_at)
    if report.video_id:
        video = await session.get(Video, report.video_id)
        if video is None:
            raise PermanentJobError("the video of this report no longer exists")
        tracks = await stored_tracks(session, video)
        picture = partial(timeline_png, tracks, video.model_classes or list(CLASSES), video.duration_s)
        return Subject(build_video_document(video, tracks, report, now), picture, video.created_at)
    result = await session.scalar(select(Result).where(Result.id == report.result_id)
                                  .options(undefer(Result.annotated_png), undefer(Result.original_image)))
    if result is None:
        raise PermanentJobError("the result of this report no longer exists")
    return Subject(build_document(result, report, now), partial(result_png, result, settings.annotated_max_side), result.created_at)


class ReportJobs:
    def __init__(self, settings: Settings, sessions: async_sessionmaker) -> None:
        self.settings = settings
        self.sessions = sessions

    async def run(self, report_id: str) -> JobResult:
        """One attempt at the report; database errors propagate (the caller requeues the job)."""
        max_attempts = self.settings.max_attempts
        async with self.sessions() as session:
            now = utcnow()
            attempt = await session.scalar(
                update(Report)
                .where(Report.id == report_id, Report.status.in_(ACTIVE))
                .values(status="running", attempts=Report.attempts + 1, started_at=now, updated_at=now)
                .returning(Report.attempts)
            )
            await session.commit()
            if attempt is None:
                return await unclaimed(self.sessions, Report, report_id)
            if attempt > max_attempts:
                # Attempts also count deliveries whose worker died mid-job: a job that kills every worker
                # that takes it must stop somewhere too.
                return await self._fail(report_id, attempt, f"gave up after {max_attempts} attempts (workers stopped mid-job)")
            report = await session.get(Report, report_id)
            try:
                subject = await load_subject(session, report, self.settings)
            except PermanentJobError as exc:
                subject, gone = None, str(exc)
        if subject is None:
            return await self._fail(report_id, attempt, gone)

        try:
            started = time.perf_counter()
            content = await asyncio.to_thread(render, report.format, subject, self.settings)
            RENDER_SECONDS.labels(report.format).observe(time.perf_counter() - started)
        except PermanentJobError as exc:
            return await self._fail(report_id, attempt, str(exc))
        except Exception as exc:  # noqa: BLE001 - any render error is this job's failure, not the worker's
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("report %s attempt %d/%d failed: %s", report_id, attempt, max_attempts, reason)
            if attempt >= max_attempts:
                return await self._fail(report_id, attempt, f"rendering failed after {attempt} attempts: {reason}")
            delay = backoff_s(self.settings, attempt)
            await self._set(report_id, status="queued", error=f"attempt {attempt} failed ({reason}); retrying in {delay:g} s")
            JOBS.labels("retried").inc()
            return JobResult(Outcome.RETRY, attempt, delay, reason)

        now = utcnow()
        async with self.sessions() as session:
            stored = await session.scalar(
                update(Report)
                .where(Report.id == report_id, Report.status.in_(ACTIVE))
                .values(
                    status="done",
                    error="",
                    file=content,
                    filename=report_filename(subject.stamp, report),
                    content_type=RENDERERS[report.format][1],
                    size_bytes=len(content),
                    finished_at=now,
                    updated_at=now,
                )
                .returning(Report.id)
            )
            await session.commit()
        if stored is None:
            return JobResult(Outcome.SKIPPED, attempt)
        JOBS.labels("done").inc()
        log.info("report %s done (%s, %d bytes, attempt %d)", report_id, report.format, len(content), attempt)
        return JobResult(Outcome.DONE, attempt)

    async def _set(self, report_id: str, **values) -> bool:
        async with self.sessions() as session:
            changed = await session.scalar(
                update(Report)
                .where(Report.id == report_id, Report.status.in_(ACTIVE))
                .values(updated_at=utcnow(), **values)
                .returning(Report.id)
            )
            await session.commit()
        return changed is not None

    async def _fail(self, report_id: str, attempt: int, reason: str) -> JobResult:
        if await self._set(report_id, status="failed", error=reason, finished_at=utcnow()):
            JOBS.labels("failed").inc()
            log.error("report %s failed: %s", report_id, reason)
        return JobResult(Outcome.FAILED, attempt, error=reason)

    async def unfinished(self) -> list[str]:
        """Reports not yet done or failed, oldest first (the in-process queue reloads them at start)."""
        async with self.sessions() as session:
            rows = await session.scalars(select(Report.id).where(Report.status.in_(ACTIVE)).order_by(Report.created_at))
            return list(rows)
