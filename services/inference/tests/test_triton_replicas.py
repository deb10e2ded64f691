"""Several Triton servers behind one name (a headless Service in the chart): every load reaches each of
them, and inference is spread over them. Two real tritonservers on a repository of their own."""
import asyncio
import socket

import numpy as np
import pytest

from ferkit import modelrepo
from services.inference.registry import ModelRegistry
from services.inference.tests.helpers import triton_counters
from services.inference.triton import TritonClient
from tests.fixtures.databases import free_port
from tests.fixtures.triton import MODEL_NAME, export_random_resnet18


@pytest.fixture(scope="module")
def two_tritons(tmp_path_factory):
    from scripts.local_triton import LocalTriton

    repo = tmp_path_factory.mktemp("replicas") / "models"
    repo.mkdir()
    export_random_resnet18(repo, seed=3)
    servers = []
    try:
        for n in (1, 2):
            work = tmp_path_factory.mktemp(f"triton-{n}")
            servers.append(LocalTriton(repo, free_port(), free_port(), free_port(), work_dir=work, log_file=work / "triton.log",
                                       env={"FER_TORCH_BF16": "0"}).start(timeout_s=120))
        yield repo, servers
    finally:
        for server in servers:
            server.stop()


async def test_a_load_reaches_every_triton_and_inference_is_spread_over_them(two_tritons):
    repo, servers = two_tritons
    version = modelrepo.latest_version(repo / MODEL_NAME)
    # What a headless Service's name resolves to: both servers.
    client = TritonClient("ipv4:" + ",".join(s.grpc_url for s in servers))
    assert await client.endpoints() == [s.grpc_url for s in servers]
    registry = ModelRegistry(repo, client, "local", state_dir=repo.parent, default_model=MODEL_NAME)
    try:
        assert await registry.bootstrap() == version
        for server in servers:
            alone = TritonClient(server.grpc_url)
            try:
                assert (await alone.repository_index())[(MODEL_NAME, version)] == "READY", server.grpc_url
            finally:
                await alone.close()

        faces = np.random.default_rng(0).standard_normal((1, 1, 48, 48)).astype(np.float32)
        # A channel connects to each server in the background: until both are connected, calls go to the one that is.
        for _ in range(10):
            await client.infer_faces(MODEL_NAME, version, faces)
            await asyncio.sleep(0.1)
        before = [triton_counters(s.metrics_url, MODEL_NAME, version)["nv_inference_request_success"] for s in servers]
        await asyncio.gather(*(client.infer_faces(MODEL_NAME, version, faces) for _ in range(24)))
        after = [triton_counters(s.metrics_url, MODEL_NAME, version)["nv_inference_request_success"] for s in servers]
        served = [a - b for a, b in zip(after, before)]
        assert sum(served) == 24 and min(served) > 0, f"requests per server: {served}"
    finally:
        await client.close()


async def test_a_name_resolves_to_each_of_its_addresses():
    # One server as the channel sees it (an address, localhost) is itself, so localhost's two loopbacks
    # never get a load twice; a list is its addresses; any other name is looked up, here the machine's own
    # (/etc/hosts has it on every machine this runs on).
    name = socket.gethostname()
    infos = socket.getaddrinfo(name, 8001, type=socket.SOCK_STREAM)
    resolved = [f"[{a}]:8001" if ":" in a else f"{a}:8001" for a in sorted({info[4][0] for info in infos})]
    cases = (
        ("127.0.0.1:8001", ["127.0.0.1:8001"]),
        ("localhost:8001", ["localhost:8001"]),
        ("ipv4:127.0.0.1:8001,127.0.0.2:8001", ["127.0.0.1:8001", "127.0.0.2:8001"]),
        ("ipv6:[::1]:8001,[::2]:8001", ["[::1]:8001", "[::2]:8001"]),
        (f"{name}:8001", resolved),
        (f"dns:///{name}:8001", resolved),
    )
    for url, expected in cases:
        client = TritonClient(url)
        try:
            assert await client.endpoints() == expected, url
        finally:
            await client.close()
