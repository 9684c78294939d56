"""The Gradescope autograder bundle as Gradescope uses it: `grader gradescope` builds the zip, it
is unpacked into a stand-in for /autograder, and `run_autograder` grades one uploaded notebook
into results.json, which must follow Gradescope's spec field by field."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import variants as v
from conftest import FULL, ROOT
from isolation_modes import ReadablePython, failing_bwrap, open_folder, readable_python

from grader.commands.run import resume_command
from grader.errors import GraderError
from grader.isolate import landlock
from grader.report.formats import DEFAULT_FORMATS, parse_formats
from grader.report.gradescope import gradescope_results
from grader.results import CheckResult, Note, SubmissionResult

HIDDEN = "net.forward"  # marked `public = false` in the bundled copy of the assignment
SLEEP = f"31.{uuid.uuid4().int % 10**6:06d}"  # a sleep length no other process on this machine uses


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """autograder.zip for a copy of cifar2 whose net.forward check is hidden."""
    tmp = tmp_path_factory.mktemp("bundle")
    folder = tmp / "assignments" / "cifar2"
    shutil.copytree(ROOT / "assignments" / "cifar2", folder)
    config = folder / "assignment.toml"
    text = config.read_text()
    config.write_text(text.replace(f'[checks."{HIDDEN}"]\npoints = 20\n', f'[checks."{HIDDEN}"]\npoints = 20\npublic = false\n'))
    assert "public = false" in config.read_text()
    zip_path = tmp / "autograder.zip"
    done = subprocess.run(
        [sys.executable, "-m", "grader", "gradescope", str(folder), "-o", str(zip_path), "--reference", str(ROOT / "reference" / "cifar2.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return zip_path


def _unpack(bundle: Path, root: Path) -> Path:
    """Unzip as Gradescope does into root/source, keeping the executable bits."""
    source = root / "source"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(source)
        for info in archive.infolist():
            mode = info.external_attr >> 16
            if mode:
                (source / info.filename).chmod(stat.S_IMODE(mode))
    return source


@dataclass(frozen=True)
class AutograderRun:
    results: dict  # results.json
    done: subprocess.CompletedProcess[str]
    said: str  # its stderr, on one line
    planted: bool  # the upload's file appeared among the results
    connected: bool  # the upload reached a listener on the host's loopback
    survivors: str  # what pgrep finds of the upload's detached sleeper after the run
    source_mode: int


def _autograde(bundle: Path, root: Path, readable: ReadablePython | None, *, sandbox: str = "auto") -> AutograderRun:
    """Unpack the bundle under `root`, upload a notebook that loses points (one of them on the
    hidden check) and attacks what Gradescope's layout invites, and run run_autograder as
    Gradescope does: as root, with a bwrap that cannot create its namespaces (as in Docker) where
    the kernel has Landlock, and grader installed beside `readable` (setup.sh's venv at
    /opt/grader: a Python other users can read), else beside this Python."""
    source = _unpack(bundle, root)
    installed = root / "venv-site"  # what setup.sh's `pip install ./grader-src` puts into the venv
    shutil.copytree(source / "grader-src" / "grader", installed / "grader")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    # The upload tries to read the bundled reference, or find it on disk (Net() then fails, and
    # the points show it), to plant a file among the results, to reach the network, and to leave
    # a process running past the grading.
    attack = (
        "import os, socket, subprocess\n"
        f"subprocess.Popen(['setsid', 'sleep', '{SLEEP}'])\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {listener.getsockname()[1]}), timeout=2).close()\n"
        "except OSError:\n"
        "    pass\n"
        "try:\n"
        f"    stolen = open({str(source / 'reference' / 'cifar2.py')!r}).read()\n"
        "except OSError:\n"
        "    stolen = None\n"
        f"found = [os.path.join(d, f) for d, _, files in os.walk({str(root)!r}) for f in files if f == 'cifar2.py']\n"
        "try:\n"
        f"    open({str(root / 'results' / 'planted.txt')!r}, 'w').write('planted')\n"
        "except OSError:\n"
        "    pass\n"
        "if stolen or found:\n"
        "    raise RuntimeError(f'stole the reference: read={bool(stolen)} found={found}')\n"
    )
    net = v.NET_AVGPOOL.replace("        super().__init__()\n", "        super().__init__()\n" + "".join(f"        {line}\n" for line in attack.splitlines()))
    v.write_notebook(root / "submission" / "cifar2_cnn.ipynb", v.notebook_cells(net=net, loop=v.LOOP_NO_ZERO_GRAD))
    (root / "submission" / "notes.txt").write_text("uploaded alongside the notebook\n")
    env = failing_bwrap(root / "bin") if landlock.abi() else {**os.environ, "COLUMNS": "200"}
    site = sysconfig.get_paths()["purelib"]
    env |= {"AUTOGRADER_ROOT": str(root), "GRADER_SANDBOX": sandbox, "PYTHONPATH": os.pathsep.join([str(installed), site])}
    env["GRADER_PYTHON"] = readable.executable if readable else sys.executable
    try:
        done = subprocess.run([str(source / "run_autograder")], cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False)
        survivors = subprocess.run(["pgrep", "-f", f"sleep {SLEEP}"], capture_output=True, text=True).stdout
        listener.setblocking(False)
        try:
            listener.accept()[0].close()
            connected = True
        except BlockingIOError:
            connected = False
    finally:
        listener.close()
        subprocess.run(["pkill", "-9", "-f", f"sleep {SLEEP}"], check=False)
    return AutograderRun(
        json.loads((root / "results" / "results.json").read_text()), done, " ".join(done.stderr.split()),
        (root / "results" / "planted.txt").exists(), connected, survivors, stat.S_IMODE(source.stat().st_mode),
    )  # fmt: skip


@pytest.fixture(scope="module")
def autograded(bundle: Path, tmp_path_factory) -> Iterator[AutograderRun]:
    """The upload through run_autograder as Gradescope runs it. (A correct notebook's full marks:
    test_cli grades alice with --format gradescope; few autograder runs keep the tests fast.)"""
    readable, _ = readable_python() if landlock.abi() else (None, "")
    root = open_folder("autograder-") if readable else tmp_path_factory.mktemp("autograder")
    try:
        yield _autograde(bundle, root, readable)
    finally:
        if readable:
            shutil.rmtree(root, ignore_errors=True)


def test_the_upload_reaches_nothing_and_the_results_come_after_its_processes(autograded):
    run = autograded
    assert not run.planted and not run.connected and run.survivors == "", run.said
    assert run.source_mode == 0o700
    assert not landlock.abi() or "Landlock ABI" in run.said, run.said
    if readable_python()[0] is not None and landlock.abi():
        assert "each child runs as an unprivileged uid of its own" in run.said, run.said


def test_without_isolation_the_same_upload_steals_the_reference_plants_and_connects(bundle: Path, tmp_path: Path):
    """The control, with GRADER_SANDBOX=none: each attack the isolated run stops succeeds."""
    run = _autograde(bundle, tmp_path, None, sandbox="none")
    assert run.planted and run.connected, run.said
    instantiate = next(t for t in run.results["tests"] if t["name"] == "net.instantiate")
    assert instantiate["score"] == 0 and "stole the reference: read=True" in instantiate["output"], instantiate
    assert run.survivors == ""  # the subreaper holds even without isolation


def test_bundle_holds_what_gradescope_needs_and_the_reference(bundle: Path):
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
        requirements = archive.read("requirements.txt").decode()
    assert {"setup.sh", "run_autograder", "requirements.txt", "reference/cifar2.py"} <= names
    assert {"assignments/cifar2/assignment.toml", "assignments/cifar2/cifar2_cnn.ipynb"} <= names
    assert {"grader-src/pyproject.toml", "grader-src/grader/cli.py", "grader-src/grader/report/gradescope.py"} <= names
    assert not any("__pycache__" in name for name in names)
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    assert all("==" in line for line in requirements.splitlines() if line.split("=")[0] in ("torch", "nbformat", "rich"))


def test_bundle_scripts_are_valid_bash_and_setup_has_a_dry_run(bundle: Path, tmp_path: Path):
    source = _unpack(bundle, tmp_path)
    for script in ("setup.sh", "run_autograder"):
        subprocess.run(["bash", "-n", str(source / script)], check=True)
    dry = subprocess.run(["bash", str(source / "setup.sh")], env={**os.environ, "DRY_RUN": "1"}, capture_output=True, text=True, timeout=60, check=False)
    assert dry.returncode == 0, dry.stderr
    assert "+ apt-get install -y --no-install-recommends bubblewrap" in dry.stdout
    assert "requirements.txt ./grader-src" in dry.stdout
    assert "+ /opt/grader/bin/python -m pip install" in dry.stdout and "+ chmod 700 ." in dry.stdout
    assert not (source / ".venv").exists()


def test_an_autograder_that_cannot_grade_still_writes_valid_results(bundle: Path, tmp_path: Path):
    source = _unpack(bundle, tmp_path)
    (tmp_path / "submission").mkdir()
    env = {**os.environ, "AUTOGRADER_ROOT": str(tmp_path), "GRADER_PYTHON": "/bin/false"}
    done = subprocess.run([str(source / "run_autograder")], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert results["score"] == 0 and results["tests"] == []
    assert "Please tell your instructor; the autograder output says why." in results["output"]


def test_bundle_needs_the_reference(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "grader", "gradescope", "cifar2", "-o", str(tmp_path / "a.zip"), "--reference", str(tmp_path / "none.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "reference solution not found" in done.stderr
    assert not (tmp_path / "a.zip").exists()


def _check_spec(results: dict) -> None:
    """Gradescope's results.json: field types, and a score that is the sum of the tests'."""
    assert isinstance(results["score"], (int, float))
    assert isinstance(results["execution_time"], int) and results["execution_time"] >= 0
    assert isinstance(results["output"], str) and results["output"]
    # The bundle hides a check, so the total waits for publication; visible tests show at once.
    assert results["visibility"] == "after_published" and "Score:" not in results["output"]
    tests = results["tests"]
    assert [t["name"] for t in tests] == list(FULL)
    assert [t["number"] for t in tests] == [str(n) for n in range(1, len(FULL) + 1)]
    for test in tests:
        assert isinstance(test["score"], (int, float)) and isinstance(test["max_score"], (int, float))
        assert test["max_score"] == FULL[test["name"]]
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] == ("passed" if test["score"] == test["max_score"] else "failed")
        assert isinstance(test["output"], str) and test["output"]
        assert test["output_format"] in ("md", "text")
        assert test["visibility"] == ("after_published" if test["name"] == HIDDEN else "visible")
    assert results["score"] == pytest.approx(sum(t["score"] for t in tests))


def test_wrong_notebook_gets_the_reasons_on_gradescope(autograded):
    results, done = autograded.results, autograded.done
    assert done.returncode == 0, done.stderr
    _check_spec(results)
    tests = {t["name"]: t for t in results["tests"]}
    assert tests[HIDDEN]["status"] == "failed" and tests[HIDDEN]["visibility"] == "after_published"
    assert "your forward calls avg_pool2d 2 times where the reference calls max_pool2d" in tests[HIDDEN]["output"]
    assert tests["loop.trains"]["score"] == 16
    assert "gradients were never cleared: call optimizer.zero_grad() each step" in tests["loop.trains"]["output"]
    assert results["score"] == 100 - 20 - 4
    assert "1 more check will be shown when grades are published" in results["output"]


# ---------------------------------------------------------------- the document, without grading

SECRET_NOTE = "loop.trains: your loop calls the optimizer before loss.backward(), so it steps on stale gradients"


def _hand_built(*, loop_public: bool) -> SubmissionResult:
    """85 of 100 points; loop.trains (hidden unless `loop_public`) lost 15 and carries a note."""
    checks = [CheckResult(name, points, points) for name, points in FULL.items() if name != "loop.trains"]
    checks.append(CheckResult("loop.trains", 5, 20, public=loop_public, reasons=["the loss did not go down"]))
    notes = [
        Note("cell 4 skipped: it downloads data"),
        Note("x.view(-1) flattens the batch too", check="net.forward"),
        Note(SECRET_NOTE.removeprefix("loop.trains: "), check="loop.trains"),
        Note("the run printed 2 MB", check="loop"),
    ]
    return SubmissionResult("s", "s.ipynb", "graded", checks=checks, notes=notes)


def test_hidden_check_hides_the_total_and_its_notes_until_published(cifar2):
    results = gradescope_results(_hand_built(loop_public=False), cifar2)
    assert results["visibility"] == "after_published" and results["score"] == 85  # shown once published
    summary = results["output"]  # may be read before publication
    assert "Score:" not in summary and "85" not in summary and "100" not in summary
    assert "total score will be shown when grades are published" in summary
    assert "1 more check will be shown when grades are published" in summary
    assert "cell 4 skipped" in summary and "net.forward: x.view(-1)" in summary  # notes of public checks stay
    assert "loop" not in summary  # neither the hidden check's note nor its child run's
    tests = {t["name"]: t for t in results["tests"]}
    assert {t["visibility"] for name, t in tests.items() if name != "loop.trains"} == {"visible"}
    hidden = tests["loop.trains"]
    assert hidden["visibility"] == "after_published"
    assert "the loss did not go down" in hidden["output"] and SECRET_NOTE in hidden["output"]
    assert "loop: the run printed 2 MB" in hidden["output"]  # every loop check is hidden: its group's note too
    assert all("loop" not in t["output"] for name, t in tests.items() if name != "loop.trains")


def test_all_public_checks_show_the_total_at_once(cifar2):
    results = gradescope_results(_hand_built(loop_public=True), cifar2)
    assert results["visibility"] == "visible" and {t["visibility"] for t in results["tests"]} == {"visible"}
    assert "Score: 85 / 100" in results["output"]
    assert "will be shown when grades are published" not in results["output"]
    assert SECRET_NOTE in results["output"] and "loop: the run printed 2 MB" in results["output"]


def test_a_hidden_passed_check_keeps_its_note_for_publication(cifar2):
    result = _hand_built(loop_public=True)
    next(c for c in result.checks if c.name == "net.forward").public = False  # full marks, one note
    results = gradescope_results(result, cifar2)
    forward = next(t for t in results["tests"] if t["name"] == "net.forward")
    assert forward["output"].startswith("passed") and "net.forward: x.view(-1)" in forward["output"]
    assert "x.view(-1)" not in results["output"] and "Score:" not in results["output"]
    assert SECRET_NOTE in results["output"]  # loop.trains is public here


def test_parse_formats_takes_repeats_and_comma_lists():
    assert parse_formats(None) == DEFAULT_FORMATS and "csv" in DEFAULT_FORMATS
    assert parse_formats(["gradescope,json", "csv", "json"]) == ("gradescope", "json", "csv")
    with pytest.raises(GraderError, match="unknown report format 'xml'"):
        parse_formats(["csv,xml"])


def test_resume_command_repeats_the_formats():
    words = resume_command(Path("subs"), Path("report.csv"), formats=("csv", "gradescope"))
    assert words.endswith("--format csv,gradescope")
    assert "--format" not in resume_command(Path("subs"), Path("report.csv"))
