"""Submissions that Python's parser cannot take, and failures of the grader's own per-submission
work: every file still gets its row, the batch always finishes, and the grading host never
parses student text itself.

The four crafted notebooks of the issue (a 100,000-term expression, a 100,000-deep attribute
chain, 5,000 nested lambdas, and a 100,000-term setting the Net needs) are built here, not
committed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import variants as v
from conftest import FULL, points

from grader.assignment import Assignment
from grader.commands.notebook_selfcheck import _ran
from grader.commands.run import run
from grader.errors import WorkerError
from grader.executors.pool import WorkerPool
from grader.isolate.reading import ReadingLimits, read_and_extract
from grader.load import Submission
from grader.pipeline import prepare
from grader.protocol import submission_request

TERMS = 100_000
LONG_SUM = "x = " + "+".join(["1"] * TERMS)
DEEP_ATTRIBUTE = "y = obj" + ".a" * TERMS
NESTED_LAMBDAS = "f = " + "lambda: " * 5000 + "0"
UNPARSABLE_SETTING = "HIDDEN = " + "+".join(["1"] * TERMS)
NET_WITH_SETTING = v.NET.replace("nn.Linear(8 * 8 * 8, 32)", "nn.Linear(8 * 8 * 8, HIDDEN)").replace("nn.Linear(32, 2)", "nn.Linear(HIDDEN, 2)")
NET_ZERO = {name: 0 for name in FULL if name.startswith("net.")}
READING = ReadingLimits(timeout_s=20.0, memory_mb=2048, max_cell_chars=1024 * 1024)


def _write(folder: Path, name: str, cells: list[str]) -> tuple[Path, int]:
    """The notebook, and the number ("cell N") of its crafted cell: the one over 10,000 characters."""
    path = v.write_notebook(folder / f"{name}.ipynb", cells)
    notebook = nbformat.read(str(path), as_version=4)
    crafted = next(i for i, cell in enumerate(notebook.cells, 1) if len(cell.source) > 10_000)
    return path, crafted


def crafted_folder(folder: Path) -> dict[str, tuple[int, dict[str, float]]]:
    """The issue's four notebooks: name -> (crafted cell's number, expected points)."""
    folder.mkdir(parents=True, exist_ok=True)
    cells = v.notebook_cells()
    with_setting = v.notebook_cells(net=NET_WITH_SETTING)
    with_setting.insert(with_setting.index(NET_WITH_SETTING), UNPARSABLE_SETTING)
    written = {
        "long_sum": ([*cells, LONG_SUM], FULL),
        "deep_attribute": ([*cells[:2], DEEP_ATTRIBUTE, *cells[2:]], FULL),
        "nested_lambdas": ([NESTED_LAMBDAS, *cells], FULL),
        "unparsable_setting": (with_setting, {**FULL, **NET_ZERO}),
    }
    return {name: (_write(folder, name, notebook)[1], expected) for name, (notebook, expected) in written.items()}


@pytest.fixture(scope="module")
def crafted_run(tmp_path_factory, cifar2: Assignment):
    """One `grader run` over the four crafted notebooks and two fine ones on which the grader's
    own work fails by injection: once in a worker's feeding thread, once while scoring."""
    import grader.executors.pool as pool_executor
    import grader.pipeline

    root = tmp_path_factory.mktemp("crafted")
    expected = crafted_folder(root / "submissions")
    for name in ("boom_in_worker_thread", "boom_in_scoring"):
        v.write_notebook(root / "submissions" / f"{name}.ipynb", v.notebook_cells())
    real_prepare, real_finish = pool_executor.prepare, grader.pipeline.finish

    def failing_prepare(submission, assignment, **options):
        if submission.student == "boom_in_worker_thread":
            raise RuntimeError("injected failure while preparing")
        return real_prepare(submission, assignment, **options)

    def failing_finish(prepared, raw, assignment, expected):
        if prepared.submission.student == "boom_in_scoring":
            raise KeyError("injected failure while scoring")
        return real_finish(prepared, raw, assignment, expected)

    out = root / "out" / "report.csv"
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pool_executor, "prepare", failing_prepare)
        patch.setattr(grader.pipeline, "finish", failing_finish)
        summary = run(cifar2, root / "submissions", out, workers=1)
    seconds = time.monotonic() - started
    frame = pd.read_csv(out, keep_default_na=False).set_index("student")
    return frame, expected, root, seconds, summary


