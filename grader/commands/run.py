"""`grader run SUBMISSIONS`: grade a whole class against the reference into a CSV report,
with per-student feedback files beside it. SUBMISSIONS is a folder or an LMS's zip download, in
any layout grader/layouts/ reads (extracted for the run by grader/submissions_zip.py).

Each result goes into the gradebook (grader/gradebook.py) as soon as it is graded, and the
report is always written from the gradebook, for the submissions now in the folder. A run that
is interrupted (Ctrl-C) loses the submissions in progress, one that is killed also the results of
its last half second (the gradebook commits in batches); the next run grades only what is new,
changed or lost, and starts no worker when nothing is. A stored result is never
graded again unless the caller forces it.

The instructor's overrides (`--overrides`, grader/overrides.py) are read and checked before
anything is graded, and applied here, once, to the results every report is written from; the
gradebook keeps the grader's own results and remembers what the overrides were applied over.
"""

from __future__ import annotations

import importlib
import os
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from grader.assignment import Assignment
from grader.errors import WorkerError
from grader.executors import Executor
from grader.executors.cluster import ClusterExecutor
from grader.executors.pool import LocalExecutor
from grader.fingerprints import grading_fingerprint
from grader.gradebook import GRADEBOOK_NAME, Gradebook, GradebookKey, gradebook_timestamp, submission_key
from grader.isolate.client import require_isolation
from grader.layouts import FoundSubmissions, Wanted, find_submissions
from grader.load import Submission
from grader.overrides import Override, apply_overrides, automatic_points_changes, overrides_to_remember, read_overrides
from grader.pipeline import warn_if_unsandboxed
from grader.reference import cache as expectations_cache
from grader.reference.check import verified_reference_expectations
from grader.report.changes import print_changes, total_changes
from grader.report.formats import DEFAULT_FORMATS, write_reports
from grader.report.terminal import class_summary
from grader.report.text import format_points
from grader.results import SubmissionResult
from grader.submissions_zip import submissions_folder

INTERRUPTED = 130  # exit status after Ctrl-C, as shells report SIGINT


@dataclass
class RunSummary:
    """What one `grader run` did."""

    # In student order: every submission, or those done when interrupted; without the text of
    # their annotated notebooks (the gradebook and feedback/ hold them).
    results: list[SubmissionResult]
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
    workers: int | None = None,
    threads: int | None = None,
    dask: str | None = None,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
    resume_command: str | None = None,
    console: Console | None = None,
    compare: bool = False,
    overrides_path: Path | None = None,
    layout: str = "auto",
) -> RunSummary:
    """Grade what the gradebook lacks (everything with `force`), then write the report with the
    overrides in `overrides_path` applied (read and checked first: OverridesError before any grading).
    `submissions_dir` is a folder or a zip, read in `layout` (grader/layouts/ LAYOUT_CHOICES).

    Ctrl-C abandons the submission in progress, shuts the worker down, writes the report for
    what is done and says how to resume (`resume_command`); the summary is then `interrupted`.
    With `compare`, prints each student whose total differs from the gradebook's result before
    this run.
    """
    console = console or Console(stderr=True)
    require_isolation(sandbox)  # before anything is read or written
    reference_path = reference_path or assignment.default_reference_path()
    gradebook_path = gradebook_path or output_csv.parent / GRADEBOOK_NAME
    # A zip is extracted for the run: the gradebook's keys are paths inside it, the same every run.
    with submissions_folder(submissions_dir) as folder:
        found = find_submissions(folder, Wanted(assignment.notebook, assignment.name), layout, shown_as=submissions_dir)
        _say_layout(found, console)
        submissions = found.submissions
        overrides = read_overrides(overrides_path, assignment, [s.student for s in submissions]) if overrides_path else None
        fingerprint = grading_fingerprint(assignment, reference_path)
        keys = [submission_key(s, folder, fingerprint) for s in submissions]
        interrupted = False
        started = gradebook_timestamp()
        with Gradebook(gradebook_path) as gradebook:
            pending = [(s, key) for s, key in zip(submissions, keys) if force or _needs_grading(gradebook.lookup(key, notebook=False))]
            # Read before grading: --force replaces a result stored under the same key.
            earlier = {key.student: gradebook.stored_before(key.student, started) for key in keys} if compare else {}
            if pending:
                try:
                    _grade_into(
                        gradebook,
                        pending,
                        assignment,
                        reference_path,
                        console,
                        total=len(submissions),
                        sandbox=sandbox,
                        workers=workers or os.cpu_count() or 1,
                        threads=threads,
                        dask=dask,
                    )
                except KeyboardInterrupt:
                    interrupted = True
            gradebook.commit()  # what was graded is kept, whatever happens while reporting
            # Each result without its annotated notebook (up to megabytes each): the report fetches
            # one at a time as it writes that student's page, so a class of any size fits in memory.
            stored = [gradebook.lookup(key, notebook=False) for key in keys]
            # Counted from the gradebook, not in the loop: Ctrl-C may land between storing a result
            # and any bookkeeping after it.
            graded = sum(gradebook.graded_since(key, started) for key in keys)
            results = [result for result in stored if result is not None]
            results = _with_overrides(results, overrides, overrides_path, gradebook, console)
            summary = RunSummary(results, graded, len(results) - graded, len(submissions) - len(results), interrupted)
            key_of = {key.student: key for key in keys}

            def notebook_text(result: SubmissionResult) -> str:
                return gradebook.annotated_notebook(key_of[result.student])

            _report(summary, assignment, output_csv, gradebook_path, console, formats, notebook_text)
    if compare:
        now = [(key, result) for key, result in zip(keys, stored) if result is not None]
        print_changes(total_changes(earlier, now), len(now), console)
    if interrupted and resume_command:
        console.print("To resume, run:")
        console.print(f"  {resume_command}", markup=False, highlight=False, soft_wrap=True)
    return summary


