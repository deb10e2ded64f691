"""Videos through the real reports service, a worker on RabbitMQ (and the in-process queue), the real
inference service and Triton, and the real auth service counting analyses. The videos are made here:
the astronaut's face moving across a grey background (tests/fixtures/videos.py)."""
import asyncio
import base64
import csv
import io
import json
import math
import signal

import grpc
import pytest
from PIL import Image
from prometheus_client import REGISTRY
from pypdf import PdfReader
from sqlalchemy import func, select, update

from fer.v1 import reports_pb2
from ferkit.vision import CLASSES
from services.reports.models import Video, VideoChunk, VideoFrame
from services.reports.tests.helpers import Client
from services.reports.timeline import figure_size
from services.reports.tracks import iou, link_tracks
from services.reports.videos import stored_tracks
from tests.fixtures.auth import changed_settings
from tests.fixtures.reports import (
    Analysis, analysis_settings, astronaut, spawn_worker, start_reports, start_worker_thread, stop_reports,
)
from tests.fixtures.triton import MODEL_NAME
from tests.fixtures.videos import write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[bytes, list]:
    """Two seconds of a face moving left to right (H.264 in MP4, 15 fps), and its true boxes."""
    path = tmp_path_factory.mktemp("videos") / "clip.mp4"
    truth = write_video(path, seconds=2.0, fps=15, size=(480, 320))
    return path.read_bytes(), truth


def faces_classified() -> float:
    return REGISTRY.get_sample_value("inference_faces_total", {"model": MODEL_NAME}) or 0.0


async def expect_code(code, call) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details()


async def count(analysis, model, **where) -> int:
    async with analysis.servicer.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).filter_by(**where))