def test_every_crafted_notebook_gets_its_row_with_the_points_it_earns(crafted_run):
    frame, expected, _, seconds, _ = crafted_run
    for student, (_, pinned) in expected.items():
        row = frame.loc[student]
        assert row["status"] == "graded", (student, row["error"])
        assert {name: row[name] for name in FULL} == pinned, (student, row["error"])
    # Reading is bounded by its own limit (20 s per attempt); the run took nowhere near 4 of them.
    assert seconds < 240


def test_the_unparsable_cell_is_named_in_the_error_and_the_feedback(crafted_run):
    frame, expected, root, _, _ = crafted_run
    for student, (cell, _) in expected.items():
        phrase = f"cell {cell} is nested too deeply for Python's parser"
        assert phrase in frame.loc[student, "error"], student
        feedback = (root / "out" / "feedback" / f"{student}.md").read_text()
        assert phrase in feedback and "this cell was skipped" in feedback, student


def test_a_net_whose_setting_cannot_be_parsed_loses_the_net_checks_saying_why(crafted_run):
    frame, expected, root, _, _ = crafted_run
    cell, _ = expected["unparsable_setting"]
    error = frame.loc["unparsable_setting", "error"]
    assert "NameError: name 'HIDDEN' is not defined" in error
    feedback = (root / "out" / "feedback" / "unparsable_setting.md").read_text()
    assert f"uses 'HIDDEN', which no cell the grader could read defines; the skipped cell {cell} mentions it" in feedback


