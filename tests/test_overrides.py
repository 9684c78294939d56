"""Instructor overrides, `grader run --overrides overrides.csv`: a grade changed by hand shows in
every report (CSV, feedback, class report, JSON, Gradescope, pandas), survives a rerun and
`--force`, the run says when the grader's own points under one change, and a wrong file stops the
run with its file, line and cause before anything is graded. One class is graded once for the
whole file (two real `grader run`s in all); the rest reads files or works on results."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
import variants as v
from conftest import FULL, ROOT
from rich.console import Console

from grader import gradebook as gradebook_module
from grader.assignment import Assignment, load_assignment
from grader.cli import main as cli_main
from grader.commands.export import export
from grader.errors import OverridesError
from grader.gradebook import Gradebook
from grader.overrides import Override, apply_overrides, overrides_to_remember, read_overrides
from grader.report.junit import junit_xml
from grader.results import TOTAL, Adjustment, CheckResult, SubmissionResult, load

OVERRIDES = """\
student,check,points,comment
bob,net.forward,12,"AvgPool was allowed in section 2, said the TA"
alice,total,90,late by two days
"""
FORWARD_SAID = "adjusted by your instructor from 0 to 12: AvgPool was allowed in section 2, said the TA"
TOTAL_SAID = "adjusted by your instructor from 100 to 90: late by two days"


def grader_run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "grader", "run", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    """alice full marks and late, bob's AvgPool (loses net.forward) accepted in part: graded once
    with the overrides into every format. Returns the folder holding submissions/, out/ and the file."""
    base = tmp_path_factory.mktemp("overrides")
    v.write_notebook(base / "submissions" / "alice.ipynb", v.notebook_cells())
    v.write_notebook(base / "submissions" / "bob.ipynb", v.notebook_cells(v.NET_AVGPOOL))
    (base / "overrides.csv").write_text(OVERRIDES)
    done = grader_run(
        str(base / "submissions"), "-o", str(base / "out" / "report.csv"), "--overrides", str(base / "overrides.csv"),
        "--format", "csv,html,json,gradescope",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"2 overrides applied from {base / 'overrides.csv'}" in done.stderr
    return base


def report(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "report.csv", keep_default_na=False).set_index("student")


# ---------------------------------------------------------------- applied in every output


def test_the_csv_has_the_overridden_points_the_instructors_total_and_an_adjusted_column(graded):
    frame = report(graded / "out")
    assert list(frame.columns) == ["lms_id", "late", "status", "error", "total", "max_total", "adjusted", *FULL]
    assert frame.loc["bob", "net.forward"] == 12 and frame.loc["bob", "total"] == 92 and frame.loc["bob", "adjusted"] == "net.forward"
    # A total override sets the total; the check columns keep the points the checks have.
    assert frame.loc["alice", "total"] == 90 and frame.loc["alice", "adjusted"] == "total"
    assert frame.loc["alice", list(FULL)].to_dict() == FULL


def test_the_feedback_says_who_adjusted_what_and_why_beside_the_check_or_the_score(graded):
    feedback = graded / "out" / "feedback"
    bob, alice = (feedback / "bob.md").read_text(), (feedback / "alice.md").read_text()
    assert f"| `net.forward` | 12 / 20 | {FORWARD_SAID}; see below |" in bob
    assert "- **net.forward** (−8):" in bob  # still short of full marks: the reasons stay
    assert f"**Score: 90 / 100** ({TOTAL_SAID})" in alice
    assert FORWARD_SAID in (feedback / "bob.html").read_text()
    assert f"<strong>Score: 90 / 100</strong> ({TOTAL_SAID})" in (feedback / "alice.html").read_text()
    page = (graded / "out" / "report.html").read_text()
    assert 'class="num partial adjusted" data-value="12.0"' in page and 'class="num adjusted" data-value="90.0"' in page
    assert "adjusted by the instructor from 0 to 12: AvgPool was allowed in section 2, said the TA" in page


def test_json_and_gradescope_results_carry_the_adjusted_points_and_say_which(graded):
    out = graded / "out"
    document = {s["student"]: s for s in json.loads((out / "report.json").read_text())["submissions"]}
    assert document["bob"]["total"] == 92 and document["alice"]["total"] == 90
    assert document["bob"]["adjustments"] == [
        {"check": "net.forward", "points": 12, "automatic": 0, "comment": "AvgPool was allowed in section 2, said the TA"}
    ]
    assert document["alice"]["adjustments"] == [{"check": "total", "points": 90, "automatic": 100, "comment": "late by two days"}]
    bob = json.loads((out / "gradescope" / "bob.json").read_text())
    forward = next(test for test in bob["tests"] if test["name"] == "net.forward")
    assert bob["score"] == 92 and forward["score"] == 12 and forward["output"].startswith(f"Points {FORWARD_SAID}\n\n- ")
    assert bob["extra_data"]["adjusted"] == ["net.forward"]
    alice = json.loads((out / "gradescope" / "alice.json").read_text())
    assert alice["score"] == 90 and f"Score: 90 / 100 ({TOTAL_SAID})" in alice["output"]


def test_pandas_gives_the_adjusted_frame_from_the_report_or_the_gradebook(graded):
    from_csv, from_gradebook = load(graded / "out" / "report.csv"), load(graded / "out" / "gradebook.sqlite")
    pd.testing.assert_frame_equal(from_csv, from_gradebook, rtol=1e-6)
    assert from_gradebook.set_index("student")[["total", "adjusted", "net.forward"]].to_dict("index") == {
        "alice": {"total": 90, "adjusted": "total", "net.forward": 20},
        "bob": {"total": 92, "adjusted": "net.forward", "net.forward": 12},
    }
    # The gradebook itself keeps the grader's own results.
    connection = sqlite3.connect(graded / "out" / "gradebook.sqlite")
    totals = dict(connection.execute("SELECT student, total FROM results"))
    connection.close()
    assert totals == {"alice": 100, "bob": 80}


def test_an_lms_export_from_the_report_or_the_gradebook_carries_the_overrides(graded, tmp_path):
    """`grader export canvas` takes the grades as load() gives them: with the overrides, from the
    CSV report as from the gradebook."""
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "Student,ID,SIS User ID,SIS Login ID,Section,CIFAR-2 (4242)\n    Points Possible,,,,,100\n"
        "Alice,1,,alice,A,\nBob,2,,bob,A,\n"
    )
    console = Console(file=io.StringIO(), width=200)
    for source in (graded / "out" / "report.csv", graded / "out" / "gradebook.sqlite"):
        assert export("canvas", source, roster, tmp_path / "import.csv", column=None, console=console) == 0
        rows = list(csv.reader((tmp_path / "import.csv").open()))
        assert [(row[0], row[-1]) for row in rows[2:]] == [("Alice", "90"), ("Bob", "92")], source


# ---------------------------------------------------------------- reruns


def test_a_rerun_and_force_keep_the_overrides_and_say_when_the_points_under_one_change(graded, tmp_path, capsys):
    shutil.copytree(graded / "submissions", tmp_path / "submissions")
    (tmp_path / "out").mkdir()
    shutil.copy(graded / "out" / "gradebook.sqlite", tmp_path / "out")
    common = (str(tmp_path / "submissions"), "-o", str(tmp_path / "out" / "report.csv"), "--format", "csv")
    overrides = ("--overrides", str(graded / "overrides.csv"))

    # Runs that grade nothing run in this process: they start no worker.
    assert cli_main(["run", *common, *overrides]) == 0
    resumed = capsys.readouterr().err
    assert "0 graded, 2 reused" in resumed and "automatic points changed" not in resumed
    assert report(tmp_path / "out")[["total", "adjusted"]].to_dict("index") == {
        "alice": {"total": 90, "adjusted": "total"}, "bob": {"total": 92, "adjusted": "net.forward"},
    }  # fmt: skip

    v.write_notebook(tmp_path / "submissions" / "bob.ipynb", v.notebook_cells())  # bob resubmits with MaxPool
    forced = grader_run(*common, *overrides, "--force")
    assert forced.returncode == 0 and "2 graded, 0 reused" in forced.stderr, forced.stderr
    assert (
        "note: bob's net.forward: the automatic points changed from 0 to 20 since the override was last applied; "
        f"the override (12, {graded / 'overrides.csv'} line 2) still applies." in forced.stderr
    )
    assert "alice's total" not in forced.stderr  # the grader still gives her 100
    frame = report(tmp_path / "out")
    assert frame.loc["bob", "net.forward"] == 12 and frame.loc["bob", "total"] == 92 and frame.loc["alice", "total"] == 90

    assert cli_main(["run", *common]) == 0  # the file forgotten
    assert (
        f"warning: the last run applied 2 overrides from {graded / 'overrides.csv'}; this report has none "
        "(give --overrides again to apply them)." in capsys.readouterr().err
    )
    assert report(tmp_path / "out")[["total", "adjusted"]].to_dict("index") == {
        "alice": {"total": 100, "adjusted": ""}, "bob": {"total": 100, "adjusted": ""},
    }  # fmt: skip
    assert load(tmp_path / "out" / "gradebook.sqlite").adjusted.tolist() == ["", ""]


# ---------------------------------------------------------------- refusals


def test_a_wrong_overrides_file_stops_the_run_with_every_line_before_grading(graded, tmp_path, capsys):
    wrong = tmp_path / "overrides.csv"
    wrong.write_text(
        "student,check,points,comment\n"
        "bobb,net.forward,12,typo in the name\n"
        "bob,net.foward,3,typo in the check\n"
        "bob,net.trains,11,more than it is worth\n"
        "bob,loop.trains,twelve,\n"
        "alice,total,95,\n"
        "alice,total,96,\n"
        "alice,net.layers,1,a comma, unquoted\n"
    )
    code = cli_main(["run", str(graded / "submissions"), "-o", str(tmp_path / "out" / "report.csv"), "--overrides", str(wrong)])
    assert code == 2
    said = capsys.readouterr().err
    for line in (
        f"{wrong}:2: no submission of student 'bobb' in this run (did you mean 'bob'?)",
        f"{wrong}:3: unknown check 'net.foward' (did you mean 'net.forward'?",
        f"{wrong}:4: points 11 are outside 0..10 (net.trains is worth 10)",
        f"{wrong}:5: points 'twelve' are not a number",
        f"{wrong}:7: a second override of alice's total (the first is on line 6)",
        f"{wrong}:8: 5 values where the first line names 4 columns: put a comment that holds a comma in double quotes",
        "Nothing was graded",
    ):
        assert line in said
    assert not (tmp_path / "out").exists()  # no gradebook, no report


@pytest.fixture(scope="module")
def cifar2_checks() -> Assignment:
    return load_assignment(ROOT / "assignments" / "cifar2")


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("student,check,points,comment\nzed,net.layers,3,\n", "2: no submission of student 'zed' in this run"),
        ("student,check,points,comment\nbob,net.magic,3,\n", "2: unknown check 'net.magic'"),
        ("student,check,points,comment\nbob,loop.trains,3,\n", "2: check 'loop.trains' is not graded by assignment cifar2"),  # network only
        ("student,check,points,comment\nbob,net.forward,-1,\n", "2: points -1 are outside 0..20 (net.forward is worth 20)"),
        ("student,check,points,comment\nbob,total,80.5,\n", "2: points 80.5 are outside 0..80 (the assignment is worth 80)"),
        ("student,check,points,comment\nbob,net.forward,\"12,5\",\n", "2: points '12,5' are not a number"),
        ("student,check,points,comment\nbob,net.forward,nan,\n", "2: points 'nan' are not a number"),
        ("student,check,points,comment\nbob,total,,\n", "2: no points"),
        ("student,check,points,comment\nbob,total,3,\n\n\"bob\",total,4,\"on two\nlines\"\n", "4: a second override of bob's total (the first is on line 2)"),
        ("student,check,points\nbob,total,3\n", "1: no column comment: the first line must name the columns student,check,points,comment"),
        ("", "1: the file is empty"),
    ],
)
def test_each_wrong_override_is_named_with_its_line(cifar2_checks, tmp_path, text, cause):
    network_only = dataclasses.replace(cifar2_checks, checks={k: s for k, s in cifar2_checks.checks.items() if k != "loop.trains"})
    path = tmp_path / "overrides.csv"
    path.write_text(text)
    with pytest.raises(OverridesError) as refused:
        read_overrides(path, network_only, ["alice", "bob"])
    assert f"{path}:{cause}" in str(refused.value)


def test_a_spreadsheets_file_reads_as_written(cifar2_checks, tmp_path):
    path = tmp_path / "overrides.csv"
    path.write_bytes("\ufeffStudent , Check,Points,Comment,graded by\r\nbob,net.forward, 7.5 ,\"multi\r\nline, quoted\",TA\r\n\r\nzoë,total,100,\r\n".encode())
    assert read_overrides(path, cifar2_checks, ["bob", "zoë"]) == [
        Override("bob", "net.forward", 7.5, "multi\r\nline, quoted", 2),
        Override("zoë", TOTAL, 100, "", 5),
    ]


# ---------------------------------------------------------------- results and the gradebook


def _result(student: str = "bob") -> SubmissionResult:
    checks = [CheckResult("net.forward", 0, 20, reasons=["relu for tanh"]), CheckResult("loop.trains", 16, 20, public=False)]
    return SubmissionResult(student, f"{student}.ipynb", "graded", checks)


def test_an_adjusted_result_round_trips_and_old_results_load_without_adjustments():
    adjusted = _result().adjusted("net.forward", 12, "fine").adjusted(TOTAL, 30, "capped").adjusted("net.forward", 15, "finer")
    assert [c.points for c in adjusted.checks] == [15, 16] and adjusted.total == 30
    assert adjusted.adjustments == [Adjustment(TOTAL, 30, 16, "capped"), Adjustment("net.forward", 15, 0, "finer")]
    assert adjusted.adjusted_checks == ["net.forward", TOTAL]
    assert SubmissionResult.from_json(json.loads(json.dumps(adjusted.to_json()))) == adjusted
    old = {key: value for key, value in _result().to_json().items() if key != "adjustments"}  # stored before overrides existed
    assert SubmissionResult.from_json(old) == _result() and _result().total == 16
    # Before publication a hidden check's override, and the total (which counts it), stay hidden.
    hidden = _result().adjusted("loop.trains", 20, "x").adjusted(TOTAL, 18, "y").adjusted("net.forward", 1, "z")
    assert hidden.public_view().adjustments == [Adjustment("net.forward", 1, 0, "z")] and hidden.public_view().total == 1


def test_overrides_apply_total_last_and_are_remembered_for_students_not_graded_yet():
    overrides = [Override("bob", TOTAL, 25, "", 2), Override("bob", "net.forward", 20, "", 3), Override("cy", TOTAL, 1, "", 4)]
    (bob,) = apply_overrides([_result()], overrides)
    assert bob.total == 25 and bob.adjustment(TOTAL) == Adjustment(TOTAL, 25, 16, "")
    remembered = {("cy", TOTAL): Adjustment(TOTAL, 1, 3, ""), ("gone", TOTAL): Adjustment(TOTAL, 1, 3, "")}
    assert overrides_to_remember([bob], overrides, remembered) == {
        ("bob", TOTAL): Adjustment(TOTAL, 25, 16, ""), ("bob", "net.forward"): Adjustment("net.forward", 20, 0, ""),
        ("cy", TOTAL): Adjustment(TOTAL, 1, 3, ""),
    }  # fmt: skip


def test_junit_says_which_check_and_score_were_adjusted():
    suite = ET.fromstring(junit_xml(_result().adjusted("net.forward", 12, "ok").adjusted(TOTAL, 30, "late"), "cifar2")).find("testsuite")
    assert suite is not None
    properties = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert properties["score"] == "30" and properties["adjusted"] == "adjusted by your instructor from 16 to 30: late"
    case = next(c for c in suite.iter("testcase") if c.get("name") == "net.forward")
    assert {p.get("name"): p.get("value") for p in case.findall("properties/property")}["adjusted"] == "adjusted by your instructor from 0 to 12: ok"


def test_a_schema_2_gradebook_opens_and_remembers_overrides_from_then_on(tmp_path):
    db = tmp_path / "gradebook.sqlite"
    connection = sqlite3.connect(db)
    for step in (1, 2):
        for statement in gradebook_module.MIGRATIONS[step]:
            connection.execute(statement)
    connection.execute("PRAGMA user_version = 2")
    connection.execute(
        "INSERT INTO results (student, source, content_hash, fingerprint, status, total, graded_at, grader_version, result) "
        "VALUES ('bob', 'bob.ipynb', 'h', 'f', 'graded', 16, '2026-01-01T00:00:00.000+00:00', '0', ?)",
        (json.dumps({k: v for k, v in _result().to_json().items() if k != "adjustments"}),),
    )
    connection.commit()
    connection.close()
    assert load(db).total.tolist() == [16]  # read-only: not migrated, no overrides table
    with Gradebook(db) as book:
        assert book.applied_overrides() == {} and book.overrides_source() is None
        book.record_overrides({("bob", "net.forward"): Adjustment("net.forward", 12, 0, "ok")}, "overrides.csv")
    with Gradebook(db) as book:
        assert book.applied_overrides() == {("bob", "net.forward"): Adjustment("net.forward", 12, 0, "ok")}
        assert book.overrides_source() == "overrides.csv"
    assert load(db)[["total", "adjusted", "net.forward"]].to_dict("records") == [{"total": 28, "adjusted": "net.forward", "net.forward": 12}]
