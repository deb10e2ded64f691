"""Entry point: `python -m services.gateway.server` (uvicorn on GATEWAY_HOST:GATEWAY_HTTP_PORT)."""
import uvicorn

from ferkit.logs import setup_logging
from services.gateway.app import create_app
from services.gateway.config import Settings


def server_config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.http_port,
        log_config=None,  # keep the platform's one log format
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        # Forwarded headers are the app's to believe, from GATEWAY_TRUSTED_PROXIES only; uvicorn's own
        # default would believe any client on 127.0.0.1.
        proxy_headers=False,
    )


def main() -> None:
    settings = Settings()
    setup_logging(settings.service_name, settings.log_level, settings.log_file)
    uvicorn.Server(server_config(settings)).run()


if __name__ == "__main__":
    main()
