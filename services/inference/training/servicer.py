"""The TrainingService gRPC servicer: start a training job, follow it, list them."""
from __future__ import annotations

import grpc

from fer.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from services.inference.errors import guarded
from services.inference.training.store import JobRecord, TrainingJobs


class TrainingServicer(inference_pb2_grpc.TrainingServiceServicer):
    def __init__(self, jobs: TrainingJobs) -> None:
        self.jobs = jobs

    @staticmethod
    def _job_proto(record: JobRecord) -> inference_pb2.TrainingJob:
        job = inference_pb2.TrainingJob(
            id=record.spec.job_id,
            dataset=record.spec.dataset,
            recipe=record.spec.recipe,
            gpus=record.spec.gpus,
            model_name=record.spec.model_name,
            status=record.status,
            message=record.message,
            model_version=record.model_version,
            requested_by=record.requested_by,
        )
        job.created_at.FromDatetime(record.created_at)
        if record.finished_at:
            job.finished_at.FromDatetime(record.finished_at)
        return job

    @guarded
    async def StartTrainingJob(self, request: inference_pb2.StartTrainingJobRequest, context) -> inference_pb2.TrainingJob:
        record = await self.jobs.start(request.dataset, request.recipe, request.gpus, request.model_name, request.requested_by)
        return self._job_proto(record)

    @guarded
    async def GetTrainingJob(self, request: inference_pb2.GetTrainingJobRequest, context) -> inference_pb2.TrainingJob:
        return self._job_proto(await self.jobs.get(request.id))

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
            jobs=[self._job_proto(r) for r in records],
            page=common_pb2.PageInfo(next_page_token=str(offset + len(records)) if more else "", total=total),
        )
