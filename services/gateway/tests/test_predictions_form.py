"""POST /api/v1/predictions in the gateway alone (its reports stub replaced, no services): the upload
travels once, to AnalyzeImage, with the `mode` form field as FaceMode; an unknown mode or an over-long
note is a 422 before anything is called; each face's `uncertain` flag is in the REST response."""
from types import SimpleNamespace

import httpx
import pytest

from fer.v1 import auth_pb2, common_pb2, inference_pb2, reports_pb2
from ferkit import limits
from ferkit.limits import IMAGE_MAX_PIXELS, IMAGE_MAX_SIDE, NOTES_MAX_CHARS
from ferkit.vision import CLASSES
from services.gateway.app import create_app
from services.gateway.config import Settings
from services.gateway.deps import current_user
from tests.fixtures.reports import sample_png

API = "/api/v1"


def faces() -> list[common_pb2.FacePrediction]:
    sure = [0.02, 0.01, 0.02, 0.88, 0.03, 0.02, 0.02]
    unsure = [0.1, 0.05, 0.2, 0.1, 0.3, 0.1, 0.15]
    return [
        common_pb2.FacePrediction(box=common_pb2.Box(x=1, y=2, width=30, height=30), label="happy", scores=sure, detection_score=0.99),
        common_pb2.FacePrediction(box=common_pb2.Box(x=40, y=2, width=30, height=30), label="sad", scores=unsure,
                                  detection_score=0.9, uncertain=True),
    ]


class Upstream:
    """Records each call; answers as the reports service would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    async def AnalyzeImage(self, request):
        self.calls.append(("AnalyzeImage", request))
        return reports_pb2.Result(id="result-1", owner_id=request.owner_id, faces=faces(), notes=request.notes,
                                  model=common_pb2.ModelRef(name="fer", version=2, classes=list(CLASSES)),
                                  timings=common_pb2.Timings(total_ms=5.0), filename=request.filename,
                                  image_width=64, image_height=64)


@pytest.fixture
async def gateway():
    app = create_app(Settings(frontend_dir="/nonexistent/frontend"))
    upstream = Upstream()
    # No lifespan: the upstreams are the fake, the caller is a fixed account.
    app.state.upstreams = SimpleNamespace(auth=None, inference=None, reports=upstream)
    app.dependency_overrides[current_user] = lambda: auth_pb2.User(id="user-1", email="a@example.com")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        client.upstream = upstream
        yield client


async def post(client, mode: str | None):
    data = {"mode": mode} if mode is not None else None
    return await client.post(f"{API}/predictions", files={"file": ("face.png", sample_png(), "image/png")}, data=data)


@pytest.mark.parametrize(("mode", "sent"), [(None, inference_pb2.FACE_MODE_DETECT), ("detect", inference_pb2.FACE_MODE_DETECT),
                                            ("face", inference_pb2.FACE_MODE_FACE)])
async def test_the_upload_travels_once_with_its_mode(gateway, mode, sent):
    reply = await post(gateway, mode)
    assert reply.status_code == 201, reply.text
    ((name, request),) = gateway.upstream.calls
    assert name == "AnalyzeImage" and request.mode == sent
    assert request.image == sample_png() and request.content_type == "image/png" and request.filename == "face.png"
    assert request.owner_id == "user-1"


async def test_uncertain_is_in_the_rest_response(gateway):
    reply = await post(gateway, "detect")
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert [face["uncertain"] for face in body["faces"]] == [False, True]
    assert [face["label"] for face in body["faces"]] == ["happy", "sad"], "the label stays"


async def test_an_unknown_mode_is_422_and_nothing_is_called(gateway):
    for mode in ("faces", "DETECT", "whole"):
        reply = await post(gateway, mode)
        assert reply.status_code == 422, (mode, reply.text)
        assert "mode" in str(reply.json()["detail"])
    assert gateway.upstream.calls == []


async def test_notes_over_the_limit_are_422_and_nothing_is_called(gateway):
    notes = "x" * (NOTES_MAX_CHARS + 1)
    reply = await gateway.post(f"{API}/predictions", files={"file": ("face.png", sample_png(), "image/png")}, data={"notes": notes})
    assert reply.status_code == 422 and "notes" in str(reply.json()["detail"])
    assert gateway.upstream.calls == []


async def test_the_limits_are_published(gateway):
    reply = await gateway.get(f"{API}/limits")
    assert reply.status_code == 200
    assert reply.json() == {"upload_max_bytes": Settings().max_upload_bytes, "image_max_pixels": IMAGE_MAX_PIXELS,
                            "image_max_side": IMAGE_MAX_SIDE, "notes_max_chars": NOTES_MAX_CHARS,
                            "batch_max_photos": limits.BATCH_MAX_PHOTOS, "batch_max_bytes": limits.BATCH_MAX_BYTES,
                            "archive_max_members": limits.ARCHIVE_MAX_MEMBERS, "archive_max_ratio": limits.ARCHIVE_MAX_RATIO,
                            "video_max_bytes": limits.VIDEO_MAX_BYTES, "video_max_seconds": limits.VIDEO_MAX_SECONDS,
                            "video_default_fps": limits.VIDEO_DEFAULT_FPS, "video_max_fps": limits.VIDEO_MAX_FPS,
                            "live_frame_max_bytes": limits.LIVE_FRAME_MAX_BYTES}


def test_the_openapi_schema_documents_mode_and_uncertain():
    schema = create_app(Settings(frontend_dir="/nonexistent/frontend")).openapi()
    assert "uncertain" in schema["components"]["schemas"]["FaceOut"]["properties"]
    form = next(s for name, s in schema["components"]["schemas"].items() if name.startswith("Body_create_prediction"))
    assert form["properties"]["mode"]["enum"] == ["detect", "face"]
