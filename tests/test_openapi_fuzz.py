"""Schemathesis over the gateway's whole OpenAPI (issue 12): a gateway served by uvicorn over real HTTP,
wired to the real auth, reports (PostgreSQL, RabbitMQ) and inference services and Triton, gets a few
hundred generated requests, valid and invalid, authenticated. None may answer a 5xx, a status the
OpenAPI does not declare, or a body or content type other than the declared ones (schemathesis's
default checks).

Who calls: a registered user everywhere; an administrator on the routes that only read or that cannot
change the platform for the rest of the session (the models' routes get generated model names, which
name no model); never an administrator on POST /training-jobs, which would start real training runs.
DELETE /users/me deletes a fresh account each time."""
import asyncio
import uuid
from collections.abc import Callable

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fixtures.auth import register_and_login
from tests.fixtures.inference import served_copy

# Per operation and generation mode (fewer where there is little to vary): ~300 requests in all.
EXAMPLES = 10
# Schemathesis's defaults but one: "schema-valid data is accepted" cannot hold for an upload (any bytes
# match `format: binary`; a non-image is a 415) or an opaque page token.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]
ADMIN_OPERATIONS = {
    "GET /api/v1/training-jobs",
    "GET /api/v1/training-jobs/{job_id}",
    "POST /api/v1/models/{name}/versions/{version}:promote",
    "POST /api/v1/models/{name}/versions/{version}:load",
    "POST /api/v1/models/{name}:rollback",
}


@pytest.fixture
async def served_gateway(predictions_gateway):
    """The base URL of a second gateway like the fixture's, on a real socket: schemathesis calls it from a thread."""
    async with served_copy(predictions_gateway) as port:
        yield f"http://127.0.0.1:{port}"


def fresh_account(base_url: str) -> dict:
    email, password = f"fuzz-{uuid.uuid4().hex[:10]}@example.com", "Fuzzing-is-fun-42"
    registered = requests.post(f"{base_url}/api/v1/auth/register", json={"email": email, "password": password, "display_name": "F"})
    assert registered.status_code == 201, registered.text
    token = requests.post(f"{base_url}/api/v1/auth/token", data={"username": email, "password": password}).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


def fuzz(base_url: str, headers_for: Callable[[str], dict]) -> tuple[int, list[str]]:
    """Runs every operation in both modes; returns (requests sent, failures)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    sent, failures = 0, []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                                 phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def check(case) -> None:
                nonlocal sent
                headers = headers_for(operation.label)
                response = case.call(base_url=base_url, headers=headers, timeout=60)
                sent += 1
                case.validate_response(response, checks=CHECKS, headers=headers)

            try:
                check()
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing to make invalid (no parameters, or only free strings)
            except (Exception, FailureGroup) as exc:  # every failure is reported, one per operation and mode
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return sent, failures


async def test_the_whole_openapi_answers_as_declared(predictions_gateway, served_gateway):
    user = (await register_and_login(predictions_gateway))["headers"]

    def headers_for(label: str) -> dict:
        if label == "DELETE /api/v1/users/me":
            return fresh_account(served_gateway)
        return predictions_gateway.admin_headers if label in ADMIN_OPERATIONS or label.startswith("GET ") else user

    sent, failures = await asyncio.to_thread(fuzz, served_gateway, headers_for)
    assert not failures, "\n\n".join(failures)
    assert sent >= 100, f"only {sent} requests were generated"
