"""The gateway's own metrics beside the HTTP ones (middleware.py): the live camera's sessions and frames.
Batches and videos are counted where their work is done, in the reports service."""
from prometheus_client import Counter, Gauge, Histogram

LIVE_SESSIONS = Gauge("live_sessions_open", "Live camera WebSocket sessions open (authenticated).")
# answered: a reply with faces; failed: a reply with an error (not an image, inference unavailable);
# skipped: replaced by a newer frame before it was answered.
LIVE_FRAMES = Counter("live_frames_total", "Live camera frames by outcome.", ["outcome"])
LIVE_LATENCY = Histogram(
    "live_frame_seconds",
    "From a live frame's arrival to its reply being sent.",
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5),
)
