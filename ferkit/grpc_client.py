"""gRPC channels every caller opens the same way: retries on UNAVAILABLE, a default deadline, request ids."""
import ipaddress
import json

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ferkit.logs import REQUEST_ID_HEADER, request_id_var

# gRPC's built-in retry (service config): a restart or a brief outage of the callee is retried with
# back-off; anything else fails fast. Only UNAVAILABLE is safe to retry: the call never reached the server.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


# A name that resolves to several addresses (a headless Kubernetes Service: one per pod) gets a connection to
# each and round_robin spreads the calls over them; the default, pick_first, would pin every call of the
# process to one pod, so more replicas would take no load. Subchannels reconnect on their own, with a
# back-off kept short so a restarted pod takes calls again within a second or two.
BALANCED_OPTIONS = [
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def is_balanced(target: str) -> bool:
    """Whether calls to `target` spread over several servers: a list of addresses, or a name (in a cluster,
    a headless Service). One literal address or localhost (`make dev`, tests) keeps a single connection,
    which reconnects on the first call after its server restarts."""
    if target.startswith(("ipv4:", "ipv6:")):
        return "," in target
    host = target.removeprefix("dns:///").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


class _DefaultsInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        metadata = list(client_call_details.metadata or [])
        metadata.append((REQUEST_ID_HEADER, request_id_var.get()))
        details = client_call_details._replace(
            metadata=metadata,
            timeout=client_call_details.timeout or self.timeout_s,
        )
        return await continuation(details, request)


def open_channel(target: str, timeout_s: float = 10.0, max_message_mb: int = 64) -> grpc.aio.Channel:
    """An insecure channel inside the cluster (mTLS, where wanted, belongs to the mesh)."""
    size = max_message_mb * 1024 * 1024
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
            ("grpc.max_send_message_length", size),
            ("grpc.max_receive_message_length", size),
            *(BALANCED_OPTIONS if is_balanced(target) else []),
        ],
        interceptors=[_DefaultsInterceptor(timeout_s)],
    )


async def is_serving(channel: grpc.aio.Channel, service: str = "", timeout_s: float = 2.0) -> bool:
    """The standard health check: True when the callee answers SERVING."""
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s, wait_for_ready=False
        )
    except grpc.RpcError:
        return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING
