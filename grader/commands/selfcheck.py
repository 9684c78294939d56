"""`grader selfcheck [NOTEBOOK]`: a student checks their own notebook before submitting.

Uses the assignment's fixtures file instead of the reference solution, which students do not
have. Exit status: 0 full marks on the public checks, 1 otherwise, 2 unusable input.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from grader.assignment import Assignment
from grader.errors import GraderError
from grader.expectations import configure_for_selfcheck, load_fixtures
from grader.load import Submission
from grader.pipeline import grade_submission, open_worker, warn_if_unsandboxed
from grader.report.terminal import selfcheck_report
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


def check_submission(assignment: Assignment, submission: Submission, *, sandbox: str = "auto") -> SubmissionResult:
    """Grade one submission against the assignment's fixtures, on one warm worker. Hidden checks
    are graded too (their results are in the returned checks, marked `public=False`); callers
    decide what to show."""
    expected = load_fixtures(assignment)
    with open_worker(assignment, sandbox) as worker:
        warn_if_unsandboxed(worker, Console(stderr=True))
        configure_for_selfcheck(worker, assignment, expected)
        return grade_submission(submission, assignment, worker, expected)


def selfcheck(
    assignment: Assignment, notebook: Path, console: Console | None = None, *, sandbox: str = "auto"
) -> tuple[int, SubmissionResult]:
    console = console or Console()
    if not notebook.is_file():
        raise GraderError(f"{notebook}: file not found")
    result = check_submission(assignment, Submission(notebook.stem, notebook), sandbox=sandbox)
    if result.status == INVALID:
        console.print(f"[red]{escape(f'{notebook}: {result.error}')}[/red]", soft_wrap=True)
        return UNUSABLE, result
    hidden = sum(not c.public for c in result.checks)
    selfcheck_report(result, console, hidden)
    public = [c for c in result.checks if c.public]
    return (FULL_MARKS if all(c.passed for c in public) else NOT_FULL_MARKS), result
