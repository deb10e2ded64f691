"""What a version serves: flip averaging inside model.pt, the calibrated temperature and the
uncertainty threshold in metadata.json, and a model card; scored from those files alone."""

import numpy as np
import pytest
import torch

from ferkit.vision import ModelMetadata, normalise
from training import cli
from training.evaluate import load_model
from training.export import ExportError, export_version, load_checkpoint


def test_flip_averaging_is_built_into_model_pt(trained, tmp_path):
    run, _ = trained
    version = export_version(run / "best.pt", tmp_path / "models", "fer_test", tta="flip",
                             calibration={"temperature": 1.7, "uncertain_below": 0.4})
    meta = ModelMetadata.load(version / "metadata.json")
    assert (meta.tta, meta.temperature, meta.uncertain_below) == ("flip", 1.7, 0.4)
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48)).astype(np.uint8)
    x = torch.from_numpy(normalise(faces, meta.input))
    eager, _ = load_checkpoint(run / "best.pt")
    served = torch.jit.load(str(version / "model.pt"))
    with torch.no_grad():
        expected = (eager(x) + eager(torch.flip(x, dims=[3]))) / 2
        torch.testing.assert_close(served(x), expected, atol=1e-5, rtol=0)
        assert not torch.allclose(served(x), eager(x), atol=1e-4)  # the mirror really is averaged in
    # `evaluate` of the version (one call) equals the checkpoint evaluated with flip TTA.
    np.testing.assert_allclose(load_model(version).logits(faces), load_model(run / "best.pt").logits(faces, tta="flip"),
                               atol=1e-5)
    card = (version / "MODEL_CARD.md").read_text()
    assert "## Intended use" in card and "## Limits" in card and "flip" in card and "1.700" in card


def test_tencrop_cannot_be_served(trained, tmp_path):
    run, _ = trained
    with pytest.raises(ExportError, match="tencrop"):
        export_version(run / "best.pt", tmp_path / "models", "fer_test", tta="tencrop")


def test_export_command_calibrates_on_validation_and_reports_on_test(trained, fer_csv, tmp_path, capsys):
    run, _ = trained
    repo = tmp_path / "models"
    assert cli.main(["export", str(run / "best.pt"), "--repo", str(repo), "--name", "fer_test", "--tta", "flip",
                     "--calibrate-on", "PublicTest", "--report-on", "PrivateTest", "--uncertain-below", "0.45",
                     "--data", str(fer_csv), "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "fitted on PublicTest" in out and "PrivateTest ECE" in out
    meta = ModelMetadata.load(repo / "fer_test" / "1" / "metadata.json")
    cal = meta.metrics["calibration"]
    assert meta.temperature == pytest.approx(cal["temperature"]) and meta.temperature > 0
    assert meta.uncertain_below == 0.45 and cal["fitted_on"] == "PublicTest" and cal["reported_on"] == "PrivateTest"
    assert 0 <= cal["ece_after"] <= 1 and 0 <= cal["ece_before"] <= 1
