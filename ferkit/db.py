"""SQLAlchemy 2 async engines and Alembic migrations, the same way for every service that owns data."""
import asyncio
import logging
import time
import uuid
import zlib
from datetime import datetime, timezone
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from sqlalchemy import event, exc, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


def is_id(value: str) -> bool:
    """Whether `value` has the form new_id() gives: anything else names no row, and is never sent to the
    database (PostgreSQL refuses a NUL byte outright)."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def as_utc(value: datetime) -> datetime:
    # SQLite hands datetimes back without a zone; everything the services store is UTC.
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def to_timestamp(value: datetime) -> Timestamp:
    """A stored datetime as a protobuf Timestamp."""
    stamp = Timestamp()
    stamp.FromDatetime(as_utc(value))
    return stamp


def make_engine(url: str) -> AsyncEngine:
    """PostgreSQL (asyncpg) in production and tests; SQLite (aiosqlite) for a local `make dev`."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One connection per use: SQLite serialises writers anyway, and a pool would hold the file lock.
        engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(migrations_dir: Path, url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", url)
    return config


def upgrade(migrations_dir: Path, url: str, revision: str = "head") -> None:
    """Apply migrations (blocking; call from a CLI or a thread)."""
    from alembic import command

    command.upgrade(alembic_config(migrations_dir, url), revision)


async def _connect_when_up(engine: AsyncEngine, wait_s: float = 60.0):
    """A connection, retried while the database is still starting (a pod may start before it)."""
    deadline = time.monotonic() + wait_s
    delay = 0.5
    while True:
        try:
            return await engine.connect()
        except (OSError, exc.OperationalError, exc.InterfaceError) as error:
            if time.monotonic() > deadline:
                raise
            log.warning("the database is not reachable yet (%s); retrying in %.1f s", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def run_env(target_metadata, version_table: str) -> None:
    """Body of every service's migrations/env.py: run Alembic over the async engine of the configured URL.

    Each service keeps its own version table, so services may share one database (tests, small installs).
    """
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")

    def migrate(connection: Connection) -> None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True, version_table=version_table
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Every replica's init container migrates at start: they queue here, one applies each
                # revision and the next finds it done (the lock ends with the transaction).
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": zlib.crc32(version_table.encode())})
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            connection = await _connect_when_up(engine)
            try:
                await connection.run_sync(migrate)
            finally:
                await connection.close()
        finally:
            await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True, version_table=version_table)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run())
