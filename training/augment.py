"""Augmentation applied to a whole batch at once, on the device the model runs on.

The dataset stays one uint8 tensor; a batch is indexed out of it and every geometric change
(random resized crop, flip, rotation, shear) is folded into one affine matrix per image and applied
with a single grid_sample, so the input pipeline costs a few per cent of a training step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ferkit.vision import InputSpec
from training.config import AugmentConfig
from training.predict import normalise_batch


class BatchAugment:
    """uint8 (B, H, W) -> augmented, normalised float32 (B, C, H, W)."""

    def __init__(self, cfg: AugmentConfig, spec: InputSpec, generator: torch.Generator | None = None):
        self.cfg = cfg
        self.spec = spec
        self.gen = generator

    def _uniform(self, n: int, lo: float, hi: float, device: torch.device) -> torch.Tensor:
        return torch.rand(n, generator=self.gen).to(device) * (hi - lo) + lo

    def affine(self, n: int, device: torch.device) -> torch.Tensor:
        """(n, 2, 3) matrices mapping output to input coordinates (affine_grid convention)."""
        c = self.cfg
        area = self._uniform(n, c.crop_scale[0], c.crop_scale[1], device)
        log_r = self._uniform(n, math.log(c.crop_ratio[0]), math.log(c.crop_ratio[1]), device)
        ratio = torch.exp(log_r)
        sx = torch.sqrt(area * ratio)
        sy = torch.sqrt(area / ratio)
        # The crop window may sit anywhere it fits inside the image.
        tx = (torch.rand(n, generator=self.gen).to(device) * 2 - 1) * (1 - sx).clamp(min=0)
        ty = (torch.rand(n, generator=self.gen).to(device) * 2 - 1) * (1 - sy).clamp(min=0)
        angle = self._uniform(n, -c.rotate_deg, c.rotate_deg, device) * (math.pi / 180)
        shear = self._uniform(n, -c.shear_deg, c.shear_deg, device) * (math.pi / 180)
        flip = torch.ones(n, device=device)
        if c.flip:
            flip = torch.where(torch.rand(n, generator=self.gen).to(device) < 0.5, -flip, flip)
        cos, sin, tan_sh = torch.cos(angle), torch.sin(angle), torch.tan(shear)
        # M = R(angle) @ Shear @ diag(sx * flip, sy)
        a = cos * sx * flip
        b = (cos * tan_sh - sin) * sy
        d = sin * sx * flip
        e = (sin * tan_sh + cos) * sy
        theta = torch.stack([torch.stack([a, b, tx], 1), torch.stack([d, e, ty], 1)], 1)
        return theta

    def __call__(self, images: torch.Tensor, landmarks: torch.Tensor | None = None,
                 flip_perm: torch.Tensor | None = None):
        """With landmarks ((B, K, 2) x, y in [-1, 1]) returns (images, landmarks), the points moved by the
        same crop, flip and rotation; `flip_perm` (the scheme's LandmarkScheme.flip) relabels left and
        right points of mirrored faces."""
        c = self.cfg
        x = images.float()
        if x.dim() == 3:
            x = x.unsqueeze(1)
        n, _, h, w = x.shape
        dev = x.device
        theta = self.affine(n, dev)
        grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if landmarks is not None:
            landmarks = move_landmarks(theta, landmarks, flip_perm)
        if c.brightness > 0 or c.contrast > 0:
            bright = self._uniform(n, -c.brightness, c.brightness, dev).view(n, 1, 1, 1) * 255.0
            contrast = self._uniform(n, 1 - c.contrast, 1 + c.contrast, dev).view(n, 1, 1, 1)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mean) * contrast + mean + bright).clamp(0, 255)
        x = normalise_batch(x, self.spec)
        if c.erasing_p > 0:
            x = self.erase(x)
        return x if landmarks is None else (x, landmarks)

    def erase(self, x: torch.Tensor) -> torch.Tensor:
        """Random erasing: a rectangle per chosen image set to 0 (the normalised mean grey)."""
        c = self.cfg
        n, _, h, w = x.shape
        dev = x.device
        chosen = (torch.rand(n, generator=self.gen) < c.erasing_p).to(dev)
        area = self._uniform(n, c.erasing_scale[0], c.erasing_scale[1], dev) * h * w
        ratio = torch.exp(self._uniform(n, math.log(0.3), math.log(3.3), dev))
        eh = torch.sqrt(area * ratio).clamp(1, h).floor()
        ew = torch.sqrt(area / ratio).clamp(1, w).floor()
        y0 = (torch.rand(n, generator=self.gen).to(dev) * (h - eh + 1)).floor()
        x0 = (torch.rand(n, generator=self.gen).to(dev) * (w - ew + 1)).floor()
        ys = torch.arange(h, device=dev).view(1, h, 1)
        xs = torch.arange(w, device=dev).view(1, 1, w)
        box = (
            (ys >= y0.view(n, 1, 1)) & (ys < (y0 + eh).view(n, 1, 1))
            & (xs >= x0.view(n, 1, 1)) & (xs < (x0 + ew).view(n, 1, 1))
        )
        mask = (box & chosen.view(n, 1, 1)).unsqueeze(1)
        return x.masked_fill(mask, 0.0)


def move_landmarks(theta: torch.Tensor, points: torch.Tensor, flip_perm: torch.Tensor | None) -> torch.Tensor:
    """(B, K, 2) points in [-1, 1] input coordinates -> where they land in the warped output."""
    a, t = theta[:, :, :2], theta[:, :, 2]
    # theta maps output to input coordinates, so the points move by its inverse.
    out = (points.float() - t.unsqueeze(1)) @ torch.linalg.inv(a).transpose(1, 2)
    mirrored = torch.linalg.det(a) < 0  # rotation and shear keep the sign; only the flip turns it
    if mirrored.any():
        if flip_perm is None:
            raise ValueError("flipped faces need the landmark scheme's flip permutation")
        # The mirrored left eye sits where the right eye was: swap the labels back.
        out = torch.where(mirrored.view(-1, 1, 1), out[:, flip_perm.to(out.device)], out)
    # The landmark head ends in tanh; the AffectNet loader clips the targets into [-1, 1] alike.
    return out.clamp(-1.0, 1.0)


def mix_batch(
    x: torch.Tensor,
    targets: torch.Tensor,
    cfg: AugmentConfig,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix on a normalised batch with (B, C) soft targets; returns the batch unchanged
    when neither is enabled or the coin says no."""
    use_mixup, use_cutmix = cfg.mixup_alpha > 0, cfg.cutmix_alpha > 0
    if not (use_mixup or use_cutmix) or torch.rand(1, generator=generator).item() >= cfg.mix_p:
        return x, targets
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    if use_cutmix and (not use_mixup or torch.rand(1, generator=generator).item() < 0.5):
        lam = float(torch.distributions.Beta(cfg.cutmix_alpha, cfg.cutmix_alpha).sample())
        h, w = x.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy = int(torch.randint(h, (1,), generator=generator))
        cx = int(torch.randint(w, (1,), generator=generator))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / float(h * w)
    else:
        lam = float(torch.distributions.Beta(cfg.mixup_alpha, cfg.mixup_alpha).sample())
        x = lam * x + (1 - lam) * x[perm]
    return x, lam * targets + (1 - lam) * targets[perm]
