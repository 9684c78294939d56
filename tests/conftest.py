"""Shared fixtures: the real CIFAR-2 assignment, one worker process for the session, and the
expectations observed from the real reference solution."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

# `grader run` starts one worker per core by default. The suite itself runs on every core
# (scripts/test.sh: pytest-xdist), so the runs it starts take one worker each unless a test asks for
# more; each extra worker costs a torch import and a rehearsal, about 5 s of CPU.
os.environ.setdefault("GRADER_WORKERS", "1")
# For the same reason, torch in the test processes themselves (and in the kernels and scripts they
# start) uses one thread: two threads per process on 2 busy cores spend their time waiting on each other.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from grader.assignment import Assignment, load_assignment  # noqa: E402
from grader.isolate.client import Worker  # noqa: E402
from grader.load import Submission  # noqa: E402
from grader.pipeline import grade_submission  # noqa: E402
from grader.reference.check import verified_reference_expectations  # noqa: E402
from grader.results import SubmissionResult  # noqa: E402

# The files that take longest, longest first (measured with --durations=0 on 2 cores). pytest-xdist
# hands out whole files (--dist loadfile) in collection order: starting with these keeps the suite
# from ending on one long file while the other cores sit idle. Files not listed follow in their order.
SLOWEST_FILES = [
    "test_fuzz_extraction.py", "test_dask.py", "test_gradebook.py", "test_reference_credit_and_cache.py",
    "test_realistic_notebooks.py", "test_unparsable_submissions.py", "test_hostile.py", "test_notebook_selfcheck.py",
    "test_cli.py", "test_installed.py", "test_grading_variants.py", "test_workers.py", "test_selfcheck_ci.py",
    "test_annotated_notebook.py", "test_assign.py", "test_other_assignments_are_config_only.py", "test_mode_dependent_layers.py",
    "test_gradescope.py", "test_other_courses.py", "test_overrides.py", "test_landlock.py",
    "test_isolation.py", "test_corpus.py", "test_shared_blocks.py", "test_lazy_dynamo.py", "test_data.py", "test_feedback_findings.py",
    "test_loop_criteria.py", "test_lms_layouts.py", "test_html_report.py", "test_loop_call.py", "test_gpu_code.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order


@pytest.fixture(scope="session")
def student_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a student's install: the grader built as a wheel and installed (not editable)
    into a fresh virtual environment. torch is not downloaded: the environment reuses this one's
    packages through a .pth file, as a student's environment that already has torch would."""
    base = tmp_path_factory.mktemp("installed")
    wheels = base / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (wheel,) = wheels.glob("grader-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    # torch and the other dependencies, as already installed: this environment's site-packages
    # (a path a .pth adds is searched after the environment's own, so the installed grader wins).
    (own_site,) = [p for p in site.getsitepackages() if p.endswith("site-packages")]
    new_site = next((venv / "lib").glob("python3*/site-packages"))
    (new_site / "dependencies.pth").write_text(own_site + "\n")
    return python


@pytest.fixture(scope="session")
def cifar2() -> Assignment:
    return load_assignment(ROOT / "assignments" / "cifar2")


@pytest.fixture(scope="session")
def reference_worker(cifar2: Assignment):
    """A worker configured with the real reference, as `grader run` configures it."""
    with Worker() as worker:
        expected = verified_reference_expectations(cifar2, worker, ROOT / "reference" / "cifar2.py")
        yield worker, expected


@pytest.fixture
def grade(reference_worker, cifar2: Assignment, tmp_path: Path):
    """Grade one file on disk through the whole pipeline, as `grader run` does."""
    worker, expected = reference_worker

    def _grade(path: Path, student: str | None = None) -> SubmissionResult:
        return grade_submission(Submission(student or path.stem, path), cifar2, worker, expected)

    return _grade


def points(result: SubmissionResult) -> dict[str, float]:
    return {c.name: c.points for c in result.checks}


FULL = {
    "net.instantiate": 5,
    "net.layers": 15,
    "net.shapes": 15,
    "net.params": 15,
    "net.forward": 20,
    "net.trains": 10,
    "loop.trains": 20,
}


def assert_close_documents(fresh: object, committed: object, where: str = "fixtures") -> None:
    """Two JSON documents are equal, numbers within a tolerance: the same code gives different
    last bits on different CPUs (Intel and AMD), so floats and encoded arrays are never compared
    byte for byte."""
    import math

    import numpy as np

    from grader.observations import digests_agree
    from grader.wire import decode_array

    if isinstance(committed, dict) and set(committed) == {"dtype", "shape", "data"}:
        a, b = decode_array(fresh, what=where), decode_array(committed, what=where)
        assert a.shape == b.shape and a.dtype == b.dtype, where
        assert np.allclose(a, b, rtol=1e-4, atol=1e-5), f"{where}: arrays differ by up to {np.max(np.abs(a - b))}"
    elif isinstance(committed, dict):
        assert isinstance(fresh, dict) and sorted(fresh) == sorted(committed), where
        for key in committed:
            assert_close_documents(fresh[key], committed[key], f"{where}.{key}")
    elif isinstance(committed, list) and len(committed) == 3 and ("digest" in where or "gradients" in where):
        # A digest's sums may cancel to near zero: its tolerance scales with the sum of magnitudes.
        assert isinstance(fresh, list) and digests_agree(fresh, committed), f"{where}: {fresh} != {committed}"
    elif isinstance(committed, list):
        assert isinstance(fresh, list) and len(fresh) == len(committed), where
        for i, (x, y) in enumerate(zip(fresh, committed)):
            assert_close_documents(x, y, f"{where}[{i}]")
    elif isinstance(committed, float) and not isinstance(committed, bool):
        assert isinstance(fresh, (int, float)) and math.isclose(fresh, committed, rel_tol=1e-4, abs_tol=1e-5), f"{where}: {fresh} != {committed}"
    else:
        assert fresh == committed, f"{where}: {fresh!r} != {committed!r}"