async def test_a_video_uploaded_in_chunks_is_analysed_into_a_track_that_follows_the_face(analysis, clip):
    data, truth = clip
    me = await analysis.account()
    frames_before = REGISTRY.get_sample_value("reports_video_frames_total") or 0.0
    created = await analysis.upload_video(me, data, fps=4, chunk_bytes=16 * 1024)  # several chunks on the wire
    assert created.status == "queued" and created.frames_total == 8 and created.fps == 4
    assert (created.width, created.height, created.size_bytes) == (480, 320, len(data))
    assert created.duration_s == pytest.approx(2.0, abs=0.1)
    # Stored in 1 MiB pieces whatever size the caller streamed, and counted at once: one video, one analysis.
    assert await count(analysis, VideoChunk, video_id=created.id) == math.ceil(len(data) / (1024 * 1024))
    assert await analysis.usage(me) == 1

    video = await analysis.wait("video", me, created.id)
    assert video.status == "done", video.error
    assert video.frames_done == video.frames_total == 8
    assert video.model.name == MODEL_NAME and list(video.model.classes) == list(CLASSES)
    (track,) = video.tracks  # one face, followed across every sampled frame
    assert len(track.points) == 8 and track.start_t == pytest.approx(0.0, abs=0.01) and track.end_t == pytest.approx(1.75, abs=0.1)
    assert track.dominant_label in CLASSES and sum(track.share) == pytest.approx(1.0, abs=1e-5)
    for point in track.points:
        true_box = min(truth, key=lambda tb: abs(tb[0] - point.t))[1]
        box = (point.box.x, point.box.y, point.box.width, point.box.height)
        assert iou(box, true_box) > 0.4, (point.t, box, true_box)
        assert len(point.scores) == len(CLASSES) and point.label == CLASSES[list(point.scores).index(max(point.scores))]
    xs = [point.box.x for point in track.points]
    assert xs == sorted(xs) and xs[-1] - xs[0] > 150  # left to right
    assert (REGISTRY.get_sample_value("reports_video_frames_total") or 0.0) >= frames_before + 8
    assert await analysis.usage(me) == 1  # the analysis itself counts nothing more

    png = await analysis.stub.GetVideoTimeline(reports_pb2.GetVideoTimelineRequest(owner_id=me, id=video.id, format="png"))
    assert png.content_type == "image/png" and png.filename == "clip-timeline.png"
    assert Image.open(io.BytesIO(png.content)).size == figure_size(1)
    got = await analysis.stub.GetVideoTimeline(reports_pb2.GetVideoTimelineRequest(owner_id=me, id=video.id, format="csv"))
    assert got.content_type.startswith("text/csv") and got.filename == "clip-timeline.csv"
    rows = list(csv.reader(io.StringIO(got.content.decode())))
    assert rows[0] == ["track", "t", "x", "y", "width", "height", "label", *CLASSES]
    assert len(rows) == 9 and {row[0] for row in rows[1:]} == {"1"}
    assert [int(row[2]) for row in rows[1:]] == xs
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT,
                      analysis.stub.GetVideoTimeline(reports_pb2.GetVideoTimelineRequest(owner_id=me, id=video.id, format="gif")))
    listed = await analysis.stub.ListVideos(reports_pb2.ListVideosRequest(owner_id=me))
    assert [v.id for v in listed.videos] == [video.id] and not listed.videos[0].tracks and listed.page.total == 1

    # Reports on the video: the tracks' summaries, and the timeline chart.
    client = Client(analysis.settings.grpc_address)
    try:
        asked = {fmt: await analysis.stub.RequestReport(reports_pb2.RequestReportRequest(owner_id=me, video_id=video.id, format=fmt))
                 for fmt in ("json", "pdf")}
        reports = {fmt: await client.wait(me, report.id, timeout_s=60) for fmt, report in asked.items()}
        assert [r.status for r in reports.values()] == ["done", "done"], [r.error for r in reports.values()]
        assert reports["pdf"].video_id == video.id and reports["pdf"].filename.endswith(".pdf")
        doc = json.loads((await client.file(me, reports["json"].id)).content)
        pdf = PdfReader(io.BytesIO((await client.file(me, reports["pdf"].id)).content))
    finally:
        await client.close()
    assert doc["kind"] == "video" and doc["video"]["id"] == video.id and doc["video"]["frames_done"] == 8
    assert doc["summary"]["tracks"] == 1 and doc["summary"]["faces"] == 8
    assert sum(doc["summary"]["share"].values()) == pytest.approx(1.0, abs=1e-4)
    (summary,) = doc["tracks"]
    assert summary["dominant_label"] == track.dominant_label and len(summary["points"]) == 8
    timeline = base64.b64decode(doc["timeline_image"]["data"])
    assert Image.open(io.BytesIO(timeline)).size == figure_size(1)
    text = " ".join(" ".join(page.extract_text() for page in pdf.pages).split())
    for expected in ("Video expression report", "clip.mp4", "8 of 8, 4 per second", track.dominant_label, video.id):
        assert expected in text, expected
    assert any(page.images for page in pdf.pages)  # the timeline chart


async def test_refused_uploads_store_nothing_and_count_nothing(analysis, clip, tmp_path):
    data, _ = clip
    me = await analysis.account()
    three_seconds = tmp_path / "long.mp4"
    write_video(three_seconds, seconds=3.0, fps=10, size=(160, 120))
    settings = analysis.servicer.settings
    with changed_settings(settings, video_max_seconds=2.5):
        assert "at most 2.5 s" in await expect_code(grpc.StatusCode.INVALID_ARGUMENT, analysis.upload_video(me, three_seconds.read_bytes()))
    with changed_settings(settings, video_max_bytes=len(data) - 1):
        assert "larger than" in await expect_code(grpc.StatusCode.INVALID_ARGUMENT, analysis.upload_video(me, data))
    refused = {
        "not a video": analysis.upload_video(me, astronaut(), filename="photo.mp4"),
        "fps": analysis.upload_video(me, data, fps=100),
        "bytes": analysis.upload_video(me, b""),
        "account id": analysis.upload_video("nobody", data),
    }
    for reason, call in refused.items():
        assert reason in await expect_code(grpc.StatusCode.INVALID_ARGUMENT, call)
    assert await count(analysis, Video, owner_id=me) == 0
    assert await analysis.usage(me) == 0


