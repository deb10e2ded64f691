"""The local launcher (`make dev`): the same steps as a subprocess chain, one background thread per job."""
from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.inference.training.launcher import (
    FINISHED,
    TRAINING_JOBS,
    FinishedCounter,
    JobNotFound,
    JobState,
    JobStatus,
    job_name,
)
from services.inference.training.spec import TrainingJobSpec, training_steps

log = logging.getLogger(__name__)


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


class LocalLauncher:
    """Runs the same steps as a subprocess chain, one background thread per job."""

    def __init__(self, cfg: LocalJobConfig) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self._jobs: dict[str, JobState] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._finished = FinishedCounter()

    def steps(self, spec: TrainingJobSpec) -> list[list[str]]:
        # torchrun from the same environment as the interpreter.
        torchrun = self.cfg.torchrun or str(Path(self.cfg.python).with_name("torchrun"))
        return training_steps(spec, data_dir=self.cfg.data_dir, model_repository=self.cfg.model_repository,
                              work_dir=self.cfg.work_dir, python=self.cfg.python, torchrun=torchrun)

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
        log_path = Path(self.cfg.log_dir) / f"{spec.job_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.cfg.env, "GPUS": str(spec.gpus), "TRAINING_JOB_ID": spec.job_id,
               "MODEL_NAME": spec.model_name, "PYTHONUNBUFFERED": "1"}
        self._set(spec.job_id, JobState(JobStatus.RUNNING))
        with open(log_path, "ab") as out:
            for step in steps:
                out.write(f"$ {shlex.join(step)}\n".encode())
                out.flush()
                proc = subprocess.Popen(step, cwd=self.cfg.cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
                with self._lock:
                    self._procs[spec.job_id] = proc
                code = proc.wait()
                if code != 0:
                    msg = f"step {step[0]} {' '.join(step[1:4])} exited {code}; log {log_path}"
                    log.warning("training job %s failed: %s", spec.job_id, msg)
                    self._set(spec.job_id, JobState(JobStatus.FAILED, msg))
                    return
        self._set(spec.job_id, JobState(JobStatus.SUCCEEDED))

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

    def wait(self, job_id: str, timeout: float) -> JobState:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.status(job_id)
            if state.status in FINISHED:
                return state
            time.sleep(0.05)
        return self.status(job_id)

    def cancel(self, job_id: str) -> None:
        with self._lock:
            proc = self._procs.get(job_id)
        if proc is not None and proc.poll() is None:
            proc.terminate()
