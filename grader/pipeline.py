"""The grading pipeline for one submission: load -> extract -> run isolated -> observe ->
compare -> score. Every way of grading goes through `grade`: `grader run` on local workers or
on a Dask cluster (grader/executors/), `grader selfcheck` and `selfcheck()`, `grader assign`
and `grader fixtures`.

The grading host only reads a submission's bytes (`prepare`); parsing them is untrusted work and
happens in a worker's limited child with the checks (`observe`); `conclude` turns whatever came
back, failures included, into the submission's result. `grade` runs wherever the workers are
driven from: the grading host, or a Dask worker process beside its warm workers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape

from grader.assignment import Assignment
from grader.child.extract import ExtractedProgram
from grader.compare import CHECKS
from grader.compare.expectations import Expectations
from grader.errors import SubmissionError, WorkerError
from grader.isolate.client import ConfigurationRecorder, Worker
from grader.load import Submission, read_submission_bytes
from grader.observations import cuda_on_cpu_note, read_observed
from grader.protocol import Observed, SubmissionRequest, submission_request, worker_limits
from grader.report.annotated_notebook import attach_annotated_notebook
from grader.results import GRADED, INVALID, Note, SubmissionResult
from grader.score import score_outcomes, zero_scores


def open_worker(assignment: Assignment, sandbox: str = "auto", threads: int = 1, *, wait: bool = True, role: str = "all") -> Worker:
    """A worker for this assignment: its sandbox also shows the data folder the config names.
    `role`: what it is for (grader/isolate/client.py ROLES)."""
    return Worker(threads, sandbox=sandbox, read_only=assignment.data_folders(), wait=wait, role=role)


def warn_if_unsandboxed(worker: Worker | ConfigurationRecorder, console: Console) -> None:
    """Say, once per run, when student code will run without the bubblewrap sandbox."""
    if worker.sandbox.landlock:
        console.print(
            f"[yellow]note:[/yellow] student code runs without the bubblewrap sandbox: {escape(worker.sandbox.reason)}. "
            "`grader doctor` explains.",
            highlight=False,
            soft_wrap=True,
        )
    elif not worker.sandbox.active:
        console.print(
            f"[yellow]warning:[/yellow] student code runs without the bubblewrap sandbox "
            f"({escape(worker.sandbox.reason)}); only process limits apply. `grader doctor` explains.",
            highlight=False,
            soft_wrap=True,
        )


def note_isolation_for_students(worker: Worker, console: Console) -> None:
    """selfcheck's word on isolation: on a student's own machine (Colab, a laptop) the code checked
    is the student's own and bubblewrap is usually absent, so say quietly what applies instead of
    the instructors' warning."""
    if not worker.sandbox.active:
        console.print(
            "[dim]Your code runs in separate processes with time and memory limits "
            f"(no bubblewrap sandbox here: {escape(worker.sandbox.reason)}).[/dim]",
            highlight=False,
            soft_wrap=True,
        )


@dataclass
class PreparedSubmission:
    """A submission's bytes, read by the grading host, ready for a worker to read and observe.
    `request` is None when there is nothing to send: `result` is then already final."""

    submission: Submission
    result: SubmissionResult
    request: SubmissionRequest | None
    started: float


def prepare(submission: Submission, assignment: Assignment, *, annotate: bool = False) -> PreparedSubmission:
    """Stage 1 in the grading host: the file's bytes, nothing parsed. A missing, unreadable or
    oversized file gives a final `invalid` result. With `annotate` (`grader run`, which writes
    feedback pages) the reading child also renders the notebook for the annotated page; the
    request keeps the nonce its placeholders carry."""
    started = time.monotonic()
    result = _new_result(submission)
    try:
        if submission.problem:
            raise submission.problem
        raw = read_submission_bytes(submission.path, assignment.limits.max_submission_mb * 2**20)
    except SubmissionError as exc:
        return PreparedSubmission(submission, _invalid(result, exc.cause, assignment), None, started)
    request = submission_request(submission.path.name, raw, assignment.graded_names, annotate=annotate)
    return PreparedSubmission(submission, result, request, started)


def _new_result(submission: Submission) -> SubmissionResult:
    """The submission's result before grading: who, which file, and what its LMS download said
    (id, lateness, notes such as a resubmission), which every result of it carries."""
    notes = [Note(note) for note in submission.notes]
    return SubmissionResult(
        student=submission.student, path=str(submission.path), status=GRADED, lms_id=submission.lms_id, late=submission.late, notes=notes
    )


def grade(
    prepared: PreparedSubmission, assignment: Assignment, expected: Expectations, worker: Worker, *, reader: Worker | None = None
) -> SubmissionResult:
    """Stages 2-6 for one prepared submission: read, extract and observe it in `worker`'s
    children (reading in `reader`'s, when given), then compare and score. Never raises: every
    submission gets its row. Its halves are `observe` and `conclude`, which the local pool runs
    in two threads (grader/executors/pool.py)."""
    if prepared.request is None:
        return prepared.result
    return conclude(prepared, observe(prepared, worker, assignment, reader=reader), assignment, expected)


def grade_submission(
    submission: Submission, assignment: Assignment, worker: Worker, expected: Expectations, *, annotate: bool = False
) -> SubmissionResult:
    """All stages for one submission, on one worker."""
    return grade(prepare(submission, assignment, annotate=annotate), assignment, expected, worker)


