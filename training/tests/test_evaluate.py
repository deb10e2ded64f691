import csv
import json

import numpy as np
import pytest

from training.cli import main
from training.data import load_fer2013_csv
from training.evaluate import (
    compute_metrics, evaluate, load_model, markdown_report, predict_all, save_confusion, write_submission,
)
from training.tests.conftest import save_png, synth_faces, write_fer_csv
from ferkit.vision import CLASSES


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
