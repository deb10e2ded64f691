"""Entry point: `python -m services.reports.worker` consumes report jobs from RabbitMQ (AMQP_URL).

Manual acknowledgement, only after the file and the status are stored: a worker killed mid-job leaves
the message unacknowledged and the broker hands it to the next worker. A failed attempt is published
to the retry queue of its back-off step (confirmed) before the original is acknowledged; after the
last attempt the job goes to the dead-letter exchange and the report is `failed` with the reason.
"""
import asyncio
import logging
import signal
import time

from ferkit.amqp import ReconnectingConsumer
from ferkit.db import make_engine, make_sessionmaker
from ferkit.logs import setup_logging
from ferkit.metrics import start_metrics_server
from services.reports.amqp import Topology, job_properties, parse_job
from services.reports.config import Settings
from services.reports.jobs import Outcome, ReportJobs
from services.reports.metrics import DEAD_LETTERED, QUEUE_DEPTH

log = logging.getLogger(__name__)


class Worker(ReconnectingConsumer):
    """One consumer. `run()` blocks until `stop()` (from any thread or a signal handler)."""

    def __init__(self, settings: Settings, name: str = "reports-worker") -> None:
        if not settings.amqp_url:
            raise ValueError("the worker needs AMQP_URL (without it the server runs report jobs itself)")
        super().__init__(settings.amqp_url, name)
        self.settings = settings
        self.topology = Topology(settings)
        # The worker's own event loop drives the async database code between deliveries.
        self.loop = asyncio.new_event_loop()
        self.engine = make_engine(settings.database_url)
        self.jobs = ReportJobs(settings, make_sessionmaker(self.engine))
        self._consume_channel = None
        self._depth_at = 0.0

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.loop.run_until_complete(self.engine.dispose())
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
            report_id = parse_job(body)
        except ValueError as exc:
            # Unreadable: no report to mark; the queue's dead-letter exchange keeps it for operators.
            log.error("poison message dead-lettered: %s", exc)
            channel.basic_reject(tag, requeue=False)
            DEAD_LETTERED.inc()
            return
        try:
            result = self.loop.run_until_complete(self.jobs.run(report_id))
        except Exception:  # noqa: BLE001 - the database is down, most likely; the job itself may be fine
            log.exception("report %s could not be processed; handing the job back", report_id)
            self.stopping.wait(1.0)
            channel.basic_nack(tag, requeue=True)
            return
        if result.outcome is Outcome.RETRY:
            step = min(result.attempt, len(self.topology.retry_queues)) - 1
            headers = {"x-attempt": result.attempt, "x-last-error": result.error[:500]}
            publish.basic_publish("", self.topology.retry_queues[step], body, job_properties(report_id, headers), mandatory=True)
        elif result.outcome is Outcome.FAILED:
            headers = {"x-error": result.error[:1000], "x-attempts": result.attempt}
            publish.basic_publish(self.topology.dlx, "", body, job_properties(report_id, headers))
            DEAD_LETTERED.inc()
        # Only now: the file and status (or the retry message) are safely stored.
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
