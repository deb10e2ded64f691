"""The live camera: a WebSocket at /api/v1/live.

The protocol (docs/api.md has it whole):
1. The client connects and sends, within `live_auth_timeout_s`, the text message {"token": "<access
   token>"}: never in the URL, where logs and proxies keep it. It is verified exactly as an HTTP
   request's bearer token is (deps.verified_claims, deps.account_of); a missing, bad, expired or forged
   token, or none in time, closes the socket with 1008 (policy violation) and the reason.
2. The server replies {"type": "ready", "max_frame_bytes": ...}.
3. The client sends frames, JPEG or PNG, as binary messages. Each answered frame gets
   {"seq", "faces": [{"box", "label", "scores", "uncertain"}], "ms", "skipped"}: seq numbers the frames
   in arrival order from 1, ms is the server's time for it (arrival to reply), skipped is how many
   frames were dropped since the previous reply. A frame that is refused (not an image) or cannot be
   analysed gets {"seq", "error", "ms", "skipped"}, and the socket stays open.
4. Before the token expires the client may send a fresh {"token"} (text), answered {"type": "ready"};
   at expiry the socket closes with 1008.

One frame is analysed at a time per socket; a client faster than that has its frames replaced in a
one-slot mailbox, so the newest frame is always the next answered and no queue grows. Frames go to the
inference service directly: not stored, not counted (the page's "save snapshot" posts to /predictions)."""
import asyncio
import json
import logging
import time
from contextlib import suppress
from dataclasses import dataclass

import grpc
from fastapi import APIRouter, HTTPException, WebSocket
from starlette import status
from starlette.websockets import WebSocketDisconnect

from fer.v1 import auth_pb2_grpc, inference_pb2, inference_pb2_grpc
from ferkit import images
from ferkit.limits import LIVE_FRAME_MAX_BYTES
from ferkit.vision import CLASSES
from services.gateway.deps import SettingsDep, TokenVerifierDep, UpstreamsDep, account_of, verified_claims
from services.gateway.metrics import LIVE_FRAMES, LIVE_LATENCY, LIVE_SESSIONS
from services.gateway.security import TokenVerifier
from services.gateway.upstreams import Upstreams

log = logging.getLogger(__name__)
router = APIRouter(tags=["live"])
FRAME_LIMITS = images.ImageLimits(max_bytes=LIVE_FRAME_MAX_BYTES)
# A close frame's reason is at most 123 bytes.
REASON_MAX_BYTES = 120


class Closing(Exception):
    """Ends the session with this close code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Frame:
    seq: int
    data: bytes
    received: float


class Mailbox:
    """What the receiving task hands to the answering one: the newest unanswered frame (a newer one
    replaces it, counted as skipped), a fresh token, or the end of the session."""

    def __init__(self) -> None:
        self.frame: Frame | None = None
        self.token: str | None = None
        self.skipped = 0
        self.end: Closing | None = None
        self.ended = False
        self._ready = asyncio.Event()

    def put_frame(self, frame: Frame) -> None:
        if self.frame is not None:
            self.skipped += 1
            LIVE_FRAMES.labels("skipped").inc()
        self.frame = frame
        self._ready.set()

    def put_token(self, token: str) -> None:
        self.token = token
        self._ready.set()

    def close(self, end: Closing | None = None) -> None:
        """The session ends: the client left (no `end`) or broke the protocol (`end` says how to close)."""
        self.ended, self.end = True, end
        self._ready.set()

    async def wait(self, timeout_s: float) -> None:
        """Until something arrives or `timeout_s` passes."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            return
        self._ready.clear()

    def take_skipped(self) -> int:
        skipped, self.skipped = self.skipped, 0
        return skipped


def _reason(text: str) -> str:
    return text.encode()[:REASON_MAX_BYTES].decode(errors="ignore")


def token_of(text: str | None) -> str:
    """The token of a {"token": "..."} text message; Closing(1008) for anything else."""
    try:
        token = json.loads(text)["token"] if text else None
    except (ValueError, TypeError, KeyError):
        token = None
    if not isinstance(token, str) or not token:
        raise Closing(status.WS_1008_POLICY_VIOLATION, 'the first message must be JSON {"token": "<access token>"}')
    return token


async def authenticate(token: str, verifier: TokenVerifier, auth: auth_pb2_grpc.AuthServiceStub) -> dict:
    """The token's claims once its account and session are confirmed, as for an HTTP request; a 401 there
    is a 1008 here, auth being unreachable a 1013 (try again later)."""
    try:
        claims = await verified_claims(token, verifier)
        await account_of(claims, auth)
    except HTTPException as exc:
        raise Closing(status.WS_1008_POLICY_VIOLATION, str(exc.detail)) from None
    except grpc.aio.AioRpcError as exc:
        log.warning("live: the token could not be checked: %s %s", exc.code().name, exc.details())
        raise Closing(status.WS_1013_TRY_AGAIN_LATER, "the platform cannot check the token now; retry shortly") from None
    return claims


