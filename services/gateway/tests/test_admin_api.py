"""The administrators' users API through the gateway, over real gRPC to the auth service, on a database of
its own (PostgreSQL and SQLite) so the last-administrator guard counts only the administrators made here."""
import asyncio
import uuid
from collections import Counter

import psycopg
import pytest

from tests.fixtures.auth import AUTH_MIGRATIONS, auth_test_settings, migrated, register_and_login, start_gateway, unique_email
from tests.fixtures.databases import ADMIN_URL

API = "/api/v1"
USERS = f"{API}/admin/users"
PASSWORD = "Admin-password-42"
FIELDS = {"id", "email", "display_name", "role", "computations", "created_at", "updated_at", "disabled"}


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def console_database(request, tmp_path_factory):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('console') / 'auth.db'}"
        return
    name = f"fer_test_console_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{ADMIN_URL.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
async def console(console_database):
    """A gateway and an auth service whose one administrator is client.admin ({email, headers, id})."""
    from services.auth.server import build, ensure_admin

    await asyncio.to_thread(migrated, console_database, AUTH_MIGRATIONS)
    settings = auth_test_settings(console_database)
    service, servicer = build(settings)
    await service.start()
    app, client, lifespan = await start_gateway(auth_addr=settings.grpc_address)
    email = unique_email("admin")
    admin = await ensure_admin(servicer, email, PASSWORD)
    client.admin = {"id": admin.id, "email": email, "password": PASSWORD, "headers": await headers_of(client, email, PASSWORD)}
    yield client
    await client.aclose()
    await lifespan.__aexit__(None, None, None)
    await service.stop()
    await servicer.engine.dispose()


async def headers_of(client, email: str, password: str) -> dict:
    reply = await client.post(f"{API}/auth/token", data={"username": email, "password": password})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


async def patch(client, user_id: str, body: dict, headers: dict | None = None):
    return await client.patch(f"{USERS}/{user_id}", json=body, headers=headers or client.admin["headers"])


async def find(client, query: str, **params) -> dict:
    reply = await client.get(USERS, params={"q": query, **params}, headers=client.admin["headers"])
    assert reply.status_code == 200, reply.text
    return reply.json()


async def active_admins(client, headers: dict) -> list[str]:
    """The ids of the administrators who are not disabled, over every page."""
    found, token = [], ""
    while True:
        reply = await client.get(USERS, params={"page_size": 100, "page_token": token}, headers=headers)
        assert reply.status_code == 200, reply.text
        found += [item["id"] for item in reply.json()["items"] if item["role"] == "admin" and not item["disabled"]]
        token = reply.json()["next_page_token"]
        if not token:
            return found


async def new_admin(client) -> dict:
    account = await register_and_login(client)
    assert (await patch(client, account["user"]["id"], {"role": "admin"})).status_code == 200
    return account


async def test_only_an_administrator_reaches_the_console(console):
    user = await register_and_login(console)
    for reply in (await console.get(USERS, headers=user["headers"]),
                  await patch(console, user["user"]["id"], {"role": "admin"}, headers=user["headers"]),
                  await patch(console, console.admin["id"], {"disabled": True}, headers=user["headers"])):
        assert reply.status_code == 403 and reply.json() == {"detail": "this needs an administrator"}
    assert (await console.get(USERS)).status_code == 401
    assert (await console.patch(f"{USERS}/{console.admin['id']}", json={"role": "user"})).status_code == 401
    assert (await console.get(f"{API}/users/me", headers=user["headers"])).json()["role"] == "user"  # nothing changed


async def test_search_finds_a_user_by_email_or_name_in_any_case(console):
    account = await register_and_login(console, display_name="Grace Hopper")
    found = await find(console, account["email"].upper())
    assert [item["id"] for item in found["items"]] == [account["user"]["id"]] and found["next_page_token"] == ""
    item = found["items"][0]
    assert set(item) == FIELDS
    assert (item["email"], item["display_name"], item["role"], item["computations"], item["disabled"]) == (
        account["email"], "Grace Hopper", "user", 0, False)
    by_name = await find(console, "grace HOP")
    assert account["user"]["id"] in [item["id"] for item in by_name["items"]]
    assert (await find(console, "no-such-account-" + uuid.uuid4().hex))["items"] == []
    for params in ({"q": "nul\x00"}, {"q": "x" * 321}, {"page_token": "not a token!"}, {"page_size": 0}, {"page_size": 101}):
        reply = await console.get(USERS, params=params, headers=console.admin["headers"])
        assert reply.status_code == 422, (params, reply.text)


async def test_users_come_in_pages_newest_first(console):
    marker = uuid.uuid4().hex[:10]
    made = [(await register_and_login(console, display_name=f"Paged {marker} {n}"))["user"]["id"] for n in range(5)]
    listed, token, sizes = [], "", []
    while True:
        page = await find(console, marker, page_size=2, **({"page_token": token} if token else {}))
        listed += [item["id"] for item in page["items"]]
        sizes.append(len(page["items"]))
        assert page["total"] == 5
        token = page["next_page_token"]
        if not token:
            break
    assert listed == made[::-1] and sizes == [2, 2, 1]
    everyone = await find(console, "", page_size=100)
    assert console.admin["id"] in [item["id"] for item in everyone["items"]] and everyone["total"] >= 6


async def test_a_change_names_known_fields_and_an_existing_account(console):
    user_id = (await register_and_login(console))["user"]["id"]
    for body in ({"role": "admin", "email": "x@example.com"}, {"password": "x"}, {}, {"role": "root"}, {"disabled": "maybe"},
                 {"role": None}):
        reply = await patch(console, user_id, body)
        assert reply.status_code == 422, (body, reply.text)
    for unknown in (str(uuid.uuid4()), "not-an-id", "nul%00"):
        reply = await patch(console, unknown, {"disabled": True})
        assert reply.status_code == 404 and reply.json() == {"detail": "user not found"}, (unknown, reply.text)


