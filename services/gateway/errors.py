"""gRPC status codes from the services become HTTP statuses with a JSON {"detail": ...} body."""
import logging

import grpc
from fastapi import Request
from fastapi.responses import JSONResponse

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


async def grpc_error_handler(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
    status = HTTP_STATUS.get(exc.code(), 502)
    if status == 503:
        detail = "a service the platform depends on is unavailable; please retry shortly"
        log.warning("upstream unavailable on %s: %s %s", request.url.path, exc.code().name, exc.details())
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})
    if status == 502:
        log.error("upstream error on %s: %s %s", request.url.path, exc.code().name, exc.details())
        return JSONResponse({"detail": "the platform failed to handle the request"}, status_code=502)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": exc.details() or exc.code().name.lower()}, status_code=status, headers=headers)
