"""How the server hands jobs (reports, batches, videos) to whoever runs them, and the one table from a
job's kind to its handler that the worker and the in-process queue share.

AmqpDispatcher: RabbitMQ with publisher confirms. The row is committed before publishing and flagged
`published` only after the broker confirms; a re-publisher sends whatever is still unflagged (broker
down at request time, server killed in between), and whatever made no progress for `stale_after_s`, so
no request is lost. A message sent twice is harmless: every handler is idempotent on its row.

LocalDispatcher: no broker (`make dev` without AMQP_URL): an asyncio queue in the server that runs the
same handlers; at start it reloads every job not yet finished, so a restart loses nothing either.
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
from services.reports.amqp import Job, Publisher
from services.reports.batches import BatchJobs
from services.reports.config import Settings
from services.reports.jobs import ReportJobs
from services.reports.metrics import QUEUE_DEPTH
from services.reports.models import Batch, Report, Video
from services.reports.outcomes import ACTIVE, JobResult, Outcome
from services.reports.videos import VideoJobs

log = logging.getLogger(__name__)

# The table each kind of job keeps its rows in (status, published, created_at, updated_at).
TABLES = {"report": Report, "batch": Batch, "video": Video}


class JobRunner:
    """Runs one delivery of any kind of job: a report render, or a slice of a batch or a video.
    `inference` and `auth` are the stubs batches and videos analyse with (None: they wait)."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker, inference=None, auth=None) -> None:
        self.videos = VideoJobs(settings, sessions, inference)
        self.handlers = {
            "report": ReportJobs(settings, sessions),
            "batch": BatchJobs(settings, sessions, inference, auth),
            "video": self.videos,
        }

    async def run(self, job: Job) -> JobResult:
        return await self.handlers[job.kind].run(job.id)

    async def unfinished(self) -> list[Job]:
        """Every job not yet finished, oldest first within each kind."""
        return [Job(kind, row_id) for kind, handler in self.handlers.items() for row_id in await handler.unfinished()]

    def close(self) -> None:
        self.videos.close()


async def mark_published(sessions: async_sessionmaker, job: Job) -> None:
    table = TABLES[job.kind]
    async with sessions() as session:
        await session.execute(update(table).where(table.id == job.id).values(published=True))
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

    async def submit(self, job: Job) -> bool:
        """True when the broker confirmed the job; False leaves it to the re-publisher.
        Right after a failure requests do not try at all: a broker that times out would otherwise
        hold every request (they share the one publisher thread) for the connect timeout."""
        if time.monotonic() < self._down_until:
            return False
        return await self._send(job)

    async def _send(self, job: Job) -> bool:
        try:
            await self._call(self.publisher.publish, job)
        except (AMQPError, OSError) as exc:
            self._down_until = time.monotonic() + self.settings.republish_interval_s
            log.warning("broker unreachable; %s %s will be published when it is back (%s)", job.kind, job.id, exc or type(exc).__name__)
            return False
        self._down_until = 0.0
        await mark_published(self.sessions, job)
        return True

    async def republish_pending(self, limit: int = 200) -> int:
        """Publishes the jobs of rows saved but never confirmed by the broker, and of rows that have made
        no progress for `stale_after_s` (their message was lost with the broker's data, or a queue was
        purged); returns how many went out. A job sent twice is harmless: the handlers are idempotent."""
        now = utcnow()
        pending: list[Job] = []
        async with self.sessions() as session:
            for kind, table in TABLES.items():
                unpublished = and_(table.published.is_(False), table.created_at < now - timedelta(seconds=self.settings.republish_grace_s))
                stale = table.updated_at < now - timedelta(seconds=self.settings.stale_after_s)
                rows = (
                    await session.execute(
                        select(table.id, table.published)
                        .where(table.status.in_(ACTIVE), or_(unpublished, stale))
                        .order_by(table.created_at)
                        .limit(limit)
                    )
                ).all()
                revived = [row.id for row in rows if row.published]
                if revived:
                    log.warning("%d %s job(s) made no progress for %.0f s; publishing them again", len(revived), kind, self.settings.stale_after_s)
                    await session.execute(update(table).where(table.id.in_(revived), table.status.in_(ACTIVE)).values(updated_at=now))
                    await session.commit()
                pending += [Job(kind, row.id) for row in rows]
        sent = 0
        for job in pending:
            if not await self._send(job):
                break
            sent += 1
        if sent:
            log.info("re-published %d job(s)", sent)
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
                log.exception("the re-publisher failed; trying again")
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
    def __init__(self, settings: Settings, sessions: async_sessionmaker, inference=None, auth=None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.jobs = JobRunner(settings, sessions, inference, auth)
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    async def submit(self, job: Job) -> bool:
        await mark_published(self.sessions, job)
        self._put(job)
        return True

    def _put(self, job: Job) -> None:
        self.queue.put_nowait(job)
        QUEUE_DEPTH.set(self.queue.qsize())

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self.queue.get()
            QUEUE_DEPTH.set(self.queue.qsize())
            try:
                result = await self.jobs.run(job)
            except Exception:  # noqa: BLE001 - e.g. the database is down: keep the job, try later
                log.exception("%s %s could not be processed; trying again in 2 s", job.kind, job.id)
                loop.call_later(2.0, self._put, job)
                continue
            if result.outcome is Outcome.CONTINUE:
                self._put(job)  # behind the jobs that waited meanwhile
            elif result.outcome is Outcome.RETRY:
                loop.call_later(result.delay_s, self._put, job)

    async def start(self) -> None:
        for job in await self.jobs.unfinished():
            self._put(job)
        self._tasks = [
            asyncio.create_task(self._consume(), name=f"reports-local-{i}") for i in range(max(1, self.settings.local_concurrency))
        ]
        log.info("jobs run in-process (no AMQP_URL); %d waiting", self.queue.qsize())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.jobs.close()


def make_dispatcher(settings: Settings, sessions: async_sessionmaker, inference=None, auth=None):
    """RabbitMQ where AMQP_URL is set (the worker runs the jobs), else the in-process queue, which runs
    batches and videos with these inference and auth stubs."""
    return AmqpDispatcher(settings, sessions) if settings.amqp_url else LocalDispatcher(settings, sessions, inference, auth)
