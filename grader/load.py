"""Stage 1, load: find the submissions in a folder and read each one's bytes.

A plain folder (`<student>.ipynb`, `<student>.py`, `<student>/`) is read here; the folders and
zips an LMS hands out are read by grader/layouts/ and grader/submissions_zip.py, which pick each
student's file the same way (`choose_file`).

Runs in the grading host: reads files only, and never parses or executes anything a student
wrote (parsing is untrusted work for a limited child: grader/child/cells.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

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


def ignored(name: str) -> bool:
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
        if ignored(entry.name):
            continue
        if entry.is_file() and entry.suffix in SUBMISSION_SUFFIXES:
            found.append(Submission(entry.stem, entry))
        elif entry.is_dir():
            found.append(_submission_in_folder(entry, preferred_notebook))
    return sorted(found, key=lambda s: s.student)


def _submission_in_folder(folder: Path, preferred_notebook: str | None) -> Submission:
    return choose_file(folder.name, files_in_folder(folder), preferred_notebook, folder)


def files_in_folder(folder: Path) -> list[tuple[Path, str]]:
    """Every file under `folder` but hidden files, checkpoint and cache folders and editor
    backups, with its name relative to the folder, sorted."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not any(ignored(q) for q in p.relative_to(folder).parts)]
    return [(p, p.relative_to(folder).as_posix()) for p in files]


def choose_file(student: str, files: Sequence[tuple[Path, str]], preferred_notebook: str | None, where: Path) -> Submission:
    """A student's row from the student's files, each with the name the student gave it: the one
    notebook, else the one script; among several, the one named `preferred_notebook`; otherwise a
    row saying why there is none. `where` (the student's folder, or a file) stands for the
    submission in such a row."""
    for suffix in SUBMISSION_SUFFIXES:
        candidates = [(path, name) for path, name in files if PurePosixPath(name).suffix == suffix]
        if len(candidates) == 1:
            return Submission(student, candidates[0][0])
        if len(candidates) > 1:
            preferred = [path for path, name in candidates if preferred_notebook and PurePosixPath(name).name == preferred_notebook]
            if len(preferred) == 1:
                return Submission(student, preferred[0])
            names = ", ".join(name for _, name in candidates)
            cause = f"several {suffix} files ({names}) and none is named {preferred_notebook or 'as the assignment'}"
            return Submission(student, where, AmbiguousSubmissionError(where, cause))
    what = "folder" if where.is_dir() else "submission"
    return Submission(student, where, SubmissionError(where, f"{what} holds no .ipynb or .py file"))


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


