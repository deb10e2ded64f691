"""What the platform accepts, for clients to check before they upload (the browser reads it)."""
from fastapi import APIRouter
from pydantic import BaseModel, Field

from ferkit.limits import (
    ARCHIVE_MAX_MEMBERS,
    ARCHIVE_MAX_RATIO,
    IMAGE_MAX_PIXELS,
    IMAGE_MAX_SIDE,
    LIVE_FRAME_MAX_BYTES,
    NOTES_MAX_CHARS,
    VIDEO_DEFAULT_FPS,
    VIDEO_MAX_FPS,
    VIDEO_MAX_SECONDS,
)
from services.gateway.deps import SettingsDep

router = APIRouter(prefix="/limits", tags=["limits"])


class LimitsOut(BaseModel):
    upload_max_bytes: int = Field(description="The largest photo accepted, in bytes (413 above it; in a batch, that photo is skipped).")
    image_max_pixels: int = Field(description="The most pixels a photo may have (width x height).")
    image_max_side: int = Field(description="The longest side a photo may have, in pixels.")
    notes_max_chars: int = Field(description="The longest `notes` accepted, in characters.")
    batch_max_photos: int = Field(description="The most files in one batch, uploaded files and archive members together (413 above it).")
    batch_max_bytes: int = Field(description="The most bytes of photos in one batch, all files together (413 above it).")
    archive_max_members: int = Field(description="The most entries a batch's ZIP may have, folders included (413 above it).")
    archive_max_ratio: int = Field(
        description="The most a ZIP member may expand over its compressed size (above it, skipped as a ZIP bomb).")
    video_max_bytes: int = Field(description="The largest video accepted, in bytes (413 above it).")
    video_max_seconds: int = Field(description="The longest video accepted, in seconds (422 above it).")
    video_default_fps: float = Field(description="Frames analysed per second of video when `fps` is not given.")
    video_max_fps: float = Field(description="The most frames per second of video that may be asked for.")
    live_frame_max_bytes: int = Field(description="The largest live camera frame, in bytes (the socket closes with 1009 above it).")


@router.get("", response_model=LimitsOut)
async def get_limits(settings: SettingsDep) -> LimitsOut:
    return LimitsOut(upload_max_bytes=settings.max_upload_bytes, image_max_pixels=IMAGE_MAX_PIXELS,
                     image_max_side=IMAGE_MAX_SIDE, notes_max_chars=NOTES_MAX_CHARS,
                     batch_max_photos=settings.batch_max_photos, batch_max_bytes=settings.batch_max_bytes,
                     archive_max_members=ARCHIVE_MAX_MEMBERS, archive_max_ratio=ARCHIVE_MAX_RATIO,
                     video_max_bytes=settings.video_max_bytes, video_max_seconds=VIDEO_MAX_SECONDS,
                     video_default_fps=VIDEO_DEFAULT_FPS, video_max_fps=VIDEO_MAX_FPS, live_frame_max_bytes=LIVE_FRAME_MAX_BYTES)
