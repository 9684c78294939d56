"""Stage 6, score: turn comparison outcomes into points, using the assignment's point values."""

from __future__ import annotations

from grader.assignment import Assignment
from grader.compare.outcome import Outcome
from grader.results import CheckResult


def score_outcomes(outcomes: dict[str, Outcome], assignment: Assignment) -> list[CheckResult]:
    results = []
    for name, outcome in outcomes.items():
        settings = assignment.checks[name]
        fraction = min(1.0, max(0.0, outcome.fraction))
        results.append(
            CheckResult(
                name=name,
                points=round(settings.points * fraction, 2),
                max_points=settings.points,
                public=settings.public,
                reasons=list(outcome.reasons),
                error=outcome.error,
                details=dict(outcome.details),
            )
        )
    return results


def zero_scores(assignment: Assignment, reason: str) -> list[CheckResult]:
    """Every check at zero, for a submission that could not be graded at all."""
    return score_outcomes({name: Outcome.failed(reason) for name in assignment.checks}, assignment)
