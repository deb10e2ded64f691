"""Datasets of image files: class folders (FER2013 dumps, CK+), JAFFE (by file name or an
`image_path,labels` CSV) and AffectNet-style CSVs with face boxes and landmarks. Unreadable files
are reported and skipped, never a crash."""

from __future__ import annotations

import csv
import hashlib
import logging
import re
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ferkit.vision import CLASSES, DEFAULT_MARGIN, crop_face, face_square, to_grey
from training.data.faces import (
    CLASSES_WITH_CONTEMPT, DataError, FaceData, file_sha256, open_text, parse_label, require_path,
)

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm"}
# Larger files are refused as decompression bombs (reported and skipped). Checked per file, so that
# importing training leaves Pillow's global limit alone.
MAX_IMAGE_PIXELS = 64_000_000

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

# JAFFE file names: SUBJECT.EXPRn.ID.ext, e.g. KA.AN1.39.tiff
_JAFFE_NAME = re.compile(r"^([A-Z]{2})\.([A-Z]{2})(\d*)\.(\d+)\.[A-Za-z]+$")
_JAFFE_CODES = {"AN": 0, "DI": 1, "FE": 2, "HA": 3, "SA": 4, "SU": 5, "NE": 6}

# AffectNet expression codes -> FER2013 index (7 = contempt; 8 none, 9 uncertain, 10 no-face: dropped).
_AFFECTNET_TO_FER = {0: 6, 1: 3, 2: 4, 3: 5, 4: 2, 5: 1, 6: 0, 7: 7}


