"""The report formats `grader run --format` writes, resolved by name.

Each format is one module of this package exposing
`write(results, output_csv, assignment) -> list[Path]`: it writes its files at or beside the CSV
report path and returns what it wrote. Adding a format adds its module and one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from pathlib import Path

from grader.assignment import Assignment
from grader.errors import GraderError
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
    """Every format's files. `notebook_text`: where the results left their annotated notebooks
    (SubmissionResult.annotated_notebook_elsewhere), see grader/report/html_report.py."""
    names = tuple(formats)
    written: list[Path] = []
    for name in names:
        write = importlib.import_module(FORMATS[name]).write
        if name == "csv":  # the Markdown feedback links the annotated notebook only where `html` writes it
            written += write(results, output_csv, assignment, notebook_pages="html" in names)
        elif name == "html":
            written += write(results, output_csv, assignment, notebook_text=notebook_text)
        else:
            written += write(results, output_csv, assignment)
    return written
