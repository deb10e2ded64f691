"""Export a checkpoint as a new version of a Triton model repository."""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from ferkit import modelrepo
from ferkit.vision import CLASSES, InputSpec, ModelMetadata
from training.config import config_from_dict
from training.model_card import model_card
from training.models import build_model
from training.predict import flip_averaged_logits
from training.utils import HISTORY_CSV, read_checkpoint, read_history

log = logging.getLogger(__name__)

EQUIVALENCE_TOLERANCE = 1e-5
SERVED_TTA = ("none", "flip")
MODEL_CARD_FILENAME = "MODEL_CARD.md"


class ExportError(RuntimeError):
    pass


class FlipAveraged(torch.nn.Module):
    """Flip averaging inside model.pt: Triton, `evaluate` and any outside script that reads
    metadata.json get the same answer from one forward call."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return flip_averaged_logits(self.model, x)


def served_model(model: torch.nn.Module, tta: str) -> torch.nn.Module:
    if tta not in SERVED_TTA:
        raise ExportError(f"test-time augmentation {tta!r} cannot be built into model.pt; choose one of {SERVED_TTA}")
    return FlipAveraged(model).eval() if tta == "flip" else model


def load_checkpoint(path: str | Path, weights: str = "selected") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model a training checkpoint describes and load its weights (`selected`: the
    weights validation chose, i.e. the EMA when one was kept; `model`: the raw weights)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    ck = read_checkpoint(path)
    for key in ("config", "classes", "input", weights):
        if key not in ck:
            raise ExportError(f"{path}: not a training checkpoint (no {key!r})")
    cfg = config_from_dict(ck["config"])
    model = build_model(cfg.model.arch, len(ck["classes"]), cfg.model.stem, cfg.model.dropout, cfg.model.landmarks)
    state = ck[weights]
    # An EMA state dict (AveragedModel.module) has the same keys as the model's.
    model.load_state_dict(state)
    model.eval()
    return model, ck


def to_torchscript(model: torch.nn.Module, spec: InputSpec, check_batch: int = 5) -> torch.jit.ScriptModule:
    """Trace to TorchScript and check it against the eager model (max |difference| <= 1e-5) on a
    batch size other than the one traced, so the dynamic batch dimension is exercised."""
    model = model.eval().cpu()
    h, w = spec.size
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(2, spec.channels, h, w, generator=gen)
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is what Triton's libtorch backend loads; its deprecation notice is not actionable here.
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.trace(model, example, check_trace=False)
        check = torch.randn(check_batch, spec.channels, h, w, generator=gen)
        diff = float((scripted(check) - model(check)).abs().max())
    if not diff <= EQUIVALENCE_TOLERANCE:
        raise ExportError(f"TorchScript output differs from the eager model by {diff:.2e} "
                          f"(tolerance {EQUIVALENCE_TOLERANCE:.0e})")
    log.info("TorchScript matches eager within %.1e (max diff %.2e)", EQUIVALENCE_TOLERANCE, diff)
    return scripted


def epochs_trained(checkpoint: str | Path, ck: dict[str, Any]) -> int | None:
    """How many epochs the run behind `checkpoint` ran: the last epoch of the history.csv beside it
    (best.pt is saved at the best epoch, which is usually not the last), else the checkpoint's own."""
    rows = read_history(Path(checkpoint).parent / HISTORY_CSV)
    return int(max(r["epoch"] for r in rows)) if rows else ck.get("epoch")


def export_version(
    checkpoint: str | Path,
    repo_root: str | Path = "models",
    name: str | None = None,
    metrics: dict[str, Any] | None = None,
    attachments: list[str | Path] | None = None,
    version: int | None = None,
    extra: dict[str, Any] | None = None,
    tta: str = "none",
    calibration: dict[str, Any] | None = None,
) -> Path:
    """Write models/<name>/<version>/ (model.pt, metadata.json, model.py, attachments such as the
    confusion matrix and the report) and refresh the model's config files. Returns the version dir.
    `tta="flip"` builds flip averaging into model.pt; `calibration` (from training.calibrate's
    calibration_report) sets the served temperature and uncertainty threshold."""
    model, ck = load_checkpoint(checkpoint)
    model = served_model(model, tta)
    calibration = calibration or {}
    spec = InputSpec.from_dict(ck["input"])
    cfg = ck["config"]
    name = name or cfg.get("name") or "fer_model"
    classes = tuple(ck["classes"])
    if classes[: len(CLASSES)] != CLASSES:
        raise ExportError(f"checkpoint classes {classes} are not in the FER2013 order {CLASSES}")
    scripted = to_torchscript(model, spec)

    def fill(tmp: Path, number: int) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(scripted, str(tmp / modelrepo.MODEL_FILENAME))
        meta = ModelMetadata(
            name=name,
            version=number,
            architecture=ck.get("architecture", cfg["model"]["arch"]),
            classes=classes,
            input=spec,
            metrics={**(metrics or {}), **({"calibration": calibration} if calibration else {})},
            data_sha256=ck.get("data_sha256", ""),
            training_config=cfg,
            git_revision=ck.get("git_revision", "unknown"),
            torch_version=torch.__version__.split("+")[0],
            input_name=modelrepo.INPUT_NAME,
            output_name=modelrepo.OUTPUT_NAME,
            tta=tta,
            temperature=calibration.get("temperature", 1.0),
            uncertain_below=calibration.get("uncertain_below", 0.0),
            extra={"best_epoch": ck.get("best_epoch"), "epochs_trained": epochs_trained(checkpoint, ck),
                   "validation_accuracy": ck.get("best_acc"), **(extra or {})},
        )
        meta.save(tmp / modelrepo.METADATA_FILENAME)
        (tmp / MODEL_CARD_FILENAME).write_text(model_card(meta), encoding="utf-8")
        for item in attachments or []:
            item = Path(item)
            if not item.is_file():
                raise FileNotFoundError(f"attachment {item} does not exist")
            shutil.copyfile(item, tmp / item.name)

    path = modelrepo.write_version(repo_root, name, fill, version=version)
    modelrepo.write_model_configs(Path(repo_root) / name, name, (spec.channels, *spec.size), len(classes))
    log.info("exported %s version %s to %s", name, path.name, path)
    return path
