import csv
import logging
import os

import numpy as np
import pytest
import torch

from training.augment import BatchAugment, mix_batch
from training.config import AugmentConfig, load_config
from training.data import FaceData, Splits, landmark_scheme
from training.engine import lr_factor, plan_epochs, train
from training.models import ARCHITECTURES, build_model
from training.tests.conftest import small_config, synth_faces
from ferkit.vision import InputSpec
from tests.fixtures.databases import free_port


def _history(out):
    with open(out / "history.csv") as fh:
        return list(csv.DictReader(fh))


def test_loss_falls_and_accuracy_rises(trained):
    out, result = trained
    rows = _history(out)
    assert len(rows) == 4
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"]) - 0.2
    assert float(rows[-1]["val_acc"]) > 0.4  # chance is 1/7
    assert result["best_acc"] == max(float(r["val_acc"]) for r in rows)
    for name in ("best.pt", "last.pt", "config.yaml", "training_curve.png", "history.csv"):
        assert (out / name).exists(), name


def test_resume_continues_where_it_stopped(fer_csv, tmp_path):
    # fp32 and the default layout: the comparison is near-exact, and oneDNN's bf16 kernels are not
    # promised to be bit-reproducible (the CPU speed-ups have tests of their own in test_speed.py).
    kw = dict(epochs=2, max_steps_per_epoch=2, cpu_bf16=False, channels_last=False)
    straight = train(small_config(fer_csv, tmp_path / "a", **kw), progress=False)
    stopped = train(small_config(fer_csv, tmp_path / "b", **kw), progress=False, stop_after=1)
    assert stopped["epochs"] == 1
    resumed = train(small_config(fer_csv, tmp_path / "b", **kw), resume=tmp_path / "b" / "last.pt", progress=False)
    assert straight["epochs"] == resumed["epochs"] == 2
    a, b = _history(tmp_path / "a"), _history(tmp_path / "b")
    assert [r["epoch"] for r in b] == ["1", "2"]
    assert float(a[-1]["val_loss"]) == pytest.approx(float(b[-1]["val_loss"]), rel=1e-4)
    wa = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    wb = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


def test_ddp_with_one_cpu_process(fer_csv, tmp_path, monkeypatch):
    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0", "WORLD_SIZE": "1",
                 "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    cfg = small_config(fer_csv, tmp_path, epochs=1, max_steps_per_epoch=2)
    result = train(cfg, progress=False)
    assert result["epochs"] == 1 and (tmp_path / "last.pt").exists()
    assert not torch.distributed.is_initialized()


def test_ema_class_weights_and_landmark_options_run(fer_csv, tmp_path):
    cfg = small_config(fer_csv, tmp_path, epochs=1, max_steps_per_epoch=2, ema_decay=0.9, class_balance="sampler",
                       augment__mixup_alpha=0.2, augment__cutmix_alpha=1.0,
                       augment__mix_p=1.0)
    train(cfg, progress=False)
    ck = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ck["ema"] is not None
    assert not all(torch.equal(ck["selected"][k], ck["model"][k]) for k in ck["model"] if ck["model"][k].is_floating_point())


def test_landmark_head_trains_jointly():
    net = build_model("resnet18", landmarks=68)
    x = torch.randn(2, 1, 48, 48)
    assert net(x).shape == (2, 7)
    logits, lm = net.forward_with_landmarks(x)
    assert lm.shape == (2, 68, 2) and lm.abs().max() <= 1


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_factory_builds_grey_48_models(arch):
    net = build_model(arch).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, 48, 48)).shape == (2, 7)


@pytest.mark.parametrize("stem,size", [("standard", 12), ("s1pool", 24), ("s1", 48)])
def test_resnet_stems_keep_the_stated_resolution(stem, size):
    net = build_model("resnet18", stem=stem).eval()
    x = torch.randn(1, 1, 48, 48)
    with torch.no_grad():
        y = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    assert y.shape[-1] == size
    with pytest.raises(ValueError, match="unknown resnet18 stem"):
        build_model("resnet18", stem="huge")


def test_schedule_warmup_cosine_and_deadline_plan():
    assert lr_factor(0, 100, 10, 0.0) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, 0.0) == pytest.approx(0.0)
    assert plan_epochs(5, 30, [], 1000) == 30
    assert plan_epochs(5, 30, [100, 120, 110], 1000) == 5 + 8  # the slowest recent epoch counts
    assert plan_epochs(5, 30, [100], 10) == 5


