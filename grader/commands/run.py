"""`grader run SUBMISSIONS_DIR`: grade a whole class against the reference into a CSV report,
with per-student feedback files beside it.

Each result goes into the gradebook (grader/gradebook.py) as soon as it is graded, and the
report is always written from the gradebook, for the submissions now in the folder. A run that
is interrupted (Ctrl-C) or killed loses at most the submission in progress; the next run grades
only what is new or changed, and starts no worker when nothing is. A stored result is never
graded again unless the caller forces it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from grader.assignment import Assignment
from grader.commands.reference_check import verified_reference_expectations
from grader.gradebook import GRADEBOOK_NAME, Gradebook, GradebookKey, grading_fingerprint, submission_key
from grader.load import Submission, discover_submissions
from grader.pipeline import grade_submission, open_worker
from grader.report.csv_report import write_csv
from grader.report.feedback import write_feedback
from grader.report.terminal import class_summary
from grader.results import SubmissionResult

INTERRUPTED = 130  # exit status after Ctrl-C, as shells report SIGINT


@dataclass
class RunSummary:
    """What one `grader run` did."""

    results: list[SubmissionResult]  # in student order: every submission, or those done when interrupted
    graded: int  # by this run
    reused: int  # taken from the gradebook
    not_graded: int  # left when the run was interrupted
    interrupted: bool


def run(
    assignment: Assignment,
    submissions_dir: Path,
    output_csv: Path,
    *,
    reference_path: Path | None = None,
    gradebook_path: Path | None = None,
    force: bool = False,
    sandbox: str = "auto",
    resume_command: str | None = None,
    console: Console | None = None,
) -> RunSummary:
    """Grade what the gradebook lacks (everything with `force`), then write the report.

    Ctrl-C abandons the submission in progress, shuts the worker down, writes the report for
    what is done and says how to resume (`resume_command`); the summary is then `interrupted`.
    """
    console = console or Console(stderr=True)
    reference_path = reference_path or assignment.default_reference_path()
    gradebook_path = gradebook_path or output_csv.parent / GRADEBOOK_NAME
    submissions = discover_submissions(submissions_dir, assignment.notebook)
    fingerprint = grading_fingerprint(assignment, reference_path)
    keys = [submission_key(s, submissions_dir, fingerprint) for s in submissions]
    graded: list[GradebookKey] = []
    interrupted = False
    with Gradebook(gradebook_path) as gradebook:
        pending = [(s, key) for s, key in zip(submissions, keys) if force or gradebook.lookup(key) is None]
        if pending:
            try:
                _grade_into(
                    gradebook, pending, assignment, reference_path, console, total=len(submissions), graded=graded, sandbox=sandbox
                )
            except KeyboardInterrupt:
                interrupted = True
        stored = [gradebook.lookup(key) for key in keys]
    results = [result for result in stored if result is not None]
    summary = RunSummary(results, len(graded), len(results) - len(graded), len(submissions) - len(results), interrupted)
    _report(summary, assignment, output_csv, gradebook_path, console)
    if interrupted and resume_command:
        console.print("To resume, run:")
        console.print(f"  {resume_command}", markup=False, highlight=False, soft_wrap=True)
    return summary


def resume_command(
    submissions_dir: Path,
    output_csv: Path,
    *,
    assignment: str | None = None,
    reference_path: Path | None = None,
    gradebook_path: Path | None = None,
    sandbox: str = "auto",
) -> str:
    """The command line that continues a run: the same options without --force, so what the
    interrupted run stored is kept."""
    words = ["grader", "run", str(submissions_dir), "-o", str(output_csv)]
    if gradebook_path:
        words += ["--db", str(gradebook_path)]
    if reference_path:
        words += ["--reference", str(reference_path)]
    if assignment:
        words += ["--assignment", assignment]
    if sandbox != "auto":
        words += ["--sandbox", sandbox]
    return shlex.join(words)


def _grade_into(
    gradebook: Gradebook,
    pending: list[tuple[Submission, GradebookKey]],
    assignment: Assignment,
    reference_path: Path,
    console: Console,
    *,
    total: int,
    graded: list[GradebookKey],
    sandbox: str,
) -> None:
    """Grade and store each pending submission. `graded` collects the keys as they are stored,
    so that after an interrupt the caller knows how far this got."""
    with open_worker(assignment, sandbox, console) as worker:
        console.print(f"Checking the reference solution for [bold]{assignment.name}[/bold] ...")
        expected = verified_reference_expectations(assignment, worker, reference_path)
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("grading", total=total, completed=total - len(pending))
            for submission, key in pending:
                progress.update(task, description=f"grading {submission.student}")
                gradebook.store(key, grade_submission(submission, assignment, worker, expected))
                graded.append(key)
                progress.advance(task)
            progress.update(task, description="graded")


def _report(summary: RunSummary, assignment: Assignment, output_csv: Path, gradebook_path: Path, console: Console) -> None:
    feedback_dir = output_csv.parent / "feedback"
    write_csv(output_csv, summary.results, list(assignment.checks))
    write_feedback(feedback_dir, summary.results, assignment.title)
    class_summary(summary.results, console)
    counts = f"{summary.graded} graded, {summary.reused} reused from {gradebook_path}"
    if summary.interrupted:
        console.print(f"[yellow]Interrupted[/yellow]: {escape(counts)}; {summary.not_graded} not graded yet.", highlight=False, soft_wrap=True)
    else:
        console.print(counts, markup=False, highlight=False, soft_wrap=True)
    console.print(f"Report: {output_csv}\nFeedback: {feedback_dir}/", markup=False, highlight=False, soft_wrap=True)
