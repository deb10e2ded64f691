"""What training and inference must agree on: classes, grey conversion, face crop, normalisation,
and the metadata.json schema of a model version.

NumPy and Pillow only: the inference image imports this module without torch.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ferkit.files import write_atomic

# FER2013 label order: index i of a model's output is CLASSES[i].
CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# Default side of a face crop (FER2013 is 48x48 grey).
FACE_SIZE: tuple[int, int] = (48, 48)

# Extra room around a detector box, as a fraction of the box's longer side on every side (the crop is
# a square of side max(w, h) * (1 + 2 * margin) centred on the box). Calibrated on RetinaFace boxes,
# which run from the forehead to the chin: their height already is FER2013's framing. Measured with
# RetinaFace's landmarks on FER2013 itself (about 3,000 rows, upscaled 4x: eyes 17.8 px apart, at
# y = 18.7, mouth at y = 36.4 in the 48 px frame) against aligned crops of JAFFE (213 photos) and of
# the demo photos (67 faces): with 0.0 the eyes are 16.0-16.2 px apart at y = 18.7-19.9, and the mean
# crop correlates 0.79 (JAFFE) / 0.91 (photos) with FER2013's mean image; with 0.15 the faces were
# 1.3x smaller than FER2013's (eyes 12.4 px apart; correlation 0.14 / 0.70). FER2013's faces are
# about 10% larger still, but a margin below 0 would cut into the detector's box: 0.0 it is.
DEFAULT_MARGIN: float = 0.0

# An image whose sides are both at most this many pixels is one face already (a FER2013-style 48x48
# crop, a thumbnail): it is classified whole instead of searched for faces. RetinaFace misses most
# faces that small (it finds about 3 in 10 FER2013 rows at 48 px, 19 in 20 at 96 px).
ONE_FACE_MAX_SIDE: int = 96


@dataclass(frozen=True)
class InputSpec:
    """How 0-255 grey pixels become the model's input: x = (pixel * scale - mean[c]) / std[c]."""

    size: tuple[int, int] = FACE_SIZE  # (h, w)
    channels: int = 1
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"input size must be [h, w] with positive sides, got {self.size!r}")
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"mean and std need one value per channel ({self.channels}), "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": [int(self.size[0]), int(self.size[1])],
            "channels": int(self.channels),
            "scale": float(self.scale),
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InputSpec":
        try:
            return cls(
                size=(int(data["size"][0]), int(data["size"][1])),
                channels=int(data["channels"]),
                scale=float(data["scale"]),
                mean=tuple(float(m) for m in data["mean"]),
                std=tuple(float(s) for s in data["std"]),
            )
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"invalid input spec {data!r}: {exc}") from exc


