"""The job records (TrainingJobs) on both database backends, with a launcher that plays the job: what is
refused at submit, overrides checked and passed as --set, records that outlive the service, progress,
log tails, cancelling, and the launcher staying the truth while a job runs."""
from __future__ import annotations

from pathlib import Path

import pytest

from ferkit.db import make_engine, upgrade
from services.inference.config import Settings, TrainingSettings
from services.inference.training.launcher import JobNotFound, JobState, JobStatus, job_name
from services.inference.training.local import LocalJobConfig, LocalLauncher
from services.inference.training.records import JobRecord
from services.inference.training.spec import InvalidJob, TrainingJobSpec
from services.inference.training.store import LOG_LINES_DEFAULT, LOG_LINES_MAX, TrainingJobs

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class FakeLauncher:
    """Plays a launcher: tests set each job's state and progress."""

    lost_message = "lost: the launcher does not know this job"

    def __init__(self) -> None:
        self.specs: dict[str, TrainingJobSpec] = {}
        self.states: dict[str, JobState] = {}
        self.progresses: dict[str, dict] = {}
        self.cancelled: list[str] = []
        self.asked_lines: list[int] = []

    def check(self, spec: TrainingJobSpec) -> None:
        if spec.dataset.startswith("absent/"):
            raise InvalidJob(f"dataset not found: {spec.dataset} under /data")

    def launch(self, spec: TrainingJobSpec) -> str:
        self.specs[spec.job_id] = spec
        self.states[spec.job_id] = JobState(JobStatus.QUEUED)
        return job_name(spec.job_id)

    def status(self, job_id: str) -> JobState:
        try:
            return self.states[job_id]
        except KeyError:
            raise JobNotFound(job_id) from None

    def progress(self, job_id: str) -> dict | None:
        return self.progresses.get(job_id)

    def log_tail(self, job_id: str, lines: int) -> str:
        self.asked_lines.append(lines)
        return "".join(f"line {i}\n" for i in range(lines))[-200:]

    def cancel(self, job_id: str) -> None:
        self.status(job_id)
        self.cancelled.append(job_id)
        self.states[job_id] = JobState(JobStatus.CANCELLED, "cancelled")

    def shutdown(self) -> list[str]:
        return [job_id for job_id, state in self.states.items() if state.status in (JobStatus.QUEUED, JobStatus.RUNNING)]


@pytest.fixture(scope="session")
def inference_database(database_url) -> str:
    upgrade(MIGRATIONS, database_url)
    return database_url


@pytest.fixture
def settings(inference_database, tmp_path) -> Settings:
    return Settings(database_url=inference_database, model_repository=str(tmp_path / "models"), model_name="fer_test",
                    training=TrainingSettings(data_dir=str(tmp_path / "data")))


@pytest.fixture
async def jobs(settings):
    jobs = TrainingJobs(settings, make_engine(settings.database_url), FakeLauncher())
    yield jobs
    await jobs.engine.dispose()


def _new_version(settings: Settings, version: int) -> None:
    path = Path(settings.model_repository) / settings.model_name / str(version)
    path.mkdir(parents=True)
    (path / "metadata.json").write_text("{}")


async def _start(jobs: TrainingJobs, **kwargs):
    args = {"dataset": "fer2013/fer2013.csv.gz", "recipe": "fer2013_resnet18_cpu", "gpus": 0, "model_name": "",
            "requested_by": "admin@example.com", "overrides": {}} | kwargs
    return await jobs.start(**args)


async def test_overrides_are_checked_and_passed_to_the_trainer_as_set_items(jobs):
    record = await _start(jobs, overrides={"epochs": "2", "optim.lr": "1e-05", "model.stem": '"s1"', "optim.weight_decay": "0"})
    assert record.overrides == {"epochs": 2, "optim.lr": 1e-05, "model.stem": "s1", "optim.weight_decay": 0.0}
    spec = jobs.launcher.specs[record.id]
    assert spec.overrides == ("epochs=2", 'model.stem="s1"', "optim.lr=1.0e-05", "optim.weight_decay=0.0")
    assert (await jobs.get(record.id)).overrides == record.overrides


