"""Batches of photos through the real reports service, a worker on RabbitMQ, the real inference service
and Triton, and the real auth service counting analyses (PostgreSQL)."""
import csv
import io
import json
import re
import signal

import grpc
import pytest
from prometheus_client import REGISTRY
from pypdf import PdfReader
from sqlalchemy import func, select

from fer.v1 import common_pb2, reports_pb2
from ferkit.vision import CLASSES
from services.reports.models import BatchItem, Result
from services.reports.tests.helpers import Client
from tests.fixtures.auth import changed_settings
from tests.fixtures.reports import astronaut, faceless_png, spawn_worker, start_worker_thread


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def expect_code(code, call) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details()


async def stored(analysis, model, **where) -> int:
    async with analysis.servicer.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).filter_by(**where))


async def test_a_batch_is_analysed_to_the_end_by_the_worker(analysis):
    me = await analysis.account()
    photos = [("astronaut.png", astronaut()), ("sky.png", faceless_png()), ("broken.png", astronaut()[:300]),
              ("astronaut.jpg", astronaut("JPEG"))]
    done_before, failed_before = metric("reports_batch_photos_total", outcome="done"), metric("reports_batch_photos_total", outcome="failed")
    skipped = [("../etc/passwd", "path outside the archive"), ("=1+1.txt", "not an image")]
    created = await analysis.create_batch(me, photos, skipped=skipped, notes="a folder")
    assert created.status == "queued" and created.total == 6 and created.done == 2 and created.failed == 2
    assert [item.status for item in created.items] == ["queued"] * 4 + ["failed"] * 2

    batch = await analysis.wait("batch", me, created.id)
    assert batch.status == "done", batch.error
    assert (batch.done, batch.total, batch.failed) == (6, 6, 3)
    items = {item.filename: item for item in batch.items}
    assert [item.filename for item in batch.items] == ["astronaut.png", "sky.png", "broken.png", "astronaut.jpg", "../etc/passwd", "=1+1.txt"]
    for name in ("astronaut.png", "sky.png", "astronaut.jpg"):
        assert items[name].status == "done" and items[name].result_id and not items[name].error
    assert items["astronaut.png"].faces == 1 and items["sky.png"].faces == 0
    # The photo the inference service refuses fails with its reason; the others are analysed all the same.
    assert items["broken.png"].status == "failed" and not items["broken.png"].result_id
    assert "image" in items["broken.png"].error.lower(), items["broken.png"].error
    assert items["../etc/passwd"].error == "path outside the archive"

    # Each analysed photo is a Result in the history, with the batch's notes, and counted once.
    history = await analysis.stub.ListResults(reports_pb2.ListResultsRequest(owner_id=me))
    assert {r.id for r in history.results} == {items[n].result_id for n in ("astronaut.png", "sky.png", "astronaut.jpg")}
    assert {r.notes for r in history.results} == {"a folder"}
    assert await analysis.usage(me) == 3
    # The photos wait in the items only until they are analysed: the Results keep them.
    async with analysis.servicer.sessions() as session:
        leftovers = await session.scalar(select(func.count()).select_from(BatchItem)
                                         .where(BatchItem.batch_id == batch.id, func.length(BatchItem.image) > 0))
    assert leftovers == 0
    assert metric("reports_batch_photos_total", outcome="done") >= done_before + 3
    assert metric("reports_batch_photos_total", outcome="failed") >= failed_before + 1

    got = await analysis.stub.GetBatchCsv(reports_pb2.GetBatchRequest(owner_id=me, id=batch.id))
    assert got.content_type.startswith("text/csv") and re.fullmatch(rf"fer-batch-\d{{8}}-\d{{6}}-{batch.id[:8]}\.csv", got.filename)
    rows = list(csv.reader(io.StringIO(got.content.decode())))
    assert rows[0] == ["filename", "face", "x", "y", "width", "height", "label", *CLASSES, "error"]
    by_name = {}
    for row in rows[1:]:
        by_name.setdefault(row[0], []).append(row)
    # A name a spreadsheet would run as a formula is written as text.
    assert set(by_name) == {"astronaut.png", "sky.png", "broken.png", "astronaut.jpg", "../etc/passwd", "'=1+1.txt"}
    (face,) = by_name["astronaut.png"]
    x, y, w, h = map(int, face[2:6])
    assert face[1] == "1" and 150 < x < 210 and 30 < y < 90 and 70 < w < 130
    scores = [float(s) for s in face[7:14]]
    assert abs(sum(scores) - 1) < 1e-3 and face[6] == CLASSES[scores.index(max(scores))]
    assert by_name["sky.png"] == [["sky.png", "", "", "", "", "", "", *[""] * 7, ""]]  # no face: one row, empty label
    assert by_name["broken.png"][0][6] == "" and by_name["broken.png"][0][-1] == items["broken.png"].error

    # Reports on the batch, as on a single photo.
    client = Client(analysis.settings.grpc_address)
    try:
        asked = {fmt: await analysis.stub.RequestReport(reports_pb2.RequestReportRequest(owner_id=me, batch_id=batch.id, format=fmt))
                 for fmt in ("json", "pdf")}
        assert asked["json"].batch_id == batch.id and not asked["json"].result_id and not asked["json"].video_id
        reports = {fmt: await client.wait(me, report.id, timeout_s=60) for fmt, report in asked.items()}
        assert [r.status for r in reports.values()] == ["done", "done"], [r.error for r in reports.values()]
        doc = json.loads((await client.file(me, reports["json"].id)).content)
        pdf = (await client.file(me, reports["pdf"].id)).content
    finally:
        await client.close()
    assert doc["kind"] == "batch" and doc["batch"]["id"] == batch.id and doc["batch"]["notes"] == "a folder"
    assert doc["summary"]["photos"] == 6 and doc["summary"]["analysed"] == 3 and doc["summary"]["failed"] == 3
    assert doc["summary"]["faces"] == 2 and sum(doc["summary"]["labels"].values()) == 2
    assert [p["filename"] for p in doc["photos"]] == [item.filename for item in batch.items]
    assert doc["photos"][0]["result_id"] == items["astronaut.png"].result_id and len(doc["photos"][0]["faces"]) == 1
    assert doc["photos"][2]["error"] == items["broken.png"].error and "annotated_image" not in doc
    text = " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).split())
    for expected in ("Batch expression report", "3 analysed, 3 failed, of 6", "astronaut.png", "sky.png", "no face",
                     "path outside the archive", "a folder", batch.id):
        assert expected in text, expected


