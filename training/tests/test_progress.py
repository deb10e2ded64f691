"""What a run tells whoever follows it: progress.json and its log line each epoch (the trainer writes
them), the failure cause as one `error:` line (and in TRAINING_ERROR_FILE), read back by
training.progress as the inference service reads them."""
from training.cli import main
from training.progress import (
    ERROR_MAX_CHARS,
    error_line,
    last_error,
    progress_from_log,
    progress_line,
    read_progress,
)


def test_the_trainer_leaves_its_progress_after_every_epoch(trained):
    run, result = trained
    progress = read_progress(run)
    assert progress["epoch"] == progress["epochs"] == result["epochs"] == 4
    assert [e["epoch"] for e in progress["history"]] == [1, 2, 3, 4]
    assert progress["history"][-1]["train_loss"] == progress["train_loss"]
    assert progress["history"][-1]["val_accuracy"] == progress["val_accuracy"]
    # Its log lines say the same: services/inference/tests/training/test_local.py reads them from a real job's log.


def test_progress_lines_rebuild_the_curve_and_skip_what_is_not_one():
    lines = [progress_line({"epoch": 0, "epochs": 3, "train_loss": None, "val_accuracy": None}),
             "2026-12-01 INFO training.engine: " + progress_line({"epoch": 1, "epochs": 3, "train_loss": 1.5, "val_accuracy": 0.4}),
             "progress: {broken", "some progress: made",
             "x " + progress_line({"epoch": 2, "epochs": 2, "train_loss": 1.2, "val_accuracy": 0.5})]
    assert progress_from_log("\n".join(lines)) == {"epoch": 2, "epochs": 2, "train_loss": 1.2, "val_accuracy": 0.5, "history": [
        {"epoch": 1, "train_loss": 1.5, "val_accuracy": 0.4}, {"epoch": 2, "train_loss": 1.2, "val_accuracy": 0.5}]}
    assert progress_from_log("nothing yet\n") is None
    assert read_progress("/nonexistent") is None


def test_a_cause_is_one_line_and_the_last_one_counts():
    assert error_line("bad\n  row\t3") == "error: bad row 3"
    assert len(error_line("x" * 5000)) == len("error: ") + ERROR_MAX_CHARS
    log = "error: first\nTraceback ...\nerror: second: cause\nChildFailedError\n"
    assert last_error(log) == "second: cause" and last_error("all good\n") == ""


def test_a_known_failure_leaves_its_cause_in_the_error_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "r.yaml").write_text(f"data: {{path: {tmp_path / 'absent.csv'}}}\n")
    monkeypatch.setenv("TRAINING_ERROR_FILE", str(tmp_path / "termination-log"))
    assert main(["data-info", str(tmp_path / "r.yaml"), "--cache-dir", str(tmp_path / "c")]) == 2
    printed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert printed == [f"error: {tmp_path / 'absent.csv'}: no such file or directory"]
    assert (tmp_path / "termination-log").read_text() == f"error: data-info: {tmp_path / 'absent.csv'}: no such file or directory\n"
    assert last_error((tmp_path / "termination-log").read_text()) == f"data-info: {tmp_path / 'absent.csv'}: no such file or directory"
