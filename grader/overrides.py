"""Instructor overrides, `grader run --overrides overrides.csv`: a CSV with the columns student,
check, points, comment, each row setting one student's points for one check (or, with check
`total`, the whole score) by hand, after a regrade request or office hours.

The file is the record. The gradebook keeps the grader's own results; the overrides are read and
checked as a whole before anything is graded (`read_overrides`: an unknown student or check,
points outside 0..max, a bad number, a duplicate or a missing column stops the run with the file,
line and cause), then applied on top of the results at every run (`apply_overrides`), so every
report shows the same adjusted points and no regrade wipes them.

Part of the scoring side: it reads the instructor's file and plain results. It never imports or
runs student code, and never decides points itself: those the instructor wrote are applied as
they are.
"""

from __future__ import annotations

import csv
import difflib
import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from grader.assignment import DEFAULT_CHECKS, Assignment
from grader.errors import OverridesError
from grader.results import TOTAL, Adjustment, SubmissionResult

COLUMNS = ("student", "check", "points", "comment")
_SAME = 1e-9  # points are rounded to hundredths: closer than this is equal


@dataclass(frozen=True)
class Override:
    """One row of the overrides file: set `student`'s `check` (a check's name, or TOTAL) to `points`."""

    student: str
    check: str
    points: float
    comment: str
    line: int  # where the row starts in the file, for messages


@dataclass(frozen=True)
class AutomaticPointsChange:
    """An overridden check (or total) that the grader now scores differently than when the
    override was last applied, for a new submission or a changed grading: the override still
    applies, and the instructor may want to look again."""

    student: str
    check: str
    before: float  # the grader's points when the override was last applied
    after: float  # the grader's points now
    points: float  # the override's, still applied


def read_overrides(path: Path, assignment: Assignment, students: Collection[str]) -> list[Override]:
    """Every override in `path`, checked against `assignment`'s checks and points and the
    `students` of this run (those with a submission in the folder). Raises OverridesError with
    every problem found, each with its line, so one correction fixes the file."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:  # -sig: spreadsheets start their CSV with a byte-order mark
            rows = _rows(file)
    except FileNotFoundError:
        raise OverridesError(path, [(None, "no such file")]) from None
    except OSError as exc:
        raise OverridesError(path, [(None, f"cannot read the file ({exc.strerror or exc})")]) from None
    except UnicodeDecodeError as exc:
        raise OverridesError(path, [(None, f"not UTF-8 text (byte {exc.start}); save it as CSV UTF-8")]) from None
    except csv.Error as exc:
        raise OverridesError(path, [(None, f"not a readable CSV file ({exc})")]) from None
    if not rows:
        raise OverridesError(path, [(1, f"the file is empty: its first line must name the columns {','.join(COLUMNS)}")])
    header_line, header = rows[0]
    names = [name.strip().lower() for name in header]
    missing = [column for column in COLUMNS if column not in names]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        cause = f"no column{plural} {', '.join(missing)}: the first line must name the columns {','.join(COLUMNS)} (found {','.join(header)})"
        raise OverridesError(path, [(header_line, cause)])
    column = {name: names.index(name) for name in COLUMNS}
    known_students = set(students)
    overrides: list[Override] = []
    first_line: dict[tuple[str, str], int] = {}
    problems: list[tuple[int | None, str]] = []
    for line, cells in rows[1:]:
        if len(cells) > len(header):
            problems.append((line, f"{len(cells)} values where the first line names {len(header)} columns: put a comment that holds a comma in double quotes"))
            continue
        cells = cells + [""] * (len(header) - len(cells))
        student, check, points_text, comment = (cells[column[name]].strip() for name in COLUMNS)
        causes = [*_student_problems(student, known_students), *_check_problems(check, assignment)]
        points = _number(points_text)
        if points is None:
            causes.append(f"points {points_text!r} are not a number" if points_text else "no points")
        elif not causes:
            top, worth = (assignment.max_total, "the assignment") if check == TOTAL else (assignment.checks[check].points, check)
            if not 0 <= points <= top:
                causes.append(f"points {points_text} are outside 0..{_points(top)} ({worth} is worth {_points(top)})")
        if not causes:
            earlier = first_line.setdefault((student, check), line)
            if earlier != line:
                causes.append(f"a second override of {student}'s {check} (the first is on line {earlier})")
        if causes:
            problems += [(line, cause) for cause in causes]
            continue
        assert points is not None
        overrides.append(Override(student, check, points, comment, line))
    if problems:
        raise OverridesError(path, problems)
    return overrides


def _rows(file: TextIO) -> list[tuple[int, list[str]]]:
    """The file's non-blank records, each with the line it starts on (a quoted comment may span lines)."""
    reader = csv.reader(file)
    rows = []
    start = 1
    for cells in reader:
        if any(cell.strip() for cell in cells):
            rows.append((start, cells))
        start = reader.line_num + 1
    return rows


