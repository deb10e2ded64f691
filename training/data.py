"""FER datasets, each loaded once into one uint8 array (N, 48, 48) with int64 labels.

Every loader validates what it reads (pixel count, label range, columns) with errors that name the
file and row, and reports unreadable image files (they are skipped, never a crash).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ferkit.vision import CLASSES, FACE_SIZE, crop_face, resize_grey, to_grey

log = logging.getLogger(__name__)

PIXELS_PER_FACE = FACE_SIZE[0] * FACE_SIZE[1]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm"}
CLASSES_WITH_CONTEMPT: tuple[str, ...] = CLASSES + ("contempt",)

# Folder / label names seen in the wild -> FER2013 class index (CK+, FER2013 folder dumps, JAFFE codes).
_NAME_TO_CLASS = {
    "angry": 0, "anger": 0, "an": 0, "ang": 0,
    "disgust": 1, "disgusted": 1, "di": 1, "dis": 1,
    "fear": 2, "fearful": 2, "afraid": 2, "fe": 2,
    "happy": 3, "happiness": 3, "ha": 3, "hap": 3, "joy": 3,
    "sad": 4, "sadness": 4, "sa": 4,
    "surprise": 5, "surprised": 5, "su": 5, "sur": 5,
    "neutral": 6, "ne": 6, "neu": 6,
    "contempt": 7, "co": 7,
}


class DataError(ValueError):
    """The data on disk does not match the layout it was loaded as."""


@dataclass
class FaceData:
    """Faces as one uint8 array plus per-row annotations."""

    images: np.ndarray  # (N, H, W) uint8
    labels: np.ndarray  # (N,) int64; -1 where unknown (unlabelled test rows)
    classes: tuple[str, ...] = CLASSES
    split: np.ndarray | None = None  # (N,) str, e.g. FER2013 Usage
    subjects: np.ndarray | None = None  # (N,) str where known (JAFFE)
    soft: np.ndarray | None = None  # (N, C) float32 label distribution (FER+ votes)
    landmarks: np.ndarray | None = None  # (N, K, 2) float32, in crop pixels
    paths: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    sha256: str = ""

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 3:
            raise DataError(f"images must be uint8 (N, H, W), got {self.images.dtype} {self.images.shape}")
        if len(self.labels) != n:
            raise DataError(f"{n} images but {len(self.labels)} labels")
        for name in ("split", "subjects", "soft", "landmarks"):
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
            paths=[self.paths[i] for i in idx] if self.paths else [],
            skipped=list(self.skipped),
        )

    def counts(self) -> np.ndarray:
        labelled = self.labels[self.labels >= 0]
        return np.bincount(labelled, minlength=len(self.classes))


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _require(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    return path


def parse_pixels(text: str, where: str) -> np.ndarray:
    """FER2013 `pixels` cell -> (48, 48) uint8, with the reason when it is not one."""
    values = text.split()
    if len(values) != PIXELS_PER_FACE:
        raise DataError(f"{where}: expected {PIXELS_PER_FACE} pixel values (48x48), got {len(values)}")
    try:
        arr = np.array(values, dtype=np.int64)
    except ValueError as exc:
        raise DataError(f"{where}: pixels must be integers 0-255 ({exc})") from None
    if arr.min() < 0 or arr.max() > 255:
        raise DataError(f"{where}: pixel values must lie in 0-255, got {arr.min()}..{arr.max()}")
    return arr.astype(np.uint8).reshape(FACE_SIZE)


def _parse_label(raw: str, where: str, num_classes: int) -> int:
    try:
        label = int(str(raw).strip())
    except ValueError:
        raise DataError(f"{where}: label {raw!r} is not an integer") from None
    if not 0 <= label < num_classes:
        raise DataError(f"{where}: label {label} out of range 0-{num_classes - 1}")
    return label


def load_fer2013_csv(path: str | Path, require_labels: bool = True) -> FaceData:
    """FER2013 in the Kaggle layout `emotion,pixels,Usage` (plain or gzip). Also reads the task
    layout: `emotion,pixels` (train.csv) or `pixels` only (test.csv; labels are -1)."""
    path = _require(path)
    images: list[np.ndarray] = []
    labels: list[int] = []
    usage: list[str] = []
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{path}: empty file") from None
        if "pixels" not in header:
            raise DataError(f"{path}: no 'pixels' column in header {header}")
        if require_labels and "emotion" not in header:
            raise DataError(f"{path}: no 'emotion' column in header {header}")
        ip = header.index("pixels")
        ie = header.index("emotion") if "emotion" in header else None
        iu = header.index("usage") if "usage" in header else None
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            where = f"{path}:{lineno}"
            if len(row) != len(header):
                raise DataError(f"{where}: {len(row)} fields, header has {len(header)}")
            images.append(parse_pixels(row[ip], where))
            labels.append(_parse_label(row[ie], where, len(CLASSES)) if ie is not None else -1)
            if iu is not None:
                usage.append(row[iu].strip())
    if not images:
        raise DataError(f"{path}: no rows")
    return FaceData(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        split=np.asarray(usage) if usage else None,
        sha256=file_sha256(path),
    )


def load_fer2013_cached(path: str | Path, cache_dir: str | Path | None = None) -> FaceData:
    """load_fer2013_csv with a .npz cache keyed by the file's sha256 (parsing takes ~20 s)."""
    path = _require(path)
    digest = file_sha256(path)
    if cache_dir is not None:
        cache = Path(cache_dir) / f"fer2013-{digest[:16]}.npz"
        if cache.exists():
            z = np.load(cache, allow_pickle=False)
            return FaceData(images=z["images"], labels=z["labels"],
                            split=z["split"] if "split" in z.files else None, sha256=digest)
    data = load_fer2013_csv(path)
    if cache_dir is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        arrays = {"images": data.images, "labels": data.labels}
        if data.split is not None:
            arrays["split"] = data.split
        np.savez(tmp, **arrays)
        tmp.replace(cache)
    return data


@dataclass
class Splits:
    train: FaceData
    val: FaceData
    test: FaceData | None
    sha256: str
    classes: tuple[str, ...] = CLASSES


def _by_usage(data: FaceData, name: str) -> FaceData:
    if data.split is None:
        raise DataError("this FER2013 file has no Usage column; give separate files or use task_csv")
    mask = data.split == name
    if not mask.any():
        raise DataError(f"no rows with Usage {name!r}; found {sorted(set(data.split.tolist()))}")
    return data.subset(mask)


def load_splits(cfg, cache_dir: str | Path | None = None) -> Splits:
    """The train/val/test splits a recipe's `data` section describes."""
    fmt = cfg.format
    if fmt == "fer2013_csv":
        data = load_fer2013_cached(cfg.path, cache_dir)
        splits = Splits(_by_usage(data, cfg.train_split), _by_usage(data, cfg.val_split),
                        _by_usage(data, cfg.test_split) if cfg.test_split else None, data.sha256)
    else:
        splits = _load_other_splits(cfg)
    if cfg.limit:
        splits.train = splits.train.subset(np.arange(min(cfg.limit, len(splits.train))))
    return splits
