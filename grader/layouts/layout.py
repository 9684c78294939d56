"""What every layout of a submissions folder provides, and what it gives back.

A layout reads names only: folder and file names, and whether an entry is a file or a folder. It
never opens a student's file (the grading host never parses student text: grader/load.py).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from grader.load import SUBMISSION_SUFFIXES, Submission, ignored


@dataclass(frozen=True)
class Wanted:
    """What the assignment looks for in a download: its notebook's name (preferred among a
    student's several notebooks) and its own name (how GitHub Classroom and nbgrader may call it)."""

    notebook: str | None
    assignment: str


@dataclass(frozen=True)
class LayoutReading:
    """A layout's rows, one per student (names as the LMS gives them, not yet made unique), and
    what it says of the download: "Canvas download (24 files of 11 students; 2 late)"."""

    submissions: list[Submission]
    description: str


class Layout(Protocol):
    """One way a download names its students (a module of this package)."""

    NAME: str  # as --layout takes it

    def misfit(self, folder: Path, wanted: Wanted) -> str | None:
        """Why `folder` is not in this layout, naming the first entry that does not fit; None when it fits."""

    def read(self, folder: Path, wanted: Wanted) -> LayoutReading:
        """Every student's row; only called on a folder that fits."""


def entries(folder: Path) -> list[Path]:
    """The folder's entries that can belong to a submission, sorted: not hidden files, checkpoint
    and cache folders (`__MACOSX` of a zip made on a Mac) or editor backups."""
    return [entry for entry in sorted(folder.iterdir()) if not ignored(entry.name)]


def is_submission_file(entry: Path) -> bool:
    return entry.is_file() and entry.suffix in SUBMISSION_SUFFIXES


def text(name: str) -> str:
    """A name as read from the disk, in one Unicode form (NFC): a zip made on a Mac spells "é" as
    "e" and a combining accent, which would otherwise make two names of one, and break names in
    file names (grader/files.py `safe_file_stem`)."""
    return unicodedata.normalize("NFC", name)


def counted(count: int, what: str) -> str:
    """ "1 file", "24 files"."""
    return f"{count} {what}" if count == 1 else f"{count} {what}s"
