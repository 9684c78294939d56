"""Warm workers in parallel: the same scores whatever the number of workers, every job done
once, the slowest submissions first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import FULL, ROOT, points
from variants import notebook_cells, write_notebook

from grader.commands.run import _longest_first, resume_command
from grader.executors.pool import DEFAULT_THREADS, WorkerPool
from grader.gradebook import Gradebook, GradebookKey
from grader.isolate.client import Worker
from grader.load import Submission
from grader.pipeline import grade_submission
from grader.results import SubmissionResult

EXAMPLES = ROOT / "examples" / "cifar2" / "submissions"


def _run(folder: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grader", "run", str(folder), "-o", str(out), *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=600, env={**os.environ, "COLUMNS": "200"},
    )


def test_one_worker_gives_the_same_report_as_several(tmp_path):
    # expected_report.csv was written by the default run (one worker per core; test_cli checks
    # that a run still matches it). One worker, with more torch threads per child, matches too.
    one = _run(EXAMPLES, tmp_path / "one" / "report.csv", "--workers", "1", "--threads", "2")
    assert one.returncode == 0, one.stderr
    assert (tmp_path / "one" / "report.csv").read_bytes() == (EXAMPLES.parent / "expected_report.csv").read_bytes()
    assert "/min" in one.stderr  # the progress bar shows the rate


def test_workers_must_be_a_positive_number(tmp_path):
    done = _run(EXAMPLES, tmp_path / "r.csv", "--workers", "0")
    assert done.returncode == 2
    assert "must be at least 1" in done.stderr


def test_grader_workers_is_the_default_and_a_bad_value_is_named(tmp_path, monkeypatch, capsys):
    import grader.commands.run
    from grader.cli import main

    asked: list[int | None] = []

    def recorded_run(*_: object, workers: int | None = None, **__: object) -> grader.commands.run.RunSummary:
        asked.append(workers)
        return grader.commands.run.RunSummary(results=[], graded=0, reused=0, not_graded=0, interrupted=False)

    monkeypatch.setattr(grader.commands.run, "run", recorded_run)
    command = ["run", str(EXAMPLES), "-o", str(tmp_path / "r.csv")]
    monkeypatch.setenv("GRADER_WORKERS", "3")
    assert main(command) == 0 and main([*command, "--workers", "2"]) == 0
    monkeypatch.delenv("GRADER_WORKERS")
    assert main(command) == 0
    assert asked == [3, 2, None]  # None: one per core

    monkeypatch.setenv("GRADER_WORKERS", "many")
    assert main(command) == 2
    assert "GRADER_WORKERS must be a whole number of at least 1, not 'many'" in capsys.readouterr().err
    assert len(asked) == 3


class _StartedWorker:
    """Stands in for a Worker where only the pool's bookkeeping is under test."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def wait_ready(self) -> None: ...
    def wait_configured(self) -> None: ...
    def close(self) -> None: ...
    def kill(self) -> None: ...


def test_threads_option_overrides_the_threads_per_worker(tmp_path):
    with WorkerPool(2, _StartedWorker, threads=3) as pool:  # type: ignore[arg-type]
        assert [w.threads for w in pool.workers] == [3, 3]
    with WorkerPool(2, _StartedWorker) as pool:  # type: ignore[arg-type]
        assert [w.threads for w in pool.workers] == [DEFAULT_THREADS] * 2 == [1, 1]
    assert "--threads 1" in resume_command(Path("subs"), Path("r.csv"), workers=1, threads=1)
    done = _run(EXAMPLES, tmp_path / "r.csv", "--threads", "0")
    assert done.returncode == 2 and "must be at least 1" in done.stderr


def test_a_workers_torch_threads_sleep_while_waiting_unless_told_to_spin(monkeypatch):
    from grader.isolate.client import worker_environment

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("GITHUB_TOKEN", "secret")
    env = worker_environment(threads=2)
    assert (env["OMP_NUM_THREADS"], env["OMP_WAIT_POLICY"]) == ("2", "PASSIVE")
    assert "GITHUB_TOKEN" not in env
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert worker_environment(threads=2)["OMP_WAIT_POLICY"] == "ACTIVE"