def grading_failed(submission: Submission, assignment: Assignment, exc: BaseException) -> SubmissionResult:
    """The row of a submission on which the grader's own work failed outside `grade` (a worker
    thread or a Dask task that raised): said as the grader's failure, graded again next run."""
    result = _new_result(submission)
    return _failed_by_grader(PreparedSubmission(submission, result, None, time.monotonic()), exc, assignment)


def observe(prepared: PreparedSubmission, worker: Worker, assignment: Assignment, *, reader: Worker | None = None) -> Observed | WorkerError:
    """Stages 2-4 in `worker`'s children: read and extract, then run the checks; raw observations,
    or why there are none. With a `reader` (a worker of the "reader" role: no torch, so it answers
    while `worker` still imports it), reading and extracting happen in its children instead, and
    `worker` only runs the checks."""
    assert prepared.request is not None
    limits = worker_limits(assignment)
    try:
        if reader is None:
            return worker.grade(prepared.request, assignment.groups, limits)
        extraction = reader.read(prepared.request, limits)
        units = extraction.get("units") if extraction.get("kind") == "extracted" else None
        groups = worker.observe(units, assignment.groups, limits) if isinstance(units, list) else {}
        return {"extraction": extraction, "groups": groups}  # `finish` checks the extraction's form
    except WorkerError as exc:
        return exc


def conclude(prepared: PreparedSubmission, raw: Observed | Exception, assignment: Assignment, expected: Expectations) -> SubmissionResult:
    """The submission's final result, whatever happened on the way: never raises, so every
    submission gets its row. A failure of the grader itself is said as one, and marked so the
    next run grades the submission again."""
    if prepared.request is None:
        return prepared.result
    try:
        if isinstance(raw, Exception):
            return _failed_by_grader(prepared, raw, assignment)
        return finish(prepared, raw, assignment, expected)
    except Exception as exc:
        return _failed_by_grader(prepared, exc, assignment)


def _failed_by_grader(prepared: PreparedSubmission, exc: BaseException, assignment: Assignment) -> SubmissionResult:
    if isinstance(exc, WorkerError):
        return _grader_failed(prepared, f"grader worker failed: {str(exc).splitlines()[0]}", assignment)
    cause = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return _grader_failed(prepared, f"the grader failed on this submission ({_short(cause)}); please report this grader bug", assignment)


def finish(prepared: PreparedSubmission, raw: Observed, assignment: Assignment, expected: Expectations) -> SubmissionResult:
    """Take in what the reading child extracted, validate the observations, compare and score
    (stages 5-6)."""
    result = prepared.result
    extraction = raw.get("extraction")
    if isinstance(extraction, dict) and extraction.get("kind") == "invalid":
        return _invalid(result, _short(str(extraction.get("cause"))), assignment)
    program = ExtractedProgram.from_json(extraction)
    result.extracted_source = program.source_text()
    result.notes.extend(Note(note) for note in program.notes)  # extraction's: about the whole file
    result.errors.extend(_short(problem) for problem in program.problems)
    groups = read_observed(raw.get("groups") or {}, assignment)

    for name, group in groups.items():
        for note in group.program_notes:  # every group runs the same program: said once
            if Note(note) not in result.notes:
                result.notes.append(Note(note))
                result.errors.append(_short(note))
        result.notes.extend(Note(problem, check=name) for problem in group.problems)  # the group's child run
        if group.stdout.strip():
            result.output[f"{name} stdout"] = group.stdout
        if group.stderr.strip():
            result.output[f"{name} stderr"] = group.stderr
    gpu_note = cuda_on_cpu_note(groups.values())  # a note, never an error: no points depend on it
    if gpu_note:
        result.notes.append(Note(gpu_note))

    outcomes = {name: CHECKS[name](groups, expected, assignment) for name in assignment.checks}
    result.notes.extend(Note(note, check=name) for name, outcome in outcomes.items() for note in outcome.notes)
    result.checks = score_outcomes(outcomes, assignment)
    result.errors.extend(c.error for c in result.checks if c.error)
    annotate = prepared.request.get("annotate") if prepared.request else None
    if isinstance(annotate, dict):  # after scoring: the findings boxes show the checks' reasons
        attach_annotated_notebook(result, extraction.get("annotated") if isinstance(extraction, dict) else None, annotate["nonce"], assignment)
    result.seconds = time.monotonic() - prepared.started
    return result


def _invalid(result: SubmissionResult, cause: str, assignment: Assignment) -> SubmissionResult:
    result.status = INVALID
    result.errors.append(cause)
    result.checks = zero_scores(assignment, f"not graded: {cause}")
    return result


def _grader_failed(prepared: PreparedSubmission, cause: str, assignment: Assignment) -> SubmissionResult:
    result = _new_result(prepared.submission)
    result.errors.append(cause)
    result.checks = zero_scores(assignment, "not graded: the grader failed on this submission; it is graded again on the next run")
    result.grader_failed = True
    result.seconds = time.monotonic() - prepared.started
    return result


def _short(note: str, limit: int = 160) -> str:
    return note if len(note) <= limit else note[: limit - 3] + "..."
