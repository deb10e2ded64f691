import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.config import DataConfig
from training.data import (
    LANDMARK_SCHEMES, DataError, landmark_scheme, load_affectnet_csv, load_class_folders, load_fer2013_csv,
    load_ferplus, load_image_label_csv, load_jaffe, load_splits, named_splits, pick_split, stratified_split,
)
from training.data import image_files
from training.tests.conftest import save_png, synth_faces, write_fer_csv


def test_fer2013_csv_gzip_and_plain(tmp_path, fer_csv):
    data = load_fer2013_csv(fer_csv)
    assert data.images.shape == (420, 48, 48) and data.images.dtype == np.uint8
    assert set(data.split.tolist()) == {"Training", "PublicTest", "PrivateTest"}
    images, labels = synth_faces(20)
    plain = write_fer_csv(tmp_path / "plain.csv", images, labels, ["Training"] * 20)
    d2 = load_fer2013_csv(plain)
    np.testing.assert_array_equal(d2.images, images)
    np.testing.assert_array_equal(d2.labels, labels)
    assert len(d2.sha256) == 64


def test_task_layout_train_and_pixels_only_test(tmp_path):
    images, labels = synth_faces(30)
    train = write_fer_csv(tmp_path / "train.csv", images, labels, None)
    test = write_fer_csv(tmp_path / "test.csv", images[:5], None, None)
    assert load_fer2013_csv(train).split is None
    t = load_fer2013_csv(test, require_labels=False)
    assert (t.labels == -1).all() and len(t) == 5
    with pytest.raises(DataError, match="no 'emotion' column"):
        load_fer2013_csv(test)
    splits = load_splits(DataConfig(format="task_csv", path=str(train), val_fraction=0.2, test_fraction=0.0))
    assert len(splits.train) + len(splits.val) == 30
    assert set(splits.val.labels.tolist()) == set(range(7))  # stratified: every class in validation


@pytest.mark.parametrize("pixels,label,message", [
    ("1 2 3", "0", "expected 2304 pixel values"),
    (" ".join(["300"] * 2304), "0", "0-255"),
    (" ".join(["x"] * 2304), "0", "integers"),
    (" ".join(["1"] * 2304), "9", "out of range"),
    (" ".join(["1"] * 2304), "happy", "not an integer"),
])
def test_fer2013_bad_rows_name_file_and_line(tmp_path, pixels, label, message):
    path = tmp_path / "bad.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["emotion", "pixels", "Usage"])
        w.writerow(["0", " ".join(["5"] * 2304), "Training"])
        w.writerow([label, pixels, "Training"])
    with pytest.raises(DataError, match=message) as err:
        load_fer2013_csv(path)
    assert "bad.csv:3" in str(err.value)


def test_fer2013_missing_file_and_columns(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_fer2013_csv(tmp_path / "nope.csv")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="no 'pixels' column"):
        load_fer2013_csv(tmp_path / "x.csv")


def _folders(root, images, labels, names, bad=True):
    for i, (img, c) in enumerate(zip(images, labels)):
        save_png(root / names[c] / f"S{100 + i % 5:03d}_001_{i:08d}.png", img)
    if bad:
        (root / names[0] / "S999_001_broken.png").write_bytes(b"not an image at all")


