"""`grader run --compare`: which students' totals changed against what the same gradebook held
before the run, and why, so an instructor sees the effect of a rubric or reference change (or of
late resubmissions) before publishing."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from grader.gradebook import GradebookKey
from grader.report.text import format_points
from grader.results import SubmissionResult

_SAME = 1e-9


@dataclass(frozen=True)
class TotalChange:
    student: str
    before: float | None  # None: the gradebook held no result for this student
    after: float
    why: str


def total_changes(
    earlier: dict[str, tuple[GradebookKey, SubmissionResult] | None], now: list[tuple[GradebookKey, SubmissionResult]]
) -> list[TotalChange]:
    """Each student whose total differs from their newest earlier result, or who had none."""
    changes = []
    for key, result in now:
        previous = earlier.get(key.student)
        if previous is None:
            changes.append(TotalChange(key.student, None, result.total, "not graded before"))
            continue
        old_key, old = previous
        if abs(old.total - result.total) <= _SAME:
            continue
        reasons = []
        if (old_key.source, old_key.content_hash) != (key.source, key.content_hash):
            reasons.append("the submission changed")
        if old_key.fingerprint != key.fingerprint:
            reasons.append("the grading changed (points, settings, reference or grader version)")
        changes.append(TotalChange(key.student, old.total, result.total, " and ".join(reasons) or "graded again"))
    return changes


def print_changes(changes: list[TotalChange], compared: int, console: Console) -> None:
    if not changes:
        console.print(f"No total changed against the gradebook's previous results ({compared} compared).", highlight=False)
        return
    console.print(f"Totals changed against the gradebook's previous results ({len(changes)} of {compared}):", highlight=False)
    table = Table()
    for column in ("student", "before", "after", "change", "why"):
        table.add_column(column, justify="right" if column in ("before", "after", "change") else "left")
    for change in changes:
        before = "-" if change.before is None else format_points(change.before)
        delta = "" if change.before is None else f"{change.after - change.before:+.2f}".rstrip("0").rstrip(".")
        table.add_row(change.student, before, format_points(change.after), delta, change.why)
    console.print(table)
