"""No report is lost: a worker killed mid-job, the broker connection dropped under load, the broker
unreachable when the report is asked for, and the in-process queue across a restart."""
import asyncio
import io
import json
import signal
import socket
import uuid

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from services.reports.models import Report
from services.reports.tests.helpers import Client
from tests.fixtures.reports import (delete_topology, reports_test_settings, spawn_worker, start_reports, start_worker_thread,
                                    stop_reports)


@pytest.fixture
async def deployment(private_reports_database, amqp_url):
    """A reports server of its own (own database and queues, no worker yet): only these jobs are in play."""
    settings = reports_test_settings(private_reports_database, amqp_url)
    service, servicer = await start_reports(settings)
    client = Client(settings.grpc_address)
    yield settings, servicer, client
    await client.close()
    await stop_reports(service, servicer)
    delete_topology(settings)


def owner() -> str:
    return str(uuid.uuid4())


async def test_worker_killed_mid_job_then_restarted(deployment, tmp_path):
    settings, _, client = deployment
    me = owner()
    result = await client.save(me, notes="survives a crash")
    report = await client.request(me, result.id, "pdf")
    log = tmp_path / "worker.log"
    slow = spawn_worker(settings, log, REPORTS_RENDER_DELAY_S="60")
    try:
        await client.wait(me, report.id, statuses=("running",), timeout_s=60)
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.wait(10)
    assert (await client.get(me, report.id)).status == "running"  # nothing was stored, nothing acknowledged
    fresh = spawn_worker(settings, log)
    try:
        done = await client.wait(me, report.id, timeout_s=60)
    finally:
        fresh.send_signal(signal.SIGTERM)
        code = fresh.wait(20)
    assert done.status == "done", (done.error, log.read_text())
    assert done.attempts == 2  # the killed attempt, then the one that finished
    pdf = PdfReader(io.BytesIO((await client.file(me, report.id)).content))
    text = " ".join(page.extract_text() for page in pdf.pages)
    assert "survives a crash" in " ".join(text.split())
    assert code == 0, log.read_text()  # SIGTERM is a clean stop


def drop_socket(connection) -> None:
    """Cuts a pika connection's TCP socket under it, as a network failure would."""
    sock = connection._impl._transport._sock
    sock.shutdown(socket.SHUT_RDWR)


async def test_broker_connection_dropped_while_jobs_in_flight(deployment):
    settings, servicer, client = deployment
    worker, thread = start_worker_thread(settings.model_copy(update={"render_delay_s": 0.3}), name=f"{settings.queue_prefix}.w")
    try:
        me = owner()
        result = await client.save(me)
        ids = [(await client.request(me, result.id, fmt)).id for fmt in ("pdf", "json") * 3]
        await client.wait(me, ids[0], statuses=("running", "done"), timeout_s=30)
        first = worker.connection
        drop_socket(first)  # the consumer's connection, with deliveries unacknowledged
        # The server's publisher connection too: the next requests must get through regardless.
        await servicer.dispatcher._call(lambda: drop_socket(servicer.dispatcher.publisher._connection))
        ids += [(await client.request(me, result.id, "json")).id for _ in range(2)]
        reports = [await client.wait(me, report_id, timeout_s=60) for report_id in ids]
        assert [r.status for r in reports] == ["done"] * 8, [r.error for r in reports]
        assert worker.connection is not first  # it reconnected
        async with servicer.sessions() as session:
            rows = list(await session.scalars(select(Report).where(Report.id.in_(ids))))
        assert all(row.published for row in rows)
        assert all(1 <= row.attempts <= 2 for row in rows)
    finally:
        worker.stop()
        thread.join(15)


async def test_broker_unreachable_at_request_time(deployment):
    settings, servicer, client = deployment
    publisher = servicer.dispatcher.publisher
    reachable = publisher.settings
    await servicer.dispatcher._call(publisher.close)
    publisher.settings = reachable.model_copy(update={"amqp_url": "amqp://guest:guest@127.0.0.1:1/%2F"})  # nothing listens
    worker, thread = start_worker_thread(settings, name=f"{settings.queue_prefix}.w")
    try:
        me = owner()
        result = await client.save(me)
        report = await client.request(me, result.id, "pdf")
        assert report.status == "queued"  # accepted all the same
        await asyncio.sleep(1.0)
        async with servicer.sessions() as session:
            row = await session.get(Report, report.id)
        assert (row.published, row.status) == (False, "queued")
        publisher.settings = reachable  # the broker is back: the re-publisher sends the job
        done = await client.wait(me, report.id, timeout_s=30)
        assert done.status == "done" and done.attempts == 1
    finally:
        publisher.settings = reachable
        worker.stop()
        thread.join(15)


async def test_in_process_queue_without_a_broker(private_reports_database):
    settings = reports_test_settings(private_reports_database, "")
    service, servicer = await start_reports(settings)
    client = Client(settings.grpc_address)
    try:
        me = owner()
        result = await client.save(me, notes="no broker here")
        done = await client.wait(me, (await client.request(me, result.id, "pdf")).id)
        assert done.status == "done" and done.content_type == "application/pdf"
        # Jobs waiting in memory when the process stops are picked up by the next start.
        await servicer.dispatcher.stop()
        pending = await client.request(me, result.id, "json")
        await asyncio.sleep(0.3)
        assert (await client.get(me, pending.id)).status == "queued"
    finally:
        await client.close()
        await stop_reports(service, servicer)
    service, servicer = await start_reports(settings.model_copy(update={"grpc_port": 0}))
    client = Client(f"127.0.0.1:{service.port}")
    try:
        done = await client.wait(me, pending.id)
        assert done.status == "done" and json.loads((await client.file(me, pending.id)).content)["result"]["notes"] == "no broker here"
    finally:
        await client.close()
        await stop_reports(service, servicer)


async def test_jobs_wait_in_the_queue_until_a_worker_comes(deployment):
    settings, servicer, client = deployment
    me = owner()
    result = await client.save(me)
    ids = [(await client.request(me, result.id, "json")).id for _ in range(3)]
    assert await servicer.dispatcher._call(servicer.dispatcher.publisher.queue_depth) == 3  # what reports_queue_depth shows
    assert {(await client.get(me, i)).status for i in ids} == {"queued"}
    worker, thread = start_worker_thread(settings, name=f"{settings.queue_prefix}.w")
    try:
        assert [(await client.wait(me, i)).status for i in ids] == ["done"] * 3
        assert await servicer.dispatcher._call(servicer.dispatcher.publisher.queue_depth) == 0
    finally:
        worker.stop()
        thread.join(15)


async def test_a_job_the_broker_lost_is_published_again(deployment):
    settings, servicer, client = deployment
    me = owner()
    result = await client.save(me)
    report = await client.request(me, result.id, "pdf")
    # The broker loses the message (an operator purges the queue, a node loses its disk).
    purged = await servicer.dispatcher._call(
        lambda: servicer.dispatcher.publisher._open().queue_purge(servicer.dispatcher.publisher.topology.queue).method.message_count
    )
    assert purged == 1
    worker, thread = start_worker_thread(settings, name=f"{settings.queue_prefix}.w")
    try:
        await asyncio.sleep(1.0)
        assert (await client.get(me, report.id)).status == "queued"  # nothing to consume
        servicer.settings.stale_after_s = 0.5  # (900 s in production)
        done = await client.wait(me, report.id, timeout_s=30)
        assert done.status == "done" and done.attempts == 1
    finally:
        servicer.settings.stale_after_s = 900.0
        worker.stop()
        thread.join(15)
