"""The instructors' class report as one HTML page, `report.html` beside the CSV, and a feedback
page per student, `feedback/<student>.html` beside the Markdown one (same content, with the
loss-curve plots).

The class report shows the score histogram, the pass rate per check, a table of students that
sorts when a header is clicked (each name links to the student's feedback page; points an
instructor's override set are marked, with the grader's own and the comment on hover; where the
LMS download said who was late, a `late` column and a box that shows the late submissions only),
and each student's loss curves from the training checks next to the reference's.

Pages are self-contained: inline CSS, one inline script, inline SVG; nothing is fetched, and the
Content-Security-Policy lets only this very script and stylesheet run. Everything that comes from
a submission (names, reasons, notes, code, output) is untrusted and escaped; the script reads the
table from the DOM, so no student data is ever written inside a <script>. Like every writer here,
it consumes SubmissionResults only.
"""

from __future__ import annotations

import dataclasses
from html import escape
from pathlib import Path
from urllib.parse import quote

from grader.assignment import Assignment
from grader.files import safe_file_stem, write_atomically
from grader.report.annotated_notebook import notebook_file_name, notebook_href, notebook_page, without_colliding_notebooks
from grader.report.class_statistics import ClassStatistics, class_statistics
from grader.report.content_policy import csp_hash
from grader.report.context import ReportContext
from grader.report.network_picture import NETWORK_CSS, NETWORK_HEADING, network_of, network_table_html
from grader.report.svg_plot import (
    REFERENCE_COLOR,
    Series,
    histogram,
    horizontal_bars,
    line_chart,
)
from grader.report.text import EXTRACTED_CODE_NOTE, OUTPUT_TAIL, adjustment_text, failing_output, format_points, out_of, points_lost
from grader.results import INVALID, TOTAL, Adjustment, CheckResult, SubmissionResult
from grader.version import __version__

REPORT_NAME = "report.html"

_STYLE = """
body { font-family: system-ui, sans-serif; color: #24292f; margin: 24px auto; max-width: 1200px; padding: 0 16px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; } h3 { font-size: 1em; margin: 0 0 4px; }
.charts, .curves { display: flex; flex-wrap: wrap; gap: 12px; }
.chart { border: 1px solid #d8dee4; border-radius: 6px; }
table { border-collapse: collapse; font-size: 0.95em; }
th, td { padding: 3px 8px; border-bottom: 1px solid #d8dee4; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; }
#students th { cursor: pointer; user-select: none; background: #f6f8fa; position: sticky; top: 0; }
#students th[aria-sort="ascending"]::after { content: " \\25B2"; }
#students th[aria-sort="descending"]::after { content: " \\25BC"; }
td.full { color: #1a7f37; } td.partial { color: #9a6700; } td.zero { color: #cf222e; }
td.adjusted { font-style: italic; } .adjusted-mark { color: #8250df; }
tr.invalid td { background: #fff1f0; }
td.error { min-width: 14em; font-size: 0.9em; color: #57606a; overflow-wrap: anywhere; }
article.student { margin: 12px 0 20px; }
pre { background: #f6f8fa; padding: 10px; overflow-x: auto; border-radius: 6px; }
.muted { color: #57606a; }
""" + NETWORK_CSS  # the network picture's looks: the CSP below blocks its inline style= attributes

