"""The report job: what a worker does with one report id, whichever queue delivered it.

Idempotent on the report id: the job claims the row (queued/running → running, attempts + 1), renders,
and stores the file with a conditional UPDATE that only a not-yet-done report accepts. A redelivered
job for a done (or failed) report does nothing, and two racing deliveries store one file.
"""
import asyncio
import logging
import time
from dataclasses import dataclass
from enum import Enum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import undefer

from ferkit.db import as_utc, utcnow

from services.reports.annotate import result_png
from services.reports.config import Settings
from services.reports.metrics import JOBS, RENDER_SECONDS
from services.reports.models import Report, Result
from services.reports.render_json import build_document, render_json
from services.reports.render_pdf import render_pdf

log = logging.getLogger(__name__)

RENDERERS = {"pdf": (render_pdf, "application/pdf"), "json": (render_json, "application/json")}
ACTIVE = ("queued", "running")


class Outcome(str, Enum):
    DONE = "done"  # file stored: acknowledge
    SKIPPED = "skipped"  # already done or failed (a redelivery): acknowledge
    RETRY = "retry"  # this attempt failed: try again after delay_s
    FAILED = "failed"  # failed for good: dead-letter


@dataclass
class JobResult:
    outcome: Outcome
    attempt: int = 0
    delay_s: float = 0.0
    error: str = ""


class PermanentJobError(Exception):
    """Retrying cannot help (e.g. an unknown format)."""


def report_filename(result: Result, report: Report) -> str:
    return f"fer-report-{as_utc(result.created_at):%Y%m%d-%H%M%S}-{report.id[:8]}.{report.format}"


def render(fmt: str, document: dict, result: Result, settings: Settings) -> bytes:
    if fmt not in RENDERERS:
        raise PermanentJobError(f"unknown report format {fmt!r}")
    if settings.render_delay_s:
        time.sleep(settings.render_delay_s)
    return RENDERERS[fmt][0](document, result_png(result, settings.annotated_max_side))


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
                if await session.get(Report, report_id) is None:
                    return JobResult(Outcome.FAILED, error=f"report {report_id} does not exist")
                return JobResult(Outcome.SKIPPED)
            if attempt > max_attempts:
                # Attempts also count deliveries whose worker died mid-job: a job that kills every worker
                # that takes it must stop somewhere too.
                return await self._fail(report_id, attempt, f"gave up after {max_attempts} attempts (workers stopped mid-job)")
            report = await session.get(Report, report_id)
            result = await session.scalar(select(Result).where(Result.id == report.result_id)
                                          .options(undefer(Result.annotated_png), undefer(Result.original_image)))

        try:
            if result is None:
                raise PermanentJobError("the result of this report no longer exists")
            document = build_document(result, report, utcnow())
            started = time.perf_counter()
            content = await asyncio.to_thread(render, report.format, document, result, self.settings)
            RENDER_SECONDS.labels(report.format).observe(time.perf_counter() - started)
        except PermanentJobError as exc:
            return await self._fail(report_id, attempt, str(exc))
        except Exception as exc:  # noqa: BLE001 - any render error is this job's failure, not the worker's
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("report %s attempt %d/%d failed: %s", report_id, attempt, max_attempts, reason)
            if attempt >= max_attempts:
                return await self._fail(report_id, attempt, f"rendering failed after {attempt} attempts: {reason}")
            delay = self.settings.retry_delays_s[attempt - 1]
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
                    filename=report_filename(result, report),
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
