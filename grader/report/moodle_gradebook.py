"""Moodle's grade import: the CSV that Moodle's Grades > Import > CSV file takes, made from the
course's own grade export (the roster) and a grader report.

The roster is read as Moodle's plain-text grade export writes it (moodle/moodle,
grade/export/txt/grade_export_txt.php): the user fields `First name`, `Last name`, then the
identity fields the site shows (`ID number`, `Institution`, `Department`, `Email address`, ...),
then per grade item `<Module>: <name> (Real)` (or `(Percentage)`, `(Letter)`) and, where
feedback was exported, `<Module>: <name> (Feedback)`, the course total, and `Last downloaded from
this course`; comma-, tab-, semicolon- or colon-separated. It carries no user id: the participant
id in a "Download all submissions" folder name is the assignment's own number for the student,
so submissions are matched by email address or ID number, else by full name.

The import is written as grade/import/csv/classes/load_data.php reads it: the roster's first and
last name, ID number and email address columns, one grade column and one feedback column. Moodle
maps every row to a user by the column the instructor picks ("Map from": the email address, or
the ID number where the export has no email) and stops the whole import at a row it cannot
map, and a blank grade replaces a grade with none: so only the students with a submission have a
row, and Moodle keeps every other grade as it is. The `Last downloaded from this course` column
is left out, so Moodle does not refuse the import when the roster is old or a grade was changed
since it was exported.
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
    Unplaced,
    choose_column,
    match_to_roster,
    name_key,
    read_roster_table,
)
from grader.report.text import format_points, out_of
from grader.results import INVALID

FIRST_NAME = "First name"
LAST_NAMES = ("Last name", "Surname")  # "Surname" in Moodle before 3.0
EMAIL = "Email address"
ID_NUMBER = "ID number"
_GRADE_ITEM = re.compile(r"^(?P<item>.+) \((?P<display>Real|Percentage|Letter)\)$")
# The course total and category totals: computed by Moodle, never imported into.
_TOTAL = re.compile(r"(^|\s)total$", re.IGNORECASE)


@dataclass(frozen=True)
class MoodleRoster:
    """A Moodle grade export: the name and identity columns the import keeps, the grade items
    that can be imported into, and the students' rows."""

    path: Path
    header: list[str]
    identity: list[str]  # First name, Last name, and ID number, Email address where exported
    identifier: str  # the column Moodle's import maps each row to its user by
    grade_items: list[str]
    rows: list[tuple[int, list[str]]]


def read_moodle_roster(path: str | Path) -> MoodleRoster:
    """The Moodle grade export at `path` (Grades > Export > Plain text file)."""
    path = Path(path)
    table = read_roster_table(path, separators=",;\t:")
    header = table.header
    last_name = next((name for name in LAST_NAMES if name in header), None)
    if FIRST_NAME not in header or last_name is None:
        raise RosterError(
            path,
            f"not a Moodle grade export: no 'First name' and 'Last name' columns in its header ({', '.join(header[:6])}, ...): "
            "export it with Grades > Export > Plain text file, in English",
            1,
        )
    identifier = EMAIL if EMAIL in header else ID_NUMBER
    if identifier not in header:
        raise RosterError(
            path,
            "has neither an 'Email address' nor an 'ID number' column, one of which Moodle's import needs to find each "
            "student: ask the site administrator to show one of them among the identity fields (showuseridentity)",
            1,
        )
    identity = [name for name in (FIRST_NAME, last_name, ID_NUMBER, EMAIL) if name in header]
    grade_items = [
        column for column in header if (match := _GRADE_ITEM.match(column)) and not _TOTAL.search(match.group("item"))
    ]
    return MoodleRoster(path, header, identity, identifier, grade_items, table.rows)


def moodle_students(roster: MoodleRoster) -> list[RosterStudent]:
    """The roster's students for matching: email address (also its part before the @) and ID
    number; the full name in both orders."""
    column = {name: position for position, name in enumerate(roster.header)}
    students = []
    for line, cells in roster.rows:
        first, last = cells[column[FIRST_NAME]].strip(), cells[column[roster.identity[1]]].strip()
        email = cells[column[EMAIL]].strip().casefold() if EMAIL in column else ""
        id_number = cells[column[ID_NUMBER]].strip().casefold() if ID_NUMBER in column else ""
        logins = {email, email.partition("@")[0] if "@" in email else "", id_number}
        students.append(
            RosterStudent(
                line=line,
                label=f"{first} {last} ({email or id_number or 'no email'}, line {line})",
                logins=frozenset(logins - {""}),
                name_keys=frozenset({name_key(first + last), name_key(last + first)} - {""}),
            )
        )
    return students


def moodle_feedback(grade: Grade) -> str:
    """The feedback column: what the student sees beside the grade in Moodle. It names the score,
    an instructor's adjustment, and for a file that could not be graded, why; never a check,
    since a hidden check must stay hidden."""
    if grade.status == INVALID:
        return f"Not graded: {grade.error}" if grade.error else "Not graded: the file could not be read as a notebook."
    adjusted = " Adjusted by your instructor." if grade.adjusted else ""
    return f"Autograder: {out_of(grade.points, grade.max_points)}.{adjusted}"


def moodle_import(grades: list[Grade], roster: MoodleRoster, column: str | None = None) -> GradebookImport:
    """The file for Moodle's CSV grade import: the roster's name and identity columns, the grade
    (the report's total) and the feedback, one row per student with a submission, in the
    roster's order. `column`: the grade item, a header or its name without `(Real)`; default:
    the roster's only grade item."""
    chosen = choose_column(roster.grade_items, column, roster.path, title=_item)
    students = moodle_students(roster)
    matching = match_to_roster(grades, students, id_label=None, login_label="email address or ID number")
    at = {name: position for position, name in enumerate(roster.header)}
    rows = []
    for index, (_, cells) in enumerate(roster.rows):
        grade = matching.grades.get(index)
        if grade is None:
            continue
        if not cells[at[roster.identifier]].strip():
            # Moodle would give this row to the row before's student: leave it out, and say so.
            del matching.grades[index]
            matching.unplaced.append(
                Unplaced(grade, f"the roster row {students[index].label} has no {roster.identifier}, which Moodle's import needs")
            )
            continue
        rows.append([cells[at[name]] for name in roster.identity] + [format_points(grade.points), moodle_feedback(grade)])
    matching.unplaced.sort(key=lambda item: item.grade.student)
    maximum = format_points(max((grade.max_points for grade in grades), default=0.0))
    item = _item(chosen)
    summary = (
        f"{item!r} for {len(rows)} students, out of {maximum} points (the grade item's maximum grade in Moodle must be {maximum}); "
        f"{len(roster.rows) - len(rows)} roster students without a grade here have no row, so Moodle keeps theirs"
    )
    return GradebookImport([*roster.identity, f"{item} (Real)", f"{item} (Feedback)"], rows, matching, summary)


def _item(header: str) -> str:
    """A grade column's item: "Assignment: CIFAR-2 CNN" for "Assignment: CIFAR-2 CNN (Real)"."""
    match = _GRADE_ITEM.match(header)
    return match.group("item") if match else header
