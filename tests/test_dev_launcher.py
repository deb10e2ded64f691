"""`make dev`'s launcher serves a copy of models/, so training and promoting never write into the checkout."""
from pathlib import Path

from scripts.dev import Ports, platform, seed_models


def test_make_dev_serves_a_copy_of_the_shipped_models_and_keeps_what_it_trained(tmp_path: Path) -> None:
    shipped = tmp_path / "shipped"
    for version in ("1", "2"):
        (shipped / "fer_resnet18" / version).mkdir(parents=True)
        (shipped / "fer_resnet18" / version / "model.pt").write_text(f"weights {version}")
    (shipped / "fer_resnet18" / "config.pbtxt").write_text("shipped config")
    (shipped / "fer_resnet18" / ".lock").write_text("")
    repository = tmp_path / "var" / "models"
    # What a local training job left there last time: a version of its own, and a version 1 it must keep.
    (repository / "fer_resnet18" / "3").mkdir(parents=True)
    (repository / "fer_resnet18" / "3" / "model.pt").write_text("trained here")
    (repository / "fer_resnet18" / "1").mkdir()
    (repository / "fer_resnet18" / "1" / "model.pt").write_text("kept")

    seed_models(repository, shipped)
    seed_models(repository, shipped)  # a second start changes nothing

    model = repository / "fer_resnet18"
    assert sorted(p.name for p in model.iterdir()) == ["1", "2", "3", "config.pbtxt"]
    assert (model / "1" / "model.pt").read_text() == "kept"
    assert (model / "2" / "model.pt").read_text() == "weights 2"
    assert (model / "3" / "model.pt").read_text() == "trained here"

    _, _, env = platform(tmp_path / "var", Ports())
    assert env["INFERENCE_MODEL_REPOSITORY"] == str(repository)
