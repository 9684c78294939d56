"""The student's own notebook with the grader's findings beside the graded definitions:
`feedback/<student>.notebook.html`, linked from the feedback pages and the class report.

A reading child renders the submission to HTML (grader/child/notebook_render.py) and leaves
a placeholder comment, `findings_placeholder(nonce, name)`, right after the cell that defines each
graded name. Here, in the grading host, each placeholder is replaced by an escaped box of the
findings on that name. The nonce is drawn by the host for this one submission, so no text a
student wrote can pass for a placeholder.

This module never parses the rendered HTML (it is untrusted: only `str.replace` and `in` touch
it) and never imports nbconvert. It wraps the HTML in a page whose Content-Security-Policy allows
no script at all, only this module's stylesheet and `data:` images, so even markup that got past
the child's sanitizer can neither run nor fetch anything.
"""

from __future__ import annotations

import dataclasses
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pygments.formatters import HtmlFormatter

from grader.assignment import Assignment
from grader.files import safe_file_stem
from grader.protocol import MAX_NOTEBOOK_HTML_CHARS, findings_placeholder
from grader.report.content_policy import csp_hash
from grader.report.text import out_of, points_lost
from grader.results import CheckResult, Note, SubmissionResult
from grader.version import __version__

PAGE_SUFFIX = ".notebook.html"

# ---------------------------------------------------------------- in the pipeline, after scoring


def attach_annotated_notebook(result: SubmissionResult, annotation: Any, nonce: str, assignment: Assignment) -> None:
    """Put the rendered notebook, with the findings filled in, into `result.annotated_notebook`;
    when the child gave none (rendering failed, timed out, crashed), add a note saying so. The
    grade never depends on it."""
    if isinstance(annotation, dict) and isinstance(annotation.get("html"), str):
        html = annotation["html"]
        if len(html) <= MAX_NOTEBOOK_HTML_CHARS:
            result.annotated_notebook = fill_findings(html, nonce, result, assignment)
            return
        why = "it came back larger than the page's limit"
    elif isinstance(annotation, dict) and isinstance(annotation.get("error"), str):
        why = annotation["error"][:300]
    else:
        why = "the reading step gave no page"
    result.notes.append(Note(f"your notebook could not be shown with the grader's notes ({why}); your grade does not depend on it"))


def fill_findings(html: str, nonce: str, result: SubmissionResult, assignment: Assignment) -> str:
    """Replace each placeholder of this submission's nonce by the findings on its name. A graded
    name no cell defines gets its box at the top of the page."""
    unplaced = []
    for group, name in assignment.graded_by_group.items():
        placeholder = findings_placeholder(nonce, name)
        if placeholder in html:
            html = html.replace(placeholder, findings_box(result, group, name))
        else:
            unplaced.append(findings_box(result, group, name, placed=False))
    return "".join(unplaced) + html


def findings_box(result: SubmissionResult, group: str, name: str, *, placed: bool = True) -> str:
    """The findings on one graded name as escaped HTML: the reasons of its failed checks and the
    notes about it, or that all its checks passed."""
    checks = [c for c in result.checks if c.name.split(".", 1)[0] == group]
    failed = [c for c in checks if not c.passed]
    notes = _notes_on(result, group, name, checks)
    points = f"{out_of(sum(c.points for c in checks), sum(c.max_points for c in checks))} points"
    where = "" if placed else f" (no cell the grader could read defines <code>{escape(name)}</code>)"
    verdict = "all checks on this definition passed" if not failed else f"{len(failed)} of {len(checks)} checks lost points"
    kind = "grader-failed" if failed else "grader-passed"
    lines = [
        f'<aside class="grader-findings {kind}" aria-label="{escape(f"The grader on {name}")}">',
        f'<p class="grader-findings-head">Grader on <code>{escape(name)}</code>{where}: {verdict} ({points})</p>',
    ]
    if failed:
        lines.append("<ul>")
        lines += [_failed_check(check) for check in failed]
        lines.append("</ul>")
    if notes:
        lines += ['<p class="grader-findings-head">Notes</p>', "<ul>", *(f"<li>{escape(str(note))}</li>" for note in notes), "</ul>"]
    lines.append("</aside>")
    return "\n".join(lines)


def _failed_check(check: CheckResult) -> str:
    reasons = check.reasons or [check.error or "points lost"]
    items = "".join(f"<li>{escape(reason)}</li>" for reason in reasons)
    return f"<li><strong>{escape(check.name)}</strong> (−{points_lost(check)}):<ul>{items}</ul></li>"


