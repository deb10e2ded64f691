"""Entry point: `python -m services.auth.server`."""
import asyncio
import logging

from sqlalchemy import select

from fer.v1 import auth_pb2, auth_pb2_grpc
from ferkit.db import make_engine, make_sessionmaker
from ferkit.grpc_server import GrpcService, Registration, run_until_signalled
from ferkit.logs import setup_logging
from services.auth.config import Settings
from services.auth.models import User
from services.auth.passwords import Hasher
from services.auth.service import AuthServicer
from services.auth.tokens import AccessTokenIssuer, load_signing_key
from services.auth.validation import normalise_email

log = logging.getLogger(__name__)
SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name


def build(settings: Settings) -> tuple[GrpcService, AuthServicer]:
    engine = make_engine(settings.database_url)
    issuer = AccessTokenIssuer(
        load_signing_key(settings.jwt_private_key),
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.access_token_ttl_s,
    )
    servicer = AuthServicer(
        settings, make_sessionmaker(engine), Hasher(settings.argon2_time_cost, settings.argon2_memory_kib), issuer
    )
    servicer.engine = engine
    service = GrpcService(settings, [Registration(auth_pb2_grpc.add_AuthServiceServicer_to_server, servicer, SERVICE_NAME)])
    return service, servicer


async def ensure_admin(servicer: AuthServicer, email: str, password: str, display_name: str = "Administrator") -> User:
    """Create the admin account, or make an existing account with that email an admin (enabled again if it
    was disabled: this is the operator's way back in when no administrator can log in)."""
    async with servicer.sessions() as session:
        user = await session.scalar(select(User).where(User.email == normalise_email(email)))
        if user is not None:
            user.role = "admin"
            user.disabled = False
            await session.commit()
            return user
    return await servicer.create_user(email, password, display_name, role="admin")


async def main() -> None:
    settings = Settings()
    setup_logging(settings.service_name, settings.log_level, settings.log_file)
    if not settings.jwt_private_key:
        log.warning("AUTH_JWT_PRIVATE_KEY is not set: signing with a key generated for this process only")
    service, servicer = build(settings)

    async def on_start() -> None:
        if settings.admin_email and settings.admin_password:
            await ensure_admin(servicer, settings.admin_email, settings.admin_password)
            log.info("admin account %s is ready", settings.admin_email)

    await run_until_signalled(service, on_start=on_start, on_stop=servicer.engine.dispose)


if __name__ == "__main__":
    asyncio.run(main())
