"""Stage 1, load: find the submissions in a folder and read each one's bytes.

Runs in the grading host: reads files only, and never parses or executes anything a student
wrote (parsing is untrusted work for a limited child: grader/child/cells.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from grader.errors import AmbiguousSubmissionError, InvalidNotebookError, SubmissionError, UnreadableScriptError

SUBMISSION_SUFFIXES = (".ipynb", ".py")


@dataclass(frozen=True)
class Submission:
    """One row of the report: a student and the file to grade, or why there is none. `lms_id`
    and `late` are what an LMS download says of the student ("" and None where it says nothing);
    `notes` are what reading the download found that the student should know (a resubmission)."""

    student: str
    path: Path
    problem: SubmissionError | None = None
    lms_id: str = ""
    late: bool | None = None
    notes: tuple[str, ...] = ()


def _ignored(name: str) -> bool:
    """Hidden files, checkpoint and cache folders, editor backups."""
    return name.startswith((".", "__")) or name.endswith("~")


def discover_submissions(folder: Path, preferred_notebook: str | None = None) -> list[Submission]:
    """List submissions in `folder`, sorted by student.

    `<student>.ipynb`, `<student>.py`, or `<student>/` holding one notebook (or the one named
    `preferred_notebook`). Other files, hidden files and checkpoint folders give no row.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SubmissionError(folder, "submissions folder not found")
    found: list[Submission] = []
    for entry in sorted(folder.iterdir()):
        if _ignored(entry.name):
            continue
        if entry.is_file() and entry.suffix in SUBMISSION_SUFFIXES:
            found.append(Submission(entry.stem, entry))
        elif entry.is_dir():
            found.append(_submission_in_folder(entry, preferred_notebook))
    return sorted(found, key=lambda s: s.student)


def _submission_in_folder(folder: Path, preferred_notebook: str | None) -> Submission:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not any(_ignored(q) for q in p.relative_to(folder).parts)]
    for suffix in SUBMISSION_SUFFIXES:
        candidates = [p for p in files if p.suffix == suffix]
        if len(candidates) == 1:
            return Submission(folder.name, candidates[0])
        if len(candidates) > 1:
            preferred = [p for p in candidates if preferred_notebook and p.name == preferred_notebook]
            if len(preferred) == 1:
                return Submission(folder.name, preferred[0])
            names = ", ".join(str(p.relative_to(folder)) for p in candidates)
            cause = f"several {suffix} files ({names}) and none is named {preferred_notebook or 'as the assignment'}"
            return Submission(folder.name, folder, AmbiguousSubmissionError(folder, cause))
    return Submission(folder.name, folder, SubmissionError(folder, "folder holds no .ipynb or .py file"))


def read_submission_bytes(path: Path, max_bytes: int | None = None) -> bytes:
    """The file's bytes, refused past `max_bytes` (checked before reading, and while reading, so
    a file that grows or lies about its size cannot make the host read more)."""
    path = Path(path)
    error = UnreadableScriptError if path.suffix == ".py" else InvalidNotebookError
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise error(path, f"the file is {_megabytes(size)}, over the {_megabytes(max_bytes)} limit for a submission")
            if max_bytes is None:
                raw = f.read()
            else:
                # Sized to the file, not to the limit: a buffer of the limit's size per read
                # cost more than reading. Read on past the size once, for a file that grew.
                raw = f.read(min(size, max_bytes) + 1)
                if len(raw) > size:
                    raw += f.read(max_bytes + 1 - len(raw))
    except OSError as exc:
        raise error(path, f"cannot read file: {exc.strerror}") from None
    if max_bytes is not None and len(raw) > max_bytes:
        raise error(path, f"the file is over the {_megabytes(max_bytes)} limit for a submission")
    return raw


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size % 2**20 else f"{size // 2**20} MB"


