from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from ferkit.config import ServiceSettings
from ferkit.limits import NOTES_MAX_CHARS


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