@pytest.mark.parametrize("overrides, message", [
    ({"lr": "0.1"}, "override lr: not a tunable recipe field"),
    ({"data.path": '"/etc"'}, "override data.path: not a tunable recipe field"),
    ({"epochs": "0"}, "override epochs: must be an integer >= 1 and <= 1000, not 0"),
    ({"epochs": "2.5"}, "override epochs: must be an integer"),
    ({"optim.lr": "0"}, "override optim.lr: must be a number > 0"),
    ({"optim.lr": '"fast"'}, "override optim.lr: must be a number"),
    ({"model.stem": '"s2"'}, "override model.stem: must be one of standard, s1pool, s1"),
    ({"class_balance": "true"}, "override class_balance: must be one of none, weights, sampler"),
    ({"epochs": "two"}, "override epochs: its value is not JSON"),
])
async def test_a_bad_override_is_refused_naming_its_key_and_nothing_runs(jobs, overrides, message):
    before = (await jobs.list(100, 0))[1]
    with pytest.raises(InvalidJob, match=message.replace(".", r"\.").replace("(", r"\(")):
        await _start(jobs, overrides={"epochs": "3", **overrides})
    assert jobs.launcher.specs == {} and (await jobs.list(100, 0))[1] == before


async def test_a_local_job_on_a_missing_dataset_is_refused_at_submit_with_the_cause(settings, tmp_path):
    data = tmp_path / "data"
    (data / "jaffe").mkdir(parents=True)
    launcher = LocalLauncher(LocalJobConfig(data_dir=str(data), model_repository=str(tmp_path / "models"),
                                            work_dir=str(tmp_path / "runs"), log_dir=str(tmp_path / "logs")))
    jobs = TrainingJobs(settings, make_engine(settings.database_url), launcher)
    try:
        before = (await jobs.list(100, 0))[1]
        with pytest.raises(InvalidJob) as refused:
            await _start(jobs, dataset="jaffe/labels.csv", recipe="jaffe_resnet18")
        assert str(refused.value) == f"dataset not found: jaffe/labels.csv under {data.resolve()}"
        assert (await jobs.list(100, 0))[1] == before and not (tmp_path / "logs").exists()
    finally:
        await jobs.engine.dispose()


async def test_records_outlive_the_service_and_the_launcher_stays_the_truth_while_a_job_runs(settings, jobs):
    done = await _start(jobs)
    running = await _start(jobs, dataset="jaffe/labels.csv", recipe="jaffe_resnet18", gpus=2)
    assert done.status == "queued" and done.version_before == 0
    launcher = jobs.launcher
    launcher.states[done.id] = JobState(JobStatus.RUNNING)
    launcher.progresses[done.id] = {"epoch": 1, "epochs": 2, "train_loss": 1.5, "val_accuracy": 0.4,
                                    "history": [{"epoch": 1, "train_loss": 1.5, "val_accuracy": 0.4}]}
    assert (await jobs.get(done.id)).status == "running"
    _new_version(settings, 1)
    launcher.states[done.id] = JobState(JobStatus.SUCCEEDED)
    launcher.progresses[done.id] = {"epoch": 2, "epochs": 2, "train_loss": 1.2, "val_accuracy": 0.5, "history": [
        {"epoch": 1, "train_loss": 1.5, "val_accuracy": 0.4}, {"epoch": 2, "train_loss": 1.2, "val_accuracy": 0.5}]}
    finished = await jobs.get(done.id)
    assert (finished.status, finished.model_version, finished.progress["epoch"]) == ("succeeded", 1, 2)
    assert finished.finished_at is not None
    launcher.states[running.id] = JobState(JobStatus.RUNNING)
    assert (await jobs.get(running.id)).status == "running"

    # A restart: a new process, whose launcher knows nothing of either job.
    restarted = TrainingJobs(settings, make_engine(settings.database_url), FakeLauncher())
    try:
        again = await restarted.get(done.id)
        assert (again.status, again.model_version, again.progress, again.requested_by, again.gpus) == (
            "succeeded", 1, finished.progress, "admin@example.com", 0)
        assert again.created_at == finished.created_at and again.finished_at == finished.finished_at
        lost = await restarted.get(running.id)
        assert (lost.status, lost.message, lost.gpus) == ("failed", FakeLauncher.lost_message, 2)
        ids = [r.id for r in (await restarted.list(100, 0))[0]]
        assert ids.index(running.id) < ids.index(done.id)  # newest first
    finally:
        await restarted.engine.dispose()


