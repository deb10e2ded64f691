"""Synthetic FER-like data: 48x48 grey faces whose class is a bright horizontal band at a
class-specific height (flip-invariant, so augmentation keeps it learnable), over noise."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.config import TrainConfig, config_from_dict

NUM_CLASSES = 7


def synth_faces(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % NUM_CLASSES
    rng.shuffle(labels)
    images = rng.integers(0, 90, size=(n, 48, 48)).astype(np.int64)
    for i, c in enumerate(labels):
        top = 3 + 6 * c + int(rng.integers(-1, 2))
        images[i, max(top, 0) : top + 5, 4:44] += 150
    return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64)


def write_fer_csv(path: Path, images: np.ndarray, labels: np.ndarray | None, usage: list[str] | None,
                  gz: bool = False, ids: list | None = None) -> Path:
    """FER2013 layout; `ids` adds a leading `id` column (a task test.csv)."""
    header = (["id"] if ids else []) + (["emotion"] if labels is not None else []) + ["pixels"] + (["Usage"] if usage else [])
    opener = (lambda: gzip.open(path, "wt", newline="")) if gz else (lambda: open(path, "w", newline=""))
    with opener() as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i, img in enumerate(images):
            row = ([ids[i]] if ids else []) + ([int(labels[i])] if labels is not None else [])
            w.writerow(row + [" ".join(map(str, img.ravel()))] + ([usage[i]] if usage else []))
    return path


@pytest.fixture(scope="session")
def fer_csv(tmp_path_factory) -> Path:
    """FER2013-layout gzip CSV: 280 Training, 70 PublicTest, 70 PrivateTest rows."""
    images, labels = synth_faces(420, seed=1)
    usage = ["Training"] * 280 + ["PublicTest"] * 70 + ["PrivateTest"] * 70
    return write_fer_csv(tmp_path_factory.mktemp("fer") / "fer2013.csv.gz", images, labels, usage, gz=True)


def small_config(fer_csv: Path, out: Path, **overrides) -> TrainConfig:
    data = {
        "name": "synthetic",
        "data": {"format": "fer2013_csv", "path": str(fer_csv)},
        "model": {"arch": "resnet18", "stem": "standard"},
        "optim": {"lr": 0.05, "warmup_epochs": 0.5},
        "epochs": 4,
        "batch_size": 32,
        "eval_batch_size": 128,
        "num_threads": 2,
        "out_dir": str(out),
        "seed": 0,
    }
    for key, value in overrides.items():
        node = data
        parts = key.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return config_from_dict(data)


@pytest.fixture(scope="session")
def trained(fer_csv, tmp_path_factory) -> tuple[Path, dict]:
    """One short training run shared by the export/evaluation tests: (run dir, fit result)."""
    from training.engine import train

    out = tmp_path_factory.mktemp("run")
    result = train(small_config(fer_csv, out), progress=False)
    return out, result


def save_png(path: Path, array: np.ndarray, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).convert(mode).save(path)
    return path