async def test_batches_are_listed_newest_first_and_refused_when_bad(analysis):
    me = await analysis.account()
    first = await analysis.create_batch(me, [("a.png", astronaut(size=128))])
    second = await analysis.create_batch(me, [("b.png", astronaut(size=128))])
    page = await analysis.stub.ListBatches(reports_pb2.ListBatchesRequest(owner_id=me, page=common_pb2.PageRequest(page_size=1)))
    assert [b.id for b in page.batches] == [second.id] and page.page.total == 2 and not page.batches[0].items
    rest = await analysis.stub.ListBatches(reports_pb2.ListBatchesRequest(
        owner_id=me, page=common_pb2.PageRequest(page_size=1, page_token=page.page.next_page_token)))
    assert [b.id for b in rest.batches] == [first.id] and not rest.page.next_page_token

    limits = analysis.servicer.settings
    bad = {
        "at least one photo": analysis.create_batch(me, [], skipped=[("notes.txt", "not an image")]),
        "empty": analysis.create_batch(me, [("empty.png", b"")]),
        "notes": analysis.create_batch(me, [("a.png", b"x")], notes="n" * (limits.max_notes_chars + 1)),
        "account id": analysis.create_batch("not-an-id", [("a.png", b"x")]),
        f"at most {limits.batch_max_photos} photos": analysis.create_batch(me, [("a.png", b"x")] * (limits.batch_max_photos + 1)),
        "NUL": analysis.create_batch(me, [("a\x00.png", b"x")]),
    }
    for reason, call in bad.items():
        assert reason in await expect_code(grpc.StatusCode.INVALID_ARGUMENT, call)
    for ids in ({}, {"batch_id": first.id, "result_id": first.id}):
        assert "exactly one" in await expect_code(grpc.StatusCode.INVALID_ARGUMENT, analysis.stub.RequestReport(
            reports_pb2.RequestReportRequest(owner_id=me, format="pdf", **ids)))
    assert (await analysis.stub.ListBatches(reports_pb2.ListBatchesRequest(owner_id=me))).page.total == 2
    await analysis.wait("batch", me, second.id)
    await analysis.wait("batch", me, first.id)


