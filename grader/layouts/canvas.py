"""Canvas "Download Submissions": one flat folder (or its zip) of files named by Canvas.

Canvas names each uploaded file `<name>_<user id>_<file id>_<original name>` (lib/content_zipper.rb):
`<name>` is the student's sortable name ("Roe, John") lower-cased, with every character that is
not a letter, digit or underscore left out (`roejohn`); `LATE_` follows it when the submission
was late (`roejohn_LATE_23456_900002_cifar2_cnn.ipynb`); with anonymous grading the name and user
id give way to `anon_<anonymous id>`. A text entry or a URL gives `<name>_<user id>_text.html` or
`_link.html`. When a student uploads a file whose name they have used before, Canvas adds `-N`
before its extension (`cifar2_cnn-2.ipynb`): the highest N is the newest.

A student's files are one submission, chosen as from a student's folder (grader/load.py
`choose_file`). Reads names only, never a file's bytes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from grader.layouts.layout import LayoutReading, Wanted, counted, entries, is_submission_file, text
from grader.load import Submission, choose_file

NAME = "canvas"

_UPLOAD = re.compile(r"(?P<name>\w+?)_(?:(?P<late>LATE)_)?(?P<user>\d+)_(?P<file>\d+)_(?P<original>.+)", re.DOTALL)
_ANONYMOUS_UPLOAD = re.compile(r"(?:(?P<late>LATE)_)?(?P<name>anon_[A-Za-z0-9]+)_(?P<file>\d+)_(?P<original>.+)", re.DOTALL)
_TEXT_ENTRY = re.compile(r"(?P<name>\w+?)_(?:(?P<late>LATE)_)?(?P<user>\d+)_(?P<original>text|link)\.html")
# Canvas's own reading of an extension (Attachment.make_unique_filename), so that `-N` is found
# where Canvas put it: before ".ipynb", and before ".tar.gz" as a whole.
_EXTENSION = re.compile(r"(\.[A-Za-z][A-Za-z0-9]*)*(\.[A-Za-z0-9]*)$")
_VERSION = re.compile(r"(?P<base>.+)-(?P<n>\d+)")

NAMING = "<name>_<user id>_<file id>_<file name>"


@dataclass(frozen=True)
class CanvasFile:
    """What Canvas's name of one file says."""

    student: str  # the name part ("roejohn"), or "anon_<id>" under anonymous grading
    user_id: str  # "" under anonymous grading
    late: bool
    original: str  # the file's name as the student uploaded it, Canvas's -N included
    file_id: int  # 0 for a text entry or URL

    @property
    def version(self) -> int:
        """N of Canvas's `-N` (0 for none): the higher, the newer."""
        return split_version(self.original)[1]


def parse_canvas_name(name: str) -> CanvasFile | None:
    """What a file name from a Canvas download says, or None for a name Canvas does not give."""
    name = text(name)
    anonymous = _ANONYMOUS_UPLOAD.fullmatch(name)
    if anonymous:
        return CanvasFile(anonymous["name"], "", bool(anonymous["late"]), anonymous["original"], int(anonymous["file"]))
    match = _UPLOAD.fullmatch(name)
    if match:
        return CanvasFile(match["name"], match["user"], bool(match["late"]), match["original"], int(match["file"]))
    entry = _TEXT_ENTRY.fullmatch(name)
    if entry:
        return CanvasFile(entry["name"], entry["user"], bool(entry["late"]), f"{entry['original']}.html", 0)
    return None


def split_version(original: str) -> tuple[str, int]:
    """`cifar2_cnn-2.ipynb` -> (`cifar2_cnn.ipynb`, 2); a name without Canvas's -N -> (name, 0)."""
    extension = _EXTENSION.search(original)
    suffix = extension.group(0) if extension else ""
    stem = original[: len(original) - len(suffix)]
    version = _VERSION.fullmatch(stem)
    if version is None:
        return original, 0
    return version["base"] + suffix, int(version["n"])


def misfit(folder: Path, wanted: Wanted) -> str | None:
    named = 0
    for entry in entries(folder):
        if entry.is_dir():
            return f"{entry.name} is a folder, and a Canvas download holds files only"
        if parse_canvas_name(entry.name) is not None:
            named += 1
        elif is_submission_file(entry):
            return f"{entry.name} is not named as Canvas names files ({NAMING})"
    return None if named else f"no file is named as Canvas names files ({NAMING})"


def read(folder: Path, wanted: Wanted) -> LayoutReading:
    by_student: dict[tuple[str, str], list[tuple[Path, CanvasFile]]] = defaultdict(list)
    for entry in entries(folder):
        canvas = parse_canvas_name(entry.name)
        if canvas is not None:
            by_student[(canvas.student, canvas.user_id)].append((entry, canvas))
    submissions = [_submission(files, wanted) for files in by_student.values()]
    late = sum(bool(s.late) for s in submissions)
    resubmitted = sum(any(note.startswith(RESUBMISSION) for note in s.notes) for s in submissions)
    files = sum(map(len, by_student.values()))
    details = f"{counted(files, 'file')} of {counted(len(submissions), 'student')}; {late} late, {resubmitted} resubmitted"
    return LayoutReading(submissions, f"Canvas download ({details})")


RESUBMISSION = "Canvas resubmission"


def _submission(files: list[tuple[Path, CanvasFile]], wanted: Wanted) -> Submission:
    """One student's row: of each file uploaded several times, the newest; then the file to
    grade, chosen as in a student's folder."""
    versions: dict[str, list[tuple[Path, CanvasFile]]] = defaultdict(list)
    for path, canvas in files:
        versions[split_version(canvas.original)[0]].append((path, canvas))
    newest = {base: max(found, key=lambda item: (item[1].version, item[1].file_id)) for base, found in versions.items()}
    first = files[0][1]
    row = choose_file(first.student, [(path, base) for base, (path, _) in newest.items()], wanted.notebook, files[0][0])
    graded = next((canvas for path, canvas in files if path == row.path), None) if row.problem is None else None
    notes: tuple[str, ...] = ()
    if graded is not None and graded.version:
        others = sorted((c.original for _, c in versions[split_version(graded.original)[0]]), key=lambda o: split_version(o)[1])
        newest_of = f", the newest of {', '.join(others)}" if len(others) > 1 else ""
        notes = (f"{RESUBMISSION}: graded {graded.original}{newest_of}",)
    late = graded.late if graded is not None else any(canvas.late for _, canvas in files)
    return replace(row, lms_id=first.user_id, late=late, notes=notes)
