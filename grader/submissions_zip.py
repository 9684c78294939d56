"""An LMS's zip download, read as it comes (`grader run submissions.zip`): its members extracted
into a temporary folder, removed when the run ends, whatever ends it.

A zip is untrusted input, so nothing in it is taken on trust: a member named with an absolute
path, a drive or `..`, a link or any other special file is refused, and so is a zip whose members
unzip to more than MAX_UNZIPPED_BYTES or number more than MAX_MEMBERS (checked on the sizes the
zip declares before anything is written, and again on the bytes written, so a zip that lies about
its sizes stops there). Every refusal names the zip and the member, and nothing is graded.

Reads bytes and names only: never parses or executes a member (the grading host never parses
student text: grader/load.py).
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from grader.errors import SubmissionsZipError

# A class's downloads: a few hundred notebooks of up to tens of megabytes, and what students add
# (data, checkpoints). Past these, unzip it yourself and give the folder.
MAX_UNZIPPED_BYTES = 4 * 2**30
MAX_MEMBERS = 20_000
_CHUNK = 2**20
_UTF8_NAMES = 0x800  # general purpose flag bit 11: the member's name is UTF-8
_ENCRYPTED = 0x1
_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DRIVE = re.compile(r"[A-Za-z]:")


@contextmanager
def submissions_folder(path: Path, *, max_bytes: int = MAX_UNZIPPED_BYTES, max_members: int = MAX_MEMBERS) -> Iterator[Path]:
    """The folder to read submissions from: `path` itself (a folder, or a path that does not
    exist, for the caller to say so), or a zip's members extracted into a temporary folder that
    is removed on exit."""
    path = Path(path)
    if path.is_dir() or not path.exists():
        yield path
        return
    if not zipfile.is_zipfile(path):
        raise SubmissionsZipError(path, "neither a folder of submissions nor a .zip file")
    with tempfile.TemporaryDirectory(prefix="grader-zip-") as temporary:
        extract_zip(path, Path(temporary), max_bytes=max_bytes, max_members=max_members)
        yield Path(temporary)


def extract_zip(path: Path, destination: Path, *, max_bytes: int = MAX_UNZIPPED_BYTES, max_members: int = MAX_MEMBERS) -> list[Path]:
    """Extract the zip at `path` into the existing, empty folder `destination`, refusing what is
    not safe (module docstring) with a SubmissionsZipError. Returns the files written."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            names = _checked_names(path, members, max_bytes=max_bytes, max_members=max_members)
            budget = [max_bytes]
            written = []
            for member, name in zip(members, names):
                if name is None:
                    continue
                target = destination.joinpath(*name.parts)
                try:
                    if member.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                    else:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        _write_member(path, archive, member, target, budget)
                        written.append(target)
                except OSError as exc:
                    raise SubmissionsZipError(path, f"cannot be extracted ({exc.strerror or exc})", member.filename) from None
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # its bytes are not what the zip says they are
                    raise SubmissionsZipError(path, f"damaged ({exc}); nothing is graded", member.filename) from None
            return written
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise SubmissionsZipError(path, f"a damaged zip ({exc})") from None
    except NotImplementedError as exc:  # a compression method this Python cannot read
        raise SubmissionsZipError(path, f"cannot be read ({exc})") from None
    except OSError as exc:
        raise SubmissionsZipError(path, f"cannot be read ({exc.strerror or exc})") from None


def member_name(member: zipfile.ZipInfo) -> str:
    """The member's name as its maker meant it: a name not flagged UTF-8 is read as UTF-8 when it
    is valid UTF-8 (what zips made on Linux and macOS hold), else as the zip standard's cp437;
    in one Unicode form (NFC), as the layouts read names."""
    name = member.filename
    if not member.flag_bits & _UTF8_NAMES:
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return unicodedata.normalize("NFC", name)


def safe_member_path(member: zipfile.ZipInfo) -> PurePosixPath | None:
    """Where the member goes, relative to the folder it is extracted into (None for a name
    that is only the folder itself, "./"); raises ValueError, saying why, for a name or a kind
    of member that could reach outside that folder or is not a plain file or folder."""
    name = member_name(member)
    if "\x00" in name:
        raise ValueError("a name holding a NUL character")
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise ValueError("an absolute path: a member must stay inside the folder it is extracted into")
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError("a path with '..': a member must stay inside the folder it is extracted into")
    kind = stat.S_IFMT(member.external_attr >> 16) if member.create_system == 3 else 0  # 3: Unix, whose modes the zip keeps
    if kind == stat.S_IFLNK:
        raise ValueError("a symbolic link: links could reach outside the folder, so none is extracted")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ValueError("a special file (not a plain file or folder)")
    if member.flag_bits & _ENCRYPTED:
        raise ValueError("encrypted: give the zip without a password")
    return PurePosixPath(*parts) if parts else None


def _checked_names(path: Path, members: list[zipfile.ZipInfo], *, max_bytes: int, max_members: int) -> list[PurePosixPath | None]:
    """Every member's place, checked before anything is written: refused as a whole when one
    member is unsafe, when two members would be one file, or past the limits."""
    if len(members) > max_members:
        raise SubmissionsZipError(path, f"holds {len(members)} members, over the limit of {max_members}; unzip it yourself and give the folder")
    declared = sum(member.file_size for member in members)
    if declared > max_bytes:
        largest = max(members, key=lambda member: member.file_size)
        raise SubmissionsZipError(
            path, f"unzips to {_size(declared)}, over the {_size(max_bytes)} limit (the largest member: {largest.filename!r}, "
            f"{_size(largest.file_size)}); unzip it yourself and give the folder",
        )  # fmt: skip
    names: list[PurePosixPath | None] = []
    seen: set[PurePosixPath] = set()
    for member in members:
        try:
            name = safe_member_path(member)
        except ValueError as exc:
            raise SubmissionsZipError(path, f"{exc}; nothing was extracted", member.filename) from None
        if name is not None and name in seen and not member.is_dir():
            raise SubmissionsZipError(path, "appears twice in the zip; nothing was extracted", member.filename)
        if name is not None:
            seen.add(name)
        names.append(name)
    return names


def _write_member(path: Path, archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, budget: list[int]) -> None:
    """Copy one member's bytes into a new file (never over one, never through a link), counting
    them against what is left of the limit: a member that unzips to more than it declared is
    stopped there."""
    fd = os.open(target, _CREATE_NEW, 0o600)
    with os.fdopen(fd, "wb") as out, archive.open(member) as data:
        while chunk := data.read(_CHUNK):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise SubmissionsZipError(path, "unzips to more bytes than the limit allows (more than the zip declares)", member.filename)
            out.write(chunk)


def _size(count: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
