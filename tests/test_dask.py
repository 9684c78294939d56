"""Grading on a Dask cluster (a LocalCluster here): the same sandboxed workers, the same scores,
the same gradebook, so a run resumed on another executor reuses what is stored; and the feeder
that keeps a bounded number of submissions in flight, however large the class."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT

pytest.importorskip("distributed")

from grader.errors import WorkerError
from grader.executors.cluster import map_on_cluster

EXAMPLES = ROOT / "examples" / "cifar2" / "submissions"


def _run(folder: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grader", "run", str(folder), "-o", str(out), *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=600, env={**os.environ, "COLUMNS": "200"},
    )


def _class_with_unreadable_files(folder: Path) -> list[str]:
    """The examples, plus files the grading host refuses (too large, a folder with no notebook)
    and files only a reading child finds unusable (not JSON, cut short). Their students."""
    shutil.copytree(EXAMPLES, folder)
    with open(folder / "huge.ipynb", "wb") as f:
        f.truncate(200 * 2**20)  # sparse: over the size limit without taking the disk
    (folder / "empty_folder").mkdir()
    (folder / "empty_folder" / "notes.txt").write_text("no notebook here\n")
    (folder / "garbage.ipynb").write_bytes(bytes(range(256)) * 8)
    text = (EXAMPLES / "alice.ipynb").read_text()
    (folder / "truncated.ipynb").write_text(text[: len(text) // 2])
    return ["huge", "empty_folder", "garbage", "truncated"]


def test_a_local_dask_cluster_grades_like_the_local_workers_and_shares_the_gradebook(tmp_path, monkeypatch):
    # An empty cache: the grading host's own worker observes the reference for the cluster.
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "class"
    unreadable = _class_with_unreadable_files(folder)
    on_dask = _run(folder, tmp_path / "dask" / "report.csv", "--dask", "local:2")
    assert on_dask.returncode == 0, on_dask.stderr[-3000:]
    assert "10 graded, 0 reused" in on_dask.stderr
    local = _run(folder, tmp_path / "local" / "report.csv", "--workers", "1")
    assert local.returncode == 0, local.stderr[-3000:]
    # The same bytes as a run on local workers: rows, messages of unreadable files, feedback.
    assert (tmp_path / "dask" / "report.csv").read_bytes() == (tmp_path / "local" / "report.csv").read_bytes()
    for page in sorted((tmp_path / "local" / "feedback").glob("*.md")):
        assert (tmp_path / "dask" / "feedback" / page.name).read_bytes() == page.read_bytes(), page.name
    rows = (tmp_path / "dask" / "report.csv").read_text().splitlines()
    expected = (EXAMPLES.parent / "expected_report.csv").read_text().splitlines()
    assert [row for row in rows if row.split(",")[0] not in unreadable] == expected
    with open(tmp_path / "dask" / "report.csv", newline="") as f:
        graded = {row["student"]: row for row in csv.DictReader(f)}
    for student in unreadable:
        assert (graded[student]["status"], graded[student]["total"]) == ("invalid", "0"), graded[student]
    assert graded["huge"]["error"] == "the file is 200 MB, over the 64 MB limit for a submission"
    assert graded["empty_folder"]["error"] == "folder holds no .ipynb or .py file"
    # The same gradebook, read by the local executor: nothing is graded again.
    resumed = _run(folder, tmp_path / "dask" / "report.csv", "--workers", "1")
    assert "0 graded, 10 reused" in resumed.stderr


def test_with_the_reference_cached_the_grading_host_starts_no_worker_and_grades_the_same(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    import grader.commands.run as run_module
    import grader.executors.cluster
    from grader.assignment import load_assignment

    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "class"
    folder.mkdir()
    for name in ("alice.ipynb", "dave.ipynb", "frank.ipynb"):
        shutil.copy(EXAMPLES / name, folder / name)
    cifar2 = load_assignment(ROOT / "assignments" / "cifar2")
    quiet = lambda: Console(file=io.StringIO(), width=200)  # noqa: E731
    run_module.run(cifar2, folder, tmp_path / "local" / "report.csv", workers=1, console=quiet())  # fills the cache

    def no_worker_here(*_: object, **__: object) -> None:
        raise AssertionError("the grading host started a worker of its own")

    monkeypatch.setattr(grader.executors.cluster, "open_worker", no_worker_here)
    summary = run_module.run(cifar2, folder, tmp_path / "dask" / "report.csv", dask="local:1", console=quiet())
    assert (summary.graded, summary.interrupted) == (3, False)
    assert (tmp_path / "dask" / "report.csv").read_bytes() == (tmp_path / "local" / "report.csv").read_bytes()
    expected = (EXAMPLES.parent / "expected_report.csv").read_text().splitlines()
    assert (tmp_path / "dask" / "report.csv").read_text().splitlines() == [
        row for row in expected if row.split(",")[0] in ("student", "alice", "dave", "frank")
    ]


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path):
    done = _run(EXAMPLES, tmp_path / "r.csv", "--dask", "tcp://127.0.0.1:9")
    assert done.returncode == 2
    assert "--dask tcp://127.0.0.1:9: cannot reach the Dask scheduler" in done.stderr


def _add_slowly(shared: dict[str, int], job: int) -> int:
    if job == 13:
        raise RuntimeError("this task breaks")
    time.sleep(4.0 if job == 21 else 0.02)  # 4 s: longer than the watchdog's 2 s for a task of one
    return shared["offset"] + job


def test_the_feeder_keeps_a_few_submissions_per_thread_in_flight_and_answers_every_job_once():
    from distributed import Client, LocalCluster

    sent: list[int] = []
    answered: dict[int, object] = {}
    most_in_flight = 0
    lock = threading.Lock()

    def payload(job: int) -> int | None:
        if job % 10 == 3:
            return None  # decided on the grading host: nothing to send
        if job % 10 == 7:
            raise ValueError(f"cannot read {job}")
        with lock:
            sent.append(job)
        return job

    with (
        LocalCluster(n_workers=1, threads_per_worker=3, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        jobs = range(60)
        for job, outcome in map_on_cluster(
            client, {"offset": 1000}, _add_slowly, jobs, payload, job_timeout_s=2.0, max_batch=1
        ):
            assert job not in answered
            answered[job] = outcome
            in_flight = len([j for j in sent if j not in answered])
            most_in_flight = max(most_in_flight, in_flight + 1)  # counting the one just answered
    assert sorted(answered) == list(range(60))
    assert 3 < most_in_flight <= 2 * 3  # two tasks per Dask thread, never more
    for job, outcome in answered.items():
        if job % 10 == 3:
            assert outcome is None
        elif job % 10 == 7:
            assert isinstance(outcome, ValueError) and str(outcome) == f"cannot read {job}"
        elif job == 13:
            assert isinstance(outcome, WorkerError) and "this task breaks" in str(outcome)
        elif job == 21:  # the watchdog answered for it, and the others went on
            assert isinstance(outcome, WorkerError) and "no result from the Dask cluster within 2 s" in str(outcome)
        else:
            assert outcome == 1000 + job


class _RecordingClient:
    """A Dask client that notes how many jobs each task it is asked to run carries."""

    def __init__(self, client: object) -> None:
        self._client, self.batches = client, []

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)

    def map(self, func, *iterables, **kwargs):
        iterables = [list(it) for it in iterables]
        self.batches += [len(payloads) for payloads in iterables[1]]
        return self._client.map(func, *iterables, **kwargs)


def test_jobs_travel_in_batches_while_many_are_left_and_one_per_task_at_the_end():
    from distributed import Client, LocalCluster

    from grader.executors.cluster import _batch_size

    # 64 threads with two batches each in flight: batches of 4 while each thread has 16 jobs left.
    assert [_batch_size(n, 64, 2, 4) for n in (10_000, 1024, 1023, 768, 767, 512, 511, 1, 0)] == [
        4,
        4,
        3,
        3,
        2,
        2,
        1,
        1,
        1,
    ]
    answered: dict[int, object] = {}
    sent, most_in_flight = 0, 0
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        recording = _RecordingClient(client)

        def payload(job: int) -> int:
            nonlocal sent
            sent += 1
            return job

        for job, outcome in map_on_cluster(
            recording, {"offset": 1000}, _add_slowly, range(100), payload, job_timeout_s=10.0, max_batch=4
        ):
            assert job not in answered
            answered[job] = outcome
            most_in_flight = max(most_in_flight, sent - len(answered) + 1)
    assert sorted(answered) == list(range(100))
    assert sum(recording.batches) == 100 and recording.batches[0] == 4 and recording.batches[-3:] == [1, 1, 1]
    assert 2 * 2 < most_in_flight <= 2 * 2 * 4  # two tasks per thread, up to four jobs each
    # A job that raises fails alone: the jobs of its batch are answered with their own results.
    assert isinstance(answered[13], WorkerError) and "this task breaks" in str(answered[13])
    assert {job: outcome for job, outcome in answered.items() if job != 13} == {
        job: 1000 + job for job in range(100) if job != 13
    }
