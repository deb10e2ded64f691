"""A training request is checked before anything runs, and its steps are one valid shell script."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.inference.training.spec import InvalidJob, TrainingJobSpec, steps_script, training_steps


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
    with pytest.raises(InvalidJob, match=match):
        TrainingJobSpec(**{**base, **kwargs})


def test_steps_script_is_valid_posix_shell(tmp_path: Path) -> None:
    spec = TrainingJobSpec(job_id="sh", dataset="a b/c.csv", recipe="r", gpus=1, overrides=("x='y'",))
    script = steps_script(training_steps(spec, data_dir="/data", model_repository="/models", work_dir="/w"))
    path = tmp_path / "s.sh"
    path.write_text(script)
    assert os.system(f"sh -n {path}") == 0
