"""The TrainingService gRPC servicer: start a training job, follow it (status, progress, log), list
them, cancel one."""
from __future__ import annotations

import json

import grpc

from fer.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from ferkit.db import to_timestamp
from services.inference.errors import guarded
from services.inference.training.records import JobRecord
from services.inference.training.store import TrainingJobs
from training.config import TUNABLE, recipe_names


def progress_proto(progress: dict) -> inference_pb2.TrainingProgress:
    message = inference_pb2.TrainingProgress(
        epoch=int(progress.get("epoch") or 0), epochs=int(progress.get("epochs") or 0),
        history=[inference_pb2.TrainingEpoch(epoch=int(e["epoch"]), train_loss=float(e["train_loss"] or 0.0),
                                             val_accuracy=float(e["val_accuracy"] or 0.0))
                 for e in progress.get("history") or []])
    if progress.get("train_loss") is not None:
        message.train_loss = float(progress["train_loss"])
    if progress.get("val_accuracy") is not None:
        message.val_accuracy = float(progress["val_accuracy"])
    return message


def job_proto(record: JobRecord) -> inference_pb2.TrainingJob:
    job = inference_pb2.TrainingJob(
        id=record.id,
        dataset=record.dataset,
        recipe=record.recipe,
        gpus=record.gpus,
        model_name=record.model_name,
        status=record.status,
        message=record.message,
        model_version=record.model_version,
        requested_by=record.requested_by,
        overrides={key: json.dumps(value) for key, value in (record.overrides or {}).items()},
        created_at=to_timestamp(record.created_at),
    )
    if record.finished_at:
        job.finished_at.CopyFrom(to_timestamp(record.finished_at))
    if record.progress:
        job.progress.CopyFrom(progress_proto(record.progress))
    return job


def options_proto() -> inference_pb2.TrainingOptions:
    """The recipes and tunable fields, from their one home (training.config)."""
    fields = []
    for key, tunable in TUNABLE.items():
        field = inference_pb2.TunableField(key=key, type=tunable.type_name, exclusive_minimum=tunable.above_low,
                                           choices=list(tunable.choices))
        if tunable.low is not None:
            field.minimum = tunable.low
        if tunable.high is not None:
            field.maximum = tunable.high
        fields.append(field)
    return inference_pb2.TrainingOptions(recipes=recipe_names(), overrides=fields)


# Fixed for the life of the process: the recipes ship in the image.
TRAINING_OPTIONS = options_proto()


class TrainingServicer(inference_pb2_grpc.TrainingServiceServicer):
    def __init__(self, jobs: TrainingJobs) -> None:
        self.jobs = jobs

    @guarded
    async def StartTrainingJob(self, request: inference_pb2.StartTrainingJobRequest, context) -> inference_pb2.TrainingJob:
        record = await self.jobs.start(request.dataset, request.recipe, request.gpus, request.model_name,
                                       request.requested_by, dict(request.overrides))
        return job_proto(record)

    @guarded
    async def GetTrainingJob(self, request: inference_pb2.GetTrainingJobRequest, context) -> inference_pb2.TrainingJob:
        return job_proto(await self.jobs.get(request.id))

    @guarded
    async def GetTrainingJobLog(self, request: inference_pb2.GetTrainingJobLogRequest, context) -> inference_pb2.TrainingJobLog:
        return inference_pb2.TrainingJobLog(text=await self.jobs.log(request.id, request.lines))

    @guarded
    async def CancelTrainingJob(self, request: inference_pb2.CancelTrainingJobRequest, context) -> inference_pb2.TrainingJob:
        return job_proto(await self.jobs.cancel(request.id, request.requested_by))

    async def GetTrainingOptions(self, request: common_pb2.Empty, context) -> inference_pb2.TrainingOptions:
        return TRAINING_OPTIONS

    async def ListTrainingJobs(self, request: common_pb2.PageRequest, context) -> inference_pb2.ListTrainingJobsResponse:
        size = request.page_size or 20
        try:
            offset = int(request.page_token or 0)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_token is not one this service issued")
        if not 0 < size <= 100 or offset < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_size must be between 1 and 100")
        records, total = await self.jobs.list(size, offset)
        more = offset + len(records) < total
        return inference_pb2.ListTrainingJobsResponse(
            jobs=[job_proto(r) for r in records],
            page=common_pb2.PageInfo(next_page_token=str(offset + len(records)) if more else "", total=total),
        )
