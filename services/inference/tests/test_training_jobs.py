"""The training-job launcher against an emulated Kubernetes API (kmock) and as a local subprocess.

kmock stores what the client sends but validates nothing, so every Job body is also checked
against the Kubernetes 1.31 OpenAPI schema with kubernetes-validate in strict mode.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import textwrap
import threading
from pathlib import Path

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

from services.inference.training_jobs import (
    JOB_ID_LABEL,
    JobNotFound,
    JobStatus,
    KubernetesJobConfig,
    KubernetesLauncher,
    LocalJobConfig,
    LocalLauncher,
    TrainingJobSpec,
    build_job,
    job_name,
    job_state_from_status,
    steps_script,
    training_steps,
)

K8S_VERSION = "1.31.0"
REPO_ROOT = Path(__file__).resolve().parents[3]
NS = "fer"


def validate_strict(body: dict) -> None:
    try:
        kubernetes_validate.validate(body, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.path)
        pytest.fail(f"Job body fails the {K8S_VERSION} schema at {path}: {exc.message}")


GPU_CFG = KubernetesJobConfig(
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


# ---------------------------------------------------------------- the Job body


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
    assert lines[2] == "python -m training export /work/runs/abc-123/best.pt --repo /models --name fer_resnet18"
    assert lines[3] == "python -m services.inference.training_jobs announce --repo /models --name fer_resnet18"


def test_minimal_config_without_optional_parts_is_valid() -> None:
    body = build_job(TrainingJobSpec(job_id="x", dataset="d.csv", recipe="smoke.yaml", gpus=0), KubernetesJobConfig())
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


@pytest.mark.parametrize("kwargs, match", [
    ({"job_id": "Bad_ID"}, "job id"),
    ({"job_id": "x" * 41}, "job id"),
    ({"dataset": "/etc/passwd"}, "dataset"),
    ({"dataset": "../other/data.csv"}, "dataset"),
    ({"recipe": "../../evil.yaml"}, "recipe"),
    ({"recipe": "a b"}, "recipe"),
    ({"gpus": -1}, "gpus"),
    ({"gpus": 17}, "gpus"),
    ({"overrides": ("noequals",)}, "override"),
])
def test_bad_specs_are_rejected(kwargs: dict, match: str) -> None:
    base = {"job_id": "ok", "dataset": "d.csv", "recipe": "r", "gpus": 1}
    with pytest.raises(ValueError, match=match):
        TrainingJobSpec(**{**base, **kwargs})


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


# ---------------------------------------------------------------- against the emulator


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


# ---------------------------------------------------------------- the local launcher (make dev)


FAKE_TRAINING = textwrap.dedent('''
    """Stand-in for the training CLI (same arguments): records each step and writes a model version."""
    import json, os, sys
    from pathlib import Path

    cmd, args = sys.argv[1], sys.argv[2:]
    log = Path(os.environ["STEP_LOG"])
    with log.open("a") as f:
        f.write(json.dumps({"cmd": cmd, "args": args, "gpus": os.environ["GPUS"],
                            "world": os.environ.get("FAKE_WORLD", "")}) + "\\n")
    if cmd == "train":
        if os.environ.get("FAIL_TRAIN"):
            sys.exit(3)
        out = Path(args[args.index("--out") + 1])
        out.mkdir(parents=True)
        (out / "best.pt").write_bytes(b"ckpt")
    if cmd == "export":
        assert Path(args[0]).is_file(), args[0]
        repo = Path(args[args.index("--repo") + 1]) / args[args.index("--name") + 1]
        versions = [int(p.name) for p in repo.glob("*") if p.name.isdigit()] if repo.exists() else []
        out = repo / str(max(versions, default=0) + 1)
        out.mkdir(parents=True)
        (out / "model.pt").write_bytes(b"pt")
        (out / "metadata.json").write_text("{}")
        print(out)
''')

FAKE_TORCHRUN = textwrap.dedent('''\
    #!/bin/sh
    # Stand-in for torchrun: drop its own flags, run the module with the world size it was given.
    nproc=1
    while [ "$#" -gt 0 ]; do
      case "$1" in
        --nproc_per_node=*) nproc="${1#*=}"; shift ;;
        --standalone) shift ;;
        *) break ;;
      esac
    done
    FAKE_WORLD="$nproc" exec "%s" "$@"
''')


@pytest.fixture()
def local_setup(tmp_path: Path):
    root = tmp_path / "repo"
    (root / "training").mkdir(parents=True)
    (root / "training" / "__init__.py").write_text("")
    (root / "training" / "__main__.py").write_text(FAKE_TRAINING)
    torchrun = tmp_path / "torchrun"
    torchrun.write_text(FAKE_TORCHRUN % sys.executable)
    torchrun.chmod(torchrun.stat().st_mode | stat.S_IXUSR)
    steps_log = tmp_path / "steps.jsonl"
    cfg = LocalJobConfig(data_dir=str(tmp_path / "data"), model_repository=str(tmp_path / "models"),
                         work_dir=str(tmp_path / "runs"), log_dir=str(tmp_path / "logs"),
                         python=sys.executable, torchrun=str(torchrun), cwd=str(root),
                         # The real announce module; no broker, so it only reports the version.
                         env={"STEP_LOG": str(steps_log), "PYTHONPATH": str(REPO_ROOT), "AMQP_URL": ""})
    return cfg, steps_log


def test_local_launcher_runs_the_same_steps_and_produces_a_version(local_setup) -> None:
    cfg, steps_log = local_setup
    launcher = LocalLauncher(cfg)
    spec = TrainingJobSpec(job_id="local-1", dataset="fer2013/small.csv", recipe="smoke", gpus=2)
    launcher.launch(spec)
    state = launcher.wait("local-1", timeout=60)
    assert state.status is JobStatus.SUCCEEDED, state.message

    records = [json.loads(line) for line in steps_log.read_text().splitlines()]
    assert [r["cmd"] for r in records] == ["train", "export"]  # announce is the real module
    assert records[0]["world"] == "2" and records[0]["gpus"] == "2"
    assert f"data.path={cfg.data_dir}/fer2013/small.csv" in records[0]["args"]
    assert (Path(cfg.model_repository) / "fer_resnet18" / "1" / "model.pt").is_file()
    log_text = (Path(cfg.log_dir) / "local-1.log").read_text()
    assert '"name": "fer_resnet18", "version": 1, "announced": false' in log_text

    # Same argv as the Kubernetes Job, apart from the paths and interpreters.
    k8s_steps = training_steps(spec, data_dir="/data", model_repository="/models", work_dir="/work/runs")
    local_steps = launcher.steps(spec)
    assert [s[s.index("-m"):s.index("-m") + 3] for s in local_steps] == [s[s.index("-m"):s.index("-m") + 3] for s in k8s_steps]

    with pytest.raises(FileExistsError):
        launcher.launch(spec)
    launcher2 = LocalLauncher(cfg)
    launcher2.launch(TrainingJobSpec(job_id="local-2", dataset="fer2013/small.csv", recipe="smoke", gpus=0))
    assert launcher2.wait("local-2", timeout=60).status is JobStatus.SUCCEEDED
    assert (Path(cfg.model_repository) / "fer_resnet18" / "2" / "metadata.json").is_file()


def test_local_launcher_stops_at_the_first_failing_step(local_setup) -> None:
    cfg, steps_log = local_setup
    cfg = LocalJobConfig(**{**cfg.__dict__, "env": {**cfg.env, "FAIL_TRAIN": "1"}})
    launcher = LocalLauncher(cfg)
    launcher.launch(TrainingJobSpec(job_id="bad", dataset="d.csv", recipe="smoke", gpus=1))
    state = launcher.wait("bad", timeout=60)
    assert state.status is JobStatus.FAILED
    assert "exited 3" in state.message
    assert [json.loads(line)["cmd"] for line in steps_log.read_text().splitlines()] == ["train"]
    assert not Path(cfg.model_repository).exists()
    with pytest.raises(JobNotFound):
        launcher.status("other")


def test_steps_script_is_valid_posix_shell(tmp_path: Path) -> None:
    spec = TrainingJobSpec(job_id="sh", dataset="a b/c.csv", recipe="r", gpus=1, overrides=("x='y'",))
    script = steps_script(training_steps(spec, data_dir="/data", model_repository="/models", work_dir="/w"))
    path = tmp_path / "s.sh"
    path.write_text(script)
    assert os.system(f"sh -n {path}") == 0


def test_config_from_env_reads_every_kind_of_field() -> None:
    from services.inference.training_jobs import config_from_env

    cfg = config_from_env({
        "INFERENCE_TRAINING_NAMESPACE": "ml",
        "INFERENCE_TRAINING_IMAGE": "r/fer-training:2",
        "INFERENCE_TRAINING_BACKOFF_LIMIT": "3",
        "INFERENCE_TRAINING_NODE_SELECTOR": '{"pool": "gpu"}',
        "INFERENCE_TRAINING_TOLERATIONS": '[{"key": "nvidia.com/gpu", "operator": "Exists"}]',
        "INFERENCE_TRAINING_SERVICE_ACCOUNT": "",  # empty keeps the default
        "UNRELATED": "x",
    })
    assert cfg.namespace == "ml" and cfg.image == "r/fer-training:2" and cfg.backoff_limit == 3
    assert cfg.node_selector == {"pool": "gpu"}
    assert cfg.tolerations == ({"key": "nvidia.com/gpu", "operator": "Exists"},)
    assert cfg.service_account == KubernetesJobConfig().service_account
    validate_strict(build_job(TrainingJobSpec(job_id="e", dataset="d", recipe="r", gpus=1), cfg))


# ---------------------------------------------------------------- announcing on RabbitMQ


def test_latest_version_ignores_half_written_versions(tmp_path: Path) -> None:
    from services.inference.training_jobs import latest_version

    for v, complete in ((1, True), (2, True), (3, False)):
        d = tmp_path / "m" / str(v)
        d.mkdir(parents=True)
        if complete:
            (d / "metadata.json").write_text("{}")
    (tmp_path / "m" / ".4.tmp").mkdir()
    assert latest_version(tmp_path, "m") == 2
    with pytest.raises(FileNotFoundError):
        latest_version(tmp_path, "other")


def test_announce_publishes_the_new_version_on_rabbitmq(tmp_path: Path) -> None:
    import uuid

    import pika

    from services.inference.training_jobs import MODELS_EXCHANGE, VERSION_CREATED_KEY, main

    url = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    try:
        conn = pika.BlockingConnection(pika.URLParameters(url))
    except pika.exceptions.AMQPConnectionError as exc:
        pytest.fail(f"RabbitMQ is not reachable at {url} ({exc!r}): start the local RabbitMQ", pytrace=False)
    try:
        ch = conn.channel()
        ch.exchange_declare(MODELS_EXCHANGE, exchange_type="topic", durable=True)
        queue = ch.queue_declare(f"test.models.{uuid.uuid4().hex}", exclusive=True, auto_delete=True).method.queue
        ch.queue_bind(queue, MODELS_EXCHANGE, routing_key=VERSION_CREATED_KEY)
        (tmp_path / "fer_resnet18" / "7").mkdir(parents=True)
        (tmp_path / "fer_resnet18" / "7" / "metadata.json").write_text("{}")
        old = os.environ.get("AMQP_URL")
        os.environ["AMQP_URL"] = url
        try:
            assert main(["announce", "--repo", str(tmp_path), "--name", "fer_resnet18"]) == 0
        finally:
            if old is None:
                os.environ.pop("AMQP_URL")
            else:
                os.environ["AMQP_URL"] = old
        method, props, body = ch.basic_get(queue, auto_ack=True)
        assert method is not None, "no message reached the bound queue"
        assert method.routing_key == VERSION_CREATED_KEY
        assert props.content_type == "application/json" and props.delivery_mode == 2
        assert json.loads(body) == {"name": "fer_resnet18", "version": 7}
    finally:
        conn.close()


def test_local_job_with_the_real_training_cli_exports_and_announces_a_version(tmp_path: Path) -> None:
    """train -> export -> announce with the project's own training CLI on a tiny synthetic FER2013 CSV
    (one short epoch on the CPU): the launcher's argv must stay in step with that CLI."""
    import gzip
    import random
    import uuid

    import pika

    from services.inference.training_jobs import MODELS_EXCHANGE, VERSION_CREATED_KEY

    url = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    try:
        conn = pika.BlockingConnection(pika.URLParameters(url))
    except pika.exceptions.AMQPConnectionError as exc:
        pytest.fail(f"RabbitMQ is not reachable at {url} ({exc!r}): start the local RabbitMQ", pytrace=False)
    ch = conn.channel()
    ch.exchange_declare(MODELS_EXCHANGE, exchange_type="topic", durable=True)
    queue = ch.queue_declare(f"test.models.{uuid.uuid4().hex}", exclusive=True, auto_delete=True).method.queue
    ch.queue_bind(queue, MODELS_EXCHANGE, routing_key=VERSION_CREATED_KEY)

    rng = random.Random(0)
    csv = tmp_path / "data" / "fer2013" / "tiny.csv.gz"
    csv.parent.mkdir(parents=True)
    with gzip.open(csv, "wt") as f:
        f.write("emotion,pixels,Usage\n")
        for usage, n in (("Training", 35), ("PublicTest", 14), ("PrivateTest", 14)):
            for i in range(n):
                f.write(f"{i % 7},{' '.join(str(rng.randrange(256)) for _ in range(48 * 48))},{usage}\n")
    cfg = LocalJobConfig(data_dir=str(tmp_path / "data"), model_repository=str(tmp_path / "models"),
                         work_dir=str(tmp_path / "runs"), log_dir=str(tmp_path / "logs"),
                         python=sys.executable, cwd=str(REPO_ROOT), env={"AMQP_URL": url})
    launcher = LocalLauncher(cfg)
    launcher.launch(TrainingJobSpec(
        job_id="real-cli", dataset="fer2013/tiny.csv.gz", recipe="fer2013_resnet18_cpu", gpus=0,
        overrides=("epochs=1", "batch_size=16", "eval_batch_size=32", "max_steps_per_epoch=1", "num_threads=1")))
    try:
        state = launcher.wait("real-cli", timeout=240)
        log_text = (tmp_path / "logs" / "real-cli.log").read_text()
        assert state.status is JobStatus.SUCCEEDED, f"{state.message}\n{log_text[-3000:]}"
        version_dir = tmp_path / "models" / "fer_resnet18" / "1"
        assert (version_dir / "model.pt").is_file() and (version_dir / "metadata.json").is_file()
        method, _, body = ch.basic_get(queue, auto_ack=True)
        assert method is not None, "the job finished without announcing its version"
        assert json.loads(body) == {"name": "fer_resnet18", "version": 1}
    finally:
        launcher.cancel("real-cli")
        conn.close()