def test_selfcheck_on_a_crafted_notebook_ends_with_full_marks_and_the_note(tmp_path):
    path, cell = _write(tmp_path, "cifar2_cnn", [*v.notebook_cells(), LONG_SUM])
    done = subprocess.run(
        [sys.executable, "-m", "grader", "selfcheck", str(path), "--assignment", "cifar2"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env={**os.environ, "COLUMNS": "300"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"cell {cell} is nested too deeply for Python's parser" in done.stdout


def test_in_notebook_selfcheck_leaves_out_cells_the_kernel_could_not_have_run():
    # selfcheck() grades the kernel's history; a cell the parser cannot take never ran there.
    started = time.monotonic()
    assert [_ran(cell) for cell in (LONG_SUM, DEEP_ATTRIBUTE, NESTED_LAMBDAS, "x = 1\0")] == ["", "", "", ""]
    assert _ran(v.NET) == v.NET
    assert time.monotonic() - started < 30


# ---------------------------------------------------------------- the reading child


def _extract(tmp_path: Path, cells: list[str], limits: ReadingLimits = READING) -> dict:
    path = v.write_notebook(tmp_path / "student.ipynb", cells)
    return read_and_extract(submission_request(path.name, path.read_bytes(), ["Net", "training_loop"]), limits)


def _kept(outcome: dict) -> str:
    return "".join(unit["source"] for unit in outcome["units"])


def test_a_cell_that_crashes_the_parser_is_skipped_and_the_rest_extracted(tmp_path, monkeypatch):
    # A C-level crash of the parser cannot be caught in Python: the reading child dies, and is run
    # again without the cell it was on. (The crash is staged: the fork inherits the patch.)
    import grader.child.extract

    real = grader.child.extract._cell_statements

    def crashing(cell, *args):
        if "CRASH_HERE" in cell.source:
            os.kill(os.getpid(), signal.SIGSEGV)
        return real(cell, *args)

    monkeypatch.setattr(grader.child.extract, "_cell_statements", crashing)
    outcome = _extract(tmp_path, ["x = 'CRASH_HERE'", *v.notebook_cells()])
    assert outcome["kind"] == "extracted"
    assert "class Net" in _kept(outcome) and "def training_loop" in _kept(outcome)
    assert any(note.startswith("cell 2 made Python's parser crash (signal 11") for note in outcome["problems"]), outcome["problems"]


def test_a_cell_that_takes_too_long_to_parse_is_skipped(tmp_path, monkeypatch):
    import grader.child.extract

    real = grader.child.extract._cell_statements

    def stalling(cell, *args):
        if "STALL_HERE" in cell.source:
            time.sleep(60)
        return real(cell, *args)

    monkeypatch.setattr(grader.child.extract, "_cell_statements", stalling)
    started = time.monotonic()
    outcome = _extract(tmp_path, [*v.notebook_cells(), "x = 'STALL_HERE'"], replace(READING, timeout_s=3.0))
    assert time.monotonic() - started < 20
    assert outcome["kind"] == "extracted" and "class Net" in _kept(outcome)
    assert any("took longer than 3 s to parse; this cell was skipped" in note for note in outcome["problems"])


def test_a_cell_over_the_size_limit_is_skipped_with_a_note(tmp_path):
    big = "data = [" + "1, " * 400_000 + "]"
    outcome = _extract(tmp_path, [*v.notebook_cells(), big], replace(READING, max_cell_chars=512 * 1024))
    assert outcome["kind"] == "extracted" and "class Net" in _kept(outcome)
    assert any("holds 1.1 MB of code, over the 512 KB limit for one cell; this cell was skipped" in n for n in outcome["problems"])


def test_a_file_over_the_size_limit_is_invalid_without_being_read(cifar2: Assignment, tmp_path):
    path = v.write_notebook(tmp_path / "huge.ipynb", [*v.notebook_cells(), "# " + "x" * (2 * 2 ** 20)])
    small = replace(cifar2, limits=replace(cifar2.limits, max_submission_mb=1))
    prepared = prepare(Submission("huge", path), small)
    assert prepared.request is None and prepared.result.status == "invalid"
    assert "the file is 2.0 MB, over the 1 MB limit for a submission" in prepared.result.error


def test_a_notebook_whose_json_is_nested_too_deeply_is_invalid(tmp_path):
    path = tmp_path / "deep.ipynb"
    path.write_text("[" * 200_000 + "]" * 200_000)
    outcome = read_and_extract(submission_request(path.name, path.read_bytes(), ["Net"]), READING)
    assert outcome == {"kind": "invalid", "cause": "not a notebook: its JSON is nested too deeply to read"}


# ---------------------------------------------------------------- the grader's own failures


def test_an_exception_in_the_per_submission_work_costs_only_that_row(crafted_run, cifar2: Assignment):
    frame, expected, root, _, _ = crafted_run
    assert sorted(frame.index) == sorted([*expected, "boom_in_scoring", "boom_in_worker_thread"])
    assert "injected failure while preparing" in frame.loc["boom_in_worker_thread", "error"]
    assert "injected failure while scoring" in frame.loc["boom_in_scoring", "error"]
    for student in ("boom_in_worker_thread", "boom_in_scoring"):
        assert "please report this grader bug" in frame.loc[student, "error"] and frame.loc[student, "total"] == 0

    # Once the grader is fixed, the next run grades again what it failed on, and reuses the rest.
    again = run(cifar2, root / "submissions", root / "out" / "report.csv", workers=1)
    assert (again.graded, again.reused) == (2, len(expected))
    rows = {r.student: r for r in again.results}
    assert points(rows["boom_in_worker_thread"]) == points(rows["boom_in_scoring"]) == FULL


class _StandIn:
    """A worker where only the pool's watchdog is under test."""

    started = 0

    def __init__(self, threads: int) -> None:
        type(self).started += 1
        self.killed = False

    def wait_ready(self) -> None: ...
    def wait_configured(self) -> None: ...
    def configure_like(self, other: object) -> None: ...
    def close(self) -> None: ...

    def kill(self) -> None:
        self.killed = True


def test_the_watchdog_answers_for_a_stuck_job_and_the_rest_go_on():
    never = threading.Event()

    def work(worker, job):
        if job == 2:
            never.wait()  # stuck beyond every limit of its own
        if job == 4:
            raise ValueError("a bug in the work itself")
        return job * 10

    _StandIn.started = 0
    with WorkerPool(2, _StandIn) as pool:  # type: ignore[arg-type]
        first = list(pool.workers)
        outcomes = dict(pool.map_unordered(range(8), work, job_timeout_s=1.5))
    assert sorted(outcomes) == list(range(8))
    assert isinstance(outcomes[2], WorkerError) and "no result within 2 s" in str(outcomes[2])
    assert isinstance(outcomes[4], ValueError)
    assert all(outcomes[job] == job * 10 for job in (0, 1, 3, 5, 6, 7))
    assert _StandIn.started == 3 and sum(w.killed for w in first) == 1  # the stuck worker was replaced
    never.set()
