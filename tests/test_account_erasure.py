"""Item 4 of issue 12: a deleted account's photos, results and reports are erased from the reports
database, through the real gateway and services: at once, and later by the eraser when the reports
service could not be reached at the moment of deletion."""
from fer.v1 import auth_pb2_grpc
from ferkit.db import make_engine, make_sessionmaker
from ferkit.grpc_client import open_channel
from services.reports.erasure import Eraser
from services.reports.tests.helpers import Client
from tests.fixtures.auth import register_and_login, start_gateway
from tests.fixtures.databases import free_port
from tests.fixtures.reports import owned_rows, reports_test_settings, sample_png, start_reports, stop_reports

API = "/api/v1"


async def upload(client, headers):
    return await client.post(f"{API}/predictions", headers=headers, files={"file": ("astronaut.png", sample_png(), "image/png")})


async def test_deleting_an_account_erases_its_photos_results_and_reports(predictions_gateway):
    client = predictions_gateway
    database_url = client.reports_settings.database_url
    user = await register_and_login(client)
    headers, owner_id = user["headers"], user["user"]["id"]
    created = await upload(client, headers)
    assert created.status_code == 201, created.text
    assert (await client.get(created.json()["annotated_url"], headers=headers)).status_code == 200
    report = await client.post(f"{API}/reports", headers=headers, json={"prediction_id": created.json()["id"], "format": "pdf"})
    assert report.status_code == 202, report.text
    bystander = await register_and_login(client)
    assert (await upload(client, bystander["headers"])).status_code == 201
    assert await owned_rows(database_url, owner_id) == (1, 1)

    assert (await client.delete(f"{API}/users/me", headers=headers)).status_code == 204
    assert await owned_rows(database_url, owner_id) == (0, 0)
    assert (await client.get(f"{API}/users/me", headers=headers)).status_code == 401
    assert await owned_rows(database_url, bystander["user"]["id"]) == (1, 0)


class RecordingAuth:
    """The auth stub as the eraser uses it, noting the page token of each ListDeletedAccounts."""

    def __init__(self, stub: auth_pb2_grpc.AuthServiceStub) -> None:
        self.stub = stub
        self.tokens: list[str] = []

    async def ListDeletedAccounts(self, request):
        self.tokens.append(request.page_token)
        return await self.stub.ListDeletedAccounts(request)


async def test_an_account_deleted_while_reports_is_unreachable_is_erased_by_the_eraser(private_reports_database, auth_address):
    # The reports service runs (its own database, no eraser loop), but this gateway cannot reach it.
    settings = reports_test_settings(private_reports_database, "")
    service, servicer = await start_reports(settings)
    reports = Client(settings.grpc_address)
    app, gateway, lifespan = await start_gateway(auth_addr=auth_address, reports_addr=f"127.0.0.1:{free_port()}")
    channel = open_channel(auth_address)
    engine = make_engine(private_reports_database)
    auth = RecordingAuth(auth_pb2_grpc.AuthServiceStub(channel))
    eraser = Eraser(settings, make_sessionmaker(engine), auth)
    try:
        first, second, live = [await register_and_login(gateway) for _ in range(3)]
        for account in (first, second, live):
            owner_id = account["user"]["id"]
            await reports.request(owner_id, (await reports.save(owner_id)).id, "json")

        assert (await gateway.delete(f"{API}/users/me", headers=first["headers"])).status_code == 204
        assert (await gateway.get(f"{API}/users/me", headers=first["headers"])).status_code == 401
        assert await owned_rows(private_reports_database, first["user"]["id"]) == (1, 1)

        # One pass from an empty cursor goes through every tombstone so far (other tests' too) and erases.
        assert await eraser.tick() >= 1
        assert await owned_rows(private_reports_database, first["user"]["id"]) == (0, 0)
        cursor = await eraser.cursor()
        assert cursor and auth.tokens[0] == ""
        # The next pass asks only for what is newer than the stored cursor, and finds nothing.
        auth.tokens.clear()
        assert await eraser.tick() == 0 and auth.tokens == [cursor] and await eraser.cursor() == cursor

        assert (await gateway.delete(f"{API}/users/me", headers=second["headers"])).status_code == 204
        assert await eraser.tick() == 1 and auth.tokens[-1] == cursor
        assert await owned_rows(private_reports_database, second["user"]["id"]) == (0, 0)
        assert await owned_rows(private_reports_database, live["user"]["id"]) == (1, 1)
    finally:
        await engine.dispose()
        await channel.close()
        await gateway.aclose()
        await lifespan.__aexit__(None, None, None)
        await reports.close()
        await stop_reports(service, servicer)
