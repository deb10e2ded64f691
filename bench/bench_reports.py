"""Report throughput and latency (`make bench-reports`): reports per minute and the time from request
to done, with 4 concurrent requesters, for PDF and for JSON.

A real deployment on this machine: the reports server (in this process), N worker processes
(`python -m services.reports.worker`) on RabbitMQ, a fresh PostgreSQL database (dropped afterwards)
and queues of their own (deleted afterwards). Each requester asks for a report on a two-face result
(a 512x512 photo), polls GetReport every 20 ms until it is done, and asks again.

    python -m bench.bench_reports [--seconds 20] [--concurrency 4] [--workers 1] [--in-process] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from fer.v1 import reports_pb2, reports_pb2_grpc  # noqa: E402
from ferkit.db import upgrade  # noqa: E402
from ferkit.grpc_client import open_channel  # noqa: E402
from services.reports.cli import MIGRATIONS  # noqa: E402
from services.reports.config import Settings  # noqa: E402
from services.reports.server import build  # noqa: E402

POSTGRES_ADMIN = os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class Database:
    """A fresh PostgreSQL database for the run, or a SQLite file with --sqlite."""

    def __init__(self, sqlite: bool) -> None:
        self.name = f"fer_bench_{uuid.uuid4().hex[:10]}"
        self.sqlite = sqlite
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-reports-")

    def __enter__(self) -> str:
        if self.sqlite:
            url = f"sqlite+aiosqlite:///{self.tmp.name}/reports.db"
        else:
            import psycopg

            with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
            base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
            url = f"{base}/{self.name}"
        upgrade(MIGRATIONS, url)
        return url

    def __exit__(self, *exc) -> None:
        if not self.sqlite:
            import psycopg

            with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.tmp.cleanup()


def start_workers(settings: Settings, count: int, log_path: Path) -> list[subprocess.Popen]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
        "AMQP_URL": settings.amqp_url,
        "REPORTS_DATABASE_URL": settings.database_url,
        "REPORTS_QUEUE_PREFIX": settings.queue_prefix,
        "REPORTS_WORKER_METRICS_PORT": "0",
        "REPORTS_LOG_FILE": "",
        "REPORTS_LOG_LEVEL": "WARNING",
    }
    log = open(log_path, "ab")
    return [subprocess.Popen([sys.executable, "-m", "services.reports.worker"], env=env, cwd=ROOT, stdout=log, stderr=log) for _ in range(count)]


async def one_report(stub, owner_id: str, result_id: str, fmt: str) -> float:
    started = time.perf_counter()
    report = await stub.RequestReport(reports_pb2.RequestReportRequest(owner_id=owner_id, result_id=result_id, format=fmt))
    while report.status not in ("done", "failed"):
        await asyncio.sleep(0.02)
        report = await stub.GetReport(reports_pb2.GetReportRequest(owner_id=owner_id, id=report.id))
    if report.status != "done":
        raise RuntimeError(f"report {report.id} failed: {report.error}")
    return time.perf_counter() - started


async def measure(stub, owner_id: str, result_id: str, fmt: str, seconds: float, concurrency: int) -> dict:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def requester() -> None:
        while time.perf_counter() < deadline:
            latencies.append(await one_report(stub, owner_id, result_id, fmt))

    started = time.perf_counter()
    await asyncio.gather(*(requester() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "format": fmt,
        "reports": len(latencies),
        "seconds": round(elapsed, 2),
        "reports_per_minute": round(60.0 * len(latencies) / elapsed, 1),
        "p50_s": round(percentile(latencies, 50), 3),
        "p95_s": round(percentile(latencies, 95), 3),
        "max_s": round(max(latencies), 3),
    }


async def run(args, database_url: str) -> list[dict]:
    from tests.fixtures.reports import delete_topology, sample_result

    settings = Settings(
        database_url=database_url,
        grpc_port=0,
        metrics_port=0,
        amqp_url="" if args.in_process else AMQP_URL,
        queue_prefix=f"bench.reports.{uuid.uuid4().hex[:8]}",
        log_level="WARNING",
    )
    service, servicer = build(settings)
    await servicer.dispatcher.start()
    port = await service.start()
    workers = [] if args.in_process else start_workers(settings, args.workers, Path(tempfile.gettempdir()) / "bench-reports-workers.log")
    channel = open_channel(f"127.0.0.1:{port}")
    stub = reports_pb2_grpc.ReportsServiceStub(channel)
    try:
        owner_id = str(uuid.uuid4())
        notes = "Benchmark: two faces on a 512x512 photo."
        result = await stub.SaveResult(sample_result(owner_id, notes=notes, labels=("happy", "surprise")))
        for fmt in ("pdf", "json"):  # warm-up: workers connected, fonts loaded, connections pooled
            await asyncio.wait_for(one_report(stub, owner_id, result.id, fmt), timeout=120)
        return [await measure(stub, owner_id, result.id, fmt, args.seconds, args.concurrency) for fmt in ("pdf", "json")]
    finally:
        await channel.close()
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(30)
        await service.stop()
        await servicer.dispatcher.stop()
        await servicer.engine.dispose()
        if settings.amqp_url:
            delete_topology(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per format")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent requesters")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (RabbitMQ mode)")
    parser.add_argument("--in-process", action="store_true", help="no broker: the server's in-process queue renders")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of a fresh PostgreSQL database")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    with Database(args.sqlite) as database_url:
        rows = asyncio.run(run(args, database_url))
    mode = "in-process queue" if args.in_process else f"RabbitMQ, {args.workers} worker process(es)"
    print(f"reports benchmark: {mode}, {'SQLite' if args.sqlite else 'PostgreSQL'}, {args.concurrency} concurrent requesters, "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    print(f"{'format':<7}{'reports':>9}{'per min':>10}{'p50 s':>9}{'p95 s':>9}{'max s':>9}")
    for row in rows:
        print(f"{row['format']:<7}{row['reports']:>9}{row['reports_per_minute']:>10}{row['p50_s']:>9}{row['p95_s']:>9}{row['max_s']:>9}")
    if args.json:
        args.json.write_text(json.dumps({"mode": mode, "concurrency": args.concurrency, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
