"""Entry point: `python -m services.inference.server`."""
from __future__ import annotations

import asyncio
import logging

from fer.v1 import inference_pb2, inference_pb2_grpc
from ferkit.db import make_engine
from ferkit.grpc_server import GrpcService, Registration, run_until_signalled
from ferkit.logs import setup_logging
from services.inference.config import Settings
from services.inference.detection import FaceDetector
from services.inference.inference_servicer import InferenceServicer
from services.inference.model_servicer import ModelServicer
from services.inference.registry import PROMOTED_VERSIONS, ModelRegistry, NoModelDeployed, UnknownModel
from services.inference.training.announce import VersionListener
from services.inference.training.servicer import TrainingServicer
from services.inference.training.store import TrainingJobs
from services.inference.triton import ModelNotServing, TritonClient, TritonError, TritonUnavailable

log = logging.getLogger(__name__)


class Runtime:
    """What runs beside the RPCs: the detector pool, the listener for announced versions, loading
    the promoted model at start (in the background while Triton is not up yet), and keeping the
    unfinished training jobs' records up to date."""

    def __init__(self, settings: Settings, registry: ModelRegistry, triton: TritonClient, detector: FaceDetector,
                 jobs: TrainingJobs) -> None:
        self.settings = settings
        self.registry = registry
        self.triton = triton
        self.detector = detector
        self.jobs = jobs
        self.listener: VersionListener | None = None  # when RabbitMQ is configured
        self.background: asyncio.Task | None = None
        self.job_poller: asyncio.Task | None = None

    async def start(self) -> None:
        """Triton being down is not fatal: the first request answers UNAVAILABLE and loads the model
        once Triton is back."""
        await self.detector.start()
        settings = self.settings
        if settings.amqp_url:
            self.listener = VersionListener(settings.amqp_url, settings.models_queue, self.registry.load,
                                            asyncio.get_running_loop(), load_timeout_s=settings.triton_load_timeout_s,
                                            retry_on=(TritonUnavailable,))
            self.listener.start()
        if not await self._bootstrap():
            # Triton may still be starting (make dev starts both at once): keep trying in the background.
            self.background = asyncio.create_task(self._bootstrap_until_serving())
        if settings.training.launcher == "kubernetes":
            # A Job may end and be cleaned up (its TTL) before anyone asks; a local job cannot.
            self.job_poller = asyncio.create_task(self._poll_jobs(settings.training.poll_interval_s))

    async def _poll_jobs(self, interval_s: float) -> None:
        while True:
            try:
                await self.jobs.refresh_unfinished()
            except Exception as exc:  # the database may be away for a while: the next round retries
                log.warning("could not bring the training jobs up to date: %s", exc)
            await asyncio.sleep(interval_s)

    async def _bootstrap(self) -> bool:
        try:
            version = await self.registry.bootstrap()
        except (TritonUnavailable, ModelNotServing, TritonError, UnknownModel, NoModelDeployed) as exc:
            log.warning("the model is not serving yet: %s", exc)
            return False
        log.info("serving %s version %d", self.settings.model_name, version)
        return True

    async def _bootstrap_until_serving(self, interval_s: float = 2.0, attempts: int = 60) -> None:
        for _ in range(attempts):
            await asyncio.sleep(interval_s)
            if await self._bootstrap():
                return

    async def stop(self) -> None:
        if self.listener is not None:
            await asyncio.to_thread(self.listener.stop)
        for task in (self.background, self.job_poller):
            if task is not None:
                task.cancel()
        await self.jobs.close()
        await self.jobs.engine.dispose()
        self.detector.close()
        await self.triton.close()


def _full_name(service: str) -> str:
    return inference_pb2.DESCRIPTOR.services_by_name[service].full_name


def build(settings: Settings) -> tuple[GrpcService, Runtime]:
    triton = TritonClient(
        settings.triton_url,
        timeout_s=settings.triton_timeout_s,
        attempts=settings.triton_attempts,
        backoff_s=settings.triton_backoff_s,
        load_timeout_s=settings.triton_load_timeout_s,
    )
    registry = ModelRegistry(
        settings.model_repository, triton, settings.triton_config_name, settings.state_dir or None, settings.model_name,
        settings.triton_config_dir or None,
    )
    PROMOTED_VERSIONS.registry = registry
    detector = FaceDetector(settings.detector, settings.detector_workers, settings.detector_min_score)
    jobs = TrainingJobs(settings, make_engine(settings.database_url))
    service = GrpcService(settings, [
        Registration(inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                     InferenceServicer(settings, registry, triton, detector), _full_name("InferenceService")),
        Registration(inference_pb2_grpc.add_ModelServiceServicer_to_server, ModelServicer(registry), _full_name("ModelService")),
        Registration(inference_pb2_grpc.add_TrainingServiceServicer_to_server,
                     TrainingServicer(jobs), _full_name("TrainingService")),
    ])
    return service, Runtime(settings, registry, triton, detector, jobs)


async def main() -> None:
    settings = Settings()
    setup_logging(settings.service_name, settings.log_level, settings.log_file)
    service, runtime = build(settings)
    await run_until_signalled(service, on_start=runtime.start, on_stop=runtime.stop)


if __name__ == "__main__":
    asyncio.run(main())
