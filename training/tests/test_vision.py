import numpy as np
import pytest
import torch
from PIL import Image

from ferkit.vision import CLASSES, InputSpec, ModelMetadata, crop_face, normalise, to_grey
from training.predict import normalise_batch


def test_classes_are_fer2013_order():
    assert CLASSES == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_input_spec_round_trip_and_validation():
    spec = InputSpec()
    d = spec.to_dict()
    assert d == {"size": [48, 48], "channels": 1, "scale": 1 / 255, "mean": [0.5], "std": [0.5]}
    assert InputSpec.from_dict(d) == spec
    with pytest.raises(ValueError, match="one value per channel"):
        InputSpec(channels=3)
    with pytest.raises(ValueError, match="invalid input spec"):
        InputSpec.from_dict({"size": [48, 48]})


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "CMYK", "P", "LA", "I;16", "I", "F", "1"])
def test_to_grey_handles_modes(mode):
    rgb = Image.new("RGB", (20, 10), (200, 100, 50))
    if mode == "I;16":
        im = Image.fromarray(np.full((10, 20), 40000, dtype=np.uint16))
    elif mode == "F":
        im = Image.fromarray(np.full((10, 20), 0.5, dtype=np.float32))
    else:
        im = rgb.convert(mode)
    g = to_grey(im)
    assert g.shape == (10, 20) and g.dtype == np.uint8
    if mode in ("RGB", "RGBA", "P", "CMYK"):
        assert abs(int(g[0, 0]) - 124) <= 3  # ITU-R 601 luma of (200, 100, 50)
    if mode == "I;16":
        assert int(g[0, 0]) == round(40000 * 255 / 65535)
    if mode == "F":
        assert int(g[0, 0]) in (127, 128)


def test_to_grey_composites_transparency_over_white():
    im = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert (to_grey(im) == 255).all()


def test_crop_face_square_margin_and_edge_padding():
    grey = np.zeros((100, 120), dtype=np.uint8)
    grey[40:60, 50:70] = 255  # the "face"
    crop = crop_face(grey, (50, 40, 20, 20), margin=0.0)
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    assert crop[24, 24] == 255 and crop.mean() > 200
    wide = crop_face(grey, (50, 40, 20, 20), margin=0.5)
    assert wide.mean() < crop.mean()  # the margin brings background in
    # A box at the corner is edge-padded, not shifted: the face stays centred.
    corner = np.zeros((50, 50), dtype=np.uint8)
    corner[:10, :10] = 200
    c = crop_face(corner, (0, 0, 10, 10), margin=0.5)
    assert c.shape == (48, 48) and c[24, 24] == 200 and c[0, 0] == 200
    with pytest.raises(ValueError, match="positive width"):
        crop_face(grey, (0, 0, 0, 10))


def test_normalise_matches_torch_side():
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48)).astype(np.uint8)
    spec = InputSpec()
    x = normalise(faces, spec)
    assert x.shape == (5, 1, 48, 48) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    np.testing.assert_allclose(x[0, 0, 0, 0], faces[0, 0, 0] / 255 * 2 - 1, atol=1e-6)
    t = normalise_batch(torch.from_numpy(faces), spec).numpy()
    np.testing.assert_allclose(x, t, atol=1e-6)
    with pytest.raises(ValueError, match="expects"):
        normalise(faces[:, :40], spec)


def test_metadata_save_load(tmp_path):
    meta = ModelMetadata(name="m", version=3, architecture="resnet18", metrics={"accuracy": 0.5},
                         data_sha256="ab", training_config={"epochs": 2}, git_revision="deadbeef")
    meta.save(tmp_path / "metadata.json")
    back = ModelMetadata.load(tmp_path / "metadata.json")
    assert back == meta
    assert back.input == InputSpec() and back.classes == CLASSES
    d = back.to_dict()
    for key in ("name", "version", "classes", "input", "metrics", "data_sha256", "training_config",
                "git_revision", "created", "architecture"):
        assert key in d
    (tmp_path / "bad.json").write_text('{"name": "x"}')
    with pytest.raises(ValueError, match="lacks"):
        ModelMetadata.load(tmp_path / "bad.json")
