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
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ferkit.vision import CLASSES, DEFAULT_MARGIN, FACE_SIZE, crop_face, face_square, to_grey

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
    layout: `emotion,pixels` (train.csv) or `pixels` only (test.csv; labels are -1), with an
    optional `id` column (kept in `ids`)."""
    path = _require(path)
    images: list[np.ndarray] = []
    labels: list[int] = []
    usage: list[str] = []
    ids: list[str] = []
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
        ii = header.index("id") if "id" in header else None
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


# -- image files ------------------------------------------------------------------------------

# Pillow refuses images above this many pixels (decompression bombs) with an error we report.
Image.MAX_IMAGE_PIXELS = 64_000_000


def load_face_image(path: str | Path, box: Sequence[float] | None = None,
                    margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """One image file -> (48, 48) uint8 face. With a box, crop around it; without, the image is
    taken as a face crop already (centre square, so the aspect ratio is kept)."""
    with Image.open(path) as im:
        im.load()
        grey = to_grey(im)
    if box is None:
        h, w = grey.shape
        side = min(h, w)
        return crop_face(grey, ((w - side) // 2, (h - side) // 2, side, side), margin=0.0)
    return crop_face(grey, tuple(box), margin=margin)


def _load_images(paths: Sequence[Path], loader: Callable[[Path], np.ndarray],
                 skipped: list[tuple[str, str]], desc: str) -> tuple[list[np.ndarray], list[int]]:
    """Load every path; unreadable files are logged, recorded in `skipped`, and left out."""
    from tqdm import tqdm

    faces, kept = [], []
    for i, path in enumerate(tqdm(paths, desc=f"loading {desc}", unit="img", disable=len(paths) < 500,
                                  leave=False)):
        try:
            faces.append(loader(path))
            kept.append(i)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("skipping %s: %s", path, reason)
            skipped.append((str(path), reason))
    if not faces:
        raise DataError(f"{desc}: none of the {len(paths)} images could be read")
    return faces, kept


def _class_of(name: str, keep_contempt: bool = False) -> int | None:
    idx = _NAME_TO_CLASS.get(name.strip().lower())
    if idx is None:
        return None
    if idx == 7 and not keep_contempt:
        return None
    return idx


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_class_folders(root: str | Path, keep_contempt: bool = False,
                       subject_pattern: str | None = r"^(S\d+)_") -> FaceData:
    """Class folders: root/<class>/*.png, or with split folders root/<split>/<class>/*.png
    (FER2013 image dumps use train/ and test/; CK+ crops use one folder per class). Folder names
    are class names (angry, happy, ...) or FER2013 indices (0-6). Subjects are read from file names
    when they match `subject_pattern` (CK+: S005_001_00000011.png)."""
    root = _require(root)
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
    skipped: list[tuple[str, str]] = []
    faces, kept = _load_images(paths, load_face_image, skipped, str(root))
    subjects = None
    if subject_pattern:
        rx = re.compile(subject_pattern)
        found = [rx.match(paths[i].name) for i in kept]
        if all(found):
            subjects = np.asarray([m.group(1) for m in found])
    has_split = any(splits)
    return FaceData(
        images=np.stack(faces),
        labels=np.asarray([labels[i] for i in kept], dtype=np.int64),
        classes=classes,
        split=np.asarray([splits[i] for i in kept]) if has_split else None,
        subjects=subjects,
        paths=[str(paths[i]) for i in kept],
        skipped=skipped,
        sha256=tree_sha256(root),
    )


def tree_sha256(root: Path) -> str:
    """Hash of a folder's file names and contents (the data hash of image-folder datasets)."""
    h = hashlib.sha256()
    for p in sorted(q for q in Path(root).rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode())
        h.update(file_sha256(p).encode())
    return h.hexdigest()


# JAFFE file names: SUBJECT.EXPRn.ID.ext, e.g. KA.AN1.39.tiff
_JAFFE_NAME = re.compile(r"^([A-Z]{2})\.([A-Z]{2})(\d*)\.(\d+)\.[A-Za-z]+$")
_JAFFE_CODES = {"AN": 0, "DI": 1, "FE": 2, "HA": 3, "SA": 4, "SU": 5, "NE": 6}


def load_jaffe(root: str | Path) -> FaceData:
    """JAFFE by file name (SUBJECT.EXPRn.ID): the labels and the subjects come from the name."""
    root = _require(root)
    files = _image_files(root) if root.is_dir() else []
    if not files:
        raise DataError(f"{root}: no image files")
    paths, labels, subjects = [], [], []
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
        subjects.append(m.group(1))
    if not paths:
        raise DataError(f"{root}: no JAFFE images (names like KA.AN1.39.tiff)")
    faces, kept = _load_images(paths, load_face_image, skipped, str(root))
    return FaceData(
        images=np.stack(faces),
        labels=np.asarray([labels[i] for i in kept], dtype=np.int64),
        subjects=np.asarray([subjects[i] for i in kept]),
        paths=[str(paths[i]) for i in kept],
        skipped=skipped,
        sha256=tree_sha256(root),
    )


def load_image_label_csv(csv_path: str | Path, image_root: str | Path | None = None) -> FaceData:
    """`image_path,labels` CSV (the JAFFE layout here): paths relative to the CSV's folder (or
    image_root), labels in the FER2013 order. JAFFE-style names also give the subject."""
    csv_path = _require(csv_path)
    root = Path(image_root) if image_root else csv_path.parent
    paths, labels = [], []
    with _open_text(csv_path) as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "image_path" not in fields or "labels" not in fields:
            raise DataError(f"{csv_path}: expected columns image_path,labels; got {reader.fieldnames}")
        for lineno, row in enumerate(reader, start=2):
            row = {k.strip().lower(): v for k, v in row.items() if k is not None}
            where = f"{csv_path}:{lineno}"
            paths.append(root / row["image_path"].strip())
            labels.append(_parse_label(row["labels"], where, len(CLASSES)))
    if not paths:
        raise DataError(f"{csv_path}: no rows")
    skipped: list[tuple[str, str]] = []
    faces, kept = _load_images(paths, load_face_image, skipped, str(csv_path))
    names = [_JAFFE_NAME.match(paths[i].name) for i in kept]
    return FaceData(
        images=np.stack(faces),
        labels=np.asarray([labels[i] for i in kept], dtype=np.int64),
        subjects=np.asarray([m.group(1) for m in names]) if all(names) else None,
        paths=[str(paths[i]) for i in kept],
        skipped=skipped,
        sha256=file_sha256(csv_path),
    )


# FER+ vote columns, in file order, and the FER2013 class each maps to (7 = contempt).
FERPLUS_EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
_FERPLUS_TO_FER = (6, 3, 5, 4, 0, 1, 2, 7)


def load_ferplus(fer_csv: str | Path, votes_csv: str | Path, keep_contempt: bool = False,
                 cache_dir: str | Path | None = None) -> FaceData:
    """FER2013 pixels with the FER+ re-labels (same row order). Labels are the majority vote;
    `soft` holds the vote distribution. Rows whose majority is unknown / not-a-face, or that have
    no emotion votes, are dropped (as FER+'s own "majority" mode does)."""
    base = load_fer2013_cached(fer_csv, cache_dir)
    votes_csv = _require(votes_csv)
    n_cls = 8 if keep_contempt else 7
    rows = []
    with _open_text(votes_csv) as fh:
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


# AffectNet expression codes -> FER2013 index (7 = contempt; 8 none, 9 uncertain, 10 no-face: dropped).
_AFFECTNET_TO_FER = {0: 6, 1: 3, 2: 4, 3: 5, 4: 2, 5: 1, 6: 0, 7: 7}


def load_affectnet_csv(csv_path: str | Path, image_root: str | Path, keep_contempt: bool = False,
                       margin: float = DEFAULT_MARGIN) -> FaceData:
    """AffectNet-style CSV: subDirectory_filePath, face_x, face_y, face_width, face_height,
    facial_landmarks (68 "x;y;..." pairs), expression (0-10), valence, arousal. Faces are cropped
    around the given box; landmarks are kept in [-1, 1] crop coordinates for the landmark head."""
    csv_path, image_root = _require(csv_path), _require(image_root)
    need = ["subdirectory_filepath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
            "expression", "valence", "arousal"]
    paths, boxes, labels, landmarks, va = [], [], [], [], []
    with _open_text(csv_path) as fh:
        reader = csv.DictReader(fh)
        fields = {f.strip().lower(): f for f in reader.fieldnames or []}
        missing = [c for c in need if c not in fields]
        if missing:
            raise DataError(f"{csv_path}: missing columns {missing}")
        for lineno, row in enumerate(reader, start=2):
            get = lambda c: row[fields[c]].strip()  # noqa: E731
            where = f"{csv_path}:{lineno}"
            expr = _parse_label(get("expression"), where, 11)
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
    skipped: list[tuple[str, str]] = []
    boxes_by_path = dict(zip(paths, boxes))
    faces, kept = _load_images(paths, lambda p: load_face_image(p, boxes_by_path[p], margin), skipped,
                               str(csv_path))
    return FaceData(
        images=np.stack(faces),
        labels=np.asarray([labels[i] for i in kept], dtype=np.int64),
        classes=CLASSES_WITH_CONTEMPT if keep_contempt else CLASSES,
        landmarks=np.stack([landmarks[i] for i in kept]),
        paths=[str(paths[i]) for i in kept],
        skipped=skipped,
        sha256=file_sha256(csv_path),
    )


# -- splits ----------------------------------------------------------------------------------

def stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int = 0,
                     groups: np.ndarray | None = None) -> list[np.ndarray]:
    """Index arrays [rest, part_1, part_2, ...]: each part takes `fraction` of every class.
    With groups (subjects), whole groups go to one part, so no subject is in two parts."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    if groups is not None:
        uniq = np.unique(groups)
        rng.shuffle(uniq)
        bounds = np.cumsum([0] + [max(1, int(round(f * len(uniq)))) for f in fractions])
        if bounds[-1] >= len(uniq):
            raise DataError(f"{len(uniq)} subjects are too few for a subject-wise split {list(fractions)}")
        for k in range(len(fractions)):
            chosen = set(uniq[bounds[k] : bounds[k + 1]].tolist())
            parts[k + 1] = [i for i, g in enumerate(groups) if g in chosen]
        taken = set(i for p in parts[1:] for i in p)
        parts[0] = [i for i in range(len(labels)) if i not in taken]
    else:
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            rng.shuffle(idx)
            start = 0
            for k, f in enumerate(fractions):
                take = int(round(f * len(idx)))
                if take == 0 and f > 0 and len(idx) > len(fractions):
                    take = 1
                parts[k + 1] += idx[start : start + take].tolist()
                start += take
            parts[0] += idx[start:].tolist()
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


@dataclass
class Splits:
    train: FaceData
    val: FaceData
    test: FaceData | None
    sha256: str
    classes: tuple[str, ...] = CLASSES
    # What evaluation calls each part: the data's own split names where it has them (FER2013 Usage),
    # train / val / test where load_splits drew them.
    names: tuple[str, str, str] = ("train", "val", "test")

    def named(self) -> dict[str, FaceData]:
        parts = zip(self.names, (self.train, self.val, self.test))
        return {name: part for name, part in parts if part is not None}


def pick_split(splits: dict[str, FaceData], name: str) -> FaceData:
    """One split by name; asking for one the data does not have names those it has."""
    if name not in splits:
        raise DataError(f"no split {name!r} in this data; it has: {', '.join(splits) or 'none'}")
    return splits[name]


def _by_usage(data: FaceData, name: str) -> FaceData:
    mask = data.split == name
    if not mask.any():
        raise DataError(f"no rows with Usage {name!r}; found {sorted(set(data.split.tolist()))}")
    return data.subset(mask)


def load_splits(cfg, cache_dir: str | Path | None = None) -> Splits:
    """The train/val/test splits a recipe's `data` section describes."""
    data = load_any(cfg, cache_dir)
    if cfg.format == "fer2013_csv" and data.split is not None:
        splits = Splits(_by_usage(data, cfg.train_split), _by_usage(data, cfg.val_split),
                        _by_usage(data, cfg.test_split) if cfg.test_split else None, data.sha256,
                        names=(cfg.train_split, cfg.val_split, cfg.test_split))
    else:  # also a FER2013 file without Usage: its held-out parts are drawn as for every other layout
        splits = _split(data, cfg)
    if cfg.limit:
        splits.train = splits.train.subset(np.arange(min(cfg.limit, len(splits.train))))
    return splits


def named_splits(cfg, cache_dir: str | Path | None = None) -> dict[str, FaceData]:
    """Every split of a dataset by name, for evaluation: a FER2013 file's Usage values where it has
    them, otherwise the parts load_splits draws for training (same fractions and seed, so the test
    split is the one training held out)."""
    if cfg.format == "fer2013_csv":
        data = load_fer2013_cached(cfg.path, cache_dir)
        if data.split is not None:
            return {name: data.subset(data.split == name) for name in dict.fromkeys(data.split.tolist())}
    return load_splits(cfg, cache_dir).named()


def load_any(cfg, cache_dir: str | Path | None = None) -> FaceData:
    """The whole dataset a recipe's `data` section names (before splitting)."""
    fmt = cfg.format
    if fmt in ("fer2013_csv", "task_csv"):
        return load_fer2013_cached(cfg.path, cache_dir) if fmt == "fer2013_csv" else load_fer2013_csv(cfg.path)
    if fmt in ("fer2013_folders", "ckplus"):
        return load_class_folders(cfg.path, keep_contempt=cfg.keep_contempt)
    if fmt == "ferplus":
        return load_ferplus(cfg.path, cfg.extra_path, keep_contempt=cfg.keep_contempt, cache_dir=cache_dir)
    if fmt == "jaffe":
        return load_jaffe(cfg.path)
    if fmt == "jaffe_csv":
        return load_image_label_csv(cfg.path, cfg.extra_path or None)
    if fmt == "affectnet":
        return load_affectnet_csv(cfg.path, cfg.extra_path, keep_contempt=cfg.keep_contempt)
    raise DataError(f"unknown data format {fmt!r}; choose one of {DATA_FORMATS}")


DATA_FORMATS = ("fer2013_csv", "task_csv", "fer2013_folders", "ckplus", "ferplus", "jaffe", "jaffe_csv", "affectnet")


def _split(data: FaceData, cfg) -> Splits:
    present = set(data.split.tolist()) if data.split is not None else set()
    if cfg.train_split in present and cfg.val_split in present:
        # Given splits (FER+ Usage, FER2013 folder dumps with train/ and test/ etc.).
        test = data.subset(data.split == cfg.test_split) if cfg.test_split in present else None
        return Splits(data.subset(data.split == cfg.train_split), data.subset(data.split == cfg.val_split),
                      test, data.sha256, data.classes, (cfg.train_split, cfg.val_split, cfg.test_split))
    if cfg.train_split in present:
        # Only a train split given (e.g. train/ and test/ folders): validation comes out of train.
        pool = data.subset(data.split == cfg.train_split)
        held = sorted(present - {cfg.train_split})
        held_name = cfg.test_split if cfg.test_split in held else (held[0] if held else "test")
        test = data.subset(data.split == held_name) if held else None
        rest, val = stratified_split(pool.labels, [cfg.val_fraction], groups=pool.subjects)
        return Splits(pool.subset(rest), pool.subset(val), test, data.sha256, data.classes,
                      (cfg.train_split, "val", held_name))
    rest, val, test = stratified_split(data.labels, [cfg.val_fraction, cfg.test_fraction], groups=data.subjects)
    return Splits(data.subset(rest), data.subset(val), data.subset(test) if len(test) else None,
                  data.sha256, data.classes)