def to_grey(image: Image.Image) -> np.ndarray:
    """Any Pillow image -> (H, W) uint8 luminance (ITU-R 601, as Pillow's "L" mode)."""
    mode = image.mode
    if mode == "L":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16/32-bit grey: rescale by the actual range of the integer type, not clip at 255.
        arr = np.asarray(image)
        if arr.dtype.kind in "ui" and arr.dtype.itemsize >= 2:
            top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
            return np.clip(np.rint(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    if mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        top = 1.0 if arr.size and arr.max() <= 1.0 else 255.0
        return np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
    if has_alpha(image):
        image = over_white(image)
    return np.asarray(image.convert("RGB").convert("L"), dtype=np.uint8).copy()


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


def over_white(image: Image.Image) -> Image.Image:
    """RGB with transparent pixels over white, as a browser shows them."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def face_square(box: tuple[int, int, int, int], margin: float = DEFAULT_MARGIN) -> tuple[int, int, int]:
    """(left, top, side) in pixels of the square crop_face takes around box = (x, y, w, h)."""
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"face box needs a positive width and height, got {tuple(box)!r}")
    if margin <= -0.5:
        raise ValueError(f"margin must be above -0.5 (a negative margin crops inside the box), got {margin}")
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    return int(np.floor(cx - side / 2.0)), int(np.floor(cy - side / 2.0)), max(1, int(round(side)))


def _region(grey: np.ndarray, left: int, top: int, right: int, bottom: int) -> np.ndarray:
    """grey[top:bottom, left:right], edge-padded where it leaves the image."""
    height, width = grey.shape
    pad_l, pad_t = max(0, -left), max(0, -top)
    pad_r, pad_b = max(0, right - width), max(0, bottom - height)
    if pad_l or pad_t or pad_r or pad_b:
        grey = np.pad(grey, ((pad_t, pad_b), (pad_l, pad_r)), mode="edge")
        left, right = left + pad_l, right + pad_l
        top, bottom = top + pad_t, bottom + pad_t
    return grey[top:bottom, left:right]


def _resized(patch: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = Image.fromarray(np.ascontiguousarray(patch, dtype=np.uint8), mode="L")
    out = out.resize((int(size[1]), int(size[0])), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(out, dtype=np.uint8).copy()


def crop_face(
    grey: np.ndarray,
    box: tuple[int, int, int, int],
    margin: float = DEFAULT_MARGIN,
    size: tuple[int, int] = FACE_SIZE,
) -> np.ndarray:
    """Square crop around box = (x, y, w, h) with `margin` on every side, edge-padded where it
    leaves the image, resized to `size` (h, w). Returns a uint8 array of that size."""
    if grey.ndim != 2:
        raise ValueError(f"crop_face expects a (H, W) grey array, got shape {grey.shape}")
    left, top, side_px = face_square(box, margin)
    return _resized(_region(grey, left, top, left + side_px, top + side_px), size)


def eye_angle(landmarks) -> float:
    """The roll of a face in degrees: the direction of the line from the first landmark to the second
    (the eyes, in RetinaFace's order: the one on the image's left first), in image coordinates (y down),
    so a positive angle means the eye on the right is lower."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if len(points) < 2:
        raise ValueError(f"need at least the two eye landmarks, got {len(points)} points")
    (lx, ly), (rx, ry) = points[0], points[1]
    if lx == rx and ly == ry:
        return 0.0
    return math.degrees(math.atan2(ry - ly, rx - lx))


def align_and_crop(
    grey: np.ndarray,
    box: tuple[int, int, int, int],
    landmarks=None,
    margin: float = DEFAULT_MARGIN,
    size: tuple[int, int] = FACE_SIZE,
) -> np.ndarray:
    """crop_face, with the face turned upright first: the square crop_face takes around box is turned
    about its centre by the eyes' angle, so in the crop the eyes are level (FER2013's faces are
    registered that way). `landmarks`: (x, y) points in image pixels whose first two are the eyes
    (RetinaFace's five: eyes, nose, mouth corners); None or empty (the Haar fallback gives none): the
    unaligned crop_face. Same size, margin and edge padding as crop_face; with level eyes, the same pixels."""
    if grey.ndim != 2:
        raise ValueError(f"align_and_crop expects a (H, W) grey array, got shape {grey.shape}")
    if landmarks is None or len(landmarks) < 2:
        return crop_face(grey, box, margin, size)
    angle = eye_angle(landmarks)
    if angle == 0.0:
        return crop_face(grey, box, margin, size)
    left, top, side_px = face_square(box, margin)
    half = side_px / 2.0
    cx, cy = left + half, top + half  # continuous coordinates: pixel i spans [i, i + 1)
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # Crop pixel (u, v) reads the image at centre + R(angle) @ ((u, v) - half): the crop's x axis runs
    # along the eye line. The turned square's corners bound what is read (edge-padded outside the image).
    reach = half * (abs(cos) + abs(sin))
    x0, y0 = int(math.floor(cx - reach)) - 1, int(math.floor(cy - reach)) - 1
    x1, y1 = int(math.ceil(cx + reach)) + 1, int(math.ceil(cy + reach)) + 1
    region = _region(grey, x0, y0, x1, y1)
    coefficients = (
        cos, -sin, cx - x0 - cos * half + sin * half,
        sin, cos, cy - y0 - sin * half - cos * half,
    )
    patch = Image.fromarray(np.ascontiguousarray(region, dtype=np.uint8), mode="L").transform(
        (side_px, side_px), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR
    )
    return _resized(np.asarray(patch, dtype=np.uint8), size)


def whole_face(grey: np.ndarray, size: tuple[int, int] = FACE_SIZE) -> np.ndarray:
    """An image that is one face already (a FER2013-style crop, a tight portrait): its centre square
    (the aspect ratio is kept), resized to `size`; what training does with a face image without a box."""
    height, width = grey.shape
    side = min(height, width)
    return crop_face(grey, ((width - side) // 2, (height - side) // 2, side, side), 0.0, size)


def resize_grey(grey: np.ndarray, size: tuple[int, int] = FACE_SIZE) -> np.ndarray:
    """Whole grey image (already a face crop) -> `size` (h, w) uint8."""
    if grey.shape == tuple(size):
        return np.asarray(grey, dtype=np.uint8)
    out = Image.fromarray(np.asarray(grey, dtype=np.uint8), mode="L")
    return np.asarray(out.resize((int(size[1]), int(size[0])), Image.Resampling.BILINEAR), dtype=np.uint8)


def normalise(faces: np.ndarray, spec: InputSpec = InputSpec()) -> np.ndarray:
    """uint8 faces (N, H, W) or (H, W) -> float32 (N, C, H, W) model input."""
    arr = np.asarray(faces)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"normalise expects (N, H, W) or (H, W) grey faces, got shape {arr.shape}")
    if tuple(arr.shape[1:]) != tuple(spec.size):
        raise ValueError(f"faces are {tuple(arr.shape[1:])}, the model expects {tuple(spec.size)}")
    x = arr.astype(np.float32) * np.float32(spec.scale)
    mean = np.asarray(spec.mean, dtype=np.float32)[None, :, None, None]
    std = np.asarray(spec.std, dtype=np.float32)[None, :, None, None]
    x = np.repeat(x[:, None], spec.channels, axis=1)
    return ((x - mean) / std).astype(np.float32, copy=False)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


METADATA_SCHEMA_VERSION = 1


@dataclass
class ModelMetadata:
    """metadata.json of a model version: enough to load model.pt and score it with nothing else."""

    name: str
    version: int
    architecture: str
    classes: tuple[str, ...] = CLASSES
    input: InputSpec = field(default_factory=InputSpec)
    metrics: dict[str, Any] = field(default_factory=dict)
    data_sha256: str = ""
    training_config: dict[str, Any] = field(default_factory=dict)
    git_revision: str = "unknown"
    # The torch that wrote model.pt: the serving Triton's libtorch must be at least this (pyproject.toml,
    # [tool.fer-platform.serving]). Empty where unknown.
    torch_version: str = ""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    framework: str = "torchscript"
    input_name: str = "input"
    output_name: str = "logits"
    # Test-time augmentation built into model.pt ("none" | "flip": logits averaged with the mirrored face's).
    tta: str = "none"
    # Scores are softmax(logits / temperature); the temperature is fitted on the validation split.
    temperature: float = 1.0
    # A face whose top score is below this is answered with "uncertain": true (its label stays).
    uncertain_below: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = METADATA_SCHEMA_VERSION

    def __post_init__(self) -> None:
        self.classes = tuple(str(c) for c in self.classes)
        if not self.classes:
            raise ValueError("metadata needs at least one class")
        if isinstance(self.input, dict):
            self.input = InputSpec.from_dict(self.input)
        if int(self.version) < 1:
            raise ValueError(f"version must be >= 1, got {self.version}")
        self.version = int(self.version)
        if not float(self.temperature) > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        self.temperature = float(self.temperature)
        self.uncertain_below = float(self.uncertain_below)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities of model.pt's output, as every caller should serve them."""
        return softmax(logits, self.temperature)

    def is_uncertain(self, scores: np.ndarray) -> np.ndarray:
        """Per row: is the top score below the version's threshold?"""
        return np.asarray(scores).max(axis=-1) < self.uncertain_below

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes"] = list(self.classes)
        data["input"] = self.input.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelMetadata":
        known = set(cls.__dataclass_fields__)
        missing = {"name", "version", "architecture", "classes", "input"} - set(data)
        if missing:
            raise ValueError(f"metadata.json lacks {sorted(missing)}")
        kwargs = {k: v for k, v in data.items() if k in known}
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "ModelMetadata":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically so a reader never sees half a file."""
        # default=str: recipe values such as YAML timestamps are stored as text.
        write_atomic(path, json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str) + "\n")
