"""What a training run tells whoever follows it (the inference service's job records), both ends:

- `progress.json` in the run directory, rewritten atomically after every epoch: the epoch reached, the
  planned total, the last train loss and validation accuracy, and the history of both (the curve);
- the same figures as one `progress: {...}` log line per epoch, for a reader that sees only the log
  (a Kubernetes pod's scratch volume is its own; its log is not);
- one `error: <cause>` line when a command fails for a known reason (bad data, a bad recipe).

Standard library and ferkit only: the inference service reads these without torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ferkit.files import write_atomic

PROGRESS_FILENAME = "progress.json"
PROGRESS_PREFIX = "progress: "
ERROR_PREFIX = "error: "
# A cause longer than this is cut: it is a status line, not a log.
ERROR_MAX_CHARS = 500


def progress_of(history: list[dict[str, float]], epochs: int) -> dict[str, Any]:
    """The progress after the epochs in `history` (rows with epoch, train_loss, val_acc as
    history.csv holds them) of a run planned for `epochs`."""
    curve = [{"epoch": int(r["epoch"]), "train_loss": float(r["train_loss"]), "val_accuracy": float(r["val_acc"])}
             for r in history]
    last = curve[-1] if curve else {}
    return {"epoch": last.get("epoch", 0), "epochs": int(epochs), "train_loss": last.get("train_loss"),
            "val_accuracy": last.get("val_accuracy"), "history": curve}


def write_progress(run_dir: str | Path, progress: dict[str, Any]) -> None:
    write_atomic(Path(run_dir) / PROGRESS_FILENAME, json.dumps(progress))


def progress_line(progress: dict[str, Any]) -> str:
    """The log line of one epoch (the history is the sequence of these lines)."""
    return PROGRESS_PREFIX + json.dumps({k: progress[k] for k in ("epoch", "epochs", "train_loss", "val_accuracy")})


def read_progress(run_dir: str | Path) -> dict[str, Any] | None:
    """What progress.json says, or None before the first write (or if it cannot be read)."""
    try:
        progress = json.loads((Path(run_dir) / PROGRESS_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return progress if isinstance(progress, dict) else None


def progress_from_log(text: str) -> dict[str, Any] | None:
    """The progress the `progress:` lines of a log describe (the last line's figures, every line's
    epoch as the history), or None when it has none yet."""
    by_epoch: dict[int, dict[str, Any]] = {}
    last: dict[str, Any] | None = None
    for line in text.splitlines():
        at = line.find(PROGRESS_PREFIX + "{")
        if at < 0:
            continue
        try:
            entry = json.loads(line[at + len(PROGRESS_PREFIX):])
            epoch = int(entry["epoch"])
        except (ValueError, KeyError, TypeError):
            continue
        last = entry
        if entry.get("train_loss") is not None:
            by_epoch[epoch] = {"epoch": epoch, "train_loss": entry["train_loss"], "val_accuracy": entry.get("val_accuracy")}
    if last is None:
        return None
    return {"epoch": int(last["epoch"]), "epochs": int(last.get("epochs") or 0), "train_loss": last.get("train_loss"),
            "val_accuracy": last.get("val_accuracy"), "history": [by_epoch[e] for e in sorted(by_epoch)]}


def error_line(cause: object) -> str:
    """The one line a command prints when it fails for a known reason."""
    return ERROR_PREFIX + " ".join(str(cause).split())[:ERROR_MAX_CHARS]


def last_error(text: str) -> str:
    """The cause in the last `error:` line of a log, or "" when there is none."""
    for line in reversed(text.splitlines()):
        if line.startswith(ERROR_PREFIX):
            return line[len(ERROR_PREFIX):].strip()[:ERROR_MAX_CHARS]
    return ""
