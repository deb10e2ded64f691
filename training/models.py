"""Model factory: torchvision architectures adapted to 1-channel 48x48 faces, trained from scratch
(no package ships ImageNet weights offline)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm

from training.config import RESNET_STEMS

ARCHITECTURES = ("resnet18", "efficientnet_b0", "mobilenet_v3_small", "mobilenet_v3_large", "googlenet")


def _grey_conv(conv: nn.Conv2d, **overrides) -> nn.Conv2d:
    kw = dict(
        in_channels=1,
        out_channels=conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )
    kw.update(overrides)
    return nn.Conv2d(**kw)


def _resnet18(num_classes: int, stem: str, dropout: float) -> nn.Module:
    if stem not in RESNET_STEMS:
        raise ValueError(f"unknown resnet18 stem {stem!r}; choose one of {RESNET_STEMS}")
    net = tvm.resnet18(weights=None, num_classes=num_classes)
    if stem == "standard":
        net.conv1 = _grey_conv(net.conv1)
    else:
        net.conv1 = nn.Conv2d(1, 64, kernel_size=3, stride=1, padding=1, bias=False)
        if stem == "s1":
            net.maxpool = nn.Identity()
    if dropout > 0:
        net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(net.fc.in_features, num_classes))
    # Zero-init the last BN of each residual branch: every block starts as identity (Goyal et al.).
    for m in net.modules():
        if isinstance(m, tvm.resnet.BasicBlock):
            nn.init.zeros_(m.bn2.weight)
    return net


def _efficientnet_b0(num_classes: int, dropout: float) -> nn.Module:
    net = tvm.efficientnet_b0(weights=None, num_classes=num_classes, dropout=dropout or 0.2)
    first = net.features[0][0]
    net.features[0][0] = _grey_conv(first)
    return net


def _mobilenet_v3(num_classes: int, large: bool, dropout: float) -> nn.Module:
    ctor = tvm.mobilenet_v3_large if large else tvm.mobilenet_v3_small
    net = ctor(weights=None, num_classes=num_classes, dropout=dropout or 0.2)
    net.features[0][0] = _grey_conv(net.features[0][0])
    return net


def _googlenet(num_classes: int, dropout: float) -> nn.Module:
    net = tvm.googlenet(
        weights=None, num_classes=num_classes, aux_logits=False, transform_input=False,
        init_weights=True, dropout=dropout or 0.2,
    )
    net.conv1.conv = _grey_conv(net.conv1.conv)
    return net


class LandmarkNet(nn.Module):
    """Backbone with two heads: expression logits and (K, 2) landmark coordinates in [-1, 1].
    forward() returns logits only unless `emit_landmarks` is set (the training loop sets it, so DDP
    sees both heads); export and serving see a plain classifier."""

    def __init__(self, backbone: nn.Module, num_landmarks: int):
        super().__init__()
        if not hasattr(backbone, "fc"):
            raise ValueError("the landmark head needs a backbone with an `fc` classifier (resnet18)")
        fc = backbone.fc
        linear = fc[-1] if isinstance(fc, nn.Sequential) else fc
        features = linear.in_features
        self.classifier = fc
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.num_landmarks = num_landmarks
        self.emit_landmarks = False
        self.landmark_head = nn.Sequential(nn.Linear(features, 256), nn.ReLU(inplace=True),
                                           nn.Linear(256, num_landmarks * 2), nn.Tanh())

    def forward(self, x: torch.Tensor):
        if self.emit_landmarks:
            return self.forward_with_landmarks(x)
        return self.classifier(self.backbone(x))

    def forward_with_landmarks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone(x)
        return self.classifier(f), self.landmark_head(f).view(-1, self.num_landmarks, 2)


def build_model(arch: str = "resnet18", num_classes: int = 7, stem: str = "standard",
                dropout: float = 0.0, landmarks: int = 0) -> nn.Module:
    """Any architecture in ARCHITECTURES, 1-channel input, `num_classes` logits."""
    if arch == "resnet18":
        net = _resnet18(num_classes, stem, dropout)
    elif arch == "efficientnet_b0":
        net = _efficientnet_b0(num_classes, dropout)
    elif arch in ("mobilenet_v3_small", "mobilenet_v3_large"):
        net = _mobilenet_v3(num_classes, arch.endswith("large"), dropout)
    elif arch == "googlenet":
        net = _googlenet(num_classes, dropout)
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")
    # torchvision's EfficientNet/MobileNetV3 keep BatchNorm momentum 0.01 (ImageNet-length runs);
    # on FER-sized data (JAFFE has 213 images) the running statistics would lag far behind.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    if landmarks > 0:
        net = LandmarkNet(net, landmarks)
    return net


def architecture_name(arch: str, stem: str) -> str:
    return f"{arch}-{stem}-stem" if arch == "resnet18" else arch
