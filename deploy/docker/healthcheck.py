"""Container health check without extra binaries: `healthcheck.py http URL` or `healthcheck.py grpc HOST:PORT`.

Without arguments it checks the image's own service (FER_SERVICE), on the port its settings give:
the gateway's /healthz over HTTP, any other service's gRPC health. Exit 0 when healthy (HTTP 2xx, or
grpc.health.v1 SERVING), 1 otherwise.
"""

import importlib
import os
import sys


def http(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - local probe
        return 200 <= resp.status < 300


def grpc_serving(target: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def own_service() -> tuple[str, str]:
    """The kind and target of this image's service, from its settings (they honour the environment)."""
    settings = importlib.import_module(f"services.{os.environ['FER_SERVICE']}.config").Settings()
    if hasattr(settings, "http_port"):
        return "http", f"http://127.0.0.1:{settings.http_port}/healthz"
    return "grpc", f"127.0.0.1:{settings.grpc_port}"


if __name__ == "__main__":
    try:
        kind, target = sys.argv[1:3] if len(sys.argv) > 2 else own_service()
        ok = http(target) if kind == "http" else grpc_serving(target)
    except Exception as exc:  # any failure is "unhealthy", with the reason in the container's health log
        print(f"unhealthy: {exc!r}")
        ok = False
    sys.exit(0 if ok else 1)
