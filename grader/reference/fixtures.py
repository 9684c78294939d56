"""The selfcheck fixtures file: the reference's observations, inputs and weights, never its source.

`grader fixtures` (and `grader assign`) write it from the reference; `grader selfcheck` and
`selfcheck()` read it where the reference solution is not available, so students are compared
against the same expectations as `grader run` uses. Its format is the expectations cache's
(grader/reference/expectations_file.py), with only what students may see.
"""

from __future__ import annotations

import json
from pathlib import Path

from grader.assignment import Assignment
from grader.compare.expectations import Expectations
from grader.errors import FixturesError
from grader.files import write_atomically
from grader.reference.expectations_file import ExpectationsFileError, expectations_document, read_expectations


def write_fixtures(expectations: Expectations, assignment: Assignment, path: Path | None = None) -> Path:
    """Write the selfcheck fixtures: observations, inputs and weights — no reference source."""
    path = path or assignment.fixtures_path
    document = expectations_document(expectations, assignment, for_students=True)
    write_atomically(path, json.dumps(document, indent=1, sort_keys=True) + "\n")  # committed: a readable diff
    return path


def load_fixtures(assignment: Assignment, path: Path | None = None) -> Expectations:
    path = path or assignment.fixtures_path
    hint = f"ask your instructor for it, or run `grader fixtures --assignment {assignment.name}`"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FixturesError(f"{path}: selfcheck fixtures not found; {hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FixturesError(f"{path}: unreadable fixtures ({exc}); {hint}") from None
    try:
        expectations, _ = read_expectations(document, assignment, origin=str(path))
    except ExpectationsFileError as exc:
        raise FixturesError(f"{path}: fixtures {exc}; {hint}") from None
    return expectations