def test_a_rehearsal_that_fails_costs_nothing_but_time(reference_worker, cifar2, tmp_path):
    # The worker rehearses the reference in its own process to warm torch up for the children;
    # a rehearsal that raises (here: a malformed program unit) must leave the worker grading as before.
    worker, expected = reference_worker
    broken = [{"filename": "rehearsal", "line": 1}]
    notebook = write_notebook(tmp_path / "good.ipynb", notebook_cells())
    with Worker(sandbox="none") as fresh:
        fresh.configure_like(worker)
        fresh.configure(rehearsal=broken)
        assert points(grade_submission(Submission("good", notebook), cifar2, fresh, expected)) == FULL


def test_a_pool_runs_every_job_once_on_its_workers():
    with WorkerPool(2, lambda threads: Worker(threads, sandbox="none", wait=False)) as pool:
        assert len(pool.workers) == 2
        seen = dict(pool.map_unordered(range(6), lambda worker, job: (job * job, pool.workers.index(worker))))
    assert sorted(seen) == list(range(6))
    assert all(square == job * job for job, (square, _) in seen.items())


def test_a_worker_that_dies_while_starting_leaves_its_jobs_to_the_others():
    # Only the primary is waited for when the pool starts; each other worker is waited for in its
    # own lane, and one that never becomes ready costs the run nothing but its share of the work.
    started: list[Worker] = []

    def start(threads: int) -> Worker:
        worker = Worker(threads, sandbox="none", wait=False)
        if started:
            worker.kill()  # dies before it said it was ready
        started.append(worker)
        return worker

    lost: list[str] = []
    with WorkerPool(2, start) as pool:
        outcomes = dict(pool.map_unordered(range(4), lambda worker, job: pool.workers.index(worker), on_lost_worker=lambda e: lost.append(str(e))))
    assert outcomes == {0: 0, 1: 0, 2: 0, 3: 0}
    assert lost == ["the worker process died (stopped by the grader)"]  # said, once


def test_grader_run_says_when_a_worker_could_not_start(reference_worker, cifar2, tmp_path):
    import io

    from rich.console import Console

    from grader.commands.run import lost_worker_warning
    from grader.executors.pool import LocalExecutor

    started: list[Worker] = []

    def start(threads: int) -> Worker:
        worker = Worker(threads, sandbox="none", wait=False)
        if started:
            worker.kill()
        started.append(worker)
        return worker

    out = io.StringIO()
    notebook = write_notebook(tmp_path / "good.ipynb", notebook_cells())
    lost = lost_worker_warning(Console(file=out, width=300))
    with LocalExecutor(cifar2, 2, start=start, on_lost_worker=lost) as executor:
        executor.reference_worker.configure_like(reference_worker[0])
        graded = list(executor.grade([Submission("good", notebook)], cifar2, reference_worker[1]))
    assert [points(SubmissionResult.from_json(json.loads(document.text))) for _, document in graded] == [FULL]
    assert "warning: a worker could not start (the worker process died (stopped by the grader)); the others grade its share." in out.getvalue()


def test_the_slowest_known_submissions_are_graded_first(tmp_path):
    def key(student: str) -> GradebookKey:
        return GradebookKey(student, f"{student}.ipynb", "hash-" + student, "old-fingerprint")

    with Gradebook(tmp_path / "gradebook.sqlite") as book:
        for student, seconds in (("quick", 1.0), ("slow", 9.0), ("middle", 3.0)):
            book.store(key(student), SubmissionResult(student=student, path=f"{student}.ipynb", status="graded", seconds=seconds))
        pending = [(Submission(s, Path(f"{s}.ipynb")), key(s)) for s in ("quick", "new", "slow", "middle")]
        order = [s.student for s, _ in _longest_first(pending, book)]
    # "new" has no history: it is expected to take the median known time (3 s).
    assert order[0] == "slow" and order[-1] == "quick"
    assert set(order[1:3]) == {"new", "middle"}
