"""Find the deployment tools; a missing one fails the test with what to install (never a skip)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "fer-platform"
K8S_VERSION = "1.31.0"
INSTALL_HINT = "run `bash scripts/install-deploy-tools.sh` (or `make deploy-tools`)"


def tool(name: str) -> str:
    """Path of a tool: the project's .tools/bin, the interpreter's bin (venv), then PATH."""
    for candidate in (REPO / ".tools" / "bin" / name, Path(sys.executable).parent / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"`{name}` is not installed: {INSTALL_HINT}", pytrace=False)
    return found


def run(args: list[str], *, input: str | None = None, cwd: Path = REPO, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=input, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def check(args: list[str], **kwargs) -> str:
    """Run a command that must succeed; on failure show its output."""
    proc = run(args, **kwargs)
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(args)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return proc.stdout
