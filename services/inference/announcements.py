"""New model versions announced on RabbitMQ (the last step of a training job publishes {"name", "version"}
on the `fer.models` topic exchange): each one is loaded into Triton, ready for an administrator to
promote. One durable queue shared by every replica, so a version is loaded once; manual acks, so a
version is not lost while Triton is down (it is retried); one that cannot load (a broken export) is
logged and dropped rather than retried forever."""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable

from services.inference.training_jobs import MODELS_EXCHANGE, VERSION_CREATED_KEY
from services.inference.triton import TritonUnavailable

log = logging.getLogger(__name__)


class VersionListener:
    def __init__(self, amqp_url: str, queue: str, on_version: Callable[[str, int], Awaitable[object]],
                 loop: asyncio.AbstractEventLoop, load_timeout_s: float = 300.0, retry_s: float = 5.0) -> None:
        self.amqp_url = amqp_url
        self.queue = queue
        self.on_version = on_version
        self.loop = loop
        self.load_timeout_s = load_timeout_s
        self.retry_s = retry_s
        self.ready = threading.Event()
        self._stopping = threading.Event()
        self._connection = None
        self._thread = threading.Thread(target=self._run, name="model-versions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        connection = self._connection
        if connection is not None:
            try:
                connection.add_callback_threadsafe(connection.close)
            except Exception:  # already closed
                pass
        self._thread.join(timeout_s)

    def _run(self) -> None:
        import pika
        from pika.exceptions import AMQPError

        while not self._stopping.is_set():
            try:
                self._connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
                channel = self._connection.channel()
                channel.exchange_declare(MODELS_EXCHANGE, exchange_type="topic", durable=True)
                channel.queue_declare(self.queue, durable=True)
                channel.queue_bind(self.queue, MODELS_EXCHANGE, VERSION_CREATED_KEY)
                channel.basic_qos(prefetch_count=1)
                channel.basic_consume(self.queue, self._handle)
                self.ready.set()
                log.info("listening for new model versions on %s", self.queue)
                channel.start_consuming()
            except (AMQPError, OSError) as exc:
                if self._stopping.is_set():
                    break
                log.warning("model-version listener lost RabbitMQ (%s); reconnecting in %.0f s", exc, self.retry_s)
                self._stopping.wait(self.retry_s)
            finally:
                self.ready.clear()

    def _handle(self, channel, method, properties, body: bytes) -> None:
        try:
            message = json.loads(body)
            name, version = str(message["name"]), int(message["version"])
        except (ValueError, KeyError, TypeError) as exc:
            log.error("dropping a malformed version announcement %r: %s", body[:200], exc)
            channel.basic_ack(method.delivery_tag)
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self.on_version(name, version), self.loop)
            future.result(self.load_timeout_s)
            log.info("loaded the announced %s version %d", name, version)
        except TritonUnavailable as exc:
            log.warning("Triton is down; the announced %s version %d is retried in %.0f s: %s", name, version, self.retry_s, exc)
            self._stopping.wait(self.retry_s)
            channel.basic_nack(method.delivery_tag, requeue=True)
            return
        except Exception as exc:  # a failed load must not stop the listener
            log.error("could not load the announced %s version %d: %s", name, version, exc)
        channel.basic_ack(method.delivery_tag)
