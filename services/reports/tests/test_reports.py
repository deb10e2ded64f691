"""Reports end to end over real gRPC, RabbitMQ and a worker, on PostgreSQL and on SQLite."""
import io
import json
import base64
import hashlib
import uuid

import grpc
import pika
import pytest
from PIL import Image
from prometheus_client import REGISTRY
from pypdf import PdfReader

from services.reports.amqp import Topology, job_body, job_properties
from services.reports.tests.helpers import Client
from tests.fixtures.reports import sample_png

NOTES = "Taken at the launch party.\nEveryone was relieved."


@pytest.fixture(scope="module")
async def client(reports_address, reports_worker):
    client = Client(reports_address)
    yield client
    await client.close()


def owner() -> str:
    return str(uuid.uuid4())


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_pdf_report_end_to_end(client):
    me = owner()
    result = await client.save(me, notes=NOTES, labels=("happy", "surprise"))
    done_before = metric("reports_jobs_total", outcome="done")
    queued = await client.request(me, result.id, "pdf")
    assert queued.status == "queued" and queued.format == "pdf" and queued.result_id == result.id
    report = await client.wait(me, queued.id)
    assert report.status == "done", report.error
    assert report.content_type == "application/pdf" and report.filename.endswith(".pdf") and report.attempts == 1
    got = await client.file(me, queued.id)
    assert got.content.startswith(b"%PDF-") and len(got.content) == report.size_bytes
    assert got.content_type == "application/pdf" and got.filename == report.filename

    pdf = PdfReader(io.BytesIO(got.content))
    text = " ".join(page.extract_text() for page in pdf.pages)
    flat = " ".join(text.split())
    for expected in ("Facial expression report", "astronaut.png", "fer-resnet18 version 3", "Taken at the launch party.",
                     "Everyone was relieved.", "Face 1: happy (88.0%)", "Face 2: surprise (88.0%)", result.id, queued.id):
        assert expected in flat, expected
    for name in ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"):  # the table's seven columns
        assert name in flat
    assert flat.count("88.0%") >= 4  # top score in the table and on the bars, per face
    box = pdf.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # A4
    assert pdf.metadata.title == f"Facial expression report {queued.id}"
    assert any(page.images for page in pdf.pages)  # the annotated photo is in it
    assert metric("reports_jobs_total", outcome="done") >= done_before + 1
    assert metric("reports_render_seconds_count", format="pdf") >= 1


async def test_json_report_end_to_end(client):
    me = owner()
    png = sample_png()
    result = await client.save(me, notes=NOTES, labels=("sad",), original=png)
    report = await client.wait(me, (await client.request(me, result.id, "json")).id)
    assert report.status == "done", report.error
    got = await client.file(me, report.id)
    assert got.content_type == "application/json" and got.filename.endswith(".json")
    doc = json.loads(got.content)
    assert doc["schema"] == "fer-platform.report" and doc["schema_version"] == 1
    assert doc["report"]["id"] == report.id and doc["result"]["id"] == result.id
    assert doc["result"]["notes"] == NOTES and doc["model"] == {
        "name": "fer-resnet18", "version": 3, "classes": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]}
    (face,) = doc["faces"]
    assert face["label"] == "sad" and face["confidence"] == pytest.approx(0.88)
    assert set(face["scores"]) == set(doc["model"]["classes"]) and sum(face["scores"].values()) == pytest.approx(1.0)
    assert face["box"] == {"x": 172, "y": 40, "width": 110, "height": 130}
    assert doc["summary"] == {"faces": 1, "labels": {"sad": 1}, "uncertain": 0}
    image = doc["annotated_image"]
    drawn = base64.b64decode(image["data"])
    assert image["sha256"] == hashlib.sha256(drawn).hexdigest()
    # The photo with its face drawn on it, at the photo's size.
    assert drawn != png and Image.open(io.BytesIO(drawn)).size == Image.open(io.BytesIO(png)).size
    assert doc["report"]["generated_at"].endswith("Z")


async def test_no_face_report(client):
    me = owner()
    result = await client.save(me, labels=())
    report = await client.wait(me, (await client.request(me, result.id, "pdf")).id)
    text = PdfReader(io.BytesIO((await client.file(me, report.id)).content)).pages[0].extract_text()
    assert "No face was found" in text and "No notes." in text


