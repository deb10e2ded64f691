"""The real tritonserver from the `nvidia-pytriton` wheel, run on the CPU for `make dev` and tests.

Production runs NVIDIA's Triton image with config.pbtxt (pytorch_libtorch, KIND_GPU). Here the bundle
has no libtorch backend, so each model is served with its configs/local.pbtxt (Python backend running
the same model.pt), picked with `--model-config-name=local`.

`python -m scripts.local_triton --repository models` runs it in the foreground (`make dev` does).
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ferkit.modelrepo import LOCAL_CONFIG_NAME

log = logging.getLogger(__name__)


class TritonNotAvailable(RuntimeError):
    """The bundled tritonserver is missing or did not become ready."""


def _bundle() -> tuple[Path, Path]:
    """(pytriton/tritonserver dir, nvidia_pytriton.libs dir) from the installed wheel."""
    try:
        import pytriton
    except ImportError:
        raise TritonNotAvailable(
            "the bundled tritonserver needs the `nvidia-pytriton` wheel: pip install -e '.[local-triton]'"
        ) from None
    root = Path(pytriton.__file__).resolve().parent / "tritonserver"
    libs = root.parent.parent / "nvidia_pytriton.libs"
    if not (root / "bin" / "tritonserver").is_file():
        raise TritonNotAvailable(f"no tritonserver binary under {root}")
    return root, libs


def build_backend_dir(dest: Path) -> Path:
    """A backend directory of our own: real copies (Triton refuses symlinks that leave the folder) of
    the Python backend and the stub built for this interpreter's Python version."""
    root, _ = _bundle()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonNotAvailable(f"the wheel has no Python-backend stub for Python {version}")
    target = dest / "python"
    target.mkdir(parents=True, exist_ok=True)
    for src in (root / "backends" / "python" / "libtriton_python.so", root / "backends" / "python" / "triton_python_backend_utils.py", stub):
        out = target / src.name
        if not out.exists() or out.stat().st_size != src.stat().st_size:
            shutil.copy2(src, out)
    return dest


@dataclass
class LocalTriton:
    """One tritonserver process with explicit model control, bound to 127.0.0.1."""

    repository: Path
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    load_models: list[str] = field(default_factory=list)
    work_dir: Path | None = None
    log_file: Path | None = None
    host: str = "127.0.0.1"
    # Extra environment for the server and its Python-backend models (e.g. FER_TORCH_BF16).
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def command(self, backend_dir: Path) -> list[str]:
        root, _ = _bundle()
        argv = [
            str(root / "bin" / "tritonserver"),
            f"--model-repository={Path(self.repository).resolve()}",
            f"--backend-directory={backend_dir}",
            f"--model-config-name={LOCAL_CONFIG_NAME}",
            "--model-control-mode=explicit",
            "--strict-readiness=false",
            "--disable-auto-complete-config",
            "--allow-gpu-metrics=false",
            "--pinned-memory-pool-byte-size=0",
            "--exit-timeout-secs=5",
            "--log-verbose=0",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
        ]
        argv += [f"--load-model={name}" for name in self.load_models]
        return argv

    def environment(self) -> dict[str, str]:
        _, libs = _bundle()
        env = dict(os.environ)
        # The stub embeds the interpreter's libpython and finds its environment as `python3` on PATH.
        paths = [str(libs), sysconfig.get_config_var("LIBDIR") or ""]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in [*paths, env.get("LD_LIBRARY_PATH", "")] if p)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        # One torch thread per model instance: on a few shared cores, intra-op threads that wait for
        # each other cost more than they bring (measured: 2 threads were slower than 1 under load).
        env.setdefault("FER_TORCH_THREADS", "1")
        return {**env, **self.env}

    def start(self, timeout_s: float = 90.0) -> "LocalTriton":
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="triton-"))
        backend_dir = build_backend_dir(Path(self.work_dir) / "backends")
        if self.log_file:
            Path(self.log_file).parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command(backend_dir), env=self.environment(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        if out is not subprocess.DEVNULL:
            out.close()
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise TritonNotAvailable(f"tritonserver exited with {self.process.returncode}{self._log_hint()}")
            try:
                with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TritonNotAvailable(f"tritonserver was not ready within {timeout_s:.0f} s{self._log_hint()}")

    def _log_hint(self) -> str:
        if self.log_file and Path(self.log_file).is_file():
            tail = Path(self.log_file).read_text(errors="replace").splitlines()[-15:]
            return "; log tail:\n" + "\n".join(tail)
        return ""

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM to tritonserver (it stops its stubs, which ignore SIGTERM themselves)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            # The stubs live in tritonserver's session: take them down with it.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the bundled tritonserver on the CPU (foreground).")
    parser.add_argument("--repository", type=Path, default=Path(os.environ.get("INFERENCE_MODEL_REPOSITORY", "models")))
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--work-dir", type=Path, default=Path("var/triton"))
    parser.add_argument("--log-file", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    # The inference service loads the promoted versions itself (explicit model control).
    triton = LocalTriton(args.repository, args.http_port, args.grpc_port, args.metrics_port, work_dir=args.work_dir.resolve(),
                         log_file=args.log_file)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    triton.start()
    log.info("tritonserver ready: gRPC %s, HTTP %s, metrics %s", triton.grpc_url, triton.http_url, triton.metrics_url)
    try:
        while not stop and triton.process is not None and triton.process.poll() is None:
            time.sleep(0.5)
        return 0 if stop else (triton.process.returncode if triton.process else 1)
    finally:
        triton.stop()


if __name__ == "__main__":
    sys.exit(main())
