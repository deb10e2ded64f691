"""Settings every service shares; each service subclasses ServiceSettings with its own env prefix."""
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Read from the environment (e.g. AUTH_GRPC_PORT); no config file is needed to start."""

    model_config = SettingsConfigDict(extra="ignore", env_file=None)

    service_name: str = "service"
    host: str = "127.0.0.1"
    grpc_port: int = 0
    # Prometheus metrics over HTTP; 0 turns the endpoint off (tests use the in-process registry).
    metrics_port: int = 0
    log_level: str = "INFO"
    # Operators want the console and a file; an empty value keeps only the console.
    log_file: str = ""
    # Seconds in-flight RPCs get to finish on SIGTERM before they are cancelled.
    shutdown_grace_s: float = 5.0

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"
