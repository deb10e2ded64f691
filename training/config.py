"""One YAML file per recipe, read into typed dataclasses (unknown keys are errors, not silently ignored)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class DataConfig:
    # a key of training.data.FORMATS (fer2013_csv, ferplus, jaffe, affectnet, ...)
    format: str = "fer2013_csv"
    path: str = "../shared/data/fer2013/fer2013.csv.gz"
    extra_path: str = ""  # FER+ votes CSV, AffectNet image root, ...
    train_split: str = "Training"
    val_split: str = "PublicTest"
    test_split: str = "PrivateTest"
    val_fraction: float = 0.1  # datasets without a given split: stratified (by subject where known)
    test_fraction: float = 0.1
    soft_labels: bool = False  # FER+: train on the vote distribution
    keep_contempt: bool = False  # AffectNet/FER+: 8 classes instead of the FER2013 seven
    limit: int = 0  # use only the first N training images (smoke runs); 0 = all


@dataclass
class ModelConfig:
    arch: str = "resnet18"
    stem: str = "standard"  # resnet18: standard | s1pool | s1
    dropout: float = 0.0
    landmarks: int = 0  # >0: add a landmark-regression head with this many (x, y) points
    landmark_weight: float = 0.1


@dataclass
class AugmentConfig:
    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    rotate_deg: float = 10.0
    shear_deg: float = 0.0
    flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    erasing_p: float = 0.25
    erasing_scale: tuple[float, float] = (0.02, 0.12)
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_p: float = 0.5


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd (Nesterov) | adamw
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.0


@dataclass
class TrainConfig:
    name: str = "fer_resnet18"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 30
    batch_size: int = 128
    eval_batch_size: int = 512
    label_smoothing: float = 0.1
    class_balance: str = "none"  # none | weights | sampler
    ema_decay: float = 0.0  # 0 disables the weight EMA
    amp: bool = True  # CUDA mixed precision (fp16 with a GradScaler); only takes effect on CUDA
    # CPU speed-ups, None = on where the processor has native bf16 (AVX-512 BF16 / AMX): bf16 autocast
    # (fp32 master weights, no scaler needed) and channels_last tensors. `make bench-training` measures them.
    cpu_bf16: bool | None = None
    channels_last: bool | None = None
    seed: int = 0
    num_threads: int = 0  # 0 = leave torch's default
    device: str = "auto"
    out_dir: str = "runs/fer_resnet18"
    max_steps_per_epoch: int = 0  # 0 = whole epoch (smaller for smoke runs and benchmarks)
    # ISO-8601 UTC time the run must end by (e.g. "2026-01-31T18:00:00Z"); "" = no limit. After each
    # epoch the planned epoch count shrinks to what the measured epoch time still allows, and the
    # cosine schedule is re-fitted to it, so a busy machine still gets a fully decayed model.
    deadline: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, data: dict[str, Any] | None, where: str) -> Any:
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"unknown key(s) in {where or 'config'}: {sorted(unknown)}; known: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        sub = {"data": DataConfig, "model": ModelConfig, "augment": AugmentConfig, "optim": OptimConfig}
        if cls is TrainConfig and name in sub:
            kwargs[name] = _build(sub[name], value, name)
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        elif isinstance(default, str) and not isinstance(value, str):
            kwargs[name] = value.isoformat() if hasattr(value, "isoformat") else str(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return _build(TrainConfig, data, "")


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a recipe; `overrides` are "a.b=value" strings (value parsed as YAML)."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe must be a YAML mapping")
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return config_from_dict(data)


def save_config(config: TrainConfig, path: str | Path) -> None:
    def plain(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: plain(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [plain(v) for v in obj]
        return obj

    Path(path).write_text(yaml.safe_dump(plain(config.to_dict()), sort_keys=False), encoding="utf-8")
