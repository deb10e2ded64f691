"""The batch job: what one delivery does with a batch id.

A delivery is a slice: it analyses the batch's queued photos, `batch_concurrency` at a time (they reach
the inference service together, so Triton batches them), until none is left or `job_slice_s` has passed;
then the batch is done, or the caller publishes the continuation. Each photo is analysed by
`analysis.analyse_and_store`, and its item is marked done (with the Result's id) in the transaction that
stores the Result and counts it: a redelivered slice finds the item done and skips it, so no photo is
analysed into two Results or counted twice.

A photo the inference service refuses (not an image, too large...) fails its item with the reason; the
other photos go on. The inference or auth service unreachable leaves the photos queued and the slice is
retried after a back-off (outcomes.backoff_s), for as long as it takes: an item is never lost. The batch
fails as a whole only when it cannot run at all (its account was deleted meanwhile).
"""
import asyncio
import logging
import time
from dataclasses import dataclass, field
from functools import partial

import grpc
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ferkit.db import utcnow
from services.reports.analysis import UpstreamError, analyse_and_store
from services.reports.config import Settings
from services.reports.metrics import BATCH_PHOTOS, BATCHES
from services.reports.models import Batch, BatchItem, Result
from services.reports.outcomes import ACTIVE, TRANSIENT, JobResult, Outcome, unclaimed, wait_for_upstreams

log = logging.getLogger(__name__)

ACCOUNT_GONE = "the account was deleted before this photo was analysed"


@dataclass
class _Slice:
    deadline: float
    progress: bool = False
    # Set when the slice must stop taking photos: why the rest waits, or why the batch cannot run.
    waiting: str = ""
    gone: str = ""
    pending: list[int] = field(default_factory=list)

    @property
    def stopped(self) -> bool:
        return bool(self.waiting or self.gone)


@dataclass(frozen=True)
class _Claimed:
    id: str
    owner_id: str
    notes: str
    mode: int
    attempts: int


async def batch_items(session: AsyncSession, batch_id: str) -> list[BatchItem]:
    """The batch's items, in upload order."""
    return list(await session.scalars(select(BatchItem).where(BatchItem.batch_id == batch_id).order_by(BatchItem.position)))


async def batch_items_and_results(session: AsyncSession, batch_id: str) -> tuple[list[BatchItem], dict[str, Result]]:
    """The batch's items, in upload order, and the Results of those done, by id."""
    items = await batch_items(session, batch_id)
    ids = [item.result_id for item in items if item.result_id]
    results = {r.id: r for r in await session.scalars(select(Result).where(Result.id.in_(ids)))} if ids else {}
    return items, results


