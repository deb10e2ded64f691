"""The local launcher (`make dev`): the same steps as a subprocess chain, one background thread per job."""
from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.inference.training.launcher import (
    FINISHED,
    TRAINING_JOBS,
    FinishedCounter,
    JobNotFound,
    JobState,
    JobStatus,
    job_name,
)
from services.inference.training.spec import STEP_NAMES, InvalidJob, TrainingJobSpec, training_steps
from training.progress import last_error, read_progress

log = logging.getLogger(__name__)

# How much of a log's end is read for its tail and its last `error:` line.
LOG_TAIL_BYTES = 1024 * 1024


@dataclass(frozen=True)
class LocalJobConfig:
    """The service builds it from its settings (INFERENCE_TRAINING_*); tests set the rest."""

    data_dir: str  # the local counterpart of the dataset volume
    model_repository: str
    work_dir: str
    log_dir: str
    python: str = sys.executable
    torchrun: str = ""  # default: the torchrun beside `python`
    cwd: str = "."  # repository root (where `-m training` resolves)
    env: dict[str, str] = field(default_factory=dict)
    kill_after_s: float = 10.0


def read_tail(path: Path, lines: int, max_bytes: int = LOG_TAIL_BYTES) -> str:
    """The last `lines` lines of a text file ("" when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    kept = text.splitlines()[-lines:] if lines > 0 else []
    return "\n".join(kept) + ("\n" if kept else "")


class LocalLauncher:
    """Runs the same steps as a subprocess chain, one background thread per job. Each step runs in a
    process group of its own, so cancelling a job stops torchrun and every worker it started."""

    lost_message = "interrupted: the inference service stopped while the job ran (local jobs end with it)"

    def __init__(self, cfg: LocalJobConfig) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self._jobs: dict[str, JobState] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._cancelled: set[str] = set()
        self._finished = FinishedCounter()

    def steps(self, spec: TrainingJobSpec) -> list[list[str]]:
        # torchrun from the same environment as the interpreter.
        torchrun = self.cfg.torchrun or str(Path(self.cfg.python).with_name("torchrun"))
        return training_steps(spec, data_dir=self.cfg.data_dir, model_repository=self.cfg.model_repository,
                              work_dir=self.cfg.work_dir, python=self.cfg.python, torchrun=torchrun)

    def log_path(self, job_id: str) -> Path:
        return Path(self.cfg.log_dir) / f"{job_id}.log"

    def check(self, spec: TrainingJobSpec) -> None:
        """The dataset and the recipe must be there now: a job that cannot find them is refused, not run."""
        root = Path(self.cfg.data_dir).resolve()
        if not (root / spec.dataset).exists():
            raise InvalidJob(f"dataset not found: {spec.dataset} under {root}")
        if not (Path(self.cfg.cwd) / spec.recipe_path).is_file():
            raise InvalidJob(f"recipe not found: {spec.recipe_path}")

    def launch(self, spec: TrainingJobSpec) -> str:
        with self._lock:
            if spec.job_id in self._jobs:
                raise FileExistsError(f"training job {spec.job_id} already exists")
            self._jobs[spec.job_id] = JobState(JobStatus.QUEUED)
        TRAINING_JOBS.labels(status="created").inc()
        thread = threading.Thread(target=self._run, args=(spec, self.steps(spec)),
                                  name=f"train-{spec.job_id}", daemon=True)
        thread.start()
        return job_name(spec.job_id)

    def _run(self, spec: TrainingJobSpec, steps: list[list[str]]) -> None:
        log_path = self.log_path(spec.job_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.cfg.env, "GPUS": str(spec.gpus), "TRAINING_JOB_ID": spec.job_id,
               "MODEL_NAME": spec.model_name, "PYTHONUNBUFFERED": "1"}
        self._set(spec.job_id, JobState(JobStatus.RUNNING))
        state: JobState | None = None  # FAILED once a step fails; else decided by the cancel check at the end
        with open(log_path, "ab") as out:
            for name, step in zip(STEP_NAMES, steps):
                with self._lock:
                    if spec.job_id in self._cancelled:
                        break
                    out.write(f"$ {shlex.join(step)}\n".encode())
                    out.flush()
                    proc = subprocess.Popen(step, cwd=self.cfg.cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
                    self._procs[spec.job_id] = proc
                code = proc.wait()
                if spec.job_id in self._cancelled:
                    break
                if code != 0:
                    cause = last_error(read_tail(log_path, 200)) or f"exited {code}; log {log_path}"
                    log.warning("training job %s failed at %s: %s", spec.job_id, name, cause)
                    state = JobState(JobStatus.FAILED, f"{name}: {cause}")
                    break
        with self._lock:
            self._procs.pop(spec.job_id, None)
        if state is None:
            cancelled = spec.job_id in self._cancelled
            state = JobState(JobStatus.CANCELLED, "cancelled") if cancelled else JobState(JobStatus.SUCCEEDED)
        self._set(spec.job_id, state)

    def _set(self, job_id: str, state: JobState) -> None:
        with self._lock:
            self._jobs[job_id] = state
        self._finished.observe(job_id, state)

    def status(self, job_id: str) -> JobState:
        with self._lock:
            try:
                return self._jobs[job_id]
            except KeyError:
                raise JobNotFound(job_id) from None

    def progress(self, job_id: str) -> dict[str, Any] | None:
        return read_progress(Path(self.cfg.work_dir) / job_id)

    def log_tail(self, job_id: str, lines: int) -> str:
        # The file outlives the process (and this launcher): a finished job's log still answers.
        return read_tail(self.log_path(job_id), lines)

    def wait(self, job_id: str, timeout: float) -> JobState:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.status(job_id)
            if state.status in FINISHED:
                return state
            time.sleep(0.05)
        return self.status(job_id)

    def cancel(self, job_id: str) -> None:
        """SIGTERM to the running step's process group (torchrun passes it to its workers), SIGKILL
        after kill_after_s; no later step starts."""
        with self._lock:
            if job_id not in self._jobs:
                raise JobNotFound(job_id)
            if self._jobs[job_id].status in FINISHED:
                return
            self._cancelled.add(job_id)
            proc = self._procs.get(job_id)
        if proc is None:  # not started yet: the thread stops before its first step
            return
        _signal_group(proc, signal.SIGTERM)
        threading.Thread(target=self._kill_later, args=(proc,), name=f"kill-{job_id}", daemon=True).start()

    def _kill_later(self, proc: subprocess.Popen[bytes]) -> None:
        try:
            proc.wait(self.cfg.kill_after_s)
        except subprocess.TimeoutExpired:
            pass  # still running: the SIGKILL below ends it
        # torchrun's workers may outlive torchrun itself by a moment: the group goes in any case.
        _signal_group(proc, signal.SIGKILL)

    def shutdown(self) -> list[str]:
        with self._lock:
            running = [job_id for job_id, state in self._jobs.items() if state.status not in FINISHED]
        for job_id in running:
            self.cancel(job_id)
        return running


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the step's pid is its group's id
    except (ProcessLookupError, PermissionError):
        pass