# Sorts the students table when a header is clicked (again: the other way), and shows only the
# late rows while the "late only" box is ticked. Test hooks: each `?click=KEY` in the page's
# address clicks that header once after loading, each `?tick=ID` that box, as a user would.
_SCRIPT = """
"use strict";
(function () {
  var table = document.getElementById("students");
  if (!table) { return; }
  var body = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  Array.prototype.forEach.call(body.rows, function (row, i) { row.setAttribute("data-order", i); });
  function key(row, index, numeric) {
    var cell = row.cells[index];
    var value = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent;
    return numeric ? parseFloat(value) : value.trim().toLowerCase();
  }
  function compare(x, y, numeric) {
    if (numeric) { return (isNaN(x) ? -Infinity : x) - (isNaN(y) ? -Infinity : y); }
    return x.localeCompare(y, undefined, { numeric: true });
  }
  function sortBy(header) {
    var index = header.cellIndex;
    var numeric = header.getAttribute("data-type") === "number";
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var order = compare(key(a, index, numeric), key(b, index, numeric), numeric);
      if (!ascending) { order = -order; }
      return order || a.getAttribute("data-order") - b.getAttribute("data-order");
    });
    rows.forEach(function (row) { body.appendChild(row); });
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  var lateOnly = document.getElementById("late-only");
  if (lateOnly) {
    lateOnly.addEventListener("change", function () {
      Array.prototype.forEach.call(body.rows, function (row) {
        row.hidden = lateOnly.checked && row.getAttribute("data-late") !== "true";
      });
    });
  }
  headers.forEach(function (header) {
    header.addEventListener("click", function () { sortBy(header); });
    header.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(header); }
    });
  });
  var query = new URLSearchParams(window.location.search);
  query.getAll("click").forEach(function (name) {
    headers.forEach(function (header) { if (header.getAttribute("data-key") === name) { header.click(); } });
  });
  query.getAll("tick").forEach(function (id) {
    var box = document.getElementById(id);
    if (box && box.type === "checkbox") { box.click(); }
  });
})();
"""


def _page(title: str, body: list[str], *, script: bool) -> str:
    policy = f"default-src 'none'; style-src {csp_hash(_STYLE)}"
    policy += f"; script-src {csp_hash(_SCRIPT)}" if script else ""
    head = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
    ]
    tail = [f'<p class="muted">Written by grader {escape(__version__)}.</p>']
    if script:
        tail.append(f"<script>{_SCRIPT}</script>")
    return "\n".join(head + body + tail + ["</body>", "</html>"]) + "\n"


def feedback_href(result: SubmissionResult) -> str:
    """Where the class report links a student's feedback page, relative to the report."""
    return "feedback/" + quote(safe_file_stem(result.student)) + ".html"


# ---------------------------------------------------------------- loss curves


_LOSS_CURVES_NOTE = (
    '<p class="muted">The loss of every training batch in the training checks, next to the reference '
    "trained the same way (same data, seed and settings). A gap means the loss was NaN or infinite.</p>"
)


def _curve(losses: list[float | None], stride: int) -> list[tuple[float, float | None]]:
    """A point per recorded loss, at the number of the last training batch it covers."""
    step = max(1, int(stride))
    return [((i + 1) * step, loss) for i, loss in enumerate(losses)]


def _loss_chart(check: CheckResult, title: str, mine: str, reference: str) -> str | None:
    details = check.details
    if "losses" not in details:
        return None  # the check stopped before training, or the result predates loss curves
    if details.get("trained_like_reference"):
        # Not trained: with the reference weights it behaves exactly like the reference, whose
        # own training run stands for it (grader/compare/net_checks.py).
        title = f"{title} — behaves like the reference, whose training is shown"
        series = [Series(reference, _curve(details["losses"], details.get("loss_stride", 1)), REFERENCE_COLOR, dashed=True)]
        return line_chart(series, title=f"{check.name}: {title}", x_label="training batch", y_label="loss (cross-entropy)")
    series = [Series(mine, _curve(details["losses"], details.get("loss_stride", 1)))]
    if details.get("reference_losses") is not None:
        series.append(
            Series(reference, _curve(details["reference_losses"], details.get("reference_loss_stride", 1)), REFERENCE_COLOR, dashed=True)
        )
    return line_chart(series, title=f"{check.name}: {title}", x_label="training batch", y_label="loss (cross-entropy)")


_TRAINING_CHECKS = ("net.trains", "loop.trains")  # the checks whose loss curves are drawn


