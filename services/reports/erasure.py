"""Erasing the data of deleted accounts: EraseOwner's work, and the eraser that makes it happen even when
this service was down at the moment of deletion.

The auth service writes a tombstone in the transaction that deletes an account and lists them, oldest
first, after a cursor (ListDeletedAccounts). Every REPORTS_ERASE_INTERVAL_S the eraser asks for the
tombstones after its cursor, erases each owner's results, reports, batches and videos, and only then
stores the new cursor (erasure_cursor): a crash in between repeats a page, which erasing again makes
harmless. Only
accounts auth says it deleted are erased, never owners it merely does not know (a wrong auth address
must not erase anyone).
"""
import asyncio
import logging
from dataclasses import dataclass

import grpc
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from fer.v1 import auth_pb2
from ferkit.db import utcnow
from services.reports.config import Settings
from services.reports.models import Batch, ErasureCursor, Report, Result, Video

log = logging.getLogger(__name__)

CURSOR_ROW = 1
PAGE_SIZE = 100


@dataclass(frozen=True)
class Erased:
    results: int
    reports: int
    batches: int
    videos: int


async def erase_owner(sessions: async_sessionmaker, owner_id: str) -> Erased:
    """Deletes every result (with its photo and annotated image), report, batch (with its items) and
    video (with its file and frames) of the owner, in one transaction; returns how many. Idempotent.
    A batch or video job still queued finds no row and is dropped."""
    async with sessions() as session:
        reports = (await session.execute(delete(Report).where(Report.owner_id == owner_id))).rowcount
        # Items, chunks and frames go with their batch or video (ON DELETE CASCADE).
        batches = (await session.execute(delete(Batch).where(Batch.owner_id == owner_id))).rowcount
        videos = (await session.execute(delete(Video).where(Video.owner_id == owner_id))).rowcount
        results = (await session.execute(delete(Result).where(Result.owner_id == owner_id))).rowcount
        await session.commit()
    erased = Erased(results, reports, batches, videos)
    if results or reports or batches or videos:
        log.info("erased %d result(s), %d report(s), %d batch(es) and %d video(s) of deleted account %s",
                 results, reports, batches, videos, owner_id)
    return erased


class Eraser:
    """The loop in the reports server; `tick` is one pass. Does nothing without an auth stub."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker, auth) -> None:
        self.settings = settings
        self.sessions = sessions
        self.auth = auth
        self._task: asyncio.Task | None = None

    async def cursor(self) -> str:
        async with self.sessions() as session:
            return await session.scalar(select(ErasureCursor.page_token).where(ErasureCursor.id == CURSOR_ROW)) or ""

    async def _store(self, previous: str, token: str) -> bool:
        """Moves the cursor from `previous` to `token`; False when another replica moved it meanwhile."""
        async with self.sessions() as session:
            moved = await session.scalar(
                update(ErasureCursor)
                .where(ErasureCursor.id == CURSOR_ROW, ErasureCursor.page_token == previous)
                .values(page_token=token, updated_at=utcnow())
                .returning(ErasureCursor.id)
            )
            await session.commit()
        return moved is not None

    async def tick(self) -> int:
        """Erases the accounts deleted since the stored cursor, a page at a time, storing the cursor after
        each page; returns how many accounts it went through. gRPC errors from auth propagate."""
        token = await self.cursor()
        seen = 0
        while True:
            page = await self.auth.ListDeletedAccounts(auth_pb2.ListDeletedAccountsRequest(page_token=token, page_size=PAGE_SIZE))
            for owner_id in page.user_ids:
                await erase_owner(self.sessions, owner_id)
            seen += len(page.user_ids)
            if page.next_page_token != token:
                if not await self._store(token, page.next_page_token):
                    return seen  # another replica is ahead: what it has not erased yet, it will
                token = page.next_page_token
            if len(page.user_ids) < PAGE_SIZE:
                return seen

    async def _run(self) -> None:
        interval = self.settings.erase_interval_s
        while True:
            try:
                await self.tick()
            except grpc.aio.AioRpcError as exc:
                log.warning("deleted accounts not erased this time: auth answered %s; trying again in %g s", exc.code().name, interval)
            except Exception:  # noqa: BLE001 - the eraser must outlive a database hiccup
                log.exception("the eraser failed; trying again in %g s", interval)
            await asyncio.sleep(interval)

    async def start(self) -> None:
        if self.auth is None:
            log.info("no auth service (REPORTS_AUTH_ADDR): deleted accounts' data is erased only when the gateway asks")
            return
        self._task = asyncio.create_task(self._run(), name="reports-eraser")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
