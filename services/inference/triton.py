"""Triton over gRPC (tritonclient's asyncio client): one request per photo, so Triton's dynamic batcher
groups faces across every caller; deadlines, retries with back-off, and errors the service can map.

Several Triton servers behind one name (a headless Service: one address per pod, or an
`ipv4:a:port,b:port` list): inference is balanced over all of them (round_robin), and every load goes to
each of them, so whichever server answers serves the same versions."""
from __future__ import annotations

import asyncio
import logging
import socket

import numpy as np
import tritonclient.grpc.aio as triton_grpc
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from ferkit.grpc_client import is_balanced
from ferkit.modelrepo import INPUT_NAME, LOCAL_MAX_BATCH_SIZE, OUTPUT_NAME

log = logging.getLogger(__name__)

# Worth another attempt: Triton restarting, or a connection that dropped.
_RETRYABLE = {"StatusCode.UNAVAILABLE"}


class TritonUnavailable(RuntimeError):
    """Triton cannot be reached or did not answer in time (the service answers UNAVAILABLE)."""


class ModelNotServing(LookupError):
    """Triton is up but does not serve that model version (not loaded, or being reloaded)."""


class TritonError(RuntimeError):
    """Triton refused the request for another reason (bad input, failed load)."""


def _status(exc: InferenceServerException) -> str:
    return str(exc.status() or "")


def classify(exc: InferenceServerException, what: str) -> Exception:
    status = _status(exc)
    message = exc.message() or str(exc)
    if status in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED"):
        return TritonUnavailable(f"Triton is unavailable ({what}): {message}")
    if status == "StatusCode.NOT_FOUND" or "not at ready state" in message or "is not found" in message:
        return ModelNotServing(message)
    return TritonError(f"Triton refused {what}: {message}")


class TritonClient:
    def __init__(self, url: str, timeout_s: float = 10.0, attempts: int = 3, backoff_s: float = 0.2,
                 load_timeout_s: float = 120.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.load_timeout_s = load_timeout_s
        # Reconnect quickly after Triton restarts: gRPC's default back-off grows to two minutes, during
        # which every call fails at once without trying the connection again.
        self._client = self._connect(url)

    @staticmethod
    def _connect(url: str):
        return triton_grpc.InferenceServerClient(url, channel_args=[
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            # Every server the name resolves to takes requests, not only the first.
            *([("grpc.lb_policy_name", "round_robin")] if is_balanced(url) else []),
        ])

    async def endpoints(self) -> list[str]:
        """Every server behind the url, each as host:port: the addresses of an `ipv4:`/`ipv6:` list, or what the
        name resolves to now (a headless Service: every ready pod). One server as the channel sees it
        (is_balanced) stays one, so localhost's two loopbacks do not get each load twice."""
        if not is_balanced(self.url):
            return [self.url]
        if self.url.startswith(("ipv4:", "ipv6:")):
            return self.url.partition(":")[2].split(",")
        host, _, port = self.url.removeprefix("dns:///").rpartition(":")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except (OSError, ValueError):
            return [self.url]  # let the load itself say what is wrong
        addresses = sorted({info[4][0] for info in infos})
        return [f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in addresses] or [self.url]

    async def close(self) -> None:
        await self._client.close()

    async def _call(self, what: str, factory):
        """Retry UNAVAILABLE with exponential back-off; everything else is classified at once."""
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                return await factory()
            except InferenceServerException as exc:
                if _status(exc) in _RETRYABLE and attempt < self.attempts:
                    log.warning("Triton unavailable for %s (attempt %d/%d): %s", what, attempt, self.attempts, exc.message())
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                raise classify(exc, what) from None

    async def infer_batch(self, model: str, version: int, faces: np.ndarray) -> tuple[np.ndarray, int]:
        """(N, C, H, W) float32 faces as one request -> ((N, classes) logits, the version that answered)."""
        batch = np.ascontiguousarray(faces, dtype=np.float32)

        async def call():
            tensor = triton_grpc.InferInput(INPUT_NAME, list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch)
            return await self._client.infer(
                model, [tensor], model_version=str(version) if version else "",
                outputs=[triton_grpc.InferRequestedOutput(OUTPUT_NAME)], client_timeout=self.timeout_s,
            )

        result = await self._call(f"inference on {model}", call)
        logits = result.as_numpy(OUTPUT_NAME)
        if logits is None or logits.shape[0] != len(batch):
            raise TritonError(f"{model} answered without a {OUTPUT_NAME!r} row per face")
        return logits, int(result.get_response().model_version or version or 0)

    async def infer_faces(self, model: str, version: int, faces: np.ndarray) -> tuple[np.ndarray, int]:
        """(N, C, H, W) faces -> ((N, classes) logits, version). A photo's faces travel as one request
        (split at the configs' smaller batch limit): per-request costs are paid once a photo, not once a
        face, and Triton's dynamic batcher still merges the requests of many callers into one forward."""
        if len(faces) == 0:
            return np.zeros((0, 0), dtype=np.float32), version
        step = LOCAL_MAX_BATCH_SIZE
        answers = await asyncio.gather(*(self.infer_batch(model, version, faces[i:i + step]) for i in range(0, len(faces), step)))
        return np.concatenate([logits for logits, _ in answers]), answers[0][1]

    async def is_live(self) -> bool:
        try:
            return bool(await self._client.is_server_live(client_timeout=2.0))
        except InferenceServerException:
            return False

    async def repository_index(self) -> dict[tuple[str, int], str]:
        """{(model, version): state} of what Triton knows (READY, UNAVAILABLE, LOADING...)."""
        index = await self._call("the repository index", lambda: self._client.get_model_repository_index(
            as_json=True, client_timeout=self.timeout_s))
        out = {}
        for entry in index.get("models", []):
            if entry.get("version"):
                out[(entry["name"], int(entry["version"]))] = entry.get("state", "")
        return out

    async def load(self, model: str, config_text: str, versions: list[int]) -> None:
        """Load `model` serving exactly `versions`: the model's config (text format, as on disk) with
        its version policy replaced. Triton picks up version directories written since it started."""
        config = text_format.Parse(config_text, model_config_pb2.ModelConfig())
        config.ClearField("version_policy")
        config.version_policy.specific.versions.extend(sorted(set(versions)))
        body = json_format.MessageToJson(config, preserving_proto_field_name=True)
        endpoints = await self.endpoints()
        if len(endpoints) == 1:
            await self._call(f"loading {model} {sorted(versions)}", lambda: self._client.load_model(
                model, config=body, client_timeout=self.load_timeout_s))
            return
        # Each server on its own: a load sent through the balanced channel would reach only one of them.
        await asyncio.gather(*(self._load_on(endpoint, model, body, versions) for endpoint in endpoints))

    async def _load_on(self, endpoint: str, model: str, body: str, versions: list[int]) -> None:
        client = self._connect(endpoint)
        try:
            await self._call(f"loading {model} {sorted(versions)} on {endpoint}", lambda: client.load_model(
                model, config=body, client_timeout=self.load_timeout_s))
        finally:
            await client.close()
