"""FER2013 CSVs (the Kaggle layout and the task layout) and FER+ re-labels of the same rows."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from ferkit.files import atomic_path
from ferkit.vision import CLASSES, FACE_SIZE
from training.data.faces import (
    CLASSES_WITH_CONTEMPT, DataError, FaceData, file_sha256, open_text, parse_label, require_path,
)

PIXELS_PER_FACE = FACE_SIZE[0] * FACE_SIZE[1]

# FER+ vote columns, in file order, and the FER2013 class each maps to (7 = contempt).
FERPLUS_EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
_FERPLUS_TO_FER = (6, 3, 5, 4, 0, 1, 2, 7)


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


def load_fer2013_csv(path: str | Path, require_labels: bool = True) -> FaceData:
    """FER2013 in the Kaggle layout `emotion,pixels,Usage` (plain or gzip). Also reads the task
    layout: `emotion,pixels` (train.csv) or `pixels` only (test.csv; labels are -1), with an
    optional `id` column (kept in `ids`)."""
    path = require_path(path)
    images: list[np.ndarray] = []
    labels: list[int] = []
    usage: list[str] = []
    ids: list[str] = []
    with open_text(path) as fh:
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
        ii = header.index("id") if "id" in header else None
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            where = f"{path}:{lineno}"
            if len(row) != len(header):
                raise DataError(f"{where}: {len(row)} fields, header has {len(header)}")
            images.append(parse_pixels(row[ip], where))
            labels.append(parse_label(row[ie], where, len(CLASSES)) if ie is not None else -1)
            if iu is not None:
                usage.append(row[iu].strip())
            if ii is not None:
                ids.append(row[ii].strip())
    if not images:
        raise DataError(f"{path}: no rows")
    return FaceData(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        split=np.asarray(usage) if usage else None,
        ids=np.asarray(ids) if ids else None,
        sha256=file_sha256(path),
    )


def load_fer2013_cached(path: str | Path, cache_dir: str | Path | None = None) -> FaceData:
    """load_fer2013_csv with a .npz cache keyed by the file's sha256 (parsing takes ~20 s)."""
    path = require_path(path)
    digest = file_sha256(path)
    if cache_dir is not None:
        cache = Path(cache_dir) / f"fer2013-{digest[:16]}.npz"
        if cache.exists():
            z = np.load(cache, allow_pickle=False)
            return FaceData(images=z["images"], labels=z["labels"],
                            split=z["split"] if "split" in z.files else None, sha256=digest)
    data = load_fer2013_csv(path)
    if cache_dir is not None:
        arrays = {"images": data.images, "labels": data.labels}
        if data.split is not None:
            arrays["split"] = data.split
        with atomic_path(cache) as tmp:
            np.savez(tmp, **arrays)
    return data


def load_ferplus(fer_csv: str | Path, votes_csv: str | Path, keep_contempt: bool = False,
                 cache_dir: str | Path | None = None) -> FaceData:
    """FER2013 pixels with the FER+ re-labels (same row order). Labels are the majority vote;
    `soft` holds the vote distribution. Rows whose majority is unknown / not-a-face, or that have
    no emotion votes, are dropped (as FER+'s own "majority" mode does)."""
    base = load_fer2013_cached(fer_csv, cache_dir)
    votes_csv = require_path(votes_csv)
    n_cls = 8 if keep_contempt else 7
    rows = []
    with open_text(votes_csv) as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader)]
        missing = [c for c in FERPLUS_EMOTIONS + ("unknown", "nf") if c not in header]
        if missing:
            raise DataError(f"{votes_csv}: missing vote columns {missing}; header {header}")
        cols = [header.index(c) for c in FERPLUS_EMOTIONS + ("unknown", "nf")]
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                rows.append([float(row[c]) for c in cols])
            except (ValueError, IndexError):
                raise DataError(f"{votes_csv}:{lineno}: vote counts must be numbers") from None
    if len(rows) != len(base):
        raise DataError(f"{votes_csv}: {len(rows)} rows, but {fer_csv} has {len(base)}; they must align")
    v = np.asarray(rows, dtype=np.float32)
    soft = np.zeros((len(v), n_cls), dtype=np.float32)
    for j, k in enumerate(_FERPLUS_TO_FER):
        if k < n_cls:
            soft[:, k] += v[:, j]
    emotion_votes = soft.sum(1)
    majority_is_emotion = v[:, :8].max(1) >= v[:, 8:].max(1)
    keep = (emotion_votes > 0) & majority_is_emotion
    soft[keep] /= emotion_votes[keep, None]
    data = replace(base, soft=soft, labels=soft.argmax(1).astype(np.int64),
                   classes=CLASSES_WITH_CONTEMPT if keep_contempt else CLASSES,
                   sha256=hashlib.sha256((base.sha256 + file_sha256(votes_csv)).encode()).hexdigest())
    return data.subset(keep)
