"""Which loader reads each `data.format` a recipe may name."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from training.config import DataConfig
from training.data.faces import DataError, FaceData
from training.data.fer2013 import load_fer2013_cached, load_fer2013_csv, load_ferplus
from training.data.image_files import load_affectnet_csv, load_class_folders, load_image_label_csv, load_jaffe

Loader = Callable[[DataConfig, str | Path | None], FaceData]


def _class_folders(cfg: DataConfig, cache_dir: str | Path | None) -> FaceData:
    return load_class_folders(cfg.path, keep_contempt=cfg.keep_contempt)


FORMATS: dict[str, Loader] = {
    "fer2013_csv": lambda cfg, cache_dir: load_fer2013_cached(cfg.path, cache_dir),
    "task_csv": lambda cfg, cache_dir: load_fer2013_csv(cfg.path),
    "fer2013_folders": _class_folders,
    "ckplus": _class_folders,
    "ferplus": lambda cfg, cache_dir: load_ferplus(cfg.path, cfg.extra_path, keep_contempt=cfg.keep_contempt,
                                                   cache_dir=cache_dir),
    "jaffe": lambda cfg, cache_dir: load_jaffe(cfg.path),
    "jaffe_csv": lambda cfg, cache_dir: load_image_label_csv(cfg.path, cfg.extra_path or None),
    "affectnet": lambda cfg, cache_dir: load_affectnet_csv(cfg.path, cfg.extra_path, keep_contempt=cfg.keep_contempt),
}
DATA_FORMATS = tuple(FORMATS)


def load_any(cfg: DataConfig, cache_dir: str | Path | None = None) -> FaceData:
    """The whole dataset a recipe's `data` section names (before splitting)."""
    loader = FORMATS.get(cfg.format)
    if loader is None:
        raise DataError(f"unknown data format {cfg.format!r}; choose one of {DATA_FORMATS}")
    return loader(cfg, cache_dir)
