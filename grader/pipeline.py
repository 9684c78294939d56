"""The grading pipeline for one submission: load -> extract -> run isolated -> observe ->
compare -> score. `grader run` and `grader selfcheck` both grade through `grade_submission`.
"""

from __future__ import annotations

import time
from pathlib import Path

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


def open_worker(assignment: Assignment, sandbox: str = "auto", console: Console | None = None) -> Worker:
    """A worker for this assignment: its sandbox also shows the data folder the config names.
    Says once, on `console`, when student code will run without the bubblewrap sandbox."""
    data_root = assignment.data.root
    worker = Worker(sandbox=sandbox, read_only=(Path(data_root),) if data_root else ())
    if console is not None and not worker.sandbox.active:
        console.print(
            f"[yellow]warning:[/yellow] student code runs without the bubblewrap sandbox "
            f"({escape(worker.sandbox.reason)}); only process limits apply. `grader doctor` explains.",
            highlight=False,
            soft_wrap=True,
        )
    return worker


def grade_submission(submission: Submission, assignment: Assignment, worker: Worker, expected: Expectations) -> SubmissionResult:
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
        return result

    program = extract_definitions(cells, [assignment.model_class, assignment.loop_function])
    result.extracted_source = program.source_text()
    result.notes.extend(program.notes)
    result.errors.extend(_short(note) for note in program.notes if "SyntaxError" in note)

    try:
        raw = worker.observe(program.to_json(), GROUPS, worker_limits(assignment))
    except WorkerError as exc:
        result.errors.append(f"grader worker failed: {str(exc).splitlines()[0]}")
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
    result.seconds = time.monotonic() - started
    return result


def _short(note: str, limit: int = 160) -> str:
    return note if len(note) <= limit else note[: limit - 3] + "..."