def _student_problems(student: str, known: set[str]) -> list[str]:
    if not student:
        return ["no student"]
    if student in known:
        return []
    guess = difflib.get_close_matches(student, sorted(known), n=1)
    hint = f" (did you mean {guess[0]!r}?)" if guess else ""
    return [f"no submission of student {student!r} in this run{hint}: the student column takes the report's names"]


def _check_problems(check: str, assignment: Assignment) -> list[str]:
    graded = [*assignment.checks, TOTAL]
    if not check:
        return [f"no check: a check's name or {TOTAL} ({', '.join(graded)})"]
    if check in graded:
        return []
    if check in DEFAULT_CHECKS:
        return [f"check {check!r} is not graded by assignment {assignment.name} (it grades {', '.join(graded)})"]
    guess = difflib.get_close_matches(check, graded, n=1)
    hint = f"did you mean {guess[0]!r}? " if guess else ""
    return [f"unknown check {check!r} ({hint}the checks are {', '.join(graded)})"]


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _points(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def apply_overrides(results: list[SubmissionResult], overrides: list[Override]) -> list[SubmissionResult]:
    """`results` with the overrides of their students applied (copies; the originals stay the
    grader's own). A TOTAL override is applied last: it sets the total whatever the checks, some
    perhaps overridden too, add up to."""
    by_student: dict[str, list[Override]] = {}
    for override in sorted(overrides, key=lambda o: o.check == TOTAL):
        by_student.setdefault(override.student, []).append(override)
    adjusted = []
    for result in results:
        for override in by_student.get(result.student, []):
            result = result.adjusted(override.check, override.points, override.comment)
        adjusted.append(result)
    return adjusted


def automatic_points_changes(results: list[SubmissionResult], remembered: dict[tuple[str, str], Adjustment]) -> list[AutomaticPointsChange]:
    """Each override in `results` whose automatic points differ from those it was applied over
    last time (`remembered`, by student and check, as the gradebook keeps them)."""
    changes = []
    for result in results:
        for adjustment in result.adjustments:
            earlier = remembered.get((result.student, adjustment.check))
            if earlier is not None and abs(earlier.automatic - adjustment.automatic) > _SAME:
                changes.append(AutomaticPointsChange(result.student, adjustment.check, earlier.automatic, adjustment.automatic, adjustment.points))
    return changes


def overrides_to_remember(
    results: list[SubmissionResult], overrides: list[Override], remembered: dict[tuple[str, str], Adjustment]
) -> dict[tuple[str, str], Adjustment]:
    """What the gradebook keeps after this run: each override applied to `results`, with the
    automatic points under it; an override of the file that this run could not apply (its student
    not graded yet, the run interrupted) keeps what was remembered of it. Overrides no longer in
    the file are forgotten."""
    wanted = {(override.student, override.check) for override in overrides}
    kept = {key: adjustment for key, adjustment in remembered.items() if key in wanted}
    kept.update({(result.student, adjustment.check): adjustment for result in results for adjustment in result.adjustments})
    return kept