def _with_overrides(
    results: list[SubmissionResult], overrides: list[Override] | None, source: Path | None, gradebook: Gradebook, console: Console
) -> list[SubmissionResult]:
    """The results as every report shows them: the overrides applied on top. Says when the
    grader's points under an override changed since it was last applied (the gradebook remembers
    them), and when the last run applied overrides and this one was given none."""
    remembered = gradebook.applied_overrides()
    if overrides is None or source is None:
        if remembered:
            console.print(
                f"[yellow]warning:[/yellow] the last run applied {len(remembered)} override{'s' if len(remembered) > 1 else ''} from "
                f"{escape(gradebook.overrides_source() or 'a file')}; this report has none (give --overrides again to apply them).",
                highlight=False, soft_wrap=True,
            )  # fmt: skip
            gradebook.record_overrides({}, "")
        return results
    adjusted = apply_overrides(results, overrides)
    line = {(override.student, override.check): override.line for override in overrides}
    for change in automatic_points_changes(adjusted, remembered):
        console.print(
            f"[yellow]note:[/yellow] {escape(change.student)}'s {change.check}: the automatic points changed from "
            f"{format_points(change.before)} to {format_points(change.after)} since the override was last applied; the override "
            f"({format_points(change.points)}, {escape(str(source))} line {line[change.student, change.check]}) still applies.",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
    gradebook.record_overrides(overrides_to_remember(adjusted, overrides, remembered), str(source))
    applied = sum(len(result.adjustments) for result in adjusted)
    waiting = f" ({len(overrides) - applied} for submissions not graded yet)" if applied < len(overrides) else ""
    console.print(f"{applied} override{'' if applied == 1 else 's'} applied from {source}{waiting}", markup=False, highlight=False, soft_wrap=True)
    return adjusted


def _say_layout(found: FoundSubmissions, console: Console) -> None:
    """The layout read, first thing in the run, and each name that had to be told apart."""
    console.print(found.headline, markup=False, highlight=False, soft_wrap=True)
    for remark in found.remarks:
        console.print(f"  {remark}", markup=False, highlight=False, soft_wrap=True)


def _needs_grading(stored: SubmissionResult | None) -> bool:
    """Not stored yet, or stored from a run where the grader itself failed on it."""
    return stored is None or stored.grader_failed


def resume_command(
    submissions_dir: Path,
    output_csv: Path,
    *,
    assignment: str | None = None,
    reference_path: Path | None = None,
    gradebook_path: Path | None = None,
    sandbox: str = "auto",
    workers: int | None = None,
    threads: int | None = None,
    dask: str | None = None,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
    overrides_path: Path | None = None,
    layout: str = "auto",
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
    if workers:
        words += ["--workers", str(workers)]
    if threads:
        words += ["--threads", str(threads)]
    if dask:
        words += ["--dask", dask]
    if formats != DEFAULT_FORMATS:
        words += ["--format", ",".join(formats)]
    if overrides_path:
        words += ["--overrides", str(overrides_path)]
    if layout != "auto":
        words += ["--layout", layout]
    return shlex.join(words)


class _RateColumn(ProgressColumn):
    """Submissions per minute, as measured so far."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed * 60:.1f}/min" if task.speed else "-/min", style="progress.data.speed")


_PROGRESS_COLUMNS = (
    TextColumn("[progress.description]{task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    _RateColumn(),
    TimeElapsedColumn(),
    TextColumn("ETA"),
    TimeRemainingColumn(),
)


def _longest_first(pending: list[tuple[Submission, GradebookKey]], gradebook: Gradebook) -> list[tuple[Submission, GradebookKey]]:
    """Order the work so the slowest submissions start first and no worker is left alone with
    the slow tail. A submission is expected to take as long as it took last time; one never
    graded before is expected to take as long as the median known one."""
    known = {s.student: gradebook.previous_seconds(s.student) for s, _ in pending}
    times = sorted(t for t in known.values() if t is not None)
    typical = times[len(times) // 2] if times else 0.0
    return sorted(pending, key=lambda item: -(known[item[0].student] or typical))


def _grade_into(
    gradebook: Gradebook,
    pending: list[tuple[Submission, GradebookKey]],
    assignment: Assignment,
    reference_path: Path,
    console: Console,
    *,
    total: int,
    sandbox: str,
    workers: int,
    threads: int | None,
    dask: str | None,
) -> None:
    """Grade and store each pending submission, on warm workers here or on a Dask cluster: the
    reference is checked, then each result stored as its executor hands it back."""
    # On a cluster the host's worker grades no one: it only observes the reference, so none is
    # started when an earlier run's observations of this reference are cached.
    known = expectations_cache.cached(assignment, reference_path) if dask else None
    size = max(1, min(workers, len(pending)))  # local workers: no more than there are submissions
    executor = _executor(assignment, console, size=size, sandbox=sandbox, threads=threads, dask=dask, known=known is not None)
    with executor:
        # The class statistics at the end are computed with pandas: import it while the workers start
        # (about 0.3 s), not after the last submission. A later `import pandas` waits for this one.
        threading.Thread(target=importlib.import_module, args=("pandas",), daemon=True).start()
        try:
            warn_if_unsandboxed(executor.reference_worker, console)
            console.print(f"Checking the reference solution for [bold]{assignment.name}[/bold] ...")
            # On a cluster the rehearsal is only passed on.
            expected = verified_reference_expectations(assignment, executor.reference_worker, reference_path, rehearse=dask is None, known=known)
            keys = {id(submission): key for submission, key in pending}
            work = [submission for submission, _ in _longest_first(pending, gradebook)]
            with Progress(*_PROGRESS_COLUMNS, console=console, transient=False) as progress:
                where = f"on Dask ({dask})" if dask else f"({size} workers)"
                task = progress.add_task(f"grading {where}", total=total, completed=total - len(pending))
                for submission, document in executor.grade(work, assignment, expected):
                    gradebook.store(keys[id(submission)], document)
                    progress.advance(task)
                progress.update(task, description="graded")
        except KeyboardInterrupt:
            executor.kill()  # abandon the submissions in progress at once
            raise


def _executor(
    assignment: Assignment, console: Console, *, size: int, sandbox: str, threads: int | None, dask: str | None, known: bool
) -> Executor:
    """`size` warm workers on this machine, or the Dask cluster `dask` names."""
    if dask:
        return ClusterExecutor(dask, assignment, sandbox=sandbox, threads=threads, known=known)
    return LocalExecutor(assignment, size, sandbox=sandbox, threads=threads, on_lost_worker=lost_worker_warning(console))


def lost_worker_warning(console: Console) -> Callable[[WorkerError], None]:
    """What `grader run` says when a worker could not start: the others grade its share."""

    def lost(error: WorkerError) -> None:
        console.print(
            f"[yellow]warning:[/yellow] a worker could not start ({escape(str(error))}); the others grade its share.",
            highlight=False, soft_wrap=True,
        )  # fmt: skip

    return lost


def _report(
    summary: RunSummary,
    assignment: Assignment,
    output_csv: Path,
    gradebook_path: Path,
    console: Console,
    formats: tuple[str, ...],
    notebook_text: Callable[[SubmissionResult], str],
) -> None:
    written = write_reports(formats, summary.results, output_csv, assignment, notebook_text=notebook_text)
    class_summary(summary.results, console)
    counts = f"{summary.graded} graded, {summary.reused} reused from {gradebook_path}"
    if summary.interrupted:
        console.print(f"[yellow]Interrupted[/yellow]: {escape(counts)}; {summary.not_graded} not graded yet.", highlight=False, soft_wrap=True)
    else:
        console.print(counts, markup=False, highlight=False, soft_wrap=True)
    shown = [f"{path}/" if path.is_dir() else str(path) for path in written]
    console.print(f"Report: {', '.join(shown)}", markup=False, highlight=False, soft_wrap=True)
