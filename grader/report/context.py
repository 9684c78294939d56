"""What every report format is given: one ReportContext, the same for all, so the registry
(grader/report/formats.py) calls each format's `write(context) -> list[Path]` alike and a format
that needs to know more reads it here instead of growing a keyword of its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grader.assignment import Assignment
from grader.results import SubmissionResult


@dataclass(frozen=True)
class ReportContext:
    results: list[SubmissionResult]
    output_csv: Path  # the CSV report's path: every format writes at or beside it
    assignment: Assignment
    formats: frozenset[str]  # every format written in this run: the Markdown feedback links the HTML notebook pages only when "html" is one
    # Where the results left their annotated notebooks (SubmissionResult.annotated_notebook_elsewhere),
    # fetched one at a time as each page is written (grader/report/html_report.py); None: all in the results.
    notebook_text: Callable[[SubmissionResult], str] | None = None
