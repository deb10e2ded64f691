"""A version announced on RabbitMQ by a training job is loaded into Triton without anyone asking."""
import asyncio
import uuid

import pika

from services.inference.training.announce import MODELS_EXCHANGE, VERSION_CREATED_KEY, VersionListener, announce_version
from tests.fixtures.triton import MODEL_NAME, export_random_resnet18


async def test_announced_version_is_loaded(inference_service, model_repository, amqp_url):
    registry = inference_service.registry
    queue = f"test.inference.versions.{uuid.uuid4().hex[:10]}"
    listener = VersionListener(amqp_url, queue, registry.load, asyncio.get_running_loop(), retry_s=0.5)
    listener.start()
    try:
        assert await asyncio.to_thread(listener.ready.wait, 30), "the listener did not start consuming"
        version = int((await asyncio.to_thread(export_random_resnet18, model_repository, 40)).name)
        assert (await registry.states()).get((MODEL_NAME, version)) != "READY"
        # A malformed message first: dropped, and the listener carries on.
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        connection.channel().basic_publish(MODELS_EXCHANGE, VERSION_CREATED_KEY, b"not json")
        connection.close()
        await asyncio.to_thread(announce_version, amqp_url, MODEL_NAME, version)
        for _ in range(120):
            if (await registry.states()).get((MODEL_NAME, version)) == "READY":
                break
            await asyncio.sleep(0.5)
        assert (await registry.states()).get((MODEL_NAME, version)) == "READY"
        assert registry.promoted(MODEL_NAME) != version  # loaded, not promoted: that is an administrator's call
    finally:
        await asyncio.to_thread(listener.stop)
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        connection.channel().queue_delete(queue)
        connection.close()
