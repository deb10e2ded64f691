"""The auth and account REST endpoints, through the gateway, over real gRPC to the auth service."""
import base64
import io
import json
import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from PIL import Image

from services.auth.tokens import AccessTokenIssuer
from tests.fixtures.auth import changed_settings, register_and_login, session_of, start_gateway, unique_email
from tests.fixtures.databases import free_port

API = "/api/v1"


def from_address(gateway, address: str) -> httpx.AsyncClient:
    """A client of the same gateway calling from another address."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.app, client=(address, 40000)), base_url="http://testserver")


async def log_in(client, account: dict) -> dict:
    """Another login (a new session) of the account: {tokens, headers}."""
    reply = await client.post(f"{API}/auth/token", data={"username": account["email"], "password": account["password"]})
    assert reply.status_code == 200, reply.text
    return {"tokens": reply.json(), "headers": {"Authorization": f"Bearer {reply.json()['access_token']}"}}


async def test_register_login_read_edit_refresh(gateway):
    account = await register_and_login(gateway, display_name="Ada Lovelace")
    assert account["user"]["email"] == account["email"] and account["user"]["computations"] == 0
    tokens = account["tokens"]
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] > 0

    me = await gateway.get(f"{API}/users/me", headers=account["headers"])
    assert me.status_code == 200 and me.json()["display_name"] == "Ada Lovelace"
    assert me.json()["created_at"].endswith("Z") or "+00:00" in me.json()["created_at"]

    edited = await gateway.patch(f"{API}/users/me", headers=account["headers"], json={"display_name": "Countess"})
    assert edited.status_code == 200 and edited.json()["display_name"] == "Countess"

    refreshed = await gateway.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    new_headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert (await gateway.get(f"{API}/users/me", headers=new_headers)).json()["display_name"] == "Countess"


async def test_metrics_count_requests_by_route(gateway):
    await gateway.get(f"{API}/users/me")  # 401
    text = (await gateway.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/api/v1/users/me",status="401"}' in text
    assert "http_request_duration_seconds_bucket" in text


async def test_request_id_is_echoed_or_made(gateway):
    echoed = await gateway.get("/healthz", headers={"X-Request-ID": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"
    made = await gateway.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert len(made.headers["x-request-id"]) == 32


async def test_change_password_through_patch(gateway):
    account = await register_and_login(gateway)
    missing = await gateway.patch(f"{API}/users/me", headers=account["headers"], json={"new_password": "Other-pass-42"})
    assert missing.status_code == 422 and "current_password" in json.dumps(missing.json()["detail"])
    wrong = await gateway.patch(
        f"{API}/users/me", headers=account["headers"], json={"new_password": "Other-pass-42", "current_password": "nope"}
    )
    assert wrong.status_code == 403
    ok = await gateway.patch(
        f"{API}/users/me",
        headers=account["headers"],
        json={"new_password": "Other-pass-42", "current_password": account["password"]},
    )
    assert ok.status_code == 200
    login = await gateway.post(f"{API}/auth/token", data={"username": account["email"], "password": "Other-pass-42"})
    assert login.status_code == 200


# --- bad input: a clear 4xx, and nothing changes ----------------------------------------------------


async def test_duplicate_email_is_409(gateway):
    account = await register_and_login(gateway)
    again = await gateway.post(
        f"{API}/auth/register", json={"email": account["email"], "password": "Other-pass-42", "display_name": "Other"}
    )
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    me = await gateway.get(f"{API}/users/me", headers=account["headers"])
    assert me.json()["display_name"] == account["user"]["display_name"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"email": "nobody", "password": "Correct-horse-9", "display_name": "X"}, "email"),
        ({"email": "EMAIL", "password": "", "display_name": "X"}, "password"),
        ({"email": "EMAIL", "password": "weak", "display_name": "X"}, "password"),
        ({"email": "EMAIL", "password": "Correct-horse-9"}, "display_name"),  # missing field
        ({"email": "EMAIL", "password": "Correct-horse-9", "display_name": "X", "role": "admin"}, "role"),  # unknown
    ],
)
async def test_register_rejects_bad_bodies(gateway, body, needle):
    email = unique_email()
    body = {key: (email if value == "EMAIL" else value) for key, value in body.items()}
    response = await gateway.post(f"{API}/auth/register", json=body)
    assert response.status_code == 422
    assert needle in json.dumps(response.json()["detail"])
    # Nothing was created: the email is still free.
    if body.get("email") == email:
        assert (await gateway.post(f"{API}/auth/token", data={"username": email, "password": "Correct-horse-9"})).status_code == 401


async def test_unknown_fields_on_patch_change_nothing(gateway):
    account = await register_and_login(gateway)
    response = await gateway.patch(f"{API}/users/me", headers=account["headers"], json={"display_name": "New", "role": "admin"})
    assert response.status_code == 422
    me = (await gateway.get(f"{API}/users/me", headers=account["headers"])).json()
    assert me["display_name"] == account["user"]["display_name"] and me["role"] == "user"


async def test_wrong_password_then_too_many_from_that_address_only(gateway, auth_settings):
    account = await register_and_login(gateway)
    for _ in range(auth_settings.max_failed_logins_per_pair):
        wrong = await gateway.post(f"{API}/auth/token", data={"username": account["email"], "password": "Wrong-pass-1"})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong email or password"
    limited = await gateway.post(f"{API}/auth/token", data={"username": account["email"], "password": account["password"]})
    assert limited.status_code == 429 and "too many" in limited.json()["detail"]
    assert 0 < int(limited.headers["retry-after"]) <= auth_settings.failed_login_window_s
    # The owner elsewhere still gets in: five wrong passwords are no lockout button.
    async with from_address(gateway, "198.51.100.30") as elsewhere:
        await log_in(elsewhere, account)


async def test_registration_is_limited_per_address(gateway, auth_service):
    def body():
        return {"email": unique_email(), "password": "Correct-horse-9", "display_name": "Bot"}

    with changed_settings(auth_service.settings, max_registrations_per_address=2):
        async with from_address(gateway, "203.0.113.210") as client:
            assert [(await client.post(f"{API}/auth/register", json=body())).status_code for _ in range(2)] == [201, 201]
            limited = await client.post(f"{API}/auth/register", json=body())
        assert limited.status_code == 429 and "too many new accounts" in limited.json()["detail"]
        assert 0 < int(limited.headers["retry-after"]) <= auth_service.settings.registration_window_s


@pytest.mark.parametrize("password", ["Passw0rd!", "Summer2024", "qwertyuiop1", " " * 8 + "1"])
async def test_common_passwords_are_refused(gateway, password):
    response = await gateway.post(f"{API}/auth/register", json={"email": unique_email(), "password": password, "display_name": "X"})
    assert response.status_code == 422 and "too easy to guess" in json.dumps(response.json()["detail"])


async def test_nul_bytes_are_422_not_a_database_error(gateway):
    account = await register_and_login(gateway)
    good = {"email": unique_email(), "password": "Correct-horse-9", "display_name": "Ada"}
    for field in good:
        bad = {**good, field: good[field][:3] + "\x00" + good[field][3:]}
        assert (await gateway.post(f"{API}/auth/register", json=bad)).status_code == 422, field
    for form in ({"username": account["email"] + "\x00", "password": "x"}, {"username": account["email"], "password": "\x00"}):
        assert (await gateway.post(f"{API}/auth/token", data=form)).status_code == 422
    for change in ({"display_name": "A\x00"}, {"email": "a\x00@example.com", "current_password": account["password"]}):
        assert (await gateway.patch(f"{API}/users/me", headers=account["headers"], json=change)).status_code == 422


async def test_logout_ends_the_access_token_at_once(gateway):
    account = await register_and_login(gateway)
    other = await log_in(gateway, account)
    assert (await gateway.post(f"{API}/auth/logout", json={"refresh_token": account["tokens"]["refresh_token"]})).status_code == 204
    ended = await gateway.get(f"{API}/users/me", headers=account["headers"])
    assert ended.status_code == 401 and "session has ended" in ended.json()["detail"]
    assert ended.headers["www-authenticate"] == "Bearer"
    assert (await gateway.get(f"{API}/users/me", headers=other["headers"])).status_code == 200  # another session goes on


async def test_refresh_reuse_ends_the_session_at_once(gateway):
    account = await register_and_login(gateway)
    first = account["tokens"]["refresh_token"]
    rotated = (await gateway.post(f"{API}/auth/refresh", json={"refresh_token": first})).json()
    rotated_headers = {"Authorization": f"Bearer {rotated['access_token']}"}
    assert (await gateway.get(f"{API}/users/me", headers=rotated_headers)).status_code == 200
    assert (await gateway.post(f"{API}/auth/refresh", json={"refresh_token": first})).status_code == 401  # stolen?
    for headers in (account["headers"], rotated_headers):
        assert (await gateway.get(f"{API}/users/me", headers=headers)).status_code == 401


async def test_password_change_ends_the_other_sessions_at_once(gateway):
    account = await register_and_login(gateway)
    other = await log_in(gateway, account)
    changed = await gateway.patch(
        f"{API}/users/me", headers=account["headers"], json={"new_password": "Other-pass-42", "current_password": account["password"]}
    )
    assert changed.status_code == 200
    assert (await gateway.get(f"{API}/users/me", headers=other["headers"])).status_code == 401
    assert (await gateway.post(f"{API}/auth/refresh", json={"refresh_token": other["tokens"]["refresh_token"]})).status_code == 401
    # The session that made the change goes on (the account page keeps working).
    assert (await gateway.get(f"{API}/users/me", headers=account["headers"])).status_code == 200


async def test_email_change_needs_the_current_password(gateway):
    account = await register_and_login(gateway)
    new_email = unique_email()
    missing = await gateway.patch(f"{API}/users/me", headers=account["headers"], json={"email": new_email})
    assert missing.status_code == 422 and "current_password" in json.dumps(missing.json()["detail"])
    wrong = await gateway.patch(
        f"{API}/users/me", headers=account["headers"], json={"email": new_email, "current_password": "Wrong-pass-1"}
    )
    assert wrong.status_code == 403
    assert (await gateway.get(f"{API}/users/me", headers=account["headers"])).json()["email"] == account["email"]
    ok = await gateway.patch(
        f"{API}/users/me", headers=account["headers"], json={"email": new_email, "current_password": account["password"]}
    )
    assert ok.status_code == 200 and ok.json()["email"] == new_email


def _sid(account: dict) -> str:
    return session_of(account["tokens"]["access_token"])


def _claims(account: dict, **overrides) -> dict:
    now = int(time.time())
    return {
        "iss": "fer-platform-auth", "aud": "fer-platform", "sub": account["user"]["id"], "sid": _sid(account),
        "role": "user", "iat": now, "exp": now + 60, **overrides,
    }


async def _me(gateway, token: str):
    return await gateway.get(f"{API}/users/me", headers={"Authorization": f"Bearer {token}"})


async def test_expired_token_is_401(gateway, auth_service):
    account = await register_and_login(gateway)
    issuer = auth_service.issuer
    expired = AccessTokenIssuer(issuer.key, issuer.issuer, issuer.audience, ttl_s=-30).issue(account["user"]["id"], "user", _sid(account))
    response = await _me(gateway, expired)
    assert response.status_code == 401 and "invalid access token" in response.json()["detail"]
    assert response.headers["www-authenticate"] == "Bearer"


async def test_forged_signature_is_401(gateway, auth_service):
    account = await register_and_login(gateway)
    impostor = ECKey.generate_key("P-256")
    # Same kid as the real key, so only the signature can give it away.
    forged = jwt.encode({"alg": "ES256", "kid": auth_service.issuer.key.kid}, _claims(account), impostor)
    assert (await _me(gateway, forged)).status_code == 401


async def test_alg_none_is_401(gateway):
    account = await register_and_login(gateway)

    def b64(part: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(_claims(account, role='admin'))}."
    assert (await _me(gateway, unsigned)).status_code == 401


async def test_wrong_audience_and_garbage_are_401(gateway, auth_service):
    account = await register_and_login(gateway)
    issuer = auth_service.issuer
    other_audience = AccessTokenIssuer(issuer.key, issuer.issuer, "someone-else", 60).issue(account["user"]["id"], "user", _sid(account))
    assert (await _me(gateway, other_audience)).status_code == 401
    assert (await _me(gateway, "not.a.token")).status_code == 401
    assert (await gateway.get(f"{API}/users/me")).status_code == 401


async def test_a_token_without_a_session_is_401(gateway, auth_service):
    account = await register_and_login(gateway)
    token = jwt.encode({"alg": "ES256", "kid": auth_service.issuer.key.kid}, _claims(account, sid=None), auth_service.issuer.key)
    response = await _me(gateway, token)
    assert response.status_code == 401 and "names no session" in response.json()["detail"]
    # A session id that is not the account's, or none that exists, gets nowhere either.
    stranger = await register_and_login(gateway)
    for sid in (_sid(stranger), "no-such-session"):
        token = jwt.encode({"alg": "ES256", "kid": auth_service.issuer.key.kid}, _claims(account, sid=sid), auth_service.issuer.key)
        assert (await _me(gateway, token)).status_code == 401


async def test_token_of_deleted_user_is_401(gateway):
    account = await register_and_login(gateway)
    assert (await gateway.delete(f"{API}/users/me", headers=account["headers"])).status_code == 204
    response = await gateway.get(f"{API}/users/me", headers=account["headers"])
    assert response.status_code == 401 and "no longer exists" in response.json()["detail"]


async def test_reused_refresh_token_is_401_and_logout_revokes(gateway):
    account = await register_and_login(gateway)
    first = account["tokens"]["refresh_token"]
    second = (await gateway.post(f"{API}/auth/refresh", json={"refresh_token": first})).json()["refresh_token"]
    reused = await gateway.post(f"{API}/auth/refresh", json={"refresh_token": first})
    assert reused.status_code == 401 and "already used" in reused.json()["detail"]
    assert (await gateway.post(f"{API}/auth/refresh", json={"refresh_token": second})).status_code == 401

    fresh = (await gateway.post(f"{API}/auth/token", data={"username": account["email"], "password": account["password"]})).json()
    assert (await gateway.post(f"{API}/auth/logout", json={"refresh_token": fresh["refresh_token"]})).status_code == 204
    assert (await gateway.post(f"{API}/auth/refresh", json={"refresh_token": fresh["refresh_token"]})).status_code == 401


async def test_oversized_body_is_413(gateway):
    huge = {"email": unique_email(), "password": "Correct-horse-9", "display_name": "x" * 100_000}
    response = await gateway.post(f"{API}/auth/register", json=huge)
    assert response.status_code == 413 and "larger than" in response.json()["detail"]

    async def chunks():  # no Content-Length: counted while streaming
        for _ in range(20):
            yield b"x" * 8192

    streamed = await gateway.post(f"{API}/auth/refresh", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


async def test_malformed_json_is_422(gateway):
    response = await gateway.post(f"{API}/auth/register", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


async def test_auth_down_is_503_and_readyz_says_so():
    app, client, lifespan = await start_gateway(auth_addr=f"127.0.0.1:{free_port()}")
    try:
        response = await client.post(f"{API}/auth/token", data={"username": unique_email(), "password": "Correct-horse-9"})
        assert response.status_code == 503 and "unavailable" in response.json()["detail"]
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"] == {"auth": False}
    finally:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


def small_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(out, format="PNG")
    return out.getvalue()


async def test_an_upstream_down_leaves_the_gateway_serving_what_does_not_need_it(auth_address):
    """The probes' /healthz stays 200 with the inference and reports services unreachable, and login works;
    only the routes that need them answer 503 (and /readyz, the operators' view, says which is down)."""
    dead = f"127.0.0.1:{free_port()}"
    app, client, lifespan = await start_gateway(auth_addr=auth_address, inference_addr=dead, reports_addr=dead)
    try:
        assert (await client.get("/healthz")).status_code == 200
        user = await register_and_login(client)
        assert (await client.get(f"{API}/users/me", headers=user["headers"])).status_code == 200
        upload = await client.post(f"{API}/predictions", headers=user["headers"], files={"file": ("a.png", small_png(), "image/png")})
        assert upload.status_code == 503 and upload.headers["retry-after"]
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"] == {"auth": True, "inference": False, "reports": False}
    finally:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_readyz_when_auth_is_up(gateway):
    ready = await gateway.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"auth": True}


async def test_admin_only_dependency(gateway, auth_service):
    from fastapi import HTTPException

    from fer.v1 import auth_pb2
    from services.gateway.deps import admin_user

    with pytest.raises(HTTPException) as denied:
        await admin_user(auth_pb2.User(role=auth_pb2.ROLE_USER))
    assert denied.value.status_code == 403
    assert (await admin_user(auth_pb2.User(role=auth_pb2.ROLE_ADMIN))).role == auth_pb2.ROLE_ADMIN
