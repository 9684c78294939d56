"""LMS downloads read as they come: folders and zips named exactly as Canvas, Moodle, GitHub
Classroom and nbgrader name them (late, resubmitted, several files, accents, shared names), zips
that try to leave their folder or to fill the disk, and the LMS id and lateness carried into every
form a result takes. Layouts read names only, so these tests grade nothing but one `grader run`
of a Canvas zip at the end."""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
import unicodedata
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import variants as v
from conftest import FULL, ROOT

from grader.errors import LayoutError, SubmissionsZipError
from grader.gradebook import Gradebook, GradebookKey, ResultDocument
from grader.layouts import Wanted, find_submissions
from grader.layouts.canvas import parse_canvas_name, split_version
from grader.layouts.classroom import assignment_prefix
from grader.load import Submission
from grader.pipeline import grade, grading_failed, prepare
from grader.report.csv_report import csv_text
from grader.report.html_report import class_report_html
from grader.results import CheckResult, Note, SubmissionResult, load, results_frame
from grader.submissions_zip import extract_zip, submissions_folder

WANTED = Wanted("cifar2_cnn.ipynb", "cifar2")
NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})  # never opened by a layout


def _files(folder: Path, names: list[str]) -> Path:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(NOTEBOOK, encoding="utf-8")
    return folder


