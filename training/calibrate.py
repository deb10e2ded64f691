"""Scores people can trust: temperature scaling (Guo et al., 2017) fitted on the validation split,
the expected calibration error before and after, and how the uncertainty threshold splits a test set."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ferkit.vision import softmax


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 that minimises the negative log-likelihood of softmax(logits / T); T does not
    change any prediction, only how confident it claims to be."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if len(z) == 0:
        raise ValueError("fitting a temperature needs at least one labelled example")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # optimise log T: T stays positive
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: over equal-width bins of top score, the sample-weighted |accuracy - mean confidence|."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if len(probs) == 0:
        return 0.0
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            ece += chosen.mean() * abs(correct[chosen].mean() - confidence[chosen].mean())
    return float(ece)


def calibration_report(val_logits: np.ndarray, val_labels: np.ndarray, test_logits: np.ndarray,
                       test_labels: np.ndarray, uncertain_below: float) -> dict[str, Any]:
    """Fit T on validation; report ECE on the test split before and after, and how the faces the
    threshold calls uncertain fare (their share and accuracy, against the confident ones)."""
    temperature = fit_temperature(val_logits, val_labels)
    before, after = softmax(test_logits), softmax(test_logits, temperature)
    test_labels = np.asarray(test_labels)
    correct = after.argmax(1) == test_labels
    unsure = after.max(1) < uncertain_below
    return {
        "temperature": temperature,
        "uncertain_below": float(uncertain_below),
        "ece_before": expected_calibration_error(before, test_labels),
        "ece_after": expected_calibration_error(after, test_labels),
        "uncertain_share": float(unsure.mean()),
        "uncertain_accuracy": float(correct[unsure].mean()) if unsure.any() else None,
        "confident_accuracy": float(correct[~unsure].mean()) if (~unsure).any() else None,
    }
