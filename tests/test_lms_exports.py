"""`grader export canvas|moodle`: gradebook files the LMS imports, from report CSVs written by hand
in today's layout and in the LMS layout (lms_id, late, adjusted), from a gradebook stored by the
real gradebook writer, and rosters built as Canvas and Moodle export them (Points Possible and
Manual Posting rows, read-only totals, a Test Student, unicode and duplicate names, a byte-order
mark, semicolons). Each output is read back the way the LMS's importer reads it. No grading."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from grader.cli import main as cli_main
from grader.gradebook import Gradebook, GradebookKey
from grader.report.lms_roster import name_key
from grader.results import CheckResult, SubmissionResult

CIFAR = "CIFAR-2 CNN (4242)"
QUIZ = "Quiz 1 (4243)"
CANVAS_TOTALS = [
    "Assignments Current Score", "Assignments Unposted Current Score", "Assignments Final Score", "Assignments Unposted Final Score",
    "Current Score", "Unposted Current Score", "Final Score", "Unposted Final Score", "Current Grade", "Final Grade",
]  # fmt: skip
# Student, ID, SIS User ID, SIS Login ID, Section, then the assignment cells (CIFAR-2, Quiz 1), in
# Canvas's order: sorted by name, the Test Student of Student View last.
CANVAS_STUDENTS = [
    ["Roe, John", "23456", "S1001", "jroe", "CS 101 A", "", "8"],
    ["Smith, Anna", "23459", "S1004", "asmith1", "CS 101 A", "", "7"],
    ["Smith, Anna", "23460", "S1005", "asmith2", "CS 101 B", "", "9"],
    ["Müller, Zoë", "23457", "S1002", "zmueller", "CS 101 A", "", "10"],
    ["Nguyen, Bao", "23461", "S1006", "bnguyen", "CS 101 B", "55", "6"],  # graded in Canvas by hand, no submission
    ["Åberg, Lars", "23458", "S1003", "laberg", "CS 101 B", "", "5"],
    ["Student, Test", "23499", "", "", "CS 101 A", "", ""],
]

# student, lms_id, late, status, error, total, max_total, adjusted, net.forward: as grader run
# writes them for a Canvas download (lms_id, late) with an override (adjusted).
NEW_COLUMNS = ["student", "lms_id", "late", "status", "error", "total", "max_total", "adjusted", "net.forward"]
REPORT = [
    ["roejohn", "23456", "true", "graded", "", "82", "100", "", "20"],  # by Canvas ID
    ["zmueller", "", "", "graded", "", "91.5", "100", "net.forward", "20"],  # by SIS Login ID
    ["Lars Aberg", "", "", "graded", "", "70", "100", "", "0"],  # by name, accents and order aside
    ["smithanna", "23490", "false", "graded", "", "64", "100", "", "0"],  # an id the roster lacks
    ["anna_smith", "", "", "graded", "", "77", "100", "", "20"],  # two Smith, Anna: ambiguous
    ["nobody", "", "", "invalid", "not a notebook: invalid JSON at line 3, column 1", "0", "100", "", "0"],
]


def write_csv(path: Path, rows: list[list[str]], *, bom: bool = False, separator: str = ",", newline: str = "\n") -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=separator, lineterminator=newline).writerows(rows)
    path.write_text(("\ufeff" if bom else "") + buffer.getvalue(), encoding="utf-8")
    return path


def canvas_roster(path: Path, *, assignments: tuple[str, ...] = (CIFAR,), bom: bool = True, separator: str = ",") -> Path:
    """A Canvas gradebook export: header, the Manual Posting row, Points Possible, the students."""
    cells = {CIFAR: 5, QUIZ: 6}
    header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *assignments, *CANVAS_TOTALS]
    posting = [""] * 5 + ["Manual Posting" if name == CIFAR else "" for name in assignments] + [""] * len(CANVAS_TOTALS)
    points = ["    Points Possible", "", "", "", ""] + [{CIFAR: "100.00", QUIZ: "10.00"}[name] for name in assignments]
    rows = [header, posting, points + ["(read only)"] * len(CANVAS_TOTALS)]
    rows += [student[:5] + [student[cells[name]] for name in assignments] + ["71.5"] * len(CANVAS_TOTALS) for student in CANVAS_STUDENTS]
    return write_csv(path, rows, bom=bom, separator=separator, newline="\r\n")


def report(path: Path, rows: list[list[str]] = REPORT, *, layout: str = "new") -> Path:
    """A report CSV in the LMS layout, or in today's (student, status, error, total, max_total, checks)."""
    if layout == "new":
        return write_csv(path, [NEW_COLUMNS, *rows])
    keep = [NEW_COLUMNS.index(name) for name in ("student", "status", "error", "total", "max_total", "net.forward")]
    return write_csv(path, [[row[i] for i in keep] for row in [NEW_COLUMNS, *rows]])


