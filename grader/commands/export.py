"""`grader export canvas|moodle`: a gradebook file the LMS imports, from a grader report (or the
gradebook) and the course's roster as the LMS exports it. Argument handling and messages only:
the formats are `grader/report/canvas_gradebook.py` and `grader/report/moodle_gradebook.py`.

Exit status: 0 every submission placed; 1 the file is written but some submissions fit no
roster row or several (each named on stderr, so none is lost silently); 2 an input could not be
used (the message names the file, the line and the cause)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from grader.report.canvas_gradebook import canvas_import, read_canvas_roster
from grader.report.lms_roster import Grade, GradebookImport, grades_from_frame
from grader.report.moodle_gradebook import moodle_import, read_moodle_roster
from grader.results import load

EXIT_UNPLACED = 1
# Each LMS: how its roster is read, and how the import is made from it.
LMS_FORMATS: dict[str, tuple[Callable[[Path], Any], Callable[[list[Grade], Any, str | None], GradebookImport]]] = {
    "canvas": (read_canvas_roster, canvas_import),
    "moodle": (read_moodle_roster, moodle_import),
}


def export(lms: str, results: Path, roster: Path, output: Path, *, column: str | None, console: Console) -> int:
    """Write `output` for `lms` from `results` (a CSV report or a gradebook, as
    `grader.results.load` reads them) and `roster` (the LMS's own gradebook export)."""
    read_roster, make_import = LMS_FORMATS[lms]
    grades = grades_from_frame(load(results))
    made = make_import(grades, read_roster(roster), column)
    made.write(output)
    for warning in made.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    for unplaced in made.matching.unplaced:
        console.print(f"[red]not in the import:[/red] {escape(str(unplaced))}", highlight=False, soft_wrap=True)
    console.print(f"wrote {escape(str(output))}: {escape(made.summary)}", highlight=False, soft_wrap=True)
    if made.matching.unplaced:
        count = len(made.matching.unplaced)
        console.print(
            f"[red]{count} submission{'s' if count > 1 else ''} not in the import[/red]: enter {'them' if count > 1 else 'it'} by hand in {lms.capitalize()}, "
            "or fix the names and export again",
            highlight=False,
            soft_wrap=True,
        )
        return EXIT_UNPLACED
    return 0
