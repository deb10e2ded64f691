import json
import sys
import types

import numpy as np
import pytest
import torch

from ferkit import modelrepo
from ferkit.vision import ModelMetadata, normalise
from training.export import EQUIVALENCE_TOLERANCE, ExportError, export_version, load_checkpoint, to_torchscript
from training.models import build_model
from ferkit.vision import InputSpec


def test_torchscript_matches_eager():
    model = build_model("resnet18").eval()
    scripted = to_torchscript(model, InputSpec())
    x = torch.randn(7, 1, 48, 48)
    with torch.no_grad():
        assert float((scripted(x) - model(x)).abs().max()) <= EQUIVALENCE_TOLERANCE


def test_export_writes_versions_atomically_and_upward(trained, tmp_path):
    run, _ = trained
    repo = tmp_path / "models"
    (run / "notes.md").write_text("report")
    v1 = export_version(run / "best.pt", repo, "fer_test", metrics={"PrivateTest": {"accuracy": 0.5}},
                        attachments=[run / "notes.md", run / "training_curve.png"])
    v2 = export_version(run / "best.pt", repo, "fer_test")
    assert (v1.name, v2.name) == ("1", "2")
    # The torch that wrote model.pt, for the serving pair (tests/deploy/test_serving_pair.py).
    assert ModelMetadata.load(v1 / "metadata.json").torch_version == torch.__version__.split("+")[0]
    assert modelrepo.list_versions(repo / "fer_test") == [1, 2]
    for name in ("model.pt", "metadata.json", "model.py", "notes.md", "training_curve.png"):
        assert (v1 / name).is_file(), name
    assert not [p for p in (repo / "fer_test").iterdir() if p.name.startswith(".v")]  # no temp dirs left
    prod = (repo / "fer_test" / "config.pbtxt").read_text()
    local = (repo / "fer_test" / "configs" / "local.pbtxt").read_text()
    assert 'platform: "pytorch_libtorch"' in prod and "KIND_GPU" in prod and "dynamic_batching" in prod
    assert 'backend: "python"' in local and "KIND_CPU" in local and "max_queue_delay_microseconds: 2000" in local
    assert "max_batch_size: 64" in prod and "max_batch_size: 32" in local
    for text in (prod, local):
        assert 'name: "input"' in text and 'name: "logits"' in text and "dims: [ 1, 48, 48 ]" in text
        assert "dims: [ 7 ]" in text and 'name: "fer_test"' in text
    assert (v1 / "model.py").read_text() == modelrepo.PYTHON_MODEL_SOURCE.read_text()

    # Anyone can score model.pt from metadata.json alone, and get what the checkpoint gives.
    meta = ModelMetadata.load(v1 / "metadata.json")
    assert meta.version == 1 and meta.name == "fer_test" and meta.metrics["PrivateTest"]["accuracy"] == 0.5
    assert len(meta.data_sha256) == 64 and meta.training_config["batch_size"] == 32
    assert meta.architecture == "resnet18-standard-stem"
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48)).astype(np.uint8)
    scripted = torch.jit.load(str(v1 / "model.pt"))
    eager, _ = load_checkpoint(run / "best.pt")
    x = torch.from_numpy(normalise(faces, meta.input))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), eager(x), atol=1e-5, rtol=0)


def test_failed_export_leaves_nothing(tmp_path):
    repo = tmp_path / "models"

    def broken(tmp, version):
        (tmp / "model.pt").write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        modelrepo.write_version(repo, "m", broken)
    assert modelrepo.list_versions(repo / "m") == []
    assert [p.name for p in (repo / "m").iterdir()] == [".lock"]
    with pytest.raises(RuntimeError, match="no model.pt"):
        modelrepo.write_version(repo, "m", lambda tmp, v: None)
    def complete(tmp, version):
        (tmp / "model.pt").write_bytes(b"x")
        (tmp / modelrepo.METADATA_FILENAME).write_text("{}")

    modelrepo.write_version(repo, "m", complete, version=3)
    assert modelrepo.next_version(repo / "m") == 4
    with pytest.raises(FileExistsError):
        modelrepo.write_version(repo, "m", complete, version=3)
    assert modelrepo.version_dir(repo, "m").name == "3"
    # A version folder still being filled (no metadata.json yet) is not the latest.
    (repo / "m" / "4").mkdir()
    (repo / "m" / "4" / "model.pt").write_bytes(b"x")
    assert modelrepo.latest_version(repo / "m") == 3


def test_not_a_checkpoint(tmp_path):
    torch.save({"weights": 1}, tmp_path / "x.pt")
    with pytest.raises(ExportError, match="not a training checkpoint"):
        load_checkpoint(tmp_path / "x.pt")


class _FakeTensor:
    def __init__(self, name, array):
        self._name, self._array = name, array

    def as_numpy(self):
        return self._array


