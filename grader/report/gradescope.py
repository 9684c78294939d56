"""Results in Gradescope's autograder format (results.json), one document per submission.

The same document for `grader run --format gradescope` (one file per student) and for the
bundle's `run_autograder` (one submission, /autograder/results/results.json): see
https://gradescope-autograders.readthedocs.io/en/latest/specs/. Each check is a Gradescope test
whose output is the reasons written for the student; a check with `public = false` is shown only
once grades are published, as selfcheck never shows it before.

Must never reveal a hidden check before publication: while one is hidden, the total is withheld
too (visible total minus visible tests would give the hidden ones' points), and the summary,
which students may read at once, is written from the public view only. A hidden check's notes
go into its own test, shown with it, and so does its instructor's override; an overridden total
is explained in the summary only while no check is hidden.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grader.assignment import Assignment
from grader.files import safe_file_stem, write_atomically
from grader.report.context import ReportContext
from grader.report.text import adjustment_text, out_of
from grader.results import INVALID, TOTAL, Adjustment, CheckResult, Note, SubmissionResult

FOLDER = "gradescope"  # beside the CSV report, one <student>.json per submission

VISIBLE = "visible"
HIDDEN_UNTIL_PUBLISHED = "after_published"


def gradescope_results(result: SubmissionResult, assignment: Assignment) -> dict[str, Any]:
    """One submission as Gradescope's results.json document. Each test carries its own
    visibility, so a student sees the visible checks' points at once. The top-level visibility is
    the default of tests that set none and governs the total: visible when every check is
    public, else "after_published", so the total appears with the hidden checks."""
    return {
        "score": result.total,
        "execution_time": round(result.seconds),
        "output": _summary(result, assignment),
        "output_format": "md",
        "visibility": HIDDEN_UNTIL_PUBLISHED if result.hidden_checks else VISIBLE,
        "stdout_visibility": "hidden",  # the grader's log is for the instructor
        "tests": [
            _test(number, check, result.withheld_notes(check.name), result.adjustment(check.name))
            for number, check in enumerate(result.checks, start=1)
        ],
        # Stored, never shown to students (the spec); max_score is the config's, not a result.
        "extra_data": {"assignment": assignment.name, "status": result.status, "max_score": result.max_total, "adjusted": result.adjusted_checks},
    }


def _test(number: int, check: CheckResult, withheld_notes: list[Note], adjustment: Adjustment | None) -> dict[str, Any]:
    """`withheld_notes`: the notes the summary leaves out for this hidden check, shown with it.
    `adjustment`: the instructor's override of this check, said first."""
    output = "passed" if check.passed else ("\n".join(f"- {reason}" for reason in check.reasons) or f"- {check.error or 'points lost'}")
    if adjustment is not None:
        output = f"Points {adjustment_text(adjustment)}\n\n{output}"
    if withheld_notes:
        output += "\n\nNotes on your code:\n\n" + "\n".join(f"- {note}" for note in withheld_notes)
    return {
        "name": check.name,
        "number": str(number),
        "score": check.points,
        "max_score": check.max_points,
        "status": "passed" if check.passed else "failed",
        "output": output,
        "output_format": "md",
        "visibility": VISIBLE if check.public else HIDDEN_UNTIL_PUBLISHED,
    }


def _summary(result: SubmissionResult, assignment: Assignment) -> str:
    """The top-level output. The spec does not say that the top-level visibility hides it, so it
    is written for a student before publication: from the public view and the number of hidden
    checks only, never the total while a check is hidden."""
    view, hidden = result.public_view(), result.hidden_checks
    score = "Your total score will be shown when grades are published." if hidden else f"Score: {out_of(result.total, result.max_total)}"
    total_adjustment = view.adjustment(TOTAL)  # the public view has none while a check is hidden
    if total_adjustment is not None:
        score += f" ({adjustment_text(total_adjustment)})"
    lines = [f"**{assignment.title}**", "", score]
    if result.status == INVALID:
        lines += ["", f"Your submission could not be graded: {view.error}", ""]
        lines.append(f"Upload the notebook `{assignment.notebook}` (or a `.py` script) and submit again.")
        return "\n".join(lines)
    if hidden:
        lines += ["", f"{hidden} more check{'s' if hidden > 1 else ''} will be shown when grades are published."]
    if view.notes:
        lines += ["", "Notes on your code:", ""] + [f"- {note}" for note in view.notes]
    return "\n".join(lines)


def gradescope_json_text(result: SubmissionResult, assignment: Assignment) -> str:
    return json.dumps(gradescope_results(result, assignment), indent=2) + "\n"


def write(context: ReportContext) -> list[Path]:
    """`gradescope/<student>.json` beside the CSV report, one per submission."""
    folder = context.output_csv.parent / FOLDER
    for result in context.results:
        write_atomically(folder / f"{safe_file_stem(result.student)}.json", gradescope_json_text(result, context.assignment))
    return [folder]
