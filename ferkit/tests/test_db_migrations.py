"""Migrations that several replicas start at once (each pod's init container runs them): on PostgreSQL
they queue on an advisory lock, so exactly one applies each revision and the others find it done."""
import os
import subprocess
import sys
import uuid

import psycopg
from sqlalchemy import create_engine, text

from tests.fixtures.databases import ADMIN_URL


def test_replicas_migrating_one_database_at_once_all_succeed():
    name = f"fer_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{ADMIN_URL.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    try:
        # Four auth replicas and two reports replicas, all at the same moment, on one fresh database, each
        # running what its init container runs.
        env = {**os.environ, "AUTH_DATABASE_URL": url, "REPORTS_DATABASE_URL": url}
        replicas = [subprocess.Popen([sys.executable, "-m", f"services.{service}.cli", "migrate"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                    for service in ["auth"] * 4 + ["reports"] * 2]
        for replica in replicas:
            output, _ = replica.communicate(timeout=120)
            assert replica.returncode == 0, output
        engine = create_engine(url.replace("+asyncpg", "+psycopg"))
        with engine.connect() as conn:
            versions = {table: conn.execute(text(f"SELECT version_num FROM {table}")).scalars().all()
                        for table in ("alembic_version_auth", "alembic_version_reports")}
        engine.dispose()
        assert all(len(found) == 1 for found in versions.values()), versions
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
