"""The grading pipeline for one submission: load -> extract -> run isolated -> observe ->
compare -> score. `grader run` and `grader selfcheck` both grade through `grade_submission`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from grader.assignment import Assignment
from grader.compare import CHECKS
from grader.errors import SubmissionError, WorkerError
from grader.expectations import Expectations, read_observed, worker_limits
from grader.extract import extract_definitions
from grader.isolate.client import Worker
from grader.load import Submission, read_cells
from grader.results import GRADED, INVALID, SubmissionResult
from grader.score import score_outcomes, zero_scores

GROUPS = ["net", "loop"]


def data_folders(assignment: Assignment) -> tuple[Path, ...]:
    """Folders the sandbox must show besides Python: the data the assignment reads from disk."""
    return (Path(assignment.data.root),) if assignment.data.root else ()


def open_worker(assignment: Assignment, sandbox: str = "auto", threads: int = 1, *, wait: bool = True) -> Worker:
    """A worker for this assignment: its sandbox also shows the data folder the config names."""
    return Worker(threads, sandbox=sandbox, read_only=data_folders(assignment), wait=wait)


def warn_if_unsandboxed(worker: Worker, console: Console) -> None:
    """Say, once per run, when student code will run without the bubblewrap sandbox."""
    if not worker.sandbox.active:
        console.print(
            f"[yellow]warning:[/yellow] student code runs without the bubblewrap sandbox "
            f"({escape(worker.sandbox.reason)}); only process limits apply. `grader doctor` explains.",
            highlight=False,
            soft_wrap=True,
        )


@dataclass
class PreparedSubmission:
    """A submission read and extracted in the grader's process, ready for a worker to observe.
    `units` is None when there is nothing to observe: `result` is then already final."""

    submission: Submission
    result: SubmissionResult
    units: list[dict[str, Any]] | None
    started: float


def prepare(submission: Submission, assignment: Assignment) -> PreparedSubmission:
    """Load and extract (stages 1-2). An unreadable file gives a final `invalid` result."""
    started = time.monotonic()
    result = SubmissionResult(student=submission.student, path=str(submission.path), status=GRADED)
    try:
        if submission.problem:
            raise submission.problem
        cells = read_cells(submission.path)
    except SubmissionError as exc:
        result.status = INVALID
        result.errors.append(exc.cause)
        result.checks = zero_scores(assignment, f"not graded: {exc.cause}")
        return PreparedSubmission(submission, result, None, started)

    program = extract_definitions(cells, [assignment.model_class, assignment.loop_function])
    result.extracted_source = program.source_text()
    result.notes.extend(program.notes)
    result.errors.extend(_short(note) for note in program.notes if "SyntaxError" in note)
    return PreparedSubmission(submission, result, program.to_json(), started)


def observe(prepared: PreparedSubmission, worker: Worker, assignment: Assignment) -> dict[str, Any] | WorkerError:
    """Run the submission's checks in `worker`'s children (stages 3-4): raw observations."""
    assert prepared.units is not None
    try:
        return worker.observe(prepared.units, GROUPS, worker_limits(assignment))
    except WorkerError as exc:
        return exc


def finish(
    prepared: PreparedSubmission, raw: dict[str, Any] | WorkerError, assignment: Assignment, expected: Expectations
) -> SubmissionResult:
    """Validate the observations, compare and score (stages 5-6)."""
    result = prepared.result
    if isinstance(raw, WorkerError):
        result.errors.append(f"grader worker failed: {str(raw).splitlines()[0]}")
        result.checks = zero_scores(assignment, "not graded: the grader's worker process failed; please report this")
        return result
    groups = read_observed(raw, assignment)

    for name, group in groups.items():
        for note in group.program_notes:
            if note not in result.notes:
                result.notes.append(note)
                result.errors.append(_short(note))
        result.notes.extend(f"{name}: {problem}" for problem in group.problems)
        if group.stdout.strip():
            result.output[f"{name} stdout"] = group.stdout
        if group.stderr.strip():
            result.output[f"{name} stderr"] = group.stderr

    outcomes = {name: check(groups, expected, assignment) for name, check in CHECKS.items()}
    result.checks = score_outcomes(outcomes, assignment)
    result.errors.extend(c.error for c in result.checks if c.error)
    result.seconds = time.monotonic() - prepared.started
    return result


def grade_submission(submission: Submission, assignment: Assignment, worker: Worker, expected: Expectations) -> SubmissionResult:
    """All stages for one submission, on one worker."""
    prepared = prepare(submission, assignment)
    if prepared.units is None:
        return prepared.result
    return finish(prepared, observe(prepared, worker, assignment), assignment, expected)


def _short(note: str, limit: int = 160) -> str:
    return note if len(note) <= limit else note[: limit - 3] + "..."
