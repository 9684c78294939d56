"""Results as one JSON document, for CI and learning-management systems: every check of every
submission with points, reasons and visibility. The same document for `grader run --format json`
and `grader selfcheck --format json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grader.files import write_atomically
from grader.report.context import ReportContext
from grader.results import SubmissionResult
from grader.version import __version__

SCHEMA_VERSION = 1


def results_document(results: list[SubmissionResult], assignment: str, *, hidden_checks: int | None = None) -> dict[str, Any]:
    """`hidden_checks` is given by selfcheck, whose results hold the public checks only (totals
    included): it says how many more checks are graded after submission, never which."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "grader_version": __version__,
        "assignment": assignment,
        "submissions": [_submission(result) for result in results],
    }
    if hidden_checks is not None:
        document["hidden_checks"] = hidden_checks
    return document


def _submission(result: SubmissionResult) -> dict[str, Any]:
    # The annotated notebook is a page of its own (feedback/<student>.notebook.html), not data.
    data = {key: value for key, value in result.to_json().items() if key != "annotated_notebook"}
    data["notes"] = [str(note) for note in result.notes]  # each as the student reads it, as schema 1 has them
    return data


def results_json_text(results: list[SubmissionResult], assignment: str, *, hidden_checks: int | None = None) -> str:
    document = results_document(results, assignment, hidden_checks=hidden_checks)
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def write_results_json(path: Path, results: list[SubmissionResult], assignment: str) -> None:
    write_atomically(path, results_json_text(results, assignment))


def write(context: ReportContext) -> list[Path]:
    """`grader run --format json`: the document beside the CSV report, named after it (report.json)."""
    path = context.output_csv.with_suffix(".json")
    write_results_json(path, context.results, context.assignment.name)
    return [path]
