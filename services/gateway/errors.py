"""Errors as JSON {"detail": ...}: gRPC status codes from the services become HTTP statuses, every
422 has FastAPI's validation shape, {"detail": [{"loc", "msg", "type", ...}]}, without echoing what
was sent beyond a few characters (a 1 MB field must not come back in the answer), and a 405 says
in Allow what the path does take."""
import json
import logging

import grpc
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match, Mount

log = logging.getLogger(__name__)

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
    grpc.StatusCode.CANCELLED: 503,
}
# The longest input (or context value, or location part) a 422 repeats, in characters of its JSON.
ECHO_MAX_CHARS = 100


async def grpc_error_handler(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
    status = HTTP_STATUS.get(exc.code(), 502)
    if status == 503:
        detail = "a service the platform depends on is unavailable; please retry shortly"
        log.warning("upstream unavailable on %s: %s %s", request.url.path, exc.code().name, exc.details())
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})
    if status == 502:
        log.error("upstream error on %s: %s %s", request.url.path, exc.code().name, exc.details())
        return JSONResponse({"detail": "the platform failed to handle the request"}, status_code=502)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else _retry_after(exc) if status == 429 else None
    message = exc.details() or exc.code().name.lower()
    return JSONResponse({"detail": invalid(message) if status == 422 else message}, status_code=status, headers=headers)


def _retry_after(exc: grpc.aio.AioRpcError) -> dict | None:
    """A limit's wait, which the service sends as a `retry-after` trailer (seconds), as the 429's header."""
    seconds = dict(exc.trailing_metadata() or ()).get("retry-after")
    return {"Retry-After": seconds} if seconds else None


async def http_error_handler(request: Request, exc: HTTPException) -> Response:
    """FastAPI's, except that a 422 raised with a sentence gets the validation shape, and a 405's Allow
    lists every method of the path (the router names those of the first route it finds only)."""
    if exc.status_code == 422 and isinstance(exc.detail, str):
        return JSONResponse({"detail": invalid(exc.detail)}, status_code=422, headers=exc.headers)
    if exc.status_code == 405 and (methods := _allowed_methods(request)):
        exc = HTTPException(405, exc.detail, headers={**(exc.headers or {}), "Allow": ", ".join(sorted(methods))})
    return await http_exception_handler(request, exc)


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": [_without_echo(error) for error in jsonable_encoder(exc.errors())]}, status_code=422)


def _allowed_methods(request: Request) -> set[str]:
    """The methods of every route whose path is this request's (the frontend's mount aside)."""
    methods = set()
    for route in iter_route_contexts(request.app.routes):
        if route.methods and not isinstance(route.original_route, Mount) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods
    return methods


def invalid(message: str) -> list[dict]:
    """A 422's detail for a refusal that names no single field."""
    return [{"type": "value_error", "loc": [], "msg": message}]


def _short(value) -> bool:
    return len(json.dumps(value)) <= ECHO_MAX_CHARS


def _without_echo(error: dict) -> dict:
    """One validation error with the caller's input kept only when short, and likewise its context
    values and location parts (an unknown field's name is the caller's too)."""
    kept = {
        "type": error["type"],
        "loc": [part if _short(part) else "…" for part in error["loc"]],
        "msg": error["msg"],
    }
    if "input" in error and _short(error["input"]):
        kept["input"] = error["input"]
    context = {key: value for key, value in error.get("ctx", {}).items() if _short(value)}
    if context:
        kept["ctx"] = context
    return kept
