"""What every job handler (report, batch, video) answers for one delivery, and what the worker and the
in-process queue do with it."""
import logging
from dataclasses import dataclass
from enum import Enum

import grpc
from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker

from ferkit.db import utcnow
from services.reports.config import Settings

log = logging.getLogger(__name__)

# Rows a job still has work on.
ACTIVE = ("queued", "running")
# Answers of the inference or auth service that say "not now" rather than "not this photo (or frame)":
# the work stays queued for a later slice.
TRANSIENT = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
})


class Outcome(str, Enum):
    DONE = "done"  # finished and stored: acknowledge
    SKIPPED = "skipped"  # already done or failed (a redelivery): acknowledge
    CONTINUE = "continue"  # a slice of the work is stored and more remains: publish the continuation, then acknowledge
    RETRY = "retry"  # this attempt failed: try again after delay_s
    FAILED = "failed"  # failed for good: dead-letter


@dataclass
class JobResult:
    outcome: Outcome
    # Which back-off step a retry waits on (1 = the first).
    attempt: int = 0
    delay_s: float = 0.0
    error: str = ""


async def unclaimed(sessions: async_sessionmaker, table, row_id: str) -> JobResult:
    """A job whose claim took no row: a redelivery of finished work (SKIPPED), or a row that does not
    exist (FAILED)."""
    async with sessions() as session:
        exists = await session.get(table, row_id) is not None
    return JobResult(Outcome.SKIPPED) if exists else JobResult(Outcome.FAILED, error=f"{table.__name__.lower()} {row_id} does not exist")


def backoff_s(settings: Settings, streak: int) -> float:
    """The wait before slice `streak` of a batch or video that made no progress (1 = the first): the
    report retry delays in turn, then the last one for as long as it takes. Never given up: the photos
    and frames wait for the inference or auth service to come back."""
    delays = settings.retry_delays_s
    return delays[min(max(streak, 1), len(delays)) - 1] if delays else 1.0


async def wait_for_upstreams(sessions: async_sessionmaker, settings: Settings, table, row_id: str, attempts: int,
                             reason: str, progress: bool) -> JobResult:
    """A batch or video (`table`) that cannot go on now: says why on its row and answers the retry. The
    back-off grows only while slices make no progress at all."""
    streak = 1 if progress else attempts
    delay = backoff_s(settings, streak)
    async with sessions() as session:
        await session.execute(
            update(table).where(table.id == row_id, table.status.in_(ACTIVE))
            .values(error=f"waiting: {reason}; trying again in {delay:g} s", updated_at=utcnow())
        )
        await session.commit()
    log.warning("%s %s waits %g s: %s", table.__name__.lower(), row_id, delay, reason)
    return JobResult(Outcome.RETRY, attempt=streak, delay_s=delay, error=reason)
