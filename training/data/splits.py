"""Train / validation / test splits: the data's own (FER2013 Usage, split folders) where it has
them, otherwise stratified draws (subject-wise where subjects are known)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ferkit.vision import CLASSES
from training.config import DataConfig
from training.data.faces import DataError, FaceData
from training.data.formats import load_any


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


def load_splits(cfg: DataConfig, cache_dir: str | Path | None = None) -> Splits:
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


def named_splits(cfg: DataConfig, cache_dir: str | Path | None = None) -> dict[str, FaceData]:
    """Every split of a dataset by name, for evaluation: a FER2013 file's Usage values where it has
    them, otherwise the parts load_splits draws for training (same fractions and seed, so the test
    split is the one training held out)."""
    if cfg.format == "fer2013_csv":
        data = load_any(cfg, cache_dir)
        if data.split is not None:
            return {name: data.subset(data.split == name) for name in dict.fromkeys(data.split.tolist())}
    return load_splits(cfg, cache_dir).named()


def _split(data: FaceData, cfg: DataConfig) -> Splits:
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