def _zip(path: Path, folder: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            archive.write(file, file.relative_to(folder).as_posix())
    return path


def _rows(found) -> dict[str, tuple[str, bool | None, str]]:
    """student -> (lms_id, late, the graded file's name, or the problem)."""
    return {s.student: (s.lms_id, s.late, str(s.problem) if s.problem else s.path.name) for s in found.submissions}


# ---------------------------------------------------------------- Canvas

CANVAS = [
    "roejohn_LATE_23456_900002_cifar2_cnn.ipynb",  # late
    "doejane_34567_900010_cifar2_cnn.ipynb",  # resubmitted twice: Canvas's -1, -2
    "doejane_34567_900011_cifar2_cnn-1.ipynb",
    "doejane_34567_900012_cifar2_cnn-2.ipynb",
    "smithann_45678_900020_helpers.py",  # a notebook and a helper script: one submission
    "smithann_45678_900021_cifar2_cnn.ipynb",
    "roejohn_23457_900030_cifar2_cnn.ipynb",  # another "Roe, John"
    "müllerjosé_56789_900040_cifar2_cnn.ipynb",  # "Müller, José"
    "leeamy_LATE_67890_text.html",  # a text entry, no file
    "anon_aB3xY_900050_cifar2_cnn.ipynb",  # anonymous grading
]


def test_canvas_names_say_student_user_id_lateness_and_the_students_file_name():
    late = parse_canvas_name("roejohn_LATE_23456_900002_cifar2_cnn.ipynb")
    assert late is not None and (late.student, late.user_id, late.late, late.original) == ("roejohn", "23456", True, "cifar2_cnn.ipynb")
    digits = parse_canvas_name("o_brienpat_23458_900003_2_helpers.py")  # an underscore in the name, digits in the file's
    assert digits is not None and (digits.student, digits.user_id, digits.original) == ("o_brienpat", "23458", "2_helpers.py")
    anonymous = parse_canvas_name("LATE_anon_aB3xY_900050_cifar2_cnn.ipynb")
    assert anonymous is not None and (anonymous.student, anonymous.user_id, anonymous.late) == ("anon_aB3xY", "", True)
    text = parse_canvas_name("leeamy_67890_text.html")
    assert text is not None and (text.student, text.user_id, text.original) == ("leeamy", "67890", "text.html")
    accented = parse_canvas_name(unicodedata.normalize("NFD", "müllerjosé_56789_900040_cifar2_cnn.ipynb"))  # as a Mac spells it
    assert accented is not None and accented.student == "müllerjosé"
    for not_canvas in ("alice.ipynb", "roejohn_cifar2_cnn.ipynb", "roejohn_23456_cifar2.ipynb", "README.txt"):
        assert parse_canvas_name(not_canvas) is None, not_canvas
    assert split_version("cifar2_cnn-2.ipynb") == ("cifar2_cnn.ipynb", 2)
    assert split_version("data-1.tar.gz") == ("data.tar.gz", 1)  # -N before the whole extension, as Canvas puts it
    assert split_version("my-net.ipynb") == ("my-net.ipynb", 0)


def test_a_canvas_download_gives_a_row_per_student_with_id_lateness_and_the_newest_file(tmp_path):
    found = find_submissions(_files(tmp_path / "download", [*CANVAS, "README.txt"]), WANTED)

    assert found.layout == "canvas"
    assert found.headline == "Layout: Canvas download (10 files of 7 students; 2 late, 1 resubmitted)"
    assert _rows(found) == {
        "anon_aB3xY": ("", False, "anon_aB3xY_900050_cifar2_cnn.ipynb"),
        "doejane": ("34567", False, "doejane_34567_900012_cifar2_cnn-2.ipynb"),
        "leeamy": ("67890", True, "leeamy_LATE_67890_text.html: submission holds no .ipynb or .py file"),
        "müllerjosé": ("56789", False, "müllerjosé_56789_900040_cifar2_cnn.ipynb"),
        "roejohn": ("23456", True, "roejohn_LATE_23456_900002_cifar2_cnn.ipynb"),
        "roejohn_23457": ("23457", False, "roejohn_23457_900030_cifar2_cnn.ipynb"),
        "smithann": ("45678", False, "smithann_45678_900021_cifar2_cnn.ipynb"),
    }
    [doejane] = [s for s in found.submissions if s.student == "doejane"]
    assert doejane.notes == ("Canvas resubmission: graded cifar2_cnn-2.ipynb, the newest of cifar2_cnn.ipynb, cifar2_cnn-1.ipynb, cifar2_cnn-2.ipynb",)
    assert found.remarks == ["2 students are named roejohn; they are told apart as roejohn (id 23456), roejohn_23457 (id 23457)"]


def test_several_notebooks_of_a_canvas_student_are_chosen_as_in_a_folder(tmp_path):
    folder = _files(tmp_path, ["kimbo_11_1_scratch.ipynb", "kimbo_11_2_cifar2_cnn-1.ipynb", "lu_12_3_a.ipynb", "lu_12_4_b.ipynb"])
    rows = _rows(find_submissions(folder, WANTED))
    assert rows["kimbo"][2] == "kimbo_11_2_cifar2_cnn-1.ipynb"  # the assignment's name, Canvas's -1 aside
    assert "several .ipynb files (a.ipynb, b.ipynb)" in rows["lu"][2]


# ---------------------------------------------------------------- Moodle, GitHub Classroom, nbgrader, plain


def test_a_moodle_download_gives_full_names_and_participant_ids(tmp_path):
    folder = _files(tmp_path / "download", [
        "Jane Doe_4021337_assignsubmission_file_/cifar2_cnn.ipynb",
        "José Müller_4021338_assignsubmission_file_/cifar2_cnn.ipynb",
        "José Müller_4021338_assignsubmission_file_/lib/helpers.py",
        "José Müller_4021338_assignsubmission_onlinetext_/onlinetext.html",
        "Anna Smith_4021340_assignsubmission_file_/work.ipynb",
        "Anna Smith_4021339_assignsubmission_file_/cifar2_cnn.ipynb",
        "Only Text_4021341_assignsubmission_onlinetext_/onlinetext.html",
    ])  # fmt: skip
    found = find_submissions(folder, WANTED)
    assert found.headline == "Layout: Moodle download (5 files of 5 students)"
    assert _rows(found) == {
        "Anna Smith": ("4021339", None, "cifar2_cnn.ipynb"),
        "Anna Smith_4021340": ("4021340", None, "work.ipynb"),
        "Jane Doe": ("4021337", None, "cifar2_cnn.ipynb"),
        "José Müller": ("4021338", None, "cifar2_cnn.ipynb"),
        "Only Text": ("4021341", None, "Only Text_4021341_assignsubmission_onlinetext_: only an online text was submitted, no .ipynb or .py file"),
    }
    # Without "Download submissions in folders": the same prefix on each file.
    flat = _files(tmp_path / "flat", ["Jane Doe_4021337_assignsubmission_file_cifar2_cnn.ipynb", "Jane Doe_4021337_assignsubmission_file_notes.txt"])
    assert _rows(find_submissions(flat, WANTED)) == {"Jane Doe": ("4021337", None, "Jane Doe_4021337_assignsubmission_file_cifar2_cnn.ipynb")}


def test_github_classroom_repositories_give_usernames(tmp_path):
    folder = _files(tmp_path / "cifar2-cnn-submissions", [
        "cifar2-cnn-octocat/cifar2_cnn.ipynb", "cifar2-cnn-octocat/.git/HEAD",
        "cifar2-cnn-mona-lisa/notebooks/cifar2_cnn.ipynb", "cifar2-cnn-mona-lisa/scratch.ipynb",
        "cifar2-cnn-hubot/README.md",
    ])  # fmt: skip
    found = find_submissions(folder, WANTED)
    assert found.headline == "Layout: GitHub Classroom repositories (4 files of 3 students; repositories cifar2-cnn-<username>)"
    assert _rows(found) == {
        "hubot": ("", None, "cifar2-cnn-hubot: folder holds no .ipynb or .py file"),
        "mona-lisa": ("", None, "cifar2_cnn.ipynb"),
        "octocat": ("", None, "cifar2_cnn.ipynb"),
    }
    assert assignment_prefix(["cifar2-octocat"], "cifar2") == "cifar2-"  # one repository: the assignment's name tells
    assert assignment_prefix(["alice", "bob"], "cifar2") == ""


def test_nbgrader_submitted_folders_give_the_assignment_of_each_student(tmp_path):
    course = _files(tmp_path / "course", [
        "submitted/alice/cifar2/cifar2_cnn.ipynb", "submitted/alice/cifar2/timestamp.txt", "submitted/alice/ps0/ps0.ipynb",
        "submitted/bob/cifar2/cifar2_cnn.ipynb", "submitted/carol/ps0/ps0.ipynb", "source/cifar2/cifar2_cnn.ipynb",
    ])  # fmt: skip
    for root in (course, course / "submitted"):
        found = find_submissions(root, WANTED)
        assert found.headline == "Layout: nbgrader submitted/ (3 files of 2 students; assignment cifar2)"
        assert _rows(found) == {"alice": ("", None, "cifar2_cnn.ipynb"), "bob": ("", None, "cifar2_cnn.ipynb")}
    with pytest.raises(LayoutError, match=r"several assignments \(cifar2, ps0\) and none is named mnist"):
        find_submissions(course, Wanted("mnist.ipynb", "mnist"), "nbgrader")


def test_a_plain_folder_is_read_as_before_with_no_id_and_no_lateness(tmp_path):
    folder = _files(tmp_path, ["alice.ipynb", "bob/homework.ipynb", "carol.py", "README.txt"])
    found = find_submissions(folder, WANTED)
    assert found.headline == "Layout: plain folder (3 submissions)"
    assert _rows(found) == {"alice": ("", None, "alice.ipynb"), "bob": ("", None, "homework.ipynb"), "carol": ("", None, "carol.py")}
    # One student's folder, as Gradescope's bundle gives it, whatever its files are called.
    lone = _files(tmp_path / "one", ["submission/cifar2_cnn.ipynb"])
    for layout in ("auto", "plain"):
        assert _rows(find_submissions(lone, WANTED, layout)) == {"submission": ("", None, "cifar2_cnn.ipynb")}


def test_a_forced_layout_names_the_first_file_that_does_not_fit(tmp_path):
    plain = _files(tmp_path / "plain", ["alice.ipynb", "bob.ipynb"])
    with pytest.raises(LayoutError, match=r"plain: not a canvas layout: alice.ipynb is not named as Canvas names files"):
        find_submissions(plain, WANTED, "canvas")
    canvas = _files(tmp_path / "canvas", CANVAS[:2])
    with pytest.raises(LayoutError, match=r"not a moodle layout: doejane_34567_900010_cifar2_cnn.ipynb is not named as Moodle"):
        find_submissions(canvas, WANTED, "moodle")
    # Forced plain on a Canvas download: the file names as they are.
    assert [s.student for s in find_submissions(canvas, WANTED, "plain").submissions] == [Path(name).stem for name in sorted(CANVAS[:2])]


def test_feedback_file_names_of_accented_and_long_names_are_safe_and_distinct(tmp_path):
    from grader.files import safe_file_stem

    decomposed = unicodedata.normalize("NFD", "José Müller")
    assert safe_file_stem(decomposed) == safe_file_stem("José Müller") == "José_Müller"
    long_names = ["Ä" * 150 + "a", "Ä" * 150 + "b"]
    stems = [safe_file_stem(name) for name in long_names]
    assert stems[0] != stems[1] and all(len(stem.encode()) <= 200 for stem in stems)
    for stem in stems:  # the longest page written for a student
        (tmp_path / f"{stem}.notebook.html").write_text("ok", encoding="utf-8")


# ---------------------------------------------------------------- zips


def test_a_canvas_zip_reads_as_its_folder_and_its_temporary_folder_is_removed(tmp_path):
    archive = _zip(tmp_path / "submissions.zip", _files(tmp_path / "download", CANVAS))
    with submissions_folder(archive) as folder:
        assert folder != archive and folder.is_dir()
        assert _rows(find_submissions(folder, WANTED, shown_as=archive)) == _rows(find_submissions(tmp_path / "download", WANTED))
    assert not folder.exists()
    with pytest.raises(LayoutError), submissions_folder(archive) as folder:  # removed when the run fails, too
        find_submissions(folder, WANTED, "moodle", shown_as=archive)
    assert not folder.exists()


def test_a_zip_of_a_folder_is_looked_into(tmp_path):
    _files(tmp_path / "wrap" / "cifar2-submissions", ["cifar2-octocat/cifar2_cnn.ipynb", "cifar2-hubot/cifar2_cnn.ipynb"])
    with submissions_folder(_zip(tmp_path / "classroom.zip", tmp_path / "wrap")) as folder:
        found = find_submissions(folder, WANTED)
    assert found.layout == "classroom" and [s.student for s in found.submissions] == ["hubot", "octocat"]


def test_zip_names_without_the_utf8_flag_are_read_as_utf8(tmp_path):
    archive = tmp_path / "moodle.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("José Müller_4021338_assignsubmission_file_/cifar2_cnn.ipynb", NOTEBOOK)
    data = bytearray(archive.read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # clear bit 11 where zips made without it leave it
        at = data.index(signature) + flags_at + 1  # the flags, little-endian: bit 11 is in their second byte
        data[at] &= ~0x08
    archive.write_bytes(bytes(data))
    assert not zipfile.ZipFile(archive).infolist()[0].flag_bits & 0x800
    with submissions_folder(archive) as folder:
        assert [s.student for s in find_submissions(folder, WANTED).submissions] == ["José Müller"]


def _hostile_zip(path: Path, name: str, *, link: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("alice.ipynb", NOTEBOOK)
        member = zipfile.ZipInfo(name)
        if link:
            member.create_system = 3
            member.external_attr = (stat.S_IFLNK | 0o777) << 16
        out.writestr(member, "/etc/passwd" if link else "pwned")
    return path


@pytest.mark.parametrize(
    ("name", "link", "cause"),
    [
        ("../evil.py", False, "a path with '..'"),
        ("sub/../../evil.py", False, "a path with '..'"),
        ("..\\evil.py", False, "a path with '..'"),
        ("/tmp/evil.py", False, "an absolute path"),
        ("C:/evil.py", False, "an absolute path"),
        ("bob.ipynb", True, "a symbolic link"),
    ],
    ids=["dotdot", "nested dotdot", "backslash dotdot", "absolute", "drive", "symlink"],
)
def test_a_zip_member_that_could_leave_its_folder_is_refused(tmp_path, name, link, cause):
    archive = _hostile_zip(tmp_path / "hostile.zip", name, link=link)
    destination = tmp_path / "out" / "inside"
    destination.mkdir(parents=True)
    with pytest.raises(SubmissionsZipError) as refused:
        extract_zip(archive, destination)
    assert str(refused.value).startswith(f"{archive}: member {name!r}: {cause}")
    assert list(destination.iterdir()) == [] and sorted(p.name for p in tmp_path.rglob("*")) == ["hostile.zip", "inside", "out"]


def test_a_zip_over_the_limits_is_refused_before_anything_is_written(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("alice.ipynb", NOTEBOOK)
        out.writestr("zeros.ipynb", b"\0" * 2**21)  # 2 MB that compress to 2 kB
    assert bomb.stat().st_size < 10_000
    (tmp_path / "out").mkdir()
    with pytest.raises(SubmissionsZipError, match=r"bomb.zip: unzips to 2.0 MB, over the 1.0 MB limit \(the largest member: 'zeros.ipynb'"):
        extract_zip(bomb, tmp_path / "out", max_bytes=2**20)
    with pytest.raises(SubmissionsZipError, match=r"bomb.zip: holds 2 members, over the limit of 1"):
        extract_zip(bomb, tmp_path / "out", max_members=1)
    assert list((tmp_path / "out").iterdir()) == []
    # A zip that declares fewer bytes than it holds is stopped as it unzips.
    data = bytearray(bomb.read_bytes())
    central = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)  # zeros.ipynb's entry
    data[central + 24: central + 28] = (100).to_bytes(4, "little")
    (tmp_path / "liar.zip").write_bytes(bytes(data))
    with pytest.raises(SubmissionsZipError, match=r"liar.zip: member 'zeros.ipynb': damaged \(Bad CRC-32"):
        extract_zip(tmp_path / "liar.zip", tmp_path / "out", max_bytes=2**20)


def test_a_file_that_is_not_a_zip_is_named(tmp_path):
    (tmp_path / "grades.csv").write_text("student,total\n")
    with pytest.raises(SubmissionsZipError, match=r"grades.csv: neither a folder of submissions nor a .zip file"), submissions_folder(tmp_path / "grades.csv"):
        pass


# ---------------------------------------------------------------- the id and lateness in every form of a result


def _result(student: str, late: bool | None, lms_id: str = "") -> SubmissionResult:
    checks = [CheckResult(name, points, points) for name, points in FULL.items()]
    return SubmissionResult(student=student, path=f"{student}.ipynb", status="graded", checks=checks, lms_id=lms_id, late=late)


def test_lms_id_and_lateness_round_trip_through_json_the_gradebook_csv_and_pandas(tmp_path):
    results = [_result("roejohn", True, "23456"), _result("doejane", False, "34567"), _result("alice", None)]
    for result in results:
        assert SubmissionResult.from_json(json.loads(json.dumps(result.to_json()))) == result
    stored_before = {k: value for k, value in results[0].to_json().items() if k not in ("lms_id", "late")}
    assert (SubmissionResult.from_json(stored_before).lms_id, SubmissionResult.from_json(stored_before).late) == ("", None)

    with Gradebook(tmp_path / "gradebook.sqlite") as gradebook:
        for result in results:
            gradebook.store(GradebookKey(result.student, result.path, "hash", "fingerprint"), result)
    with Gradebook(tmp_path / "gradebook.sqlite") as gradebook:
        again = gradebook.lookup(GradebookKey("roejohn", "roejohn.ipynb", "hash", "fingerprint"))
    assert again is not None and (again.lms_id, again.late) == ("23456", True)

    text = csv_text(results, list(FULL))
    assert text.splitlines()[:4] == [
        "student,lms_id,late,status,error,total,max_total,adjusted," + ",".join(FULL),
        "roejohn,23456,true,graded,,100,100,," + ",".join(str(p) for p in FULL.values()),
        "doejane,34567,false,graded,,100,100,," + ",".join(str(p) for p in FULL.values()),
        "alice,,,graded,,100,100,," + ",".join(str(p) for p in FULL.values()),
    ]
    (tmp_path / "report.csv").write_text(text)
    for frame in (load(tmp_path / "report.csv"), load(tmp_path / "gradebook.sqlite"), results_frame(results)):
        rows = frame.set_index("student")
        assert str(frame["late"].dtype) == "boolean"
        assert [None if pd.isna(late) else bool(late) for late in rows.loc[["roejohn", "doejane", "alice"], "late"]] == [True, False, None]
        assert rows.loc["roejohn", "lms_id"] == "23456" and rows.loc["alice", "lms_id"] == ""
    # A report written before these columns: read with them, empty.
    old = "\n".join(",".join(c for i, c in enumerate(line.split(",")) if i not in (1, 2)) for line in text.splitlines())
    (tmp_path / "old.csv").write_text(old + "\n")
    assert load(tmp_path / "old.csv").late.isna().all() and list(load(tmp_path / "old.csv").columns[:3]) == ["student", "lms_id", "late"]


def test_what_the_download_says_reaches_every_result_also_through_a_dask_task(tmp_path, cifar2):
    folder = _files(tmp_path, ["roejohn_LATE_23456_900002_cifar2_cnn.ipynb"])
    unreadable = Submission("roejohn", folder / "missing.ipynb", lms_id="23456", late=True, notes=("Canvas resubmission: graded x-2.ipynb",))
    # What a Dask task receives is pickled; what it hands back is the gradebook's JSON.
    shipped = pickle.loads(pickle.dumps(prepare(unreadable, cifar2)))
    document = ResultDocument.of(grade(shipped, cifar2, expected=None, worker=None))  # a file that cannot be read needs neither
    result = SubmissionResult.from_json(json.loads(document.text))
    assert (result.status, result.lms_id, result.late) == ("invalid", "23456", True)
    assert result.notes == [Note("Canvas resubmission: graded x-2.ipynb")]
    failed = grading_failed(unreadable, cifar2, RuntimeError("boom"))
    assert (failed.lms_id, failed.late, failed.grader_failed) == ("23456", True, True)


def test_the_class_report_has_a_late_column_and_a_late_filter_only_when_the_download_says(cifar2):
    with_late = class_report_html([_result("roejohn", True, "23456"), _result("doejane", False, "34567")], cifar2)
    assert '<th data-key="late" tabindex="0">late</th>' in with_late and 'id="late-only"' in with_late
    assert "show only the late submissions (1)" in with_late and with_late.count('data-late="true"') == 1
    plain = class_report_html([_result("alice", None)], cifar2)
    assert 'data-key="late"' not in plain and 'id="late-only"' not in plain


# ---------------------------------------------------------------- end to end


def test_grader_run_grades_a_canvas_zip_and_a_rerun_reuses_every_result(tmp_path):
    download = tmp_path / "download"
    v.write_notebook(download / "roejohn_LATE_23456_900002_cifar2_cnn.ipynb", v.notebook_cells())
    # Cut short: graded without a check run (one notebook graded in full keeps the test short).
    (download / "roejohn_23457_900003_cifar2_cnn-1.ipynb").write_text('{"cells": [')
    (download / "roejohn_23457_900004_helpers.py").write_text("HELPER = 1\n")
    archive = _zip(tmp_path / "submissions.zip", download)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "grader", "run", str(archive), "-o", str(out / "report.csv"), "--workers", "1"]
    temporary = tmp_path / "tmp"  # where the zip is extracted
    temporary.mkdir()
    env = {**os.environ, "COLUMNS": "200", "TMPDIR": str(temporary)}

    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)

    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.startswith("Layout: Canvas download (3 files of 2 students; 1 late, 1 resubmitted)\n")
    assert "2 students are named roejohn; they are told apart as roejohn (id 23456), roejohn_23457 (id 23457)" in done.stderr
    frame = pd.read_csv(out / "report.csv", keep_default_na=False, dtype=str)
    assert list(frame.columns[:7]) == ["student", "lms_id", "late", "status", "error", "total", "max_total"]
    assert frame[["student", "lms_id", "late", "status", "total"]].values.tolist() == [
        ["roejohn", "23456", "true", "graded", "100"], ["roejohn_23457", "23457", "false", "invalid", "0"],
    ]  # fmt: skip
    assert "Canvas resubmission: graded cifar2_cnn-1.ipynb" in (out / "feedback" / "roejohn_23457.md").read_text()

    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert again.returncode == 0 and "0 graded, 2 reused" in again.stderr, again.stderr[-3000:]
    assert (out / "report.csv").read_text() == frame.to_csv(index=False)
    assert not any(temporary.glob("grader-zip-*"))  # removed after each run
