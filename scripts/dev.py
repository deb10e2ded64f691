"""Run the whole platform on this machine: `make dev` (gateway on http://127.0.0.1:8080).

Embedded defaults: SQLite files and logs under var/, the bundled Triton, an in-process report queue
(set AMQP_URL to use RabbitMQ). Ctrl-C stops every process. `--port-base N` moves every port
(N = gateway, N+1.. the rest) so a second copy can run beside the first, as the browser tests do.
"""
import argparse
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


@dataclass
class Ports:
    gateway: int = 8080
    auth: int = 50051
    inference: int = 50052
    reports: int = 50053
    triton_http: int = 8000
    triton_grpc: int = 8001
    triton_metrics: int = 8002
    auth_metrics: int = 9101
    inference_metrics: int = 9102
    reports_metrics: int = 9103
    worker_metrics: int = 9104

    @classmethod
    def from_base(cls, base: int) -> "Ports":
        return cls(*range(base, base + len(cls.__dataclass_fields__)))

    @classmethod
    def free_base(cls) -> int:
        """A --port-base whose whole block is free now, so a copy can run beside `make dev` on 8080."""
        count = len(cls.__dataclass_fields__)
        for _ in range(200):
            base = random.randrange(20_000, 60_000)
            sockets = []
            try:
                for port in range(base, base + count):
                    sock = socket.socket()
                    sockets.append(sock)
                    sock.bind(("127.0.0.1", port))
                return base
            except OSError:
                continue
            finally:
                for sock in sockets:
                    sock.close()
        raise RuntimeError("no free block of local ports for the platform")


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def _secret_file(path: Path, make) -> str:
    """A local secret made once and kept, so tokens and the admin password survive restarts."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text()


def _new_signing_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def seed_models(repository: Path, shipped: Path = ROOT / "models") -> None:
    """Copies what ships in models/ (each model's configs and versions) into `repository`, once each: a
    version or config already there is never overwritten, so the versions trained locally stay."""
    for model_dir in sorted(p for p in shipped.iterdir() if p.is_dir()):
        target = repository / model_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for item in sorted(model_dir.iterdir()):
            if item.name.startswith(".") or (target / item.name).exists():
                continue
            if item.is_dir():
                # Under a hidden name first, then renamed: never half a version in place.
                shutil.copytree(item, target / f".{item.name}.tmp", dirs_exist_ok=True)
                (target / f".{item.name}.tmp").rename(target / item.name)
            else:
                shutil.copy2(item, target / item.name)


def platform(var: Path, ports: Ports) -> tuple[list[list[str]], list[Process], dict[str, str]]:
    """What `make dev` runs: setup commands (migrations), then long-running processes, and their shared env."""
    logs = var / "log"
    logs.mkdir(parents=True, exist_ok=True)
    admin_password = _secret_file(var / "admin-password.txt", lambda: secrets.token_urlsafe(12) + "-A1")
    env = {
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
        "AUTH_DATABASE_URL": f"sqlite+aiosqlite:///{var / 'auth.db'}",
        "AUTH_JWT_PRIVATE_KEY": _secret_file(var / "jwt-signing-key.pem", _new_signing_key),
        "AUTH_ADMIN_EMAIL": "admin@example.com",
        "AUTH_ADMIN_PASSWORD": admin_password,
        "AUTH_GRPC_PORT": str(ports.auth),
        "AUTH_METRICS_PORT": str(ports.auth_metrics),
        "AUTH_LOG_FILE": str(logs / "auth.log"),
        "GATEWAY_HTTP_PORT": str(ports.gateway),
        "GATEWAY_AUTH_ADDR": f"127.0.0.1:{ports.auth}",
        "GATEWAY_INFERENCE_ADDR": f"127.0.0.1:{ports.inference}",
        "GATEWAY_REPORTS_ADDR": f"127.0.0.1:{ports.reports}",
        "GATEWAY_FRONTEND_DIR": str(ROOT / "frontend"),
        "GATEWAY_LOG_FILE": str(logs / "gateway.log"),
        "INFERENCE_GRPC_PORT": str(ports.inference),
        "INFERENCE_METRICS_PORT": str(ports.inference_metrics),
        "INFERENCE_TRITON_URL": f"127.0.0.1:{ports.triton_grpc}",
        # A copy of models/ (seed_models): training and promoting under `make dev` never write into the checkout.
        "INFERENCE_MODEL_REPOSITORY": str(var / "models"),
        # The promoted version is local state, kept out of the committed model repository.
        "INFERENCE_STATE_DIR": str(var / "inference"),
        "INFERENCE_LOG_FILE": str(logs / "inference.log"),
        # The training jobs' records.
        "INFERENCE_DATABASE_URL": f"sqlite+aiosqlite:///{var / 'inference.db'}",
        "REPORTS_DATABASE_URL": f"sqlite+aiosqlite:///{var / 'reports.db'}",
        "REPORTS_GRPC_PORT": str(ports.reports),
        "REPORTS_METRICS_PORT": str(ports.reports_metrics),
        "REPORTS_WORKER_METRICS_PORT": str(ports.worker_metrics),
        "REPORTS_LOG_FILE": str(logs / "reports.log"),
        "REPORTS_INFERENCE_ADDR": f"127.0.0.1:{ports.inference}",
        "REPORTS_AUTH_ADDR": f"127.0.0.1:{ports.auth}",
    }
    setup = [
        [PYTHON, "-m", "services.auth.cli", "migrate"],
        [PYTHON, "-m", "services.reports.cli", "migrate"],
        [PYTHON, "-m", "services.inference.cli", "migrate"],
    ]
    processes = [
        Process("auth", [PYTHON, "-m", "services.auth.server"]),
        # Triton before the inference service, which loads the promoted model into it (and retries until it is up).
        Process("triton", [
            PYTHON, "-m", "scripts.local_triton",  # serves INFERENCE_MODEL_REPOSITORY
            "--http-port", str(ports.triton_http), "--grpc-port", str(ports.triton_grpc), "--metrics-port", str(ports.triton_metrics),
            "--work-dir", str(var / "triton"), "--log-file", str(logs / "triton.log"),
        ]),
        Process("inference", [PYTHON, "-m", "services.inference.server"]),
        Process("reports", [PYTHON, "-m", "services.reports.server"]),
        Process("gateway", [PYTHON, "-m", "services.gateway.server"]),
    ]
    # With RabbitMQ, a worker renders the reports; without it the reports server does, in-process.
    if os.environ.get("AMQP_URL"):
        processes.append(
            Process("reports-worker", [PYTHON, "-m", "services.reports.worker"], {"REPORTS_LOG_FILE": str(logs / "reports-worker.log")})
        )
    return setup, processes, env


def _stop(running: dict[str, subprocess.Popen], grace_s: float = 10.0) -> None:
    for proc in running.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in running.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--var", type=Path, default=ROOT / "var", help="state folder: databases, logs, local secrets")
    parser.add_argument("--port-base", type=int, default=0, help="move every port: gateway here, the others after it")
    args = parser.parse_args(argv)
    var = args.var.resolve()
    ports = Ports.from_base(args.port_base) if args.port_base else Ports()
    setup, processes, env = platform(var, ports)
    # The caller's environment wins: AMQP_URL, a PostgreSQL URL, other ports...
    env = {**os.environ, **env, **{k: v for k, v in os.environ.items() if k in env}}

    if env["INFERENCE_MODEL_REPOSITORY"] == str(var / "models"):
        seed_models(var / "models")
    for command in setup:
        subprocess.run(command, env=env, cwd=ROOT, check=True)

    running: dict[str, subprocess.Popen] = {}
    stopping = []
    # Ctrl-C (or SIGTERM) asks for a stop; every child then gets SIGTERM and time to drain.
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        for proc in processes:
            running[proc.name] = subprocess.Popen(proc.argv, env={**env, **proc.env}, cwd=ROOT)
        print(
            f"\nFER platform: http://127.0.0.1:{ports.gateway}/ (API docs at /docs)\n"
            f"admin: admin@example.com / password in {var / 'admin-password.txt'}\n"
            f"logs: {var / 'log'}; Ctrl-C stops everything\n",
            flush=True,
        )
        while not stopping:
            for name, proc in running.items():
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping the platform", file=sys.stderr, flush=True)
                    return proc.returncode or 1
            time.sleep(0.5)
        return 0
    finally:
        _stop(running)


if __name__ == "__main__":
    sys.exit(main())
