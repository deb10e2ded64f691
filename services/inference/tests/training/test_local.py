"""The local launcher (`make dev`): the same steps as the Job, as a subprocess chain; with stand-ins for
the training CLI, then with the real one."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from services.inference.training.launcher import JobNotFound, JobStatus
from services.inference.training.local import LocalJobConfig, LocalLauncher
from services.inference.tests.training.fakes import REPO_ROOT, fake_training_setup, process_gone
from services.inference.training.spec import InvalidJob, TrainingJobSpec, training_steps


@pytest.fixture()
def local_setup(tmp_path: Path):
    return fake_training_setup(tmp_path)


def test_local_launcher_runs_the_same_steps_and_produces_a_version(local_setup) -> None:
    cfg, steps_log = local_setup
    launcher = LocalLauncher(cfg)
    spec = TrainingJobSpec(job_id="local-1", dataset="fer2013/small.csv", recipe="smoke", gpus=2)
    launcher.launch(spec)
    state = launcher.wait("local-1", timeout=60)
    assert state.status is JobStatus.SUCCEEDED, state.message

    records = [json.loads(line) for line in steps_log.read_text().splitlines()]
    assert [r["cmd"] for r in records] == ["train", "evaluate", "export"]  # announce is the real module
    assert records[0]["world"] == "2" and records[0]["gpus"] == "2"
    assert f"data.path={cfg.data_dir}/fer2013/small.csv" in records[0]["args"]
    assert (Path(cfg.model_repository) / "fer_resnet18" / "1" / "model.pt").is_file()
    log_text = (Path(cfg.log_dir) / "local-1.log").read_text()
    assert '"name": "fer_resnet18", "version": 1, "announced": false' in log_text
    assert launcher.log_tail("local-1", 1000) == log_text and launcher.log_tail("local-1", 2) == "\n".join(log_text.splitlines()[-2:]) + "\n"
    assert launcher.progress("local-1") == {"epoch": 1, "epochs": 3, "train_loss": 1.9, "val_accuracy": 0.25,
                                            "history": [{"epoch": 1, "train_loss": 1.9, "val_accuracy": 0.25}]}
    export = records[2]["args"]
    assert export[export.index("--metrics") + 1] == f"{cfg.work_dir}/local-1/evaluation/metrics.json"
    assert f"{cfg.work_dir}/local-1/evaluation/confusion_matrix.png" in export[export.index("--attach"):]

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
    assert state.message == "train: no such file: /data/d.csv"  # the CLI's `error:` line, one line
    assert [json.loads(line)["cmd"] for line in steps_log.read_text().splitlines()] == ["train"]
    assert not Path(cfg.model_repository).exists()
    with pytest.raises(JobNotFound):
        launcher.status("other")


def test_local_launcher_refuses_a_job_whose_dataset_or_recipe_is_not_there(local_setup) -> None:
    cfg, _ = local_setup
    cfg = LocalJobConfig(**{**cfg.__dict__, "cwd": str(REPO_ROOT)})
    (Path(cfg.data_dir) / "jaffe").mkdir(parents=True)
    (Path(cfg.data_dir) / "jaffe" / "labels.csv").write_text("image_path,labels\n")
    launcher = LocalLauncher(cfg)
    launcher.check(TrainingJobSpec(job_id="ok", dataset="jaffe/labels.csv", recipe="jaffe_resnet18"))
    root = Path(cfg.data_dir).resolve()
    with pytest.raises(InvalidJob, match=f"^dataset not found: fer2013/absent.csv.gz under {root}$"):
        launcher.check(TrainingJobSpec(job_id="no-data", dataset="fer2013/absent.csv.gz", recipe="jaffe_resnet18"))
    with pytest.raises(InvalidJob, match="^recipe not found: training/configs/nope.yaml$"):
        launcher.check(TrainingJobSpec(job_id="no-recipe", dataset="jaffe/labels.csv", recipe="nope"))


def test_cancel_stops_the_running_step_and_every_process_it_started(local_setup, tmp_path: Path) -> None:
    cfg, steps_log = local_setup
    child_pid = tmp_path / "child.pid"
    cfg = LocalJobConfig(**{**cfg.__dict__, "env": {**cfg.env, "SLOW_TRAIN": str(child_pid)}, "kill_after_s": 2.0})
    launcher = LocalLauncher(cfg)
    launcher.launch(TrainingJobSpec(job_id="long", dataset="d.csv", recipe="smoke", gpus=1))
    deadline = time.monotonic() + 60
    while not child_pid.exists() or not child_pid.read_text():
        assert time.monotonic() < deadline, "the fake training step never started its worker"
        time.sleep(0.05)
    assert launcher.status("long").status is JobStatus.RUNNING
    assert launcher.progress("long")["epoch"] == 1

    launcher.cancel("long")
    state = launcher.wait("long", timeout=20)
    assert state.status is JobStatus.CANCELLED, state
    pid = int(child_pid.read_text())
    deadline = time.monotonic() + 10
    while not process_gone(pid):
        assert time.monotonic() < deadline, f"worker {pid} outlived the cancelled job"
        time.sleep(0.05)
    assert [json.loads(line)["cmd"] for line in steps_log.read_text().splitlines()] == ["train"]  # nothing after
    launcher.cancel("long")  # again: nothing to do
    assert launcher.status("long").status is JobStatus.CANCELLED
    with pytest.raises(JobNotFound):
        launcher.cancel("never")


async def test_a_job_with_the_real_training_cli_exports_an_evaluated_version(tmp_path: Path, amqp_url, announcements) -> None:
    """The one real job: train -> evaluate -> export -> announce with the project's own training CLI on a
    tiny synthetic FER2013 CSV (two one-step epochs on the CPU), started and followed as the service
    does (TrainingJobs: overrides checked and passed as --set, the dataset checked at submit, the record
    in a database). The launcher's argv must stay in step with that CLI."""
    from ferkit.db import make_engine, upgrade
    from ferkit.vision import CLASSES
    from services.inference.config import Settings, TrainingSettings
    from services.inference.training.store import TrainingJobs
    from training.progress import progress_from_log
    from training.tests.conftest import synth_faces, write_fer_csv

    channel, queue = announcements
    images, labels = synth_faces(63, seed=3)
    csv = tmp_path / "data" / "fer2013" / "tiny.csv.gz"
    csv.parent.mkdir(parents=True)
    write_fer_csv(csv, images, labels, ["Training"] * 35 + ["PublicTest"] * 14 + ["PrivateTest"] * 14, gz=True)
    url = f"sqlite+aiosqlite:///{tmp_path / 'inference.db'}"
    await asyncio.to_thread(upgrade, REPO_ROOT / "services" / "inference" / "migrations", url)
    settings = Settings(database_url=url, model_repository=str(tmp_path / "models"), model_name="fer_resnet18",
                        training=TrainingSettings(data_dir=str(tmp_path / "data")))
    launcher = LocalLauncher(LocalJobConfig(data_dir=str(tmp_path / "data"), model_repository=str(tmp_path / "models"),
                                            work_dir=str(tmp_path / "runs"), log_dir=str(tmp_path / "logs"),
                                            python=sys.executable, cwd=str(REPO_ROOT), env={"AMQP_URL": amqp_url}))
    jobs = TrainingJobs(settings, make_engine(url), launcher)
    overrides = {"epochs": "2", "batch_size": "16", "eval_batch_size": "32", "max_steps_per_epoch": "1",
                 "num_threads": "1", "model.stem": '"standard"'}
    record = await jobs.start("fer2013/tiny.csv.gz", "fer2013_resnet18_cpu", 0, "", "admin@example.com", overrides)
    try:
        state = await asyncio.to_thread(launcher.wait, record.id, 240)
        log_text = (tmp_path / "logs" / f"{record.id}.log").read_text()
        assert state.status is JobStatus.SUCCEEDED, f"{state.message}\n{log_text[-3000:]}"
        assert "--set epochs=2" in log_text and '--set \'model.stem="standard"\'' in log_text
        record = await jobs.get(record.id)
        assert (record.status, record.model_version, record.message) == ("succeeded", 1, "")
        assert record.overrides["epochs"] == 2 and record.overrides["model.stem"] == "standard"
        assert record.progress["epoch"] == record.progress["epochs"] == 2
        assert [e["epoch"] for e in record.progress["history"]] == [1, 2]
        assert progress_from_log(log_text) == record.progress  # what a Kubernetes job's follower reads

        version_dir = tmp_path / "models" / "fer_resnet18" / "1"
        for name in ("model.pt", "metadata.json", "confusion_matrix.png", "confusion_matrix.json", "report.md",
                     "training_curve.png", "history.csv", "MODEL_CARD.md"):
            assert (version_dir / name).is_file(), name
        meta = json.loads((version_dir / "metadata.json").read_text())
        test = meta["metrics"]["PrivateTest"]  # the held-out split, never selected on
        assert test["n"] == 14 and 0.0 <= test["accuracy"] <= 1.0 and 0.0 <= test["macro_f1"] <= 1.0
        assert set(test["per_class"]) == set(CLASSES)
        assert set(test["per_class"]["happy"]) == {"precision", "recall", "f1", "support"}
        assert sum(map(sum, test["confusion_matrix"])) == 14
        assert meta["extra"]["epochs_trained"] == 2 and meta["extra"]["best_epoch"] in (1, 2)
        assert "trained: 2 epochs" in (version_dir / "MODEL_CARD.md").read_text()

        method, _, body = channel.basic_get(queue, auto_ack=True)
        assert method is not None, "the job finished without announcing its version"
        assert json.loads(body) == {"name": "fer_resnet18", "version": 1}
    finally:
        launcher.cancel(record.id)
        await jobs.engine.dispose()
