"""MODEL_CARD.md of a model version (Mitchell et al., 2019): what it is for, what it was trained and
measured on, per-class figures and calibration, and where it fails. Written by `export` from the
version's metadata, so every version has one and its figures are the measured ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ferkit.vision import ModelMetadata
from training.evaluate import FER_LIBRARY_ACCURACY, TARGET_ACCURACY

LIMITS = (
    "Input is a 48x48 grey face: colour is discarded and small or distant faces are upscaled, so fine "
    "detail (and anything the face detector misses) is lost.",
    "FER2013 was collected from web image searches: mostly adults, light-skinned faces over-represented, "
    "few children and elderly people; accuracy on under-represented groups is not measured here.",
    "FER2013 mixes posed and spontaneous expressions with noisy labels (human accuracy is about 65%). "
    "Posed lab photos (JAFFE-like) and subtle everyday expressions both differ from it.",
    "Disgust is 1.5% of the training data; its recall is the least reliable figure below.",
    "An expression is not an emotion: the model reads facial muscle configuration, not what a person feels.",
)
INTENDED_USE = (
    "Research, teaching, demos and aggregate analysis of facial expressions in photos and videos whose "
    "subjects agreed to it, with a person reviewing results. Not for decisions about individuals "
    "(hiring, policing, credit, health, education grading), nor for inferring emotions or intent."
)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def model_card(meta: ModelMetadata, single_pass: str = "PrivateTest", served: str | None = None) -> str:
    """Markdown card. `single_pass` and `served` name entries of meta.metrics (evaluate's labels)."""
    metrics: dict[str, Any] = meta.metrics
    cfg = meta.training_config
    data = cfg.get("data", {})
    fer2013 = data.get("format", "fer2013_csv") in ("fer2013_csv", "ferplus")
    if single_pass not in metrics:  # a dataset without PrivateTest: its held-out split (evaluate's "test")
        single_pass = next((label for label, m in metrics.items() if isinstance(m, dict) and "accuracy" in m), single_pass)
    served = served or (f"{single_pass} + flip TTA" if meta.tta == "flip" else single_pass)
    lines = [f"# Model card: {meta.name} version {meta.version}", "",
             f"- architecture: {meta.architecture}, input {meta.input.size[0]}x{meta.input.size[1]} grey, "
             f"{len(meta.classes)} classes ({', '.join(meta.classes)})",
             f"- served as: model.pt (TorchScript{f', written by torch {meta.torch_version}' if meta.torch_version else ''}), test-time augmentation built in: {meta.tta}; scores are "
             f"softmax(logits / {meta.temperature:.3f}); top score below {meta.uncertain_below:g} is flagged uncertain",
             f"- trained: {meta.extra.get('epochs_trained', '?')} epochs, checkpoint chosen on "
             f"{data.get('val_split', 'the validation split')} at epoch {meta.extra.get('best_epoch', '?')}; "
             f"git {meta.git_revision}; data sha256 {meta.data_sha256[:16]}",
             "", "## Intended use", "", INTENDED_USE,
             "", "## Data", "",
             (f"Trained on FER2013's {data.get('train_split', 'Training')} rows (28,709 48x48 grey faces, "
              "seven classes). Checkpoints and the score temperature were chosen on PublicTest only; the figures "
              "below are on PrivateTest, never trained on or selected on." if fer2013 else
              f"Trained on the training part of {Path(str(data.get('path', 'its dataset'))).name} "
              f"({data.get('format')}). Checkpoints were chosen on the validation part; the figures below are on "
              f"the held-out {single_pass} part, never trained on or selected on."),
             "", "## Results", "", "| measured on | accuracy | macro-F1 |", "|---|---:|---:|"]
    for label, m in metrics.items():
        if isinstance(m, dict) and "accuracy" in m:
            tag = " (served)" if label == served else (" (single pass)" if label == single_pass else "")
            lines.append(f"| {label}{tag} | {_pct(m['accuracy'])} | {_pct(m.get('macro_f1'))} |")
    if served in metrics:
        acc = 100 * metrics[served]["accuracy"]
        lines += ["", f"Served accuracy {acc:.1f}% against the `fer` library's {FER_LIBRARY_ACCURACY}% (mini-Xception, "
                  f"measured on the same split) and the project's {TARGET_ACCURACY}% target: "
                  f"{acc - FER_LIBRARY_ACCURACY:+.1f} and {acc - TARGET_ACCURACY:+.1f} points."]
    shown = metrics.get(served) or metrics.get(single_pass)
    if shown and "per_class" in shown:
        lines += ["", f"### Per class ({served if served in metrics else single_pass})", "",
                  "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for c, pc in shown["per_class"].items():
            lines.append(f"| {c} | {_pct(pc['precision'])} | {_pct(pc['recall'])} | {_pct(pc['f1'])} | {pc['support']} |")
    cal = metrics.get("calibration")
    if cal:
        # export_version takes any calibration dict: only the temperature and threshold are certain to be in it.
        text = (f"Temperature {cal.get('temperature', meta.temperature):.3f}, fitted on "
                f"{cal.get('fitted_on', 'the validation split')}.")
        if "ece_before" in cal and "ece_after" in cal:
            text += (f" Expected calibration error on {cal.get('reported_on', 'the test split')}: "
                     f"{_pct(cal['ece_before'])} before, {_pct(cal['ece_after'])} after.")
        if "uncertain_share" in cal:
            text += (f" {_pct(cal['uncertain_share'])} of faces fall below "
                     f"{cal.get('uncertain_below', meta.uncertain_below):g} and are flagged uncertain; they are right "
                     f"{_pct(cal.get('uncertain_accuracy'))} of the time, the others {_pct(cal.get('confident_accuracy'))}.")
        lines += ["", "## Calibration", "", text]
    lines += ["", "## Limits", ""] + [f"- {item}" for item in LIMITS]
    return "\n".join(lines) + "\n"
