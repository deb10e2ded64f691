import csv
import json

import numpy as np
import pytest
import torch

from training import evaluate as evaluate_module
from training.cli import main
from training.config import TrainConfig
from training.data import FaceData, load_fer2013_csv
from training.evaluate import (
    FER_LIBRARY_ACCURACY, TARGET_ACCURACY, LoadedModel, compute_metrics, evaluate, landmark_nme, load_model,
    markdown_report, predict_all, save_confusion, write_submission,
)
from training.export import export_version
from training.models import build_model
from training.tests.conftest import save_png, synth_faces, write_fer_csv
from ferkit.vision import CLASSES, InputSpec


def test_metrics_and_confusion(tmp_path):
    y = np.array([0, 0, 1, 3, 3, 3])
    logits = np.eye(7)[[0, 3, 1, 3, 3, 0]]
    m = compute_metrics(y, logits, CLASSES)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["angry"]["recall"] == pytest.approx(0.5)
    assert m["per_class"]["happy"]["precision"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"][0][3] == 1 and m["confusion_matrix"][3][0] == 1
    assert m["per_class"]["fear"]["support"] == 0
    save_confusion(m, tmp_path / "cm.png", tmp_path / "cm.json")
    assert (tmp_path / "cm.png").stat().st_size > 1000
    assert json.loads((tmp_path / "cm.json").read_text())["matrix"] == m["confusion_matrix"]
    report = markdown_report("x", {"PrivateTest": m}, {"epochs": 3}, ["more epochs"])
    for text in ("73.28", "74.14", "65.00", "more epochs", "PrivateTest", "66.67%", "| happy |"):
        assert text in report


def test_evaluate_tta_submission_and_predict_all(trained, fer_csv, tmp_path):
    run, _ = trained
    loaded = load_model(run / "best.pt")
    data = load_fer2013_csv(fer_csv)
    test = data.subset(data.split == "PrivateTest")
    plain = evaluate(loaded, test)
    for mode in ("flip", "tencrop"):
        m = evaluate(loaded, test, tta=mode)
        assert m["n"] == 70 and abs(m["accuracy"] - plain["accuracy"]) < 0.3
    assert plain["accuracy"] > 0.4

    images, _ = synth_faces(5, seed=9)
    test_csv = write_fer_csv(tmp_path / "test.csv", images, None, None)
    n = write_submission(loaded, load_fer2013_csv(test_csv, require_labels=False), tmp_path / "sub.csv")
    rows = list(csv.reader(open(tmp_path / "sub.csv")))
    assert n == 5 and rows[0] == ["id", "label"] and [r[0] for r in rows[1:]] == ["0", "1", "2", "3", "4"]
    assert all(0 <= int(r[1]) < 7 for r in rows[1:])

    paths = [save_png(tmp_path / f"f{i}.png", np.repeat(images[i], 3, 0).repeat(3, 1), "RGB") for i in range(3)]
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    res = predict_all(loaded, paths + [tmp_path / "bad.jpg"])
    assert [("label" in r) for r in res] == [True, True, True, False] and "error" in res[3]
    assert sum(res[0]["scores"].values()) == pytest.approx(1.0, abs=1e-4)


def test_cli_evaluate_export_bench(trained, fer_csv, tmp_path, capsys):
    run, _ = trained
    out = tmp_path / "eval"
    assert main(["evaluate", str(run / "best.pt"), "--data", str(fer_csv), "--cache-dir", str(tmp_path / "c"),
                 "--splits", "PrivateTest", "PublicTest", "--tta", "none", "flip", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"PrivateTest", "PrivateTest + flip TTA", "PublicTest", "PublicTest + flip TTA"}
    assert (out / "confusion_matrix.png").exists() and "| surprise |" in (out / "report.md").read_text()
    assert main(["export", str(run / "best.pt"), "--repo", str(tmp_path / "models"), "--name", "cli_model",
                 "--metrics", str(out / "metrics.json"), "--attach", str(out / "report.md")]) == 0
    vdir = tmp_path / "models" / "cli_model" / "1"
    assert (vdir / "report.md").exists()
    capsys.readouterr()
    assert main(["bench-eval", str(vdir), "--data", str(fer_csv), "--cache-dir", str(tmp_path / "c"),
                 "--tta", "none", "flip", "--batch-size", "32"]) == 0
    printed = capsys.readouterr().out
    assert "raw batched forward" in printed and "flip" in printed


def test_bench_pipeline_reports_overhead(fer_csv, tmp_path):
    from training.bench import bench_pipeline
    from training.tests.conftest import small_config

    res = bench_pipeline(small_config(fer_csv, tmp_path), steps=2, warmup=1)
    assert res["steps"] == 2 and res["loop_s"] > 0 and res["pure_s"] > 0
    assert res["loop_s"] >= res["augment_s"]


def _checkpoint(path, arch="resnet18", landmarks=0):
    """An untrained training checkpoint (what load_model reads), without a training run."""
    cfg = TrainConfig()
    cfg.model.arch, cfg.model.landmarks = arch, landmarks
    state = build_model(landmarks=landmarks).state_dict()
    torch.save({"config": cfg.to_dict(), "classes": list(CLASSES), "input": InputSpec().to_dict(),
                "selected": state}, path)
    return path


def test_landmark_nme_is_reported_where_the_data_has_landmarks():
    true = np.tile(np.float32([[-0.5, -0.3], [0.5, -0.3], [0.0, 0.1], [-0.3, 0.5], [0.3, 0.5]]), (4, 1, 1))
    assert landmark_nme(true + np.float32([0.1, 0.0]), true, (0, 1)) == pytest.approx(0.1)  # 0.1 / eye distance 1
    images, labels = synth_faces(4)
    data = FaceData(images, labels, landmarks=true)
    with_head = LoadedModel(build_model(landmarks=5).eval(), InputSpec(), CLASSES, "untrained")
    m = evaluate(with_head, data)
    assert m["landmark_nme"] > 0
    assert "## Landmarks" in markdown_report("x", {"test": m})
    plain = LoadedModel(build_model().eval(), InputSpec(), CLASSES, "untrained")
    assert "landmark_nme" not in evaluate(plain, data)


def test_cli_evaluate_holds_out_a_test_split_of_data_without_usage(trained, tmp_path, capsys):
    run, _ = trained
    images, labels = synth_faces(70, seed=5)
    data = write_fer_csv(tmp_path / "train.csv", images, labels, None)
    out = tmp_path / "eval"
    common = ["--data", str(data), "--cache-dir", str(tmp_path / "c"), "--out", str(out)]
    assert main(["evaluate", str(run / "best.pt")] + common) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["test"] and metrics["test"]["n"] == 7  # the held-out 10%, not all 70 rows
    capsys.readouterr()
    assert main(["evaluate", str(run / "best.pt"), "--splits", "PrivateTest"] + common) == 2
    assert "error: no split 'PrivateTest' in this data; it has: train, val, test" in capsys.readouterr().err


def _jaffe_two_subjects(root):
    images, _ = synth_faces(4)
    for i, name in enumerate(["KA.AN1.1.png", "KA.HA1.2.png", "KL.AN1.3.png", "KL.HA1.4.png"]):
        save_png(root / name, images[i])
    return root


@pytest.mark.parametrize("case,message", [
    ("missing model", "no such checkpoint"),
    ("missing data", "no such file or directory"),
    ("bad row", "bad.csv:2: expected 2304 pixel values"),
    ("unknown format", "unknown data format 'fer2014'"),
    ("too few subjects", "2 subjects are too few"),
    ("unknown architecture", "unknown architecture 'vgg99'"),
])
def test_cli_bad_input_is_one_error_line_and_exit_2(case, message, tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    recipe = {"missing data": "data: {path: nowhere.csv}",
              "bad row": f"data: {{path: {tmp_path / 'bad.csv'}}}",
              "unknown format": "data: {format: fer2014}",
              "too few subjects": f"data: {{format: jaffe, path: {_jaffe_two_subjects(tmp_path / 'jaffe')}}}"}
    if case in recipe:
        (tmp_path / "r.yaml").write_text(recipe[case] + "\n")
        argv = ["data-info", str(tmp_path / "r.yaml"), "--cache-dir", str(tmp_path / "c")]
    elif case == "missing model":
        argv = ["predict", str(tmp_path / "nope.pt"), "a.png"]
    else:
        argv = ["predict", str(_checkpoint(tmp_path / "x.pt", arch="vgg99")), "a.png"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(errors) == 1 and err.rstrip().endswith(errors[0])
    assert message in errors[0]


def test_submission_uses_the_test_files_ids(tmp_path):
    images, _ = synth_faces(3)
    write_fer_csv(tmp_path / "test.csv", images, None, None, ids=[17, 4, 99])
    model = _checkpoint(tmp_path / "m.pt")
    assert main(["submit", str(model), str(tmp_path / "test.csv"), "--out", str(tmp_path / "sub.csv")]) == 0
    rows = list(csv.reader(open(tmp_path / "sub.csv")))
    assert rows[0] == ["id", "label"] and [r[0] for r in rows[1:]] == ["17", "4", "99"]


def test_loaded_model_has_a_predict_all_method(tmp_path):
    loaded = load_model(_checkpoint(tmp_path / "m.pt"))
    images, _ = synth_faces(2)
    paths = [save_png(tmp_path / f"f{i}.png", images[i]) for i in range(2)] + [tmp_path / "missing.png"]
    results = loaded.predict_all(paths)
    assert results == predict_all(loaded, paths)
    assert [("label" in r) for r in results] == [True, True, False]


def test_report_compares_the_measured_accuracy_with_the_target_and_fer():
    y = np.arange(20) % 7
    for correct, line in ((12, "- PrivateTest: 60.00%, 10.00 points short of the target"),
                          (15, "- PrivateTest: 75.00%, 5.00 points above the target")):
        pred = np.where(np.arange(20) < correct, y, (y + 1) % 7)
        report = markdown_report("m", {"PrivateTest": compute_metrics(y, np.eye(7)[pred], CLASSES)})
        assert line in report and f"Project target: {TARGET_ACCURACY:.1f}%" in report
        assert "| `fer` library, mini-Xception (measured here, 2026-11-30) | 65.50% |" in report
    assert (TARGET_ACCURACY, FER_LIBRARY_ACCURACY) == (70.0, 65.5)


def test_cli_evaluate_titles_name_the_model_and_its_version(trained, fer_csv, tmp_path, monkeypatch):
    run, _ = trained
    version = export_version(run / "best.pt", tmp_path / "models", "fer_resnet18", version=2)
    titles = []
    real = evaluate_module.save_confusion
    monkeypatch.setattr(evaluate_module, "save_confusion",
                        lambda m, png, js=None, title="": titles.append(title) or real(m, png, js, title))
    out = tmp_path / "eval"
    assert main(["evaluate", str(version), "--data", str(fer_csv), "--cache-dir", str(tmp_path / "c"),
                 "--out", str(out)]) == 0
    assert titles[0].startswith("fer_resnet18 v2 — PrivateTest")
    assert (out / "report.md").read_text().startswith("# Evaluation report: fer_resnet18 v2\n")


def test_cli_evaluate_defaults_to_the_held_out_split_of_the_data_the_model_was_trained_on(trained, tmp_path):
    """What a training job's evaluate step runs: no --data, the checkpoint's recipe names it."""
    run, _ = trained
    out = tmp_path / "eval"
    assert main(["evaluate", str(run / "best.pt"), "--cache-dir", str(tmp_path / "c"), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["PrivateTest"] and metrics["PrivateTest"]["n"] == 70
    assert (out / "confusion_matrix.png").is_file() and (out / "confusion_matrix.json").is_file()
