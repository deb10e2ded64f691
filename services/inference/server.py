"""Entry point: `python -m services.inference.server`."""
import asyncio
import logging

from fer.v1 import inference_pb2, inference_pb2_grpc
from ferkit.grpc_server import GrpcService, Registration, run_until_signalled
from ferkit.logs import setup_logging
from services.inference.announcements import VersionListener
from services.inference.config import Settings
from services.inference.detection import FaceDetector
from services.inference.jobs import TrainingJobs
from services.inference.registry import ModelRegistry, NoModelDeployed, UnknownModel
from services.inference.service import InferenceServicer
from services.inference.triton import ModelNotServing, TritonClient, TritonError, TritonUnavailable

log = logging.getLogger(__name__)
SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


def build(settings: Settings) -> tuple[GrpcService, InferenceServicer]:
    triton = TritonClient(
        settings.triton_url,
        timeout_s=settings.triton_timeout_s,
        attempts=settings.triton_attempts,
        backoff_s=settings.triton_backoff_s,
        load_timeout_s=settings.triton_load_timeout_s,
    )
    registry = ModelRegistry(
        settings.model_repository, triton, settings.triton_config_name, settings.state_dir or None, settings.model_name
    )
    detector = FaceDetector(settings.detector, settings.detector_workers, settings.detector_min_score, settings.detector_max_side)
    servicer = InferenceServicer(settings, registry, triton, detector, TrainingJobs(settings))
    service = GrpcService(settings, [Registration(inference_pb2_grpc.add_InferenceServiceServicer_to_server, servicer, SERVICE_NAME)])
    return service, servicer


async def start(servicer: InferenceServicer) -> None:
    """Start the detector pool and load the promoted model. Triton being down is not fatal: the first
    request answers UNAVAILABLE and loads the model once Triton is back."""
    await servicer.detector.start()
    settings = servicer.settings
    if settings.amqp_url:
        servicer.listener = VersionListener(settings.amqp_url, settings.models_queue, servicer.registry.load,
                                            asyncio.get_running_loop(), load_timeout_s=settings.triton_load_timeout_s)
        servicer.listener.start()
    if not await _bootstrap(servicer):
        # Triton may still be starting (make dev starts both at once): keep trying in the background.
        servicer.background = asyncio.create_task(_bootstrap_until_serving(servicer))


async def _bootstrap(servicer: InferenceServicer) -> bool:
    try:
        version = await servicer.registry.bootstrap()
    except (TritonUnavailable, ModelNotServing, TritonError, UnknownModel, NoModelDeployed) as exc:
        log.warning("the model is not serving yet: %s", exc)
        return False
    log.info("serving %s version %d", servicer.settings.model_name, version)
    return True


async def _bootstrap_until_serving(servicer: InferenceServicer, interval_s: float = 2.0, attempts: int = 60) -> None:
    for _ in range(attempts):
        await asyncio.sleep(interval_s)
        if await _bootstrap(servicer):
            return


async def stop(servicer: InferenceServicer) -> None:
    if servicer.listener is not None:
        await asyncio.to_thread(servicer.listener.stop)
    if servicer.background is not None:
        servicer.background.cancel()
    servicer.detector.close()
    await servicer.triton.close()


async def main() -> None:
    settings = Settings()
    setup_logging(settings.service_name, settings.log_level, settings.log_file)
    service, servicer = build(settings)
    await run_until_signalled(service, on_start=lambda: start(servicer), on_stop=lambda: stop(servicer))


if __name__ == "__main__":
    asyncio.run(main())
