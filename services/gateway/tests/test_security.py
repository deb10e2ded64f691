"""Item 6b of issue 12: tokens naming unknown signing keys cost the gateway at most one fetch of auth's
key set per window (the real auth service, its GetVerificationKey calls counted)."""
import asyncio
import time
import uuid

from joserfc import jwt
from joserfc.jwk import ECKey

from services.gateway.security import TokenVerifier
from tests.fixtures.auth import register_and_login, start_gateway

API = "/api/v1"
WINDOW_S = 30.0


class CountingStub:
    """The real auth stub, with its key-set fetches counted."""

    def __init__(self, stub) -> None:
        self.stub = stub
        self.fetches = 0

    async def GetVerificationKey(self, request):
        self.fetches += 1
        return await self.stub.GetVerificationKey(request)


def foreign_token(user_id: str) -> str:
    """Signed by a key of its own, under a key id the gateway has never seen."""
    now = int(time.time())
    claims = {"iss": "fer-platform-auth", "aud": "fer-platform", "sub": user_id, "sid": "s", "iat": now, "exp": now + 60}
    return jwt.encode({"alg": "ES256", "kid": uuid.uuid4().hex}, claims, ECKey.generate_key("P-256"))


async def test_unknown_key_ids_fetch_the_key_set_once_per_window(auth_address):
    app, client, lifespan = await start_gateway(auth_addr=auth_address)
    try:
        account = await register_and_login(client)
        now = [0.0]
        counting = CountingStub(app.state.upstreams.auth)
        app.state.token_verifier = TokenVerifier(counting, refetch_interval_s=WINDOW_S, clock=lambda: now[0])

        async def me(token: str) -> int:
            return (await client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {token}"})).status_code

        assert await me(account["tokens"]["access_token"]) == 200
        assert counting.fetches == 1
        now[0] += WINDOW_S  # the first fetch's window has passed: one unknown key id may fetch again
        statuses = await asyncio.gather(*(me(foreign_token(account["user"]["id"])) for _ in range(30)))
        assert set(statuses) == {401} and counting.fetches == 2
        now[0] += WINDOW_S - 1
        assert await me(foreign_token(account["user"]["id"])) == 401 and counting.fetches == 2
        # The real key still works, without a fetch.
        assert await me(account["tokens"]["access_token"]) == 200 and counting.fetches == 2
        now[0] += 1  # a rotated key is known within one window
        assert await me(foreign_token(account["user"]["id"])) == 401 and counting.fetches == 3
    finally:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)
