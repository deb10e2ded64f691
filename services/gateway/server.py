"""Entry point: `python -m services.gateway.server` (uvicorn on GATEWAY_HOST:GATEWAY_HTTP_PORT)."""
import uvicorn

from ferkit.logs import setup_logging
from services.gateway.app import create_app
from services.gateway.config import Settings


def main() -> None:
    settings = Settings()
    setup_logging(settings.service_name, settings.log_level, settings.log_file)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.http_port,
        log_config=None,  # keep the platform's one log format
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
