"""The selfcheck table as HTML, for `selfcheck()` in Jupyter: the same rows and sentences as the
terminal table (both render a SelfcheckSummary). Everything taken from a result is escaped:
reasons and notes quote the student's code and error messages."""

from __future__ import annotations

from html import escape

from grader.report.network_picture import NETWORK_HEADING, network_table_html
from grader.report.selfcheck_summary import SelfcheckSummary

_PASSED = '<span style="color:#1a7f37">passed</span>'
_CELL = 'style="text-align:left;vertical-align:top;padding:2px 10px"'


def selfcheck_html(summary: SelfcheckSummary) -> str:
    parts = ['<div class="grader-selfcheck">']
    if summary.problem:
        parts.append(f'<p style="color:#cf222e">{escape(summary.problem)}</p>')
    else:
        parts.append("<table>")
        parts.append(f'<caption style="text-align:left;font-weight:bold">{escape(summary.title)}</caption>')
        parts.append(f"<thead><tr><th {_CELL}>check</th><th {_CELL}>points</th><th {_CELL}>result</th></tr></thead>")
        parts.append("<tbody>")
        for row in summary.rows:
            verdict = _PASSED if row.passed else "<br>".join(escape(reason) for reason in row.reasons)
            parts.append(
                f"<tr><td {_CELL}><code>{escape(row.name)}</code></td>"
                f'<td style="text-align:right;vertical-align:top;padding:2px 10px">{escape(row.points)}</td>'
                f"<td {_CELL}>{verdict}</td></tr>"
            )
        parts.append("</tbody></table>")
    if summary.verdict:
        parts.append(f"<p><b>{escape(summary.verdict[0])}</b></p>")
        parts.extend(f"<p>{escape(line)}</p>" for line in summary.verdict[1:])
    if summary.network is not None and not summary.problem:
        # Inline styles: Jupyter output has no stylesheet to carry NETWORK_CSS.
        parts += [f"<p><b>{NETWORK_HEADING}</b></p>", network_table_html(summary.network, inline_styles=True)]
    if summary.notes:
        parts.append("<ul>")
        parts.extend(f'<li><span style="color:#9a6700">note:</span> {escape(note)}</li>' for note in summary.notes)
        parts.append("</ul>")
    parts.append("</div>")
    return "\n".join(parts)
