"""Keyset page tokens: an opaque cursor on (timestamp, row id), for lists that stay stable while rows arrive."""
import base64
import binascii
from datetime import datetime

from ferkit.db import as_utc, is_id


def encode_cursor(stamp: datetime, row_id: str) -> str:
    raw = f"{as_utc(stamp).isoformat()}|{row_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[datetime, str]:
    """(timestamp, row id) of a token encode_cursor made; ValueError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        stamp, row_id = raw.split("|", 1)
        parsed = datetime.fromisoformat(stamp)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("page_token is not valid") from None
    if not is_id(row_id):
        # What reaches the database is an id, never arbitrary text (PostgreSQL refuses a NUL byte outright).
        raise ValueError("page_token is not valid")
    return parsed, row_id
