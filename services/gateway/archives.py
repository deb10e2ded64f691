"""A ZIP of photos, read in memory with caps, never unpacked to disk.

An uploaded archive is the caller's to shape, so nothing in it is believed: the number of entries is
capped before any is read; a name that would leave a folder (absolute, `..`, a drive letter, a
backslash) is skipped, not "cleaned"; a member's declared size and its compression ratio are checked
before it is opened, and it is read with a hard cap one byte past the limit (so a header that lies is
caught, and zipfile's CRC check catches one that lies the other way); the bytes read from all members
together have a budget. What is skipped keeps its name and the reason, so the caller sees every file
it sent; the caller's photo checks (images.probe) still run on what is taken."""
import re
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

# Below this size a high ratio is a flat picture (a blank BMP compresses a thousandfold), not a bomb:
# the per-member cap already bounds what it can cost.
RATIO_MIN_BYTES = 1024 * 1024
# An archive inside the archive is not opened (that is how bombs nest).
NESTED_ARCHIVES = (".zip", ".jar", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".zst", ".7z", ".rar")
_DRIVE = re.compile(r"^[A-Za-z]:")
OUTSIDE = "path outside the archive"


class ArchiveError(ValueError):
    """The archive as a whole is refused; `status` is the HTTP status (413 or 422)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Member:
    """One file of the archive: its bytes (to be checked as a photo), or why it was skipped."""

    name: str
    data: bytes | None = None
    error: str | None = None


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int
    max_member_bytes: int
    max_total_bytes: int
    max_ratio: float


def is_outside(name: str) -> bool:
    """Whether extracting `name` could write outside the folder it is extracted to."""
    return (
        name.startswith("/")
        or "\\" in name
        or bool(_DRIVE.match(name))
        or ".." in name.split("/")
    )


def is_os_metadata(name: str) -> bool:
    """What macOS's Finder adds to every ZIP it makes (a resource fork per file, a folder's view
    settings): not the caller's files, so not items of the batch either."""
    base = name.rsplit("/", 1)[-1]
    return name.startswith("__MACOSX/") or base.startswith("._") or base == ".DS_Store"


def read_members(file: BinaryIO, limits: ArchiveLimits, used_bytes: int = 0) -> list[Member]:
    """The archive's files in its order, each read or skipped with a reason. Directories and OS metadata
    are left out. `used_bytes` of the total are taken already (the batch's other files). ArchiveError:
    not a ZIP (422), too many entries or too many bytes in all (413)."""
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise ArchiveError("the archive is not a ZIP archive (or it is corrupt)", status=422) from None
    with archive:
        entries = archive.infolist()
        if len(entries) > limits.max_members:
            raise ArchiveError(f"the archive has {len(entries)} entries; at most {limits.max_members} are accepted", status=413)
        members = []
        total = used_bytes
        for info in entries:
            if info.is_dir() or is_os_metadata(info.filename):
                continue
            name = info.filename[:255]
            reason = _refusal(info, limits)
            if reason:
                members.append(Member(name, error=reason))
                continue
            budget = limits.max_total_bytes - total
            if info.file_size > budget:
                raise ArchiveError(f"the photos of the batch are larger than {limits.max_total_bytes} bytes in all", status=413)
            cap = min(limits.max_member_bytes, budget)
            try:
                with archive.open(info) as member:
                    data = member.read(cap + 1)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError, ValueError) as exc:
                members.append(Member(name, error=f"the member cannot be read: {exc}"))
                continue
            if len(data) > cap:
                # zipfile stops at the declared size, so this is a second line of defence, not the first.
                members.append(Member(name, error=f"the member expands beyond its declared size of {info.file_size} bytes"))
                continue
            total += len(data)
            members.append(Member(name, data=data))
        return members


def _refusal(info: zipfile.ZipInfo, limits: ArchiveLimits) -> str | None:
    """Why a member is skipped before it is opened, from the directory alone."""
    if is_outside(info.filename):
        return OUTSIDE
    if info.flag_bits & 0x1:
        return "the member is encrypted"
    if info.filename.lower().endswith(NESTED_ARCHIVES):
        return "an archive inside the archive is not opened"
    if info.file_size > limits.max_member_bytes:
        return f"the image is larger than {limits.max_member_bytes} bytes"
    if info.file_size > RATIO_MIN_BYTES and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        ratio = info.file_size / max(info.compress_size, 1)
        return f"the member expands {ratio:.0f} times its compressed size: it looks like a ZIP bomb"
    return None
