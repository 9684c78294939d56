"""Write output files so a crash never leaves a half-written one behind."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import unicodedata
from pathlib import Path

# Temporary names are this process's id and a counter: unique without the random names and
# retries of tempfile.mkstemp, which cost more than the write itself for a class's 30,000 pages.
_TEMPORARY_NUMBERS = itertools.count()
_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def write_atomically(path: Path, text: str) -> None:
    """Write `text` (UTF-8, newlines as given) to `path` through a temporary file beside it, then
    rename: readers see the old file or the new one, never part of one. Creates missing folders.
    The file gets the usual mode for new files (0666 less the umask): reports are meant to be shared."""
    folder, name = os.path.split(os.fspath(path))
    data = memoryview(text.encode("utf-8"))
    fd, temporary = _create_temporary(folder or ".", name)
    try:
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _create_temporary(folder: str, name: str) -> tuple[int, str]:
    """A new, empty hidden file beside `name` in `folder`, open for writing."""
    while True:
        temporary = os.path.join(folder, f".{name}.{os.getpid()}-{next(_TEMPORARY_NUMBERS)}.tmp")
        try:
            return os.open(temporary, _CREATE_NEW, 0o666), temporary
        except FileExistsError:  # left by a killed process that had the same id: take the next number
            continue
        except FileNotFoundError:  # the folder is missing: make it, then try again
            os.makedirs(folder, exist_ok=True)


# Room for a stem within the 255 bytes a file name may have on Linux file systems, beside the
# longest suffix written after it (".notebook.html").
_MAX_STEM_BYTES = 200


def safe_file_stem(name: str) -> str:
    """A student name as a file name: no path separators, no leading dots; letters of any script
    kept, in one Unicode form (NFC: "é" as one character, so the accent is not taken for a
    separator). A name too long for a file name is cut, with a hash of the whole name after it so
    that two long names stay apart."""
    stem = re.sub(r"[^\w.@+-]+", "_", unicodedata.normalize("NFC", name)).lstrip(".")
    if len(stem.encode()) > _MAX_STEM_BYTES:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        cut = stem.encode()[: _MAX_STEM_BYTES - len(digest) - 1].decode(errors="ignore")
        stem = f"{cut}-{digest}"
    return stem or "student"