async def test_a_new_role_counts_at_once(console):
    account = await register_and_login(console)
    promoted = await patch(console, account["user"]["id"], {"role": "admin"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin" and set(promoted.json()) == FIELDS
    # The token the account already holds is an administrator's from the next request...
    assert (await console.get(USERS, headers=account["headers"])).status_code == 200
    assert (await patch(console, account["user"]["id"], {"role": "user"})).json()["role"] == "user"
    # ...and no longer one as soon as the role is taken back.
    assert (await console.get(USERS, headers=account["headers"])).status_code == 403


async def test_a_disabled_account_stops_at_once_and_comes_back_when_enabled(console):
    account = await register_and_login(console)
    user_id, tokens = account["user"]["id"], account["tokens"]
    disabled = await patch(console, user_id, {"disabled": True})
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert (await find(console, account["email"]))["items"][0]["disabled"] is True

    me = await console.get(f"{API}/users/me", headers=account["headers"])  # the access token it already held
    assert me.status_code == 401 and "this account is disabled" in me.json()["detail"]
    refreshed = await console.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401 and "this account is disabled" in refreshed.json()["detail"]
    login = {"username": account["email"], "password": account["password"]}
    refused = await console.post(f"{API}/auth/token", data=login)
    assert refused.status_code == 403 and "this account is disabled" in refused.json()["detail"]
    wrong = await console.post(f"{API}/auth/token", data={**login, "password": "Wrong-pass-1"})
    assert wrong.status_code == 401 and wrong.json() == {"detail": "wrong email or password"}

    enabled = await patch(console, user_id, {"disabled": False})
    assert enabled.status_code == 200 and enabled.json()["disabled"] is False
    headers = await headers_of(console, account["email"], account["password"])
    assert (await console.get(f"{API}/users/me", headers=headers)).status_code == 200
    # Disabling ended the sessions it had: they do not come back with the account.
    assert (await console.get(f"{API}/users/me", headers=account["headers"])).status_code == 401


async def test_the_last_administrator_can_be_neither_demoted_nor_disabled(console):
    admin = console.admin
    for body in ({"role": "user"}, {"disabled": True}, {"role": "user", "disabled": True}):
        reply = await patch(console, admin["id"], body)
        assert reply.status_code == 409, reply.text
        assert reply.json() == {"detail": "this is the last active administrator: make another account an administrator first"}
    # A disabled administrator is no way out: it is not an active one.
    other = await new_admin(console)
    assert (await patch(console, other["user"]["id"], {"disabled": True})).status_code == 200
    assert (await patch(console, admin["id"], {"role": "user"})).status_code == 409
    assert (await console.get(USERS, headers=admin["headers"])).status_code == 200  # still the administrator
    # With another active administrator, either may step down, by their own hand too.
    assert (await patch(console, other["user"]["id"], {"disabled": False})).status_code == 200
    other_headers = await headers_of(console, other["email"], other["password"])
    assert (await patch(console, other["user"]["id"], {"role": "user"}, headers=other_headers)).json()["role"] == "user"
    assert (await patch(console, admin["id"], {"role": "user"})).status_code == 409


async def test_concurrent_demotions_leave_one_administrator(console):
    """Every administrator steps down at the same moment, in rounds: each round exactly one stays."""
    for size in (2, 3, 4):
        others = [await new_admin(console) for _ in range(size - 1)]
        everyone = {console.admin["id"]: console.admin["headers"]}
        for account in others:
            everyone[account["user"]["id"]] = await headers_of(console, account["email"], account["password"])
        replies = dict(zip(everyone, await asyncio.gather(
            *(patch(console, user_id, {"role": "user"}, headers=headers) for user_id, headers in everyone.items())
        )))
        assert Counter(reply.status_code for reply in replies.values()) == {200: size - 1, 409: 1}, [r.text for r in replies.values()]
        staying = next(user_id for user_id, reply in replies.items() if reply.status_code == 409)
        assert await active_admins(console, everyone[staying]) == [staying]
        # The one who stayed gives the console back to the fixture's administrator and steps down.
        if staying != console.admin["id"]:
            assert (await patch(console, console.admin["id"], {"role": "admin"}, headers=everyone[staying])).status_code == 200
            assert (await patch(console, staying, {"role": "user"})).status_code == 200
        assert await active_admins(console, console.admin["headers"]) == [console.admin["id"]]


async def test_concurrent_disabling_of_two_administrators_leaves_one(console):
    other = await new_admin(console)
    replies = await asyncio.gather(patch(console, console.admin["id"], {"disabled": True}),
                                   patch(console, other["user"]["id"], {"disabled": True}))
    assert sorted(reply.status_code for reply in replies) == [200, 409], [r.text for r in replies]
    if replies[0].status_code == 200:  # the fixture's administrator was disabled: the other brings it back
        other_headers = await headers_of(console, other["email"], other["password"])
        assert (await patch(console, console.admin["id"], {"disabled": False}, headers=other_headers)).status_code == 200
        console.admin["headers"] = await headers_of(console, console.admin["email"], console.admin["password"])
    else:
        assert (await patch(console, other["user"]["id"], {"disabled": False})).status_code == 200
    assert (await patch(console, other["user"]["id"], {"role": "user"})).status_code == 200
    assert await active_admins(console, console.admin["headers"]) == [console.admin["id"]]
