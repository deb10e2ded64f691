"""Training jobs (administrators): start one, follow it (status, progress, log), list them, cancel one.
A finished job's export is a new model version, evaluated on its dataset's held-out test split, which an
administrator then loads or promotes under /models."""
import json
from datetime import datetime, timezone

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from fer.v1 import common_pb2, inference_pb2
from services.gateway.deps import AdminUser, TrainingStub
from services.gateway.openapi import errors
from services.gateway.schemas import Page, StrictBody, from_message

router = APIRouter(prefix="/training-jobs", tags=["training"])

# The most log lines one request returns.
LOG_MAX_LINES = 2000
OverrideValue = StrictBool | StrictInt | StrictFloat | StrictStr


class TrainingJobIn(StrictBody):
    dataset: str = Field(max_length=300, description="Path inside the dataset volume, e.g. fer2013/fer2013.csv.gz "
                         "or jaffe/labels.csv; a local job's must exist under the data root when it is asked for.")
    recipe: str = Field(max_length=200, description="A recipe under training/configs (e.g. fer2013_resnet18_gpu) or a relative .yaml path.")
    gpus: int = Field(1, ge=0, le=16)
    model_name: str = Field("", max_length=100, description="Empty: the platform's default model.")
    overrides: dict[str, OverrideValue] = Field(
        default_factory=dict, max_length=30,
        description="Recipe fields to change for this job, dotted as in the recipe, e.g. {\"epochs\": 2, "
                    "\"optim.lr\": 0.05, \"model.stem\": \"s1pool\", \"class_balance\": \"weights\"}. Only the "
                    "tunable fields (training.config.TUNABLE: epochs, batch_size, optim.lr, optim.weight_decay, "
                    "model.stem, class_balance, ...) within their ranges; anything else is a 422 naming the key.",
        examples=[{"epochs": 2, "optim.lr": 0.05}])


class TrainingEpochOut(BaseModel):
    epoch: int
    train_loss: float
    val_accuracy: float


class TrainingProgressOut(BaseModel):
    epoch: int = Field(description="Epochs done.")
    epochs: int = Field(description="Epochs planned (a recipe's deadline may lower the plan).")
    train_loss: float | None = Field(description="Of the last epoch done.")
    val_accuracy: float | None = Field(description="Of the last epoch done, on the validation split.")
    history: list[TrainingEpochOut] = Field(description="Every epoch done, in order: the training curve.")

    @classmethod
    def from_proto(cls, progress: inference_pb2.TrainingProgress) -> "TrainingProgressOut":
        return cls(epoch=progress.epoch, epochs=progress.epochs,
                   train_loss=progress.train_loss if progress.HasField("train_loss") else None,
                   val_accuracy=progress.val_accuracy if progress.HasField("val_accuracy") else None,
                   history=[from_message(TrainingEpochOut, e) for e in progress.history])


class TrainingJobOut(BaseModel):
    id: str
    dataset: str
    recipe: str
    gpus: int
    model_name: str
    overrides: dict[str, OverrideValue]
    status: str = Field(description="queued, running, succeeded, failed or cancelled.")
    message: str = Field(description="A failed job's cause in one line; who cancelled a cancelled one.")
    model_version: int | None = Field(description="The version the job exported, once it has succeeded.")
    progress: TrainingProgressOut | None = Field(description="Absent until the trainer's first report.")
    requested_by: str
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_proto(cls, job: inference_pb2.TrainingJob) -> "TrainingJobOut":
        finished_at = job.finished_at.ToDatetime(timezone.utc) if job.HasField("finished_at") else None
        progress = TrainingProgressOut.from_proto(job.progress) if job.HasField("progress") else None
        return from_message(cls, job, model_version=job.model_version or None, finished_at=finished_at,
                            progress=progress, overrides={k: json.loads(v) for k, v in job.overrides.items()})


class TrainingJobPage(Page[TrainingJobOut]):
    pass