async def test_cancel_stops_an_unfinished_job_once_and_leaves_a_finished_one(jobs):
    record = await _start(jobs)
    jobs.launcher.states[record.id] = JobState(JobStatus.RUNNING)
    jobs.launcher.progresses[record.id] = {"epoch": 1, "epochs": 5, "train_loss": 1.9, "val_accuracy": 0.2, "history": []}
    cancelled = await jobs.cancel(record.id, "ops@example.com")
    assert (cancelled.status, cancelled.message) == ("cancelled", "cancelled by ops@example.com")
    assert cancelled.finished_at is not None and cancelled.progress["epoch"] == 1
    assert jobs.launcher.cancelled == [record.id]
    # What the launcher says later changes nothing: the record's end stays.
    jobs.launcher.states[record.id] = JobState(JobStatus.FAILED, "killed")
    assert (await jobs.cancel(record.id, "other@example.com")).message == "cancelled by ops@example.com"
    assert (await jobs.get(record.id)).status == "cancelled" and jobs.launcher.cancelled == [record.id]

    succeeded = await _start(jobs)
    jobs.launcher.states[succeeded.id] = JobState(JobStatus.SUCCEEDED)
    assert (await jobs.cancel(succeeded.id, "ops@example.com")).status == "succeeded"
    with pytest.raises(JobNotFound):
        await jobs.cancel("nope", "ops@example.com")


async def test_log_tail_lines_are_bounded_and_unknown_ids_are_not_found(jobs):
    record = await _start(jobs)
    assert (await jobs.log(record.id, 3)) == "line 0\nline 1\nline 2\n"
    await jobs.log(record.id, 0)
    await jobs.log(record.id, 10 * LOG_LINES_MAX)
    assert jobs.launcher.asked_lines == [3, LOG_LINES_DEFAULT, LOG_LINES_MAX]
    with pytest.raises(InvalidJob):
        await jobs.log(record.id, -1)
    for job_id in ("unknown", "x\x00y", "UPPER", "a" * 41, ""):
        with pytest.raises(JobNotFound):
            await jobs.log(job_id, 10)
        with pytest.raises(JobNotFound):
            await jobs.get(job_id)


async def test_unfinished_records_follow_their_launcher_unasked_and_local_jobs_end_with_the_service(jobs):
    record = await _start(jobs)
    jobs.launcher.states[record.id] = JobState(JobStatus.FAILED, "train: /data/x.csv: no such file or directory")
    assert await jobs.refresh_unfinished() >= 1
    async with jobs.sessions() as session:  # as stored, without asking the launcher
        stored = await session.get(JobRecord, record.id)
    assert (stored.status, stored.message) == ("failed", "train: /data/x.csv: no such file or directory")

    running = await _start(jobs)
    jobs.launcher.states[running.id] = JobState(JobStatus.RUNNING)
    await jobs.close()  # the service stops: what ends with it is recorded as such
    stopped = await jobs.get(running.id)
    assert (stopped.status, stopped.message) == ("failed", FakeLauncher.lost_message)


async def test_a_launch_that_fails_leaves_a_failed_record(jobs):
    def refuse(spec):
        raise RuntimeError("the API server said no")

    jobs.launcher.launch = refuse
    with pytest.raises(RuntimeError):
        await _start(jobs)
    newest = (await jobs.list(1, 0))[0][0]
    assert (newest.status, newest.message) == ("failed", "could not start: the API server said no")


async def test_a_deployment_without_training_refuses_a_job_and_records_none(settings):
    from services.inference.training.launcher import TrainingDisabled

    disabled = Settings(**{**settings.model_dump(), "training": TrainingSettings(launcher="none")})
    jobs = TrainingJobs(disabled, make_engine(disabled.database_url))
    try:
        before = (await jobs.list(100, 0))[1]
        with pytest.raises(TrainingDisabled, match="runs no training jobs"):
            await _start(jobs)
        assert (await jobs.list(100, 0))[1] == before
    finally:
        await jobs.engine.dispose()
