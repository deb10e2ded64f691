"""The training loop: one process, or DDP under torchrun (gloo on the CPU, NCCL on GPUs)."""

from __future__ import annotations

import logging
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ferkit.vision import InputSpec
from training.augment import BatchAugment, mix_batch
from training.config import CLASS_BALANCE, OPTIMIZERS, TrainConfig, save_config
from training.data import Splits, load_splits
from training.models import LandmarkNet, architecture_name, build_model
from training.predict import predict_logits
from training.progress import progress_line, progress_of, write_progress
from training.utils import (
    HISTORY_CSV, append_history, class_weights, cpu_has_bf16, git_revision, init_distributed, parse_deadline, plot_history,
    read_checkpoint, read_history, resolve_device, save_checkpoint, seed_everything,
)

log = logging.getLogger(__name__)

CHECKPOINT_LAST = "last.pt"
CHECKPOINT_BEST = "best.pt"
HISTORY_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_s",
                  "augment_s", "compute_s", "images_per_s")


def plan_epochs(done: int, wanted: int, epoch_times: list[float], seconds_left: float) -> int:
    """How many epochs in total fit before a deadline, judging by the recent epoch times
    (the slowest of the last three: the machine may be getting busier)."""
    if not epoch_times:
        return wanted
    per_epoch = max(epoch_times[-3:])
    return max(done, min(wanted, done + int(seconds_left // per_epoch)))


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up then cosine decay to min_ratio."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    # No weight decay on BatchNorm and biases: decaying them only fights the normalisation.
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.name!r}; choose one of {OPTIMIZERS}")


class Trainer:
    def __init__(self, cfg: TrainConfig, splits: Splits | None = None, spec: InputSpec | None = None,
                 cache_dir: str | Path | None = None, progress: bool = True):
        self.cfg = cfg
        self.spec = spec or InputSpec()
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.device = resolve_device(cfg.device)
        self.dist = init_distributed(self.device)
        if self.device.type == "cuda" and self.dist.world > 1:
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.gen = seed_everything(cfg.seed + self.dist.rank)
        self.out = Path(cfg.out_dir)
        self.progress = progress and self.dist.main
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.splits = splits or load_splits(cfg.data, cache_dir=cache_dir)
        classes = self.splits.classes
        self.num_classes = len(classes)
        tr = self.splits.train
        labelled = tr.labels >= 0
        if not labelled.all():
            raise ValueError("the training split has unlabelled rows")
        self.train_x = torch.from_numpy(tr.images).to(self.device)
        self.train_y = torch.from_numpy(tr.labels).to(self.device)
        self.train_soft = None if tr.soft is None or not cfg.data.soft_labels else torch.from_numpy(tr.soft).to(self.device)
        self.train_lm = self.lm_flip = None
        if tr.landmarks is not None and cfg.model.landmarks:
            if tr.landmarks.shape[1] != cfg.model.landmarks:
                raise ValueError(f"model.landmarks is {cfg.model.landmarks} but the data has "
                                 f"{tr.landmarks.shape[1]} landmarks per face")
            self.train_lm = torch.from_numpy(tr.landmarks).to(self.device)
            if cfg.augment.flip:  # flips mirror the points too: augment swaps their left/right labels
                self.lm_flip = torch.tensor(tr.landmark_scheme.flip, device=self.device)
        self.history_fields = HISTORY_FIELDS + (("train_landmark_loss",) if self.train_lm is not None else ())
        self.val_x = torch.from_numpy(self.splits.val.images)
        self.val_y = torch.from_numpy(self.splits.val.labels)

        self.model = build_model(cfg.model.arch, self.num_classes, cfg.model.stem, cfg.model.dropout,
                                 cfg.model.landmarks).to(self.device)
        on_cpu = self.device.type == "cpu"
        native_bf16 = on_cpu and cpu_has_bf16()
        self.use_bf16 = on_cpu and (native_bf16 if cfg.cpu_bf16 is None else cfg.cpu_bf16)
        self.channels_last = native_bf16 if cfg.channels_last is None else cfg.channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.ddp = None
        if self.dist.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = make_optimizer(self.model, cfg.optim)
        per_rank = math.ceil(len(tr) / self.dist.world)
        self.steps_per_epoch = max(1, per_rank // cfg.batch_size)  # drop the ragged last batch
        if cfg.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps_per_epoch)
        self.planned_epochs = cfg.epochs
        self.deadline = parse_deadline(cfg.deadline)
        self.epoch_times: list[float] = []
        warm = int(cfg.optim.warmup_epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, self.planned_epochs * self.steps_per_epoch, warm, cfg.optim.min_lr_ratio))
        self.ema = None
        if cfg.ema_decay > 0:
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        counts = tr.counts()
        self.loss_weights = class_weights(counts).to(self.device) if cfg.class_balance == "weights" else None
        self.sample_weights = None
        if cfg.class_balance == "sampler":
            per_class = class_weights(counts).numpy()
            self.sample_weights = torch.from_numpy(per_class[tr.labels]).double()
        elif cfg.class_balance not in CLASS_BALANCE:
            raise ValueError(f"class_balance must be one of {CLASS_BALANCE}, got {cfg.class_balance!r}")
        self.augment = BatchAugment(cfg.augment, self.spec, self.gen)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.epoch = 0
        self.best_acc = -1.0
        self.best_epoch = 0
        self.arch_name = architecture_name(cfg.model.arch, cfg.model.stem)
        self.git_revision = git_revision()

    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def checkpoint(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "selected": self.eval_model().state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": self.epoch,
            "planned_epochs": self.planned_epochs,
            "epoch_times": self.epoch_times,
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,
            "config": self.cfg.to_dict(),
            "classes": list(self.splits.classes),
            "input": self.spec.to_dict(),
            "architecture": self.arch_name,
            "data_sha256": self.splits.sha256,
            "git_revision": self.git_revision,
        }

    def resume(self, path: str | Path) -> None:
        ck = read_checkpoint(path, self.device)
        self.model.load_state_dict(ck["model"])
        if self.ema is not None and ck.get("ema") is not None:
            self.ema.load_state_dict(ck["ema"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        self.epoch = int(ck["epoch"])
        self.planned_epochs = min(self.cfg.epochs, int(ck.get("planned_epochs", self.cfg.epochs)))
        self.epoch_times = list(ck.get("epoch_times", []))
        self.best_acc = float(ck["best_acc"])
        self.best_epoch = int(ck["best_epoch"])
        log.info("resumed from %s at epoch %d (best %.4f at %d)", path, self.epoch, self.best_acc, self.best_epoch)

    def warm_start(self, path: str | Path) -> None:
        """Start from a checkpoint's selected weights with a fresh optimizer and a new warm-up plus
        cosine cycle (SGDR-style): a later run continues a model instead of starting over."""
        ck = read_checkpoint(path, self.device)
        if ck.get("architecture", self.arch_name) != self.arch_name:
            raise ValueError(f"{path} holds a {ck.get('architecture')} model; this recipe trains {self.arch_name}")
        self.model.load_state_dict(ck["selected"])
        if self.ema is not None:
            self.ema.module.load_state_dict(ck["selected"])
        log.info("warm start from %s (its epoch %d, validation accuracy %.4f): a new %d-epoch cycle",
                 path, int(ck.get("epoch", 0)), float(ck.get("best_acc", 0.0)), self.planned_epochs)

    def _order(self) -> torch.Tensor:
        n = len(self.train_x)
        gen = self.gen
        if self.dist.world > 1:
            # The same order on every rank (seeded by the epoch); each rank takes its own stride.
            gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + self.epoch)
        if self.sample_weights is not None:
            order = torch.multinomial(self.sample_weights, n, replacement=True, generator=gen)
        else:
            order = torch.randperm(n, generator=gen)
        return order[self.dist.rank :: self.dist.world] if self.dist.world > 1 else order

    def batches(self):
        """Yield (indices) of each step of one epoch."""
        order = self._order()
        bs = self.cfg.batch_size
        for step in range(self.steps_per_epoch):
            yield order[step * bs : (step + 1) * bs].to(self.device)

    def make_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Index the uint8 tensor, augment on the device, build (B, C) soft targets."""
        lm = None
        if self.train_lm is None:
            x = self.augment(self.train_x[idx])
        else:  # the landmark targets move with the face
            x, lm = self.augment(self.train_x[idx], self.train_lm[idx], self.lm_flip)
        if self.train_soft is not None:
            t = self.train_soft[idx].float()
        else:
            t = F.one_hot(self.train_y[idx], self.num_classes).float()
        if lm is None:
            x, t = mix_batch(x, t, self.cfg.augment, self.gen)
        return x, t, lm

    def autocast(self):
        if self.use_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=self.use_amp)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), targets, weight=self.loss_weights,
                               label_smoothing=self.cfg.label_smoothing)

    def step(self, x: torch.Tensor, t: torch.Tensor, lm: torch.Tensor | None) -> tuple[float, torch.Tensor]:
        """One update; returns the classification loss and the logits. The landmark loss is logged
        apart: it is left in `self.landmark_loss` (0 without landmarks)."""
        net = self.ddp or self.model
        net.train()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            if lm is not None and isinstance(self.model, LandmarkNet):
                self.model.emit_landmarks = True
                try:
                    logits, pred_lm = net(x)
                finally:
                    self.model.emit_landmarks = False
                cls_loss = self.loss(logits, t)
                lm_loss = F.smooth_l1_loss(pred_lm.float(), lm.float())
                loss = cls_loss + self.cfg.model.landmark_weight * lm_loss
            else:
                logits = net(x)
                loss = cls_loss = self.loss(logits, t)
                lm_loss = None
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.landmark_loss = 0.0 if lm_loss is None else float(lm_loss.detach())
        return float(cls_loss.detach()), logits.detach()

    def train_epoch(self) -> dict[str, float]:
        total_loss = total_lm_loss = correct = seen = 0.0
        aug_s = compute_s = 0.0
        it = self.batches()
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {self.epoch + 1}/{self.planned_epochs}",
                       unit="batch", mininterval=1.0 if os.isatty(2) else 60.0)
        start = time.perf_counter()
        for idx in it:
            t0 = time.perf_counter()
            x, t, lm = self.make_batch(idx)
            t1 = time.perf_counter()
            loss, logits = self.step(x, t, lm)
            t2 = time.perf_counter()
            aug_s += t1 - t0
            compute_s += t2 - t1
            n = len(idx)
            total_loss += loss * n
            total_lm_loss += self.landmark_loss * n
            correct += float((logits.argmax(1) == t.argmax(1)).sum())
            seen += n
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        if bar is not None:
            bar.close()
        epoch_s = time.perf_counter() - start
        return {"train_loss": total_loss / max(seen, 1), "train_landmark_loss": total_lm_loss / max(seen, 1),
                "train_acc": correct / max(seen, 1),
                "epoch_s": epoch_s, "augment_s": aug_s, "compute_s": compute_s,
                "images_per_s": seen / max(epoch_s, 1e-9)}

    def validate(self) -> tuple[float, float]:
        with self.autocast():
            logits = predict_logits(self.eval_model(), self.val_x, self.spec, self.cfg.eval_batch_size,
                                    device=self.device).float()
        y = self.val_y
        loss = float(F.cross_entropy(logits, y))
        acc = float((logits.argmax(1) == y).float().mean())
        return loss, acc

    def _replan(self) -> None:
        if self.deadline is None:
            return
        left = (self.deadline - datetime.now(timezone.utc)).total_seconds()
        planned = plan_epochs(self.epoch, self.cfg.epochs, self.epoch_times, left)
        if self.dist.world > 1:
            t = torch.tensor([planned], dtype=torch.int64, device=self.device)
            dist.broadcast(t, src=0)
            planned = int(t.item())
        if planned != self.planned_epochs:
            log.info("deadline %s: planning %d epochs instead of %d (epoch takes ~%.0fs)",
                     self.deadline.isoformat(), planned, self.planned_epochs, max(self.epoch_times[-3:]))
            self.planned_epochs = planned

    def _report_progress(self, rows: list[dict[str, float]]) -> None:
        """progress.json and its log line (training/progress.py): what a job's follower reads; `rows` as
        history.csv holds them."""
        progress = progress_of(rows, self.planned_epochs)
        write_progress(self.out, progress)
        log.info("%s", progress_line(progress))

    def fit(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train up to the planned epoch count; `stop_after` ends this call after that many epochs
        (to continue later with --resume, e.g. within a time-limited lease)."""
        cfg = self.cfg
        hist_path = self.out / HISTORY_CSV
        if self.dist.main:
            save_config(cfg, self.out / "config.yaml")
            if self.epoch == 0 and hist_path.exists():
                hist_path.unlink()
            self._report_progress(read_history(hist_path))
        log.info("training %s on %d images (%d steps/epoch x %d epochs), validating on %d, device %s, world %d, "
                 "bf16 %s, channels_last %s", self.arch_name, len(self.train_x), self.steps_per_epoch, cfg.epochs,
                 len(self.val_x), self.device, self.dist.world, self.use_bf16, self.channels_last)
        first_epoch = self.epoch
        while self.epoch < self.planned_epochs:
            if stop_after is not None and self.epoch - first_epoch >= stop_after:
                log.info("stopping after %d epochs as asked; resume from %s", stop_after, self.out / CHECKPOINT_LAST)
                break
            lr = self.optimizer.param_groups[0]["lr"]
            started = time.perf_counter()
            stats = self.train_epoch()
            self.epoch += 1
            if self.dist.main:
                val_loss, val_acc = self.validate()
                row = {"epoch": self.epoch, "lr": lr, **stats, "val_loss": val_loss, "val_acc": val_acc}
                append_history(hist_path, row, self.history_fields)
                improved = val_acc > self.best_acc
                if improved:
                    self.best_acc, self.best_epoch = val_acc, self.epoch
                ck = self.checkpoint()
                save_checkpoint(ck, self.out / CHECKPOINT_LAST)
                if improved:
                    save_checkpoint(ck, self.out / CHECKPOINT_BEST)
                rows = read_history(hist_path)
                plot_history(rows, self.out / "training_curve.png", self.arch_name)
                self._report_progress(rows)
                lm_text = "" if self.train_lm is None else f"  landmark loss {stats['train_landmark_loss']:.4f}"
                log.info("epoch %d/%d  lr %.4f  train loss %.4f acc %.4f%s  val loss %.4f acc %.4f%s  "
                         "%.0fs (augment %.1fs, %.0f img/s)", self.epoch, self.planned_epochs, lr, stats["train_loss"],
                         stats["train_acc"], lm_text, val_loss, val_acc, " *" if improved else "", stats["epoch_s"],
                         stats["augment_s"], stats["images_per_s"])
            if self.dist.world > 1:
                dist.barrier()
            self.epoch_times.append(time.perf_counter() - started)
            self._replan()
        return {"best_acc": self.best_acc, "best_epoch": self.best_epoch, "epochs": self.epoch,
                "out_dir": str(self.out)}


def train(cfg: TrainConfig, resume: str | Path | None = None, splits: Splits | None = None,
          cache_dir: str | Path | None = None, progress: bool = True, stop_after: int | None = None,
          init_from: str | Path | None = None) -> dict[str, Any]:
    if resume and init_from:
        raise ValueError("use --resume to continue a run or --init-from to start a new cycle, not both")
    trainer = Trainer(cfg, splits=splits, cache_dir=cache_dir, progress=progress)
    try:
        if resume:
            trainer.resume(resume)
        if init_from:
            trainer.warm_start(init_from)
        return trainer.fit(stop_after=stop_after)
    finally:
        if trainer.dist.owns_group and dist.is_initialized():
            dist.destroy_process_group()
