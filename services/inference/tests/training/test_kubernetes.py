"""The Kubernetes launcher against an emulated Kubernetes API (kmock), configured by TrainingSettings.

kmock stores what the client sends but validates nothing, so every Job body is also checked
against the Kubernetes 1.31 OpenAPI schema with kubernetes-validate in strict mode.
"""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

try:
    import kmock
    import kubernetes_validate
    from kmock._internal.apps import Server
    from kubernetes import client
except ImportError as exc:  # fail loudly: these tests must never be skipped silently
    raise ImportError(
        f"{exc}: install the deploy test deps with `bash scripts/install-deploy-tools.sh` "
        "(or pip install kubernetes kmock kubernetes-validate)") from exc

from services.inference.config import TrainingSettings
from services.inference.training.kubernetes import (
    JOB_ID_LABEL,
    KubernetesLauncher,
    build_job,
    failure_message,
    job_state_from_status,
)
from services.inference.training.launcher import JobNotFound, JobState, JobStatus, job_name
from services.inference.training.spec import TrainingJobSpec

K8S_VERSION = "1.31.0"
NS = "fer"


def validate_strict(body: dict) -> None:
    try:
        kubernetes_validate.validate(body, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.path)
        pytest.fail(f"Job body fails the {K8S_VERSION} schema at {path}: {exc.message}")


GPU_CFG = TrainingSettings(
    namespace=NS,
    image="registry.example/fer/training:1.2.3",
    service_account="fer-training",
    dataset_pvc="fer-datasets",
    model_repository_pvc="fer-model-repository",
    backoff_limit=2,
    ttl_seconds_after_finished=3600,
    active_deadline_seconds=86400,
    node_selector={"nvidia.com/gpu.present": "true"},
    tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
    amqp_secret_name="fer-platform-amqp",
)