async def test_redelivered_job_never_makes_a_second_file(client, reports_service, reports_settings):
    me = owner()
    result = await client.save(me)
    first = await client.wait(me, (await client.request(me, result.id, "json")).id)
    original = (await client.file(me, first.id)).content
    # The same job arrives twice more (a redelivery after a lost ack, a re-publish): nothing changes.
    topology = Topology(reports_settings)
    connection = pika.BlockingConnection(pika.URLParameters(reports_settings.amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    for _ in range(2):
        channel.basic_publish(topology.exchange, "job", job_body(first.id), job_properties(first.id), mandatory=True)
    connection.close()
    await wait_queue_empty(reports_settings)
    again = await client.get(me, first.id)
    assert again.attempts == first.attempts == 1 and again.updated_at == first.updated_at
    assert (await client.file(me, first.id)).content == original
    # And straight through the handler: a done report is skipped, not rendered.
    from services.reports.jobs import Outcome, ReportJobs

    assert (await ReportJobs(reports_settings, reports_service.sessions).run(first.id)).outcome is Outcome.SKIPPED


async def wait_queue_empty(settings, timeout_s: float = 10.0) -> None:
    import asyncio
    import time

    topology = Topology(settings)
    deadline = time.monotonic() + timeout_s
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        channel = connection.channel()
        while time.monotonic() < deadline:
            q = channel.queue_declare(topology.queue, passive=True).method
            if q.message_count == 0 and q.consumer_count:
                await asyncio.sleep(0.3)  # the last delivery may still be in the worker's hands
                return
            await asyncio.sleep(0.05)
    finally:
        connection.close()
    raise AssertionError("the job queue did not drain")


def dead_letters(settings) -> list[tuple[bytes, dict]]:
    topology = Topology(settings)
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    out = []
    try:
        channel = connection.channel()
        while True:
            method, props, body = channel.basic_get(topology.dead_queue, auto_ack=True)
            if method is None:
                return out
            out.append((body, props.headers or {}))
    finally:
        connection.close()


async def test_poison_job_is_dead_lettered_and_failed(client, reports_settings):
    me = owner()
    png = sample_png()
    # A photo that passes the header check but is cut short: every render attempt fails.
    result = await client.save(me, original=png[: len(png) // 3])
    dead_before = metric("reports_dead_lettered_total")
    retried_before = metric("reports_jobs_total", outcome="retried")
    report = await client.wait(me, (await client.request(me, result.id, "pdf")).id)
    assert report.status == "failed"
    assert report.attempts == reports_settings.max_attempts == 3
    assert "rendering failed after 3 attempts" in report.error and "truncated" in report.error, report.error
    assert metric("reports_jobs_total", outcome="retried") >= retried_before + 2
    letters = [(json.loads(body), headers) for body, headers in dead_letters(reports_settings)]
    mine = [headers for body, headers in letters if body["id"] == report.id]
    assert len(mine) == 1 and "after 3 attempts" in mine[0]["x-error"]
    assert metric("reports_dead_lettered_total") >= dead_before + 1
    # A failed report has no file; asking for one says why.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.file(me, report.id)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "failed" in caught.value.details()


async def test_unreadable_message_is_dead_lettered(client, reports_settings):
    topology = Topology(reports_settings)
    dead_before = metric("reports_dead_lettered_total")
    connection = pika.BlockingConnection(pika.URLParameters(reports_settings.amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(topology.exchange, "job", b"\x00not json", pika.BasicProperties(delivery_mode=2), mandatory=True)
    connection.close()
    await wait_queue_empty(reports_settings)
    assert b"\x00not json" in [body for body, _ in dead_letters(reports_settings)]
    assert metric("reports_dead_lettered_total") == dead_before + 1


async def test_request_validation(client):
    me = owner()
    result = await client.save(me)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.request(me, result.id, "docx")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    report = await client.wait(me, (await client.request(me, result.id, "PDF")).id)
    assert report.format == "pdf" and report.status == "done"
    for call in (client.get, client.file):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(owner(), report.id)  # another owner
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
