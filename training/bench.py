"""Benchmarks (commands, not tests): evaluation speed/accuracy of a model version, training
throughput with and without the CPU speed-ups, and the training input pipeline's overhead over pure
forward/backward time."""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from training.config import TrainConfig
from training.data import FaceData
from training.engine import Trainer
from training.evaluate import LoadedModel, evaluate
from training.utils import cpu_has_bf16


def bench_eval(loaded: LoadedModel, data: FaceData, tta_modes=("none", "flip", "tencrop"),
               batch_size: int = 256) -> dict[str, Any]:
    """Accuracy, macro-F1 and images/s per TTA mode, and the raw forward throughput."""
    results = {}
    for mode in tta_modes:
        m = evaluate(loaded, data, tta=mode, batch_size=batch_size)
        results[mode] = {k: m[k] for k in ("n", "accuracy", "macro_f1", "images_per_s", "seconds")}
    # Raw batched forward on already normalised input: the ceiling the serving path is compared with.
    x = torch.zeros(batch_size, loaded.spec.channels, *loaded.spec.size)
    with torch.inference_mode():
        loaded.model(x)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < 3.0:
            loaded.model(x)
            reps += 1
    results["raw_forward_images_per_s"] = reps * batch_size / (time.perf_counter() - start)
    return results


# name -> (channels_last, bf16 autocast, torch.compile); the first is today's fp32 trainer, the baseline.
SPEED_VARIANTS = {
    "fp32": (False, False, False),
    "channels_last": (True, False, False),
    "channels_last+bf16": (True, True, False),
    "channels_last+bf16+compile": (True, True, True),
}


def bench_training_speed(cfg: TrainConfig, variants=("fp32", "channels_last", "channels_last+bf16"),
                         steps: int = 20, rounds: int = 3, warmup: int = 3, splits=None,
                         cache_dir: str | None = None) -> dict[str, Any]:
    """Training images/s of one recipe under each variant, on the same prepared batches. Rounds
    interleave the variants, so load from other processes hits all alike; the median round counts."""
    from training.data import load_splits

    splits = splits or load_splits(cfg.data, cache_dir=cache_dir)
    trainers, batches = {}, None
    for name in variants:
        channels_last, bf16, compiled = SPEED_VARIANTS[name]
        c = copy.deepcopy(cfg)
        c.channels_last, c.cpu_bf16, c.max_steps_per_epoch = channels_last, bf16, steps
        trainer = Trainer(c, splits=splits, progress=False)
        if compiled:
            trainer.model = torch.compile(trainer.model)
        if batches is None:  # one set of augmented batches for every variant
            batches = [trainer.make_batch(idx) for idx in trainer.batches()]
        for batch in batches[:warmup]:
            trainer.step(*batch)  # first steps pay for allocation (and compilation)
        trainers[name] = trainer
    per_round: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            for batch in batches:
                trainer.step(*batch)
            per_round[name].append(sum(len(b[0]) for b in batches) / (time.perf_counter() - start))
    results = {name: sorted(v)[len(v) // 2] for name, v in per_round.items()}
    base = results[variants[0]]
    return {"images_per_s": results, "speedup": {k: v / base for k, v in results.items()},
            "baseline": variants[0], "steps": len(batches), "rounds": rounds, "batch_size": cfg.batch_size,
            "threads": torch.get_num_threads(), "architecture": trainers[variants[0]].arch_name,
            "bf16_native": cpu_has_bf16()}


def bench_pipeline(cfg: TrainConfig, steps: int = 40, warmup: int = 3, splits=None,
                   cache_dir: str | None = None) -> dict[str, Any]:
    """Time `steps` training steps as the loop runs them (index the uint8 tensor, augment, forward,
    backward, update) against the pure forward/backward/update of batches prepared beforehand.
    The two are interleaved step by step, so load from other processes hits both alike.
    overhead_pct = 100 * (loop / pure - 1)."""
    cfg.max_steps_per_epoch = steps
    trainer = Trainer(cfg, splits=splits, cache_dir=cache_dir, progress=False)
    for i, idx in enumerate(trainer.batches()):
        if i >= warmup:
            break
        trainer.step(*trainer.make_batch(idx))
    prepared = [trainer.make_batch(idx) for idx in trainer.batches()]
    loop_s = pure_s = augment_s = 0.0
    n = 0
    for idx, (x, t, lm) in zip(trainer.batches(), prepared):
        t0 = time.perf_counter()
        batch = trainer.make_batch(idx)
        t1 = time.perf_counter()
        trainer.step(*batch)
        t2 = time.perf_counter()
        trainer.step(x, t, lm)
        t3 = time.perf_counter()
        augment_s += t1 - t0
        loop_s += t2 - t0
        pure_s += t3 - t2
        n += len(x)
    epoch_steps = max(1, len(trainer.train_x) // cfg.batch_size)
    return {
        "steps": len(prepared),
        "batch_size": cfg.batch_size,
        "loop_s": loop_s,
        "pure_s": pure_s,
        "augment_s": augment_s,
        "overhead_pct": 100.0 * (loop_s / pure_s - 1.0),
        "loop_images_per_s": n / loop_s,
        "pure_images_per_s": n / pure_s,
        "estimated_epoch_s": loop_s / max(1, len(prepared)) * epoch_steps,
        "threads": torch.get_num_threads(),
        "device": str(trainer.device),
    }


def format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows)

