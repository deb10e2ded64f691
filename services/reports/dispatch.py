"""How the server hands report ids to whoever renders them.

AmqpDispatcher: RabbitMQ with publisher confirms. The report row is committed before publishing and
flagged `published` only after the broker confirms; a re-publisher sends whatever is still unflagged
(broker down at request time, server killed in between), so no request is lost. A message sent twice
is harmless: the job is idempotent on the report id.

LocalDispatcher: no broker (`make dev` without AMQP_URL): an asyncio queue in the server that runs the
same job handler; at start it reloads every report not yet done, so a restart loses nothing either.
"""
import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from pika.exceptions import AMQPError
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from ferkit.db import utcnow
from services.reports.amqp import Publisher
from services.reports.config import Settings
from services.reports.jobs import ACTIVE, Outcome, ReportJobs
from services.reports.metrics import QUEUE_DEPTH
from services.reports.models import Report

log = logging.getLogger(__name__)


async def mark_published(sessions: async_sessionmaker, report_ids: list[str]) -> None:
    async with sessions() as session:
        await session.execute(update(Report).where(Report.id.in_(report_ids)).values(published=True))
        await session.commit()


class AmqpDispatcher:
    def __init__(self, settings: Settings, sessions: async_sessionmaker) -> None:
        self.settings = settings
        self.sessions = sessions
        self.publisher = Publisher(settings)
        # pika is not thread-safe: one thread owns the publisher's connection.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amqp-publisher")
        self._task: asyncio.Task | None = None
        self._down_until = 0.0

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def submit(self, report_id: str) -> bool:
        """True when the broker confirmed the job; False leaves it to the re-publisher.
        Right after a failure requests do not try at all: a broker that times out would otherwise
        hold every request (they share the one publisher thread) for the connect timeout."""
        if time.monotonic() < self._down_until:
            return False
        return await self._send(report_id)

    async def _send(self, report_id: str) -> bool:
        try:
            await self._call(self.publisher.publish, report_id)
        except (AMQPError, OSError) as exc:
            self._down_until = time.monotonic() + self.settings.republish_interval_s
            log.warning("broker unreachable; report %s will be published when it is back (%s)", report_id, exc or type(exc).__name__)
            return False
        self._down_until = 0.0
        await mark_published(self.sessions, [report_id])
        return True

    async def republish_pending(self, limit: int = 200) -> int:
        """Publishes reports saved but never confirmed by the broker, and reports that have made no
        progress for `stale_after_s` (their message was lost with the broker's data, or a queue was
        purged); returns how many went out. A job sent twice is harmless: the handler is idempotent."""
        now = utcnow()
        unpublished = and_(Report.published.is_(False), Report.created_at < now - timedelta(seconds=self.settings.republish_grace_s))
        stale = Report.updated_at < now - timedelta(seconds=self.settings.stale_after_s)
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(Report.id, Report.published, Report.status)
                    .where(Report.status.in_(ACTIVE), or_(unpublished, stale))
                    .order_by(Report.created_at)
                    .limit(limit)
                )
            ).all()
            revived = [row.id for row in rows if row.published]
            if revived:
                log.warning("%d report(s) made no progress for %.0f s; publishing their jobs again", len(revived), self.settings.stale_after_s)
                await session.execute(update(Report).where(Report.id.in_(revived), Report.status.in_(ACTIVE)).values(updated_at=now))
                await session.commit()
        sent = 0
        for row in rows:
            if not await self._send(row.id):
                break
            sent += 1
        if sent:
            log.info("re-published %d report job(s)", sent)
        return sent

    async def _relay(self) -> None:
        since_depth = float("inf")
        while True:
            try:
                await self.republish_pending()
                since_depth += self.settings.republish_interval_s
                if since_depth >= self.settings.depth_interval_s:
                    since_depth = 0.0
                    QUEUE_DEPTH.set(await self._call(self.publisher.queue_depth))
                else:
                    await self._call(self.publisher.keepalive)
            except (AMQPError, OSError) as exc:
                log.debug("broker still unreachable: %s", exc)
            except Exception:  # noqa: BLE001 - the relay must outlive a database hiccup
                log.exception("report re-publisher failed; trying again")
            await asyncio.sleep(self.settings.republish_interval_s)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._relay(), name="reports-republisher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._call(self.publisher.close)
        self._executor.shutdown(wait=True)


class LocalDispatcher:
    def __init__(self, settings: Settings, sessions: async_sessionmaker) -> None:
        self.settings = settings
        self.sessions = sessions
        self.jobs = ReportJobs(settings, sessions)
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    async def submit(self, report_id: str) -> bool:
        await mark_published(self.sessions, [report_id])
        self._put(report_id)
        return True

    def _put(self, report_id: str) -> None:
        self.queue.put_nowait(report_id)
        QUEUE_DEPTH.set(self.queue.qsize())

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            report_id = await self.queue.get()
            QUEUE_DEPTH.set(self.queue.qsize())
            try:
                result = await self.jobs.run(report_id)
            except Exception:  # noqa: BLE001 - e.g. the database is down: keep the job, try later
                log.exception("report %s could not be processed; trying again in 2 s", report_id)
                loop.call_later(2.0, self._put, report_id)
                continue
            if result.outcome is Outcome.RETRY:
                loop.call_later(result.delay_s, self._put, report_id)

    async def start(self) -> None:
        for report_id in await self.jobs.unfinished():
            self._put(report_id)
        self._tasks = [
            asyncio.create_task(self._consume(), name=f"reports-local-{i}") for i in range(max(1, self.settings.local_concurrency))
        ]
        log.info("report jobs run in-process (no AMQP_URL); %d waiting", self.queue.qsize())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def make_dispatcher(settings: Settings, sessions: async_sessionmaker):
    return AmqpDispatcher(settings, sessions) if settings.amqp_url else LocalDispatcher(settings, sessions)
