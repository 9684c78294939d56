"""Stage 1 for the downloads an LMS hands out: which layout a submissions folder has, and each
student's row read from it, with the student's LMS id and lateness where the layout says them.

Layouts, tried in this order by `--layout auto`: nbgrader (`submitted/<student>/<assignment>/`),
Moodle (`<Full Name>_<id>_assignsubmission_file_/`), Canvas (`<name>_[LATE_]<id>_<file id>_<file>`),
GitHub Classroom (`<assignment>-<username>/`), and the plain folder (grader/load.py), which fits
any folder. A folder that holds a single folder (a zip of a folder) is looked into first. Names stay
unique (grader/layouts/unique_names.py).

Reads names only: never opens a student's file, never parses student text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from grader.errors import LayoutError, SubmissionError
from grader.layouts import canvas, classroom, moodle, nbgrader, plain
from grader.layouts.layout import Layout, Wanted, entries
from grader.layouts.unique_names import unique_names
from grader.load import Submission

LAYOUTS: dict[str, Layout] = {layout.NAME: layout for layout in (nbgrader, moodle, canvas, classroom, plain)}
LAYOUT_CHOICES = ("auto", *LAYOUTS)

__all__ = ["LAYOUTS", "LAYOUT_CHOICES", "FoundSubmissions", "Wanted", "find_submissions"]


@dataclass(frozen=True)
class FoundSubmissions:
    """The students' rows (sorted by student, names unique), the layout they were read in, what it
    says of the download, and a sentence for each name that had to be told apart."""

    submissions: list[Submission]
    layout: str
    description: str
    remarks: list[str]

    @property
    def headline(self) -> str:
        """What `grader run` prints first: "Layout: Canvas download (24 files of 11 students; 2 late, 1 resubmitted)"."""
        return f"Layout: {self.description}"


def find_submissions(folder: Path, wanted: Wanted, layout: str = "auto", *, shown_as: Path | None = None) -> FoundSubmissions:
    """The submissions in `folder`, in `layout` (one of LAYOUT_CHOICES). A layout that is named but
    does not fit raises LayoutError, naming the first entry that does not fit. `shown_as`: the
    folder as the user named it, in messages (the zip a temporary `folder` was extracted from)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SubmissionError(shown_as or folder, "submissions folder not found")
    if layout not in LAYOUT_CHOICES:
        raise LayoutError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUT_CHOICES)}")
    chosen, place = _choose(folder, wanted, layout, shown_as or folder)
    reading = LAYOUTS[chosen].read(place, wanted)
    # A plain folder's names are its file names, unique as they are: kept exactly as before.
    submissions, remarks = (reading.submissions, []) if chosen == plain.NAME else unique_names(reading.submissions)
    return FoundSubmissions(sorted(submissions, key=lambda s: s.student), chosen, reading.description, remarks)


def _choose(folder: Path, wanted: Wanted, layout: str, shown_as: Path) -> tuple[str, Path]:
    """The layout and the folder it fits: the one folder inside `folder` (a zip of a folder, or
    `gh classroom clone`'s `<assignment>-submissions/`), else `folder`. For "auto", the first LMS
    layout that fits, else the plain folder."""
    if layout == plain.NAME:  # the folder as it is, even one holding a single folder (a student's)
        return plain.NAME, folder
    names = [name for name in LAYOUTS if name != plain.NAME] if layout == "auto" else [layout]
    lone = _lone_folder(folder)
    for place in [folder] if lone is None else [lone, folder]:
        for name in names:
            if LAYOUTS[name].misfit(place, wanted) is None:
                return name, place
    if layout == "auto":
        return plain.NAME, folder
    raise LayoutError(f"{shown_as}: not a {layout} layout: {LAYOUTS[layout].misfit(folder, wanted)} (--layout auto finds the layout itself)")


def _lone_folder(folder: Path) -> Path | None:
    """The folder's only entry, when that is a folder."""
    found = entries(folder)
    return found[0] if len(found) == 1 and found[0].is_dir() else None
