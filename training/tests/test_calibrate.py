import numpy as np
import pytest

from ferkit.vision import ModelMetadata, softmax
from training.calibrate import calibration_report, expected_calibration_error, fit_temperature


def sampled(n: int, true_temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits / true_temperature): that T is the calibrated one."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, 7))
    probs = softmax(logits, true_temperature).astype(np.float64)
    labels = np.array([rng.choice(7, p=p / p.sum()) for p in probs])
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.7, 2.5])
def test_fitted_temperature_recovers_the_true_one(true_temperature):
    logits, labels = sampled(6000, true_temperature)
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.1)


def test_ece_is_small_when_calibrated_and_large_when_overconfident():
    logits, labels = sampled(6000, 2.5, seed=1)
    assert expected_calibration_error(softmax(logits, 2.5), labels) < 0.03
    assert expected_calibration_error(softmax(logits), labels) > 0.15  # T=1 claims far more than it gets


def test_report_fits_on_validation_and_improves_test_ece():
    val_logits, val_labels = sampled(4000, 2.0, seed=2)
    test_logits, test_labels = sampled(4000, 2.0, seed=3)
    report = calibration_report(val_logits, val_labels, test_logits, test_labels, uncertain_below=0.5)
    assert report["temperature"] == pytest.approx(2.0, rel=0.15)
    assert report["ece_after"] < report["ece_before"] / 3
    assert 0 < report["uncertain_share"] < 1
    # Calibrated: faces flagged uncertain (top score < 0.5) are right less often than the confident ones.
    assert report["uncertain_accuracy"] < 0.5 < report["confident_accuracy"]


def test_metadata_serves_calibrated_scores_and_flags_uncertain_faces():
    meta = ModelMetadata(name="m", version=1, architecture="a", temperature=2.0, uncertain_below=0.5)
    logits = np.array([[4.0, 0, 0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0, 0]])
    scores = meta.scores(logits)
    np.testing.assert_allclose(scores, softmax(logits / 2.0), rtol=1e-6)
    assert scores.argmax(1).tolist() == softmax(logits).argmax(1).tolist()  # labels never change
    assert meta.is_uncertain(scores).tolist() == [False, True]
    with pytest.raises(ValueError, match="temperature"):
        ModelMetadata(name="m", version=1, architecture="a", temperature=0.0)