def test_class_folders_skip_unreadable_and_read_subjects(tmp_path):
    images, labels = synth_faces(35)
    names = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    _folders(tmp_path / "ck", images, labels, names)
    data = load_class_folders(tmp_path / "ck")
    assert len(data) == 35 and len(data.skipped) == 1 and "broken" in data.skipped[0][0]
    assert data.subjects is not None and set(data.subjects.tolist()) == {f"S{100 + k:03d}" for k in range(5)}
    order = np.argsort(data.paths)
    by_name = {p.split("/")[-1]: lbl for p, lbl in zip(data.paths, data.labels)}
    assert by_name["S100_001_00000000.png"] == labels[0]
    assert np.abs(data.images[order].astype(int).mean() - images.astype(int).mean()) < 2
    splits = load_splits(DataConfig(format="ckplus", path=str(tmp_path / "ck"), val_fraction=0.2, test_fraction=0.2))
    # Subject-wise: no subject in two parts.
    parts = [set(s.subjects.tolist()) for s in (splits.train, splits.val, splits.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


def test_too_large_images_are_skipped_without_a_global_pillow_limit(tmp_path, monkeypatch):
    probe = ("from PIL import Image; n = Image.MAX_IMAGE_PIXELS; import training.data; "
             "print(n == Image.MAX_IMAGE_PIXELS)")
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "True"
    monkeypatch.setattr(image_files, "MAX_IMAGE_PIXELS", 60 * 60)
    images, labels = synth_faces(7)
    _folders(tmp_path / "ck", images, labels, [str(k) for k in range(7)], bad=False)
    save_png(tmp_path / "ck" / "3" / "S100_001_huge.png", np.zeros((61, 61), np.uint8))
    data = load_class_folders(tmp_path / "ck")
    assert len(data) == 7 and "huge" in data.skipped[0][0] and "DecompressionBombError" in data.skipped[0][1]


def test_fer2013_folder_dump_with_train_test_and_digit_names(tmp_path):
    images, labels = synth_faces(42)
    names = [str(k) for k in range(7)]
    _folders(tmp_path / "dump" / "train", images[:35], labels[:35], names, bad=False)
    _folders(tmp_path / "dump" / "test", images[35:], labels[35:], names, bad=False)
    cfg = DataConfig(format="fer2013_folders", path=str(tmp_path / "dump"), train_split="train",
                     val_split="val", test_split="test", val_fraction=0.2)
    splits = load_splits(cfg)
    assert len(splits.test) == 7 and len(splits.train) + len(splits.val) == 35
    with pytest.raises(DataError, match="no class folders"):
        load_class_folders(tmp_path / "dump" / "train" / "0")


def test_jaffe_names_and_csv(tmp_path):
    images, _ = synth_faces(14)
    codes = ["AN", "DI", "FE", "HA", "SA", "SU", "NE"]
    rows = []
    for i in range(14):
        name = f"{['KA', 'KL'][i % 2]}.{codes[i % 7]}{i % 3 + 1}.{i + 10}.tiff"
        Image.fromarray(np.repeat(images[i], 2, axis=0).repeat(2, axis=1)).save(tmp_path / name)
        rows.append((name, i % 7))
    (tmp_path / "README.txt.png").write_bytes(b"junk")
    data = load_jaffe(tmp_path)
    assert len(data) == 14 and set(data.subjects.tolist()) == {"KA", "KL"}
    assert sorted(data.labels.tolist()) == sorted([i % 7 for i in range(14)])
    assert len(data.skipped) == 1
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_path", "labels"])
        w.writerows(rows + [("missing.jpg", 3)])
    d2 = load_image_label_csv(tmp_path / "labels.csv")
    assert len(d2) == 14 and d2.skipped and "missing.jpg" in d2.skipped[0][0]
    assert d2.subjects is not None
    (tmp_path / "bad.csv").write_text("image_path,labels\nKA.AN1.10.tiff,12\n")
    with pytest.raises(DataError, match="out of range"):
        load_image_label_csv(tmp_path / "bad.csv")


def test_ferplus_majority_and_soft_labels(tmp_path):
    images, labels = synth_faces(4)
    fer = write_fer_csv(tmp_path / "fer.csv", images, labels, ["Training"] * 4)
    votes = tmp_path / "fer2013new.csv"
    header = ["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
              "contempt", "unknown", "NF"]
    with open(votes, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerow(["Training", "a.png", 8, 2, 0, 0, 0, 0, 0, 0, 0, 0])   # neutral
        w.writerow(["Training", "b.png", 0, 0, 0, 0, 6, 0, 0, 4, 0, 0])   # anger, contempt votes
        w.writerow(["Training", "c.png", 0, 0, 0, 0, 0, 0, 0, 0, 0, 10])  # not a face: dropped
        w.writerow(["Training", "d.png", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])   # no votes: dropped
    data = load_ferplus(fer, votes)
    assert len(data) == 2
    assert data.labels.tolist() == [6, 0]
    np.testing.assert_allclose(data.soft[0], [0, 0, 0, 0.2, 0, 0, 0.8], atol=1e-6)
    np.testing.assert_allclose(data.soft[1].sum(), 1.0, atol=1e-6)
    eight = load_ferplus(fer, votes, keep_contempt=True)
    assert eight.soft.shape[1] == 8 and eight.classes[-1] == "contempt"
    np.testing.assert_allclose(eight.soft[1][[0, 7]], [0.6, 0.4], atol=1e-6)


def test_affectnet_crop_landmarks_and_mapping(tmp_path):
    big = np.zeros((200, 200), dtype=np.uint8)
    big[50:150, 60:140] = 180
    save_png(tmp_path / "img" / "1" / "a.png", big)
    save_png(tmp_path / "img" / "1" / "b.png", big)
    (tmp_path / "img" / "1" / "c.png").write_bytes(b"\x89PNG broken")
    lm = ";".join(f"{60 + (i % 17) * 5};{60 + (i // 17) * 20}" for i in range(68))
    cols = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
            "expression", "valence", "arousal"]
    with open(tmp_path / "training.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerow(["1/a.png", 60, 50, 80, 100, lm, 1, 0.7, 0.2])   # happy
        w.writerow(["1/b.png", 60, 50, 80, 100, lm, 7, -0.2, 0.3])  # contempt: dropped unless kept
        w.writerow(["1/b.png", 60, 50, 80, 100, lm, 10, 0, 0])      # no-face: dropped
        w.writerow(["1/c.png", 60, 50, 80, 100, lm, 6, 0, 0])       # unreadable: skipped
    data = load_affectnet_csv(tmp_path / "training.csv", tmp_path / "img")
    assert data.labels.tolist() == [3] and len(data.skipped) == 1
    assert data.landmarks.shape == (1, 68, 2) and np.abs(data.landmarks).max() <= 1.0
    assert data.images[0, 24, 24] == 180
    assert load_affectnet_csv(tmp_path / "training.csv", tmp_path / "img", keep_contempt=True).labels.tolist() == [3, 7]
    with open(tmp_path / "bad.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerow(["1/a.png", 60, 50, 80, 100, "1;2;3", 1, 0, 0])
    with pytest.raises(DataError, match="68 landmarks"):
        load_affectnet_csv(tmp_path / "bad.csv", tmp_path / "img")


def test_stratified_split_keeps_class_shares():
    labels = np.repeat(np.arange(7), [100, 10, 100, 100, 100, 100, 100])
    rest, val = stratified_split(labels, [0.1], seed=3)
    assert len(set(rest) & set(val)) == 0 and len(rest) + len(val) == len(labels)
    counts = np.bincount(labels[val], minlength=7)
    assert counts.tolist() == [10, 1, 10, 10, 10, 10, 10]


def test_landmark_schemes_mirror_onto_themselves():
    for k, scheme in LANDMARK_SCHEMES.items():
        perm = np.asarray(scheme.flip)
        assert sorted(perm.tolist()) == list(range(k)) and (perm[perm] == np.arange(k)).all()
    assert landmark_scheme(5).flip == (1, 0, 2, 4, 3)  # eyes and mouth corners swap, the nose stays
    ibug = landmark_scheme(68)
    assert (ibug.flip[0], ibug.flip[36], ibug.flip[39], ibug.flip[48], ibug.flip[30]) == (16, 45, 42, 54, 30)
    assert ibug.eyes == (36, 45)
    with pytest.raises(DataError, match="no landmark scheme for 7 points"):
        landmark_scheme(7)


def test_data_without_usage_gets_a_held_out_test_split(tmp_path):
    images, labels = synth_faces(70)
    path = write_fer_csv(tmp_path / "train.csv", images, labels, None)  # no Usage column
    for fmt in ("fer2013_csv", "task_csv"):
        splits = named_splits(DataConfig(format=fmt, path=str(path)), cache_dir=tmp_path / "cache")
        assert list(splits) == ["train", "val", "test"]
        assert [len(s) for s in splits.values()] == [56, 7, 7]  # 10% of every class held out for test
    with pytest.raises(DataError, match="no split 'PrivateTest' in this data; it has: train, val, test"):
        pick_split(splits, "PrivateTest")


def test_test_csv_keeps_its_id_column(tmp_path):
    images, _ = synth_faces(3)
    write_fer_csv(tmp_path / "test.csv", images, None, None, ids=[17, 4, 99])
    data = load_fer2013_csv(tmp_path / "test.csv", require_labels=False)
    assert data.ids.tolist() == ["17", "4", "99"] and data.subset([2]).ids.tolist() == ["99"]
