"""Text every writer shares: how points are written, and the wording and output excerpts that
the Markdown and HTML feedback pages both show. Pure functions of results; writes nothing."""

from __future__ import annotations

from grader.results import Adjustment, CheckResult, SubmissionResult

OUTPUT_TAIL = 3000  # characters of a failing child's stderr shown to the student
EXTRACTED_CODE_NOTE = (
    "Only imports, definitions and the settings they need are taken from your notebook; "
    "top-level code (downloads, training, plots) is not run."
)


def format_points(value: float) -> str:
    """Points as people write them: `12`, `7.5`, `3.33` (at most two decimals, no trailing zeros)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def out_of(points: float, max_points: float) -> str:
    """A score as a fraction: `7.5 / 15`."""
    return f"{format_points(points)} / {format_points(max_points)}"


def points_lost(check: CheckResult) -> str:
    """What a check lost, as written after its name: `2.5` for 12.5 of 15."""
    return format_points(check.max_points - check.points)


def failing_output(result: SubmissionResult) -> dict[str, str]:
    """The children's stderr, by run, when the student has points to win back; else nothing."""
    if all(c.passed for c in result.checks):
        return {}
    return {name: text for name, text in result.output.items() if name.endswith("stderr")}


def adjustment_text(adjustment: Adjustment, *, by: str = "your instructor") -> str:
    """An override as the feedback says it beside its check or the total: "adjusted by your
    instructor from 12 to 20: <comment>". `by`: who, as the reader knows them."""
    text = f"adjusted by {by} from {format_points(adjustment.automatic)} to {format_points(adjustment.points)}"
    return f"{text}: {adjustment.comment}" if adjustment.comment else text
