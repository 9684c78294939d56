"""The gradebook behind `grader run`: results are stored as they are graded, a second run grades
only what is new or changed, a killed or interrupted run resumes without regrading, and the CSV
comes out byte-identical either way. Real `grader run` child processes, real notebooks."""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import variants as v
from conftest import ROOT

from grader import fingerprints
from grader import gradebook as gradebook_module
from grader.assignment import load_assignment
from grader.fingerprints import grading_fingerprint
from grader.gradebook import Gradebook, GradebookError, GradebookKey
from grader.results import CheckResult, Note, SubmissionResult

REFERENCE = ROOT / "reference" / "cifar2.py"
STUDENTS = ["alice", "bob", "carol", "dave", "erin", "frank"]


def grader(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "grader", "run", *args], capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=300
    )
    return done, time.monotonic() - started


def start_grader(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """`grader run` in the background, with Ctrl-C handled as in a terminal (a shell may have
    started this test with SIGINT ignored, which the child would inherit)."""
    with open(log, "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "grader", "run", *args],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=ROOT,
            env=_env(),
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200"}


def stored_rows(db: Path) -> dict[str, tuple[str, str, str]]:
    """student -> (source, content_hash, graded_at) of the newest row, read without writing."""
    if not db.exists():
        return {}
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT student, source, content_hash, graded_at FROM results ORDER BY graded_at").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return {}
    finally:
        connection.close()
    return {student: (source, content, graded_at) for student, source, content, graded_at in rows}


def wait_for_rows(db: Path, count: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(stored_rows(db)) < count:
        assert proc.poll() is None, f"grader run ended early with {proc.returncode}"
        assert time.monotonic() < deadline, f"fewer than {count} results stored after {timeout} s"
        time.sleep(0.05)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        kids = children.get(stack.pop(), [])
        found += kids
        stack += kids
    return found


def wait_until_gone(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if _running(pid)]
        if not alive:
            return
        assert time.monotonic() < deadline, f"processes outlived grader run: {alive}"
        time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, waiting to be reaped
    except OSError:
        return False


def counts(done: subprocess.CompletedProcess[str]) -> str:
    line = next((line for line in done.stderr.splitlines() if " reused from " in line), "")
    return line.split(" reused from ")[0].removeprefix("Interrupted: ") + " reused"


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("class") / "submissions"
    v.write_notebook(folder / "alice.ipynb", v.notebook_cells())
    v.write_notebook(folder / "bob" / "cifar2_cnn.ipynb", v.notebook_cells(v.NET_RELU))
    v.write_notebook(folder / "carol.ipynb", v.notebook_cells(loop=v.LOOP_NO_ZERO_GRAD))
    v.write_notebook(folder / "dave.ipynb", v.notebook_cells(v.NET_SEQUENTIAL))
    (folder / "erin.ipynb").write_text('{"cells": [')
    v.write_notebook(folder / "frank.ipynb", v.notebook_cells(v.NET_WRONG_CHANNELS))
    return folder


@pytest.fixture(scope="module")
def first_run(class_folder: Path, tmp_path_factory) -> dict:
    """One uninterrupted run: the baseline every other run must reproduce byte for byte."""
    out = tmp_path_factory.mktemp("first")
    done, seconds = grader(str(class_folder), "-o", str(out / "report.csv"))
    assert done.returncode == 0, done.stderr
    assert counts(done) == "6 graded, 0 reused"
    return {"out": out, "csv": (out / "report.csv").read_bytes(), "rows": stored_rows(out / "gradebook.sqlite"), "seconds": seconds}


# ---------------------------------------------------------------- reuse


def test_second_run_on_an_unchanged_folder_regrades_nothing(class_folder, first_run):
    out = first_run["out"]
    done, seconds = grader(str(class_folder), "-o", str(out / "again.csv"))
    assert done.returncode == 0, done.stderr
    assert counts(done) == "0 graded, 6 reused"
    assert "Checking the reference" not in done.stderr  # no worker, no reference check
    assert seconds < first_run["seconds"] / 3
    assert stored_rows(out / "gradebook.sqlite") == first_run["rows"]
    assert (out / "again.csv").read_bytes() == first_run["csv"]
    assert sorted(first_run["rows"]) == STUDENTS and first_run["rows"]["bob"][0] == "bob/cifar2_cnn.ipynb"


def test_a_changed_and_a_new_notebook_are_the_only_ones_graded(class_folder, first_run, tmp_path):
    folder = tmp_path / "submissions"
    shutil.copytree(class_folder, folder)
    (tmp_path / "out").mkdir()
    shutil.copy(first_run["out"] / "gradebook.sqlite", tmp_path / "out" / "gradebook.sqlite")
    v.write_notebook(folder / "carol.ipynb", v.notebook_cells())  # carol fixed her zero_grad
    v.write_notebook(folder / "gina.ipynb", v.notebook_cells(v.NET_AVGPOOL))  # a late submission

    done, _ = grader(str(folder), "-o", str(tmp_path / "out" / "report.csv"), "--compare")
    assert done.returncode == 0, done.stderr
    assert counts(done) == "2 graded, 5 reused"
    # --compare: only the students whose total moved, against what the gradebook held before
    assert "Totals changed against the gradebook's previous results (2 of 7):" in done.stderr
    changed = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:6]] for line in done.stderr.splitlines() if line.count("│") == 6}
    assert changed == {"carol": ["96", "100", "+4", "the submission changed"], "gina": ["-", "80", "", "not graded before"]}
    rows = stored_rows(tmp_path / "out" / "gradebook.sqlite")
    unchanged = [s for s in STUDENTS if s != "carol"]
    assert {s: rows[s] for s in unchanged} == {s: first_run["rows"][s] for s in unchanged}
    assert rows["carol"][1] != first_run["rows"]["carol"][1]
    frame = pd.read_csv(tmp_path / "out" / "report.csv", keep_default_na=False).set_index("student")
    before = pd.read_csv(first_run["out"] / "report.csv", keep_default_na=False).set_index("student")
    assert list(frame.index) == sorted([*STUDENTS, "gina"])
    assert frame.loc["carol", "total"] == 100 and before.loc["carol", "total"] == 96
    assert frame.loc["gina", "net.forward"] == 0
    assert frame.loc[unchanged].equals(before.loc[unchanged])