def canvas_reads(path: Path) -> tuple[list[str], dict[str, str], dict[str, dict[str, str]]]:
    """The file as Canvas's GradebookImporter reads it: separator by field count, a header with
    Student, ID and, last of the student columns, Section; the Points Possible row and the
    posting row skipped; each student by ID. Gives the columns, points possible and scores."""
    text = path.read_text(encoding="utf-8-sig")
    first = text.splitlines()[0]
    separator = ";" if len(first.split(";")) > len(first.split(",")) else ","
    header, *rows = list(csv.reader(io.StringIO(text), delimiter=separator))
    assert "Student" in header[0] and "ID" in header[1]
    student_columns = 5 if re.match(r"SIS\s+User\s+ID", header[2]) and re.match(r"SIS\s+Login\s+ID", header[3]) else 4
    assert "Section" in header[student_columns - 1]
    assignments, points, scores = header[student_columns:], {}, {}
    for row in rows:
        if "Points Possible" in row[0]:
            points = dict(zip(assignments, row[student_columns:]))
        elif not all(re.match(r"^\s*(Muted|Manual Posting.*)?\s*$", cell, re.IGNORECASE) for cell in row):
            scores[row[1]] = dict(zip(assignments, (cell.strip() for cell in row[student_columns:])))
    return header, points, scores


# ---------------------------------------------------------------- Canvas


def test_canvas_import_places_each_submission_by_id_login_or_name_and_keeps_the_rest(tmp_path, capsys):
    roster = canvas_roster(tmp_path / "Grades-CS101.csv")
    out = tmp_path / "canvas_import.csv"
    code = cli_main(["export", "canvas", "--report", str(report(tmp_path / "report.csv")), "--roster", str(roster), "-o", str(out)])
    header, points, scores = canvas_reads(out)
    assert header == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", CIFAR]  # no read-only totals
    assert points == {CIFAR: "100"}
    assert {student: row[CIFAR] for student, row in scores.items()} == {
        "23456": "82",  # roejohn, by Canvas ID
        "23459": "", "23460": "",  # the two Smith, Anna: neither guessed
        "23457": "91.5",  # zmueller, by SIS Login ID
        "23461": "55",  # no submission: Canvas's own grade stays, so the import changes nothing
        "23458": "70",  # Lars Aberg, by name
        "23499": "",  # the Test Student, kept blank
    }  # fmt: skip
    assert code == 1  # written, but not everything placed
    said = " ".join(capsys.readouterr().err.split())
    assert "smithanna: its Canvas ID 23490 is in no roster row" in said
    assert "anna_smith: its name fits 2 roster rows (Smith, Anna (ID 23459, line 5); Smith, Anna (ID 23460, line 6))" in said
    assert "nobody: fits no roster row: none has it as SIS Login ID or SIS User ID, nor as name" in said
    assert "3 submissions not in the import" in said and "for 3 of 7 roster students" in said and "the other 4 keep what Canvas has" in said


