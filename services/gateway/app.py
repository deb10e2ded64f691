"""The FastAPI application: `create_app(settings)` wires routes, middleware and the gRPC upstreams."""
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import grpc
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match, Mount
from starlette.types import Scope
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from services.gateway.config import Settings
from services.gateway.deps import UpstreamsDep
from services.gateway.errors import grpc_error_handler, http_error_handler, validation_error_handler
from services.gateway.middleware import BodyLimitMiddleware, ObservabilityMiddleware
from services.gateway.openapi import declare_errors
from services.gateway.routers import admin, auth, batches, limits, live, models, predictions, reports, training_jobs, users, videos
from services.gateway.security import TokenVerifier
from services.gateway.upstreams import Upstreams

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"
API_ROUTERS = [auth.router, users.router, admin.router, limits.router, predictions.router, batches.router, videos.router, live.router,
               models.router, training_jobs.router, reports.router]
# What a multipart body may add to the files it carries (part headers, the other fields, a ZIP's directory).
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, bool] = Field(description="Whether each gRPC service of this deployment answers its health check.")


class FrontendMount(Mount):
    """The static frontend at "/", beside the API rather than over it: a path under the API prefix is
    answered by the API (405 with Allow for a known path and another method, 404 otherwise), never by
    the file server, which would take every method and path for a missing file."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and (scope["path"] + "/").startswith(API_PREFIX + "/"):
            return Match.NONE, {}
        return super().matches(scope)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.upstreams = Upstreams.connect(settings)
        app.state.token_verifier = TokenVerifier(app.state.upstreams.auth, settings.key_refetch_interval_s)
        yield
        await app.state.upstreams.close()

    app = FastAPI(
        title="FER platform API",
        version="1.0",
        description="Facial-expression recognition: upload photos, get every face's expression, keep reports.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_exception_handler(grpc.aio.AioRpcError, grpc_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    for router in API_ROUTERS:
        app.include_router(router, prefix=API_PREFIX)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], response_model=Readiness, responses={503: {"model": Readiness, "description": "Not ready."}})
    async def readyz(upstreams: UpstreamsDep) -> JSONResponse:
        checks = await upstreams.readiness()
        ready = all(checks.values())
        return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if Path(settings.frontend_dir).is_dir():
        app.router.routes.append(FrontendMount("/", StaticFiles(directory=settings.frontend_dir, html=True), name="frontend"))
    declare_errors(app)

    # Added last = outermost: ids and metrics see every response, limits act before any body is read.
    upload_limits = {
        f"{API_PREFIX}/batches": settings.batch_max_bytes + MULTIPART_OVERHEAD_BYTES,
        f"{API_PREFIX}/videos": settings.video_max_bytes + MULTIPART_OVERHEAD_BYTES,
    }
    app.add_middleware(BodyLimitMiddleware, max_json_bytes=settings.max_json_bytes, max_upload_bytes=settings.max_upload_bytes,
                       upload_limits=upload_limits)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["x-request-id"],
        )
    app.add_middleware(ObservabilityMiddleware, routes=app.routes)
    # Outermost: everything inside sees the client's address (login limits count it), resolved once.
    if settings.trusted_proxy_list:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxy_list)
    return app
