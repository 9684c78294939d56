"""`grader fixtures`: write the assignment's selfcheck fixtures from the reference solution,
then prove them by selfchecking the reference itself against them (it must get full marks)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from grader.assignment import Assignment
from grader.compare.expectations import Expectations
from grader.errors import ReferenceSolutionError
from grader.isolate.client import Worker
from grader.load import Submission
from grader.pipeline import grade_submission, open_worker
from grader.reference.check import verified_reference_expectations
from grader.reference.fixtures import load_fixtures, write_fixtures
from grader.reference.observing import configure_for_selfcheck


def make_fixtures(assignment: Assignment, reference_path: Path | None = None, console: Console | None = None) -> Path:
    console = console or Console(stderr=True)
    reference_path = reference_path or assignment.default_reference_path()
    with open_worker(assignment) as worker:
        expected = verified_reference_expectations(assignment, worker, reference_path)
        path = write_verified_fixtures(assignment, worker, expected, reference_path)
    console.print(f"Wrote {path} (the reference passes selfcheck against it).")
    return path


def write_verified_fixtures(assignment: Assignment, worker: Worker, expected: Expectations, reference_path: Path) -> Path:
    """Write the fixtures, then selfcheck the reference against them as a student's notebook is
    (it must get full marks). Leaves `worker` configured for selfcheck."""
    path = write_fixtures(expected, assignment)
    reloaded = load_fixtures(assignment, path)
    configure_for_selfcheck(worker, assignment, reloaded)
    result = grade_submission(Submission("reference", reference_path), assignment, worker, reloaded)
    lost = [f"{c.name}: {'; '.join(c.reasons)}" for c in result.checks if not c.passed]
    if lost:
        raise ReferenceSolutionError(f"{reference_path} does not pass selfcheck against {path}: " + " | ".join(lost))
    return path