class BatchJobs:
    def __init__(self, settings: Settings, sessions: async_sessionmaker, inference=None, auth=None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.inference = inference
        self.auth = auth

    async def run(self, batch_id: str) -> JobResult:
        """One slice; database errors propagate (the caller hands the job back)."""
        batch = await self._claim(batch_id)
        if batch is None:
            return await unclaimed(self.sessions, Batch, batch_id)
        if self.inference is None or self.auth is None:
            log.error("batch %s waits: this process has no inference or auth service (REPORTS_INFERENCE_ADDR, REPORTS_AUTH_ADDR)", batch_id)
            return await wait_for_upstreams(self.sessions, self.settings, Batch, batch.id, batch.attempts,
                                            "no inference or auth service is configured", progress=False)

        state = _Slice(deadline=time.monotonic() + self.settings.job_slice_s, pending=await self._queued(batch_id))

        async def lane() -> None:
            while state.pending and not state.stopped and time.monotonic() < state.deadline:
                await self._item(batch, state.pending.pop(0), state)

        await asyncio.gather(*(lane() for _ in range(max(1, self.settings.batch_concurrency))))
        if state.gone:
            return await self._fail(batch_id, state.gone)
        if not await self._queued(batch_id, limit=1):
            return await self._finish(batch_id)
        if state.waiting:
            return await wait_for_upstreams(self.sessions, self.settings, Batch, batch.id, batch.attempts, state.waiting, state.progress)
        return JobResult(Outcome.CONTINUE)

    async def _claim(self, batch_id: str) -> _Claimed | None:
        async with self.sessions() as session:
            row = (
                await session.execute(
                    update(Batch)
                    .where(Batch.id == batch_id, Batch.status.in_(ACTIVE))
                    .values(status="running", attempts=Batch.attempts + 1, updated_at=utcnow())
                    .returning(Batch.owner_id, Batch.notes, Batch.mode, Batch.attempts)
                )
            ).one_or_none()
            await session.commit()
        return None if row is None else _Claimed(batch_id, row.owner_id, row.notes, row.mode, row.attempts)

    async def _queued(self, batch_id: str, limit: int | None = None) -> list[int]:
        async with self.sessions() as session:
            query = (select(BatchItem.position).where(BatchItem.batch_id == batch_id, BatchItem.status == "queued")
                     .order_by(BatchItem.position).limit(limit))
            return list(await session.scalars(query))

    async def _item(self, batch: _Claimed, position: int, state: _Slice) -> None:
        async with self.sessions() as session:
            item = (
                await session.execute(
                    select(BatchItem.filename, BatchItem.content_type, BatchItem.image)
                    .where(BatchItem.batch_id == batch.id, BatchItem.position == position, BatchItem.status == "queued")
                )
            ).one_or_none()
        if item is None:
            return  # finished by another delivery meanwhile
        if self.settings.job_step_delay_s:
            await asyncio.sleep(self.settings.job_step_delay_s)
        try:
            stored = await analyse_and_store(
                self.settings, self.sessions, self.inference, self.auth,
                owner_id=batch.owner_id, image=item.image, content_type=item.content_type, filename=item.filename,
                notes=batch.notes, mode=batch.mode, claim=partial(self._item_done, batch.id, position),
            )
        except UpstreamError as exc:
            if exc.service == "auth" and exc.code == grpc.StatusCode.NOT_FOUND:
                state.gone = ACCOUNT_GONE
            elif exc.code in TRANSIENT:
                state.waiting = f"the {exc.service} service answered {exc.code.name} ({exc.details})"
            elif await self._item_failed(batch.id, position, exc.details):
                state.progress = True
            return
        except ValueError as exc:
            if await self._item_failed(batch.id, position, str(exc)):
                state.progress = True
            return
        if stored is not None:
            BATCH_PHOTOS.labels("done").inc()
            state.progress = True

    @staticmethod
    async def _item_done(batch_id: str, position: int, session: AsyncSession, result: Result) -> bool:
        """In the Result's transaction: the item takes the Result, only while it is still queued (the row
        lock makes a racing duplicate wait here, then find it done)."""
        taken = await session.scalar(
            update(BatchItem)
            .where(BatchItem.batch_id == batch_id, BatchItem.position == position, BatchItem.status == "queued")
            .values(status="done", result_id=result.id, faces=len(result.faces), error="", image=b"")
            .returning(BatchItem.position)
        )
        if taken is None:
            return False
        await session.execute(
            update(Batch).where(Batch.id == batch_id).values(done=Batch.done + 1, attempts=0, error="", updated_at=utcnow())
        )
        return True

    async def _item_failed(self, batch_id: str, position: int, reason: str) -> bool:
        async with self.sessions() as session:
            failed = await session.scalar(
                update(BatchItem)
                .where(BatchItem.batch_id == batch_id, BatchItem.position == position, BatchItem.status == "queued")
                .values(status="failed", error=reason[:1000], image=b"")
                .returning(BatchItem.position)
            )
            if failed is not None:
                await session.execute(
                    update(Batch).where(Batch.id == batch_id)
                    .values(done=Batch.done + 1, failed=Batch.failed + 1, attempts=0, updated_at=utcnow())
                )
            await session.commit()
        if failed is None:
            return False
        BATCH_PHOTOS.labels("failed").inc()
        log.info("batch %s: photo %d failed: %s", batch_id, position, reason)
        return True

    async def _finish(self, batch_id: str) -> JobResult:
        async with self.sessions() as session:
            finished = await session.scalar(
                update(Batch).where(Batch.id == batch_id, Batch.status.in_(ACTIVE))
                .values(status="done", error="", attempts=0, updated_at=utcnow()).returning(Batch.id)
            )
            await session.commit()
        if finished is None:
            return JobResult(Outcome.SKIPPED)
        BATCHES.labels("done").inc()
        log.info("batch %s done", batch_id)
        return JobResult(Outcome.DONE)

    async def _fail(self, batch_id: str, reason: str) -> JobResult:
        """The batch cannot run: its queued photos fail with the reason, and so does the batch."""
        async with self.sessions() as session:
            failed = (await session.execute(
                update(BatchItem).where(BatchItem.batch_id == batch_id, BatchItem.status == "queued")
                .values(status="failed", error=reason, image=b"")
            )).rowcount
            changed = await session.scalar(
                update(Batch).where(Batch.id == batch_id, Batch.status.in_(ACTIVE))
                .values(status="failed", error=reason, done=Batch.done + failed, failed=Batch.failed + failed, updated_at=utcnow())
                .returning(Batch.id)
            )
            await session.commit()
        if changed is not None:
            BATCHES.labels("failed").inc()
            log.error("batch %s failed: %s", batch_id, reason)
        return JobResult(Outcome.FAILED, error=reason)

    async def unfinished(self) -> list[str]:
        async with self.sessions() as session:
            return list(await session.scalars(select(Batch.id).where(Batch.status.in_(ACTIVE)).order_by(Batch.created_at)))