def load_face_image(path: str | Path, box: Sequence[float] | None = None,
                    margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """One image file -> (48, 48) uint8 face. With a box, crop around it; without, the image is
    taken as a face crop already (centre square, so the aspect ratio is kept)."""
    with warnings.catch_warnings():
        # Pillow only warns below twice its own limit; MAX_IMAGE_PIXELS decides, below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(path)
    with image as im:
        if im.width * im.height > MAX_IMAGE_PIXELS:
            raise Image.DecompressionBombError(
                f"{im.width}x{im.height} pixels, more than the {MAX_IMAGE_PIXELS} allowed")
        im.load()
        grey = to_grey(im)
    if box is None:
        h, w = grey.shape
        side = min(h, w)
        return crop_face(grey, ((w - side) // 2, (h - side) // 2, side, side), margin=0.0)
    return crop_face(grey, tuple(box), margin=margin)


def _faces_from_files(paths: Sequence[Path], labels: Sequence[int], desc: str, sha256: str, *,
                      load: Callable[[Path], np.ndarray] = load_face_image,
                      skipped: list[tuple[str, str]] | None = None, classes: tuple[str, ...] = CLASSES,
                      split: Sequence[str] | None = None, landmarks: Sequence[np.ndarray] | None = None,
                      subject_name: re.Pattern[str] | None = None) -> FaceData:
    """The FaceData of image files and their per-file annotations. Unreadable files are logged,
    recorded in `skipped` and left out with their rows; subjects are the first group of
    `subject_name` when every kept file name matches it."""
    from tqdm import tqdm

    skipped = [] if skipped is None else skipped
    faces, kept = [], []
    for i, path in enumerate(tqdm(paths, desc=f"loading {desc}", unit="img", disable=len(paths) < 500,
                                  leave=False)):
        try:
            faces.append(load(path))
            kept.append(i)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("skipping %s: %s", path, reason)
            skipped.append((str(path), reason))
    if not faces:
        raise DataError(f"{desc}: none of the {len(paths)} images could be read")
    keep = lambda values: [values[i] for i in kept]  # noqa: E731
    names = [subject_name.match(p.name) for p in keep(paths)] if subject_name else []
    return FaceData(
        images=np.stack(faces),
        labels=np.asarray(keep(labels), dtype=np.int64),
        classes=classes,
        split=None if split is None else np.asarray(keep(split)),
        subjects=np.asarray([m.group(1) for m in names]) if names and all(names) else None,
        landmarks=None if landmarks is None else np.stack(keep(landmarks)),
        paths=[str(p) for p in keep(paths)],
        skipped=skipped,
        sha256=sha256,
    )


def _class_of(name: str, keep_contempt: bool = False) -> int | None:
    idx = _NAME_TO_CLASS.get(name.strip().lower())
    if idx is None:
        return None
    if idx == 7 and not keep_contempt:
        return None
    return idx


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def tree_sha256(root: Path) -> str:
    """Hash of a folder's file names and contents (the data hash of image-folder datasets)."""
    h = hashlib.sha256()
    for p in sorted(q for q in Path(root).rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode())
        h.update(file_sha256(p).encode())
    return h.hexdigest()


def load_class_folders(root: str | Path, keep_contempt: bool = False,
                       subject_pattern: str | None = r"^(S\d+)_") -> FaceData:
    """Class folders: root/<class>/*.png, or with split folders root/<split>/<class>/*.png
    (FER2013 image dumps use train/ and test/; CK+ crops use one folder per class). Folder names
    are class names (angry, happy, ...) or FER2013 indices (0-6). Subjects are read from file names
    when they match `subject_pattern` (CK+: S005_001_00000011.png)."""
    root = require_path(root)
    if not root.is_dir():
        raise DataError(f"{root}: expected a folder of class folders")
    classes = CLASSES_WITH_CONTEMPT if keep_contempt else CLASSES

    def class_dirs(folder: Path) -> dict[int, Path]:
        found = {}
        for d in sorted(p for p in folder.iterdir() if p.is_dir()):
            idx = int(d.name) if d.name.isdigit() else _class_of(d.name, keep_contempt)
            if idx is not None and 0 <= idx < len(classes):
                found[idx] = d
        return found

    direct = class_dirs(root)
    layout: list[tuple[str | None, dict[int, Path]]] = []
    if direct:
        layout.append((None, direct))
    else:
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            sub = class_dirs(d)
            if sub:
                layout.append((d.name, sub))
    if not layout:
        raise DataError(f"{root}: no class folders (expected names like {', '.join(CLASSES)} or 0-6)")
    paths, labels, splits = [], [], []
    for split_name, dirs in layout:
        for idx, d in dirs.items():
            files = _image_files(d)
            paths += files
            labels += [idx] * len(files)
            splits += [split_name or ""] * len(files)
    if not paths:
        raise DataError(f"{root}: class folders hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return _faces_from_files(paths, labels, str(root), tree_sha256(root), classes=classes,
                             split=splits if any(splits) else None,
                             subject_name=re.compile(subject_pattern) if subject_pattern else None)


def load_jaffe(root: str | Path) -> FaceData:
    """JAFFE by file name (SUBJECT.EXPRn.ID): the labels and the subjects come from the name."""
    root = require_path(root)
    files = _image_files(root) if root.is_dir() else []
    if not files:
        raise DataError(f"{root}: no image files")
    paths, labels = [], []
    skipped: list[tuple[str, str]] = []
    for p in files:
        m = _JAFFE_NAME.match(p.name)
        if not m or m.group(2) not in _JAFFE_CODES:
            reason = "name is not SUBJECT.EXPRn.ID (e.g. KA.AN1.39.tiff)"
            log.warning("skipping %s: %s", p, reason)
            skipped.append((str(p), reason))
            continue
        paths.append(p)
        labels.append(_JAFFE_CODES[m.group(2)])
    if not paths:
        raise DataError(f"{root}: no JAFFE images (names like KA.AN1.39.tiff)")
    return _faces_from_files(paths, labels, str(root), tree_sha256(root), skipped=skipped,
                             subject_name=_JAFFE_NAME)


def load_image_label_csv(csv_path: str | Path, image_root: str | Path | None = None) -> FaceData:
    """`image_path,labels` CSV (the JAFFE layout here): paths relative to the CSV's folder (or
    image_root), labels in the FER2013 order. JAFFE-style names also give the subject."""
    csv_path = require_path(csv_path)
    root = Path(image_root) if image_root else csv_path.parent
    paths, labels = [], []
    with open_text(csv_path) as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "image_path" not in fields or "labels" not in fields:
            raise DataError(f"{csv_path}: expected columns image_path,labels; got {reader.fieldnames}")
        for lineno, row in enumerate(reader, start=2):
            row = {k.strip().lower(): v for k, v in row.items() if k is not None}
            where = f"{csv_path}:{lineno}"
            paths.append(root / row["image_path"].strip())
            labels.append(parse_label(row["labels"], where, len(CLASSES)))
    if not paths:
        raise DataError(f"{csv_path}: no rows")
    return _faces_from_files(paths, labels, str(csv_path), file_sha256(csv_path), subject_name=_JAFFE_NAME)


def load_affectnet_csv(csv_path: str | Path, image_root: str | Path, keep_contempt: bool = False,
                       margin: float = DEFAULT_MARGIN) -> FaceData:
    """AffectNet-style CSV: subDirectory_filePath, face_x, face_y, face_width, face_height,
    facial_landmarks (68 "x;y;..." pairs), expression (0-10), valence, arousal. Faces are cropped
    around the given box; landmarks are kept in [-1, 1] crop coordinates for the landmark head."""
    csv_path, image_root = require_path(csv_path), require_path(image_root)
    need = ["subdirectory_filepath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
            "expression", "valence", "arousal"]
    paths, boxes, labels, landmarks, va = [], [], [], [], []
    with open_text(csv_path) as fh:
        reader = csv.DictReader(fh)
        fields = {f.strip().lower(): f for f in reader.fieldnames or []}
        missing = [c for c in need if c not in fields]
        if missing:
            raise DataError(f"{csv_path}: missing columns {missing}")
        for lineno, row in enumerate(reader, start=2):
            get = lambda c: row[fields[c]].strip()  # noqa: E731
            where = f"{csv_path}:{lineno}"
            expr = parse_label(get("expression"), where, 11)
            label = _AFFECTNET_TO_FER.get(expr)
            if label is None or (label == 7 and not keep_contempt):
                continue
            try:
                box = tuple(float(get(c)) for c in ("face_x", "face_y", "face_width", "face_height"))
                pts = [float(t) for t in get("facial_landmarks").split(";") if t.strip()]
                valence, arousal = float(get("valence")), float(get("arousal"))
            except ValueError:
                raise DataError(f"{where}: face box, landmarks, valence and arousal must be numbers") from None
            if len(pts) != 136:
                raise DataError(f"{where}: expected 68 landmarks (136 numbers), got {len(pts)}")
            if box[2] <= 0 or box[3] <= 0:
                raise DataError(f"{where}: face box {box} has no area")
            left, top, side = face_square(box, margin)
            lm = (np.asarray(pts, dtype=np.float32).reshape(68, 2) - (left, top)) / side * 2.0 - 1.0
            paths.append(image_root / get("subdirectory_filepath"))
            boxes.append(box)
            labels.append(label)
            landmarks.append(np.clip(lm, -1.0, 1.0))
            va.append((valence, arousal))
    if not paths:
        raise DataError(f"{csv_path}: no rows with a usable expression")
    boxes_by_path = dict(zip(paths, boxes))
    return _faces_from_files(paths, labels, str(csv_path), file_sha256(csv_path),
                             load=lambda p: load_face_image(p, boxes_by_path[p], margin),
                             classes=CLASSES_WITH_CONTEMPT if keep_contempt else CLASSES, landmarks=landmarks)
