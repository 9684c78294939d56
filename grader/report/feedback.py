"""Per-student feedback as Markdown: score, what to fix and why, notes, extracted code, and any
instructor's override beside the check (or the score) it set."""

from __future__ import annotations

from pathlib import Path

from grader.files import safe_file_stem, write_atomically
from grader.report.annotated_notebook import notebook_href, without_colliding_notebooks
from grader.report.network_picture import NETWORK_HEADING, network_of, network_table_markdown
from grader.report.text import EXTRACTED_CODE_NOTE, OUTPUT_TAIL, adjustment_text, failing_output, out_of, points_lost
from grader.results import INVALID, TOTAL, SubmissionResult


def feedback_markdown(result: SubmissionResult, title: str, *, notebook_page: bool = False) -> str:
    """`notebook_page`: the HTML format writes the annotated notebook beside this file, so link it."""
    lines = [f"# {title}: feedback for {result.student}", ""]
    lines.append(f"Submission: `{Path(result.path).name}`  ")
    total_adjustment = result.adjustment(TOTAL)
    adjusted = f" ({adjustment_text(total_adjustment)})" if total_adjustment else ""
    lines.append(f"**Score: {out_of(result.total, result.max_total)}**{adjusted}")
    lines.append("")
    if notebook_page and result.has_annotated_notebook:
        lines += [f"Your notebook with the grader's notes: [your notebook, annotated]({notebook_href(result)})", ""]
    if result.status == INVALID:
        lines += ["This file could not be graded:", "", f"> {result.error}", ""]
        if result.notes:  # what reading the download found (which file was taken: a resubmission)
            lines += ["## Notes", ""] + [f"- {note}" for note in result.notes] + [""]
        return "\n".join(lines) + "\n"
    lines += ["| Check | Points | Result |", "|---|---:|---|"]
    for check in result.checks:
        verdict = "passed" if check.passed else "see below"
        adjustment = result.adjustment(check.name)
        if adjustment is not None:
            verdict = _table_cell(adjustment_text(adjustment)) + ("" if check.passed else "; see below")
        lines.append(f"| `{check.name}` | {out_of(check.points, check.max_points)} | {verdict} |")
    lines.append("")
    to_fix = [c for c in result.checks if not c.passed]
    if to_fix:
        lines += ["## What to fix", ""]
        for check in to_fix:
            lines.append(f"- **{check.name}** (−{points_lost(check)}):")
            lines += [f"  - {reason}" for reason in check.reasons]
        lines.append("")
    network = network_of(result)
    if network is not None:
        lines += [f"## {NETWORK_HEADING}", "", network_table_markdown(network)]
    if result.notes:
        lines += ["## Notes on your code", ""] + [f"- {note}" for note in result.notes] + [""]
    if result.extracted_source.strip():
        lines += [
            "## The code the grader used",
            "",
            EXTRACTED_CODE_NOTE,
            "",
            "```python",
            result.extracted_source.rstrip(),
            "```",
            "",
        ]
    for name, text in failing_output(result).items():
        lines += [f"## Output: {name} (last part)", "", "```", text[-OUTPUT_TAIL:].rstrip(), "```", ""]
    return "\n".join(lines)


def _table_cell(text: str) -> str:
    """Text that stays in its Markdown table cell: no line break, no bare column bar."""
    return " ".join(text.split()).replace("|", "\\|")


def write_feedback(folder: Path, results: list[SubmissionResult], title: str, *, notebook_pages: bool = False) -> None:
    """`notebook_pages`: the HTML format is written too, with the annotated notebooks to link."""
    if notebook_pages:
        results = without_colliding_notebooks(results)  # as the HTML writer: link only what it writes
    for result in results:
        write_atomically(folder / f"{safe_file_stem(result.student)}.md", feedback_markdown(result, title, notebook_page=notebook_pages))
