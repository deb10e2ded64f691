"""The live camera's WebSocket, /api/v1/live, on a gateway served by uvicorn (real WebSocket frames) and
wired to the real auth and inference services and Triton: a valid token gets faces for the astronaut;
a forged, garbage or missing token, or none in time, closes with 1008; a client that floods frames gets
the newest answered and the rest counted as skipped; a frame that is not an image is answered with an
error and the socket stays open; an oversized frame closes with 1009."""
import asyncio
import base64
import json
import time

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ferkit.limits import LIVE_FRAME_MAX_BYTES
from ferkit.vision import CLASSES
from tests.fixtures.auth import register_and_login, session_of
from tests.fixtures.inference import served_copy
from tests.fixtures.reports import astronaut

AUTH_TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
async def live_url(predictions_gateway):
    """ws:// URL of a gateway like the fixture's, served on a real socket, with a short wait for the token."""
    async with served_copy(predictions_gateway, live_auth_timeout_s=AUTH_TIMEOUT_S) as port:
        yield f"ws://127.0.0.1:{port}/api/v1/live"


@pytest.fixture
async def account(predictions_gateway) -> dict:
    return await register_and_login(predictions_gateway)


async def signed_in(url: str, token: str):
    """A connection that has sent its token and got "ready"."""
    ws = await connect(url, max_size=None)
    await ws.send(json.dumps({"token": token}))
    ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert ready == {"type": "ready", "max_frame_bytes": LIVE_FRAME_MAX_BYTES}
    return ws


async def closed_with(ws) -> tuple[int, str]:
    """(code, reason) once the server has closed the socket."""
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code, ws.close_reason


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_valid_token_gets_the_faces_of_each_frame(live_url, account):
    before = sample("live_frames_total", outcome="answered"), sample("live_sessions_open")
    ws = await signed_in(live_url, account["tokens"]["access_token"])
    assert sample("live_sessions_open") == before[1] + 1
    await ws.send(astronaut("JPEG", 512, quality=85))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert set(reply) == {"seq", "faces", "ms", "skipped"} and reply["seq"] == 1 and reply["skipped"] == 0
    assert 0 < reply["ms"] < 30_000
    [face] = reply["faces"]
    x, y, w, h = face["box"]
    assert 150 < x < 210 and 30 < y < 90 and 70 < w < 130
    assert face["label"] in CLASSES and set(face["scores"]) == set(CLASSES) and face["label"] == max(face["scores"], key=face["scores"].get)

    # Not an image: an error for that frame, and the socket stays open for the next.
    await ws.send(b"this is not a picture")
    refused = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert refused["seq"] == 2 and "not an image" in refused["error"] and "faces" not in refused
    # A fresh token mid-session (the access token lasts minutes) is answered "ready" again.
    await ws.send(json.dumps({"token": account["tokens"]["access_token"]}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
    await ws.send(astronaut("JPEG", 256, quality=85))
    again = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert again["seq"] == 3 and len(again["faces"]) == 1
    await ws.close()
    assert sample("live_frames_total", outcome="answered") == before[0] + 2
    for _ in range(50):  # the server sees the close a moment later
        if sample("live_sessions_open") == before[1]:
            break
        await asyncio.sleep(0.05)
    assert sample("live_sessions_open") == before[1]


def forged_token(account: dict) -> str:
    """The account's own claims (raised to admin), signed by the forger's key under the real key's id."""
    real = account["tokens"]["access_token"]
    header = real.split(".")[0]
    kid = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    now = int(time.time())
    claims = {"iss": "fer-platform-auth", "aud": "fer-platform", "sub": account["user"]["id"], "sid": session_of(real),
              "role": "admin", "iat": now, "exp": now + 60}
    return jwt.encode({"alg": "ES256", "kid": kid}, claims, ECKey.generate_key("P-256"))


@pytest.mark.parametrize("first", ["forged", "garbage", "no token", "binary"])
async def test_a_bad_first_message_closes_with_policy_violation(live_url, account, first):
    ws = await connect(live_url)
    if first == "binary":
        await ws.send(astronaut("JPEG", 64, quality=85))
    else:
        token = {"forged": forged_token(account), "garbage": "not.a.token"}.get(first)
        await ws.send(json.dumps({"token": token} if token else {"hello": "there"}))
    code, reason = await closed_with(ws)
    assert code == 1008, reason
    assert ("invalid access token" in reason) if first in ("forged", "garbage") else ('{"token"' in reason)


async def test_no_token_in_time_closes_with_policy_violation(live_url):
    ws = await connect(live_url)
    started = time.monotonic()
    code, reason = await closed_with(ws)
    assert code == 1008 and reason == f"no token within {AUTH_TIMEOUT_S:g} s"
    assert AUTH_TIMEOUT_S <= time.monotonic() - started < AUTH_TIMEOUT_S + 5


async def test_a_flood_gets_the_newest_frame_answered_and_the_rest_skipped(live_url, account):
    skipped_before = sample("live_frames_total", outcome="skipped")
    ws = await signed_in(live_url, account["tokens"]["access_token"])
    frame = astronaut("JPEG", 320, quality=85)
    for _ in range(30):  # without waiting for any reply
        await ws.send(frame)
    replies = []
    while not replies or replies[-1]["seq"] < 30:
        replies.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
    await ws.close()
    seqs = [reply["seq"] for reply in replies]
    assert seqs == sorted(seqs) and seqs[-1] == 30  # the newest is always answered
    assert len(replies) < 30
    skipped = sum(reply["skipped"] for reply in replies)
    assert len(replies) + skipped == 30
    assert all(len(reply["faces"]) == 1 for reply in replies)
    assert sample("live_frames_total", outcome="skipped") == skipped_before + skipped


async def test_an_oversized_frame_closes_with_1009(live_url, account):
    ws = await signed_in(live_url, account["tokens"]["access_token"])
    await ws.send(bytes(LIVE_FRAME_MAX_BYTES + 1))
    code, reason = await closed_with(ws)
    assert code == 1009 and str(LIVE_FRAME_MAX_BYTES) in reason
