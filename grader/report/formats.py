"""The report formats `grader run --format` writes, resolved by name.

Each format is one module of this package exposing `write(context: ReportContext) -> list[Path]`
(grader/report/context.py): it writes its files at or beside the CSV report path and returns what
it wrote. Every format is called the same way; adding one adds its module and one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from pathlib import Path

from grader.assignment import Assignment
from grader.errors import GraderError
from grader.report.context import ReportContext
from grader.results import SubmissionResult

FORMATS = {
    "csv": "grader.report.csv_report",  # the CSV report and feedback/<student>.md
    "json": "grader.report.json_report",  # <report>.json: every check of every submission
    "gradescope": "grader.report.gradescope",  # gradescope/<student>.json: Gradescope's results.json
    "html": "grader.report.html_report",  # report.html (class report) and feedback/<student>.html
}
DEFAULT_FORMATS = ("csv", "html")


def parse_formats(values: Iterable[str] | None) -> tuple[str, ...]:
    """`--format` values, each a name or a comma list, in order without repeats; the default
    when none is given."""
    names = [name.strip() for value in values or () for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise GraderError(f"unknown report format {', '.join(map(repr, unknown))}: choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(names)) or DEFAULT_FORMATS


def write_reports(
    formats: Iterable[str],
    results: list[SubmissionResult],
    output_csv: Path,
    assignment: Assignment,
    *,
    notebook_text: Callable[[SubmissionResult], str] | None = None,
) -> list[Path]:
    """Every format's files, in the order named. `notebook_text`: see ReportContext."""
    names = tuple(formats)
    context = ReportContext(results, output_csv, assignment, frozenset(names), notebook_text)
    written: list[Path] = []
    for name in names:
        written += importlib.import_module(FORMATS[name]).write(context)
    return written
