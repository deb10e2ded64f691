"""Entry point: `python -m services.reports.server`. With AMQP_URL set, jobs go to RabbitMQ for
`python -m services.reports.worker`; without it the server renders them itself."""
import asyncio
import logging

from fer.v1 import reports_pb2, reports_pb2_grpc
from ferkit.db import make_engine, make_sessionmaker
from ferkit.grpc_server import GrpcService, Registration, run_until_signalled
from ferkit.logs import setup_logging
from services.reports.config import Settings
from services.reports.dispatch import make_dispatcher
from services.reports.service import ReportsServicer

SERVICE_NAME = reports_pb2.DESCRIPTOR.services_by_name["ReportsService"].full_name


def build(settings: Settings) -> tuple[GrpcService, ReportsServicer]:
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    servicer = ReportsServicer(settings, sessions, make_dispatcher(settings, sessions))
    servicer.engine = engine
    service = GrpcService(
        settings, [Registration(reports_pb2_grpc.add_ReportsServiceServicer_to_server, servicer, SERVICE_NAME)]
    )
    return service, servicer


async def main() -> None:
    settings = Settings()
    setup_logging(settings.service_name, settings.log_level, settings.log_file)
    # pika logs every failed connection attempt at ERROR with its traceback; ours say it once, plainly.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    service, servicer = build(settings)

    async def on_stop() -> None:
        await servicer.dispatcher.stop()
        await servicer.engine.dispose()

    await run_until_signalled(service, on_start=servicer.dispatcher.start, on_stop=on_stop)


if __name__ == "__main__":
    asyncio.run(main())
