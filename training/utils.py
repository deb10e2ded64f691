"""Helpers the training loop uses but does not define: device and precision detection, seeding,
distributed set-up, class weights, checkpoint files and the per-epoch history."""

from __future__ import annotations

import csv
import os
import random
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

from ferkit.files import atomic_path

HISTORY_CSV = "history.csv"  # per epoch, in the run directory


def git_revision(root: str | Path | None = None) -> str:
    root = Path(root or Path(__file__).resolve().parents[1])
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def cpu_has_bf16() -> bool:
    """Native bf16 matmuls on this CPU (AVX-512 BF16 or AMX): autocast to bf16 then pays."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this trainer created the process group, so it tears it down

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """torchrun sets WORLD_SIZE/RANK; gloo works on the CPU (also with one process)."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return DistInfo()
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), owns)


def parse_deadline(text: str) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"deadline {text!r} is not an ISO-8601 time such as 2026-01-31T18:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def class_weights(counts: np.ndarray) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (Disgust is 1.5% of FER2013)."""
    counts = np.maximum(counts.astype(np.float64), 1.0)
    w = counts.sum() / (len(counts) * counts)
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    """Written whole or not at all: a run stopped mid-save still resumes from the previous one."""
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def read_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    # Our own files, and they hold more than tensors (the recipe, RNG states), so not weights_only.
    return torch.load(path, map_location=device, weights_only=False)


def append_history(path: Path, row: dict[str, float], fields: Sequence[str]) -> None:
    """One epoch's row of history.csv (the header comes with the first)."""
    new_file = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        if new_file:
            w.writeheader()
        w.writerow({k: row[k] for k in fields})


def read_history(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def plot_history(rows: list[dict[str, float]], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [r["train_loss"] for r in rows], label="train")
    a1.plot(ep, [r["val_loss"] for r in rows], label="validation")
    a1.set_xlabel("epoch"), a1.set_ylabel("loss"), a1.legend(), a1.grid(alpha=0.3)
    a2.plot(ep, [100 * r["train_acc"] for r in rows], label="train (augmented)")
    a2.plot(ep, [100 * r["val_acc"] for r in rows], label="validation")
    a2.set_xlabel("epoch"), a2.set_ylabel("accuracy %"), a2.legend(), a2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
