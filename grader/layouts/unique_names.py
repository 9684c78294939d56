"""Student names that stay apart: an LMS names students for people, and two of them may share a
name (two Canvas students `roejohn`, two Moodle students "Anna Smith"), or names that become one
file name (feedback/<student>.md). The student with the lowest LMS id keeps the name; each other
gets its id after it (`roejohn_23457`), and the run says so."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from grader.files import safe_file_stem
from grader.load import Submission


def _file_key(student: str) -> str:
    """Names that would share a feedback file (on a disk that ignores case, too) count as one."""
    return safe_file_stem(student).casefold()


def _id_order(submission: Submission) -> tuple[bool, int, str, str]:
    lms_id = submission.lms_id
    return (not lms_id.isdigit(), int(lms_id) if lms_id.isdigit() else 0, lms_id, str(submission.path))


def unique_names(submissions: list[Submission]) -> tuple[list[Submission], list[str]]:
    """The submissions with names no two share, and a sentence for each name that was shared."""
    sharing: dict[str, list[Submission]] = defaultdict(list)
    for submission in submissions:
        sharing[_file_key(submission.student)].append(submission)
    taken = set(sharing)
    named: list[Submission] = []
    remarks: list[str] = []
    for same in sharing.values():
        same.sort(key=_id_order)
        named.append(same[0])
        if len(same) == 1:
            continue
        for count, submission in enumerate(same[1:], start=2):
            name = f"{submission.student}_{submission.lms_id or count}"
            while _file_key(name) in taken:  # that name is someone else's: one more mark
                name += "_"
            taken.add(_file_key(name))
            named.append(replace(submission, student=name))
        renamed = [named[-len(same) + i] for i in range(len(same))]
        who = ", ".join(f"{s.student} (id {s.lms_id})" if s.lms_id else s.student for s in renamed)
        shared = f"are named {same[0].student}" if len({s.student for s in same}) == 1 else "have names that make one file name"
        remarks.append(f"{len(same)} students {shared}; they are told apart as {who}")
    return named, remarks
