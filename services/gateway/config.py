import ipaddress

from pydantic import field_validator
from pydantic_settings import SettingsConfigDict

from ferkit.config import ServiceSettings
from ferkit.limits import BATCH_MAX_BYTES, BATCH_MAX_PHOTOS, UPLOAD_MAX_BYTES, VIDEO_MAX_BYTES


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
    # Comma-separated addresses or CIDRs of the proxies in front of the gateway (an ingress controller's
    # pods). Only a request from one of them has its X-Forwarded-For believed, and the client is then the
    # right-most forwarded address that is not a proxy. Empty: no forwarded header is believed.
    trusted_proxies: str = ""
    # A token naming a signing key the gateway does not know makes it fetch auth's key set again (key
    # rotation), at most once in this many seconds: forged key ids cannot make it call auth per request.
    key_refetch_interval_s: float = 30.0
    max_json_bytes: int = 64 * 1024
    max_upload_bytes: int = UPLOAD_MAX_BYTES
    # A batch (the photos' bytes together; the request's body may exceed it by its multipart framing)
    # and a video upload. The defaults are the platform's limits (ferkit/limits.py); lower ones suit a
    # deployment that wants less, never higher ones (the services check the same limits again).
    batch_max_photos: int = BATCH_MAX_PHOTOS
    batch_max_bytes: int = BATCH_MAX_BYTES
    video_max_bytes: int = VIDEO_MAX_BYTES
    # The live WebSocket: how long a client has to send its token once connected.
    live_auth_timeout_s: float = 10.0
    # The static frontend served at "/" when the folder exists.
    frontend_dir: str = "frontend"

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses_or_networks(cls, value: str) -> str:
        for item in _items(value):
            ipaddress.ip_network(item, strict=False)  # a typo fails at start, not silently
        return value

    @property
    def cors_origin_list(self) -> list[str]:
        return _items(self.cors_origins)

    @property
    def trusted_proxy_list(self) -> list[str]:
        return _items(self.trusted_proxies)


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]
