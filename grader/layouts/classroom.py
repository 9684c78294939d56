"""GitHub Classroom: one folder per student repository, `<assignment>-<username>`, as the
Classroom Assistant and `gh classroom clone student-repos` put them side by side.

The assignment's part is the longest beginning, ending in "-", that every folder shares (with a
single folder: the assignment's own name and "-"); the rest is the student's GitHub username.
Inside a repository the file to grade is chosen as in a student's folder (grader/load.py); `.git`
is hidden and ignored. Reads names only, never a file's bytes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from grader.layouts.layout import LayoutReading, Wanted, counted, entries, is_submission_file, text
from grader.load import choose_file, files_in_folder

NAME = "classroom"

# GitHub's rule for usernames: letters, digits and single hyphens inside, at most 39 characters.
_USERNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")


def assignment_prefix(folder_names: list[str], assignment: str) -> str:
    """What the repositories' names begin with: the longest common beginning that ends in "-"
    (two folders or more), else `<assignment>-` when every folder begins with it; "" for neither."""
    if len(folder_names) > 1:
        common = os.path.commonprefix(folder_names)  # noqa: RUF071 (names, not paths: character by character is meant)
        prefix = common[: common.rfind("-") + 1]
        if prefix:
            return prefix
    own = f"{assignment}-"
    return own if folder_names and all(name.startswith(own) for name in folder_names) else ""


def misfit(folder: Path, wanted: Wanted) -> str | None:
    found = entries(folder)
    loose = next((entry for entry in found if is_submission_file(entry)), None)
    if loose is not None:
        return f"{loose.name} is a file, and GitHub Classroom gives a folder per repository"
    names = [text(entry.name) for entry in found if entry.is_dir()]
    if not names:
        return "no folder: GitHub Classroom gives a folder per repository (<assignment>-<username>)"
    prefix = assignment_prefix(names, wanted.assignment)
    if not prefix:
        return f"{names[0]} does not begin as the other folders do (<assignment>-<username>, e.g. {wanted.assignment}-octocat)"
    odd = next((name for name in names if not _USERNAME.fullmatch(name[len(prefix):])), None)
    if odd is not None:
        return f"{odd} is not {prefix}<username> (a GitHub username: letters, digits and single hyphens)"
    return None


def read(folder: Path, wanted: Wanted) -> LayoutReading:
    repositories = [entry for entry in entries(folder) if entry.is_dir()]
    prefix = assignment_prefix([text(entry.name) for entry in repositories], wanted.assignment)
    submissions, count = [], 0
    for repository in repositories:
        files = files_in_folder(repository)
        count += len(files)
        submissions.append(choose_file(text(repository.name)[len(prefix):], files, wanted.notebook, repository))
    details = f"{counted(count, 'file')} of {counted(len(submissions), 'student')}; repositories {prefix}<username>"
    return LayoutReading(submissions, f"GitHub Classroom repositories ({details})")
