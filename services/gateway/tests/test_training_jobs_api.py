"""Training jobs through the gateway: the real auth service and the real TrainingService (its records in
PostgreSQL, its local launcher running a stand-in for the training CLI, so nothing trains here; the
real CLI runs once, in services/inference/tests/training/test_local.py). Every route, every refusal,
progress, the log, cancelling a running job, and the records after the service restarts."""
import asyncio
import time
import uuid
from pathlib import Path

import pytest

from fer.v1 import inference_pb2, inference_pb2_grpc
from ferkit.db import make_engine, upgrade
from ferkit.grpc_server import GrpcService, Registration
from services.inference.config import Settings, TrainingSettings
from services.inference.tests.training.fakes import fake_training_setup, process_gone
from services.inference.training.local import LocalLauncher
from services.inference.training.servicer import TrainingServicer
from services.inference.training.store import TrainingJobs
from tests.fixtures.auth import AUTH_MIGRATIONS, auth_test_settings, migrated, register_and_login, start_gateway
from tests.fixtures.databases import free_port

API = "/api/v1"
JOBS = f"{API}/training-jobs"
INFERENCE_MIGRATIONS = Path(__file__).resolve().parents[2] / "inference" / "migrations"
RECIPE = "fer2013_resnet18_cpu"
SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["TrainingService"].full_name


class TrainingService:
    """The TrainingService alone on a fixed port, which can be stopped and started again (a restart: a
    new process whose launcher knows nothing of earlier jobs)."""

    def __init__(self, settings: Settings, launcher_config) -> None:
        self.settings, self.launcher_config = settings, launcher_config
        self.jobs: TrainingJobs | None = None
        self.service: GrpcService | None = None

    async def start(self) -> None:
        self.jobs = TrainingJobs(self.settings, make_engine(self.settings.database_url), LocalLauncher(self.launcher_config))
        registration = Registration(inference_pb2_grpc.add_TrainingServiceServicer_to_server, TrainingServicer(self.jobs), SERVICE_NAME)
        self.service = GrpcService(self.settings, [registration])
        await self.service.start()

    async def stop(self) -> None:
        await self.service.stop()
        await self.jobs.close()  # as Runtime.stop does: local jobs end with the service
        await self.jobs.engine.dispose()


