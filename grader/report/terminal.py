"""Tables for the terminal (rich): the class summary after `grader run`, the selfcheck table."""

from __future__ import annotations

import statistics

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grader.report.csv_report import format_points
from grader.report.selfcheck_summary import SelfcheckSummary
from grader.results import GRADED, SubmissionResult


def class_summary(results: list[SubmissionResult], console: Console) -> None:
    students = Table(title="Scores", show_lines=False)
    for column, justify in (("student", "left"), ("status", "left"), ("total", "right"), ("error", "left")):
        students.add_column(column, justify=justify, overflow="fold")
    for r in results:
        style = "red" if r.status != GRADED else ("green" if r.total >= r.max_total else "")
        error = r.error if len(r.error) <= 90 else r.error[:87] + "..."
        students.add_row(escape(r.student), r.status, f"{format_points(r.total)} / {format_points(r.max_total)}", escape(error), style=style)
    console.print(students)
    if not results:
        return
    totals = [r.total for r in results]
    console.print(
        f"[bold]{len(results)} submissions[/bold]: mean {statistics.mean(totals):.2f}, "
        f"median {statistics.median(totals):.2f} of {format_points(results[0].max_total)}"
    )
    checks = Table(title="Checks")
    for column, justify in (("check", "left"), ("max", "right"), ("full marks", "right"), ("mean points", "right")):
        checks.add_column(column, justify=justify)
    for i, first in enumerate(results[0].checks):
        column = [r.checks[i] for r in results if len(r.checks) > i]
        passed = sum(c.passed for c in column)
        checks.add_row(
            first.name,
            format_points(first.max_points),
            f"{passed}/{len(column)} ({100 * passed / len(column):.0f}%)",
            f"{statistics.mean(c.points for c in column):.2f}",
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
