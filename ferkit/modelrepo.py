"""Layout of the Triton model repository: models/<name>/<version>/{model.pt, metadata.json, model.py}.

Repository-level files of a model:
- config.pbtxt: the production config (TorchScript on GPUs, platform pytorch_libtorch);
- configs/local.pbtxt: the CPU variant (Python backend running the same model.pt), chosen with
  `tritonserver --model-config-name=local`.

Standard library and NumPy only: the inference service reads this without torch.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ferkit.files import write_atomic

# Tensor names and shapes: the one place both configs, the exporter and the clients take them from.
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INPUT_DTYPE = "TYPE_FP32"
OUTPUT_DTYPE = "TYPE_FP32"
MAX_BATCH_SIZE = 64
# On the CPU a batch runs for ~100 ms or more. With the largest batch at half the expected concurrency
# the next batch is already queued while one runs, so the model instance never waits for clients to
# send again (measured at 64 concurrent single-face requests: ~75% of the raw batched forward with 64,
# ~97% with 32).
LOCAL_MAX_BATCH_SIZE = 32
PREFERRED_BATCH_SIZES = (16, 32, 64)
LOCAL_QUEUE_DELAY_US = 2000
PRODUCTION_QUEUE_DELAY_US = 1000
VERSIONS_SERVED = 2

MODEL_FILENAME = "model.pt"
METADATA_FILENAME = "metadata.json"
PYTHON_MODEL_FILENAME = "model.py"
CONFIG_FILENAME = "config.pbtxt"
LOCAL_CONFIG_NAME = "local"
PYTHON_MODEL_SOURCE = Path(__file__).with_name("triton_python_model.py")

_VERSION_DIR = re.compile(r"^[1-9][0-9]*$")


def _dims(shape: tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(int(d)) for d in shape) + " ]"


def _io_block(input_shape: tuple[int, ...], num_classes: int) -> str:
    return (
        "input [\n"
        "  {\n"
        f'    name: "{INPUT_NAME}"\n'
        f"    data_type: {INPUT_DTYPE}\n"
        f"    dims: {_dims(input_shape)}\n"
        "  }\n"
        "]\n"
        "output [\n"
        "  {\n"
        f'    name: "{OUTPUT_NAME}"\n'
        f"    data_type: {OUTPUT_DTYPE}\n"
        f"    dims: {_dims((num_classes,))}\n"
        "  }\n"
        "]\n"
    )


def production_config(name: str, input_shape: tuple[int, ...] = (1, 48, 48), num_classes: int = 7) -> str:
    """config.pbtxt for GPU nodes: TorchScript through the libtorch backend, dynamic batching. The Triton
    image (deploy/triton/Dockerfile) and docker compose serve it as written; the Helm chart renders its
    own from its values (CPU or GPU, batching)."""
    return (
        f'name: "{name}"\n'
        'platform: "pytorch_libtorch"\n'
        f"max_batch_size: {MAX_BATCH_SIZE}\n"
        + _io_block(input_shape, num_classes)
        + "dynamic_batching {\n"
        f"  preferred_batch_size: {_dims(PREFERRED_BATCH_SIZES)}\n"
        f"  max_queue_delay_microseconds: {PRODUCTION_QUEUE_DELAY_US}\n"
        "}\n"
        "instance_group [\n"
        "  {\n"
        "    count: 1\n"
        "    kind: KIND_GPU\n"
        "  }\n"
        "]\n"
        f"version_policy: {{ latest {{ num_versions: {VERSIONS_SERVED} }} }}\n"
        'parameters: { key: "INFERENCE_MODE" value: { string_value: "true" } }\n'
    )


def local_config(name: str, input_shape: tuple[int, ...] = (1, 48, 48), num_classes: int = 7) -> str:
    """configs/local.pbtxt: the same tensors served by the Python backend on the CPU (the local
    tritonserver has no libtorch backend); model.py in each version runs model.pt."""
    return (
        f'name: "{name}"\n'
        'backend: "python"\n'
        f"max_batch_size: {LOCAL_MAX_BATCH_SIZE}\n"
        + _io_block(input_shape, num_classes)
        + "dynamic_batching {\n"
        f"  max_queue_delay_microseconds: {LOCAL_QUEUE_DELAY_US}\n"
        "}\n"
        "instance_group [\n"
        "  {\n"
        "    count: 1\n"
        "    kind: KIND_CPU\n"
        "  }\n"
        "]\n"
        f"version_policy: {{ latest {{ num_versions: {VERSIONS_SERVED} }} }}\n"
    )


def list_versions(model_dir: str | os.PathLike[str]) -> list[int]:
    """Version numbers present (numeric sub-directories; temp dirs and configs/ are not versions)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and _VERSION_DIR.match(p.name))


def latest_version(model_dir: str | os.PathLike[str]) -> int | None:
    """The highest version that has its metadata.json. write_version renames a version into place
    whole; a folder copied in by other means may still be filling, and is not the latest yet."""
    complete = [v for v in list_versions(model_dir) if (Path(model_dir) / str(v) / METADATA_FILENAME).is_file()]
    return complete[-1] if complete else None


def next_version(model_dir: str | os.PathLike[str]) -> int:
    versions = list_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def version_dir(repo_root: str | os.PathLike[str], name: str, version: int | None = None) -> Path:
    """Path of a version (the latest when version is None); FileNotFoundError when absent."""
    model_dir = Path(repo_root) / name
    if version is None:
        version = latest_version(model_dir)
        if version is None:
            raise FileNotFoundError(f"{model_dir}: no model versions")
    path = model_dir / str(int(version))
    if not (path / MODEL_FILENAME).is_file():
        raise FileNotFoundError(f"{path}: no {MODEL_FILENAME}")
    return path




def write_model_configs(model_dir: str | os.PathLike[str], name: str, input_shape: tuple[int, ...] = (1, 48, 48),
                        num_classes: int = 7) -> None:
    """The repository-level config.pbtxt (production) and configs/local.pbtxt (CPU)."""
    model_dir = Path(model_dir)
    write_atomic(model_dir / CONFIG_FILENAME, production_config(name, input_shape, num_classes))
    write_atomic(model_dir / "configs" / f"{LOCAL_CONFIG_NAME}.pbtxt",
                       local_config(name, input_shape, num_classes))


@contextmanager
def _locked(model_dir: Path) -> Iterator[None]:
    """Serialise writers of one model so two exports never pick the same version number."""
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_version(repo_root: str | os.PathLike[str], name: str, fill: Callable[[Path, int], None],
                  version: int | None = None) -> Path:
    """Create models/<name>/<version>/ atomically: `fill(tmp_dir, version)` writes the files into a
    hidden temp dir next to it (Triton ignores non-numeric dirs), which is then renamed into place,
    so a polling Triton never sees half a version. The Python-backend model.py is added here.
    Returns the new version directory."""
    model_dir = Path(repo_root) / name
    with _locked(model_dir):
        if version is None:
            version = next_version(model_dir)
        elif version < 1:
            raise ValueError(f"version must be >= 1, got {version}")
        final = model_dir / str(version)
        if final.exists():
            raise FileExistsError(f"{final} exists; versions are never overwritten")
        tmp = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=model_dir))
        try:
            fill(tmp, version)
            if not (tmp / MODEL_FILENAME).is_file():
                raise RuntimeError(f"the exporter wrote no {MODEL_FILENAME}")
            shutil.copyfile(PYTHON_MODEL_SOURCE, tmp / PYTHON_MODEL_FILENAME)
            os.chmod(tmp, 0o755)
            for f in tmp.iterdir():
                os.chmod(f, 0o644)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final
