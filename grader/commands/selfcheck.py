"""`grader selfcheck [NOTEBOOK]`: a student checks their own notebook before submitting.

Uses the assignment's fixtures file instead of the reference solution, which students do not
have. Exit status: 0 full marks on the public checks (with --min-score: at least that score), 1
otherwise, 2 unusable input.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from grader.assignment import Assignment
from grader.commands.selfcheck_outputs import SelfcheckOutputs
from grader.errors import GraderError
from grader.isolate.client import Worker
from grader.load import Submission
from grader.report.selfcheck_summary import summarize
from grader.report.terminal import selfcheck_report
from grader.report.text import format_points
from grader.results import INVALID, SubmissionResult

FULL_MARKS, NOT_FULL_MARKS, UNUSABLE = 0, 1, 2


def find_notebook(assignment: Assignment, cwd: Path) -> Path:
    """The assignment's notebook in `cwd`, else the only notebook there."""
    named = cwd / assignment.notebook
    if named.is_file():
        return named
    notebooks = sorted(p for p in cwd.glob("*.ipynb") if not p.name.startswith("."))
    if len(notebooks) == 1:
        return notebooks[0]
    found = ", ".join(p.name for p in notebooks) or "none"
    raise GraderError(f"no {assignment.notebook} in {cwd} and not exactly one other notebook (found: {found}); name the notebook to check")


class SelfcheckWorkers:
    """The two processes a selfcheck grades with, started side by side: one imports torch for the
    checks, the other only what reading a notebook takes (no torch), so the two imports share the
    cores. `grader selfcheck` uses a pair once; `selfcheck()` in a notebook keeps its pair between
    calls (notebook_selfcheck.py), so only the first call pays the torch import. A worker never
    runs student code itself (its children do), so a kept pair carries nothing from one check
    to the next."""

    def __init__(self, assignment: Assignment, sandbox: str = "auto") -> None:
        read_only = assignment.data_folders()
        self.checks = Worker(sandbox=sandbox, read_only=read_only, wait=False, role="checks")
        try:
            self.reader = Worker(sandbox=sandbox, read_only=read_only, wait=False, role="reader")
        except BaseException:
            self.checks.close()
            raise
        self.configured = False  # the checks worker has the fixtures (sent once per pair)
        self.warned = False  # the word on isolation, said once per pair

    def alive(self) -> bool:
        return self.checks.alive() and self.reader.alive()

    def close(self) -> None:
        self.checks.close()
        self.reader.close()

    def __enter__(self) -> SelfcheckWorkers:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def check_submission(
    assignment: Assignment, submission: Submission, *, sandbox: str = "auto", workers: SelfcheckWorkers | None = None
) -> SubmissionResult:
    """Grade one submission against the assignment's fixtures. Hidden checks are graded too
    (their results are in the returned checks, marked `public=False`); callers decide what to
    show. `workers`: a pair kept from an earlier check of this assignment (configured for these
    fixtures); without, a pair is started and closed here."""
    if workers is None:
        with SelfcheckWorkers(assignment, sandbox) as started:
            return check_submission(assignment, submission, sandbox=sandbox, workers=started)
    # The student is waiting, and the torch import is most of the wait. The workers started
    # first; meanwhile this process imports what it grades with (numpy and the comparisons,
    # about 0.2 s) and reads the fixtures and the file, and the reader extracts the submission
    # while the checks worker still imports torch: its configuration is only queued here, and
    # goes out with its first request.
    from grader.pipeline import grade, note_isolation_for_students, prepare
    from grader.reference.fixtures import load_fixtures
    from grader.reference.observing import configure_for_selfcheck

    expected = load_fixtures(assignment)
    prepared = prepare(submission, assignment)
    if prepared.request is None:  # unreadable: already scored, the workers are not needed
        return prepared.result
    if not workers.warned:
        note_isolation_for_students(workers.checks, Console(stderr=True))
        workers.warned = True
    if not workers.configured:
        configure_for_selfcheck(workers.checks, assignment, expected, wait=False)
        workers.configured = True
    return grade(prepared, assignment, expected, workers.checks, reader=workers.reader)


def selfcheck(
    assignment: Assignment,
    notebook: Path,
    console: Console | None = None,
    *,
    sandbox: str = "auto",
    min_score: float | None = None,
    outputs: SelfcheckOutputs | None = None,
) -> tuple[int, SubmissionResult]:
    """Grade `notebook`, print the table, write `outputs` (JUnit, JSON, GitHub), and return the
    exit status: with `min_score`, 0 when the public checks' score reaches it, else 1; without,
    0 at full marks on the public checks, else 1; 2 for a notebook that could not be used."""
    console = console or Console()
    if not notebook.is_file():
        raise GraderError(f"{notebook}: file not found")
    result = check_submission(assignment, Submission(notebook.stem, notebook), sandbox=sandbox)
    requirement = min_score_sentence(result, min_score)
    if result.status == INVALID:
        console.print(f"[red]{escape(f'{notebook}: {result.error}')}[/red]", soft_wrap=True)
        code = UNUSABLE
    else:
        selfcheck_report(summarize(result), console)
        if requirement:
            console.print(requirement, highlight=False, markup=False)
        code = exit_status(result, min_score)
    if outputs:
        outputs.write(result, assignment, notebook, requirement=requirement)
    return code, result


def exit_status(result: SubmissionResult, min_score: float | None) -> int:
    public = result.public_view()
    if public.status == INVALID:
        return UNUSABLE
    if min_score is not None:
        return FULL_MARKS if public.total >= min_score else NOT_FULL_MARKS
    return FULL_MARKS if all(c.passed for c in public.checks) else NOT_FULL_MARKS


def min_score_sentence(result: SubmissionResult, min_score: float | None) -> str:
    """What --min-score asked and whether the public checks' score reaches it."""
    if min_score is None or result.status == INVALID:
        return ""
    public = result.public_view()
    verdict = "reached" if public.total >= min_score else "not reached"
    sentence = f"Required score: {format_points(min_score)} of the {format_points(public.max_total)} public points: {verdict}."
    if min_score > public.max_total:
        sentence += " (More than the public checks can give: this requirement cannot be met.)"
    return sentence
