"""POST /api/v1/videos and friends through the real gateway, auth, reports (PostgreSQL, RabbitMQ and a
worker), inference and Triton, on a video the test makes (the astronaut's face moving left to right):
the face becomes one track that follows it, with a summary, a timeline chart and CSV; containers are
recognised from their bytes (anything else is a 415); the limits answer 413 and 422; another user's
video is 404."""
import csv
import io

import httpx
import pytest
from PIL import Image

from ferkit.vision import CLASSES
from services.gateway.app import create_app
from services.gateway.routers.videos import sniff_container
from tests.fixtures.auth import register_and_login
from tests.fixtures.inference import settled
from tests.fixtures.reports import sample_png
from tests.fixtures.videos import write_video

API = "/api/v1"


@pytest.mark.parametrize(("suffix", "codec", "expected"), [
    (".mp4", "h264", "video/mp4"),
    (".mov", "h264", "video/quicktime"),
    (".webm", "vp9", "video/webm"),
    (".mkv", "h264", "video/x-matroska"),
    (".avi", "mjpeg", "video/x-msvideo"),
])
def test_each_accepted_container_is_recognised_from_its_first_bytes(tmp_path, suffix, codec, expected):
    path = tmp_path / f"clip{suffix}"
    write_video(path, seconds=0.2, fps=10, size=(64, 48), codec=codec)
    assert sniff_container(path.read_bytes()[:64]) == expected


@pytest.mark.parametrize("head", [sample_png(size=64)[:64], b"%PDF-1.7\n", b"", b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_anything_else_is_not_a_video(head):
    assert sniff_container(head) is None


async def test_a_video_becomes_a_track_that_follows_the_face(predictions_gateway, predictions_worker, tmp_path):
    client = predictions_gateway
    alice, mallory = await register_and_login(client), await register_and_login(client)
    path = tmp_path / "moving.mp4"
    # About 100 px a second, at most ~30 px between sampled frames: the same face overlaps itself
    # from one to the next (IoU ~0.5), as a person moving in front of a camera does.
    truth = write_video(path, seconds=3.0, fps=10, size=(480, 320))
    before = (await client.get(f"{API}/users/me", headers=alice["headers"])).json()["computations"]

    created = await client.post(f"{API}/videos", headers=alice["headers"], data={"fps": "4", "notes": "lesson 1"},
                                files={"file": ("moving.mp4", path.read_bytes(), "video/mp4")})
    assert created.status_code == 202, created.text
    assert set(created.json()) == {"id", "status"} and created.json()["status"] == "queued"
    video_id = created.json()["id"]
    assert created.headers["location"] == f"{API}/videos/{video_id}"

    video = await settled(client, created.headers["location"], alice["headers"], 240.0, "the video was not analysed")
    assert video["status"] == "done" and video["error"] is None, video
    assert video["progress"]["done"] == video["progress"]["total"] >= 10
    assert abs(video["duration_s"] - 3.0) < 0.25 and video["fps"] == 4
    assert (video["width"], video["height"]) == (480, 320) and video["filename"] == "moving.mp4" and video["notes"] == "lesson 1"
    # One video, one computation.
    assert (await client.get(f"{API}/users/me", headers=alice["headers"])).json()["computations"] == before + 1

    assert len(video["tracks"]) == 1, video["tracks"]
    track = video["tracks"][0]
    assert track["summary"]["dominant_label"] in CLASSES
    assert set(track["summary"]["share"]) == set(CLASSES) and abs(sum(track["summary"]["share"].values()) - 1) < 1e-3
    frames = track["frames"]
    assert len(frames) >= video["progress"]["total"] - 1
    times = [frame["t"] for frame in frames]
    assert times == sorted(times)
    for frame in frames:
        assert frame["label"] in CLASSES and set(frame["scores"]) == set(CLASSES)
        # The true box of the frame nearest in time: the track follows the face as it moves.
        _, (x, y, w, h) = min(truth, key=lambda item: abs(item[0] - frame["t"]))
        fx, fy, fw, fh = frame["box"]
        assert abs((fx + fw / 2) - (x + w / 2)) < w / 2 and abs((fy + fh / 2) - (y + h / 2)) < h / 2, (frame, (x, y, w, h))
    assert frames[-1]["box"][0] - frames[0]["box"][0] > 150  # it moved left to right

    png = await client.get(video["timeline_png_url"], headers=alice["headers"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).format == "PNG"
    table = await client.get(video["timeline_csv_url"], headers=alice["headers"])
    assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert len(rows) == len(frames) and {"label", *CLASSES} <= set(rows[0])

    listed = (await client.get(f"{API}/videos", headers=alice["headers"])).json()
    assert [item["id"] for item in listed["items"]] == [video_id] and "tracks" not in listed["items"][0]

    for url in (f"{API}/videos/{video_id}", video["timeline_png_url"], video["timeline_csv_url"]):
        assert (await client.get(url, headers=mallory["headers"])).status_code == 404
    assert (await client.get(f"{API}/videos", headers=mallory["headers"])).json()["total"] == 0


async def test_what_a_video_upload_refuses(predictions_gateway, tmp_path):
    client = predictions_gateway
    headers = (await register_and_login(client))["headers"]
    path = tmp_path / "short.webm"
    write_video(path, seconds=0.5, fps=10, size=(96, 64), codec="vp9")
    clip = path.read_bytes()

    renamed = await client.post(f"{API}/videos", headers=headers, files={"file": ("photo.mp4", sample_png(size=64), "video/mp4")})
    assert renamed.status_code == 415 and "not a video" in renamed.json()["detail"]
    for fps in ("0", "-1", "15.5", "lots"):
        reply = await client.post(f"{API}/videos", headers=headers, data={"fps": fps}, files={"file": ("a.webm", clip, "video/webm")})
        assert reply.status_code == 422, (fps, reply.text)
    assert (await client.post(f"{API}/videos", headers=headers, data={"notes": "no file"})).status_code == 422
    # The container's signature and nothing playable after it: the reports service's probe refuses it.
    signature_only = b"\x00\x00\x00\x18ftypmp42" + bytes(4000)
    broken = await client.post(f"{API}/videos", headers=headers, files={"file": ("broken.mp4", signature_only, "video/mp4")})
    assert broken.status_code == 422, broken.text
    assert (await client.get(f"{API}/videos/no-such-video", headers=headers)).status_code == 404

    settings = client.app.state.settings.model_copy(update={"video_max_bytes": len(clip) - 1})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as limited:
            too_big = await limited.post(f"{API}/videos", headers=headers, files={"file": ("a.webm", clip, "video/webm")})
    assert too_big.status_code == 413 and too_big.json()["detail"] == f"the video is larger than {len(clip) - 1} bytes"
