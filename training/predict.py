"""From uint8 faces to the model's input (`normalise_batch`, shared with augmentation) and batched forward
passes over them, with optional test-time augmentation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ferkit.vision import InputSpec

TTA_MODES = ("none", "flip", "tencrop")


def normalise_batch(images: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """uint8 or 0-255 float (B, H, W) / (B, 1, H, W) -> float32 (B, C, H, W); same maths as
    ferkit.vision.normalise, which inference uses."""
    x = images.float()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    x = x * spec.scale
    if spec.channels != x.shape[1]:
        x = x.expand(-1, spec.channels, -1, -1)
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


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


def flip_averaged_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The mean of the logits of each face and its mirror image: what an exported model with
    `tta: flip` computes inside model.pt, so evaluation and serving agree exactly."""
    return (model(x) + model(torch.flip(x, dims=[3]))) / 2


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
    """uint8 (N, H, W) -> (N, C) logits (flip: mean logits of face and mirror; tencrop: mean softmax
    probabilities of the ten views, returned as log-probs)."""
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
        if tta == "flip":
            out.append(flip_averaged_logits(model, x).float().cpu())
            continue
        views = _tencrop_views(x, crop=int(round(x.shape[-1] * 0.9)))
        probs = torch.stack([F.softmax(model(v).float(), dim=1) for v in views]).mean(0)
        out.append(torch.log(probs.clamp_min(1e-12)).cpu())
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out)


@torch.no_grad()
def predict_landmarks(model: torch.nn.Module, images: torch.Tensor, spec: InputSpec, batch_size: int = 512,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W) -> (N, K, 2) landmarks in [-1, 1] from a model with a landmark head (LandmarkNet)."""
    model.eval()
    out = [model.forward_with_landmarks(normalise_batch(images[s : s + batch_size].to(device), spec))[1].float().cpu()
           for s in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, model.num_landmarks, 2)