def test_canvas_import_from_todays_report_matches_by_name_and_needs_no_lms_columns(tmp_path, capsys):
    rows = [row for row in REPORT if row[0] in ("roejohn", "Lars Aberg")] + [["Zoë Müller", "", "", "graded", "", "88", "100", "", "20"]]
    out = tmp_path / "canvas_import.csv"
    roster = canvas_roster(tmp_path / "roster.csv", bom=False, separator=";")  # a user's semicolon setting, no BOM
    code = cli_main(["export", "canvas", "--report", str(report(tmp_path / "r.csv", rows, layout="old")), "--roster", str(roster), "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    _, _, scores = canvas_reads(out)
    assert (scores["23456"][CIFAR], scores["23457"][CIFAR], scores["23458"][CIFAR]) == ("82", "88", "70")
    assert "," in out.read_text().splitlines()[0]  # written comma-separated, which Canvas reads as well


def test_two_submissions_that_fit_one_student_leave_the_cell_as_canvas_has_it(tmp_path, capsys):
    """Also a course that shows names split (LastName, FirstName): its name columns match the same."""
    roster = write_csv(tmp_path / "split.csv", [
        ["LastName", "FirstName", "ID", "SIS Login ID", "Section", CIFAR],
        ["    Points Possible", "", "", "", "", "100"],
        ["Roe", "John", "23456", "jroe", "CS 101 A", "40"],
        ["Åberg", "Lars", "23458", "laberg", "CS 101 B", ""],
    ])  # fmt: skip
    rows = [["John Roe", "", "", "graded", "", "82", "100", "", "20"], ["roe_john", "", "", "graded", "", "61", "100", "", "0"], REPORT[2]]
    out = tmp_path / "out.csv"
    assert _export_canvas(report(tmp_path / "r.csv", rows, layout="old"), roster, out) == 1
    assert next(csv.reader(io.StringIO(out.read_text())))[:3] == ["LastName", "FirstName", "ID"]
    assert [line.split(",")[-1] for line in out.read_text().splitlines()[2:]] == ["40", "70"]
    said = " ".join(capsys.readouterr().err.split())
    for student in ("John Roe", "roe_john"):
        assert f"{student}: 'John Roe', 'roe_john' all fit the roster row Roe, John (ID 23456, line 3): enter the right one by hand" in said


def test_canvas_column_is_chosen_by_header_or_title_and_several_need_one(tmp_path, capsys):
    roster = canvas_roster(tmp_path / "roster.csv", assignments=(CIFAR, QUIZ))
    results = report(tmp_path / "report.csv", REPORT[:1])
    out = tmp_path / "out.csv"
    said = refused(capsys, _export_canvas(results, roster, out))
    assert f"roster.csv, line 1: has 2 assignment columns ('{CIFAR}', '{QUIZ}'): choose one with --column" in said
    assert not out.exists()
    for column in (QUIZ, "Quiz 1"):
        assert _export_canvas(results, roster, out, "--column", column) == 0
        header, points, scores = canvas_reads(out)
        assert header[-1] == QUIZ and points == {QUIZ: "100"} and scores["23456"] == {QUIZ: "82"} and scores["23460"] == {QUIZ: "9"}
    said = refused(capsys, _export_canvas(results, roster, out, "--column", "Current Score"))  # Canvas computes it: read-only
    assert f"--column 'Current Score' is not one of its assignment columns ('{CIFAR}', '{QUIZ}')" in said


def test_canvas_warns_of_other_points_possible_and_of_a_student_not_assigned(tmp_path, capsys):
    roster = canvas_roster(tmp_path / "roster.csv", assignments=(QUIZ,))  # worth 10 in Canvas
    roster.write_text(roster.read_text(encoding="utf-8").replace("jroe,CS 101 A,8,", "jroe,CS 101 A,N/A,"), encoding="utf-8")
    assert _export_canvas(report(tmp_path / "r.csv", REPORT[:1]), roster, tmp_path / "out.csv") == 0
    said = " ".join(capsys.readouterr().err.split())
    assert f"warning: '{QUIZ}' is worth 10.00 points in Canvas and the report's scores are out of 100" in said
    assert "warning: Roe, John (ID 23456, line 4): the assignment is not assigned to this student in Canvas (N/A), so Canvas ignores the score" in said


def test_canvas_export_in_a_terminal_names_what_it_left_out_exits_1_and_still_writes(tmp_path):
    roster = canvas_roster(tmp_path / "roster.csv")
    out = tmp_path / "canvas_import.csv"
    done = subprocess.run(
        [sys.executable, "-m", "grader", "export", "canvas", "--report", str(report(tmp_path / "report.csv")), "--roster", str(roster), "-o", str(out)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "200"}, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    for student in ("smithanna", "anna_smith", "nobody"):
        assert f"not in the import: {student}:" in done.stderr
    assert canvas_reads(out)[2]["23456"] == {CIFAR: "82"}


# ---------------------------------------------------------------- Moodle

MOODLE_HEADER = [
    "First name", "Last name", "ID number", "Institution", "Department", "Email address",
    "Assignment: CIFAR-2 CNN (Real)", "Course total (Real)", "Last downloaded from this course",
]  # fmt: skip
MOODLE_STUDENTS = [
    ["Zoë", "Müller", "", "Uni", "CS", "zoe.mueller@example.edu", "-", "-", "1767225600"],
    ["Anna", "Smith", "", "Uni", "CS", "anna.smith@example.edu", "-", "-", "1767225600"],
    ["Anna", "Smith", "", "Uni", "Math", "asmith@example.edu", "-", "-", "1767225600"],
    ["Bao", "Nguyen", "20230006", "Uni", "CS", "bao.nguyen@example.edu", "55.00", "55.00", "1767225600"],
    ["Lars", "Åberg", "20230003", "Uni", "CS", "lars.aberg@example.edu", "-", "-", "1767225600"],
]


def moodle_reads(path: Path, roster_emails: set[str]) -> dict[str, tuple[float | None, str]]:
    """The file as Moodle's CSV grade import reads it, mapping from the email address: a row whose
    email is blank or no user's stops the import; '' and '-' are no grade."""
    header, *rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    email, grade, feedback = header.index("Email address"), len(header) - 2, len(header) - 1
    read = {}
    for row in rows:
        assert row[email] in roster_emails, f"Moodle stops the import: no user {row[email]!r}"
        value = row[grade].strip()
        read[row[email]] = (None if value in ("", "-") else float(value), row[feedback])
    return read


def test_moodle_import_has_a_row_only_for_each_placed_submission(tmp_path, capsys):
    roster = write_csv(tmp_path / "CS101 Grades.csv", [MOODLE_HEADER, *MOODLE_STUDENTS], bom=True)
    rows = [
        ["Zoë Müller", "7", "false", "graded", "", "91.5", "100", "net.forward", "20"],  # Moodle's folder name: the full name
        ["lars.aberg", "12", "true", "graded", "", "70", "100", "", "0"],  # the email's part before the @
        ["Anna Smith", "9", "false", "graded", "", "64", "100", "", "0"],  # two of them
        ["ghost", "", "", "invalid", "not a notebook: invalid JSON at line 3, column 1", "0", "100", "", "0"],
    ]
    out = tmp_path / "moodle_import.csv"
    code = cli_main(["export", "moodle", "--report", str(report(tmp_path / "r.csv", rows)), "--roster", str(roster), "-o", str(out)])
    header = next(csv.reader(io.StringIO(out.read_text())))
    assert header == ["First name", "Last name", "ID number", "Email address", "Assignment: CIFAR-2 CNN (Real)", "Assignment: CIFAR-2 CNN (Feedback)"]
    assert moodle_reads(out, {row[5] for row in MOODLE_STUDENTS}) == {
        "zoe.mueller@example.edu": (91.5, "Autograder: 91.5 / 100. Adjusted by your instructor."),
        "lars.aberg@example.edu": (70.0, "Autograder: 70 / 100."),
    }  # Bao Nguyen has no row: Moodle keeps his 55
    assert code == 1
    said = " ".join(capsys.readouterr().err.split())
    assert "Anna Smith: its name fits 2 roster rows (Anna Smith (anna.smith@example.edu, line 3); Anna Smith (asmith@example.edu, line 4))" in said
    assert "ghost: fits no roster row: none has it as email address or ID number, nor as name" in said
    assert "(the grade item's maximum grade in Moodle must be 100)" in said


def test_moodle_export_reads_a_real_gradebook_with_db(tmp_path, capsys):
    """--db: each student's newest result as the gradebook writer stored it; an ID number or an
    email address names a student; a file that could not be graded says why in the feedback."""
    db = tmp_path / "gradebook.sqlite"
    with Gradebook(db) as book:
        for student, points in (("20230003", 12.0), ("20230003", 17.5), ("bao.nguyen@example.edu", 0.0)):
            result = SubmissionResult(student, f"{student}.ipynb", "graded", checks=[CheckResult("net.forward", points, 20.0)])
            if not points:
                result.status, result.errors = "invalid", ["not a notebook: invalid JSON at line 3, column 1"]
            book.store(GradebookKey(student, f"{student}.ipynb", f"hash-{points}", "fingerprint"), result)
    roster = write_csv(tmp_path / "grades.csv", [MOODLE_HEADER, *MOODLE_STUDENTS], separator="\t")  # a tab-separated export
    out = tmp_path / "moodle_import.csv"
    code = cli_main(["export", "moodle", "--db", str(db), "--roster", str(roster), "-o", str(out), "--column", "Assignment: CIFAR-2 CNN"])
    assert code == 0, capsys.readouterr().err
    assert moodle_reads(out, {row[5] for row in MOODLE_STUDENTS}) == {
        "bao.nguyen@example.edu": (0.0, "Not graded: not a notebook: invalid JSON at line 3, column 1"),
        "lars.aberg@example.edu": (17.5, "Autograder: 17.5 / 20."),
    }


def test_moodle_roster_without_names_or_an_identifier_is_refused_with_the_reason(tmp_path, capsys):
    results = report(tmp_path / "r.csv", REPORT[:1])
    no_email = write_csv(tmp_path / "noemail.csv", [[cell for i, cell in enumerate(row) if i not in (2, 5)] for row in [MOODLE_HEADER, *MOODLE_STUDENTS]])
    said = refused(capsys, cli_main(["export", "moodle", "--report", str(results), "--roster", str(no_email)]))
    assert "noemail.csv, line 1: has neither an 'Email address' nor an 'ID number' column" in said
    canvas = canvas_roster(tmp_path / "canvas.csv")
    said = refused(capsys, cli_main(["export", "moodle", "--report", str(results), "--roster", str(canvas)]))
    assert "canvas.csv, line 1: not a Moodle grade export: no 'First name' and 'Last name' columns" in said


# ---------------------------------------------------------------- inputs that cannot be used


def test_unusable_rosters_and_reports_are_named_with_the_line_and_cause(tmp_path, capsys):
    results = report(tmp_path / "report.csv", REPORT[:1])
    latin1 = canvas_roster(tmp_path / "latin1.csv", bom=False)
    latin1.write_bytes(latin1.read_text(encoding="utf-8").encode("latin-1"))  # saved by a spreadsheet in Windows-1252
    assert "latin1.csv, line 7: not UTF-8 text (byte 0xfc)" in refused(capsys, _export_canvas(results, latin1, tmp_path / "out.csv"))
    short = canvas_roster(tmp_path / "short.csv")
    lines = short.read_bytes().split(b"\r\n")
    lines[4] = b"Roe,23456"  # a row cut short by hand
    short.write_bytes(b"\r\n".join(lines))
    assert "short.csv, line 5: 2 fields where the header (line 1) has 16" in refused(capsys, _export_canvas(results, short, tmp_path / "out.csv"))
    moodle = write_csv(tmp_path / "moodle.csv", [MOODLE_HEADER, *MOODLE_STUDENTS])
    said = refused(capsys, _export_canvas(results, moodle, tmp_path / "out.csv"))
    assert "moodle.csv, line 1: not a Canvas gradebook export: its header starts 'First name, Last name" in said
    (tmp_path / "empty.csv").write_text("\ufeff\r\n")
    assert "empty.csv: is empty" in refused(capsys, _export_canvas(results, tmp_path / "empty.csv", tmp_path / "out.csv"))
    notes = write_csv(tmp_path / "notes.csv", [["name", "score"], ["alice", "3"]])
    assert "notes.csv: not a grader CSV report" in refused(capsys, _export_canvas(notes, latin1, tmp_path / "out.csv"))
    assert not (tmp_path / "out.csv").exists()


def test_results_load_reads_the_lms_ids_as_text_and_lateness_as_a_boolean(tmp_path):
    from grader.results import load

    frame = load(report(tmp_path / "report.csv", [["roejohn", "0023456", "true", "graded", "", "82", "100", "net.forward", "20"]]))
    row = frame.iloc[0]
    assert (row.lms_id, bool(row.late), row.adjusted, row.total, row["net.forward"]) == ("0023456", True, "net.forward", 82.0, 20.0)
    assert str(frame["late"].dtype) == "boolean"


def test_grades_take_a_missing_id_as_empty_and_a_numeric_one_as_written():
    import pandas as pd

    from grader.report.lms_roster import grades_from_frame

    frame = pd.DataFrame({"student": ["a", "b", "c"], "lms_id": [pd.NA, 23456.0, None], "total": [1, 2, 3], "max_total": [5, 5, 5]})
    assert [grade.lms_id for grade in grades_from_frame(frame)] == ["", "23456", ""]
    assert {grade.status for grade in grades_from_frame(frame)} == {""}  # a column the frame lacks is empty


def test_name_key_ignores_case_accents_punctuation_and_spacing():
    assert name_key("Roe, John") == name_key("roejohn") == name_key(" ROE  john ") == "roejohn"  # roejohn: Canvas's download name
    assert name_key("Müller, Zoë") == name_key("mullerzoe") == name_key("Müller-Zoë")
    assert name_key("Åberg") == "aberg" and name_key("Straße") == "strasse" and name_key("李 雷") == "李雷"


def test_export_help_names_both_lms_and_their_options(capsys):
    with pytest.raises(SystemExit):
        cli_main(["export", "canvas", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(option in text for option in ("--report", "--db", "--roster", "--column", "-o")) and "Points Possible" in text
    with pytest.raises(SystemExit):
        cli_main(["export", "--help"])
    assert "canvas" in capsys.readouterr().out


def _export_canvas(results: Path, roster: Path, out: Path, *extra: str) -> int:
    return cli_main(["export", "canvas", "--report", str(results), "--roster", str(roster), "-o", str(out), *extra])


def refused(capsys: pytest.CaptureFixture[str], code: int) -> str:
    """What `grader` said on stderr for an input it could not use (exit status 2), on one line."""
    assert code == 2
    return " ".join(capsys.readouterr().err.split())
