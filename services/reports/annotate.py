"""The annotated image: each face's box, label and score drawn legibly on the original photo. Drawn when a
result's image is first asked for (or a report needs it), never on the upload's path."""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ferkit import images

# One colour per class (FER2013 order), distinct and readable with white text.
COLOURS = {
    "angry": (214, 39, 40),
    "disgust": (140, 86, 75),
    "fear": (148, 103, 189),
    "happy": (44, 160, 44),
    "sad": (31, 119, 180),
    "surprise": (255, 127, 14),
    "neutral": (100, 100, 100),
}
DEFAULT_COLOUR = (23, 190, 207)


@dataclass(frozen=True)
class Mark:
    box: tuple[int, int, int, int]
    label: str
    score: float
    # The top score is below the model's threshold: the tag reads "label? 41%".
    uncertain: bool = False


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def annotate(rgb: np.ndarray, marks: list[Mark]) -> bytes:
    """PNG bytes of the image with boxes (in its pixels) and "label 87%" tags ("label? 41%" for an
    uncertain face)."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    # Line and text size follow the image, so tags stay legible on a thumbnail and on a 12 MP photo.
    short = min(image.size)
    line = max(2, round(short / 250))
    font = _font(max(12, round(short / 32)))
    for mark in marks:
        x, y, w, h = mark.box
        colour = COLOURS.get(mark.label, DEFAULT_COLOUR)
        draw.rectangle([x, y, x + w, y + h], outline=colour, width=line)
        text = f"{mark.label}{'?' if mark.uncertain else ''} {mark.score:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        pad = max(2, th // 4)
        # Above the box when there is room, else inside its top edge.
        ty = y - th - 2 * pad if y - th - 2 * pad >= 0 else y
        tx = min(max(0, x), max(0, image.width - tw - 2 * pad))
        draw.rectangle([tx, ty, tx + tw + 2 * pad, ty + th + 2 * pad], fill=colour)
        draw.text((tx + pad - left, ty + pad - top), text, fill=(255, 255, 255), font=font)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def result_png(row, max_side: int) -> bytes:
    """A stored result's annotated PNG: the one kept, or drawn now from its original photo (checked at
    upload, decoded at most max_side a side) and the faces as stored. Raises images.ImageError when the
    original cannot be decoded."""
    if row.annotated_png or not row.original_image:
        return row.annotated_png or b""
    decoded = images.decode(row.original_image, images.ImageLimits(), max_side=max_side)
    marks = [
        Mark(tuple(round(v * decoded.scale) for v in face["box"]), face["label"], max(face["scores"]), face.get("uncertain", False))
        for face in row.faces
    ]
    return annotate(decoded.rgb, marks)
