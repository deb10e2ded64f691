from pydantic_settings import SettingsConfigDict

from ferkit.config import ServiceSettings
from ferkit.limits import UPLOAD_MAX_BYTES


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: str = "gateway"
    http_port: int = 8080
    auth_addr: str = "127.0.0.1:50051"
    # Empty: that service is not part of this deployment (its routes answer 503, /readyz ignores it).
    inference_addr: str = "127.0.0.1:50052"
    reports_addr: str = "127.0.0.1:50053"
    grpc_timeout_s: float = 30.0
    # Comma-separated origins allowed by CORS; empty allows none (same-origin frontend needs none).
    cors_origins: str = ""
    max_json_bytes: int = 64 * 1024
    max_upload_bytes: int = UPLOAD_MAX_BYTES
    # The static frontend served at "/" when the folder exists.
    frontend_dir: str = "frontend"

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]