async def receive(websocket: WebSocket, mailbox: Mailbox) -> None:
    """The receiving task: numbers the frames and keeps the newest; text messages may carry a fresh token."""
    seq = 0
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                mailbox.close()
                return
            data = message.get("bytes")
            if data is None:
                try:
                    mailbox.put_token(token_of(message.get("text")))
                except Closing:
                    raise Closing(status.WS_1003_UNSUPPORTED_DATA, 'frames are binary messages; text may only be {"token": ...}') from None
                continue
            if len(data) > LIVE_FRAME_MAX_BYTES:
                raise Closing(status.WS_1009_MESSAGE_TOO_BIG, f"a frame may be at most {LIVE_FRAME_MAX_BYTES} bytes")
            seq += 1
            mailbox.put_frame(Frame(seq, data, time.perf_counter()))
    except Closing as end:
        mailbox.close(end)
    except (WebSocketDisconnect, RuntimeError):
        mailbox.close()


async def predict(frame: Frame, inference: inference_pb2_grpc.InferenceServiceStub) -> dict:
    """The reply's content for one frame: its faces, or why there are none."""
    try:
        # Header only, microseconds: a frame that is not an image never reaches the inference service.
        images.probe(frame.data, FRAME_LIMITS)
        reply = await inference.PredictImage(inference_pb2.PredictImageRequest(image=frame.data, mode=inference_pb2.FACE_MODE_DETECT))
    except images.ImageError as exc:
        return {"error": str(exc)}
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            return {"error": exc.details()}
        log.warning("live: inference failed: %s %s", exc.code().name, exc.details())
        return {"error": "the inference service is unavailable; frames will be answered again when it is back"}
    classes = list(reply.model.classes) or list(CLASSES)
    return {"faces": [
        {
            "box": [face.box.x, face.box.y, face.box.width, face.box.height],
            "label": face.label,
            "scores": {name: round(float(p), 4) for name, p in zip(classes, face.scores)},
            "uncertain": face.uncertain,
        }
        for face in reply.faces
    ]}


async def answer(websocket: WebSocket, mailbox: Mailbox, claims: dict, verifier: TokenVerifier, upstreams: Upstreams) -> None:
    """The answering loop: one frame at a time, the newest; a fresh token extends the session."""
    while True:
        await mailbox.wait(max(0.0, claims["exp"] - time.time()))
        if mailbox.ended:
            if mailbox.end is not None:
                raise mailbox.end
            return
        if time.time() >= claims["exp"]:
            raise Closing(status.WS_1008_POLICY_VIOLATION, 'the access token expired; send a fresh {"token"} before it does')
        if mailbox.token is not None:
            token, mailbox.token = mailbox.token, None
            fresh = await authenticate(token, verifier, upstreams.auth)
            if fresh["sub"] != claims["sub"]:
                raise Closing(status.WS_1008_POLICY_VIOLATION, "a fresh token must be the same account's")
            claims = fresh
            await websocket.send_json({"type": "ready", "max_frame_bytes": LIVE_FRAME_MAX_BYTES})
        if mailbox.frame is not None:
            frame, mailbox.frame = mailbox.frame, None
            result = await predict(frame, upstreams.inference)
            elapsed = time.perf_counter() - frame.received
            LIVE_FRAMES.labels("failed" if "error" in result else "answered").inc()
            LIVE_LATENCY.observe(elapsed)
            await websocket.send_json({"seq": frame.seq, **result, "ms": round(elapsed * 1000, 1), "skipped": mailbox.take_skipped()})


@router.websocket("/live")
async def live(websocket: WebSocket, settings: SettingsDep, upstreams: UpstreamsDep, verifier: TokenVerifierDep) -> None:
    await websocket.accept()
    receiving = None
    try:
        if upstreams.inference is None:
            raise Closing(status.WS_1011_INTERNAL_ERROR, "the inference service is not part of this deployment")
        try:
            first = await asyncio.wait_for(websocket.receive(), settings.live_auth_timeout_s)
        except TimeoutError:
            raise Closing(status.WS_1008_POLICY_VIOLATION, f"no token within {settings.live_auth_timeout_s:g} s") from None
        if first["type"] == "websocket.disconnect":
            return
        claims = await authenticate(token_of(first.get("text")), verifier, upstreams.auth)
        await websocket.send_json({"type": "ready", "max_frame_bytes": LIVE_FRAME_MAX_BYTES})
        mailbox = Mailbox()
        receiving = asyncio.create_task(receive(websocket, mailbox))
        LIVE_SESSIONS.inc()
        try:
            await answer(websocket, mailbox, claims, verifier, upstreams)
        finally:
            LIVE_SESSIONS.dec()
    except Closing as end:
        await _close(websocket, end)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client left while a reply was being sent
    finally:
        if receiving is not None:
            receiving.cancel()
            with suppress(asyncio.CancelledError):
                await receiving


async def _close(websocket: WebSocket, end: Closing) -> None:
    try:
        await websocket.close(code=end.code, reason=_reason(end.reason))
    except (WebSocketDisconnect, RuntimeError):
        pass  # already gone
