"""One log format for every service, to the console and to a file, with the request id of the call."""
import logging
import logging.handlers
import sys
import uuid
from contextvars import ContextVar
from pathlib import Path

REQUEST_ID_HEADER = "x-request-id"
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(service)s %(name)s [%(request_id)s] %(message)s"


def new_request_id() -> str:
    return uuid.uuid4().hex


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.service = self.service
        return True


def setup_logging(service: str, level: str = "INFO", log_file: str = "") -> None:
    """Configure the root logger; safe to call more than once (handlers are replaced)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(log_file, maxBytes=20_000_000, backupCount=3))
    formatter = logging.Formatter(LOG_FORMAT)
    context = _ContextFilter(service)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(context)
        root.addHandler(handler)
    root.setLevel(level.upper())
