"""RabbitMQ topology, job messages and a confirming publisher (pika), shared by the server and the worker.

A message is {"kind": "report" | "batch" | "video", "id": <row id>, "v": 2}, on one queue for all three.

    {prefix}            direct exchange; routing key "job" → {prefix}.jobs
    {prefix}.jobs       the work queue; rejected messages dead-letter to {prefix}.dlx
    {prefix}.retry.<ms> one per back-off step: messages wait out the queue's TTL, then dead-letter back
                        to {prefix} / "job" (a queue per delay, so a long wait never holds up a short one)
    {prefix}.dlx        fanout exchange → {prefix}.dead, where jobs that failed for good are kept for operators
"""
import json
import threading
from typing import NamedTuple

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError

from ferkit.amqp import connection_parameters
from services.reports.config import Settings

ROUTING_KEY = "job"
MESSAGE_VERSION = 2
KINDS = ("report", "batch", "video")


class Job(NamedTuple):
    """What one message asks for: the kind of job and the id of its row."""

    kind: str
    id: str


class Topology:
    def __init__(self, settings: Settings) -> None:
        p = settings.queue_prefix
        self.exchange = p
        self.queue = f"{p}.jobs"
        self.dlx = f"{p}.dlx"
        self.dead_queue = f"{p}.dead"
        self.retry_queues = [f"{p}.retry.{int(round(d * 1000))}ms" for d in settings.retry_delays_s]
        self.retry_delays_ms = [int(round(d * 1000)) for d in settings.retry_delays_s]

    def declare(self, channel: BlockingChannel) -> None:
        """Idempotent: the server and every worker declare the same names with the same arguments."""
        channel.exchange_declare(self.exchange, exchange_type="direct", durable=True)
        channel.exchange_declare(self.dlx, exchange_type="fanout", durable=True)
        channel.queue_declare(self.dead_queue, durable=True)
        channel.queue_bind(self.dead_queue, self.dlx)
        channel.queue_declare(self.queue, durable=True, arguments={"x-dead-letter-exchange": self.dlx})
        channel.queue_bind(self.queue, self.exchange, routing_key=ROUTING_KEY)
        for name, ttl in zip(self.retry_queues, self.retry_delays_ms):
            channel.queue_declare(
                name,
                durable=True,
                arguments={
                    "x-message-ttl": ttl,
                    "x-dead-letter-exchange": self.exchange,
                    "x-dead-letter-routing-key": ROUTING_KEY,
                },
            )

    def names(self) -> tuple[list[str], list[str]]:
        """(queues, exchanges), for clean-up."""
        return [self.queue, self.dead_queue, *self.retry_queues], [self.exchange, self.dlx]


def job_body(job_id: str, kind: str = "report") -> bytes:
    return json.dumps({"kind": kind, "id": job_id, "v": MESSAGE_VERSION}).encode()


def parse_job(body: bytes) -> Job:
    """The job a message asks for; ValueError for anything else (a poison message). Version 1 messages,
    {"report_id": ...}, still in queues from before version 2, are report jobs."""
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        job = Job("report", data["report_id"]) if data.get("v", 1) == 1 else Job(data["kind"], data["id"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a job message: {exc}") from None
    if job.kind not in KINDS:
        raise ValueError(f"unknown job kind {str(job.kind)[:20]!r}")
    if not isinstance(job.id, str) or not 0 < len(job.id) <= 64:
        raise ValueError("the job id must be a short string")
    return job


def job_properties(job_id: str, headers: dict | None = None) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=job_id,
        headers=headers or {},
    )


class Publisher:
    """A blocking pika connection with publisher confirms. pika connections are not thread-safe, so
    every call must come from one thread (the server runs them in a single-thread executor)."""

    def __init__(self, settings: Settings, name: str = "reports-publisher") -> None:
        self.settings = settings
        self.topology = Topology(settings)
        self.name = name
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._owner: int | None = None

    def _open(self) -> BlockingChannel:
        if self._channel is not None and self._channel.is_open and self._connection.is_open:
            return self._channel
        self.close()
        self._connection = pika.BlockingConnection(connection_parameters(self.settings.amqp_url, self.name))
        channel = self._connection.channel()
        self.topology.declare(channel)
        channel.confirm_delivery()
        self._channel = channel
        return channel

    def publish(self, job: Job) -> None:
        """Returns once the broker has confirmed the message (persisted); raises on any failure.
        A stale connection (broker restarted, heartbeat missed) gets one fresh try."""
        self._check_thread()
        for attempt in (1, 2):
            try:
                channel = self._open()
                # mandatory: a message no queue takes is returned as an error, not silently dropped.
                channel.basic_publish(self.topology.exchange, ROUTING_KEY, job_body(job.id, job.kind), job_properties(job.id), mandatory=True)
                return
            except AMQPError:
                self.close()
                if attempt == 2:
                    raise

    def queue_depth(self) -> int:
        self._check_thread()
        try:
            return self._open().queue_declare(self.topology.queue, passive=True).method.message_count
        except AMQPError:
            self.close()
            raise

    def keepalive(self) -> None:
        """Lets pika answer heartbeats while the connection is idle."""
        if self._connection is not None and self._connection.is_open:
            try:
                self._connection.process_data_events(0)
            except AMQPError:
                self.close()

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except AMQPError:
                pass

    def _check_thread(self) -> None:
        me = threading.get_ident()
        if self._owner is None:
            self._owner = me
        elif self._owner != me:
            raise RuntimeError("Publisher used from two threads; pika connections are not thread-safe")