def _fake_pb_utils():
    mod = types.ModuleType("triton_python_backend_utils")
    mod.Tensor = _FakeTensor
    mod.TritonError = lambda msg: ("error", msg)

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.output_tensors, self.error = output_tensors, error

    mod.InferenceResponse = InferenceResponse
    mod.get_input_tensor_by_name = lambda request, name: request.get(name)
    return mod


def _served_model(tmp_path, model):
    """model.py as Triton runs it, over `model` exported to a version folder."""
    vdir = tmp_path / "m" / "1"
    vdir.mkdir(parents=True)
    torch.jit.save(to_torchscript(model, InputSpec()), str(vdir / "model.pt"))
    import importlib.util

    spec = importlib.util.spec_from_file_location("fer_triton_model", modelrepo.PYTHON_MODEL_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    served = module.TritonPythonModel()
    config = {"input": [{"name": modelrepo.INPUT_NAME}], "output": [{"name": modelrepo.OUTPUT_NAME}]}
    served.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path / "m"), "model_version": "1"})
    return served, module


def test_python_backend_serves_bf16_where_the_cpu_has_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    monkeypatch.delenv("FER_TORCH_BF16", raising=False)
    model = build_model("resnet18").eval()
    served, module = _served_model(tmp_path, model)
    assert served.bf16 == module._cpu_has_bf16() == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    batch = np.random.default_rng(1).standard_normal((16, 1, 48, 48)).astype(np.float32)
    [response] = served.execute([{modelrepo.INPUT_NAME: _FakeTensor("input", batch)}])
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(batch)), 1).numpy()
    got = torch.softmax(torch.from_numpy(response.output_tensors[0].as_numpy()), 1).numpy()
    # bf16 keeps 8 bits of mantissa: scores within a few thousandths, the same top class almost always.
    np.testing.assert_allclose(got, expected, atol=0.03)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9


def test_python_backend_model_batches_requests(tmp_path, monkeypatch):
    """The model.py each version carries: one forward for all requests of a batch, split back."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    monkeypatch.setenv("FER_TORCH_BF16", "0")  # fp32, to compare with the model to 1e-4
    model = build_model("resnet18").eval()
    served, _ = _served_model(tmp_path, model)
    assert not served.bf16
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((n, 1, 48, 48)).astype(np.float32) for n in (1, 3, 2)]
    requests = [{modelrepo.INPUT_NAME: _FakeTensor("input", a)} for a in arrays[:2]] + [{}] + \
               [{modelrepo.INPUT_NAME: _FakeTensor("input", arrays[2])}]
    responses = served.execute(requests)
    assert len(responses) == 4
    assert responses[2].error is not None and not responses[2].output_tensors
    for resp, arr in zip([responses[0], responses[1], responses[3]], arrays):
        out = resp.output_tensors[0]
        assert out._name == modelrepo.OUTPUT_NAME and out.as_numpy().shape == (len(arr), 7)
        with torch.no_grad():
            np.testing.assert_allclose(out.as_numpy(), model(torch.from_numpy(arr)).numpy(), atol=1e-4)


def test_metadata_counts_the_epochs_that_ran_and_names_the_one_chosen(trained, tmp_path):
    """best.pt is saved at the best validation epoch: epochs_trained comes from the run's history."""
    run, result = trained
    meta = ModelMetadata.load(export_version(run / "best.pt", tmp_path / "models", "fer_epochs") / "metadata.json")
    assert meta.extra["epochs_trained"] == result["epochs"] == 4
    assert meta.extra["best_epoch"] == result["best_epoch"] and 1 <= meta.extra["best_epoch"] <= 4
    assert meta.extra["validation_accuracy"] == pytest.approx(result["best_acc"])
    assert "trained: 4 epochs" in (tmp_path / "models" / "fer_epochs" / "1" / "MODEL_CARD.md").read_text()


def test_the_card_of_a_job_on_other_data_reports_its_held_out_split():
    from training.evaluate import compute_metrics
    from training.model_card import model_card

    labels = np.arange(14) % 7
    figures = compute_metrics(labels, np.eye(7)[labels], ModelMetadata(name="x", version=1, architecture="a").classes)
    meta = ModelMetadata(name="jaffe_model", version=3, architecture="resnet18-standard-stem", metrics={"test": figures},
                         training_config={"data": {"format": "jaffe_csv", "path": "/data/jaffe/labels.csv", "val_split": "val"}},
                         extra={"epochs_trained": 2, "best_epoch": 1})
    card = model_card(meta)
    assert "| test (served) | 100.0% | 100.0% |" in card and "### Per class (test)" in card
    assert "training part of labels.csv (jaffe_csv)" in card and "held-out test part" in card
    assert "FER2013's" not in card
