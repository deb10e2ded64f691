"""Batched forward passes over uint8 faces, with optional test-time augmentation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ferkit.vision import InputSpec
from training.augment import normalise_batch

TTA_MODES = ("none", "flip", "tencrop")


def _tencrop_views(x: torch.Tensor, crop: int) -> list[torch.Tensor]:
    """Ten-crop of a normalised batch: 4 corners + centre, and their mirrors, each resized back
    to the model's input size (the model was trained on full 48x48 faces)."""
    h, w = x.shape[-2:]
    tops = [0, 0, h - crop, h - crop, (h - crop) // 2]
    lefts = [0, w - crop, 0, w - crop, (w - crop) // 2]
    views = []
    for t, l in zip(tops, lefts):
        v = x[:, :, t : t + crop, l : l + crop]
        v = F.interpolate(v, size=(h, w), mode="bilinear", align_corners=False)
        views.append(v)
        views.append(torch.flip(v, dims=[3]))
    return views


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    images: torch.Tensor,
    spec: InputSpec,
    batch_size: int = 512,
    tta: str = "none",
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """uint8 (N, H, W) -> (N, C) logits (TTA averages softmax probabilities, returned as log-probs)."""
    if tta not in TTA_MODES:
        raise ValueError(f"unknown TTA mode {tta!r}; choose one of {TTA_MODES}")
    model.eval()
    out = []
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"predict (tta={tta})", unit="batch")
    for s in starts:
        x = normalise_batch(images[s : s + batch_size].to(device), spec)
        if tta == "none":
            out.append(model(x).float().cpu())
            continue
        views = [x, torch.flip(x, dims=[3])] if tta == "flip" else _tencrop_views(x, crop=int(round(x.shape[-1] * 0.9)))
        probs = torch.stack([F.softmax(model(v).float(), dim=1) for v in views]).mean(0)
        out.append(torch.log(probs.clamp_min(1e-12)).cpu())
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out)
