"""Entry point: `python -m services.reports.worker` consumes jobs (reports, batches, videos) from
RabbitMQ (AMQP_URL).

Manual acknowledgement, only after the work is stored: a worker killed mid-job leaves the message
unacknowledged and the broker hands it to the next worker. A batch or video delivery does one slice
(`job_slice_s`); when work remains, its continuation is published (confirmed) before the delivery is
acknowledged, so the job is in the queue at every moment, and pika answers heartbeats between slices.
A failed attempt is published to the retry queue of its back-off step (confirmed) before the original
is acknowledged; after the last attempt a report goes to the dead-letter exchange, `failed` with the
reason. Batches and videos waiting for the inference or auth service stay on the last step's delay.
"""
import asyncio
import logging
import signal
import time

from ferkit.amqp import ReconnectingConsumer
from ferkit.db import make_engine, make_sessionmaker
from ferkit.logs import setup_logging
from ferkit.metrics import start_metrics_server
from services.reports.amqp import ROUTING_KEY, Topology, job_body, job_properties, parse_job
from services.reports.analysis import open_upstreams
from services.reports.config import Settings
from services.reports.dispatch import JobRunner
from services.reports.metrics import DEAD_LETTERED, QUEUE_DEPTH
from services.reports.outcomes import Outcome

log = logging.getLogger(__name__)


class Worker(ReconnectingConsumer):
    """One consumer. `run()` blocks until `stop()` (from any thread or a signal handler)."""

    def __init__(self, settings: Settings, name: str = "reports-worker") -> None:
        if not settings.amqp_url:
            raise ValueError("the worker needs AMQP_URL (without it the server runs the jobs itself)")
        super().__init__(settings.amqp_url, name)
        self.settings = settings
        self.topology = Topology(settings)
        # The worker's own event loop drives the async database and gRPC code of each delivery.
        self.loop = asyncio.new_event_loop()
        self.engine = make_engine(settings.database_url)
        self.jobs: JobRunner | None = None
        self.channels = []
        self._consume_channel = None
        self._depth_at = 0.0

    async def _open(self) -> None:
        """The gRPC channels batches and videos analyse with, made inside the worker's loop (grpc.aio
        channels belong to the loop they are made in)."""
        channels, inference, auth = open_upstreams(self.settings)
        self.channels.extend(channels)
        self.jobs = JobRunner(self.settings, make_sessionmaker(self.engine), inference, auth)

    async def _close(self) -> None:
        if self.jobs is not None:
            self.jobs.close()
        for channel in self.channels:
            await channel.close()
        await self.engine.dispose()

    def run(self) -> None:
        self.loop.run_until_complete(self._open())
        try:
            super().run()
        finally:
            self.loop.run_until_complete(self._close())
            self.loop.close()

    def setup(self, connection) -> None:
        consume = connection.channel()
        self.topology.declare(consume)
        consume.basic_qos(prefetch_count=self.settings.prefetch_count)
        publish = connection.channel()
        publish.confirm_delivery()
        consume.basic_consume(self.topology.queue, lambda ch, m, p, b: self._on_message(ch, publish, m, b))
        self._consume_channel, self._depth_at = consume, 0.0
        log.info("consuming %s", self.topology.queue)

    def idle(self) -> None:
        if time.monotonic() - self._depth_at >= self.settings.depth_interval_s:
            self._depth_at = time.monotonic()
            QUEUE_DEPTH.set(self._consume_channel.queue_declare(self.topology.queue, passive=True).method.message_count)

    def _on_message(self, channel, publish, method, body: bytes) -> None:
        tag = method.delivery_tag
        try:
            job = parse_job(body)
        except ValueError as exc:
            # Unreadable: no row to mark; the queue's dead-letter exchange keeps it for operators.
            log.error("poison message dead-lettered: %s", exc)
            channel.basic_reject(tag, requeue=False)
            DEAD_LETTERED.inc()
            return
        try:
            result = self.loop.run_until_complete(self.jobs.run(job))
        except Exception:  # noqa: BLE001 - the database is down, most likely; the job itself may be fine
            log.exception("%s %s could not be processed; handing the job back", job.kind, job.id)
            self.stopping.wait(1.0)
            channel.basic_nack(tag, requeue=True)
            return
        if result.outcome is Outcome.CONTINUE or (result.outcome is Outcome.RETRY and not self.topology.retry_queues):
            publish.basic_publish(self.topology.exchange, ROUTING_KEY, job_body(job.id, job.kind), job_properties(job.id), mandatory=True)
        elif result.outcome is Outcome.RETRY:
            step = min(result.attempt, len(self.topology.retry_queues)) - 1
            headers = {"x-attempt": result.attempt, "x-last-error": result.error[:500]}
            publish.basic_publish("", self.topology.retry_queues[step], body, job_properties(job.id, headers), mandatory=True)
        elif result.outcome is Outcome.FAILED:
            headers = {"x-error": result.error[:1000], "x-attempts": result.attempt}
            publish.basic_publish(self.topology.dlx, "", body, job_properties(job.id, headers))
            DEAD_LETTERED.inc()
        # Only now: the work and its status (or the message that carries the job on) are safely stored.
        channel.basic_ack(tag)


def main() -> None:
    settings = Settings()
    setup_logging("reports-worker", settings.log_level, settings.log_file)
    # pika logs every failed connection attempt at ERROR with its traceback; ours say it once, plainly.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    try:
        worker = Worker(settings)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    start_metrics_server(settings.worker_metrics_port, settings.host)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    worker.run()
    log.info("worker stopped")


if __name__ == "__main__":
    main()
