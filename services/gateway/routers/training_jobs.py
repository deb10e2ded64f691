"""Training jobs (administrators): start one, follow it. A finished job's export is a new model
version, which an administrator then loads or promotes under /models."""
from datetime import datetime, timezone

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from fer.v1 import common_pb2, inference_pb2
from services.gateway.deps import AdminUser, TrainingStub
from services.gateway.openapi import errors
from services.gateway.schemas import Page, StrictBody, from_message

router = APIRouter(prefix="/training-jobs", tags=["training"])


class TrainingJobIn(StrictBody):
    dataset: str = Field(max_length=300, description="Path inside the dataset volume, e.g. fer2013/fer2013.csv.gz.")
    recipe: str = Field(max_length=200, description="A recipe under training/configs (e.g. fer2013_resnet18_gpu) or a relative .yaml path.")
    gpus: int = Field(1, ge=0, le=16)
    model_name: str = Field("", max_length=100, description="Empty: the platform's default model.")


class TrainingJobOut(BaseModel):
    id: str
    dataset: str
    recipe: str
    gpus: int
    model_name: str
    status: str = Field(description="queued, running, succeeded or failed.")
    message: str
    model_version: int | None = Field(description="The version the job exported, once it has succeeded.")
    requested_by: str
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_proto(cls, job: inference_pb2.TrainingJob) -> "TrainingJobOut":
        finished_at = job.finished_at.ToDatetime(timezone.utc) if job.HasField("finished_at") else None
        return from_message(cls, job, model_version=job.model_version or None, finished_at=finished_at)


class TrainingJobPage(Page[TrainingJobOut]):
    pass


@router.post("", status_code=202, response_model=TrainingJobOut)
async def start_training_job(body: TrainingJobIn, request: Request, response: Response, admin: AdminUser,
                             training: TrainingStub) -> TrainingJobOut:
    job = await training.StartTrainingJob(
        inference_pb2.StartTrainingJobRequest(dataset=body.dataset, recipe=body.recipe, gpus=body.gpus,
                                              model_name=body.model_name, requested_by=admin.email)
    )
    response.headers["Location"] = str(request.url_for("get_training_job", job_id=job.id).path)
    return TrainingJobOut.from_proto(job)


@router.get("", response_model=TrainingJobPage)
async def list_training_jobs(admin: AdminUser, training: TrainingStub, page_size: int = Query(20, ge=1, le=100),
                             page_token: str = Query("", max_length=20)) -> TrainingJobPage:
    page = await training.ListTrainingJobs(common_pb2.PageRequest(page_size=page_size, page_token=page_token))
    return TrainingJobPage.of([TrainingJobOut.from_proto(job) for job in page.jobs], page.page)


@router.get("/{job_id}", response_model=TrainingJobOut, responses=errors(404))
async def get_training_job(job_id: str, admin: AdminUser, training: TrainingStub) -> TrainingJobOut:
    return TrainingJobOut.from_proto(await training.GetTrainingJob(inference_pb2.GetTrainingJobRequest(id=job_id)))