def test_db_chooses_the_gradebook_and_force_regrades_everything(class_folder, first_run, tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    for name in ("alice.ipynb", "erin.ipynb"):
        shutil.copy(class_folder / name, folder / name)
    book = tmp_path / "books" / "cs101.sqlite"
    book.parent.mkdir()
    shutil.copy(first_run["out"] / "gradebook.sqlite", book)
    out = tmp_path / "out"

    reused, _ = grader(str(folder), "-o", str(out / "report.csv"), "--db", str(book))
    assert reused.returncode == 0, reused.stderr
    assert counts(reused) == "0 graded, 2 reused"
    forced, _ = grader(str(folder), "-o", str(out / "report.csv"), "--db", str(book), "--force", "--compare")
    assert forced.returncode == 0, forced.stderr
    assert counts(forced) == "2 graded, 0 reused"
    assert "No total changed against the gradebook's previous results (2 compared)." in forced.stderr

    rows = stored_rows(book)
    assert all(rows[s][2] > first_run["rows"][s][2] for s in ("alice", "erin"))  # graded again
    assert rows["alice"][:2] == first_run["rows"]["alice"][:2]  # under the same key: replaced, not added
    assert not (out / "gradebook.sqlite").exists()
    frame = pd.read_csv(out / "report.csv", keep_default_na=False)
    assert frame.set_index("student").total.to_dict() == {"alice": 100, "erin": 0}


def test_compare_says_why_each_total_moved():
    from grader.report.changes import TotalChange, total_changes

    def stored(student: str, total: float, content: str = "h1", fingerprint: str = "f1") -> tuple[GradebookKey, SubmissionResult]:
        check = CheckResult("net.forward", total, 100)
        return GradebookKey(student, f"{student}.ipynb", content, fingerprint), SubmissionResult(student, f"{student}.ipynb", "graded", [check])

    earlier = {"same": stored("same", 80), "resubmitted": stored("resubmitted", 50), "rubric": stored("rubric", 80),
               "both": stored("both", 80), "forced": stored("forced", 80), "new": None}  # fmt: skip
    now = [stored("same", 80, "h1", "f2"), stored("resubmitted", 90, "h2"), stored("rubric", 60, fingerprint="f2"),
           stored("both", 100, "h2", "f2"), stored("forced", 79.5), stored("new", 10)]  # fmt: skip
    grading = "the grading changed (points, settings, reference or grader version)"
    assert total_changes(earlier, now) == [
        TotalChange("resubmitted", 50, 90, "the submission changed"),
        TotalChange("rubric", 80, 60, grading),
        TotalChange("both", 80, 100, f"the submission changed and {grading}"),
        TotalChange("forced", 80, 79.5, "graded again"),
        TotalChange("new", None, 10, "not graded before"),
    ]


# ---------------------------------------------------------------- interrupted runs


def test_a_killed_run_resumes_without_regrading_what_was_stored(class_folder, first_run, tmp_path):
    out = tmp_path / "out"
    db = out / "gradebook.sqlite"
    proc = start_grader(str(class_folder), "-o", str(out / "report.csv"), log=tmp_path / "killed.log")
    try:
        wait_for_rows(db, 2, proc)
        tree = descendants(proc.pid)
        assert tree, "the worker should be running"
    finally:
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait()
    wait_until_gone(tree)  # the worker and its children die with the grader
    stored = stored_rows(db)
    assert 2 <= len(stored) < len(STUDENTS)
    assert not (out / "report.csv").exists()

    done, _ = grader(str(class_folder), "-o", str(out / "report.csv"))
    assert done.returncode == 0, done.stderr
    assert counts(done) == f"{len(STUDENTS) - len(stored)} graded, {len(stored)} reused"
    rows = stored_rows(db)
    assert {s: rows[s] for s in stored} == stored  # not graded again
    assert (out / "report.csv").read_bytes() == first_run["csv"]
    for student in STUDENTS:
        assert (out / "feedback" / f"{student}.md").read_bytes() == (first_run["out"] / "feedback" / f"{student}.md").read_bytes()


def test_ctrl_c_writes_the_report_so_far_and_says_how_to_resume(class_folder, tmp_path):
    out = tmp_path / "out"
    db = tmp_path / "books" / "run.sqlite"
    log = tmp_path / "interrupted.log"
    proc = start_grader(str(class_folder), "-o", str(out / "report.csv"), "--db", str(db), log=log)
    try:
        wait_for_rows(db, 1, proc)
        tree = descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        proc.kill()
        proc.wait()
    wait_until_gone(tree)
    stderr = log.read_text()
    command = shlex.join(["grader", "run", str(class_folder), "-o", str(out / "report.csv"), "--db", str(db)])
    assert f"To resume, run:\n  {command}\n" in stderr
    stored = stored_rows(db)
    assert f"Interrupted: {len(stored)} graded, 0 reused from {db}; {len(STUDENTS) - len(stored)} not graded yet." in stderr
    frame = pd.read_csv(out / "report.csv", keep_default_na=False)
    assert 1 <= len(frame) < len(STUDENTS)
    # Workers grade in parallel, slowest first: which ones were done is not alphabetical.
    assert list(frame.student) == sorted(stored) and set(stored) < set(STUDENTS)
    assert not (out / "gradebook.sqlite").exists()


# ---------------------------------------------------------------- the gradebook file


def _tricky_result() -> SubmissionResult:
    return SubmissionResult(
        student="zoë",
        path="/class/zoë.ipynb",
        status="graded",
        checks=[
            CheckResult("net.layers", 7.5, 15.0, True, ["layer 1 (conv1, Conv2d): expected out_channels=16, got 32"], None, {"matched": 1, "layers": 4}),
            CheckResult("net.trains", 0.0, 10.0, False, ["the loss did not go down"], "timed out", {"initial_loss": 0.1 + 0.2, "final_loss": math.inf}),
        ],
        errors=["timed out", "timed out"],
        notes=[Note("cell 4, line 2: uses `train_loader`, which only top-level code creates")],
        extracted_source="class Net(nn.Module):\n    pass\n",
        output={"net stderr": "Traceback ...\n", "loop stdout": "épocha 1\n"},  # not in sorted order
        seconds=2.0000000000000004,
    )


def test_a_stored_result_survives_its_process_and_round_trips_exactly(tmp_path):
    original = _tricky_result()
    key = GradebookKey("zoë", "zoë.ipynb", "ab" * 32, "fingerprint")
    db = tmp_path / "gradebook.sqlite"
    store_and_die = (
        "import json, os, sys, time\n"
        "from pathlib import Path\n"
        "from grader.gradebook import COMMIT_WITHIN_S, Gradebook, GradebookKey\n"
        "from grader.results import SubmissionResult\n"
        "key, result = json.load(sys.stdin)\n"
        "Gradebook(Path(sys.argv[1])).store(GradebookKey(*key), SubmissionResult.from_json(result))\n"
        "time.sleep(COMMIT_WITHIN_S + 1)  # the batch's own timer commits it\n"
        "os.kill(os.getpid(), 9)  # no close, no exit handlers\n"
    )
    message = json.dumps([[key.student, key.source, key.content_hash, key.fingerprint], original.to_json()])
    child = subprocess.run([sys.executable, "-c", store_and_die, str(db)], input=message, text=True, cwd=ROOT, capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr

    with Gradebook(db) as book:
        restored = book.lookup(key)
        assert book.lookup(GradebookKey("zoë", "zoë.ipynb", "ab" * 32, "other settings")) is None
    assert restored == original
    assert list(restored.output) == ["net stderr", "loop stdout"]  # feedback prints them in this order
    assert restored.to_json() == original.to_json() and restored.error == "timed out"
    connection = sqlite3.connect(db)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == gradebook_module.SCHEMA_VERSION
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


def test_notes_stored_as_strings_load_with_their_check_and_show_as_before():
    """Results stored before notes were typed hold "net.forward: text": the prefix becomes the
    note's check only where it names one of the result's checks or groups, so a hidden check's
    note is still withheld and every note reads exactly as it did."""
    stored = SubmissionResult("s", "s.ipynb", "graded", checks=[CheckResult("net.forward", 5, 5), CheckResult("loop.trains", 0, 20, public=False)]).to_json()
    old = ["cell 3, line 2: NameError: name 'q' is not defined", "net.forward: extra dropout", "loop.trains: stale gradients", "loop: printed: 2 MB"]
    restored = SubmissionResult.from_json(json.loads(json.dumps({**stored, "notes": old})))
    assert restored.notes == [
        Note("cell 3, line 2: NameError: name 'q' is not defined"),
        Note("extra dropout", check="net.forward"),
        Note("stale gradients", check="loop.trains"),
        Note("printed: 2 MB", check="loop"),
    ]
    assert [str(note) for note in restored.notes] == old
    assert [str(note) for note in restored.public_view().notes] == old[:2]
    assert SubmissionResult.from_json(json.loads(json.dumps(restored.to_json()))) == restored  # stored typed from now on


def test_annotated_notebooks_are_stored_apart_and_a_schema_1_gradebook_still_gives_its_own(tmp_path):
    """A report reads every result without its notebook, then each notebook alone: new rows keep
    the notebook in a column of its own; rows of a gradebook made before that (schema 1) keep it
    inside the result, and still give it once the file is migrated."""
    db = tmp_path / "gradebook.sqlite"
    old = _tricky_result()
    old.annotated_notebook = "<p>the page of a schema-1 row</p>"
    old_key = GradebookKey("old", "old.ipynb", "cd" * 32, "fingerprint")
    connection = sqlite3.connect(db)
    for statement in gradebook_module.MIGRATIONS[1]:
        connection.execute(statement)
    connection.execute("PRAGMA user_version = 1")
    connection.execute(
        "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*vars(old_key).values(), old.status, old.total, "2026-01-01T00:00:00.000+00:00", "0", json.dumps(old.to_json())),
    )
    connection.commit()
    connection.close()

    new = _tricky_result()
    new.student, new.annotated_notebook = "new", "<p>the page of a new row</p>"
    plain = _tricky_result()
    plain.student = "plain"
    keys = {r.student: GradebookKey(r.student, f"{r.student}.ipynb", "ab" * 32, "fingerprint") for r in (new, plain)}
    with Gradebook(db) as book:
        for result in (new, plain):
            book.store(keys[result.student], result)
        assert book.lookup(old_key) == old and book.lookup(keys["new"]) == new and book.lookup(keys["plain"]) == plain
        light = {key.student: book.lookup(key, notebook=False) for key in (old_key, *keys.values())}
        assert {s: (r.annotated_notebook, r.has_annotated_notebook) for s, r in light.items()} == {
            "old": ("", True), "new": ("", True), "plain": ("", False),
        }  # fmt: skip
        assert [book.annotated_notebook(key) for key in (old_key, keys["new"], keys["plain"])] == [
            old.annotated_notebook, new.annotated_notebook, "",
        ]  # fmt: skip
        assert book.stored_before("new", "9999") == (keys["new"], new)
    connection = sqlite3.connect(db)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == gradebook_module.SCHEMA_VERSION
    stored = dict(connection.execute("SELECT student, annotated_notebook FROM results").fetchall())
    inside = {student: "annotated_notebook" in json.loads(text) for student, text in connection.execute("SELECT student, result FROM results")}
    connection.close()
    assert stored == {"old": None, "new": new.annotated_notebook, "plain": None}
    assert inside == {"old": True, "new": False, "plain": False}


def test_results_stored_in_a_burst_are_committed_in_batches_and_a_kill_loses_only_the_last_batch(tmp_path):
    """A cluster can finish a hundred submissions a second: the gradebook commits them together,
    and a process killed in the middle leaves whole results, those committed, in the order stored."""
    db = tmp_path / "gradebook.sqlite"
    store_until_killed = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from grader.gradebook import Gradebook, GradebookKey\n"
        "from grader.results import SubmissionResult\n"
        "book = Gradebook(Path(sys.argv[1]), commit_within_s=0.2)\n"
        "started = time.monotonic()\n"
        "for i in range(100_000):\n"
        "    book.store(GradebookKey(f's{i:06d}', f's{i:06d}.ipynb', 'ab' * 32, 'f'), SubmissionResult(f's{i:06d}', 'p', 'graded', seconds=i))\n"
        "    if time.monotonic() - started > 1.5:\n"
        "        print(i + 1, flush=True)\n"
        "        os.kill(os.getpid(), 9)  # no close, no exit handlers\n"
    )
    child = subprocess.run([sys.executable, "-c", store_until_killed, str(db)], text=True, cwd=ROOT, capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    stored = int(child.stdout)
    with sqlite3.connect(db) as connection:
        students = [row[0] for row in connection.execute("SELECT student FROM results ORDER BY rowid")]
    # Batches were committed while storing went on (the timer fires every 0.2 s); what the kill
    # lost is the batch in progress (nothing, if it came right after a commit).
    assert 0 < len(students) <= stored
    assert students == [f"s{i:06d}" for i in range(len(students))]
    with Gradebook(db) as book:
        last = book.lookup(GradebookKey(students[-1], f"{students[-1]}.ipynb", "ab" * 32, "f"))
        assert last is not None and last.seconds == len(students) - 1


def test_storing_is_visible_at_once_and_durable_after_commit_or_close(tmp_path):
    db = tmp_path / "gradebook.sqlite"
    key = GradebookKey("ann", "ann.ipynb", "cd" * 32, "f")
    with Gradebook(db, commit_within_s=3600) as book:
        book.store(key, SubmissionResult("ann", "ann.ipynb", "graded"))
        assert book.lookup(key) is not None  # the run reads its own results before they are committed
        with sqlite3.connect(db) as other:
            assert other.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0
        book.commit()
        with sqlite3.connect(db) as other:
            assert other.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
        book.store(GradebookKey("bo", "bo.ipynb", "cd" * 32, "f"), SubmissionResult("bo", "bo.ipynb", "graded"))
    with sqlite3.connect(db) as other:  # close() commits the rest
        assert other.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 2


def test_the_fingerprint_changes_with_points_visibility_reference_and_version(tmp_path, monkeypatch):
    folder = tmp_path / "cifar2"
    shutil.copytree(ROOT / "assignments" / "cifar2", folder)
    config = folder / "assignment.toml"
    text = config.read_text()
    reference = tmp_path / "reference.py"
    reference.write_bytes(REFERENCE.read_bytes())

    def fingerprint_with(new_text: str) -> str:
        config.write_text(new_text)
        return grading_fingerprint(load_assignment(folder), reference)

    base = fingerprint_with(text)
    assert fingerprint_with(text.replace('title = "CIFAR-2', 'title = "Renamed')) == base  # the title decides no score
    assert fingerprint_with(text.replace('[checks."net.forward"]\npoints = 20', '[checks."net.forward"]\npoints = 25')) != base
    assert fingerprint_with(text.replace('[checks."net.forward"]\npoints = 20', '[checks."net.forward"]\npoints = 20\npublic = false')) != base
    assert fingerprint_with(text.replace("epochs = 4", "epochs = 5")) != base
    assert fingerprint_with(text.replace("timeout_s = 60", "timeout_s = 90")) != base
    config.write_text(text)
    reference.write_text(REFERENCE.read_text() + "\n# changed\n")
    assert grading_fingerprint(load_assignment(folder), reference) != base
    reference.write_bytes(REFERENCE.read_bytes())
    monkeypatch.setattr(fingerprints, "__version__", "99.0")
    assert grading_fingerprint(load_assignment(folder), reference) != base


def test_a_file_that_is_not_a_gradebook_stops_the_run_with_its_name(class_folder, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("these are my grading notes, not a database\n" * 20)
    done, _ = grader(str(class_folder), "-o", str(tmp_path / "report.csv"), "--db", str(notes))
    assert done.returncode == 2
    assert f"{notes}: not a usable SQLite gradebook (file is not a database)" in done.stderr.replace("\n", "")
    assert "Checking the reference" not in done.stderr
    assert notes.read_text() == "these are my grading notes, not a database\n" * 20
    assert not (tmp_path / "report.csv").exists()


def test_an_sqlite_file_of_another_program_or_a_newer_grader_is_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    connection = sqlite3.connect(other)
    connection.execute("CREATE TABLE invoices (id INTEGER)")
    connection.commit()
    connection.close()
    with pytest.raises(GradebookError, match=r"not a grader gradebook .*invoices"):
        Gradebook(other)

    newer = tmp_path / "newer.sqlite"
    Gradebook(newer).close()
    connection = sqlite3.connect(newer)
    connection.execute(f"PRAGMA user_version = {gradebook_module.SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(GradebookError, match=f"{newer}: made by a newer grader"):
        Gradebook(newer)


def test_a_change_to_the_graders_own_source_changes_the_fingerprint(tmp_path, monkeypatch):
    # An upgraded or patched grader regrades what the old code decided; the same code reuses.
    package = tmp_path / "grader"
    shutil.copytree(ROOT / "grader", package, ignore=shutil.ignore_patterns("__pycache__"))
    installed = fingerprints.grader_source_hash()
    assert fingerprints.source_digest(package) == installed
    assignment, reference = load_assignment(ROOT / "assignments" / "cifar2"), REFERENCE
    base = grading_fingerprint(assignment, reference)
    assert grading_fingerprint(assignment, reference) == base

    scoring = package / "compare" / "loop_check.py"
    scoring.write_text(scoring.read_text() + "\n# a local fix\n")
    changed = fingerprints.source_digest(package)
    assert changed != installed
    monkeypatch.setattr(fingerprints, "grader_source_hash", lambda: changed)
    assert grading_fingerprint(assignment, reference) != base
