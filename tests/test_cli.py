"""The commands as users type them, in real child processes: `grader run` on a folder (read back
with pandas), `grader selfcheck` exit codes and output, `grader fixtures`, help texts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import variants as v
from conftest import FULL, ROOT, assert_close_documents

from grader.cli import main as cli_main
from grader.isolate import client as grader_client
from grader.isolate import landlock
from grader.isolate.bubblewrap import SandboxStatus
from grader.report.formats import DEFAULT_FORMATS

EXAMPLES = ROOT / "examples" / "cifar2" / "submissions"
COLUMNS = ["student", "lms_id", "late", "status", "error", "total", "max_total", "adjusted", *FULL]


def grader(*args: str, cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "grader", *args], capture_output=True, text=True, cwd=cwd or ROOT, env=env, check=check, timeout=600
    )


@pytest.fixture(scope="module")
def example_report(tmp_path_factory) -> tuple[pd.DataFrame, Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("report")
    formats = ",".join((*DEFAULT_FORMATS, "json", "gradescope"))  # the other formats of the same results
    # two workers, as a run on a 2-core machine starts by default (test_workers compares one)
    done = grader("run", str(EXAMPLES), "-o", str(out / "report.csv"), "--format", formats, "--workers", "2")
    assert done.returncode == 0, done.stderr
    return pd.read_csv(out / "report.csv", keep_default_na=False), out, done


def test_run_writes_one_row_per_submission_with_the_exact_columns(example_report):
    frame, _, _ = example_report
    assert list(frame.columns) == COLUMNS
    # README.txt and bob's notes.txt give no row; bob's folder gives one.
    assert list(frame.student) == ["alice", "bob", "carol", "dave", "erin", "frank"]


def test_run_scores_the_bundled_examples(example_report):
    frame, _, _ = example_report
    rows = frame.set_index("student")
    assert rows.loc["alice", "total"] == 100 and rows.loc["carol", "total"] == 100
    assert rows.loc["bob", "net.forward"] == 0 and rows.loc["bob", "total"] == 80
    assert rows.loc["dave"][list(FULL)].tolist() == [5, 7.5, 0, 5, 0, 10, 16]
    assert rows.loc["erin"][list(FULL)].tolist() == [5, 15, 0, 15, 20, 10, 12]
    assert "ValueError: batch went missing" in rows.loc["erin", "error"]
    assert rows.loc["frank", "status"] == "invalid" and "invalid JSON" in rows.loc["frank", "error"]
    assert rows.loc["frank", "total"] == 0
    assert (frame.max_total == 100).all()
    assert (rows.loc[["alice", "bob", "carol", "dave"], "error"] == "").all()


def test_run_writes_feedback_for_every_student(example_report):
    _, out, _ = example_report
    feedback = out / "feedback"
    students = ["alice", "bob", "carol", "dave", "erin", "frank"]
    pages = sorted(f"{s}.{kind}" for s in students for kind in ("md", "html"))
    notebooks = [f"{s}.notebook.html" for s in students if s != "frank"]  # frank's file is no notebook
    assert sorted(p.name for p in feedback.iterdir()) == sorted(pages + notebooks)
    assert (out / "report.html").is_file()  # the class report (tests/test_html_report.py)
    dave = (feedback / "dave.md").read_text()
    assert "**Score: 43.5 / 100**" in dave
    assert "layer 1 (conv1, Conv2d): expected out_channels=16, got 32" in dave
    assert "gradients were never cleared: call optimizer.zero_grad() each step" in dave
    assert "class Net(nn.Module)" in dave  # the extracted code, for the student to see
    assert "could not be graded" in (feedback / "frank.md").read_text()


def test_run_formats_write_json_and_gradescope_results_from_the_same_results(example_report):
    frame, out, _ = example_report
    document = json.loads((out / "report.json").read_text())
    assert document["assignment"] == "cifar2"
    assert [(s["student"], s["total"]) for s in document["submissions"]] == list(zip(frame.student, frame.total))
    students = ["alice", "bob", "carol", "dave", "erin", "frank"]
    assert sorted(p.name for p in (out / "gradescope").iterdir()) == [f"{s}.json" for s in students]
    for student, total in zip(frame.student, frame.total):
        results = json.loads((out / "gradescope" / f"{student}.json").read_text())
        assert results["score"] == total == pytest.approx(sum(t["score"] for t in results["tests"]))
        assert [(t["name"], t["max_score"]) for t in results["tests"]] == list(FULL.items())
        assert {t["visibility"] for t in results["tests"]} == {"visible"}  # cifar2 hides no check
    alice = json.loads((out / "gradescope" / "alice.json").read_text())
    assert alice["score"] == 100 and {(t["status"], t["output"]) for t in alice["tests"]} == {("passed", "passed")}
    frank = json.loads((out / "gradescope" / "frank.json").read_text())
    assert frank["score"] == 0 and "could not be graded" in frank["output"] and "invalid JSON" in frank["output"]
    assert {t["status"] for t in frank["tests"]} == {"failed"}


def test_run_prints_a_class_summary(example_report):
    _, _, done = example_report
    assert "6 submissions: mean 66.75, median 78.50 of 100" in done.stderr
    assert "net.forward" in done.stderr and "3/6 (50%)" in done.stderr


def test_run_gives_the_expected_csv_byte_for_byte(example_report):
    # examples/cifar2/expected_report.csv is a committed earlier run: grading is deterministic.
    _, out, _ = example_report
    assert (out / "report.csv").read_bytes() == (EXAMPLES.parent / "expected_report.csv").read_bytes()


def test_run_on_a_missing_folder_says_so(tmp_path):
    done = grader("run", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert "nowhere: submissions folder not found" in done.stderr


def test_run_with_an_unknown_assignment_lists_the_known_ones(tmp_path):
    done = grader("run", str(EXAMPLES), "--assignment", "nope")
    assert done.returncode == 2
    assert "no assignment 'nope'" in done.stderr and "cifar2" in done.stderr


def test_run_with_a_broken_reference_stops_with_a_clear_message(tmp_path):
    broken = tmp_path / "ref.py"
    broken.write_text((ROOT / "reference" / "cifar2.py").read_text().replace("torch.tanh(self.fc1(out))", "self.fc1(out).detach()"))
    done = grader("run", str(EXAMPLES), "-o", str(tmp_path / "r.csv"), "--reference", str(broken))
    assert done.returncode == 2
    assert "fails its own check net.trains" in done.stderr
    assert not (tmp_path / "r.csv").exists()


# ---------------------------------------------------------------- selfcheck


def test_selfcheck_full_marks_exits_0(tmp_path):
    v.write_notebook(tmp_path / "cifar2_cnn.ipynb", v.notebook_cells())
    done = grader("selfcheck", "--assignment", "cifar2", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Score on the 7 checks above: 100 / 100" in done.stdout


def test_selfcheck_explains_lost_points_and_exits_1(tmp_path):
    notebook = v.write_notebook(tmp_path / "mine.ipynb", v.notebook_cells(v.NET_RELU, v.LOOP_NO_ZERO_GRAD))
    done = grader("selfcheck", str(notebook), "--assignment", "cifar2")
    assert done.returncode == 1
    assert "your forward calls relu 3 times where the reference calls tanh" in done.stdout
    assert "gradients were never cleared" in done.stdout
    assert "Score on the 7 checks above: 76 / 100" in done.stdout


def test_selfcheck_on_an_unusable_notebook_exits_2(tmp_path):
    notebook = tmp_path / "cifar2_cnn.ipynb"
    notebook.write_text("not json at all")
    done = grader("selfcheck", str(notebook))
    assert done.returncode == 2
    assert "invalid JSON" in done.stdout + done.stderr


def test_selfcheck_without_a_notebook_explains_what_it_looked_for(tmp_path):
    done = grader("selfcheck", "--assignment", "cifar2", cwd=tmp_path)
    assert done.returncode == 2
    assert "no cifar2_cnn.ipynb in" in done.stderr


def test_selfcheck_agrees_with_run_on_the_examples(example_report, tmp_path):
    frame, _, _ = example_report
    for student, notebook in [("dave", EXAMPLES / "dave.ipynb"), ("erin", EXAMPLES / "erin.ipynb"), ("bob", EXAMPLES / "bob" / "cifar2_cnn.ipynb")]:
        done = grader("selfcheck", str(notebook), "--assignment", "cifar2")
        total = frame.set_index("student").loc[student, "total"]
        assert f"Score on the 7 checks above: {total:g} / 100" in done.stdout, done.stdout


# ---------------------------------------------------------------- results in pandas


def test_results_load_gives_one_frame_from_the_csv_or_the_gradebook(example_report):
    from grader.results import load

    frame, out, _ = example_report
    from_csv, from_gradebook = load(out / "report.csv"), load(out / "gradebook.sqlite")
    assert list(from_csv.columns) == list(from_gradebook.columns) == COLUMNS
    pd.testing.assert_frame_equal(from_csv, from_gradebook, rtol=1e-6)
    assert from_csv.set_index("student")[["status", "total"]].to_dict("index") == frame.set_index("student")[["status", "total"]].to_dict("index")
    # what the README's example does with it
    assert from_gradebook.attrs["max_points"] == FULL and from_csv.attrs["max_points"] == {}
    passed = from_gradebook[list(FULL)].ge(pd.Series(FULL)).mean()
    assert passed["net.instantiate"] == pytest.approx(5 / 6) and passed["net.forward"] == pytest.approx(3 / 6)
    assert sorted(from_csv.loc[from_csv.total < 50, "student"]) == ["dave", "frank"]


def test_results_load_names_the_file_and_the_cause(tmp_path):
    from grader.errors import GraderError
    from grader.results import load

    with pytest.raises(GraderError, match=r"nope\.csv: cannot read the results"):
        load(tmp_path / "nope.csv")
    (tmp_path / "notes.csv").write_text("name,score\nalice,3\n")
    with pytest.raises(GraderError, match=r"notes\.csv: not a grader CSV report \(no column student, status, error, total, max_total\)"):
        load(tmp_path / "notes.csv")
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    with pytest.raises(GraderError, match=r"broken\.sqlite: not a grader gradebook"):
        load(broken)


# ---------------------------------------------------------------- fixtures and help


def test_committed_fixtures_are_current_and_hold_no_reference_source(tmp_path):
    copy = tmp_path / "cifar2"
    shutil.copytree(ROOT / "assignments" / "cifar2", copy)
    (copy / "fixtures.json").unlink()
    done = grader("fixtures", "--assignment", str(copy), "--reference", str(ROOT / "reference" / "cifar2.py"))
    assert done.returncode == 0, done.stderr
    fresh = json.loads((copy / "fixtures.json").read_text())
    committed_text = (ROOT / "assignments" / "cifar2" / "fixtures.json").read_text()
    assert_close_documents(fresh, json.loads(committed_text), "fixtures (run `grader fixtures --assignment cifar2` and commit the result)")
    # (the reference's steps are named by operation, "max_pool2d", so selfcheck can name a student's
    # differing step; its source never appears)
    for source_line in ["def forward", "class Net", "torch.tanh", "F.max_pool2d(", "zero_grad"]:
        assert source_line not in committed_text


def test_help_is_available_for_every_command():
    assert "grade a folder of submissions" in grader("--help", check=True).stdout
    for command in ("run", "selfcheck", "fixtures"):
        assert "--assignment" in grader(command, "--help", check=True).stdout
    assert "BEGIN SOLUTION" in grader("assign", "--help", check=True).stdout


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("grader")
    assert subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True).stdout.startswith("grader ")


# ---------------------------------------------------------------- sandbox layers


def _without_bwrap(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has no bwrap, as on a host without bubblewrap."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    return {**os.environ, "PATH": str(bin_dir), "COLUMNS": "200"}


def test_doctor_reports_every_layer_active_here():
    done = grader("doctor")
    assert done.returncode == 0, done.stdout
    for layer in ("bubblewrap sandbox", "private filesystem view", "no network", "own PID namespace", "memory limit"):
        assert layer in done.stdout
    assert "All isolation layers are active." in done.stdout
    if landlock.abi():
        assert "inside bubblewrap too" in done.stdout


def test_doctor_without_bubblewrap_says_why_and_exits_1(tmp_path):
    done = subprocess.run([sys.executable, "-m", "grader", "doctor"], capture_output=True, text=True, cwd=ROOT, env=_without_bwrap(tmp_path))
    assert done.returncode == 1
    assert "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)" in done.stdout
    assert "Not fully isolated" in done.stdout
    assert ("used instead of bubblewrap" if landlock.abi() else "this kernel offers none") in done.stdout
    rows = {cells[0]: cells[1:] for line in done.stdout.splitlines() if len(cells := [c.strip() for c in line.split("│")[1:-1]]) == 3}
    if landlock.abi():  # tried for real, in a process limited as a child is here
        assert rows["private filesystem view"] == ["active", "Landlock: files of the current and home folders are hidden"]
        assert rows["no network"] == ["active", "Landlock: a server on 127.0.0.1 was unreachable"]
        assert rows["own PID namespace"][0] == "missing"


def test_run_without_bubblewrap_falls_back_with_one_warning(tmp_path):
    folder = tmp_path / "subs"
    v.write_notebook(folder / "alice.ipynb", v.notebook_cells())
    v.write_notebook(folder / "bob.ipynb", v.notebook_cells(v.NET_RELU))
    done = subprocess.run(
        [sys.executable, "-m", "grader", "run", str(folder), "-o", str(tmp_path / "r.csv")],
        capture_output=True, text=True, cwd=ROOT, env=_without_bwrap(tmp_path), timeout=300,
    )
    assert done.returncode == 0, done.stderr
    if landlock.abi():  # Landlock limits the children instead, and the run says so once
        assert done.stderr.count("note: student code runs without the bubblewrap sandbox: bwrap is not installed") == 1
        assert "Landlock ABI" in done.stderr and "warning" not in done.stderr
    else:
        assert done.stderr.count("warning: student code runs without the bubblewrap sandbox (bwrap is not installed") == 1
    rows = pd.read_csv(tmp_path / "r.csv").set_index("student")
    assert rows.loc["alice", "total"] == 100 and rows.loc["bob", "total"] == 80


def test_selfcheck_without_bubblewrap_says_quietly_what_isolation_applies(tmp_path):
    notebook = v.write_notebook(tmp_path / "cifar2_cnn.ipynb", v.notebook_cells())
    done = subprocess.run(
        [sys.executable, "-m", "grader", "selfcheck", str(notebook), "--assignment", "cifar2"],
        capture_output=True, text=True, cwd=ROOT, env=_without_bwrap(tmp_path), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in done.stderr  # the instructors' warning is for grader run
    assert done.stderr.count("Your code runs in separate processes with time and memory limits (no bubblewrap sandbox here: bwrap is not installed") == 1


def test_run_refuses_to_grade_without_any_isolation_unless_asked(tmp_path, monkeypatch, capsys):
    """Neither bubblewrap nor Landlock (a kernel without it, as bubblewrap is refused): grader run
    stops before reading anything, says what is missing and how to fix it; --sandbox none is the
    way to grade without isolation on purpose."""
    monkeypatch.setattr(grader_client, "sandbox_status", lambda: SandboxStatus(False, "bwrap: setting up uid map: Permission denied"))
    monkeypatch.setattr(landlock, "abi", lambda: 0)
    folder = tmp_path / "subs"
    v.write_notebook(folder / "alice.ipynb", v.notebook_cells())
    code = cli_main(["run", str(folder), "-o", str(tmp_path / "out" / "r.csv")])
    said = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert "student code would run without isolation here: bwrap: setting up uid map: Permission denied" in said
    assert "kernel.apparmor_restrict_unprivileged_userns=0" in said and "--sandbox none" in said and "grader doctor" in said
    assert not (tmp_path / "out").exists()  # nothing read, nothing written
    assert grader_client.require_isolation("none").reason == "turned off (--sandbox none)"


def test_run_that_requires_bubblewrap_refuses_without_it(tmp_path):
    folder = tmp_path / "subs"
    v.write_notebook(folder / "alice.ipynb", v.notebook_cells())
    done = subprocess.run(
        [sys.executable, "-m", "grader", "run", str(folder), "-o", str(tmp_path / "r.csv"), "--sandbox", "bwrap"],
        capture_output=True, text=True, cwd=ROOT, env=_without_bwrap(tmp_path), timeout=300,
    )
    assert done.returncode == 2
    assert "the bubblewrap sandbox is required but unavailable: bwrap is not installed" in done.stderr
