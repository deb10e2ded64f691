"""The typed dependencies of services/gateway/deps.py, through the REST routes of a gateway alone (no
services): a route whose upstream this deployment lacks answers 503, an administrator's route refuses
anyone else with 403, and a protected route without a token is 401; none of them calls an upstream."""
import httpx
import pytest
from fastapi import FastAPI

from fer.v1 import auth_pb2
from services.gateway.app import create_app
from services.gateway.config import Settings
from services.gateway.deps import current_user
from services.gateway.upstreams import Upstreams

API = "/api/v1"
ADMIN_ROUTES = [
    ("POST", f"{API}/models/fer/versions/2:promote", None),
    ("POST", f"{API}/models/fer/versions/2:load", None),
    ("POST", f"{API}/models/fer:rollback", None),
    ("POST", f"{API}/training-jobs", {"dataset": "fer2013/fer2013.csv.gz", "recipe": "fer2013_resnet18_gpu"}),
    ("GET", f"{API}/training-jobs", None),
    ("GET", f"{API}/training-jobs/job-1", None),
    ("GET", f"{API}/admin/users", None),
    ("PATCH", f"{API}/admin/users/user-2", {"disabled": True}),
]
USER_ROUTES = [
    ("GET", f"{API}/users/me", None),
    ("PATCH", f"{API}/users/me", {"display_name": "Ada"}),
    ("DELETE", f"{API}/users/me", None),
    ("GET", f"{API}/predictions", None),
    ("GET", f"{API}/predictions/result-1", None),
    ("GET", f"{API}/predictions/result-1/annotated.png", None),
    ("POST", f"{API}/reports", {"prediction_id": "result-1"}),
    ("GET", f"{API}/reports/report-1", None),
    ("GET", f"{API}/reports/report-1/download", None),
    ("GET", f"{API}/models", None),
    ("GET", f"{API}/models/fer/versions/1/confusion_matrix.png", None),
    ("GET", f"{API}/models/fer/versions/1/report", None),
    ("GET", f"{API}/models/fer/versions/1/card", None),
]


class Untouchable:
    """Stands for an upstream (or the token verifier) that the request must never reach."""

    def __getattr__(self, name):
        raise AssertionError(f"{name} was called")


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


def gateway_app(caller: auth_pb2.User | None = None, **present: bool) -> FastAPI:
    """A gateway without its lifespan: the upstreams named in `present` exist (and must not be called),
    the others are not part of the deployment; `caller` (if any) replaces the bearer-token check."""
    app = create_app(Settings(frontend_dir="/nonexistent/frontend"))
    stubs = {name: Untouchable() if present.get(name) else None for name in ("inference", "models", "training", "reports")}
    app.state.upstreams = Upstreams(auth=Untouchable(), **stubs)
    app.state.token_verifier = Untouchable()
    if caller is not None:
        app.dependency_overrides[current_user] = lambda: caller
    return app


@pytest.mark.parametrize(
    ("method", "path", "body", "service"),
    [
        ("GET", f"{API}/predictions", None, "reports"),
        ("GET", f"{API}/predictions/result-1", None, "reports"),
        ("POST", f"{API}/reports", {"prediction_id": "result-1"}, "reports"),
        ("GET", f"{API}/reports/report-1/download", None, "reports"),
        ("GET", f"{API}/models", None, "models"),
        ("POST", f"{API}/models/fer:rollback", None, "models"),
        ("GET", f"{API}/training-jobs", None, "training"),
        ("GET", f"{API}/training-jobs/job-1", None, "training"),
    ],
)
async def test_an_upstream_outside_the_deployment_is_503(method, path, body, service):
    app = gateway_app(auth_pb2.User(id="admin-1", role=auth_pb2.ROLE_ADMIN))
    async with client_for(app) as client:
        reply = await client.request(method, path, json=body)
    assert reply.status_code == 503, reply.text
    assert reply.json() == {"detail": f"the {service} service is not part of this deployment"}


async def test_an_upload_without_the_reports_service_is_503():
    # The upload goes to the reports service alone (it has inference classify the photo).
    app = gateway_app(auth_pb2.User(id="user-1"), inference=True)
    async with client_for(app) as client:
        reply = await client.post(f"{API}/predictions", files={"file": ("face.png", b"not read", "image/png")})
    assert reply.status_code == 503 and reply.json()["detail"] == "the reports service is not part of this deployment"


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_an_administrators_route_refuses_a_user_with_403(method, path, body):
    app = gateway_app(auth_pb2.User(id="user-1", role=auth_pb2.ROLE_USER), models=True, training=True)
    async with client_for(app) as client:
        reply = await client.request(method, path, json=body)
    assert reply.status_code == 403 and reply.json() == {"detail": "this needs an administrator"}


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES + USER_ROUTES)
async def test_a_protected_route_without_a_token_is_401(method, path, body):
    app = gateway_app(inference=True, models=True, training=True, reports=True)
    async with client_for(app) as client:
        reply = await client.request(method, path, json=body)
    assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"
    assert reply.json()["detail"].startswith("not authenticated")
