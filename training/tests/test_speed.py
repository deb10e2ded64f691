"""The CPU speed-ups: bf16 autocast and channels_last train the same model; the benchmark compares them."""

import torch

from training.bench import bench_training_speed
from training.engine import Trainer
from training.utils import cpu_has_bf16

from .conftest import small_config


def test_bf16_channels_last_trainer_learns(fer_csv, tmp_path):
    cfg = small_config(fer_csv, tmp_path / "run", cpu_bf16=True, channels_last=True, epochs=1)
    trainer = Trainer(cfg, progress=False)
    assert trainer.use_bf16 and trainer.channels_last
    assert trainer.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    before = trainer.model.fc.weight.detach().clone()
    x, t, lm = trainer.make_batch(next(iter(trainer.batches())))
    loss, logits = trainer.step(x, t, lm)
    assert logits.dtype == torch.bfloat16  # the forward ran under bf16 autocast
    assert trainer.model.fc.weight.dtype == torch.float32  # master weights stay fp32
    assert torch.isfinite(torch.tensor(loss)) and not torch.equal(before, trainer.model.fc.weight)


def test_speedups_follow_the_cpu_unless_the_recipe_says(fer_csv, tmp_path):
    auto = Trainer(small_config(fer_csv, tmp_path / "a"), progress=False)
    assert auto.use_bf16 == cpu_has_bf16() and auto.channels_last == cpu_has_bf16()
    off = Trainer(small_config(fer_csv, tmp_path / "b", cpu_bf16=False, channels_last=False), progress=False)
    assert not off.use_bf16 and not off.channels_last


def test_speed_benchmark_times_every_variant(fer_csv, tmp_path):
    cfg = small_config(fer_csv, tmp_path / "bench")
    res = bench_training_speed(cfg, steps=2, rounds=1, warmup=1)
    assert list(res["images_per_s"]) == ["fp32", "channels_last", "channels_last+bf16"]
    assert all(v > 0 for v in res["images_per_s"].values()) and res["speedup"]["fp32"] == 1.0


def test_warm_start_takes_the_weights_and_starts_a_new_cycle(trained, fer_csv, tmp_path):
    from training.engine import train

    run, _ = trained
    cfg = small_config(fer_csv, tmp_path / "again", epochs=1)
    trainer = Trainer(cfg, progress=False)
    trainer.warm_start(run / "best.pt")
    selected = torch.load(run / "best.pt", weights_only=False)["selected"]
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, selected[key])
    assert trainer.epoch == 0 and trainer.scheduler.last_epoch == 0  # a fresh schedule
    other = small_config(fer_csv, tmp_path / "other", model__stem="s1pool")
    try:
        Trainer(other, progress=False).warm_start(run / "best.pt")
        raise AssertionError("a checkpoint of another architecture was accepted")
    except ValueError as exc:
        assert "resnet18-standard-stem" in str(exc)
    assert train(cfg, init_from=run / "best.pt", progress=False)["epochs"] == 1
