"""The serving pair: Triton's PyTorch backend must read the model.pt files training writes. pyproject.toml
pins both ([tool.fer-platform.serving] and the training extra); these checks keep every copy and every
shipped version in step with it. The Triton image itself cannot run here (no GPU, nvcr.io unreachable):
which release carries which libtorch is NVIDIA's fact, written down in pyproject.toml and docs/deploy.md."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import torch
import torchvision

from ferkit.vision import ModelMetadata
from scripts import serving_pair
from tests.deploy.test_images import build_args
from tests.deploy.tools import REPO

PAIR = serving_pair.load()
# The newest TorchScript file-format version libtorch 2.x reads (caffe2/serialize/versions.h).
LIBTORCH_MAX_FILE_FORMAT = 10


def minor(version: str) -> tuple[int, int]:
    major, minor_, *_ = version.split("+")[0].split(".")
    return int(major), int(minor_)


def shipped_versions() -> list[Path]:
    return sorted(p.parent for p in (REPO / "models").glob("*/*/model.pt"))


def test_triton_libtorch_is_at_least_the_training_torch():
    assert minor(PAIR["torch"]) <= minor(PAIR["triton_libtorch"]), (
        f"torch {PAIR['torch']} writes model.pt files that Triton {PAIR['triton_release']} "
        f"(libtorch {PAIR['triton_libtorch']}) is not promised to read: move the pair together")


def test_the_triton_dockerfile_defaults_to_the_pinned_release():
    # compose and a plain `docker build` take this default; `make images` passes the pinned release.
    assert build_args(REPO / "deploy" / "triton" / "Dockerfile")["TRITON_VERSION"] == PAIR["triton_release"]


def test_tests_and_training_run_on_the_pinned_torch():
    assert torch.__version__.split("+")[0] == PAIR["torch"]
    assert torchvision.__version__.split("+")[0] == PAIR["torchvision"]


def test_every_shipped_version_was_written_by_a_torch_the_pinned_triton_reads():
    versions = shipped_versions()
    assert versions, "no model versions under models/"
    for version in versions:
        meta = ModelMetadata.load(version / "metadata.json")
        assert meta.torch_version, f"{version} does not say which torch wrote its model.pt"
        assert minor(meta.torch_version) <= minor(PAIR["triton_libtorch"]), version
        with zipfile.ZipFile(version / "model.pt") as archive:
            record = next(n for n in archive.namelist() if n.endswith("/version"))
            assert int(archive.read(record)) <= LIBTORCH_MAX_FILE_FORMAT, version


def test_the_command_line_prints_the_pins_and_refuses_anything_else():
    script = [sys.executable, str(REPO / "scripts" / "serving_pair.py")]
    pins = subprocess.run([*script, "torch-pins"], capture_output=True, text=True, check=True).stdout.split()
    assert pins == [f"torch=={PAIR['torch']}", f"torchvision=={PAIR['torchvision']}"]
    triton = subprocess.run([*script, "triton"], capture_output=True, text=True, check=True).stdout.strip()
    assert triton == PAIR["triton_release"]
    bad = subprocess.run([*script, "cuda"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("usage:") and len(bad.stderr.splitlines()) == 1
