"""Uploaded images: validate with Pillow before anything else, then decode to 8-bit RGB.

`probe()` reads only the header (cheap: the gateway calls it before forwarding an upload);
`decode()` does the full decode (the inference service calls it). Both raise ImageError, whose
`status` is the HTTP status the problem deserves. Odd but valid images (CMYK, 16-bit, alpha,
palette, EXIF-rotated) are converted, not refused.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ferkit.limits import IMAGE_MAX_PIXELS, IMAGE_MAX_SIDE, IMAGE_MIN_SIDE, UPLOAD_MAX_BYTES
from ferkit.vision import has_alpha, over_white, to_grey

# What browsers and cameras produce; anything else Pillow can read is refused with 415.
ALLOWED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF")
ORIENTATION_TAG = 0x0112


class ImageError(ValueError):
    """An upload that cannot be used; `status` is the HTTP status (413, 415 or 422)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = UPLOAD_MAX_BYTES
    max_pixels: int = IMAGE_MAX_PIXELS
    max_side: int = IMAGE_MAX_SIDE


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    mode: str

    @property
    def content_type(self) -> str:
        return Image.MIME.get(self.format, "application/octet-stream")


@dataclass(frozen=True)
class DecodedImage:
    info: ImageInfo
    # Upright (EXIF orientation applied) 8-bit RGB, (H, W, 3), `scale` times the upright photo's size.
    rgb: np.ndarray
    # The upright photo's width and height, in pixels.
    size: tuple[int, int]
    scale: float = 1.0

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]


def _too_many_pixels(limits: ImageLimits) -> ImageError:
    """Pillow's own guard fired (far above ours, unless a caller raised ours)."""
    return ImageError(f"the image claims more than the {limits.max_pixels} pixels allowed (decompression bomb)", status=413)


def _open(data: bytes, limits: ImageLimits) -> Image.Image:
    if not data:
        raise ImageError("the uploaded file is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageError(f"the image is larger than {limits.max_bytes} bytes", status=413)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; our own limit decides below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=None)
    except Image.DecompressionBombError:
        raise _too_many_pixels(limits) from None
    except UnidentifiedImageError:
        raise ImageError(f"the file is not an image in a supported format ({', '.join(ALLOWED_FORMATS)})", status=415) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"the image cannot be read: {exc}") from None
    if image.format not in ALLOWED_FORMATS:
        raise ImageError(f"{image.format} images are not accepted; send one of {', '.join(ALLOWED_FORMATS)}", status=415)
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageError(
            f"the image is {width}x{height} = {width * height} pixels, more than the {limits.max_pixels} pixels allowed", status=413
        )
    if max(width, height) > limits.max_side:
        raise ImageError(f"the image is {width}x{height}; no side may exceed {limits.max_side} pixels")
    if min(width, height) < IMAGE_MIN_SIDE:
        raise ImageError(f"the image is {width}x{height}; both sides must be at least {IMAGE_MIN_SIDE} pixels")
    # MPO (phone JPEGs with a depth or preview frame) counts as one picture: the first frame is the photo.
    if image.format != "MPO" and getattr(image, "n_frames", 1) > 1:
        raise ImageError(f"the image has {image.n_frames} frames (animation or multi-page); send a single picture")
    return image


def probe(data: bytes, limits: ImageLimits = ImageLimits()) -> ImageInfo:
    """Header-level checks only (no pixel decode): size, format, dimensions, frames."""
    image = _open(data, limits)
    return ImageInfo(image.format, image.size[0], image.size[1], image.mode)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode -> 8-bit RGB: alpha over white, CMYK via Pillow, 16-bit/float grey rescaled to 8 bits."""
    mode = image.mode
    if mode == "RGB":
        return image
    if has_alpha(image):
        return over_white(image)
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(to_grey(image), mode="L").convert("RGB")
    return image.convert("RGB")


def decode(data: bytes, limits: ImageLimits = ImageLimits(), max_side: int = 0) -> DecodedImage:
    """Full decode: everything probe() checks, plus truncated or corrupt pixel data. With max_side, the
    pixels come back at most that long a side (a JPEG is decoded reduced, in draft mode: a 12 MP photo
    costs a fraction of a full decode), and `scale` says by how much."""
    image = _open(data, limits)
    info = ImageInfo(image.format, image.size[0], image.size[1], image.mode)
    try:
        # EXIF orientations 5-8 turn the photo a quarter: its upright width is the stored height.
        turned = image.getexif().get(ORIENTATION_TAG, 1) in (5, 6, 7, 8)
        width, height = (info.height, info.width) if turned else (info.width, info.height)
        scale = min(1.0, max_side / max(width, height)) if max_side else 1.0
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        if scale < 1.0:
            # JPEG only (DCT scaling to at least the target); other formats decode whole.
            image.draft("RGB", (target[1], target[0]) if turned else target)
        image.load()
        rgb = to_rgb(ImageOps.exif_transpose(image))
        if rgb.size != target:
            rgb = rgb.resize(target, Image.Resampling.BILINEAR)
        array = np.asarray(rgb, dtype=np.uint8)
    except Image.DecompressionBombError:
        raise _too_many_pixels(limits) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"the image data is truncated or corrupt: {exc}") from None
    return DecodedImage(info=info, rgb=np.ascontiguousarray(array), size=(width, height), scale=scale)
