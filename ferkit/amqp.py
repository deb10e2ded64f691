"""RabbitMQ through pika, the same way in every process: connection parameters with timeouts, and a
consumer that keeps its connection, reconnecting with back-off when the broker goes away."""
from __future__ import annotations

import logging
import threading
from urllib.parse import parse_qs, urlsplit

import pika
from pika.exceptions import AMQPError

log = logging.getLogger(__name__)

# What a connection uses unless AMQP_URL's query string says otherwise (e.g. ?heartbeat=30).
CONNECTION_DEFAULTS = {
    # Seconds between heartbeats (RabbitMQ's own default, made explicit): a dead peer is noticed
    # after two missed ones even where the broker turned them off.
    "heartbeat": 60,
    # A broker out of disk or memory blocks publishers: fail after this many seconds, never hang.
    "blocked_connection_timeout": 30,
    # TCP connect and socket operations, then the whole TCP + AMQP handshake.
    "socket_timeout": 5,
    "stack_timeout": 15,
    # One attempt per call: the callers decide when to try again.
    "connection_attempts": 1,
}


def connection_parameters(url: str, name: str) -> pika.URLParameters:
    """Parameters for `url`, named `name` in the broker's connection list."""
    params = pika.URLParameters(url)
    params.client_properties = {"connection_name": name}
    in_url = parse_qs(urlsplit(url).query)
    for key, value in CONNECTION_DEFAULTS.items():
        if key not in in_url:
            setattr(params, key, value)
    return params


class ReconnectingConsumer:
    """One blocking connection kept open until `stop()`: `setup(connection)` declares what it needs and
    starts consuming; deliveries are dispatched from `run()`, which calls `idle()` between them. A lost
    connection is opened again after a back-off that doubles up to `max_backoff_s`; deliveries not yet
    acknowledged go back to their queue with it."""

    def __init__(self, url: str, name: str, backoff_s: float = 0.5, max_backoff_s: float = 10.0, poll_s: float = 0.5) -> None:
        self.url = url
        self.name = name
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_s = poll_s
        self.connection: pika.BlockingConnection | None = None
        # Set while consuming; cleared when the connection is lost.
        self.ready = threading.Event()
        self.stopping = threading.Event()

    def setup(self, connection: pika.BlockingConnection) -> None:
        raise NotImplementedError

    def idle(self) -> None:
        """Called every `poll_s` or so while consuming."""

    def stop(self) -> None:
        """From any thread or a signal handler: `run()` returns within `poll_s` (after the delivery in hand)."""
        self.stopping.set()

    def run(self) -> None:
        """Consume until `stop()`."""
        backoff = self.backoff_s
        while not self.stopping.is_set():
            try:
                self._consume()
                backoff = self.backoff_s
            except (AMQPError, OSError) as exc:
                if self.stopping.is_set():
                    break
                log.warning("%s lost RabbitMQ (%s); reconnecting in %.1f s", self.name, exc or type(exc).__name__, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    def _consume(self) -> None:
        connection = pika.BlockingConnection(connection_parameters(self.url, self.name))
        self.connection = connection
        try:
            self.setup(connection)
            self.ready.set()
            while not self.stopping.is_set():
                connection.process_data_events(time_limit=self.poll_s)
                self.idle()
        finally:
            self.ready.clear()
            if connection.is_open:
                try:
                    connection.close()
                except AMQPError:
                    pass
