"""Output files are written whole or not at all: a report folder of a class of thousands is
written through `write_atomically`, one temporary file and one rename per file."""

from __future__ import annotations

import itertools
import os

import pytest

from grader import files
from grader.files import write_atomically


def test_a_file_is_written_exactly_with_the_usual_mode_and_its_folders_created(tmp_path):
    target = tmp_path / "feedback" / "deep" / "zoë.md"
    text = "é line one\r\nline two\n\u2212 3"
    old_umask = os.umask(0o027)
    try:
        write_atomically(target, text)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == text.encode("utf-8")  # no newline translation
    assert target.stat().st_mode & 0o777 == 0o640  # 0666 less the umask, as any new file
    write_atomically(target, "replaced")
    assert target.read_text() == "replaced"
    assert sorted(p.name for p in target.parent.iterdir()) == ["zoë.md"]  # no temporary left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.csv"
    target.write_text("old report")
    with pytest.raises(UnicodeEncodeError):
        write_atomically(target, "half \ud800 written")  # a lone surrogate cannot be UTF-8
    folder = tmp_path / "a folder"
    (folder / "inside").mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        write_atomically(folder, "cannot replace a folder")
    assert target.read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a folder", "report.csv"]
    assert [p.name for p in folder.iterdir()] == ["inside"]


def test_a_temporary_left_by_a_killed_process_with_the_same_id_is_stepped_over(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_TEMPORARY_NUMBERS", itertools.count())
    stale = tmp_path / f".page.html.{os.getpid()}-0.tmp"
    stale.write_text("left by a process killed mid-write")
    write_atomically(tmp_path / "page.html", "<p>new</p>")
    assert (tmp_path / "page.html").read_text() == "<p>new</p>"
    assert stale.read_text() == "left by a process killed mid-write"  # not ours to remove
