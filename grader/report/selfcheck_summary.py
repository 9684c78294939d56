"""What a selfcheck tells the student, as data: one row per public check and the sentences under
the table. The terminal table (`grader selfcheck`) and the Jupyter table (`selfcheck()`) both
render this, so the wording lives in one place: what was checked, how many hidden checks are
graded later, and never "all checks passed" while some are hidden.

Hidden checks' results never enter a summary; only their number does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grader.report.network_picture import network_of
from grader.report.text import format_points, out_of
from grader.results import INVALID, SubmissionResult


@dataclass(frozen=True)
class SelfcheckRow:
    name: str
    points: str  # "7.5 / 15"
    passed: bool
    reasons: tuple[str, ...]  # one per lost point, written for the student


@dataclass(frozen=True)
class SelfcheckSummary:
    title: str
    rows: tuple[SelfcheckRow, ...]
    verdict: tuple[str, ...]  # the sentences under the table
    notes: tuple[str, ...]  # as shown, already without hidden checks' notes
    problem: str = ""  # why the submission could not be checked at all; the table is then empty
    network: dict[str, Any] | None = None  # the public net.layers check's picture of both networks (network_picture.py)

    @property
    def full_marks(self) -> bool:
        """Every check shown passed: not a promise about the hidden ones."""
        return not self.problem and all(row.passed for row in self.rows)


def summarize(result: SubmissionResult) -> SelfcheckSummary:
    title = f"selfcheck: {result.student}"
    if result.status == INVALID:
        return SelfcheckSummary(title, (), (), (), problem=f"{result.path}: {result.error}")
    hidden = result.hidden_checks
    view = result.public_view()  # also drops notes of a child run that served hidden checks only
    public = view.checks
    rows = tuple(
        SelfcheckRow(c.name, out_of(c.points, c.max_points), c.passed, tuple(c.reasons))
        for c in public
    )
    earned = format_points(sum(c.points for c in public))
    possible = format_points(sum(c.max_points for c in public))
    verdict = [f"Score on the {len(public)} check{'' if len(public) == 1 else 's'} above: {earned} / {possible}"]
    if hidden:
        verdict.append(
            f"{hidden} more {'check is' if hidden == 1 else 'checks are'} hidden and graded after you submit; "
            f"{'it is' if hidden == 1 else 'they are'} not in this score."
        )
    elif all(c.passed for c in public):
        verdict.append("All checks passed.")
    return SelfcheckSummary(title, rows, tuple(verdict), tuple(map(str, view.notes)), network=network_of(view))
