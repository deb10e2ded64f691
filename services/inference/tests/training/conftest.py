"""What the training-wing tests share: a queue bound to the model announcements."""
import uuid

import pika
import pytest

from services.inference.training.announce import MODELS_EXCHANGE, VERSION_CREATED_KEY


@pytest.fixture
def announcements(amqp_url):
    """(channel, queue): an exclusive queue bound to `fer.models` / `model.version.created`."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.exchange_declare(MODELS_EXCHANGE, exchange_type="topic", durable=True)
    queue = channel.queue_declare(f"test.models.{uuid.uuid4().hex}", exclusive=True, auto_delete=True).method.queue
    channel.queue_bind(queue, MODELS_EXCHANGE, routing_key=VERSION_CREATED_KEY)
    yield channel, queue
    connection.close()
