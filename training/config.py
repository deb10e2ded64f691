"""One YAML file per recipe, read into typed dataclasses (unknown keys are errors, not silently ignored),
and the recipe fields a training job may override, with the values each accepts (TUNABLE).

Standard library only at import (yaml is imported where a file is read or written): the inference
service checks a job's overrides with this module and carries no training dependencies."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ResNet18 stems for 48x48 (feature map entering layer1 / cost relative to "standard"):
#   standard: 7x7/2 conv + 3x3/2 max-pool  -> 12x12, 1x (the measured CPU choice)
#   s1pool:   3x3/1 conv + 3x3/2 max-pool  -> 24x24, ~3x
#   s1:       3x3/1 conv, no pool          -> 48x48, ~11x (the published 72-74% recipes)
RESNET_STEMS = ("standard", "s1pool", "s1")
OPTIMIZERS = ("sgd", "adamw")  # sgd is Nesterov SGD
CLASS_BALANCE = ("none", "weights", "sampler")


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
        elif isinstance(default, float) and isinstance(value, str):
            # YAML 1.1 reads `1e-4` (no dot) as a string: `--set optim.lr=1e-4` means the number.
            try:
                kwargs[name] = float(value)
            except ValueError:
                raise ValueError(f"{where + '.' if where else ''}{name}: {value!r} is not a number") from None
        else:
            kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return _build(TrainConfig, data, "")


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a recipe; `overrides` are "a.b=value" strings (value parsed as YAML)."""
    import yaml

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
    import yaml

    def plain(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: plain(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [plain(v) for v in obj]
        return obj

    Path(path).write_text(yaml.safe_dump(plain(config.to_dict()), sort_keys=False), encoding="utf-8")


@dataclass(frozen=True)
class Tunable:
    """What a training job may set a recipe field to: `kind`, and a closed range or a list of choices."""

    kind: type  # int, float, str or bool
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    above_low: bool = False  # `low` itself is refused (a learning rate of 0 trains nothing)

    @property
    def type_name(self) -> str:
        """As JSON Schema names it (the console builds its form fields from these)."""
        return {int: "integer", float: "number", str: "string", bool: "boolean"}[self.kind]

    def describe(self) -> str:
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.kind is bool:
            return "true or false"
        low = f"> {self.low:g}" if self.above_low else f">= {self.low:g}"
        return f"{'an integer' if self.kind is int else 'a number'} {low} and <= {self.high:g}"


# The recipes that ship with the project: a job names one of these, or a relative .yaml path.
RECIPES_DIR = Path(__file__).parent / "configs"


def recipe_names() -> list[str]:
    return sorted(path.stem for path in RECIPES_DIR.glob("*.yaml"))


# The fields a job's `overrides` may set (dotted as in `--set`), each with what it accepts. Everything
# else (data paths, output dirs, the architecture) is the recipe's or the platform's to decide.
TUNABLE: dict[str, Tunable] = {
    "epochs": Tunable(int, 1, 1000),
    "batch_size": Tunable(int, 1, 4096),
    "eval_batch_size": Tunable(int, 1, 8192),
    "max_steps_per_epoch": Tunable(int, 0, 1_000_000),
    "label_smoothing": Tunable(float, 0.0, 0.5),
    "class_balance": Tunable(str, choices=CLASS_BALANCE),
    "ema_decay": Tunable(float, 0.0, 0.99999),
    "seed": Tunable(int, 0, 2**31 - 1),
    "num_threads": Tunable(int, 0, 256),
    "optim.name": Tunable(str, choices=OPTIMIZERS),
    "optim.lr": Tunable(float, 0.0, 10.0, above_low=True),
    "optim.momentum": Tunable(float, 0.0, 0.999),
    "optim.weight_decay": Tunable(float, 0.0, 0.1),
    "optim.warmup_epochs": Tunable(float, 0.0, 100.0),
    "model.stem": Tunable(str, choices=RESNET_STEMS),
    "model.dropout": Tunable(float, 0.0, 0.9),
    "augment.flip": Tunable(bool),
    "augment.rotate_deg": Tunable(float, 0.0, 45.0),
    "augment.erasing_p": Tunable(float, 0.0, 1.0),
    "augment.mixup_alpha": Tunable(float, 0.0, 10.0),
    "augment.cutmix_alpha": Tunable(float, 0.0, 10.0),
    "data.limit": Tunable(int, 0, 100_000_000),
}


class OverrideError(ValueError):
    """An override no job may run with; `key` names it."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"override {key}: {problem}")
        self.key = key


def check_override(key: str, value: Any) -> Any:
    """`value` as the recipe field `key` takes it (an int where a float is asked becomes a float), or
    OverrideError naming the key: not tunable, wrong type, or out of range."""
    tunable = TUNABLE.get(key)
    if tunable is None:
        raise OverrideError(key, f"not a tunable recipe field; tunable: {', '.join(TUNABLE)}")
    kind = tunable.kind
    # bool is an int in Python, never in a recipe.
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = isinstance(value, kind) and not isinstance(value, bool)
    if not ok:
        raise OverrideError(key, f"must be {tunable.describe()}, not {json.dumps(value)[:40]}")
    if kind is float:
        value = float(value)
    if tunable.choices and value not in tunable.choices:
        raise OverrideError(key, f"must be {tunable.describe()}, not {value[:40]!r}")
    if tunable.low is not None and (value < tunable.low or (tunable.above_low and value == tunable.low)):
        raise OverrideError(key, f"must be {tunable.describe()}, not {value:g}")
    if tunable.high is not None and value > tunable.high:
        raise OverrideError(key, f"must be {tunable.describe()}, not {value:g}")
    return value


def check_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {key: check_override(key, value) for key, value in overrides.items()}


def override_arg(key: str, value: Any) -> str:
    """A checked override as `--set` takes it: "key=value", the value written so that YAML reads back
    exactly it (floats always with a dot and a signed exponent, strings quoted)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        text = mantissa + (f"e{exponent if exponent[0] in '+-' else '+' + exponent}" if exponent else "")
    elif isinstance(value, int):
        text = str(value)
    else:
        text = json.dumps(str(value))
    return f"{key}={text}"
