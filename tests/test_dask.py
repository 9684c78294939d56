"""Grading on a Dask cluster (a LocalCluster here): the same sandboxed workers, the same scores,
the same gradebook, so a run resumed on another executor reuses what is stored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytest.importorskip("distributed")

EXAMPLES = ROOT / "examples" / "cifar2" / "submissions"


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grader", "run", str(EXAMPLES), "-o", str(out), *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=600, env={**os.environ, "COLUMNS": "200"},
    )


def test_a_local_dask_cluster_grades_like_the_local_workers_and_shares_the_gradebook(tmp_path):
    on_dask = _run(tmp_path / "dask" / "report.csv", "--dask", "local:2")
    assert on_dask.returncode == 0, on_dask.stderr[-3000:]
    assert "6 graded, 0 reused" in on_dask.stderr
    # The same bytes as a run on local workers (test_cli checks the committed file against one).
    assert (tmp_path / "dask" / "report.csv").read_bytes() == (EXAMPLES.parent / "expected_report.csv").read_bytes()
    # The same gradebook, read by the local executor: nothing is graded again.
    resumed = _run(tmp_path / "dask" / "report.csv", "--workers", "1")
    assert "0 graded, 6 reused" in resumed.stderr


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path):
    done = _run(tmp_path / "r.csv", "--dask", "tcp://127.0.0.1:9")
    assert done.returncode == 2
    assert "--dask tcp://127.0.0.1:9: cannot reach the Dask scheduler" in done.stderr