@router.post("", status_code=202, response_model=TrainingJobOut)
async def start_training_job(body: TrainingJobIn, request: Request, response: Response, admin: AdminUser,
                             training: TrainingStub) -> TrainingJobOut:
    job = await training.StartTrainingJob(
        inference_pb2.StartTrainingJobRequest(dataset=body.dataset, recipe=body.recipe, gpus=body.gpus,
                                              model_name=body.model_name, requested_by=admin.email,
                                              overrides={k: json.dumps(v) for k, v in body.overrides.items()})
    )
    response.headers["Location"] = str(request.url_for("get_training_job", job_id=job.id).path)
    return TrainingJobOut.from_proto(job)


@router.get("", response_model=TrainingJobPage)
async def list_training_jobs(admin: AdminUser, training: TrainingStub, page_size: int = Query(20, ge=1, le=100),
                             page_token: str = Query("", max_length=20)) -> TrainingJobPage:
    page = await training.ListTrainingJobs(common_pb2.PageRequest(page_size=page_size, page_token=page_token))
    return TrainingJobPage.of([TrainingJobOut.from_proto(job) for job in page.jobs], page.page)


class TunableFieldOut(BaseModel):
    key: str = Field(description="Dotted as in the recipe, e.g. optim.lr.")
    type: str = Field(description="integer, number, string or boolean.")
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = Field(description="The minimum itself is refused.")
    choices: list[str] = Field(description="For strings: the only values accepted.")


class TrainingOptionsOut(BaseModel):
    recipes: list[str] = Field(description="Recipe names this deployment carries (training/configs).")
    overrides: list[TunableFieldOut] = Field(description="The fields `overrides` may set, with the values each accepts.")


# Declared before /{job_id}, which would otherwise take "options" for a job id.
@router.get("/options", response_model=TrainingOptionsOut)
async def training_options(admin: AdminUser, training: TrainingStub) -> TrainingOptionsOut:
    """What a job may be started with: the recipes and the tunable fields (the console's form is built from it)."""
    options = await training.GetTrainingOptions(common_pb2.Empty())
    return TrainingOptionsOut(recipes=list(options.recipes), overrides=[
        from_message(TunableFieldOut, field,
                     minimum=field.minimum if field.HasField("minimum") else None,
                     maximum=field.maximum if field.HasField("maximum") else None,
                     choices=list(field.choices))
        for field in options.overrides
    ])


@router.get("/{job_id}", response_model=TrainingJobOut, responses=errors(404))
async def get_training_job(job_id: str, admin: AdminUser, training: TrainingStub) -> TrainingJobOut:
    return TrainingJobOut.from_proto(await training.GetTrainingJob(inference_pb2.GetTrainingJobRequest(id=job_id)))


# response_class=Response, not PlainTextResponse: that would declare the JSON errors as text/plain too.
@router.get("/{job_id}/log", response_class=Response, responses={200: {"content": {"text/plain": {}}}, **errors(404)})
async def training_job_log(job_id: str, admin: AdminUser, training: TrainingStub,
                           lines: int = Query(200, ge=1, le=LOG_MAX_LINES, description="How many of the last lines.")
                           ) -> PlainTextResponse:
    """The end of the job's log: what its steps printed (empty before it starts, and once a Kubernetes
    Job's pod is cleaned up)."""
    found = await training.GetTrainingJobLog(inference_pb2.GetTrainingJobLogRequest(id=job_id, lines=lines))
    return PlainTextResponse(found.text, headers={"Cache-Control": "no-store"})


@router.post("/{job_id}:cancel", response_model=TrainingJobOut, responses=errors(404))
async def cancel_training_job(job_id: str, admin: AdminUser, training: TrainingStub) -> TrainingJobOut:
    """Stops a queued or running job (a local job's processes, or the Kubernetes Job and its pods):
    its status becomes "cancelled". A finished job is answered as it is."""
    return TrainingJobOut.from_proto(await training.CancelTrainingJob(
        inference_pb2.CancelTrainingJobRequest(id=job_id, requested_by=admin.email)))
