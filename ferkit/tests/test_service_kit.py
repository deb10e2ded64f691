"""The shared kit: request ids across gRPC, metrics by status code, health, reflection, dependencies."""
import asyncio
import logging
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from fer.v1 import auth_pb2, auth_pb2_grpc
from ferkit.grpc_client import open_channel
from ferkit.logs import request_id_var
from tests.fixtures.auth import unique_email

ROOT = Path(__file__).resolve().parents[2]


class _CaptureRequestIds(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.getMessage(), request_id_var.get()))


async def test_request_id_travels_from_gateway_to_auth(gateway):
    capture = _CaptureRequestIds()
    logger = logging.getLogger("services.auth.service")
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    try:
        response = await gateway.post(
            "/api/v1/auth/register",
            json={"email": unique_email(), "password": "Correct-horse-9", "display_name": "Trace"},
            headers={"X-Request-ID": "trace-from-browser"},
        )
        assert response.status_code == 201
    finally:
        logger.removeHandler(capture)
    assert ("registered user " + response.json()["id"], "trace-from-browser") in capture.seen


async def test_grpc_metrics_health_and_reflection(auth_address):
    def handled(code: str) -> float:
        labels = {"grpc_service": "fer.v1.AuthService", "grpc_method": "GetUser", "grpc_code": code}
        return REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0

    before = handled("NOT_FOUND")
    channel = open_channel(auth_address)
    try:
        try:
            await auth_pb2_grpc.AuthServiceStub(channel).GetUser(auth_pb2.GetUserRequest(user_id="nobody"))
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
        # The server counts the call as its handler returns, a moment after the client has the status.
        for _ in range(50):
            if handled("NOT_FOUND") == before + 1:
                break
            await asyncio.sleep(0.02)
        assert handled("NOT_FOUND") == before + 1

        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "fer.v1.AuthService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = [service.name async for reply in replies for service in reply.list_services_response.service]
        assert {"fer.v1.AuthService", "grpc.health.v1.Health"} <= set(names)
    finally:
        await channel.close()


def _closure(extras: dict, name: str) -> set[str]:
    """Every requirement an extra pulls in, following the project's self-references."""
    found = set()
    for requirement in extras[name]:
        if requirement.startswith("fer-platform["):
            for inner in requirement[len("fer-platform[") : -1].split(","):
                found |= _closure(extras, inner)
        else:
            found.add(requirement.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].split("~")[0].strip().lower())
    return found


def test_light_services_never_pull_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for service in ("gateway", "auth", "reports"):
        assert not {"torch", "torchvision", "nvidia-pytriton"} & _closure(extras, service), service
    # And importing them does not load torch either.
    code = "import sys, services.gateway.app, services.auth.server; assert 'torch' not in sys.modules, 'torch imported'"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)


async def test_a_channel_spreads_calls_over_every_address_of_its_target():
    """A headless Service's name resolves to every pod: calls must reach all of them (round_robin), not
    the first one only. Two servers that answer the same health check differently tell them apart."""
    from ferkit.config import ServiceSettings
    from ferkit.grpc_server import GrpcService
    from tests.fixtures.databases import free_port

    servers = [GrpcService(ServiceSettings(service_name=f"replica-{n}", grpc_port=free_port(), shutdown_grace_s=0.2), [])
               for n in (1, 2)]
    for server, status in zip(servers, (health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING)):
        await server.start()
        await server.health.set("replica", status)
    channel = open_channel("ipv4:" + ",".join(server.settings.grpc_address for server in servers))
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        answers = [(await stub.Check(health_pb2.HealthCheckRequest(service="replica"))).status for _ in range(20)]
        # Each server takes its share (the first calls may go to whichever connected first).
        assert min(answers.count(health_pb2.HealthCheckResponse.SERVING), answers.count(health_pb2.HealthCheckResponse.NOT_SERVING)) >= 5, answers
    finally:
        await channel.close()
        for server in servers:
            await server.stop()


def test_names_and_lists_are_balanced_one_address_is_not():
    from ferkit.grpc_client import is_balanced

    assert is_balanced("fer-inference:50052") and is_balanced("dns:///fer-auth.fer.svc:50051")
    assert is_balanced("ipv4:10.0.0.1:50051,10.0.0.2:50051")
    for single in ("127.0.0.1:50051", "localhost:50051", "[::1]:50051", "ipv4:10.0.0.1:50051"):
        assert not is_balanced(single), single