async def test_another_owners_batch_is_not_found(analysis):
    me, other = await analysis.account(), await analysis.account()
    batch = await analysis.create_batch(me, [("a.png", astronaut(size=128))])
    for call in (analysis.stub.GetBatch, analysis.stub.GetBatchCsv):
        await expect_code(grpc.StatusCode.NOT_FOUND, call(reports_pb2.GetBatchRequest(owner_id=other, id=batch.id)))
        await expect_code(grpc.StatusCode.NOT_FOUND, call(reports_pb2.GetBatchRequest(owner_id=me, id=batch.id + "\x00")))
    await expect_code(grpc.StatusCode.NOT_FOUND, analysis.stub.RequestReport(
        reports_pb2.RequestReportRequest(owner_id=other, batch_id=batch.id, format="pdf")))
    assert list((await analysis.stub.ListBatches(reports_pb2.ListBatchesRequest(owner_id=other))).batches) == []
    # Asking for the CSV before the batch is done says so (the gateway's 409). One call decides: the batch
    # may finish between a status read and the CSV request.
    try:
        await analysis.stub.GetBatchCsv(reports_pb2.GetBatchRequest(owner_id=me, id=batch.id))
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "photos finished" in exc.details(), exc
    else:
        assert (await analysis.stub.GetBatch(reports_pb2.GetBatchRequest(owner_id=me, id=batch.id))).status == "done"
    assert (await analysis.wait("batch", me, batch.id)).status == "done"
    assert await analysis.usage(other) == 0 and await analysis.usage(me) == 1


async def test_a_worker_killed_mid_batch_loses_nothing_and_counts_nothing_twice(analysis_without_worker, tmp_path):
    analysis = analysis_without_worker
    me = await analysis.account()
    photos = [(f"p{i}.png", astronaut(size=256 + 16 * i)) for i in range(6)]
    batch = await analysis.create_batch(me, photos)
    # No worker yet: the batch waits, and a report on it waits for the batch to be done.
    assert "once it is done" in await expect_code(grpc.StatusCode.FAILED_PRECONDITION, analysis.stub.RequestReport(
        reports_pb2.RequestReportRequest(owner_id=me, batch_id=batch.id, format="pdf")))
    log = tmp_path / "worker.log"
    # One photo at a time, each a little slow: the kill lands between photos or in the middle of one.
    slow = spawn_worker(analysis.settings, log, REPORTS_BATCH_CONCURRENCY="1", REPORTS_JOB_STEP_DELAY_S="0.4")
    try:
        await analysis.wait("batch", me, batch.id, until=lambda b: b.done >= 2, timeout_s=120)
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.wait(10)
    halfway = await analysis.stub.GetBatch(reports_pb2.GetBatchRequest(owner_id=me, id=batch.id))
    assert halfway.status == "running" and 2 <= halfway.done < 6, (halfway.status, halfway.done)

    worker, thread = start_worker_thread(analysis.settings, name=f"{analysis.settings.queue_prefix}.fresh")
    try:
        done = await analysis.wait("batch", me, batch.id, timeout_s=120)
    finally:
        worker.stop()
        thread.join(30)
    assert done.status == "done" and done.done == 6 and done.failed == 0, (done.error, log.read_text()[-2000:])
    result_ids = [item.result_id for item in done.items]
    assert all(result_ids) and len(set(result_ids)) == 6
    # Every photo analysed into exactly one Result, and counted exactly once.
    assert await stored(analysis, Result, owner_id=me) == 6
    assert await analysis.usage(me) == 6


async def test_a_batch_whose_job_the_broker_lost_is_published_again(analysis_without_worker):
    analysis = analysis_without_worker
    me = await analysis.account()
    batch = await analysis.create_batch(me, [("a.png", astronaut(size=200))])
    dispatcher = analysis.servicer.dispatcher
    publisher = dispatcher.publisher
    # The broker loses the message (a purged queue, a node that lost its disk).
    assert await dispatcher._call(lambda: publisher._open().queue_purge(publisher.topology.queue).method.message_count) == 1
    worker, thread = start_worker_thread(analysis.settings, name=f"{analysis.settings.queue_prefix}.w")
    try:
        with changed_settings(analysis.servicer.settings, stale_after_s=0.5):  # (900 s in production)
            done = await analysis.wait("batch", me, batch.id, timeout_s=60)
    finally:
        worker.stop()
        thread.join(30)
    assert done.status == "done" and done.items[0].result_id
    assert await analysis.usage(me) == 1
