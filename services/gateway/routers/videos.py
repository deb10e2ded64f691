"""Videos: upload one, follow its analysis, read each face's expressions over time.

Here the container is recognised from its first bytes (a renamed photo or document is a 415 at once)
and the size is capped; the upload then streams to the reports service in 1 MiB chunks, which probes
it (duration, a video stream), stores it and counts it, and analyses it in the background: frames
sampled at `fps`, every face classified, faces linked across frames into tracks."""
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field

from fer.v1 import common_pb2, reports_pb2
from ferkit.limits import NOTES_MAX_CHARS, VIDEO_DEFAULT_FPS, VIDEO_MAX_FPS
from ferkit.logs import REQUEST_ID_HEADER, request_id_var
from ferkit.vision import CLASSES
from services.gateway.deps import CurrentUser, ReportsStub, SettingsDep
from services.gateway.openapi import errors
from services.gateway.responses import conflict_on_precondition, file_response
from services.gateway.schemas import Page, Progress, from_message

router = APIRouter(prefix="/videos", tags=["videos"])
# One gRPC message each: the upload never travels (or sits in memory) whole.
CHUNK_BYTES = 1024 * 1024
ACCEPTED = "MP4, MOV, WebM, Matroska (MKV) or AVI"


def sniff_container(head: bytes) -> str | None:
    """The content type of a video container from its first bytes, None for anything else: the
    extension and the browser's type are the caller's claims; these bytes are what a decoder reads."""
    if head[4:8] == b"ftyp":
        # The major brand: "qt  " is QuickTime; every other ISO-BMFF brand (isom, mp42, M4V...) plays as MP4.
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        # EBML: the DocType element names webm or matroska within the first few dozen bytes.
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    return None


class Accepted(BaseModel):
    id: str
    status: str = Field(description="queued: poll GET /videos/{id} for progress until done (or failed).")


class TrackFrameOut(BaseModel):
    t: float = Field(description="Seconds from the start of the video.")
    box: list[int] = Field(description="[x, y, width, height] in the video's pixels.")
    label: str
    scores: dict[str, float]


class TrackSummaryOut(BaseModel):
    dominant_label: str = Field(description="The expression of most of the track's frames.")
    share: dict[str, float] = Field(description="Share of the track's frames per expression; they sum to 1.")


class TrackOut(BaseModel):
    track: int
    start_t: float
    end_t: float
    summary: TrackSummaryOut
    frames: list[TrackFrameOut]

    @classmethod
    def from_proto(cls, track: reports_pb2.Track, classes: list[str]) -> "TrackOut":
        return cls(
            track=track.track,
            start_t=round(track.start_t, 3),
            end_t=round(track.end_t, 3),
            summary=TrackSummaryOut(dominant_label=track.dominant_label,
                                    share={name: round(float(p), 6) for name, p in zip(classes, track.share)}),
            frames=[
                TrackFrameOut(t=round(point.t, 3), box=[point.box.x, point.box.y, point.box.width, point.box.height],
                              label=point.label, scores={name: round(float(p), 6) for name, p in zip(classes, point.scores)})
                for point in track.points
            ],
        )


