"""Content-Disposition of stored files (services/gateway/responses.py), read back with werkzeug's
RFC 6266/2231 parser: any name survives, and the ASCII fallback cannot break the header."""
import pytest
from werkzeug.http import parse_options_header

from services.gateway.responses import content_disposition


@pytest.mark.parametrize(
    ("name", "fallback"),
    [
        ("photo.png", "photo.png"),
        ("фото-annotated.png", "annotated.png"),
        ("café.jpg", "cafe.jpg"),
        ("日本.jpg", "annotated.png"),  # nothing of the stem is ASCII: the default stands in
        ('say "cheese".png', "say cheese.png"),
        ("back\\slash.png", "backslash.png"),
    ],
)
def test_the_name_decodes_back_and_the_fallback_is_plain_ascii(name, fallback):
    header = content_disposition("inline", name, default="annotated.png")
    header.encode("ascii")  # a header Starlette can send
    assert parse_options_header(header) == ("inline", {"filename": name})
    assert f'filename="{fallback}"' in header
    assert ("filename*=" in header) == (name != fallback)


def test_control_characters_are_dropped_everywhere():
    header = content_disposition("attachment", "a\r\nSet-Cookie: x=1\x00\x7f.pdf", default="report")
    assert "\r" not in header and "\n" not in header and "\x00" not in header
    assert parse_options_header(header) == ("attachment", {"filename": "aSet-Cookie: x=1.pdf"})


def test_an_empty_name_gets_the_default():
    assert content_disposition("attachment", "", default="report") == 'attachment; filename="report"'