async def test_another_owners_video_is_not_found(analysis, clip):
    me, other = await analysis.account(), await analysis.account()
    video = await analysis.upload_video(me, clip[0], fps=2)
    await expect_code(grpc.StatusCode.NOT_FOUND, analysis.stub.GetVideo(reports_pb2.GetVideoRequest(owner_id=other, id=video.id)))
    for fmt in ("png", "csv"):
        await expect_code(grpc.StatusCode.NOT_FOUND, analysis.stub.GetVideoTimeline(
            reports_pb2.GetVideoTimelineRequest(owner_id=other, id=video.id, format=fmt)))
    await expect_code(grpc.StatusCode.NOT_FOUND, analysis.stub.RequestReport(
        reports_pb2.RequestReportRequest(owner_id=other, video_id=video.id, format="json")))
    assert list((await analysis.stub.ListVideos(reports_pb2.ListVideosRequest(owner_id=other))).videos) == []
    assert (await analysis.wait("video", me, video.id)).status == "done"


async def test_a_running_videos_tracks_are_linked_from_its_new_frames_only(analysis):
    """What GetVideo answers while a video runs: each call reads only the frames stored since the last."""
    me = await analysis.account()
    scores = [1 / len(CLASSES)] * len(CLASSES)
    frames = [(k * 0.5, [{"box": [10 + 8 * k, 40, 80, 100], "label": "happy", "scores": scores}]) for k in range(6)]
    async with analysis.servicer.sessions() as session:
        video = Video(owner_id=me, status="running", fps=2.0, frames_total=6, model_classes=list(CLASSES))
        session.add(video)
        await session.flush()
        session.add_all([VideoFrame(video_id=video.id, index=k, t=t, faces=faces) for k, (t, faces) in enumerate(frames[:3])])
        await session.commit()
        try:
            assert await stored_tracks(session, video) == link_tracks(frames[:3], CLASSES)
            session.add_all([VideoFrame(video_id=video.id, index=k, t=t, faces=faces) for k, (t, faces) in enumerate(frames) if k >= 3])
            # A frame already linked, changed under it: the next answer does not read it again.
            await session.execute(update(VideoFrame).where(VideoFrame.video_id == video.id, VideoFrame.index == 0).values(faces=[]))
            await session.commit()
            [track] = await stored_tracks(session, video)
            assert track == link_tracks(frames, CLASSES)[0] and len(track["points"]) == 6
        finally:
            await session.delete(video)
            await session.commit()


async def finish_with_a_fresh_worker(analysis, me: str, video_id: str):
    """A worker of the analysis' own (a thread) until the video is done or failed: the video's last state."""
    worker, thread = start_worker_thread(analysis.settings, name=f"{analysis.settings.queue_prefix}.fresh")
    try:
        return await analysis.wait("video", me, video_id, timeout_s=90)
    finally:
        worker.stop()
        thread.join(30)


async def test_a_video_interrupted_mid_way_resumes_where_it_was(analysis_without_worker, tmp_path):
    analysis = analysis_without_worker
    path = tmp_path / "longer.mp4"
    write_video(path, seconds=3.0, fps=15, size=(320, 240))
    me = await analysis.account()
    video = await analysis.upload_video(me, path.read_bytes(), fps=4)
    assert video.frames_total == 12
    # Short slices of two frames, each a little slow: stopped after its first frames, the worker leaves
    # the video half done (the slice in hand finishes and its continuation waits in the queue).
    slow = analysis.settings.model_copy(update={"job_slice_s": 0.3, "video_frames_per_request": 2, "job_step_delay_s": 0.3})
    worker, thread = start_worker_thread(slow, name=f"{slow.queue_prefix}.slow")
    try:
        await analysis.wait("video", me, video.id, until=lambda v: v.frames_done > 0, timeout_s=60)
    finally:
        worker.stop()
        thread.join(30)
    halfway = await analysis.stub.GetVideo(reports_pb2.GetVideoRequest(owner_id=me, id=video.id))
    assert halfway.status == "running" and 0 < halfway.frames_done < 12, (halfway.status, halfway.frames_done)
    # While it runs, the tracks are those of the frames analysed so far.
    assert 0 < sum(len(t.points) for t in halfway.tracks) <= halfway.frames_done

    before = faces_classified()
    done = await finish_with_a_fresh_worker(analysis, me, video.id)
    assert done.status == "done" and done.frames_done == done.frames_total == 12, done.error
    async with analysis.servicer.sessions() as session:
        frames = list(await session.scalars(select(VideoFrame).where(VideoFrame.video_id == video.id).order_by(VideoFrame.index)))
    assert [f.index for f in frames] == list(range(12))
    # Only the frames after the stop were analysed again: the inference service classified exactly their faces.
    assert faces_classified() - before == sum(len(f.faces) for f in frames[halfway.frames_done:])
    assert sum(len(f.faces) for f in frames) >= 11
    assert await analysis.usage(me) == 1


