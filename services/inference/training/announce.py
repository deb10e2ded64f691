"""New model versions on RabbitMQ, both ends: a training job's last step publishes {"name", "version"}
on the `fer.models` topic exchange (`python -m services.inference.training.announce`), and the
inference service's VersionListener loads each announced version into Triton, ready for an
administrator to promote.

The listener shares one durable queue among the replicas, so a version is loaded once; manual acks, so a
version is not lost while Triton is down (it is retried); one that cannot load (a broken export) is
logged and dropped rather than retried forever.

The training image carries this module without the rest of the service: standard library, pika and
ferkit only.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pika
from pika.exceptions import AMQPError

from ferkit import modelrepo
from ferkit.amqp import ReconnectingConsumer, connection_parameters

log = logging.getLogger(__name__)

MODELS_EXCHANGE = "fer.models"
VERSION_CREATED_KEY = "model.version.created"
# A broker restarting gets this many tries, 2 s, then 4 s... apart, before the step gives up announcing.
ANNOUNCE_ATTEMPTS = 4
ANNOUNCE_BACKOFF_S = 2.0


def _declare_exchange(channel) -> None:
    channel.exchange_declare(MODELS_EXCHANGE, exchange_type="topic", durable=True)


def announce_version(amqp_url: str, name: str, version: int) -> None:
    """Publish {"name", "version"} persistently on the fer.models topic exchange."""
    body = json.dumps({"name": name, "version": version}).encode()
    connection = pika.BlockingConnection(connection_parameters(amqp_url, "fer-training-announce"))
    try:
        channel = connection.channel()
        _declare_exchange(channel)
        channel.confirm_delivery()  # the job only succeeds once the broker has the message
        channel.basic_publish(MODELS_EXCHANGE, VERSION_CREATED_KEY, body, pika.BasicProperties(
            content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent))
    finally:
        connection.close()


class VersionListener(ReconnectingConsumer):
    """Consumes announcements in a thread of its own; `on_version(name, version)` runs on `loop`.
    An exception of a `retry_on` type (Triton down) puts the announcement back after `retry_s`."""

    def __init__(self, amqp_url: str, queue: str, on_version: Callable[[str, int], Awaitable[object]],
                 loop: asyncio.AbstractEventLoop, load_timeout_s: float = 300.0, retry_s: float = 5.0,
                 retry_on: tuple[type[BaseException], ...] = ()) -> None:
        super().__init__(amqp_url, "inference-model-versions")
        self.queue = queue
        self.on_version = on_version
        self.loop = loop
        self.load_timeout_s = load_timeout_s
        self.retry_s = retry_s
        self.retry_on = retry_on
        self._thread = threading.Thread(target=self.run, name="model-versions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        super().stop()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def setup(self, connection) -> None:
        channel = connection.channel()
        _declare_exchange(channel)
        channel.queue_declare(self.queue, durable=True)
        channel.queue_bind(self.queue, MODELS_EXCHANGE, VERSION_CREATED_KEY)
        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(self.queue, self._handle)
        log.info("listening for new model versions on %s", self.queue)

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
        except self.retry_on as exc:
            log.warning("the announced %s version %d is retried in %.0f s: %s", name, version, self.retry_s, exc)
            self.stopping.wait(self.retry_s)
            channel.basic_nack(method.delivery_tag, requeue=True)
            return
        except Exception as exc:  # a failed load must not stop the listener
            log.error("could not load the announced %s version %d: %s", name, version, exc)
        channel.basic_ack(method.delivery_tag)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name if __spec__ else __name__}",
                                     description="announce the latest exported version on RabbitMQ (AMQP_URL)")
    parser.add_argument("--repo", required=True, help="model repository root")
    parser.add_argument("--name", required=True, help="model name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)
    version = modelrepo.latest_version(Path(args.repo) / args.name)
    if version is None:
        raise FileNotFoundError(f"no exported version of {args.name!r} under {Path(args.repo) / args.name}")
    amqp_url = os.environ.get("AMQP_URL", "")
    if not amqp_url:
        # make dev without a broker: the local launcher's caller sees the job finish instead.
        log.info("AMQP_URL is not set: version %s/%d not announced", args.name, version)
        print(json.dumps({"name": args.name, "version": version, "announced": False}))
        return 0
    for attempt in range(1, ANNOUNCE_ATTEMPTS + 1):
        try:
            announce_version(amqp_url, args.name, version)
            break
        except (AMQPError, OSError) as exc:
            if attempt == ANNOUNCE_ATTEMPTS:
                # Exported is done: the version is listed, and promoting it loads it. Failing here would have
                # the Job run its whole script again: train again and export a duplicate version.
                log.warning("version %s/%d is exported but could not be announced (%s); promote it to serve it",
                            args.name, version, exc or type(exc).__name__)
                print(json.dumps({"name": args.name, "version": version, "announced": False}))
                return 0
            log.warning("announcing %s version %d failed (%s); trying again in %.0f s", args.name, version,
                        exc or type(exc).__name__, ANNOUNCE_BACKOFF_S * attempt)
            time.sleep(ANNOUNCE_BACKOFF_S * attempt)
    log.info("announced %s version %d on %s", args.name, version, MODELS_EXCHANGE)
    print(json.dumps({"name": args.name, "version": version, "announced": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