class VideoSummaryOut(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    progress: Progress = Field(description="Sampled frames analysed, and in all.")
    error: str | None = Field(description="Why the analysis failed, when it did.")
    filename: str
    notes: str
    fps: float = Field(description="Frames analysed per second of video.")
    duration_s: float
    width: int
    height: int
    size_bytes: int
    created_at: datetime
    updated_at: datetime
    timeline_png_url: str = Field(description="Each track's expressions over time, as a chart.")
    timeline_csv_url: str = Field(description="The same, one row per face and sampled frame.")

    @classmethod
    def summary_fields(cls, video: reports_pb2.Video, request: Request) -> dict:
        return {
            "progress": Progress(done=video.frames_done, total=video.frames_total),
            "error": video.error or None,
            "duration_s": round(video.duration_s, 3),
            "timeline_png_url": str(request.url_for("get_video_timeline_png", video_id=video.id).path),
            "timeline_csv_url": str(request.url_for("get_video_timeline_csv", video_id=video.id).path),
        }

    @classmethod
    def from_proto(cls, video: reports_pb2.Video, request: Request) -> "VideoSummaryOut":
        return from_message(cls, video, **cls.summary_fields(video, request))


class VideoOut(VideoSummaryOut):
    tracks: list[TrackOut] = Field(description="Each face followed across frames; while running, the frames analysed so far.")

    @classmethod
    def from_proto(cls, video: reports_pb2.Video, request: Request) -> "VideoOut":
        classes = list(video.model.classes) or list(CLASSES)
        return from_message(cls, video, tracks=[TrackOut.from_proto(track, classes) for track in video.tracks],
                            **cls.summary_fields(video, request))


class VideoPage(Page[VideoSummaryOut]):
    pass


async def chunks(file: UploadFile, first: reports_pb2.VideoChunk) -> AsyncIterator[reports_pb2.VideoChunk]:
    """The upload as UploadVideo's stream: `first` (the owner and options) carries the first chunk."""
    await file.seek(0)
    while data := await file.read(CHUNK_BYTES):
        if first is not None:
            first.data = data
            yield first
            first = None
        else:
            yield reports_pb2.VideoChunk(data=data)


@router.post("", status_code=202, response_model=Accepted, responses=errors(413, 415))
async def upload_video(
    request: Request,
    response: Response,
    user: CurrentUser,
    settings: SettingsDep,
    reports: ReportsStub,
    file: UploadFile = File(description=f"A video: {ACCEPTED}."),
    fps: float = Form(VIDEO_DEFAULT_FPS, gt=0, le=VIDEO_MAX_FPS, description="Frames analysed per second of video."),
    notes: str = Form("", max_length=NOTES_MAX_CHARS),
) -> Accepted:
    """Larger than `video_max_bytes` is a 413, a file that is not one of the accepted containers a 415, a
    video longer than `video_max_seconds` or one that cannot be decoded a 422 (GET /limits)."""
    size = file.size if file.size is not None else 0
    if size > settings.video_max_bytes:
        raise HTTPException(status_code=413, detail=f"the video is larger than {settings.video_max_bytes} bytes")
    content_type = sniff_container(await file.read(64))
    if content_type is None:
        raise HTTPException(status_code=415, detail=f"the file is not a video in an accepted container ({ACCEPTED})")
    first = reports_pb2.VideoChunk(owner_id=user.id, filename=(file.filename or "video")[:255], content_type=content_type,
                                   fps=fps, notes=notes)
    # A client stream: the channel's defaults (deadline, request id) apply to single calls only.
    video = await reports.UploadVideo(chunks(file, first), timeout=settings.grpc_timeout_s,
                                      metadata=((REQUEST_ID_HEADER, request_id_var.get()),))
    response.headers["Location"] = str(request.url_for("get_video", video_id=video.id).path)
    return Accepted(id=video.id, status=video.status)


@router.get("", response_model=VideoPage)
async def list_videos(
    request: Request,
    user: CurrentUser,
    reports: ReportsStub,
    page_size: int = Query(20, ge=1, le=100),
    page_token: str = Query("", max_length=512),
) -> VideoPage:
    """The caller's videos, newest first (without their tracks: GET /videos/{id} has them)."""
    page = await reports.ListVideos(
        reports_pb2.ListVideosRequest(owner_id=user.id, page=common_pb2.PageRequest(page_size=page_size, page_token=page_token))
    )
    return VideoPage.of([VideoSummaryOut.from_proto(video, request) for video in page.videos], page.page)


@router.get("/{video_id}", response_model=VideoOut, responses=errors(404))
async def get_video(video_id: str, request: Request, user: CurrentUser, reports: ReportsStub) -> VideoOut:
    video = await reports.GetVideo(reports_pb2.GetVideoRequest(owner_id=user.id, id=video_id))
    return VideoOut.from_proto(video, request)


async def timeline(video_id: str, user_id: str, reports, fmt: str) -> Response:
    file = await conflict_on_precondition(reports.GetVideoTimeline(reports_pb2.GetVideoTimelineRequest(owner_id=user_id, id=video_id, format=fmt)))
    media_type = "image/png" if fmt == "png" else "text/csv; charset=utf-8"
    return file_response(file.content, file.content_type or media_type, file.filename, default=f"timeline.{fmt}",
                         disposition="inline" if fmt == "png" else "attachment")


@router.get("/{video_id}/timeline.png", response_class=Response, responses={200: {"content": {"image/png": {}}}, **errors(404, 409)})
async def get_video_timeline_png(video_id: str, user: CurrentUser, reports: ReportsStub) -> Response:
    """Each track's expressions over time, a chart."""
    return await timeline(video_id, user.id, reports, "png")


@router.get("/{video_id}/timeline.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}, **errors(404, 409)})
async def get_video_timeline_csv(video_id: str, user: CurrentUser, reports: ReportsStub) -> Response:
    """One row per face and sampled frame: track, time, box, label and the seven scores."""
    return await timeline(video_id, user.id, reports, "csv")
