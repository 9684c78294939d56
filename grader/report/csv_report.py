"""The CSV gradebook: one row per submission; columns student, status, error, total, max_total,
then one column per check with the points earned."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from grader.assignment import Assignment
from grader.files import write_atomically
from grader.report.feedback import write_feedback
from grader.report.text import format_points
from grader.results import SubmissionResult

FIXED_COLUMNS = ["student", "status", "error", "total", "max_total"]


def csv_text(results: list[SubmissionResult], check_names: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIXED_COLUMNS + check_names)
    for result in results:
        points = {c.name: c.points for c in result.checks}
        writer.writerow(
            [result.student, result.status, result.error, format_points(result.total), format_points(result.max_total)]
            + [format_points(points.get(name, 0.0)) for name in check_names]
        )
    return buffer.getvalue()


def write_csv(path: Path, results: list[SubmissionResult], check_names: list[str]) -> None:
    write_atomically(path, csv_text(results, check_names))


def write(results: list[SubmissionResult], output_csv: Path, assignment: Assignment, *, notebook_pages: bool = False) -> list[Path]:
    """`grader run --format csv` (the default): the CSV report and feedback/<student>.md beside it,
    linking the annotated notebooks when the HTML format writes them (`notebook_pages`)."""
    feedback_dir = output_csv.parent / "feedback"
    write_csv(output_csv, results, list(assignment.checks))
    write_feedback(feedback_dir, results, assignment.title, notebook_pages=notebook_pages)
    return [output_csv, feedback_dir]
