"""Start an async gRPC server the same way in every service: health, reflection, metrics, request ids,
graceful shutdown on SIGTERM/SIGINT."""
import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ferkit.config import ServiceSettings
from ferkit.logs import REQUEST_ID_HEADER, new_request_id, request_id_var
from ferkit.metrics import GRPC_HANDLED, GRPC_LATENCY, start_metrics_server

log = logging.getLogger(__name__)


@dataclass
class Registration:
    """One servicer: `add` is the generated add_XServicer_to_server, `name` the full service name."""

    add: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    name: str


class _ObservingInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every unary RPC by method and status code, and carries the caller's request id."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        metadata = dict(handler_call_details.invocation_metadata or ())
        behavior = handler.unary_unary

        async def observed(request, context: grpc.aio.ServicerContext):
            token = request_id_var.set(metadata.get(REQUEST_ID_HEADER) or new_request_id())
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                response = await behavior(request, context)
                code = context.code() or grpc.StatusCode.OK
                return response
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("unhandled error in %s", handler_call_details.method)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            finally:
                GRPC_LATENCY.labels(service, method).observe(time.perf_counter() - start)
                GRPC_HANDLED.labels(service, method, _code_name(code)).inc()
                request_id_var.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _code_name(code: Any) -> str:
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


# How long a client connection lives before the server asks the client to reconnect.
CONNECTION_MAX_AGE_S = 300


class GrpcService:
    """A running server: `await start()`, then `await wait()`; `await stop()` drains in-flight calls."""

    def __init__(self, settings: ServiceSettings, registrations: Iterable[Registration]) -> None:
        self.settings = settings
        self.registrations = list(registrations)
        # Photos, annotated images and stored originals travel as bytes: gRPC's default 4 MB cap on
        # received messages would refuse ordinary uploads. 64 MB, as in open_channel.
        size = 64 * 1024 * 1024
        self.server = grpc.aio.server(
            interceptors=[_ObservingInterceptor()],
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                # Clients connect again (and resolve the name again) every few minutes: pods that scaled up
                # since get their share of calls. In-flight calls get the grace period to finish.
                ("grpc.max_connection_age_ms", CONNECTION_MAX_AGE_S * 1000),
                ("grpc.max_connection_age_grace_ms", 30_000),
            ],
        )
        self.health = health.aio.HealthServicer()
        self.port = 0

    async def start(self) -> int:
        for reg in self.registrations:
            reg.add(reg.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [reg.name for reg in self.registrations]
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.server,
        )
        self.port = self.server.add_insecure_port(self.settings.grpc_address)
        await self.server.start()
        for name in ["", *names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("%s listening on %s:%d", self.settings.service_name, self.settings.host, self.port)
        return self.port

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.settings.shutdown_grace_s)

    async def wait(self) -> None:
        await self.server.wait_for_termination()


async def run_until_signalled(
    service: GrpcService,
    on_start: Callable[[], Awaitable[None]] | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """The main loop of a service process: start, serve until SIGTERM/SIGINT, drain, clean up."""
    start_metrics_server(service.settings.metrics_port, service.settings.host)
    if on_start:
        await on_start()
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("%s shutting down", service.settings.service_name)
    await service.stop()
    if on_stop:
        await on_stop()