def loss_charts(result: SubmissionResult, assignment: Assignment, *, whose: str) -> list[str]:
    """The training checks' loss curves as SVG: `whose` is "your" on a feedback page."""
    net, loop = assignment.model_class, assignment.loop_function
    titles = (
        (f"{whose} {net}, trained by {f'the reference {loop}' if loop else 'a standard training loop'}", f"{whose} {net}", f"reference {net}"),
        (f"{whose} {loop}, training a stand-in linear model", f"{whose} {loop}", f"reference {loop}"),
    )
    wanted = dict(zip(_TRAINING_CHECKS, titles, strict=True))
    charts = [_loss_chart(c, *wanted[c.name]) for c in result.checks if c.name in wanted]
    return [chart for chart in charts if chart]


# ---------------------------------------------------------------- class report


def _points_class(check: CheckResult) -> str:
    if check.passed:
        return "full"
    return "partial" if check.points > 0 else "zero"


def _score_histogram(stats: ClassStatistics) -> str:
    return histogram(stats.histogram, stats.histogram_edges(), title="Scores", x_label=f"total points (of {format_points(stats.max_total)})")


def _pass_rates(stats: ClassStatistics) -> str:
    bars = [(c.name, c.full_marks_rate, f"{100 * c.full_marks_rate:.0f}% ({c.full_marks}/{c.students})") for c in stats.checks]
    return horizontal_bars(bars, title="Full marks per check")


_ADJUSTED_MARK = '<span class="adjusted-mark">*</span>'  # beside points an instructor's override set
_ADJUSTED_LEGEND = f'<p class="muted">{_ADJUSTED_MARK} set by the instructor (an override); hover for the grader\'s points and the comment.</p>'


def _adjusted_cell(adjustment: Adjustment | None, title: str) -> tuple[str, str, str]:
    """An overridden cell's extra class, its hover text and its mark; nothing for other cells."""
    if adjustment is None:
        return "", title, ""
    said = adjustment_text(adjustment, by="the instructor")
    return " adjusted", f"{title}; {said}" if title else said, _ADJUSTED_MARK


_LATENESS = {True: "late", False: "on time", None: ""}


def _students_table(results: list[SubmissionResult], check_names: list[str]) -> list[str]:
    """The students table; with a `late` column where any result says whether it was late."""
    with_late = any(r.late is not None for r in results)
    head = ['<th data-key="student" tabindex="0">student</th>']
    if with_late:
        head.append('<th data-key="late" tabindex="0">late</th>')
    head.append('<th data-key="status" tabindex="0">status</th>')
    head.append('<th data-key="total" data-type="number" class="num" tabindex="0">total</th>')
    # <wbr>: a long check name may wrap after its dot
    head += [f'<th data-key="{escape(n)}" data-type="number" class="num" tabindex="0">{escape(n).replace(".", ".<wbr>")}</th>' for n in check_names]
    head.append('<th data-key="error" tabindex="0">error</th>')
    rows = []
    for r in results:
        checks = {c.name: c for c in r.checks}
        notebook = f' <a class="muted" href="{escape(notebook_href(r, from_report=True))}">notebook</a>' if r.has_annotated_notebook else ""
        cells = [  # data-value: sorted by the name alone, not the "notebook" link beside it
            f'<td class="student" data-value="{escape(r.student)}"><a href="{escape(feedback_href(r))}">{escape(r.student)}</a>{notebook}</td>',
            *([f"<td>{_LATENESS[r.late]}</td>"] if with_late else []),
            f"<td>{escape(r.status)}</td>",
        ]
        extra, title, mark = _adjusted_cell(r.adjustment(TOTAL), "")
        hover = f' title="{escape(title)}"' if title else ""
        cells.append(f'<td class="num{extra}" data-value="{r.total}"{hover}>{format_points(r.total)}{mark}</td>')
        for name in check_names:
            check = checks.get(name)
            if check is None:
                cells.append('<td class="num" data-value="">–</td>')
                continue
            extra, title, mark = _adjusted_cell(r.adjustment(name), "; ".join(check.reasons) or "passed")
            cells.append(
                f'<td class="num {_points_class(check)}{extra}" data-value="{check.points}" title="{escape(title)}">{format_points(check.points)}{mark}</td>'
            )
        cells.append(f'<td class="error">{escape(r.error)}</td>')
        row_class = ' class="invalid"' if r.status == INVALID else ""
        late = ' data-late="true"' if r.late else ""
        rows.append(f"<tr{row_class}{late}>" + "".join(cells) + "</tr>")
    late_filter = []
    if with_late:
        count = sum(bool(r.late) for r in results)
        late_filter = [f'<p><label><input type="checkbox" id="late-only"> show only the late submissions ({count})</label></p>']
    return [*late_filter, '<table id="students">', "<thead><tr>" + "".join(head) + "</tr></thead>", "<tbody>", *rows, "</tbody>", "</table>"]


