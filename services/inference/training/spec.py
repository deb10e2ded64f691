"""What an administrator asks for (mirrors fer.v1.StartTrainingJobRequest), checked before anything
runs, and the argv of the job's three steps."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

# The last step (see the package's docstring).
ANNOUNCE_MODULE = "services.inference.training.announce"
# What `training evaluate` writes and `training train` leaves in the run directory, copied into the version.
EVALUATION_FILES = ("report.md", "confusion_matrix.png", "confusion_matrix.json")
RUN_FILES = ("training_curve.png", "history.csv")
STEP_NAMES = ("train", "evaluate", "export", "announce")
_JOB_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_RECIPE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class InvalidJob(ValueError):
    """A request no job can be made of."""


def is_job_id(value: str) -> bool:
    """Whether `value` has a job id's form (anything else names no job)."""
    return bool(_JOB_ID_RE.fullmatch(value))


@dataclass(frozen=True)
class TrainingJobSpec:
    job_id: str
    dataset: str  # path relative to the dataset volume, e.g. "fer2013/fer2013.csv.gz"
    recipe: str  # a recipe name under training/configs/ ("fer2013_resnet18") or a relative .yaml path
    gpus: int = 1
    model_name: str = "fer_resnet18"
    overrides: tuple[str, ...] = ()  # extra "a.b=value" recipe overrides

    def __post_init__(self) -> None:
        # The id becomes part of a Kubernetes object name and a label value: DNS-1123, short.
        if not is_job_id(self.job_id):
            raise InvalidJob(f"job id {self.job_id!r} must be lower-case alphanumerics and '-', at most 40 chars")
        _check_relative(self.dataset, "dataset")
        if self.recipe.endswith((".yaml", ".yml")):
            _check_relative(self.recipe, "recipe")
        elif not _RECIPE_NAME_RE.match(self.recipe):
            raise InvalidJob(f"recipe {self.recipe!r} is neither a name nor a relative .yaml path")
        if not 0 <= self.gpus <= 16:
            raise InvalidJob(f"gpus must be between 0 and 16, not {self.gpus}")
        if not _RECIPE_NAME_RE.match(self.model_name):
            raise InvalidJob(f"model name {self.model_name!r} is not a plain name")
        for item in self.overrides:
            if "=" not in item:
                raise InvalidJob(f"override {item!r} is not key=value")

    @property
    def recipe_path(self) -> str:
        if self.recipe.endswith((".yaml", ".yml")):
            return self.recipe
        return f"training/configs/{self.recipe}.yaml"

    @property
    def nproc_per_node(self) -> int:
        # CPU-only jobs still need one worker process.
        return max(1, self.gpus)


def _check_relative(value: str, what: str) -> None:
    # Both end up inside a volume mount: an absolute path or '..' would escape it.
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts:
        raise InvalidJob(f"{what} {value!r} must be a relative path inside its volume")


def training_steps(spec: TrainingJobSpec, *, data_dir: str, model_repository: str, work_dir: str,
                   python: str = "python", torchrun: str = "torchrun") -> list[list[str]]:
    """The argv of each step; the Job and the local subprocess run exactly these."""
    run_dir = f"{work_dir.rstrip('/')}/{spec.job_id}"
    train = [
        torchrun, "--standalone", f"--nproc_per_node={spec.nproc_per_node}",
        "-m", "training", "train", spec.recipe_path,
        "--set", f"data.path={data_dir.rstrip('/')}/{spec.dataset}",
        "--set", f"name={spec.model_name}",
    ]
    for item in spec.overrides:
        train += ["--set", item]
    cache = f"{work_dir.rstrip('/')}/cache"
    train += ["--out", run_dir, "--cache-dir", cache, "--no-progress"]
    # The checkpoint chosen on the validation split, measured on the held-out test split of the same data.
    evaluation = f"{run_dir}/evaluation"
    evaluate = [python, "-m", "training", "evaluate", f"{run_dir}/best.pt", "--out", evaluation, "--cache-dir", cache]
    export = [python, "-m", "training", "export", f"{run_dir}/best.pt",
              "--repo", model_repository, "--name", spec.model_name, "--metrics", f"{evaluation}/metrics.json",
              "--attach", *(f"{evaluation}/{name}" for name in EVALUATION_FILES),
              *(f"{run_dir}/{name}" for name in RUN_FILES)]
    announce = [python, "-m", ANNOUNCE_MODULE, "--repo", model_repository, "--name", spec.model_name]
    return [train, evaluate, export, announce]


def steps_script(steps: list[list[str]]) -> str:
    """One POSIX shell script that stops at the first failing step."""
    return "set -eu\n" + "\n".join(shlex.join(step) for step in steps) + "\n"
