"""Prometheus metrics shared by every gRPC service (names follow go-grpc-prometheus, which dashboards know)."""
from prometheus_client import Counter, Histogram, start_http_server

GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_LATENCY = Histogram(
    "grpc_server_handling_seconds",
    "Time to handle an RPC on the server.",
    ["grpc_service", "grpc_method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def start_metrics_server(port: int, host: str = "127.0.0.1") -> None:
    """Serve /metrics over HTTP in a background thread; port 0 means none."""
    if port:
        start_http_server(port, addr=host)
