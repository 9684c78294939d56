"""A course's roster as its LMS exports it (Canvas's or Moodle's gradebook CSV), and which roster
row each graded submission belongs to: what the Canvas and Moodle gradebook imports share.

A roster is read as the LMS wrote it: UTF-8 with or without a byte-order mark, its separator
found from the header line. Matching never guesses: a submission that fits no roster row, or
several, or a row that another submission fits too, is reported and left out of the import,
never written to somebody's grade.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.errors import RosterError
from grader.files import write_atomically

if TYPE_CHECKING:
    import pandas


@dataclass(frozen=True)
class RosterTable:
    """A roster CSV's cells: its header, then each non-blank row with the line it starts on."""

    path: Path
    header: list[str]
    rows: list[tuple[int, list[str]]]


def read_roster_table(path: Path, separators: str) -> RosterTable:
    """The roster at `path` as cells. `separators`: those the LMS may write (Canvas: comma or
    semicolon); the one that splits the header into most fields wins. Raises RosterError naming
    the file and line of text that is not UTF-8, not CSV, or has another number of fields than
    the header."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RosterError(path, f"cannot read the roster ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")  # Canvas writes a byte-order mark where a user turned it on, Excel always
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RosterError(
            path, f"not UTF-8 text (byte {data[exc.start]:#04x}): export it from the LMS again, or save it as 'CSV UTF-8'", line
        ) from None
    if not text.strip():
        raise RosterError(path, "is empty: export the gradebook from the LMS again")
    first_line = text.splitlines()[0]
    separator = max(separators, key=lambda candidate: len(next(csv.reader([first_line], delimiter=candidate))))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=True)
    records: list[tuple[int, list[str]]] = []
    try:
        while True:
            line = reader.line_num + 1  # where the record starts: a quoted cell may span lines
            try:
                cells = next(reader)
            except StopIteration:
                break
            if any(cell.strip() for cell in cells):
                records.append((line, cells))
    except csv.Error as exc:
        raise RosterError(path, f"not valid CSV ({exc})", reader.line_num) from None
    (_, header), rows = records[0], records[1:]
    header = [cell.strip() for cell in header]
    for line, cells in rows:
        if len(cells) != len(header):
            raise RosterError(path, f"{len(cells)} fields where the header (line 1) has {len(header)}", line)
    return RosterTable(path, header, rows)


def name_key(text: str) -> str:
    """A name as matching compares it: letters and digits only, accents dropped, case folded.
    "Roe, John", "roe john" and Canvas's download name "roejohn" give "roejohn"; "Zoë Müller"
    and "zoe_muller" give "zoemuller"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(character for character in decomposed if character.isalnum())


@dataclass(frozen=True)
class Grade:
    """One submission's row of the results, as the LMS gradebooks need it."""

    student: str
    lms_id: str  # the Canvas user id or Moodle participant id from the download's file names, "" for none
    points: float  # the report's total: instructor overrides are already in it
    max_points: float
    status: str
    error: str
    adjusted: str  # what an instructor's override changed, "" for nothing


def grades_from_frame(frame: pandas.DataFrame) -> list[Grade]:
    """The grades in a frame of `grader.results.load`: from a CSV report with or without the
    `lms_id` and `adjusted` columns (a missing one counts as empty), or from a gradebook."""
    return [
        Grade(
            student=_text(row.get("student")),
            lms_id=_text(row.get("lms_id")),
            points=float(row["total"]),
            max_points=float(row["max_total"]),
            status=_text(row.get("status")),
            error=_text(row.get("error")),
            adjusted=_text(row.get("adjusted")),
        )
        for row in frame.to_dict("records")
    ]


