"""The grading pipeline for one submission: load -> extract -> run isolated -> observe ->
compare -> score. `grader run` and `grader selfcheck` both grade through `grade_submission`.
"""

from __future__ import annotations

import time

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
