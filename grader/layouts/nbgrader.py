"""nbgrader's course folder: `submitted/<student>/<assignment>/`, where `nbgrader collect` puts
each student's notebooks (with nbgrader's `timestamp.txt`). The folder given is the course folder
holding `submitted/`, or `submitted/` itself.

Of the assignments there, the one with the assignment's name is graded, else the only one; a
student without it gets no row (nothing was handed in). Reads names only, never a file's bytes.
"""

from __future__ import annotations

from pathlib import Path

from grader.layouts.layout import LayoutReading, Wanted, counted, entries, is_submission_file, text
from grader.load import choose_file, files_in_folder

NAME = "nbgrader"
SUBMITTED = "submitted"


def submitted_folder(folder: Path) -> Path | None:
    """nbgrader's `submitted/`: the folder itself, or the one inside it; None for neither."""
    if folder.name == SUBMITTED:
        return folder
    inside = folder / SUBMITTED
    return inside if inside.is_dir() else None


def graded_assignment(submitted: Path, wanted: Wanted) -> tuple[str | None, str]:
    """The assignment folder to grade in each student's folder, or None and why none can be chosen."""
    names = sorted({text(a.name) for student in entries(submitted) if student.is_dir() for a in entries(student) if a.is_dir()})
    if wanted.assignment in names:
        return wanted.assignment, ""
    if len(names) == 1:
        return names[0], ""
    if not names:
        return None, f"{submitted.name}/ holds no <student>/<assignment>/ folder"
    return None, f"{submitted.name}/ holds several assignments ({', '.join(names)}) and none is named {wanted.assignment}"


def misfit(folder: Path, wanted: Wanted) -> str | None:
    submitted = submitted_folder(folder)
    if submitted is None:
        return f"{folder.name} is not nbgrader's {SUBMITTED}/ folder and holds none"
    for student in entries(submitted):
        if is_submission_file(student):
            return f"{SUBMITTED}/{student.name} is a file, and nbgrader keeps {SUBMITTED}/<student>/<assignment>/"
        loose = next((f for f in entries(student) if is_submission_file(f)), None) if student.is_dir() else None
        if loose is not None:
            return f"{SUBMITTED}/{student.name}/{loose.name} is outside an assignment folder ({SUBMITTED}/<student>/<assignment>/)"
    assignment, why = graded_assignment(submitted, wanted)
    return why if assignment is None else None


def read(folder: Path, wanted: Wanted) -> LayoutReading:
    submitted = submitted_folder(folder)
    assert submitted is not None  # misfit said so
    assignment, _ = graded_assignment(submitted, wanted)
    submissions, count = [], 0
    for student in entries(submitted):
        handed_in = next((a for a in entries(student) if a.is_dir() and text(a.name) == assignment), None) if student.is_dir() else None
        if handed_in is not None:
            files = files_in_folder(handed_in)
            count += len(files)
            submissions.append(choose_file(text(student.name), files, wanted.notebook, handed_in))
    details = f"{counted(count, 'file')} of {counted(len(submissions), 'student')}; assignment {assignment}"
    return LayoutReading(submissions, f"nbgrader {SUBMITTED}/ ({details})")