# A class larger than this gets loss curves in its report only for students who lost training
# points (at most this many): a page with every student's curves grows by 10 kB a student.
MAX_CLASS_CURVES = 100


def class_report_html(results: list[SubmissionResult], assignment: Assignment) -> str:
    check_names = list(assignment.checks)
    title = f"{assignment.title}: class report"
    body = [f"<h1>{escape(title)}</h1>"]
    if not results:
        body.append("<p>No submissions.</p>")
        return _page(title, body, script=False)
    stats = class_statistics(results, check_names)
    assert stats is not None
    body.append(
        f"<p>{stats.students} submissions ({stats.invalid} could not be read): mean {stats.mean:.2f}, "
        f"median {stats.median:.2f} of {format_points(stats.max_total)} points.</p>"
    )
    body += ['<div class="charts">', _score_histogram(stats), _pass_rates(stats), "</div>"]
    body += ["<h2>Students</h2>", '<p class="muted">Click a column header to sort; hover over points for the reasons.</p>']
    if any(r.adjustments for r in results):
        body.append(_ADJUSTED_LEGEND)
    body += _students_table(results, check_names)
    body += ["<h2>Loss curves</h2>", _LOSS_CURVES_NOTE]
    charted = results
    if len(results) > MAX_CLASS_CURVES:
        charted = [r for r in results if any(c.name in _TRAINING_CHECKS and not c.passed for c in r.checks)][:MAX_CLASS_CURVES]
        body.append(
            f'<p class="muted">{len(results)} students: shown here are the curves of {len(charted)} who lost points on a '
            "training check. Every student's feedback page has their own.</p>"
        )
    for r in charted:
        charts = loss_charts(r, assignment, whose="student's")
        if charts:
            name = f'<a href="{escape(feedback_href(r))}">{escape(r.student)}</a>'
            body += ['<article class="student">', f"<h3>{name} <span class=\"muted\">{out_of(r.total, r.max_total)}</span></h3>"]
            body += ['<div class="curves">', *charts, "</div>", "</article>"]
    return _page(title, body, script=True)


# ---------------------------------------------------------------- feedback page


