"""services/gateway/archives.py on archives crafted in memory: what a hostile ZIP tries (a bomb, names
that leave the folder, a header that lies, too many entries, nested archives, encryption) is skipped
with its reason or refuses the archive, and what is read is never more than the caps allow."""
import io
import struct
import zipfile

import pytest

from services.gateway.archives import OUTSIDE, ArchiveError, ArchiveLimits, read_members
from tests.fixtures.reports import sample_png

MiB = 1024 * 1024
LIMITS = ArchiveLimits(max_members=50, max_member_bytes=10 * MiB, max_total_bytes=48 * MiB, max_ratio=100)


def zip_of(entries: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> io.BytesIO:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    out.seek(0)
    return out


def by_name(members) -> dict:
    return {member.name: member for member in members}


def test_photos_are_read_whole_in_order_and_folders_left_out():
    photo = sample_png(size=64)
    archive = zip_of([("a.png", photo), ("holiday/", b""), ("holiday/b.png", photo)], compression=zipfile.ZIP_STORED)
    members = read_members(archive, LIMITS)
    assert [(m.name, m.data, m.error) for m in members] == [("a.png", photo, None), ("holiday/b.png", photo, None)]


@pytest.mark.parametrize("name", ["../evil.png", "/abs.png", "photos/../../evil.png", "C:/evil.png", "c:evil.png",
                                  "photos\\..\\evil.png", ".."])
def test_a_name_that_leaves_the_folder_is_skipped_unread(name):
    members = by_name(read_members(zip_of([(name, sample_png(size=64)), ("fine.png", sample_png(size=64))]), LIMITS))
    assert members[name].data is None and members[name].error == OUTSIDE
    assert members["fine.png"].data is not None


def test_macos_metadata_is_not_an_item():
    archive = zip_of([("__MACOSX/._a.png", b"\x00\x05\x16\x07"), ("._b.png", b"x"), (".DS_Store", b"x"), ("a.png", b"png?")])
    assert [member.name for member in read_members(archive, LIMITS)] == ["a.png"]


def test_a_zip_bomb_is_skipped_before_it_is_opened():
    # 8 MiB of zeros deflate to ~8 KB: a thousandfold, under the per-image cap, so only the ratio catches it.
    archive = zip_of([("bomb.png", bytes(8 * MiB)), ("small-flat.bmp", bytes(200_000))])
    members = by_name(read_members(archive, LIMITS))
    assert members["bomb.png"].data is None and "looks like a ZIP bomb" in members["bomb.png"].error
    # A small flat picture compresses as much, but cannot cost more than its size: it is read.
    assert members["small-flat.bmp"].data == bytes(200_000)


def test_a_member_declared_larger_than_an_image_may_be_is_skipped():
    limits = ArchiveLimits(max_members=50, max_member_bytes=100_000, max_total_bytes=48 * MiB, max_ratio=100)
    members = by_name(read_members(zip_of([("big.png", bytes(100_001)), ("ok.png", bytes(100_000))], zipfile.ZIP_STORED), limits))
    assert members["big.png"].error == "the image is larger than 100000 bytes"
    assert len(members["ok.png"].data) == 100_000


def rewrite_headers(archive: io.BytesIO, name: str, local_at: int, central_at: int, fmt: str, value: int) -> io.BytesIO:
    """The archive with a field of `name`'s local and central headers set to `value` (zipfile writes
    only honest archives: a hostile one is made by editing an honest one)."""
    raw = bytearray(archive.getvalue())
    encoded = name.encode()
    for signature, name_length_at, name_at, field_at in ((b"PK\x03\x04", 26, 30, local_at), (b"PK\x01\x02", 28, 46, central_at)):
        at = raw.find(signature)
        while at != -1:
            name_length = struct.unpack_from("<H", raw, at + name_length_at)[0]
            if raw[at + name_at: at + name_at + name_length] == encoded:
                struct.pack_into(fmt, raw, at + field_at, value)
            at = raw.find(signature, at + 4)
    return io.BytesIO(bytes(raw))


def lie_about_size(archive: io.BytesIO, name: str, declared: int) -> io.BytesIO:
    return rewrite_headers(archive, name, local_at=22, central_at=24, fmt="<I", value=declared)


def mark_encrypted(archive: io.BytesIO, name: str) -> io.BytesIO:
    return rewrite_headers(archive, name, local_at=6, central_at=8, fmt="<H", value=0x1)


def test_a_header_that_understates_the_size_is_caught_not_believed():
    # Declared 1000 bytes, holds 5 MiB: reading stops at the declared size and the CRC gives it away.
    archive = lie_about_size(zip_of([("liar.png", bytes(5 * MiB)), ("ok.png", b"fine")]), "liar.png", 1000)
    members = by_name(read_members(archive, LIMITS))
    assert members["liar.png"].data is None and "cannot be read" in members["liar.png"].error
    assert members["ok.png"].data == b"fine"


def test_nested_archives_and_encrypted_members_are_skipped_with_their_reason():
    inner = zip_of([("a.png", b"x")]).getvalue()
    archive = mark_encrypted(zip_of([("inner.zip", inner), ("more.tar.gz", b"x"), ("secret.png", b"x")], zipfile.ZIP_STORED), "secret.png")
    members = by_name(read_members(archive, LIMITS))
    assert members["inner.zip"].error == members["more.tar.gz"].error == "an archive inside the archive is not opened"
    assert members["secret.png"].error == "the member is encrypted"


def test_too_many_entries_refuse_the_archive_before_any_is_read():
    archive = zip_of([(f"{i}/", b"") for i in range(51)])
    with pytest.raises(ArchiveError) as refused:
        read_members(archive, LIMITS)
    assert refused.value.status == 413 and "51 entries" in str(refused.value)


def test_the_bytes_read_in_all_have_a_budget():
    limits = ArchiveLimits(max_members=50, max_member_bytes=MiB, max_total_bytes=3 * MiB, max_ratio=100)
    photos = [(f"{i}.png", bytes([i]) * (MiB - 10)) for i in range(2)]
    assert len(read_members(zip_of(photos, zipfile.ZIP_STORED), limits)) == 2
    # The batch's uploaded files took 2 MiB already: the second member does not fit.
    with pytest.raises(ArchiveError) as refused:
        read_members(zip_of(photos, zipfile.ZIP_STORED), limits, used_bytes=2 * MiB)
    assert refused.value.status == 413 and "in all" in str(refused.value)


@pytest.mark.parametrize("data", [b"", b"not a zip at all", b"PK\x03\x04 truncated", sample_png(size=64)])
def test_what_is_not_a_zip_is_a_422(data):
    with pytest.raises(ArchiveError) as refused:
        read_members(io.BytesIO(data), LIMITS)
    assert refused.value.status == 422 and str(refused.value) == "the archive is not a ZIP archive (or it is corrupt)"
