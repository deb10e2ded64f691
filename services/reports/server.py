"""Entry point: `python -m services.reports.server`. With AMQP_URL set, jobs (reports, batches, videos)
go to RabbitMQ for `python -m services.reports.worker`; without it the server runs them itself."""
import asyncio
import logging
from functools import partial

from fer.v1 import reports_pb2, reports_pb2_grpc
from ferkit.db import make_engine, make_sessionmaker
from ferkit.grpc_server import GrpcService, Registration, run_until_signalled
from ferkit.logs import setup_logging
from services.reports.analysis import open_upstreams
from services.reports.config import Settings
from services.reports.dispatch import make_dispatcher
from services.reports.erasure import Eraser
from services.reports.service import ReportsServicer

SERVICE_NAME = reports_pb2.DESCRIPTOR.services_by_name["ReportsService"].full_name


def build(settings: Settings) -> tuple[GrpcService, ReportsServicer]:
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    # The services AnalyzeImage (and, without a broker, the batch and video jobs) call, one channel
    # each for the life of the process.
    channels, inference, auth = open_upstreams(settings)
    servicer = ReportsServicer(settings, sessions, make_dispatcher(settings, sessions, inference, auth), inference=inference, auth=auth)
    servicer.engine = engine
    servicer.channels = channels
    servicer.eraser = Eraser(settings, sessions, servicer.auth)
    service = GrpcService(
        settings, [Registration(reports_pb2_grpc.add_ReportsServiceServicer_to_server, servicer, SERVICE_NAME)]
    )
    return service, servicer


async def start_loops(servicer: ReportsServicer) -> None:
    """What runs beside the calls: the dispatcher (re-publisher or in-process queue) and the eraser."""
    await servicer.dispatcher.start()
    await servicer.eraser.start()


async def shut_down(servicer: ReportsServicer) -> None:
    """Stops the loops, then closes the database and the channels (after the gRPC server stopped)."""
    await servicer.eraser.stop()
    await servicer.dispatcher.stop()
    await servicer.engine.dispose()
    for channel in servicer.channels:
        await channel.close()


async def main() -> None:
    settings = Settings()
    setup_logging(settings.service_name, settings.log_level, settings.log_file)
    # pika logs every failed connection attempt at ERROR with its traceback; ours say it once, plainly.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    service, servicer = build(settings)

    await run_until_signalled(service, on_start=partial(start_loops, servicer), on_stop=partial(shut_down, servicer))


if __name__ == "__main__":
    asyncio.run(main())
