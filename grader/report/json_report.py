"""Results as one JSON document, for CI and learning-management systems: every check of every
submission with points, reasons and visibility. The same document for `grader run --format json`
and `grader selfcheck --format json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grader import __version__
from grader.files import write_atomically
from grader.results import SubmissionResult

SCHEMA_VERSION = 1


def results_document(results: list[SubmissionResult], assignment: str) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "grader_version": __version__,
        "assignment": assignment,
        "submissions": [result.to_json() for result in results],
    }


def results_json_text(results: list[SubmissionResult], assignment: str) -> str:
    return json.dumps(results_document(results, assignment), indent=2, sort_keys=False) + "\n"


def write_results_json(path: Path, results: list[SubmissionResult], assignment: str) -> None:
    write_atomically(path, results_json_text(results, assignment))