async def test_the_in_process_queue_finishes_a_batch_and_a_video(private_reports_database, inference_address, analysis_auth_address, clip):
    """Without a broker (`make dev`), the reports server runs batches and videos itself."""
    settings = analysis_settings(private_reports_database, "", inference_address, analysis_auth_address)
    service, servicer = await start_reports(settings)
    analysis = Analysis(settings, servicer, analysis_auth_address)
    try:
        me = await analysis.account()
        batch, video = await asyncio.gather(
            analysis.create_batch(me, [("a.png", astronaut()), ("b.jpg", astronaut("JPEG", size=300))]),
            analysis.upload_video(me, clip[0], fps=4),
        )
        batch = await analysis.wait("batch", me, batch.id)
        video = await analysis.wait("video", me, video.id)
        assert batch.status == "done" and [item.status for item in batch.items] == ["done", "done"], batch.error
        assert video.status == "done" and video.frames_done == video.frames_total == 8 and len(video.tracks) == 1, video.error
        assert await analysis.usage(me) == 3
    finally:
        await analysis.close()
        await stop_reports(service, servicer)


async def test_a_video_that_keeps_stopping_its_worker_fails_instead_of_coming_back_forever(analysis_without_worker, clip, tmp_path):
    analysis = analysis_without_worker
    me = await analysis.account()
    video = await analysis.upload_video(me, clip[0], fps=4)
    limit = analysis.settings.video_max_unfinished_slices

    async def unfinished() -> int:
        async with analysis.servicer.sessions() as session:
            return await session.scalar(select(Video.unfinished_slices).where(Video.id == video.id))

    # A real worker process claims the video and is killed before it stores a frame, `limit` times: as
    # a decoder that crashes the process would do. The broker hands the job to the next worker each time.
    log = tmp_path / "worker.log"
    for killed in range(1, limit + 1):
        doomed = spawn_worker(analysis.settings, log, REPORTS_JOB_STEP_DELAY_S="60")
        try:
            for _ in range(600):
                if await unfinished() == killed:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"no worker claimed the video ({killed - 1} killed so far):\n{log.read_text()[-2000:]}")
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(10)
    assert await count(analysis, VideoFrame, video_id=video.id) == 0

    fresh = spawn_worker(analysis.settings, log)
    try:
        failed = await analysis.wait("video", me, video.id, timeout_s=60)
    finally:
        fresh.send_signal(signal.SIGTERM)
        fresh.wait(20)
    assert failed.status == "failed", (failed.status, log.read_text()[-2000:])
    assert f"stopped without an answer {limit} times in a row at frame 0" in failed.error


async def test_an_answered_slice_clears_the_count_of_unfinished_ones(analysis_without_worker, clip, tmp_path):
    analysis = analysis_without_worker
    me = await analysis.account()
    video = await analysis.upload_video(me, clip[0], fps=4)
    # One worker killed mid-slice, then a healthy one: the video is analysed to the end, the count cleared.
    log = tmp_path / "worker.log"
    doomed = spawn_worker(analysis.settings, log, REPORTS_JOB_STEP_DELAY_S="60")
    try:
        await analysis.wait("video", me, video.id, until=lambda v: v.status == "running", timeout_s=60)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
    done = await finish_with_a_fresh_worker(analysis, me, video.id)
    assert done.status == "done", done.error
    async with analysis.servicer.sessions() as session:
        assert await session.scalar(select(Video.unfinished_slices).where(Video.id == video.id)) == 0
