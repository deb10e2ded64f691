"""Training-job launcher: one interface, run as a Kubernetes batch/v1 Job or as a local subprocess.

A job runs three steps in order (the same argv in both launchers):
  1. torchrun --standalone --nproc_per_node=N -m training train RECIPE --set data.path=... --out RUN_DIR
  2. python -m training export RUN_DIR/best.pt --repo MODEL_REPO --name MODEL
     (writes the next numbered version MODEL_REPO/MODEL/<v>/model.pt + metadata.json)
  3. python -m services.inference.training_jobs announce --repo MODEL_REPO --name MODEL
     (publishes {"name", "version"} on the topic exchange `fer.models`, key `model.version.created`)
The inference service reacts to step 3 by loading the version in Triton.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from prometheus_client import Counter

log = logging.getLogger(__name__)

# Counted once per job and process: "created" at launch, "succeeded"/"failed" when first seen finished.
TRAINING_JOBS = Counter("training_jobs_total", "Training jobs by status: created, succeeded, failed.", ["status"])

JOB_LABEL_APP = "fer-training"
JOB_ID_LABEL = "fer.ai/training-job-id"
MODEL_LABEL = "fer.ai/model-name"
_JOB_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_RECIPE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class JobState:
    status: JobStatus
    message: str = ""


@dataclass(frozen=True)
class TrainingJobSpec:
    """What an admin asks for (mirrors fer.v1.StartTrainingJobRequest)."""

    job_id: str
    dataset: str  # path relative to the dataset volume, e.g. "fer2013/fer2013.csv.gz"
    recipe: str  # a recipe name under training/configs/ ("fer2013_resnet18") or a relative .yaml path
    gpus: int = 1
    model_name: str = "fer_resnet18"
    overrides: tuple[str, ...] = ()  # extra "a.b=value" recipe overrides

    def __post_init__(self) -> None:
        # The id becomes part of a Kubernetes object name and a label value: DNS-1123, short.
        if not _JOB_ID_RE.match(self.job_id):
            raise ValueError(f"job id {self.job_id!r} must be lower-case alphanumerics and '-', at most 40 chars")
        _check_relative(self.dataset, "dataset")
        if self.recipe.endswith((".yaml", ".yml")):
            _check_relative(self.recipe, "recipe")
        elif not _RECIPE_NAME_RE.match(self.recipe):
            raise ValueError(f"recipe {self.recipe!r} is neither a name nor a relative .yaml path")
        if not 0 <= self.gpus <= 16:
            raise ValueError(f"gpus must be between 0 and 16, not {self.gpus}")
        if not _RECIPE_NAME_RE.match(self.model_name):
            raise ValueError(f"model name {self.model_name!r} is not a plain name")
        for item in self.overrides:
            if "=" not in item:
                raise ValueError(f"override {item!r} is not key=value")

    @property
    def recipe_path(self) -> str:
        if self.recipe.endswith((".yaml", ".yml")):
            return self.recipe
        return f"training/configs/{self.recipe}.yaml"

    @property
    def nproc_per_node(self) -> int:
        # CPU-only jobs still need one worker process.
        return max(1, self.gpus)


def _check_relative(value: str, what: str) -> None:
    # Both end up inside a volume mount: an absolute path or '..' would escape it.
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{what} {value!r} must be a relative path inside its volume")


def training_steps(spec: TrainingJobSpec, *, data_dir: str, model_repository: str, work_dir: str,
                   python: str = "python", torchrun: str = "torchrun") -> list[list[str]]:
    """The argv of each step; the Job and the local subprocess run exactly these."""
    run_dir = f"{work_dir.rstrip('/')}/{spec.job_id}"
    train = [
        torchrun, "--standalone", f"--nproc_per_node={spec.nproc_per_node}",
        "-m", "training", "train", spec.recipe_path,
        "--set", f"data.path={data_dir.rstrip('/')}/{spec.dataset}",
        "--set", f"name={spec.model_name}",
    ]
    for item in spec.overrides:
        train += ["--set", item]
    train += ["--out", run_dir, "--cache-dir", f"{work_dir.rstrip('/')}/cache", "--no-progress"]
    export = [python, "-m", "training", "export", f"{run_dir}/best.pt",
              "--repo", model_repository, "--name", spec.model_name]
    announce = [python, "-m", "services.inference.training_jobs", "announce",
                "--repo", model_repository, "--name", spec.model_name]
    return [train, export, announce]


def steps_script(steps: list[list[str]]) -> str:
    """One POSIX shell script that stops at the first failing step."""
    return "set -eu\n" + "\n".join(shlex.join(step) for step in steps) + "\n"


# --------------------------------------------------------------------------------------------
# Kubernetes


@dataclass(frozen=True)
class KubernetesJobConfig:
    """Cluster-side settings (from the inference service's environment / Helm values)."""

    namespace: str = "default"
    image: str = "ghcr.io/fer-platform/training:latest"
    image_pull_policy: str = "IfNotPresent"
    service_account: str = ""
    dataset_pvc: str = "fer-datasets"
    model_repository_pvc: str = "fer-model-repository"
    data_mount: str = "/data"
    model_repository_mount: str = "/models"
    work_dir: str = "/work/runs"
    backoff_limit: int = 1
    ttl_seconds_after_finished: int = 86400
    active_deadline_seconds: int = 0  # 0 = no deadline
    cpu_request: str = "4"
    memory_request: str = "16Gi"
    memory_limit: str = "48Gi"
    shm_size: str = "8Gi"  # DataLoader workers and NCCL share memory through /dev/shm
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    # Secret holding AMQP_URL for the announce step; empty = not set (announce then logs only).
    amqp_secret_name: str = ""
    amqp_secret_key: str = "url"
    extra_labels: dict[str, str] = field(default_factory=dict)


TRAINING_ENV_PREFIX = "INFERENCE_TRAINING_"


def config_from_env(environ: Mapping[str, str] | None = None,
                    prefix: str = TRAINING_ENV_PREFIX) -> KubernetesJobConfig:
    """KubernetesJobConfig from INFERENCE_TRAINING_<FIELD> variables (dicts and lists as JSON)."""
    environ = os.environ if environ is None else environ
    kwargs: dict[str, Any] = {}
    for f in fields(KubernetesJobConfig):
        raw = environ.get(prefix + f.name.upper())
        if raw is None or raw == "":
            continue
        default = getattr(KubernetesJobConfig(), f.name)
        if isinstance(default, bool):
            kwargs[f.name] = raw.lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            kwargs[f.name] = int(raw)
        elif isinstance(default, (dict, tuple)):
            value = json.loads(raw)
            kwargs[f.name] = tuple(value) if isinstance(default, tuple) else dict(value)
        else:
            kwargs[f.name] = raw
    return KubernetesJobConfig(**kwargs)


def job_name(job_id: str) -> str:
    return f"fer-train-{job_id}"


def build_job(spec: TrainingJobSpec, cfg: KubernetesJobConfig) -> dict[str, Any]:
    """The batch/v1 Job body for one training run (plain dict, as the API accepts it)."""
    labels = {
        "app.kubernetes.io/name": JOB_LABEL_APP,
        "app.kubernetes.io/part-of": "fer-platform",
        "app.kubernetes.io/component": "training",
        JOB_ID_LABEL: spec.job_id,
        MODEL_LABEL: spec.model_name,
        **cfg.extra_labels,
    }
    steps = training_steps(spec, data_dir=cfg.data_mount, model_repository=cfg.model_repository_mount,
                           work_dir=cfg.work_dir)
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": cfg.cpu_request, "memory": cfg.memory_request},
        "limits": {"memory": cfg.memory_limit},
    }
    if spec.gpus > 0:
        # Extended resources: the request must equal the limit, so setting the limit is enough.
        resources["limits"]["nvidia.com/gpu"] = str(spec.gpus)
    env = [
        {"name": "GPUS", "value": str(spec.gpus)},
        {"name": "TRAINING_JOB_ID", "value": spec.job_id},
        {"name": "MODEL_NAME", "value": spec.model_name},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if cfg.amqp_secret_name:
        env.append({"name": "AMQP_URL", "valueFrom": {"secretKeyRef": {
            "name": cfg.amqp_secret_name, "key": cfg.amqp_secret_key}}})
    container: dict[str, Any] = {
        "name": "train",
        "image": cfg.image,
        "imagePullPolicy": cfg.image_pull_policy,
        "command": ["/bin/sh", "-c", steps_script(steps)],
        "env": env,
        "resources": resources,
        "volumeMounts": [
            {"name": "dataset", "mountPath": cfg.data_mount, "readOnly": True},
            {"name": "model-repository", "mountPath": cfg.model_repository_mount},
            {"name": "work", "mountPath": cfg.work_dir},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
        "volumes": [
            {"name": "dataset", "persistentVolumeClaim": {"claimName": cfg.dataset_pvc, "readOnly": True}},
            {"name": "model-repository", "persistentVolumeClaim": {"claimName": cfg.model_repository_pvc}},
            {"name": "work", "emptyDir": {}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": cfg.shm_size}},
        ],
    }
    if cfg.service_account:
        pod_spec["serviceAccountName"] = cfg.service_account
        pod_spec["automountServiceAccountToken"] = False
    if cfg.node_selector:
        pod_spec["nodeSelector"] = dict(cfg.node_selector)
    if cfg.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in cfg.tolerations]
    job_spec: dict[str, Any] = {
        "backoffLimit": cfg.backoff_limit,
        "ttlSecondsAfterFinished": cfg.ttl_seconds_after_finished,
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if cfg.active_deadline_seconds > 0:
        job_spec["activeDeadlineSeconds"] = cfg.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(spec.job_id),
            "namespace": cfg.namespace,
            "labels": labels,
            "annotations": {
                "fer.ai/dataset": spec.dataset,
                "fer.ai/recipe": spec.recipe,
                "fer.ai/gpus": str(spec.gpus),
            },
        },
        "spec": job_spec,
    }


def job_state_from_status(status: dict[str, Any] | None) -> JobState:
    """Map a batch/v1 JobStatus (dict, camelCase keys) to queued/running/succeeded/failed."""
    status = status or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        # "SuccessCriteriaMet"/"FailureTarget" come before "Complete"/"Failed" on 1.31+.
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return JobState(JobStatus.SUCCEEDED, cond.get("message") or "")
        if cond.get("type") in ("Failed", "FailureTarget"):
            return JobState(JobStatus.FAILED, cond.get("message") or cond.get("reason") or "failed")
    if status.get("succeeded"):
        return JobState(JobStatus.SUCCEEDED)
    if (status.get("active") or 0) > 0 and (status.get("ready") is None or status.get("ready", 0) > 0):
        return JobState(JobStatus.RUNNING)
    if (status.get("active") or 0) > 0:
        # Pod created but not ready yet (image pull, waiting for a GPU node).
        return JobState(JobStatus.QUEUED, "pod starting")
    return JobState(JobStatus.QUEUED)


class JobNotFound(LookupError):
    pass


class TrainingLauncher(Protocol):
    def launch(self, spec: TrainingJobSpec) -> str: ...

    def status(self, job_id: str) -> JobState: ...


class _FinishedCounter:
    """Counts each job's terminal status once, however often its status is read."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def observe(self, job_id: str, state: JobState) -> JobState:
        if state.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            with self._lock:
                if job_id in self._seen:
                    return state
                self._seen.add(job_id)
            TRAINING_JOBS.labels(status=state.status.value).inc()
        return state


class KubernetesLauncher:
    """Creates and reads Jobs with the official client (in-cluster config by default)."""

    def __init__(self, cfg: KubernetesJobConfig, api_client: Any | None = None) -> None:
        from kubernetes import client, config as kube_config

        if api_client is None:
            try:
                kube_config.load_incluster_config()
            except kube_config.ConfigException:
                kube_config.load_kube_config()
            api_client = client.ApiClient()
        self.cfg = cfg
        self._finished = _FinishedCounter()
        self._batch = client.BatchV1Api(api_client)
        self._api_exception = client.exceptions.ApiException

    def launch(self, spec: TrainingJobSpec) -> str:
        body = build_job(spec, self.cfg)
        try:
            self._batch.create_namespaced_job(namespace=self.cfg.namespace, body=body)
        except self._api_exception as exc:
            if exc.status == 409:
                raise FileExistsError(f"training job {spec.job_id} already exists") from exc
            raise
        TRAINING_JOBS.labels(status="created").inc()
        log.info("created Job %s/%s (gpus=%d)", self.cfg.namespace, body["metadata"]["name"], spec.gpus)
        return body["metadata"]["name"]

    def status(self, job_id: str) -> JobState:
        try:
            job = self._batch.read_namespaced_job_status(name=job_name(job_id), namespace=self.cfg.namespace)
        except self._api_exception as exc:
            if exc.status == 404:
                raise JobNotFound(job_id) from exc
            raise
        status = job.status.to_dict() if job.status is not None else {}
        # to_dict() gives snake_case; the mapper reads the wire (camelCase) names it uses.
        return self._finished.observe(job_id, job_state_from_status({
            "conditions": status.get("conditions"),
            "succeeded": status.get("succeeded"),
            "failed": status.get("failed"),
            "active": status.get("active"),
            "ready": status.get("ready"),
        }))

    def delete(self, job_id: str) -> None:
        from kubernetes import client

        self._batch.delete_namespaced_job(
            name=job_name(job_id), namespace=self.cfg.namespace,
            body=client.V1DeleteOptions(propagation_policy="Background"))


# --------------------------------------------------------------------------------------------
# Local (make dev)


@dataclass(frozen=True)
class LocalJobConfig:
    data_dir: str  # the local counterpart of the dataset volume
    model_repository: str
    work_dir: str = "var/training-runs"
    log_dir: str = "var/training-logs"
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
        self._finished = _FinishedCounter()

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
            if state.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
                return state
            time.sleep(0.05)
        return self.status(job_id)

    def cancel(self, job_id: str) -> None:
        with self._lock:
            proc = self._procs.get(job_id)
        if proc is not None and proc.poll() is None:
            proc.terminate()


# --------------------------------------------------------------------------------------------
# Announcing a new version (the last step of a job)

MODELS_EXCHANGE = "fer.models"
VERSION_CREATED_KEY = "model.version.created"


def latest_version(repository: str | os.PathLike[str], name: str) -> int:
    """The highest numbered version of `name` that has its metadata (i.e. was fully exported)."""
    model_dir = Path(repository) / name
    versions = [int(p.name) for p in model_dir.iterdir()
                if p.name.isdigit() and (p / "metadata.json").is_file()] if model_dir.is_dir() else []
    if not versions:
        raise FileNotFoundError(f"no exported version of {name!r} under {model_dir}")
    return max(versions)


def announce_version(amqp_url: str, name: str, version: int) -> None:
    """Publish {"name", "version"} persistently on the fer.models topic exchange."""
    import pika

    body = json.dumps({"name": name, "version": version}).encode()
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.exchange_declare(MODELS_EXCHANGE, exchange_type="topic", durable=True)
        channel.confirm_delivery()  # the job only succeeds once the broker has the message
        channel.basic_publish(MODELS_EXCHANGE, VERSION_CREATED_KEY, body, pika.BasicProperties(
            content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent))
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m services.inference.training_jobs")
    sub = parser.add_subparsers(dest="command", required=True)
    ann = sub.add_parser("announce", help="announce the latest exported version on RabbitMQ (AMQP_URL)")
    ann.add_argument("--repo", required=True, help="model repository root")
    ann.add_argument("--name", required=True, help="model name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)
    version = latest_version(args.repo, args.name)
    amqp_url = os.environ.get("AMQP_URL", "")
    if not amqp_url:
        # make dev without a broker: the local launcher's caller sees the job finish instead.
        log.info("AMQP_URL is not set: version %s/%d not announced", args.name, version)
        print(json.dumps({"name": args.name, "version": version, "announced": False}))
        return 0
    announce_version(amqp_url, args.name, version)
    log.info("announced %s version %d on %s", args.name, version, MODELS_EXCHANGE)
    print(json.dumps({"name": args.name, "version": version, "announced": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