def _notes_on(result: SubmissionResult, group: str, name: str, checks: list[CheckResult]) -> list[Note]:
    """Notes on this definition: those of its group or checks (`check` "net", "net.layers"),
    and extraction's notes that name it ("'Net' (cell 5, line 1) uses ...")."""
    subjects = {group, *(c.name for c in checks)}
    about = f"'{name}' ("
    return [note for note in result.notes if note.check in subjects or (note.check is None and note.text.startswith(about))]


def notebook_file_name(result: SubmissionResult) -> str:
    """The page's file name in feedback/, beside the student's feedback pages."""
    return safe_file_stem(result.student) + PAGE_SUFFIX


def notebook_href(result: SubmissionResult, *, from_report: bool = False) -> str:
    """The page's address from a feedback page, or from the class report beside feedback/."""
    href = quote(notebook_file_name(result))
    return f"feedback/{href}" if from_report else href


def without_colliding_notebooks(results: list[SubmissionResult]) -> list[SubmissionResult]:
    """The results, less the notebook of a student whose page would have the name of another
    student's feedback page ("bob" and "bob.notebook"): that page is neither written nor linked,
    so no student's feedback is ever replaced by someone else's notebook."""
    feedback_pages = {safe_file_stem(r.student) + ".html" for r in results}
    return [
        dataclasses.replace(r, annotated_notebook="", annotated_notebook_elsewhere=False)
        if r.has_annotated_notebook and notebook_file_name(r) in feedback_pages
        else r
        for r in results
    ]


_STYLE = (
    """
body { font-family: system-ui, sans-serif; color: #24292f; margin: 24px auto; max-width: 1100px; padding: 0 16px; }
h1 { font-size: 1.4em; }
.muted { color: #57606a; }
.cell { margin: 10px 0; }
.input, .output_area { display: flex; }
.prompt { min-width: 6.5em; padding-right: 8px; text-align: right; color: #57606a; font: 0.8em monospace; padding-top: 6px; }
.inner_cell, .output_subarea { flex: 1; min-width: 0; }
.text_cell .prompt { display: none; }
.highlight { background: #f6f8fa; border-radius: 6px; }
.highlight pre, .output_subarea pre { margin: 0; padding: 8px; overflow-x: auto; }
.output_subarea pre { white-space: pre-wrap; overflow-wrap: anywhere; }
.output_stderr { background: #fff8e5; }
.output_error { background: #fff1f0; }
.output_subarea img { max-width: 100%; }
.rendered_html table { border-collapse: collapse; }
.rendered_html th, .rendered_html td { border: 1px solid #d8dee4; padding: 2px 6px; }
.grader-findings { font-family: system-ui, sans-serif; border: 2px solid; border-left-width: 10px; border-radius: 6px;
  padding: 6px 12px; margin: 6px 0 22px 6.5em; }
.grader-findings.grader-failed { border-color: #cf222e; background: #fff8f7; }
.grader-findings.grader-passed { border-color: #1a7f37; background: #f3fff5; }
.grader-findings-head { font-weight: 600; margin: 4px 0; }
.ansi-black-fg { color: #3e424d; } .ansi-red-fg { color: #e75c58; } .ansi-green-fg { color: #00a250; }
.ansi-yellow-fg { color: #ddb62b; } .ansi-blue-fg { color: #208ffb; } .ansi-magenta-fg { color: #d160c4; }
.ansi-cyan-fg { color: #60c6c8; } .ansi-bold { font-weight: bold; }
"""
    + HtmlFormatter(style="default").get_style_defs(".highlight")
)


# No script at all, this stylesheet only, images only from data: URIs (the student's plots).
_POLICY = f"default-src 'none'; script-src 'none'; style-src {csp_hash(_STYLE)}; img-src data:; base-uri 'none'; form-action 'none'"


def notebook_page(result: SubmissionResult, assignment: Assignment) -> str:
    """The whole page of `result.annotated_notebook`, for feedback/<student>.notebook.html."""
    title = f"{assignment.title}: {result.student}'s notebook with the grader's notes"
    feedback = quote(safe_file_stem(result.student)) + ".html"
    names = " and ".join(f"<code>{escape(name)}</code>" for name in assignment.graded_names)
    head = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>Submission: <code>{escape(Path(result.path).name)}</code>, score {out_of(result.total, result.max_total)}. "
        f'The boxes after the cells that define {names} say what the grader found there; '
        f'<a href="{escape(feedback)}">your feedback</a> has the details.</p>',
        '<main class="notebook">',
    ]
    tail = ["</main>", f'<p class="muted">Written by grader {escape(__version__)}.</p>', "</body>", "</html>"]
    return "\n".join([*head, result.annotated_notebook, *tail]) + "\n"
