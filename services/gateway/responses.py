"""A stored file as a response: its name goes into Content-Disposition per RFC 6266.

The name is the user's (an upload's file name travels into the annotated image's name), so it can hold
any character: an HTTP header carries only Latin-1, and a quote or a control character would end or
break the header's quoted string. Every client reads the ASCII `filename="..."`; RFC 5987's
`filename*=UTF-8''...` carries the exact name to those that understand it (every current browser)."""
import re
import unicodedata
from collections.abc import Awaitable
from typing import TypeVar
from urllib.parse import quote

import grpc
from fastapi import HTTPException
from starlette.responses import Response

T = TypeVar("T")

# Control characters go everywhere; quotes and backslashes only from the quoted-string (the
# percent-encoded form carries them safely).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NOT_QUOTABLE = re.compile(r'["\\]')


def content_disposition(disposition: str, filename: str, default: str) -> str:
    """`disposition; filename="<ASCII>"`, plus `filename*=UTF-8''<percent-encoded>` when the name is not
    plain ASCII. `default` stands in for an ASCII fallback with nothing left of its stem (e.g. `日本.jpg`)."""
    name = _CONTROL.sub("", filename)
    ascii_name = _NOT_QUOTABLE.sub("", unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii"))
    # What joined the dropped characters to the rest ("фото-annotated.png" -> "annotated.png").
    ascii_name = ascii_name.lstrip(" -_")
    stem = ascii_name.rsplit(".", 1)[0]
    fallback = ascii_name if any(c.isalnum() for c in stem) else default
    if not name or fallback == name:
        return f'{disposition}; filename="{fallback}"'
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def file_response(content: bytes, media_type: str, filename: str, default: str, disposition: str = "inline") -> Response:
    """A stored file, private to its owner (browsers may keep it an hour)."""
    return Response(
        content,
        media_type=media_type,
        headers={"Content-Disposition": content_disposition(disposition, filename, default), "Cache-Control": "private, max-age=3600"},
    )


async def conflict_on_precondition(call: Awaitable[T]) -> T:
    """The call's answer, with a FAILED_PRECONDITION turned into a 409 (its details as the detail) rather than
    errors.py's general 400: a conflict with the state of things, not a request wrong in itself. For a file
    the service makes once the work is done (a report, a batch's CSV, a video's timeline: "not done yet"),
    and for an account change that would leave no administrator."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
            raise HTTPException(status_code=409, detail=exc.details()) from None
        raise