def feedback_html(result: SubmissionResult, assignment: Assignment) -> str:
    """The Markdown feedback (grader/report/feedback.py) as a page, with the loss curves."""
    title = f"{assignment.title}: feedback for {result.student}"
    body = [f"<h1>{escape(title)}</h1>", f"<p>Submission: <code>{escape(Path(result.path).name)}</code><br>"]
    total_adjustment = result.adjustment(TOTAL)
    adjusted = f" ({escape(adjustment_text(total_adjustment))})" if total_adjustment else ""
    body.append(f"<strong>Score: {out_of(result.total, result.max_total)}</strong>{adjusted}</p>")
    if result.has_annotated_notebook:
        body.append(f'<p>Your notebook with the grader\'s notes: <a href="{escape(notebook_href(result))}">{escape(Path(result.path).name)}, annotated</a></p>')
    if result.status == INVALID:
        body += ["<p>This file could not be graded:</p>", f"<blockquote>{escape(result.error)}</blockquote>"]
        if result.notes:  # what reading the download found (which file was taken: a resubmission)
            body += ["<h2>Notes</h2>", "<ul>", *(f"<li>{escape(str(note))}</li>" for note in result.notes), "</ul>"]
        return _page(title, body, script=False)
    body += ["<table>", '<thead><tr><th>Check</th><th class="num">Points</th><th>Result</th></tr></thead>', "<tbody>"]
    for check in result.checks:
        verdict = "passed" if check.passed else '<a href="#what-to-fix">see below</a>'
        adjustment = result.adjustment(check.name)
        if adjustment is not None:
            verdict = escape(adjustment_text(adjustment)) + ("" if check.passed else f"; {verdict}")
        points = out_of(check.points, check.max_points)
        body.append(f'<tr><td><code>{escape(check.name)}</code></td><td class="num {_points_class(check)}">{points}</td><td>{verdict}</td></tr>')
    body += ["</tbody>", "</table>"]
    to_fix = [c for c in result.checks if not c.passed]
    if to_fix:
        body += ['<h2 id="what-to-fix">What to fix</h2>', "<ul>"]
        for check in to_fix:
            reasons = "".join(f"<li>{escape(reason)}</li>" for reason in check.reasons)
            body.append(f"<li><strong>{escape(check.name)}</strong> (−{points_lost(check)}):<ul>{reasons}</ul></li>")
        body.append("</ul>")
    network = network_of(result)
    if network is not None:
        body += [f"<h2>{NETWORK_HEADING}</h2>", network_table_html(network, inline_styles=False)]
    charts = loss_charts(result, assignment, whose="your")
    if charts:
        body += ["<h2>Loss curves</h2>", _LOSS_CURVES_NOTE, '<div class="curves">', *charts, "</div>"]
    if result.notes:
        body += ["<h2>Notes on your code</h2>", "<ul>", *(f"<li>{escape(str(note))}</li>" for note in result.notes), "</ul>"]
    if result.extracted_source.strip():
        body += ["<h2>The code the grader used</h2>", f"<p>{escape(EXTRACTED_CODE_NOTE)}</p>"]
        body.append(f'<pre><code class="language-python">{escape(result.extracted_source.rstrip())}</code></pre>')
    for name, text in failing_output(result).items():
        body += [f"<h2>Output: {escape(name)} (last part)</h2>", f"<pre>{escape(text[-OUTPUT_TAIL:].rstrip())}</pre>"]
    return _page(title, body, script=False)


def write(context: ReportContext) -> list[Path]:
    """`grader run --format html` (a default): report.html beside the CSV report,
    feedback/<student>.html beside the Markdown feedback, and feedback/<student>.notebook.html,
    the student's notebook with the grader's notes, where it was rendered. `context.notebook_text`
    gives the notebook of a result that left it elsewhere (SubmissionResult.annotated_notebook_elsewhere),
    fetched as its page is written so that only one is held at a time. Returns the report's path."""
    folder, assignment, notebook_text = context.output_csv.parent, context.assignment, context.notebook_text
    results = without_colliding_notebooks(context.results)
    for result in results:
        write_atomically(folder / "feedback" / f"{safe_file_stem(result.student)}.html", feedback_html(result, assignment))
        if result.has_annotated_notebook:
            if not result.annotated_notebook:
                if notebook_text is None:
                    raise ValueError(f"{result.student}: the annotated notebook is elsewhere and no notebook_text was given")
                result = dataclasses.replace(result, annotated_notebook=notebook_text(result))
            write_atomically(folder / "feedback" / notebook_file_name(result), notebook_page(result, assignment))
    write_atomically(folder / REPORT_NAME, class_report_html(results, assignment))
    return [folder / REPORT_NAME]
