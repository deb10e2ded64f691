"""FER datasets, each loaded once into one uint8 array (N, 48, 48) with int64 labels.

Every loader validates what it reads (pixel count, label range, columns) with errors that name the
file and row, and reports unreadable image files (they are skipped, never a crash).

faces.py: the FaceData type and shared checks; fer2013.py: FER2013 CSVs and FER+;
image_files.py: class folders, JAFFE, AffectNet; formats.py: `data.format` -> loader;
splits.py: train / validation / test.
"""

from training.data.faces import (
    CLASSES_WITH_CONTEMPT, LANDMARK_SCHEMES, DataError, FaceData, LandmarkScheme, file_sha256, landmark_scheme,
)
from training.data.fer2013 import (
    FERPLUS_EMOTIONS, PIXELS_PER_FACE, load_fer2013_cached, load_fer2013_csv, load_ferplus, parse_pixels,
)
from training.data.formats import DATA_FORMATS, FORMATS, load_any
from training.data.image_files import (
    IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, load_affectnet_csv, load_class_folders, load_face_image, load_image_label_csv,
    load_jaffe, tree_sha256,
)
from training.data.splits import Splits, load_splits, named_splits, pick_split, stratified_split

__all__ = [
    "CLASSES_WITH_CONTEMPT", "DATA_FORMATS", "FERPLUS_EMOTIONS", "FORMATS", "IMAGE_SUFFIXES", "LANDMARK_SCHEMES",
    "MAX_IMAGE_PIXELS", "PIXELS_PER_FACE", "DataError", "FaceData", "LandmarkScheme", "Splits", "file_sha256",
    "landmark_scheme", "load_affectnet_csv", "load_any", "load_class_folders", "load_face_image",
    "load_fer2013_cached", "load_fer2013_csv", "load_ferplus", "load_image_label_csv", "load_jaffe", "load_splits",
    "named_splits", "parse_pixels", "pick_split", "stratified_split", "tree_sha256",
]
