"""The in-memory dataset every loader returns (one uint8 array plus per-row annotations) and the
validation helpers the loaders share."""

from __future__ import annotations

import gzip
import hashlib
import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ferkit.vision import CLASSES

CLASSES_WITH_CONTEMPT: tuple[str, ...] = CLASSES + ("contempt",)


class DataError(ValueError):
    """The data on disk does not match the layout it was loaded as."""


@dataclass(frozen=True)
class LandmarkScheme:
    """What a landmark annotation's point order means: `flip[i]` is the point that point i becomes
    in the mirrored face (left eye <-> right eye), `eyes` the two points whose distance normalises
    the landmark error (NME)."""

    name: str
    flip: tuple[int, ...]
    eyes: tuple[int, int]


# iBUG 300-W 68-point mirror order: jaw, brows, nose, eyes, outer and inner lips.
_IBUG68_FLIP = (
    tuple(range(16, -1, -1)) + tuple(range(26, 16, -1)) + (27, 28, 29, 30) + (35, 34, 33, 32, 31)
    + (45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40)
    + (54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55) + (64, 63, 62, 61, 60, 67, 66, 65)
)
LANDMARK_SCHEMES = {
    5: LandmarkScheme("5-point (eyes, nose, mouth corners)", (1, 0, 2, 4, 3), (0, 1)),
    68: LandmarkScheme("iBUG 68-point", _IBUG68_FLIP, (36, 45)),  # NME over the outer eye corners
}


def landmark_scheme(num_points: int) -> LandmarkScheme:
    scheme = LANDMARK_SCHEMES.get(num_points)
    if scheme is None:
        raise DataError(f"no landmark scheme for {num_points} points (known: {sorted(LANDMARK_SCHEMES)}); "
                        "flips and the landmark error need to know which point mirrors which")
    return scheme


@dataclass
class FaceData:
    """Faces as one uint8 array plus per-row annotations."""

    images: np.ndarray  # (N, H, W) uint8
    labels: np.ndarray  # (N,) int64; -1 where unknown (unlabelled test rows)
    classes: tuple[str, ...] = CLASSES
    split: np.ndarray | None = None  # (N,) str, e.g. FER2013 Usage
    subjects: np.ndarray | None = None  # (N,) str where known (JAFFE)
    soft: np.ndarray | None = None  # (N, C) float32 label distribution (FER+ votes)
    landmarks: np.ndarray | None = None  # (N, K, 2) float32, x, y in [-1, 1] crop coordinates
    ids: np.ndarray | None = None  # (N,) str: a test.csv's own `id` column, kept for the submission
    paths: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    sha256: str = ""

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 3:
            raise DataError(f"images must be uint8 (N, H, W), got {self.images.dtype} {self.images.shape}")
        if len(self.labels) != n:
            raise DataError(f"{n} images but {len(self.labels)} labels")
        for name in ("split", "subjects", "soft", "landmarks", "ids"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise DataError(f"{n} images but {len(value)} {name}")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray | Sequence[int]) -> "FaceData":
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return replace(
            self,
            images=self.images[idx],
            labels=self.labels[idx],
            split=pick(self.split),
            subjects=pick(self.subjects),
            soft=pick(self.soft),
            landmarks=pick(self.landmarks),
            ids=pick(self.ids),
            paths=[self.paths[i] for i in idx] if self.paths else [],
            skipped=list(self.skipped),
        )

    @property
    def landmark_scheme(self) -> LandmarkScheme | None:
        return None if self.landmarks is None else landmark_scheme(self.landmarks.shape[1])

    def counts(self) -> np.ndarray:
        labelled = self.labels[self.labels >= 0]
        return np.bincount(labelled, minlength=len(self.classes))


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def open_text(path: Path) -> io.TextIOBase:
    """A CSV file, plain or gzip (told apart by its first bytes, not its name)."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def require_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    return path


def parse_label(raw: str, where: str, num_classes: int) -> int:
    try:
        label = int(str(raw).strip())
    except ValueError:
        raise DataError(f"{where}: label {raw!r} is not an integer") from None
    if not 0 <= label < num_classes:
        raise DataError(f"{where}: label {label} out of range 0-{num_classes - 1}")
    return label
