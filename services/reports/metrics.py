"""Prometheus metrics of report jobs (the server and the worker each serve their own /metrics)."""
from prometheus_client import Counter, Gauge, Histogram

JOBS = Counter("reports_jobs_total", "Report jobs by outcome: queued, done, failed, retried.", ["outcome"])
RENDER_SECONDS = Histogram(
    "reports_render_seconds",
    "Time to render one report file.",
    ["format"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUE_DEPTH = Gauge("reports_queue_depth", "Report jobs waiting in the queue (ready, not yet delivered).")
DEAD_LETTERED = Counter("reports_dead_lettered_total", "Report jobs sent to the dead-letter exchange.")

for _outcome in ("queued", "done", "failed", "retried"):
    JOBS.labels(_outcome)