@pytest.fixture(scope="module")
async def training_gateway(postgres_database, tmp_path_factory):
    """One database backend (the store's own tests run on both)."""
    from services.auth.server import build, ensure_admin

    root = tmp_path_factory.mktemp("training-api")
    launcher_config, _ = fake_training_setup(root, recipes=(RECIPE,))
    data = Path(launcher_config.data_dir)
    for name in ("fer2013/ok.csv", "slow.csv", "broken.csv"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text("emotion,pixels,Usage\n")
    await asyncio.to_thread(migrated, postgres_database, AUTH_MIGRATIONS)
    await asyncio.to_thread(upgrade, INFERENCE_MIGRATIONS, postgres_database)
    auth_settings = auth_test_settings(postgres_database)
    auth_service, auth_servicer = build(auth_settings)
    await auth_service.start()
    training = TrainingService(Settings(grpc_port=free_port(), metrics_port=0, shutdown_grace_s=0.5, database_url=postgres_database,
                                        model_repository=launcher_config.model_repository, model_name="fer_test",
                                        training=TrainingSettings(data_dir=str(data))), launcher_config)
    await training.start()
    app, client, lifespan = await start_gateway(auth_addr=auth_settings.grpc_address, inference_addr=training.settings.grpc_address,
                                                grpc_timeout_s=30)
    email, password = f"admin-{uuid.uuid4().hex[:8]}@example.com", "Admin-password-42"
    await ensure_admin(auth_servicer, email, password)
    token = (await client.post(f"{API}/auth/token", data={"username": email, "password": password})).json()
    client.admin_email = email
    client.admin_headers = {"Authorization": f"Bearer {token['access_token']}"}
    client.user = await register_and_login(client)
    client.training, client.data = training, data
    yield client
    await client.aclose()
    await lifespan.__aexit__(None, None, None)
    await training.stop()
    await auth_service.stop()
    await auth_servicer.engine.dispose()


async def start(client, **body):
    job = {"dataset": "fer2013/ok.csv", "recipe": RECIPE, "gpus": 0} | body
    return await client.post(JOBS, json=job, headers=client.admin_headers)


async def followed(client, job_id: str, until=("succeeded", "failed", "cancelled"), timeout_s: float = 60.0) -> dict:
    """The job once its status is one of `until` (at once when `until` is empty)."""
    deadline = time.monotonic() + timeout_s
    while True:
        reply = await client.get(f"{JOBS}/{job_id}", headers=client.admin_headers)
        assert reply.status_code == 200, reply.text
        job = reply.json()
        if not until or job["status"] in until or time.monotonic() > deadline:
            return job
        await asyncio.sleep(0.1)


def refusal(reply) -> str:
    assert reply.status_code == 422, reply.text
    (error,) = reply.json()["detail"]
    return error["msg"]


@pytest.mark.parametrize(("method", "path"), [
    ("POST", JOBS), ("GET", JOBS), ("GET", f"{JOBS}/options"), ("GET", f"{JOBS}/job-1"), ("GET", f"{JOBS}/job-1/log"),
    ("POST", f"{JOBS}/job-1:cancel"),
])
async def test_every_route_is_for_administrators_only(training_gateway, method, path):
    client = training_gateway
    body = {"dataset": "fer2013/ok.csv", "recipe": RECIPE} if method == "POST" and path == JOBS else None
    refused = await client.request(method, path, json=body, headers=client.user["headers"])
    assert refused.status_code == 403 and refused.json() == {"detail": "this needs an administrator"}
    assert (await client.request(method, path, json=body)).status_code == 401


async def test_a_job_runs_with_its_overrides_reports_progress_and_its_log_and_makes_a_version(training_gateway):
    client = training_gateway
    started = await start(client, overrides={"epochs": 2, "optim.lr": 0.05, "model.stem": "s1pool", "augment.flip": False})
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["status"] in ("queued", "running") and body["model_name"] == "fer_test" and body["progress"] is None
    assert body["overrides"] == {"epochs": 2, "optim.lr": 0.05, "model.stem": "s1pool", "augment.flip": False}
    assert body["requested_by"] == client.admin_email
    assert started.headers["location"] == f"{JOBS}/{body['id']}"

    job = await followed(client, body["id"])
    assert job["status"] == "succeeded", job
    assert job["model_version"] == 1 and job["message"] == "" and job["finished_at"]
    assert job["progress"] == {"epoch": 1, "epochs": 3, "train_loss": 1.9, "val_accuracy": 0.25,
                               "history": [{"epoch": 1, "train_loss": 1.9, "val_accuracy": 0.25}]}

    log = await client.get(f"{JOBS}/{body['id']}/log", headers=client.admin_headers)
    assert log.status_code == 200 and log.headers["content-type"] == "text/plain; charset=utf-8"
    assert "--set epochs=2 --set optim.lr=0.05" not in log.text  # sorted by key, each its own --set
    for item in ("--set augment.flip=false", "--set epochs=2", "--set 'model.stem=\"s1pool\"'", "--set optim.lr=0.05"):
        assert item in log.text, item
    assert "$ " in log.text and "training evaluate" in log.text
    last = await client.get(f"{JOBS}/{body['id']}/log", params={"lines": 1}, headers=client.admin_headers)
    assert last.text == log.text.splitlines()[-1] + "\n"
    for lines in (0, 2001, "many"):
        assert (await client.get(f"{JOBS}/{body['id']}/log", params={"lines": lines}, headers=client.admin_headers)).status_code == 422

    listed = (await client.get(JOBS, headers=client.admin_headers)).json()
    assert listed["items"][0]["id"] == body["id"] and listed["items"][0]["status"] == "succeeded"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"lr": 0.1}, "override lr: not a tunable recipe field; tunable: epochs, batch_size"),
    ({"data.path": "/etc/passwd"}, "override data.path: not a tunable recipe field"),
    ({"epochs": 0}, "override epochs: must be an integer >= 1 and <= 1000, not 0"),
    ({"epochs": 5000}, "override epochs: must be an integer >= 1 and <= 1000, not 5000"),
    ({"optim.lr": -0.1}, "override optim.lr: must be a number > 0 and <= 10, not -0.1"),
    ({"batch_size": 32.5}, "override batch_size: must be an integer >= 1 and <= 4096, not 32.5"),
    ({"class_balance": "maybe"}, "override class_balance: must be one of none, weights, sampler, not 'maybe'"),
    ({"augment.flip": 1}, "override augment.flip: must be true or false, not 1"),
])
async def test_an_unknown_or_out_of_range_override_is_422_naming_the_key(training_gateway, overrides, message):
    client = training_gateway
    before = (await client.get(JOBS, headers=client.admin_headers)).json()["total"]
    assert refusal(await start(client, overrides={"epochs": 1, **overrides})).startswith(message)
    assert (await client.get(JOBS, headers=client.admin_headers)).json()["total"] == before


@pytest.mark.parametrize("value", [None, [1], {"a": 1}])
async def test_an_override_that_is_no_plain_value_is_422_at_the_gateway(training_gateway, value):
    reply = await start(training_gateway, overrides={"epochs": value})
    assert reply.status_code == 422 and all(error["loc"][:3] == ["body", "overrides", "epochs"] for error in reply.json()["detail"])


