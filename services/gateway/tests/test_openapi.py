"""Item 8 of issue 12, the contract, on the gateway alone (services faked or absent): the OpenAPI
declares the statuses each route answers; an out-of-range version is a 422; a known path with another
method is a 405, the frontend mounted or not."""
import pytest

from fer.v1 import auth_pb2
from services.gateway.app import create_app
from services.gateway.config import Settings
from services.gateway.deps import current_user
from services.gateway.tests.test_deps import Untouchable, client_for, gateway_app
from services.gateway.upstreams import Upstreams

API = "/api/v1"


@pytest.fixture(scope="module")
def operations() -> dict[tuple[str, str], dict]:
    schema = create_app(Settings(frontend_dir="/nonexistent/frontend")).openapi()
    return {(method.upper(), path): op for path, ops in schema["paths"].items() for method, op in ops.items()}


@pytest.mark.parametrize(("method", "path", "statuses"), [
    ("POST", f"{API}/auth/register", {400, 409, 413, 422, 429, 503}),
    ("POST", f"{API}/auth/token", {400, 401, 413, 422, 429, 503}),
    ("GET", f"{API}/users/me", {401, 503}),
    ("DELETE", f"{API}/users/me", {401, 404, 503}),
    ("POST", f"{API}/predictions", {400, 401, 404, 413, 415, 422, 503}),
    ("GET", f"{API}/predictions/{{prediction_id}}/annotated.png", {401, 404, 503}),
    ("GET", f"{API}/reports/{{report_id}}", {401, 404, 503}),
    ("GET", f"{API}/reports/{{report_id}}/download", {401, 404, 409, 503}),
    ("POST", f"{API}/models/{{name}}/versions/{{version}}:promote", {401, 403, 404, 422, 503}),
    ("GET", f"{API}/training-jobs", {401, 403, 503}),
    ("GET", f"{API}/admin/users", {401, 403, 422, 503}),
    ("PATCH", f"{API}/admin/users/{{user_id}}", {400, 401, 403, 404, 409, 413, 422, 503}),
    ("POST", f"{API}/auth/token", {403}),
    ("GET", f"{API}/models/{{name}}/versions/{{version}}/report", {401, 404, 422, 503}),
    ("GET", "/readyz", {503}),
])
def test_the_statuses_a_route_answers_are_declared(operations, method, path, statuses):
    responses = operations[(method, path)]["responses"]
    assert statuses <= {int(status) for status in responses}
    for status in statuses - {422}:
        assert responses[str(status)]["content"]["application/json"]["schema"]["$ref"].startswith("#/components/schemas/")
    if 422 in statuses:
        assert responses["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/HTTPValidationError"}


def test_deleting_the_account_says_what_is_erased_and_when(operations):
    description = operations[("DELETE", f"{API}/users/me")]["description"]
    assert "photos, results (with their annotated images) and reports are erased now, or within a minute" in description


def test_a_route_declares_only_what_it_can_answer(operations):
    assert set(operations[("GET", f"{API}/limits")]["responses"]) == {"200"}
    assert set(operations[("GET", f"{API}/models")]["responses"]) == {"200", "401", "502", "503"}


async def test_a_version_out_of_range_is_422_before_any_call():
    app = gateway_app(auth_pb2.User(id="admin-1", role=auth_pb2.ROLE_ADMIN), models=True)
    async with client_for(app) as client:
        for version in ("10093942009778450432", "0"):
            reply = await client.post(f"{API}/models/fer/versions/{version}:promote")
            assert reply.status_code == 422, (version, reply.text)
            assert reply.json()["detail"][0]["loc"] == ["path", "version"]


@pytest.mark.parametrize("frontend_dir", ["frontend", "/nonexistent/frontend"])
@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", f"{API}/predictions", "GET, POST"),
    ("DELETE", f"{API}/predictions", "GET, POST"),
    ("GET", f"{API}/models/fer/versions/1:promote", "POST"),
    ("HEAD", f"{API}/models/fer:rollback", "POST"),
    ("PROPFIND", f"{API}/users/me", "DELETE, GET, PATCH"),
])
async def test_another_method_on_a_known_path_is_405(frontend_dir, method, path, allow):
    app = create_app(Settings(frontend_dir=frontend_dir))
    app.state.upstreams = Upstreams(auth=Untouchable(), inference=None, models=None, training=None, reports=None)
    app.state.token_verifier = Untouchable()
    app.dependency_overrides[current_user] = lambda: auth_pb2.User(id="user-1")
    async with client_for(app) as client:
        reply = await client.request(method, path)
        assert reply.status_code == 405, reply.text
        assert sorted(reply.headers["allow"].split(", ")) == allow.split(", ")
        assert (await client.get(f"{API}/no-such-thing")).status_code == 404
