"""What the platform accepts, for clients to check before they upload (the browser reads it)."""
from fastapi import APIRouter
from pydantic import BaseModel, Field

from ferkit.limits import IMAGE_MAX_PIXELS, IMAGE_MAX_SIDE, NOTES_MAX_CHARS
from services.gateway.deps import SettingsDep

router = APIRouter(prefix="/limits", tags=["limits"])


class LimitsOut(BaseModel):
    upload_max_bytes: int = Field(description="The largest photo accepted, in bytes (413 above it).")
    image_max_pixels: int = Field(description="The most pixels a photo may have (width x height).")
    image_max_side: int = Field(description="The longest side a photo may have, in pixels.")
    notes_max_chars: int = Field(description="The longest `notes` accepted, in characters.")


@router.get("", response_model=LimitsOut)
async def get_limits(settings: SettingsDep) -> LimitsOut:
    return LimitsOut(upload_max_bytes=settings.max_upload_bytes, image_max_pixels=IMAGE_MAX_PIXELS,
                     image_max_side=IMAGE_MAX_SIDE, notes_max_chars=NOTES_MAX_CHARS)
