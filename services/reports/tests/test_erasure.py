"""Erasing deleted accounts' data, on PostgreSQL and on SQLite: EraseOwner, the eraser in the server
against the real auth service, and the eraser when auth is unreachable or not configured."""
import asyncio
import logging
import time
import uuid

import grpc
import pytest

from fer.v1 import auth_pb2, auth_pb2_grpc, reports_pb2
from ferkit.db import make_engine, make_sessionmaker
from ferkit.grpc_client import open_channel
from services.reports.erasure import Eraser
from services.reports.tests.helpers import Client
from tests.fixtures.auth import unique_email
from tests.fixtures.databases import free_port
from tests.fixtures.reports import owned_rows, reports_test_settings, start_reports, stop_reports


@pytest.fixture(scope="module")
async def client(reports_address):
    client = Client(reports_address)
    yield client
    await client.close()


@pytest.fixture
async def auth(auth_address):
    channel = open_channel(auth_address)
    yield auth_pb2_grpc.AuthServiceStub(channel)
    await channel.close()


async def new_account(auth) -> str:
    user = await auth.Register(auth_pb2.RegisterRequest(email=unique_email(), password="Correct-horse-9", display_name="Ada"))
    return user.id


async def wait_until(predicate, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, f"not within {timeout_s} s"
        await asyncio.sleep(0.1)


async def test_erase_owner_deletes_the_owners_results_and_reports_only(client, reports_settings):
    me, other = str(uuid.uuid4()), str(uuid.uuid4())
    mine = [await client.save(me) for _ in range(2)]
    await client.request(me, mine[0].id, "pdf")
    await client.request(me, mine[1].id, "json")
    theirs = await client.save(other)
    await client.request(other, theirs.id)

    assert await client.erase(me) == reports_pb2.EraseOwnerResponse(results=2, reports=2)
    assert await owned_rows(reports_settings.database_url, me) == (0, 0)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await client.stub.GetResult(reports_pb2.GetResultRequest(owner_id=me, id=mine[0].id))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    assert await owned_rows(reports_settings.database_url, other) == (1, 1)
    # Idempotent: a second erasure (the gateway's and the eraser's) finds nothing.
    assert await client.erase(me) == reports_pb2.EraseOwnerResponse()
    for bad in ("", "not-an-id", "\x00"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.erase(bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_server_erases_what_auth_deleted_and_nobody_else(private_reports_database, auth, auth_address):
    settings = reports_test_settings(private_reports_database, "", auth_addr=auth_address, erase_interval_s=0.2)
    service, servicer = await start_reports(settings)
    client = Client(settings.grpc_address)
    try:
        deleted, live, stranger = await new_account(auth), await new_account(auth), str(uuid.uuid4())
        for owner_id in (deleted, live, stranger):
            await client.request(owner_id, (await client.save(owner_id)).id, "json")
        await auth.DeleteUser(auth_pb2.GetUserRequest(user_id=deleted))

        async def erased() -> bool:
            return await owned_rows(private_reports_database, deleted) == (0, 0)

        await wait_until(erased)
        await asyncio.sleep(0.5)  # a few more passes
        # A live account and an owner auth never heard of keep everything: absence is not deletion.
        assert await owned_rows(private_reports_database, live) == (1, 1)
        assert await owned_rows(private_reports_database, stranger) == (1, 1)
        assert await servicer.eraser.cursor() != ""
    finally:
        await client.close()
        await stop_reports(service, servicer)


async def test_auth_unreachable_is_one_line_a_pass_and_no_auth_runs_no_loop(private_reports_database, caplog):
    settings = reports_test_settings(private_reports_database, "", erase_interval_s=0.05)
    engine = make_engine(private_reports_database)
    channel = open_channel(f"127.0.0.1:{free_port()}", timeout_s=5)
    eraser = Eraser(settings, make_sessionmaker(engine), auth_pb2_grpc.AuthServiceStub(channel))
    caplog.set_level(logging.INFO, logger="services.reports.erasure")
    try:
        await eraser.start()

        async def warned_twice() -> bool:
            return sum(r.levelno == logging.WARNING for r in caplog.records) >= 2

        await wait_until(warned_twice)
        await eraser.stop()
        assert all(r.levelno == logging.WARNING and r.exc_info is None for r in caplog.records)
        assert "auth answered UNAVAILABLE" in caplog.records[0].getMessage()
        assert await eraser.cursor() == ""

        caplog.clear()
        idle = Eraser(settings, make_sessionmaker(engine), None)
        await idle.start()
        await idle.stop()
        assert [r.getMessage() for r in caplog.records] == [
            "no auth service (REPORTS_AUTH_ADDR): deleted accounts' data is erased only when the gateway asks"
        ]
    finally:
        await channel.close()
        await engine.dispose()
