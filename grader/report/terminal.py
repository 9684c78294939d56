"""Tables for the terminal (rich): the class summary after `grader run`, the selfcheck table."""

from __future__ import annotations

from typing import Literal

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grader.report.class_statistics import class_statistics
from grader.report.selfcheck_summary import SelfcheckSummary
from grader.report.text import format_points, out_of
from grader.results import GRADED, SubmissionResult

Justify = Literal["left", "right"]

# A class larger than this gets a table of only the submissions that need a look (invalid, or
# with an error): ten thousand rows help nobody in a terminal, and cost a second or more to lay out.
MAX_STUDENT_ROWS = 50


def class_summary(results: list[SubmissionResult], console: Console) -> None:
    shown = results
    title = "Scores"
    if len(results) > MAX_STUDENT_ROWS:
        troubled = [r for r in results if r.status != GRADED or r.error]
        shown = troubled[:MAX_STUDENT_ROWS]
        title = (
            f"Scores: {len(shown)} of the {len(troubled)} submissions with an error, of {len(results)} "
            "(the report has every row)"
        )
    students = Table(title=title, show_lines=False)
    columns: tuple[tuple[str, Justify], ...] = (("student", "left"), ("status", "left"), ("total", "right"), ("error", "left"))
    for column, justify in columns:
        students.add_column(column, justify=justify, overflow="fold")
    for r in shown:
        style = "red" if r.status != GRADED else ("green" if r.total >= r.max_total else "")
        error = r.error if len(r.error) <= 90 else r.error[:87] + "..."
        students.add_row(escape(r.student), r.status, out_of(r.total, r.max_total), escape(error), style=style)
    console.print(students)
    if not results:
        return
    stats = class_statistics(results)
    assert stats is not None
    console.print(
        f"[bold]{stats.students} submissions[/bold]: mean {stats.mean:.2f}, "
        f"median {stats.median:.2f} of {format_points(stats.max_total)}"
    )
    checks = Table(title="Checks")
    check_columns: tuple[tuple[str, Justify], ...] = (("check", "left"), ("max", "right"), ("full marks", "right"), ("mean points", "right"))
    for column, justify in check_columns:
        checks.add_column(column, justify=justify)
    for check in stats.checks:
        checks.add_row(
            check.name,
            format_points(check.max_points),
            f"{check.full_marks}/{check.students} ({100 * check.full_marks_rate:.0f}%)",
            f"{check.mean_points:.2f}",
        )
    console.print(checks)


def selfcheck_report(summary: SelfcheckSummary, console: Console) -> None:
    """The selfcheck table and the sentences under it (the HTML for Jupyter renders the same)."""
    if summary.problem:
        console.print(f"[red]{escape(summary.problem)}[/red]", soft_wrap=True)
    else:
        table = Table(title=escape(summary.title))
        table.add_column("check")
        table.add_column("points", justify="right")
        table.add_column("result", overflow="fold")
        for row in summary.rows:
            verdict = "[green]passed[/green]" if row.passed else escape("\n".join(row.reasons))
            table.add_row(row.name, row.points, verdict)
        console.print(table)
    for i, line in enumerate(summary.verdict):
        console.print(f"[bold]{escape(line)}[/bold]" if i == 0 else escape(line), highlight=False)
    for note in summary.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
