"""Moodle "Download all submissions": a folder per student and submission plugin (or, with
"Download submissions in folders" off, files prefixed the same way).

Moodle names them `<Full Name>_<participant id>_assignsubmission_<plugin>_` (mod/assign/locallib.php):
the student's full name (underscores turned into spaces; for a group submission the group's name
and "-" before it), the participant id Moodle gives the student in this assignment, then the
plugin: `file` for uploaded files (`Jane Doe_4021337_assignsubmission_file_/cifar2_cnn.ipynb`),
`onlinetext` for an online text (`onlinetext.html`), which is never graded: a student who only
wrote one gets a row that says so.

Reads names only, never a file's bytes.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from grader.errors import SubmissionError
from grader.layouts.layout import LayoutReading, Wanted, counted, entries, is_submission_file, text
from grader.load import Submission, choose_file, files_in_folder

NAME = "moodle"

_FOLDER = re.compile(r"(?P<name>.+)_(?P<id>\d+)_assignsubmission_(?P<plugin>[a-z]+)_", re.DOTALL)
_FILE = re.compile(r"(?P<name>.+?)_(?P<id>\d+)_assignsubmission_(?P<plugin>[a-z]+)_(?P<original>.+)", re.DOTALL)
_FILES_PLUGIN = "file"
NAMING = "<Full Name>_<participant id>_assignsubmission_file_"


def parse_moodle_name(name: str, *, folder: bool) -> tuple[str, str, str, str] | None:
    """(full name, participant id, plugin, file name) of a folder or file name Moodle gives
    (file name "" for a folder); None for a name Moodle does not give."""
    match = (_FOLDER if folder else _FILE).fullmatch(text(name))
    if match is None:
        return None
    return match["name"], match["id"], match["plugin"], "" if folder else match["original"]


def misfit(folder: Path, wanted: Wanted) -> str | None:
    named = 0
    for entry in entries(folder):
        if parse_moodle_name(entry.name, folder=entry.is_dir()) is not None:
            named += 1
        elif entry.is_dir() or is_submission_file(entry):
            return f"{entry.name} is not named as Moodle names a student's submission ({NAMING})"
    return None if named else f"no folder is named as Moodle names a student's submission ({NAMING})"


def read(folder: Path, wanted: Wanted) -> LayoutReading:
    uploads: dict[tuple[str, str], list[tuple[Path, str]]] = {}  # the file plugin's files, by student
    where: dict[tuple[str, str], Path] = {}  # the student's file plugin folder (or file), else another plugin's
    for entry in entries(folder):
        parsed = parse_moodle_name(entry.name, folder=entry.is_dir())
        if parsed is None:
            continue
        name, participant, plugin, original = parsed
        student = (name, participant)
        if plugin == _FILES_PLUGIN:
            if student not in uploads:
                where[student] = entry
            found = files_in_folder(entry) if entry.is_dir() else [(entry, original)]
            uploads.setdefault(student, []).extend(found)
        else:
            where.setdefault(student, entry)
    submissions = []
    for (name, participant), entry in where.items():
        if (name, participant) in uploads:
            row = choose_file(name, uploads[(name, participant)], wanted.notebook, entry)
        else:  # an online text (or another plugin's) only: nothing to grade, said in the row
            row = Submission(name, entry, SubmissionError(entry, "only an online text was submitted, no .ipynb or .py file"))
        submissions.append(replace(row, lms_id=participant))
    count = sum(map(len, uploads.values()))
    return LayoutReading(submissions, f"Moodle download ({counted(count, 'file')} of {counted(len(submissions), 'student')})")
