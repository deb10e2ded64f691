"""Item 2a of issue 12: X-Forwarded-For is believed only from the configured proxies, and the address
the gateway resolves is the one auth counts failed logins by (the real auth service, its per-address
limit lowered to 3)."""
import asyncio
import random

import httpx
import pytest
import uvicorn

from services.gateway.config import Settings
from services.gateway.server import server_config
from tests.fixtures.auth import start_gateway, unique_email
from tests.fixtures.databases import free_port

API = "/api/v1"
PROXIES = "10.0.0.0/8, 192.0.2.1"
LIMIT = 3


def test_a_setting_that_is_not_an_address_fails_at_start():
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings(trusted_proxies="10.0.0.0/8, ingress-nginx")


def test_no_forwarded_header_is_believed_by_default():
    assert Settings().trusted_proxy_list == []


def random_address(prefix: str) -> str:
    """A fresh address per run: the counters live in the session's database."""
    return f"{prefix}.{random.randint(0, 255)}.{random.randint(1, 254)}"


@pytest.fixture
async def limited_auth(auth_settings) -> str:
    """An auth service allowing LIMIT failed logins per address; yields its address."""
    from services.auth.server import build

    settings = auth_settings.model_copy(update={"grpc_port": free_port(), "max_failed_logins_per_address": LIMIT})
    service, servicer = build(settings)
    await service.start()
    yield settings.grpc_address
    await service.stop()
    await servicer.engine.dispose()


@pytest.fixture
async def gateway_app(limited_auth):
    """A gateway that trusts PROXIES, in front of `limited_auth`."""
    app, client, lifespan = await start_gateway(auth_addr=limited_auth, trusted_proxies=PROXIES)
    await client.aclose()
    yield app
    await lifespan.__aexit__(None, None, None)


async def failed_logins(client: httpx.AsyncClient, forwarded: list[str]) -> list[int]:
    """One wrong password per forwarded value (a new account each time); the statuses."""
    statuses = []
    for value in forwarded:
        reply = await client.post(f"{API}/auth/token", data={"username": unique_email(), "password": "Wrong-pass-1"},
                                  headers={"X-Forwarded-For": value})
        statuses.append(reply.status_code)
    return statuses


def from_peer(app, peer: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(peer, 40000)), base_url="http://gateway")


async def test_a_forged_header_from_an_untrusted_peer_is_ignored(gateway_app):
    forged = [random_address("198.51") for _ in range(LIMIT + 2)]
    async with from_peer(gateway_app, random_address("203.0")) as client:
        assert await failed_logins(client, forged) == [401] * LIMIT + [429] * 2


async def test_behind_a_trusted_proxy_each_client_is_counted_alone(gateway_app):
    async with from_peer(gateway_app, random_address("10.20")) as proxy:
        assert await failed_logins(proxy, [random_address("198.51") for _ in range(LIMIT + 2)]) == [401] * (LIMIT + 2)
        # The client is the right-most address that is not a proxy: what a client writes in front of its
        # own address is ignored, and a chain of trusted proxies is skipped.
        client = random_address("198.51")
        chain = [f"{random_address('198.51')}, {client}, 192.0.2.1" for _ in range(LIMIT + 1)]
        assert await failed_logins(proxy, chain) == [401] * LIMIT + [429]
        assert await failed_logins(proxy, [client]) == [429]


async def test_the_server_itself_believes_no_forwarded_header(limited_auth):
    """Over real HTTP from 127.0.0.1, which uvicorn's own proxy handling trusts by default: with no
    trusted proxies set, a new X-Forwarded-For per attempt does not reset the limit."""
    port = free_port()
    server = uvicorn.Server(server_config(Settings(http_port=port, auth_addr=limited_auth, inference_addr="", reports_addr="",
                                                   frontend_dir="/nonexistent")))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            # Other tests fail logins from 127.0.0.1 too (the in-process client's address): the limit may
            # be reached sooner, never later.
            statuses = await failed_logins(client, [random_address("198.51") for _ in range(LIMIT + 1)])
        assert statuses[-1] == 429 and statuses.count(401) <= LIMIT, statuses
    finally:
        server.should_exit = True
        await serving