def _text(value: Any) -> str:
    """A frame's cell as text: "" for a missing value (None, NaN, pandas.NA), 23456 for an id
    pandas read as 23456.0."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


@dataclass(frozen=True)
class RosterStudent:
    """A roster row as matching sees it."""

    line: int
    label: str  # how messages name the row: "Roe, John (ID 23456, line 5)"
    lms_id: str = ""  # the LMS's own user id where its export has one (Canvas's ID), else ""
    logins: frozenset[str] = frozenset()  # identifiers a submission may be named by, casefolded
    name_keys: frozenset[str] = frozenset()  # name_key of each order of the student's names


@dataclass(frozen=True)
class Unplaced:
    """A submission left out of the import, and why."""

    grade: Grade
    reason: str

    def __str__(self) -> str:
        return f"{self.grade.student}: {self.reason}"


@dataclass
class Matching:
    """Which roster row each submission belongs to. `grades`: roster index to its submission's
    grade; `unplaced`: the submissions that fit no row, several rows, or a row another fits too."""

    grades: dict[int, Grade] = field(default_factory=dict)
    unplaced: list[Unplaced] = field(default_factory=list)


def match_to_roster(grades: list[Grade], roster: list[RosterStudent], *, id_label: str | None, login_label: str) -> Matching:
    """Place each submission on one roster row: by its `lms_id` where the roster has the LMS's ids
    (`id_label` names them, "Canvas ID"; an id the roster lacks is not looked up by name, since it
    names someone else or a student who left), else by a login equal to the student's name
    (`login_label` names them), else by name (`name_key`). Several rows at the first step that
    finds any, or one row that several submissions fit, leave those submissions unplaced."""
    by_id = _index(roster, lambda student: {student.lms_id} - {""})
    by_login = _index(roster, lambda student: student.logins)
    by_name = _index(roster, lambda student: student.name_keys)
    claims: dict[int, list[Grade]] = {}
    unplaced: list[Unplaced] = []
    for grade in grades:
        nowhere = f"fits no roster row: none has it as {login_label}, nor as name"
        if grade.lms_id and id_label and by_id:
            found, how = by_id.get(grade.lms_id, []), f"its {id_label} {grade.lms_id} is in"
            nowhere = f"{how} no roster row (a student who left the course, or another course's roster?)"
        elif grade.student.casefold() in by_login:
            found, how = by_login[grade.student.casefold()], f"its name is the {login_label} of"
        else:
            found, how = by_name.get(name_key(grade.student), []), "its name fits"
        if len(found) == 1:
            claims.setdefault(found[0], []).append(grade)
        elif found:
            rows = "; ".join(roster[index].label for index in found)
            unplaced.append(Unplaced(grade, f"{how} {len(found)} roster rows ({rows}): enter that grade by hand"))
        else:
            unplaced.append(Unplaced(grade, nowhere))
    matched: dict[int, Grade] = {}
    for index, claimants in sorted(claims.items()):
        if len(claimants) == 1:
            matched[index] = claimants[0]
            continue
        names = ", ".join(repr(grade.student) for grade in claimants)
        unplaced.extend(
            Unplaced(grade, f"{names} all fit the roster row {roster[index].label}: enter the right one by hand") for grade in claimants
        )
    return Matching(matched, sorted(unplaced, key=lambda item: item.grade.student))


def _index(roster: list[RosterStudent], keys: Callable[[RosterStudent], Iterable[str]]) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for position, student in enumerate(roster):
        for key in keys(student):
            index.setdefault(key, []).append(position)
    return index


def choose_column(candidates: list[str], requested: str | None, roster: Path, *, title: Callable[[str], str]) -> str:
    """The assignment column to fill: `requested` (a header, or its `title` without the LMS's
    suffix), else the roster's only candidate. RosterError names the candidates otherwise."""
    listed = ", ".join(repr(candidate) for candidate in candidates)
    if requested is None:
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise RosterError(roster, "has no assignment column to fill: publish the assignment, then export the gradebook again", 1)
        raise RosterError(roster, f"has {len(candidates)} assignment columns ({listed}): choose one with --column", 1)
    if requested in candidates:
        return requested
    by_title = [candidate for candidate in candidates if title(candidate) == requested]
    if len(by_title) == 1:
        return by_title[0]
    raise RosterError(roster, f"--column {requested!r} is not one of its assignment columns ({listed or 'none'})", 1)


@dataclass
class GradebookImport:
    """A file for the LMS's grade import: its rows, how the submissions were placed, and what the
    instructor should know before importing (`warnings`) and after writing (`summary`)."""

    header: list[str]
    rows: list[list[str]]
    matching: Matching
    summary: str
    warnings: list[str] = field(default_factory=list)

    def write(self, path: str | Path) -> None:
        """UTF-8 without a byte-order mark, comma-separated: what both LMSs' imports read by default."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.header)
        writer.writerows(self.rows)
        write_atomically(Path(path), buffer.getvalue())