def _container(body: dict) -> dict:
    (container,) = body["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("gpus", [0, 1, 4, 8])
def test_job_body_is_schema_valid_and_maps_gpus(gpus: int) -> None:
    spec = TrainingJobSpec(job_id=f"j{gpus}", dataset="fer2013/fer2013.csv.gz", recipe="fer2013_resnet18", gpus=gpus)
    body = build_job(spec, GPU_CFG)
    validate_strict(body)

    container = _container(body)
    script = container["command"][2]
    assert f"--nproc_per_node={max(gpus, 1)}" in script
    limits = container["resources"]["limits"]
    if gpus:
        assert limits["nvidia.com/gpu"] == str(gpus)
    else:
        assert "nvidia.com/gpu" not in limits
    assert {"name": "GPUS", "value": str(gpus)} in container["env"]


def test_job_body_carries_volumes_limits_and_lifecycle() -> None:
    spec = TrainingJobSpec(job_id="abc-123", dataset="fer2013/fer2013.csv.gz", recipe="fer2013_resnet18", gpus=2)
    body = build_job(spec, GPU_CFG)
    validate_strict(body)

    assert body["metadata"]["name"] == "fer-train-abc-123"
    assert body["metadata"]["namespace"] == NS
    assert body["spec"]["backoffLimit"] == 2
    assert body["spec"]["ttlSecondsAfterFinished"] == 3600
    assert body["spec"]["activeDeadlineSeconds"] == 86400
    pod = body["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["serviceAccountName"] == "fer-training"
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"dataset": "fer-datasets", "model-repository": "fer-model-repository"}
    mounts = {m["name"]: m for m in _container(body)["volumeMounts"]}
    assert mounts["dataset"]["readOnly"] is True
    assert not mounts["model-repository"].get("readOnly")
    assert body["spec"]["template"]["metadata"]["labels"][JOB_ID_LABEL] == "abc-123"
    env = {e["name"]: e for e in _container(body)["env"]}
    assert env["AMQP_URL"]["valueFrom"]["secretKeyRef"]["name"] == "fer-platform-amqp"

    script = _container(body)["command"][2]
    lines = script.strip().splitlines()
    assert lines[0] == "set -eu"  # a failed step must fail the Job
    assert lines[1].startswith("torchrun --standalone --nproc_per_node=2 -m training train training/configs/fer2013_resnet18.yaml")
    assert "--set data.path=/data/fer2013/fer2013.csv.gz" in lines[1] and "--out /work/runs/abc-123" in lines[1]
    assert lines[2] == ("python -m training evaluate /work/runs/abc-123/best.pt --out /work/runs/abc-123/evaluation "
                        "--cache-dir /work/runs/cache")
    assert lines[3] == ("python -m training export /work/runs/abc-123/best.pt --repo /models --name fer_resnet18 "
                        "--metrics /work/runs/abc-123/evaluation/metrics.json --attach "
                        "/work/runs/abc-123/evaluation/report.md /work/runs/abc-123/evaluation/confusion_matrix.png "
                        "/work/runs/abc-123/evaluation/confusion_matrix.json /work/runs/abc-123/training_curve.png "
                        "/work/runs/abc-123/history.csv")
    assert lines[4] == "python -m services.inference.training.announce --repo /models --name fer_resnet18"
    # A failing step's `error:` line becomes the pod's termination message (else the end of its log).
    container = _container(body)
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert env["TRAINING_ERROR_FILE"]["value"] == container["terminationMessagePath"] == "/dev/termination-log"


def test_job_pod_meets_pod_security_restricted() -> None:
    body = build_job(TrainingJobSpec(job_id="ps", dataset="d.csv", recipe="smoke.yaml", gpus=1), GPU_CFG)
    pod = body["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = _container(body)["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == ["ALL"]


def test_minimal_config_without_optional_parts_is_valid() -> None:
    body = build_job(TrainingJobSpec(job_id="x", dataset="d.csv", recipe="smoke.yaml", gpus=0), TrainingSettings())
    validate_strict(body)
    pod = body["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod and "serviceAccountName" not in pod
    assert "activeDeadlineSeconds" not in body["spec"]


def test_overrides_are_quoted_for_the_shell() -> None:
    spec = TrainingJobSpec(job_id="q", dataset="my data/set.csv", recipe="r", gpus=1,
                           overrides=("epochs=3", "data.limit=$(rm -rf /)"))
    script = _container(build_job(spec, GPU_CFG))["command"][2]
    assert "'data.path=/data/my data/set.csv'" in script
    assert "'data.limit=$(rm -rf /)'" in script  # single-quoted: never expanded


@pytest.mark.parametrize("status, expected", [
    (None, JobStatus.QUEUED),
    ({}, JobStatus.QUEUED),
    ({"active": 1, "ready": 0}, JobStatus.QUEUED),
    ({"active": 1, "ready": 1}, JobStatus.RUNNING),
    ({"active": 1}, JobStatus.RUNNING),
    ({"succeeded": 1}, JobStatus.SUCCEEDED),
    ({"conditions": [{"type": "Complete", "status": "True"}]}, JobStatus.SUCCEEDED),
    ({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}, JobStatus.FAILED),
    ({"conditions": [{"type": "FailureTarget", "status": "True"}], "active": 1}, JobStatus.FAILED),
    ({"conditions": [{"type": "Failed", "status": "False"}], "active": 1, "ready": 1}, JobStatus.RUNNING),
])
def test_status_mapping(status: dict | None, expected: JobStatus) -> None:
    assert job_state_from_status(status).status is expected


@pytest.fixture()
def emulator():
    """kmock's Kubernetes emulator on 127.0.0.1 in its own event loop, for the synchronous client."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict = {}

    async def serve() -> None:
        async with kmock.KubernetesEmulator() as km, Server(km) as srv:
            box.update(km=km, url=str(srv.url).rstrip("/"), stop=asyncio.Event())
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(15), "kmock emulator did not start"
    conf = client.Configuration()
    conf.host = box["url"]
    api = client.ApiClient(conf)
    try:
        yield box["km"], api
    finally:
        api.close()
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(10)
        loop.close()


def _count(status: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("training_jobs_total", {"status": status}) or 0.0


def _set_status(api: client.ApiClient, job_id: str, status: dict) -> None:
    # Plays the Job controller, which the emulator does not run.
    client.BatchV1Api(api).patch_namespaced_job_status(job_name(job_id), NS, {"status": status})


def test_launch_creates_the_job_and_reads_its_lifecycle(emulator) -> None:
    km, api = emulator
    launcher = KubernetesLauncher(GPU_CFG, api_client=api)
    spec = TrainingJobSpec(job_id="run-1", dataset="fer2013/fer2013.csv.gz", recipe="fer2013_resnet18", gpus=4)

    assert launcher.launch(spec) == "fer-train-run-1"

    # What reached the API server, exactly as the client serialised it.
    stored = [obj for (res, ns, name), obj in km.objects.items() if res.plural == "jobs"]
    assert len(stored) == 1
    sent = json.loads(json.dumps(stored[0].raw))
    validate_strict(sent)
    assert sent == build_job(spec, GPU_CFG)
    assert _container(sent)["resources"]["limits"]["nvidia.com/gpu"] == "4"

    assert launcher.status("run-1").status is JobStatus.QUEUED
    _set_status(api, "run-1", {"active": 1, "ready": 0})
    assert launcher.status("run-1").status is JobStatus.QUEUED
    _set_status(api, "run-1", {"active": 1, "ready": 1, "startTime": "2026-01-01T00:00:00Z"})
    assert launcher.status("run-1").status is JobStatus.RUNNING
    before = _count("succeeded")
    _set_status(api, "run-1", {"active": 0, "ready": 0, "succeeded": 1, "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]})
    assert launcher.status("run-1").status is JobStatus.SUCCEEDED
    assert launcher.status("run-1").status is JobStatus.SUCCEEDED
    assert _count("succeeded") == before + 1  # counted once, however often it is read


def test_failed_job_reports_the_reason(emulator) -> None:
    _, api = emulator
    launcher = KubernetesLauncher(GPU_CFG, api_client=api)
    created, failed = _count("created"), _count("failed")
    launcher.launch(TrainingJobSpec(job_id="run-2", dataset="d.csv", recipe="r", gpus=1))
    assert _count("created") == created + 1
    _set_status(api, "run-2", {"failed": 3, "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
         "message": "Job has reached the specified backoff limit"}]})
    state = launcher.status("run-2")
    assert state.status is JobStatus.FAILED
    assert "backoff limit" in state.message
    assert _count("failed") == failed + 1


def test_duplicate_and_unknown_jobs(emulator) -> None:
    _, api = emulator
    launcher = KubernetesLauncher(GPU_CFG, api_client=api)
    spec = TrainingJobSpec(job_id="dup", dataset="d.csv", recipe="r", gpus=1)
    launcher.launch(spec)
    with pytest.raises(FileExistsError):
        launcher.launch(spec)
    with pytest.raises(JobNotFound):
        launcher.status("never-created")
    launcher.delete("dup")
    with pytest.raises(JobNotFound):
        launcher.status("dup")


@pytest.mark.parametrize("termination, reason, cause", [
    ("error: train: dataset.csv: no such file or directory\n", "Error", "train: dataset.csv: no such file or directory"),
    # FallbackToLogsOnError: the log's end, with the CLI's line before torchrun's own report.
    ("epoch 1/3 ...\nerror: bad row 3\nTraceback (most recent call last):\n  ...\nChildFailedError: boom\n", "Error", "bad row 3"),
    # No `error:` line: what the Job, the container and the output's last line say.
    ("Traceback (most recent call last):\n  File x\nMemoryError\n\n", "Error", "backoff; last output: MemoryError"),
    ("", "OOMKilled", "backoff; OOMKilled"),
    ("", "", "backoff"),
])
def test_the_cause_of_a_failure_is_one_line(termination: str, reason: str, cause: str) -> None:
    assert failure_message("backoff", termination, reason) == cause


def _pod(core: client.CoreV1Api, job_id: str, name: str, terminated: dict | None = None) -> None:
    """Plays the Job controller and the kubelet: a pod of the job, terminated as given."""
    state = {"terminated": {"exitCode": 2, **terminated}} if terminated else {"running": {}}
    core.create_namespaced_pod(NS, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {JOB_ID_LABEL: job_id}},
        "spec": {"containers": [{"name": "train", "image": "x"}]},
        "status": {"containerStatuses": [{"name": "train", "image": "x", "imageID": "", "ready": False,
                                          "restartCount": 0, "state": state}]}})


def test_a_failed_job_says_why_from_its_pod(emulator) -> None:
    _, api = emulator
    launcher = KubernetesLauncher(GPU_CFG, api_client=api)
    launcher.launch(TrainingJobSpec(job_id="run-3", dataset="absent.csv", recipe="r", gpus=1))
    _pod(client.CoreV1Api(api), "other", "fer-train-other-x", {"message": "error: train: not this one\n"})
    _pod(client.CoreV1Api(api), "run-3", "fer-train-run-3-x", {"message": "error: train: /data/absent.csv: no such file or directory\n"})
    _set_status(api, "run-3", {"failed": 1, "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]})
    state = launcher.status("run-3")
    assert state == JobState(JobStatus.FAILED, "train: /data/absent.csv: no such file or directory")


def test_progress_log_and_cancel_of_a_running_job(emulator) -> None:
    km, api = emulator
    launcher = KubernetesLauncher(GPU_CFG, api_client=api)
    launcher.launch(TrainingJobSpec(job_id="run-4", dataset="d.csv", recipe="r", gpus=1))
    assert launcher.progress("run-4") is None and launcher.log_tail("run-4", 10) == ""  # no pod yet
    _pod(client.CoreV1Api(api), "run-4", "fer-train-run-4-x")
    log_text = ("2026-12-01 INFO training.engine: progress: {\"epoch\": 0, \"epochs\": 3, \"train_loss\": null, \"val_accuracy\": null}\n"
                "2026-12-01 INFO training.engine: epoch 1/3 ...\n"
                "2026-12-01 INFO training.engine: progress: {\"epoch\": 1, \"epochs\": 3, \"train_loss\": 1.5, \"val_accuracy\": 0.4}\n"
                "2026-12-01 INFO training.engine: progress: {\"epoch\": 2, \"epochs\": 3, \"train_loss\": 1.2, \"val_accuracy\": 0.5}\n")
    km[f"get /api/v1/namespaces/{NS}/pods/fer-train-run-4-x/log"] << log_text.encode()
    assert launcher.progress("run-4") == {"epoch": 2, "epochs": 3, "train_loss": 1.2, "val_accuracy": 0.5, "history": [
        {"epoch": 1, "train_loss": 1.5, "val_accuracy": 0.4}, {"epoch": 2, "train_loss": 1.2, "val_accuracy": 0.5}]}
    assert launcher.log_tail("run-4", 10) == log_text  # the emulator ignores tail_lines; the API server does not

    cancelled = _count("cancelled")
    launcher.cancel("run-4")
    with pytest.raises(JobNotFound):
        launcher.status("run-4")
    assert _count("cancelled") == cancelled + 1
    with pytest.raises(JobNotFound):
        launcher.cancel("run-4")
    assert launcher.shutdown() == []  # Jobs outlive the service


def test_training_settings_read_every_kind_of_field(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "INFERENCE_TRAINING_LAUNCHER": "kubernetes",
        "INFERENCE_TRAINING_NAMESPACE": "ml",
        "INFERENCE_TRAINING_IMAGE": "r/fer-training:2",
        "INFERENCE_TRAINING_BACKOFF_LIMIT": "3",
        "INFERENCE_TRAINING_NODE_SELECTOR": '{"pool": "gpu"}',
        "INFERENCE_TRAINING_TOLERATIONS": '[{"key": "nvidia.com/gpu", "operator": "Exists"}]',
        "INFERENCE_TRAINING_SERVICE_ACCOUNT": "",  # empty keeps the default
        "INFERENCE_TRAINING_ACTIVE_DEADLINE_SECONDS": "",
        "UNRELATED": "x",
    }.items():
        monkeypatch.setenv(key, value)
    from services.inference.config import Settings

    cfg = Settings().training
    assert cfg.launcher == "kubernetes"
    assert cfg.namespace == "ml" and cfg.image == "r/fer-training:2" and cfg.backoff_limit == 3
    assert cfg.node_selector == {"pool": "gpu"}
    assert cfg.tolerations == ({"key": "nvidia.com/gpu", "operator": "Exists"},)
    assert cfg.service_account == TrainingSettings.model_fields["service_account"].default
    assert cfg.active_deadline_seconds == TrainingSettings.model_fields["active_deadline_seconds"].default
    validate_strict(build_job(TrainingJobSpec(job_id="e", dataset="d", recipe="r", gpus=1), cfg))
    monkeypatch.setenv("INFERENCE_TRAINING_LAUNCHER", "slurm")
    with pytest.raises(ValueError, match="launcher"):
        TrainingSettings()
