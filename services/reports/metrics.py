"""Prometheus metrics of the jobs (the server and the worker each serve their own /metrics)."""
from prometheus_client import Counter, Gauge, Histogram

JOBS = Counter("reports_jobs_total", "Report jobs by outcome: queued, done, failed, retried.", ["outcome"])
RENDER_SECONDS = Histogram(
    "reports_render_seconds",
    "Time to render one report file.",
    ["format"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUE_DEPTH = Gauge("reports_queue_depth", "Jobs (reports, batches, videos) waiting in the queue (ready, not yet delivered).")
DEAD_LETTERED = Counter("reports_dead_lettered_total", "Jobs sent to the dead-letter exchange.")
BATCHES = Counter("reports_batches_total", "Batches of photos by outcome: queued (created), done, failed.", ["outcome"])
BATCH_PHOTOS = Counter("reports_batch_photos_total", "Photos of batches finished, by outcome: done (analysed), failed.", ["outcome"])
VIDEOS = Counter("reports_videos_total", "Videos by outcome: queued (uploaded), done, failed.", ["outcome"])
# rate() of this is the frames per second the workers analyse.
VIDEO_FRAMES = Counter("reports_video_frames_total", "Sampled video frames analysed.")

for _outcome in ("queued", "done", "failed", "retried"):
    JOBS.labels(_outcome)
for _outcome in ("queued", "done", "failed"):
    BATCHES.labels(_outcome)
    VIDEOS.labels(_outcome)
for _outcome in ("done", "failed"):
    BATCH_PHOTOS.labels(_outcome)
