"""Canvas's gradebook import: the CSV that Canvas's Grades > Import takes, made from the course's
own gradebook export (the roster) and a grader report.

The roster is read as Canvas's GradebookExporter writes it, and the import is written as its
GradebookImporter reads it (instructure/canvas-lms, lib/gradebook_exporter.rb and
app/models/gradebook_importer.rb):

- a header `Student, ID, [SIS User ID], SIS Login ID, [Integration ID], [Root Account], Section`
  (`LastName, FirstName` instead of `Student` where the course shows split names), then custom
  columns, then one column per assignment, `Title (assignment id)`, then the totals Canvas
  computes itself (`Current Score`, `Final Grade`, ...), which it never imports;
- an optional row that marks assignments with manual posting (`Manual Posting`) or muted, then
  the `    Points Possible` row (four spaces: Canvas finds it by "Points Possible"), where the
  totals say `(read only)`;
- one row per student, sorted by name, the Test Student of Student View last; a score, `EX`
  for excused, `N/A` where the assignment is not assigned to that student;
- comma- or semicolon-separated, UTF-8, with a byte-order mark where the user turned it on.

The import keeps the identity columns as the roster has them (Canvas finds each student by ID,
then SIS User ID, SIS Login ID, then name) and one assignment column. A blank cell is no score,
and a changed cell replaces Canvas's grade (its import posts blank as no grade): so a student
without a submission keeps the cell the roster has, blank where Canvas has no score, and the
import changes nothing for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from grader.errors import RosterError
from grader.report.lms_roster import (
    Grade,
    GradebookImport,
    RosterStudent,
    choose_column,
    match_to_roster,
    name_key,
    read_roster_table,
)
from grader.report.text import format_points

POINTS_POSSIBLE = "    Points Possible"
# Assignment columns are "Title (id)"; the totals Canvas computes are named by these words, with a
# group or grading period around them, and Canvas strips every such column before importing.
_ASSIGNMENT = re.compile(r"^(?P<title>.*?)\s*\((?P<id>\d+)\)$")
_TOTALS = re.compile(r"(Current|Final|Override) (Score|Points|Grade|Status)")
_POSTING_ROW_CELL = re.compile(r"^\s*(Muted|Manual Posting.*)?\s*$", re.IGNORECASE)
_READ_ONLY = re.compile(r"read\s+only")


@dataclass(frozen=True)
class CanvasRoster:
    """A Canvas gradebook export: the identity columns (up to Section), the assignment columns
    that can be imported, the Points Possible row's cells, and the students' rows."""

    path: Path
    header: list[str]
    identity: int  # how many leading columns identify the student, Section included
    assignments: list[str]
    points_possible: dict[str, str]
    rows: list[tuple[int, list[str]]]


def read_canvas_roster(path: str | Path) -> CanvasRoster:
    """The Canvas gradebook export at `path` (Grades > Export > Export Entire Gradebook)."""
    path = Path(path)
    table = read_roster_table(path, separators=",;")
    header = table.header
    split_names = header[:2] == ["LastName", "FirstName"]
    if not (header[:2] == ["Student", "ID"] or (split_names and header[2:3] == ["ID"])) or "Section" not in header:
        raise RosterError(
            path,
            f"not a Canvas gradebook export: its header starts {', '.join(header[:5])!r}, where Canvas writes "
            "'Student, ID, SIS User ID, SIS Login ID, Section' (Grades > Export > Export Entire Gradebook)",
            1,
        )
    identity = header.index("Section") + 1
    points_possible: dict[str, str] = {}
    rows = []
    for line, cells in table.rows:
        if "Points Possible" in cells[0]:
            points_possible = dict(zip(header, cells))
        elif not (cells[0].strip() or cells[1].strip()) and all(_POSTING_ROW_CELL.match(cell) for cell in cells):
            continue  # the row marking assignments with manual posting: nothing to import
        else:
            rows.append((line, cells))
    assignments = [
        column
        for column in header[identity:]
        if _ASSIGNMENT.match(column) and not _TOTALS.search(column) and not _READ_ONLY.search(points_possible.get(column, ""))
    ]
    return CanvasRoster(path, header, identity, assignments, points_possible, rows)


def canvas_students(roster: CanvasRoster) -> list[RosterStudent]:
    """The roster's students for matching: Canvas ID; SIS Login ID and SIS User ID; the name in
    both orders ("Roe, John" is also "John Roe", and Canvas's download name "roejohn")."""
    column = {name: position for position, name in enumerate(roster.header[: roster.identity])}
    students = []
    for line, cells in roster.rows:
        if "Student" in column:
            last, _, first = cells[column["Student"]].partition(",")
        else:
            last, first = cells[column["LastName"]], cells[column["FirstName"]]
        logins = {cells[column[name]].strip().casefold() for name in ("SIS Login ID", "SIS User ID") if name in column}
        student_id = cells[column["ID"]].strip()
        students.append(
            RosterStudent(
                line=line,
                label=f"{', '.join(part.strip() for part in (last, first) if part.strip())} (ID {student_id}, line {line})",
                lms_id=student_id,
                logins=frozenset(logins - {""}),
                name_keys=frozenset({name_key(last + first), name_key(first + last)} - {""}),
            )
        )
    return students


def canvas_import(grades: list[Grade], roster: CanvasRoster, column: str | None = None) -> GradebookImport:
    """The file for Canvas's Grades > Import: the roster's identity columns and one assignment
    column (`column`, a header or its title; default: the roster's only assignment column), the
    Points Possible row with the report's maximum, and every roster student, in the roster's
    order: the report's total where a submission matched, else the cell the roster has."""
    chosen = choose_column(roster.assignments, column, roster.path, title=_title)
    position = roster.header.index(chosen)
    students = canvas_students(roster)
    matching = match_to_roster(grades, students, id_label="Canvas ID", login_label="SIS Login ID or SIS User ID")
    maximum = max((grade.max_points for grade in grades), default=0.0)
    identity = roster.identity
    rows = [[POINTS_POSSIBLE] + [""] * (identity - 1) + [format_points(maximum)]]
    warnings = []
    for index, (_, cells) in enumerate(roster.rows):
        grade = matching.grades.get(index)
        if grade is None:
            rows.append([*cells[:identity], cells[position]])
            continue
        rows.append([*cells[:identity], format_points(grade.points)])
        if cells[position].strip() == "N/A":
            warnings.append(f"{students[index].label}: the assignment is not assigned to this student in Canvas (N/A), so Canvas ignores the score")
    in_canvas = roster.points_possible.get(chosen, "").strip()
    if in_canvas and _points(in_canvas) != round(maximum, 2):
        warnings.append(
            f"{chosen!r} is worth {in_canvas} points in Canvas and the report's scores are out of {format_points(maximum)}: "
            f"Canvas keeps its own points possible, so set the assignment's points to {format_points(maximum)} in Canvas before importing"
        )
    kept = len(roster.rows) - len(matching.grades)
    summary = (
        f"{chosen!r} for {len(matching.grades)} of {len(roster.rows)} roster students, out of {format_points(maximum)} points; "
        + ("every roster student has a grade" if not kept else f"{'the other one keeps' if kept == 1 else f'the other {kept} keep'} what Canvas has")
    )
    return GradebookImport([*roster.header[:identity], chosen], rows, matching, summary, warnings)


def _title(header: str) -> str:
    """An assignment column's title: "CIFAR-2 CNN" for "CIFAR-2 CNN (4242)"."""
    match = _ASSIGNMENT.match(header)
    return match.group("title") if match else header


def _points(text: str) -> float | None:
    """Canvas's number (it may write a decimal comma), or None."""
    try:
        return round(float(text.replace(",", ".")), 2)
    except ValueError:
        return None
