"""ASGI middleware: request ids, HTTP metrics and request-body limits (raw ASGI, so streaming stays cheap)."""
import re
import time

from fastapi import HTTPException
from fastapi.routing import iter_route_contexts
from prometheus_client import Counter, Histogram
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ferkit.logs import REQUEST_ID_HEADER, new_request_id, request_id_var

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests by route, method and status.", ["route", "method", "status"])
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Any other method is counted as "other": a client chooses the method, and each new label value is a series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ObservabilityMiddleware:
    """Gives every request an id (the caller's X-Request-ID if sane) and counts it by route template,
    e.g. /api/v1/models/{name}:rollback: label values are series, so they come from the app's routes,
    never from the path a client sends. Paths no route knows are all "unmatched" (the frontend's
    files, when found, "static")."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        # The stack is built on the first request, when every route is in place. Keyed by the route
        # object, which FastAPI puts in the scope (the template with the router's prefix is its context's).
        self.templates = {
            id(context.original_route): context.path_format
            for context in iter_route_contexts(routes)
            if context.path_format and not isinstance(context.original_route, Mount)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else new_request_id()
        token = request_id_var.set(request_id)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((REQUEST_ID_HEADER.encode(), request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = self._route_label(scope, status)
            method = scope["method"] if scope["method"] in _METHODS else "other"
            HTTP_REQUESTS.labels(route, method, str(status)).inc()
            HTTP_LATENCY.labels(route, method).observe(time.perf_counter() - start)
            request_id_var.reset(token)

    def _route_label(self, scope: Scope, status: int) -> str:
        template = self.templates.get(id(scope.get("route")))
        if template is None:
            return "static" if status < 400 else "unmatched"
        return template


class BodyLimitMiddleware:
    """Refuses bodies over the limit with 413 before they are read into memory.

    Multipart uploads get the upload limit (or, on a path of `upload_limits`, that path's: a batch, a
    video), everything else the (small) JSON limit. Content-Length is checked up front; chunked bodies
    are counted as they stream in.
    """

    def __init__(self, app: ASGIApp, max_json_bytes: int, max_upload_bytes: int, upload_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_json_bytes = max_json_bytes
        self.max_upload_bytes = max_upload_bytes
        self.upload_limits = upload_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        is_upload = headers.get(b"content-type", b"").startswith(b"multipart/form-data")
        limit = self.upload_limits.get(scope["path"], self.max_upload_bytes) if is_upload else self.max_json_bytes
        message = f"request body is larger than {limit} bytes"
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_json(send, 413, message)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            incoming = await receive()
            if incoming["type"] == "http.request":
                received += len(incoming.get("body", b""))
                if received > limit:
                    # An HTTPException passes through FastAPI's body parsing and becomes a JSON 413.
                    raise HTTPException(status_code=413, detail=message)
            return incoming

        await self.app(scope, counted_receive, send)


async def _send_json(send: Send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
