"""Errors of the gateway alone (services/gateway/errors.py; no services, their stubs faked): every 422
has FastAPI's validation shape, and none repeats more than a few characters of what was sent."""
import json

import grpc
import httpx
import pytest

from fer.v1 import auth_pb2
from services.gateway.errors import ECHO_MAX_CHARS
from services.gateway.tests.test_deps import client_for, gateway_app
from tests.fixtures.reports import sample_png

API = "/api/v1"


def assert_validation_shape(body: dict) -> None:
    assert set(body) == {"detail"} and isinstance(body["detail"], list) and body["detail"]
    for error in body["detail"]:
        assert {"type", "loc", "msg"} <= set(error) <= {"type", "loc", "msg", "input", "ctx"}


class InvalidTraining:
    async def StartTrainingJob(self, request):
        raise grpc.aio.AioRpcError(grpc.StatusCode.INVALID_ARGUMENT, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                   details="dataset must be a relative path")


@pytest.fixture
async def client():
    app = gateway_app(auth_pb2.User(id="admin-1", role=auth_pb2.ROLE_ADMIN), reports=True, training=True)
    app.state.upstreams.training = InvalidTraining()
    async with client_for(app) as client:
        yield client


async def test_a_megabyte_of_notes_is_not_echoed(client):
    notes = "x" * 1_000_000
    reply = await client.post(f"{API}/predictions", files={"file": ("face.png", sample_png(), "image/png")}, data={"notes": notes})
    assert reply.status_code == 422 and len(reply.content) < 2048, len(reply.content)
    assert_validation_shape(reply.json())
    (error,) = reply.json()["detail"]
    assert error["loc"] == ["body", "notes"] and error["type"] == "string_too_long" and "input" not in error
    assert error["ctx"] == {"max_length": 2000}


async def test_long_json_values_and_unknown_field_names_are_not_echoed(client):
    body = {"dataset": "d" * 60_000, "recipe": "r", "k" * 5_000: 1, "gpus": "two"}
    reply = await client.post(f"{API}/training-jobs", json=body)
    assert reply.status_code == 422 and len(reply.content) < 2048
    assert_validation_shape(reply.json())
    errors = {error["type"]: error for error in reply.json()["detail"]}
    assert "input" not in errors["string_too_long"] and errors["extra_forbidden"]["loc"] == ["body", "…"]
    assert errors["int_parsing"]["input"] == "two"  # short inputs still help the caller
    for error in reply.json()["detail"]:
        assert len(json.dumps(error.get("input", ""))) <= ECHO_MAX_CHARS


async def test_unparsable_json_is_a_422_of_the_same_shape(client):
    reply = await client.post(f"{API}/training-jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 422
    assert_validation_shape(reply.json())


async def test_a_handlers_refusal_is_a_422_of_the_same_shape(client):
    # Raised by the handler with a sentence (an empty upload).
    reply = await client.post(f"{API}/predictions", files={"file": ("face.png", b"", "image/png")})
    assert reply.status_code == 422
    assert_validation_shape(reply.json())
    assert "empty" in reply.json()["detail"][0]["msg"]


async def test_an_upstreams_invalid_argument_is_a_422_of_the_same_shape(client):
    reply = await client.post(f"{API}/training-jobs", json={"dataset": "../etc", "recipe": "r"})
    assert reply.status_code == 422
    assert_validation_shape(reply.json())
    assert reply.json()["detail"][0]["msg"] == "dataset must be a relative path"