async def test_a_job_on_a_missing_dataset_is_refused_at_submit_with_the_cause(training_gateway):
    client = training_gateway
    before = (await client.get(JOBS, headers=client.admin_headers)).json()["total"]
    message = refusal(await start(client, dataset="jaffe/labels.csv"))
    assert message == f"dataset not found: jaffe/labels.csv under {client.data.resolve()}"
    assert refusal(await start(client, recipe="nope")) == "recipe not found: training/configs/nope.yaml"
    assert "relative path" in refusal(await start(client, dataset="../../etc/passwd"))
    assert (await client.get(JOBS, headers=client.admin_headers)).json()["total"] == before


async def test_a_failed_job_says_why_in_one_line(training_gateway):
    client = training_gateway
    started = (await start(client, dataset="broken.csv")).json()
    job = await followed(client, started["id"])
    data = client.data / "broken.csv"
    assert job["status"] == "failed" and job["message"] == f"train: {data}:2: expected 2304 pixel values, got 3"
    assert job["finished_at"] and job["model_version"] is None


async def test_cancel_stops_a_running_job(training_gateway):
    client = training_gateway
    started = (await start(client, dataset="slow.csv")).json()
    running = await followed(client, started["id"], until=("running",))
    assert running["status"] == "running"
    pid_file = Path(client.training.launcher_config.work_dir) / started["id"] / "worker.pid"
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline, "the job's worker never started"
        await asyncio.sleep(0.05)
    assert (await followed(client, started["id"], until=()))["progress"]["epoch"] == 1

    cancelled = await client.post(f"{JOBS}/{started['id']}:cancel", headers=client.admin_headers)
    assert cancelled.status_code == 200, cancelled.text
    job = cancelled.json()
    assert job["status"] == "cancelled" and job["message"] == f"cancelled by {client.admin_email}" and job["finished_at"]
    worker = int(pid_file.read_text())
    deadline = time.monotonic() + 20
    while not process_gone(worker):
        assert time.monotonic() < deadline, "the cancelled job's worker is still running"
        await asyncio.sleep(0.1)
    again = await client.post(f"{JOBS}/{started['id']}:cancel", headers=client.admin_headers)
    assert again.status_code == 200 and again.json()["message"] == job["message"]
    assert (await followed(client, started["id"], until=()))["status"] == "cancelled"
    assert (await client.post(f"{JOBS}/nope:cancel", headers=client.admin_headers)).status_code == 404
    assert (await client.get(f"{JOBS}/nope/log", headers=client.admin_headers)).status_code == 404
    assert (await client.get(f"{JOBS}/nope", headers=client.admin_headers)).status_code == 404


async def test_job_records_survive_a_restart_of_the_service(training_gateway):
    client = training_gateway
    done = await followed(client, (await start(client, overrides={"epochs": 3})).json()["id"])
    running = (await start(client, dataset="slow.csv")).json()
    await followed(client, running["id"], until=("running",))

    await client.training.stop()  # its local job ends with it
    await client.training.start()

    after = await followed(client, done["id"], until=())
    assert after == done
    lost = await followed(client, running["id"], until=())
    assert lost["status"] == "failed" and lost["message"].startswith("interrupted: the inference service stopped")
    ids = [job["id"] for job in (await client.get(JOBS, headers=client.admin_headers)).json()["items"]]
    assert ids.index(running["id"]) < ids.index(done["id"])


async def test_the_options_are_the_shipped_recipes_and_the_tunable_fields(training_gateway):
    from training.config import TUNABLE

    client = training_gateway
    reply = await client.get(f"{JOBS}/options", headers=client.admin_headers)
    assert reply.status_code == 200, reply.text
    options = reply.json()
    shipped = sorted(p.stem for p in (Path(__file__).resolve().parents[3] / "training" / "configs").glob("*.yaml"))
    assert options["recipes"] == shipped and "jaffe_resnet18" in shipped
    fields = {f["key"]: f for f in options["overrides"]}
    assert list(fields) == list(TUNABLE)
    assert fields["epochs"] == {"key": "epochs", "type": "integer", "minimum": 1, "maximum": 1000, "exclusive_minimum": False,
                                "choices": []}
    assert fields["optim.lr"]["type"] == "number" and fields["optim.lr"]["exclusive_minimum"] is True
    assert fields["model.stem"]["type"] == "string" and fields["model.stem"]["choices"] == ["standard", "s1pool", "s1"]
    assert fields["augment.flip"] == {"key": "augment.flip", "type": "boolean", "minimum": None, "maximum": None,
                                      "exclusive_minimum": False, "choices": []}
