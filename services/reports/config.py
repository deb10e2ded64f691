from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from ferkit.config import ServiceSettings
from ferkit.limits import (
    BATCH_MAX_BYTES,
    BATCH_MAX_PHOTOS,
    NOTES_MAX_CHARS,
    UPLOAD_MAX_BYTES,
    VIDEO_DEFAULT_FPS,
    VIDEO_MAX_BYTES,
    VIDEO_MAX_FPS,
    VIDEO_MAX_SECONDS,
)


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REPORTS_", extra="ignore")

    service_name: str = "reports"
    grpc_port: int = 50053
    metrics_port: int = 9103
    # The worker process serves its own metrics (REPORTS_WORKER_METRICS_PORT).
    worker_metrics_port: int = 9104
    database_url: str = "sqlite+aiosqlite:///var/reports.db"
    # RabbitMQ, e.g. amqp://guest:guest@127.0.0.1:5672/%2F. Unset: jobs run in the server's own
    # in-process queue (one process, nothing else to start). Shared with other tools, hence no prefix.
    amqp_url: str = Field(default="", validation_alias=AliasChoices("AMQP_URL", "REPORTS_AMQP_URL"))
    # Every exchange and queue name starts with this, so deployments (and test runs) never collide.
    queue_prefix: str = "fer.reports"
    # Unacknowledged jobs a worker holds at once.
    prefetch_count: int = 2
    # Seconds to wait before each retry; a job fails for good after len(retry_delays_s) + 1 attempts.
    retry_delays_s: list[float] = [2.0, 10.0, 60.0]
    # How often the re-publisher looks for reports saved while the broker was unreachable.
    republish_interval_s: float = 2.0
    # Reports younger than this are left to the request that made them (avoids double publishing).
    republish_grace_s: float = 1.0
    # A queued or running report untouched this long has its job published again (the broker lost it).
    stale_after_s: float = 900.0
    # How often the queue-depth gauge is refreshed.
    depth_interval_s: float = 5.0
    # In-process queue only: jobs rendered at once.
    local_concurrency: int = 2
    # Extra seconds added to every render: lets drills and tests catch a worker in the middle of a job.
    render_delay_s: float = 0.0
    # One delivery of a batch or video job works this long at most, then publishes its continuation and
    # is acknowledged: pika's heartbeats are answered between deliveries, a restart loses at most one
    # slice, and long jobs take turns with short ones.
    job_slice_s: float = 20.0
    # Extra seconds before each batch photo and each group of video frames, for drills and tests
    # (catching a worker in the middle of a batch or a video).
    job_step_delay_s: float = 0.0
    # Photos of one batch analysed at once: the inference service and Triton batch what arrives together.
    batch_concurrency: int = 4
    batch_max_photos: int = BATCH_MAX_PHOTOS
    batch_max_bytes: int = BATCH_MAX_BYTES
    image_max_bytes: int = UPLOAD_MAX_BYTES
    # Sampled frames per PredictFrames call: all their faces go to Triton together (one face a frame:
    # a batch of 32). At most 64 (the inference service's limit).
    video_frames_per_request: int = 32
    video_default_fps: float = VIDEO_DEFAULT_FPS
    video_max_fps: float = VIDEO_MAX_FPS
    video_max_bytes: int = VIDEO_MAX_BYTES
    video_max_seconds: float = VIDEO_MAX_SECONDS
    # A video whose slices stop their worker this many times in a row (a crash, a kill, an error the job
    # does not answer) with no frame stored in between fails, rather than being redelivered forever.
    video_max_unfinished_slices: int = 3
    # Sampled frames are scaled down to this many pixels on their longest side before detection.
    video_frame_max_side: int = 640
    # Where an upload is spooled while it is checked, and a video job keeps the file it decodes
    # (empty: the system's temporary directory). Needs room for video_max_bytes per upload and job.
    spool_dir: str = ""
    # Results history: the default and largest page of ListResults.
    default_page_size: int = 20
    max_page_size: int = 100
    max_notes_chars: int = NOTES_MAX_CHARS
    # AnalyzeImage asks the inference service for the faces and the auth service to count the analysis.
    # Empty: this deployment analyses nothing (AnalyzeImage answers UNAVAILABLE).
    inference_addr: str = "127.0.0.1:50052"
    auth_addr: str = "127.0.0.1:50051"
    grpc_timeout_s: float = 30.0
    # How often the eraser asks auth for accounts deleted since its cursor and erases their results and
    # reports (the gateway asks at deletion too; this covers a reports service down at that moment).
    # Runs only where auth_addr is set.
    erase_interval_s: float = 30.0
    # The annotated image is drawn at most this large (longest side).
    annotated_max_side: int = 2048

    @property
    def max_attempts(self) -> int:
        return len(self.retry_delays_s) + 1
