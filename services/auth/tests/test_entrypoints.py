"""The auth service as operators run it: CLI migrations, the admin command, the server process and SIGTERM."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.fixtures.databases import free_port

ROOT = Path(__file__).resolve().parents[3]


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
        "AUTH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}",
        "AUTH_GRPC_PORT": str(port),
        "AUTH_METRICS_PORT": "0",
        "AUTH_LOG_FILE": str(tmp_path / "log" / "auth.log"),
        "AUTH_ADMIN_PASSWORD": "Admin-secret-1",
    }


def _serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_cli_and_server_process(tmp_path):
    port = free_port()
    env = _env(tmp_path, port)
    migrate = subprocess.run([sys.executable, "-m", "services.auth.cli", "migrate"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert migrate.returncode == 0, migrate.stderr
    admin = subprocess.run(
        [sys.executable, "-m", "services.auth.cli", "create-admin", "--email", "root@example.com"],
        env=env, cwd=ROOT, capture_output=True, text=True,
    )
    assert admin.returncode == 0 and "admin root@example.com" in admin.stdout, admin.stderr
    weak = subprocess.run(
        [sys.executable, "-m", "services.auth.cli", "create-admin", "--email", "other@example.com"],
        env={**env, "AUTH_ADMIN_PASSWORD": "weak"}, cwd=ROOT, capture_output=True, text=True,
    )
    assert weak.returncode != 0 and "at least 8" in weak.stderr

    server = subprocess.Popen([sys.executable, "-m", "services.auth.server"], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not _serving(port):
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "auth server did not become healthy"
            time.sleep(0.2)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0
    finally:
        if server.poll() is None:
            server.kill()
    log_text = (tmp_path / "log" / "auth.log").read_text()
    assert "auth listening on" in log_text and "auth shutting down" in log_text
    assert " INFO    auth " in log_text  # the one format: time, level, service, logger, [request id]
