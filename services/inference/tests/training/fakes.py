"""A stand-in for the training CLI and torchrun, for launcher tests that must not train."""
from __future__ import annotations

import stat
import sys
import textwrap
from pathlib import Path

from services.inference.training.local import LocalJobConfig

REPO_ROOT = Path(__file__).resolve().parents[4]

FAKE_TRAINING = textwrap.dedent('''
    """Stand-in for the training CLI (same arguments): records each step, reports progress as the trainer
    does, prints the CLI's `error:` line on a known failure, writes a model version."""
    import json, os, subprocess, sys, time
    from pathlib import Path

    cmd, args = sys.argv[1], sys.argv[2:]
    log = Path(os.environ["STEP_LOG"])
    with log.open("a") as f:
        f.write(json.dumps({"cmd": cmd, "args": args, "gpus": os.environ["GPUS"],
                            "world": os.environ.get("FAKE_WORLD", "")}) + "\\n")
    if cmd == "train":
        # Behaviour by dataset name too, for callers that share one launcher: broken.csv, slow.csv.
        data = next((a.split("=", 1)[1] for a in args if a.startswith("data.path=")), "")
        if os.environ.get("FAIL_TRAIN"):
            print("error: no such file: /data/d.csv", file=sys.stderr)
            sys.exit(2)
        if data.endswith("broken.csv"):
            print("epoch 0 ...", file=sys.stderr)
            print(f"error: {data}:2: expected 2304 pixel values, got 3", file=sys.stderr)
            sys.exit(2)
        out = Path(args[args.index("--out") + 1])
        out.mkdir(parents=True)
        history = [{"epoch": 1, "train_loss": 1.9, "val_accuracy": 0.25}]
        (out / "progress.json").write_text(json.dumps({"epoch": 1, "epochs": 3, "train_loss": 1.9,
                                                       "val_accuracy": 0.25, "history": history}))
        pid_file = os.environ.get("SLOW_TRAIN") or (str(out / "worker.pid") if data.endswith("slow.csv") else "")
        if pid_file:
            child = subprocess.Popen(["sleep", "300"])  # a worker of its own, as torchrun starts them
            Path(pid_file).write_text(str(child.pid))
            time.sleep(300)
        (out / "best.pt").write_bytes(b"ckpt")
    if cmd == "evaluate":
        out = Path(args[args.index("--out") + 1])
        out.mkdir(parents=True)
        (out / "metrics.json").write_text("{}")
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




def fake_training_setup(tmp_path: Path, recipes: tuple[str, ...] = ()) -> tuple[LocalJobConfig, Path]:
    """(launcher config running the stand-ins from a fake repository root, the steps' record file).
    `recipes` are created under its training/configs/ (the launcher checks them at submit)."""
    root = tmp_path / "repo"
    (root / "training" / "configs").mkdir(parents=True)
    (root / "training" / "__init__.py").write_text("")
    (root / "training" / "__main__.py").write_text(FAKE_TRAINING)
    for recipe in recipes:
        (root / "training" / "configs" / f"{recipe}.yaml").write_text("epochs: 3\n")
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


def process_gone(pid: int) -> bool:
    """Ended (a zombie nobody reaps counts: it runs nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
