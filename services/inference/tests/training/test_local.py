"""The local launcher (`make dev`): the same steps as the Job, as a subprocess chain; with stand-ins for
the training CLI, then with the real one."""

from __future__ import annotations

import json
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from services.inference.training.launcher import JobNotFound, JobStatus
from services.inference.training.local import LocalJobConfig, LocalLauncher
from services.inference.training.spec import TrainingJobSpec, training_steps

REPO_ROOT = Path(__file__).resolve().parents[4]


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


def test_local_job_with_the_real_training_cli_exports_and_announces_a_version(tmp_path: Path, amqp_url, announcements) -> None:
    """train -> export -> announce with the project's own training CLI on a tiny synthetic FER2013 CSV
    (one short epoch on the CPU): the launcher's argv must stay in step with that CLI."""
    import gzip
    import random

    channel, queue = announcements
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
                         python=sys.executable, cwd=str(REPO_ROOT), env={"AMQP_URL": amqp_url})
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
        method, _, body = channel.basic_get(queue, auto_ack=True)
        assert method is not None, "the job finished without announcing its version"
        assert json.loads(body) == {"name": "fer_resnet18", "version": 1}
    finally:
        launcher.cancel("real-cli")
