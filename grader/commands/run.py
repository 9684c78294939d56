"""`grader run SUBMISSIONS_DIR`: grade a whole class against the reference into a CSV report,
with per-student feedback files beside it."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from grader.assignment import Assignment
from grader.commands.reference_check import verified_reference_expectations
from grader.isolate.client import Worker
from grader.load import discover_submissions
from grader.pipeline import grade_submission
from grader.report.csv_report import write_csv
from grader.report.feedback import write_feedback
from grader.report.terminal import class_summary
from grader.results import SubmissionResult


def run(
    assignment: Assignment,
    submissions_dir: Path,
    output_csv: Path,
    *,
    reference_path: Path | None = None,
    console: Console | None = None,
) -> list[SubmissionResult]:
    console = console or Console(stderr=True)
    submissions = discover_submissions(submissions_dir, assignment.notebook)
    feedback_dir = output_csv.parent / "feedback"
    results: list[SubmissionResult] = []
    with Worker() as worker:
        console.print(f"Checking the reference solution for [bold]{assignment.name}[/bold] ...")
        expected = verified_reference_expectations(assignment, worker, reference_path or assignment.default_reference_path())
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("grading", total=len(submissions))
            for submission in submissions:
                progress.update(task, description=f"grading {submission.student}")
                results.append(grade_submission(submission, assignment, worker, expected))
                progress.advance(task)
            progress.update(task, description="graded")
    write_csv(output_csv, results, list(assignment.checks))
    write_feedback(feedback_dir, results, assignment.title)
    class_summary(results, console)
    console.print(f"Report: {output_csv}\nFeedback: {feedback_dir}/")
    return results
