"""GitHub Actions outputs of `grader selfcheck`: the Markdown table appended to the job's step
summary (`$GITHUB_STEP_SUMMARY`), and `::error` workflow commands that annotate the notebook in
the pull request's diff.

The summary renders a SelfcheckSummary, so it says what the terminal and Jupyter tables say;
annotations are written only for the checks they are given (selfcheck gives the public view).
Nothing here reads the environment: the command decides where outputs go.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from grader.report.network_picture import network_table_markdown
from grader.report.selfcheck_summary import SelfcheckSummary
from grader.report.text import out_of
from grader.results import INVALID, SubmissionResult

# ---------------------------------------------------------------- step summary


def _cell(text: str) -> str:
    """Text inside a Markdown table cell: no line breaks, no column separators, no HTML."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    return "<br>".join(line for line in text.splitlines() if line.strip()) or " "


def step_summary_markdown(summary: SelfcheckSummary, *, notebook: str, assignment: str, requirement: str = "") -> str:
    lines = [f"### {_cell(summary.title)} ({_cell(assignment)})", "", f"Notebook: `{notebook}`", ""]
    if summary.problem:
        lines += [f"**Could not be checked:** {_cell(summary.problem)}", ""]
    else:
        lines += ["| check | points | result |", "|---|---:|---|"]
        for row in summary.rows:
            verdict = "✅ passed" if row.passed else "❌ " + _cell("\n".join(row.reasons))
            lines.append(f"| `{row.name}` | {row.points} | {verdict} |")
        lines.append("")
        lines += [f"**{_cell(summary.verdict[0])}**", ""] if summary.verdict else []
        lines += [_cell(sentence) + "  " for sentence in summary.verdict[1:]]
        lines += [""] if summary.verdict[1:] else []
    if requirement:
        lines += [requirement, ""]
    if summary.network is not None and any(not row.passed for row in summary.rows):
        lines += ["<details><summary>Your network beside the reference</summary>", ""]
        lines += [network_table_markdown(summary.network), "", "</details>", ""]
    if summary.notes:
        lines += ["<details><summary>Notes about the notebook</summary>", ""]
        lines += [f"- {_cell(note)}" for note in summary.notes]
        lines += ["", "</details>", ""]
    return "\n".join(lines) + "\n"


def append_step_summary(path: Path, markdown: str) -> None:
    """GitHub collects what every step appends to the file; a step may write several parts."""
    with path.open("a", encoding="utf-8") as f:
        f.write(markdown)


# ---------------------------------------------------------------- annotations


def escape_data(text: str) -> str:
    """A workflow command's message, escaped as the Actions runner unescapes it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (file, title): `:` and `,` separate properties."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(command: str, message: str, **properties: str | int) -> str:
    fields = ",".join(f"{key}={escape_property(str(value))}" for key, value in properties.items())
    return f"::{command}{' ' + fields if fields else ''}::{escape_data(message)}"


def check_annotations(result: SubmissionResult, file: str, lines: dict[str, int], *, hidden_checks: int = 0) -> list[str]:
    """`::error` commands for the failed checks of `result`, each on the line of the notebook that
    `lines` gives for its check (else line 1), and a `::notice` saying hidden checks remain."""
    if result.status == INVALID:
        return [workflow_command("error", result.error, file=file, line=1, title="selfcheck: the notebook could not be checked")]
    commands = []
    for check in result.checks:
        if check.passed:
            continue
        title = f"selfcheck {check.name}: {out_of(check.points, check.max_points)} points"
        message = "\n".join(check.reasons) or check.error or "points lost"
        commands.append(workflow_command("error", message, file=file, line=lines.get(check.name, 1), title=title))
    if hidden_checks:
        commands.append(
            workflow_command("notice", f"{hidden_checks} hidden check(s) are graded after you submit; they are not in this score.", file=file)
        )
    return commands


# ---------------------------------------------------------------- where a definition is


_STRING_ON_LINE = re.compile(r'^\s*(?:"source"\s*:\s*)?("(?:[^"\\]|\\.)*")\s*,?\s*$')
_CELL_TYPE = re.compile(r'"cell_type"\s*:\s*"(\w+)"')


def definition_line(text: str, keyword: str, name: str, *, notebook: bool) -> int | None:
    """The 1-based line of `text` (the file's own lines, as a diff shows them) where the last
    top-level `class name` / `def name` starts, or None.

    In a notebook file each source line is a JSON string on a line of its own (nbformat writes
    it so); a definition in a code cell is preferred to the same words in a Markdown cell.
    """
    start = re.compile(rf"^{keyword}\s+{re.escape(name)}\b")
    if not notebook:
        found = [i for i, line in enumerate(text.splitlines(), 1) if start.match(line)]
        return found[-1] if found else None
    in_code = False
    code_hits: list[int] = []
    other_hits: list[int] = []
    for i, line in enumerate(text.splitlines(), 1):
        cell_type = _CELL_TYPE.search(line)
        if cell_type:
            in_code = cell_type.group(1) == "code"
            continue
        literal = _STRING_ON_LINE.match(line)
        if not literal:
            continue
        try:
            value = json.loads(literal.group(1))
        except json.JSONDecodeError:
            continue
        if any(start.match(source_line) for source_line in value.splitlines()):
            (code_hits if in_code else other_hits).append(i)
    found = code_hits or other_hits
    return found[-1] if found else None