def test_augment_shapes_determinism_and_identity():
    faces = torch.randint(0, 256, (16, 48, 48), dtype=torch.uint8)
    spec = InputSpec()
    a = BatchAugment(AugmentConfig(), spec, torch.Generator().manual_seed(1))(faces)
    b = BatchAugment(AugmentConfig(), spec, torch.Generator().manual_seed(1))(faces)
    assert a.shape == (16, 1, 48, 48) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    off = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotate_deg=0, flip=False, brightness=0,
                        contrast=0, erasing_p=0)
    ident = BatchAugment(off, spec, torch.Generator().manual_seed(0))(faces)
    torch.testing.assert_close(ident, faces.float().unsqueeze(1) / 255 * 2 - 1, atol=1e-4, rtol=0)
    erase = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotate_deg=0, flip=False, brightness=0,
                          contrast=0, erasing_p=1.0, erasing_scale=(0.1, 0.1))
    white = torch.full((4, 48, 48), 255, dtype=torch.uint8)
    e = BatchAugment(erase, spec, torch.Generator().manual_seed(0))(white)
    zeros = (e == 0).float().mean(dim=(1, 2, 3))
    assert ((zeros > 0.03) & (zeros < 0.2)).all()


def test_mixup_targets_stay_distributions():
    x = torch.randn(8, 1, 48, 48)
    t = torch.nn.functional.one_hot(torch.arange(8) % 7, 7).float()
    for cfg in (AugmentConfig(mixup_alpha=0.4, mix_p=1.0), AugmentConfig(cutmix_alpha=1.0, mix_p=1.0)):
        xm, tm = mix_batch(x, t, cfg, torch.Generator().manual_seed(0))
        assert xm.shape == x.shape
        torch.testing.assert_close(tm.sum(1), torch.ones(8))


def test_config_rejects_unknown_keys(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("epochs: 2\noptim:\n  lr: 0.1\n  momentun: 0.9\n")
    with pytest.raises(ValueError, match="momentun"):
        load_config(p)
    p.write_text("epochs: 2\n")
    cfg = load_config(p, ["optim.lr=0.01", "augment.crop_scale=[0.5, 1.0]"])
    assert cfg.optim.lr == 0.01 and cfg.augment.crop_scale == (0.5, 1.0)


def test_shipped_recipes_load():
    root = os.path.join(os.path.dirname(__file__), "..", "configs")
    names = [n for n in os.listdir(root) if n.endswith(".yaml")]
    assert names
    for n in names:
        load_config(os.path.join(root, n))


# A 5-point face (eyes, nose, mouth corners; x, y in [-1, 1]) and grey levels of a dot at each point:
# the left eye (on the viewer's left) bright, the right eye dim, so a mirrored face can be told apart.
FIVE_POINTS = [[-0.4, -0.3], [0.4, -0.3], [0.0, 0.1], [-0.3, 0.5], [0.3, 0.5]]
DOT_LEVELS = [255, 120, 255, 255, 255]


def test_landmarks_move_with_the_face_and_flips_swap_left_and_right():
    n = 64
    faces = torch.zeros(n, 48, 48, dtype=torch.uint8)
    for (x, y), level in zip(FIVE_POINTS, DOT_LEVELS):
        cx, cy = int((x + 1) / 2 * 48), int((y + 1) / 2 * 48)
        faces[:, cy - 2 : cy + 3, cx - 2 : cx + 3] = level
    points = torch.tensor(FIVE_POINTS).expand(n, 5, 2)
    cfg = AugmentConfig(rotate_deg=10, flip=True, brightness=0, contrast=0, erasing_p=0)
    flip = torch.tensor(landmark_scheme(5).flip)
    x, moved = BatchAugment(cfg, InputSpec(), torch.Generator().manual_seed(0))(faces, points, flip)
    px = ((moved + 1) / 2 * 48).floor().long().clamp(0, 47)
    under = x[torch.arange(n)[:, None], 0, px[..., 1], px[..., 0]]  # normalised grey under each point
    assert (under > -0.5).all()  # every point still sits on its dot (background is -1)
    # Labels follow the side, not the pixels: the left eye and left mouth corner stay on the left...
    assert (moved[:, 0, 0] < moved[:, 1, 0]).all() and (moved[:, 3, 0] < moved[:, 4, 0]).all()
    # ...so on a mirrored face the point labelled left eye sits on the (dim) right eye's dot.
    mirrored = under[:, 0] < 0.5
    assert 0 < int(mirrored.sum()) < n


def test_landmark_loss_is_logged_apart(tmp_path, caplog):
    images, labels = synth_faces(64)
    data = FaceData(images, labels, landmarks=np.tile(np.float32(FIVE_POINTS), (64, 1, 1)))
    splits = Splits(data.subset(range(48)), data.subset(range(48, 64)), None, "synthetic")
    cfg = small_config(tmp_path / "unused.csv", tmp_path, epochs=1, max_steps_per_epoch=2, model__landmarks=5)
    with caplog.at_level(logging.INFO):
        train(cfg, splits=splits, progress=False)
    row = _history(tmp_path)[0]
    assert float(row["train_landmark_loss"]) > 0 and float(row["train_loss"]) > 0
    assert "landmark loss" in caplog.text
