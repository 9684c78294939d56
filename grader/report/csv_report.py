"""The CSV gradebook: one row per submission; columns student, lms_id, late, status, error, total,
max_total, adjusted (the checks an instructor's override set, "net.forward;total"), then one
column per check with the points earned (adjusted where overridden). `lms_id` and `late` are
what an LMS download says of the student (grader/layouts/): empty where it says nothing."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from grader.files import write_atomically
from grader.report.context import ReportContext
from grader.report.feedback import write_feedback
from grader.report.text import format_points
from grader.results import SubmissionResult

FIXED_COLUMNS = ["student", "lms_id", "late", "status", "error", "total", "max_total", "adjusted"]


def _fixed_values(result: SubmissionResult) -> dict[str, str]:
    """The row's value in each of FIXED_COLUMNS, by name: the list alone decides their order."""
    return {
        "student": result.student,
        "lms_id": result.lms_id,
        "late": late_text(result.late),
        "status": result.status,
        "error": result.error,
        "total": format_points(result.total),
        "max_total": format_points(result.max_total),
        "adjusted": ";".join(result.adjusted_checks),
    }


def csv_text(results: list[SubmissionResult], check_names: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIXED_COLUMNS + check_names)
    for result in results:
        fixed = _fixed_values(result)
        points = {c.name: c.points for c in result.checks}
        writer.writerow([fixed[column] for column in FIXED_COLUMNS] + [format_points(points.get(name, 0.0)) for name in check_names])
    return buffer.getvalue()


def late_text(late: bool | None) -> str:
    """`late` as the CSV writes it: true, false, or nothing where the layout does not say."""
    return "" if late is None else str(late).lower()


def write_csv(path: Path, results: list[SubmissionResult], check_names: list[str]) -> None:
    write_atomically(path, csv_text(results, check_names))


def write(context: ReportContext) -> list[Path]:
    """`grader run --format csv` (the default): the CSV report and feedback/<student>.md beside it,
    linking the annotated notebooks when the HTML format, written in the same run, writes them."""
    feedback_dir = context.output_csv.parent / "feedback"
    write_csv(context.output_csv, context.results, list(context.assignment.checks))
    write_feedback(feedback_dir, context.results, context.assignment.title, notebook_pages="html" in context.formats)
    return [context.output_csv, feedback_dir]
