"""The FastAPI application: `create_app(settings)` wires routes, middleware and the gRPC upstreams."""
import logging
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from services.gateway.config import Settings
from services.gateway.deps import UpstreamsDep
from services.gateway.errors import grpc_error_handler
from services.gateway.middleware import BodyLimitMiddleware, ObservabilityMiddleware
from services.gateway.routers import auth, limits, models, predictions, reports, training_jobs, users
from services.gateway.security import TokenVerifier
from services.gateway.upstreams import Upstreams

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"
API_ROUTERS = [auth.router, users.router, limits.router, predictions.router, models.router, training_jobs.router, reports.router]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.upstreams = Upstreams.connect(settings)
        app.state.token_verifier = TokenVerifier(app.state.upstreams.auth)
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
    for router in API_ROUTERS:
        app.include_router(router, prefix=API_PREFIX)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(upstreams: UpstreamsDep) -> JSONResponse:
        checks = await upstreams.readiness()
        ready = all(checks.values())
        return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if Path(settings.frontend_dir).is_dir():
        app.mount("/", StaticFiles(directory=settings.frontend_dir, html=True), name="frontend")

    # Added last = outermost: ids and metrics see every response, limits act before any body is read.
    app.add_middleware(BodyLimitMiddleware, max_json_bytes=settings.max_json_bytes, max_upload_bytes=settings.max_upload_bytes)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["x-request-id"],
        )
    app.add_middleware(ObservabilityMiddleware)
    return app
