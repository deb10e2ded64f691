"""The Kubernetes launcher: each job a batch/v1 Job, created and read with the official client.

The inference pod does not mount the Job's volumes (the datasets, the run's scratch space): what it
learns of a running job comes from the API server. A failed job's cause is its pod's termination
message (the `error:` line the training CLI writes to /dev/termination-log, else the end of its log);
its progress is rebuilt from the `progress:` lines of the pod's log (training/progress.py)."""
from __future__ import annotations

import logging
from typing import Any

from services.inference.config import TrainingSettings
from services.inference.training.launcher import (
    TRAINING_JOBS,
    FinishedCounter,
    JobNotFound,
    JobState,
    JobStatus,
    job_name,
)
from services.inference.training.spec import TrainingJobSpec, steps_script, training_steps
from training.progress import ERROR_MAX_CHARS, last_error, progress_from_log

log = logging.getLogger(__name__)

JOB_LABEL_APP = "fer-training"
JOB_ID_LABEL = "fer.ai/training-job-id"
MODEL_LABEL = "fer.ai/model-name"
CONTAINER = "train"
# The container's termination message file; the training CLI writes its `error:` line there.
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# A pod log read for progress is cut here (a run logs two short lines an epoch).
PROGRESS_LOG_BYTES = 4 * 1024 * 1024
TAIL_LOG_BYTES = 1024 * 1024


def build_job(spec: TrainingJobSpec, cfg: TrainingSettings) -> dict[str, Any]:
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
                           work_dir=cfg.work_mount)
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
        {"name": "TRAINING_ERROR_FILE", "value": TERMINATION_MESSAGE_PATH},
    ]
    if cfg.amqp_secret_name:
        env.append({"name": "AMQP_URL", "valueFrom": {"secretKeyRef": {
            "name": cfg.amqp_secret_name, "key": cfg.amqp_secret_key}}})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": cfg.image,
        "imagePullPolicy": cfg.image_pull_policy,
        "command": ["/bin/sh", "-c", steps_script(steps)],
        "env": env,
        "resources": resources,
        # The CLI's `error:` line when it wrote one; otherwise the log's last lines (a crash's traceback).
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "dataset", "mountPath": cfg.data_mount, "readOnly": True},
            {"name": "model-repository", "mountPath": cfg.model_repository_mount},
            {"name": "work", "mountPath": cfg.work_mount},
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
        # RuntimeDefault seccomp: admitted where Pod Security "restricted" is enforced.
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
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


def failure_message(condition: str, termination_message: str = "", reason: str = "") -> str:
    """A failed Job's cause in one line: the `error:` line of its container's termination message where
    the CLI left one; otherwise the Job's own condition ("reached the specified backoff limit"), the
    container's reason when it says more than "Error" (OOMKilled) and its last line of output."""
    cause = last_error(termination_message)
    if cause:
        return cause
    lines = [line.strip() for line in termination_message.splitlines() if line.strip()]
    parts = [condition, reason if reason not in ("", "Error", "Completed") else "",
             f"last output: {lines[-1]}" if lines else ""]
    return "; ".join(part for part in parts if part)[:ERROR_MAX_CHARS]


class KubernetesLauncher:
    """Creates and reads Jobs with the official client (in-cluster config by default)."""

    lost_message = "the Kubernetes Job is gone (deleted, or cleaned up after it ended) and how it ended was not seen"

    def __init__(self, cfg: TrainingSettings, api_client: Any | None = None) -> None:
        from kubernetes import client, config as kube_config

        if api_client is None:
            try:
                kube_config.load_incluster_config()
            except kube_config.ConfigException:
                kube_config.load_kube_config()
            api_client = client.ApiClient()
        self.cfg = cfg
        self._finished = FinishedCounter()
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._api_exception = client.exceptions.ApiException

    def check(self, spec: TrainingJobSpec) -> None:
        """Nothing to check here: the dataset volume is the Job's, not this pod's. A missing dataset
        fails the Job's first step, whose `error:` line becomes the job's message."""

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
        state = job_state_from_status({
            "conditions": status.get("conditions"),
            "succeeded": status.get("succeeded"),
            "failed": status.get("failed"),
            "active": status.get("active"),
            "ready": status.get("ready"),
        })
        if state.status is JobStatus.FAILED:
            # "BackoffLimitExceeded" says that it failed; the pod says why.
            message, reason = self._termination(job_id)
            state = JobState(JobStatus.FAILED, failure_message(state.message, message, reason))
        return self._finished.observe(job_id, state)

    def _pod(self, job_id: str) -> Any | None:
        """The job's latest pod (a retried Job has several), or None."""
        try:
            pods = self._core.list_namespaced_pod(self.cfg.namespace, label_selector=f"{JOB_ID_LABEL}={job_id}").items
        except self._api_exception as exc:
            log.warning("could not list the pods of training job %s: %s", job_id, exc.reason)
            return None
        pods = [pod for pod in pods if (pod.metadata.labels or {}).get(JOB_ID_LABEL) == job_id]
        if not pods:
            return None
        return max(pods, key=lambda pod: pod.metadata.creation_timestamp.timestamp() if pod.metadata.creation_timestamp else 0.0)

    def _termination(self, job_id: str) -> tuple[str, str]:
        """(termination message, reason) of the job's latest pod's training container, if it ended."""
        pod = self._pod(job_id)
        statuses = (pod.status.container_statuses or []) if pod is not None and pod.status is not None else []
        for container in statuses:
            terminated = container.state.terminated if container.name == CONTAINER and container.state else None
            if terminated is not None:
                return terminated.message or "", terminated.reason or ""
        return "", ""

    def _pod_log(self, job_id: str, **kwargs: Any) -> str:
        pod = self._pod(job_id)
        if pod is None:
            return ""
        try:
            # Raw bytes: the client would otherwise parse a log that happens to be JSON.
            response = self._core.read_namespaced_pod_log(pod.metadata.name, self.cfg.namespace, container=CONTAINER,
                                                          _preload_content=False, **kwargs)
        except self._api_exception as exc:
            # 400 while the container is still being created; 404 once the pod is gone.
            log.debug("no log for training job %s yet: %s", job_id, exc.reason)
            return ""
        return response.data.decode("utf-8", errors="replace")

    def progress(self, job_id: str) -> dict[str, Any] | None:
        return progress_from_log(self._pod_log(job_id, limit_bytes=PROGRESS_LOG_BYTES))

    def log_tail(self, job_id: str, lines: int) -> str:
        return self._pod_log(job_id, tail_lines=lines, limit_bytes=TAIL_LOG_BYTES)

    def cancel(self, job_id: str) -> None:
        """Deletes the Job and, in the background, its pods (SIGTERM, then the pod's grace period)."""
        try:
            self.delete(job_id)
        except self._api_exception as exc:
            if exc.status == 404:
                raise JobNotFound(job_id) from exc
            raise
        self._finished.observe(job_id, JobState(JobStatus.CANCELLED))
        log.info("deleted Job %s/%s (cancelled)", self.cfg.namespace, job_name(job_id))

    def shutdown(self) -> list[str]:
        return []  # Jobs outlive the service

    def delete(self, job_id: str) -> None:
        from kubernetes import client

        self._batch.delete_namespaced_job(
            name=job_name(job_id), namespace=self.cfg.namespace,
            body=client.V1DeleteOptions(propagation_policy="Background"))
