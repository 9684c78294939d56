"""The picture of the student's network beside the reference (grader/report/network_picture.py):
what it marks (differences, missing and extra operations, where forward stopped), that every
string from student code is escaped in HTML and Markdown, that a missing or malformed detail is
not drawn, and where it appears: the feedback page (in a browser, under its CSP), the Markdown
feedback and the in-notebook selfcheck table."""

from __future__ import annotations

import copy
import re

import pytest
from conftest import FULL
from test_html_report import _browse, needs_chromium

from grader.report.content_policy import csp_hash
from grader.report.feedback import feedback_markdown
from grader.report.html_report import _STYLE, feedback_html
from grader.report.network_picture import (
    NETWORK_CSS,
    NETWORK_HEADING,
    network_of,
    network_table_html,
    network_table_markdown,
)
from grader.report.selfcheck_html import selfcheck_html
from grader.report.selfcheck_summary import summarize
from grader.results import CheckResult, SubmissionResult

HOSTILE = "<img src=x onerror=alert(1)>"


def _side(layer: str, settings: str, shape: list[int] | None, parameters: int | None = None) -> dict:
    return {"layer": layer, "settings": settings, "output_shape": shape, "parameters": parameters}


def _network() -> dict:
    """The chapter-8 network against a student's: one row of each kind the picture must show."""
    conv1 = _side("conv1 (Conv2d)", "3 → 16, kernel 3, padding 1", [64, 16, 32, 32], 448)
    rows = [
        {"reference": conv1, "student": conv1, "differs": []},
        {"reference": _side("tanh", "", [64, 16, 32, 32]), "student": _side("relu", "", [64, 16, 32, 32]), "differs": ["layer"]},
        {
            "reference": _side("conv2 (Conv2d)", "16 → 8, kernel 3, padding 1", [64, 8, 16, 16], 1160),
            "student": _side("conv2 (Conv2d)", "16 → 8, kernel 3", [64, 8, 14, 14], 1160),
            "differs": ["settings", "output_shape"],
        },
        {"reference": _side("max_pool2d", "kernel 2", [64, 8, 8, 8]), "student": None, "differs": []},
        {"reference": None, "student": _side("dropout", "p=0.5", [64, 8, 14, 14]), "differs": []},
        {
            "reference": _side("fc1 (Linear)", "512 → 32", [64, 32], 16416),
            "student": _side(HOSTILE, f"{HOSTILE} | `x`", [64, 32], 1234567),
            "differs": ["layer", "settings", "parameters"],
        },
    ]
    error = "RuntimeError: mat1 and mat2 shapes cannot be multiplied (64x1568 and 512x32) (in forward, cell 5, line 14)"
    return {"rows": rows, "truncated": False, "student_error": error}


_NO_DETAIL = object()  # a result written before the comparison stage described the networks


def _result(network: object = _NO_DETAIL, *, layers_public: bool = True) -> SubmissionResult:
    checks = [CheckResult(name, points, points) for name, points in FULL.items()]
    checks[1] = CheckResult("net.layers", 7.5, 15, public=layers_public, reasons=["layer 2: expected tanh, got relu"])
    if network is not _NO_DETAIL:
        checks[1].details = {"network": network}
    return SubmissionResult(student="ann", path="ann.ipynb", status="graded", checks=checks)


def _rows(html: str) -> list[str]:
    return re.findall(r"<tr[ >].*?</tr>", html.split("<tbody>", 1)[1], flags=re.S)


# ---------------------------------------------------------------- the HTML table


@pytest.mark.parametrize("inline", [True, False], ids=["inline styles", "classes only"])
def test_html_escapes_every_student_string(inline):
    html = network_table_html(_network(), inline_styles=inline)
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert ("style=" in html) is inline  # a page under a CSP gets classes only


def test_html_marks_differing_cells_missing_and_extra_rows_and_where_forward_stopped():
    rows = _rows(network_table_html(_network()))
    assert len(rows) == 7  # six operations and the row saying where forward stopped
    equal, substituted, settings, missing, extra, hostile, stopped = rows
    assert "nw-differs" not in equal and "≠" not in equal
    assert substituted.count("nw-differs") == 2 and "≠" in substituted  # both layer cells; the marker on the student's
    assert settings.count("nw-differs") == 4  # settings and output shape, on both sides
    assert "64×8×16×16" in settings and "64×8×14×14" in settings
    assert "nw-missing" in missing and "—" in missing and ">missing<" in missing and "title=" in missing
    assert "nw-extra" in extra and ">extra<" in extra and "dropout" in extra
    assert "1,234,567" in hostile and "16,416" in hostile
    assert "forward stopped: RuntimeError: mat1 and mat2" in stopped and 'colspan="4"' in stopped
    assert "<tfoot>" not in network_table_html(_network())


def test_html_has_a_legend_and_both_column_groups():
    html = network_table_html(_network())
    caption = re.search(r"<caption.*?</caption>", html, flags=re.S).group(0)
    assert "differs from the reference" in caption and "missing" in caption and "extra" in caption
    assert ">Reference</th>" in html and ">Your Net</th>" in html and html.count('scope="colgroup"') == 2


def test_a_truncated_forward_gets_a_footnote():
    network = _network() | {"truncated": True, "student_error": None}
    html = network_table_html(network)
    assert "<tfoot>" in html and "Only the first 6 operations" in html and "forward stopped" not in html


def test_every_class_the_table_uses_has_its_look_in_the_stylesheet():
    """The page shows the table by NETWORK_CSS alone (its CSP drops inline styles)."""
    network = _network() | {"truncated": True}
    used = {name for names in re.findall(r'class="([^"]*)"', network_table_html(network, inline_styles=False)) for name in names.split()}
    styled = set(re.findall(r"\.([a-z-]+) \{", NETWORK_CSS))
    assert used == styled


# ---------------------------------------------------------------- the Markdown table


def test_markdown_has_one_line_per_row_and_escapes_student_text():
    markdown = network_table_markdown(_network())
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 6  # header, alignment, one line per operation
    assert all(len(re.split(r"(?<!\\)\|", line)) == 11 for line in table)  # 9 columns: no stray separator
    hostile = table[-1]
    assert "<img" not in markdown and "&lt;img src=x onerror=alert(1)&gt; \\| \\`x\\`" in hostile
    assert "| **16,416** |" in hostile and "| **1,234,567** |" in hostile and "| 64×32 |" in hostile  # both sides of a difference
    assert "**relu**" in table[3] and "**tanh**" in table[3]
    assert "— (missing)" in table[5] and "dropout (extra)" in table[6]
    assert "Your forward stopped at row 6: RuntimeError" in markdown


def test_markdown_marks_an_empty_differing_cell_visibly():
    network = _network()
    network["rows"][2]["reference"]["settings"] = ""
    assert "**(none)**" in network_table_markdown(network)


# ---------------------------------------------------------------- older and malformed results


def _malformed() -> list[object]:
    good = _network()
    broken = []
    for change in (
        lambda n: n.pop("rows"),
        lambda n: n.update(rows="not a list"),
        lambda n: n["rows"].append({"reference": None, "student": None, "differs": []}),
        lambda n: n["rows"][0]["reference"].update(layer=None),
        lambda n: n["rows"][0]["student"].update(output_shape=[64, "16"]),
        lambda n: n["rows"][0]["student"].update(parameters=True),
        lambda n: n["rows"][0]["student"].update(parameters=-1),
        lambda n: n["rows"][1].update(differs="layer"),
        lambda n: n.update(truncated="yes"),
        lambda n: n.update(student_error=["RuntimeError"]),
        lambda n: n["rows"].append("conv1"),
    ):
        network = copy.deepcopy(good)
        change(network)
        broken.append(network)
    return [*broken, None, [], "network", 42]


def test_network_of_reads_a_well_formed_detail():
    assert network_of(_result(_network())) == _network()


@pytest.mark.parametrize("network", _malformed())
def test_network_of_gives_none_for_a_malformed_detail(network):
    assert network_of(_result(network)) is None


def test_network_of_gives_none_without_the_detail_or_the_check():
    assert network_of(_result()) is None  # a gradebook written before the picture existed
    assert network_of(_result(_network(), layers_public=False).public_view()) is None  # a hidden check is gone
    assert network_of(SubmissionResult("ann", "ann.ipynb", "invalid")) is None


def test_unknown_difference_names_and_differences_on_a_one_sided_row_are_ignored():
    network = _network()
    network["rows"][0]["differs"] = ["colour"]
    network["rows"][3]["differs"] = ["layer"]
    checked = network_of(_result(network))
    assert checked["rows"][0]["differs"] == [] and checked["rows"][3]["differs"] == []


# ---------------------------------------------------------------- where it appears


def test_feedback_page_shows_the_table_with_classes_only_when_the_detail_exists(cifar2):
    page = feedback_html(_result(_network()), cifar2)
    assert NETWORK_HEADING in page and 'class="grader-network"' in page
    assert page.index("What to fix") < page.index(NETWORK_HEADING)
    assert "style=" not in page.split("</head>", 1)[1]  # the CSP allows the hashed stylesheet only
    assert "<img" not in page and NETWORK_CSS in _STYLE and csp_hash(_STYLE) in page
    assert NETWORK_HEADING not in feedback_html(_result(), cifar2)
    assert NETWORK_HEADING not in feedback_html(_result([1, 2]), cifar2)


def test_markdown_feedback_shows_the_table_only_when_the_detail_exists():
    markdown = feedback_markdown(_result(_network()), "CIFAR-2")
    assert f"## {NETWORK_HEADING}" in markdown and markdown.index("## What to fix") < markdown.index(NETWORK_HEADING)
    assert "<img" not in markdown
    assert NETWORK_HEADING not in feedback_markdown(_result(), "CIFAR-2")


def test_selfcheck_shows_the_table_with_inline_styles_from_a_public_check_only():
    summary = summarize(_result(_network()))
    assert summary.network == _network()
    html = selfcheck_html(summary)
    assert NETWORK_HEADING in html and 'class="grader-network" style=' in html and "<img" not in html
    assert html.index("</table>") < html.index(NETWORK_HEADING)  # under the checks table
    hidden = summarize(_result(_network(), layers_public=False))
    assert hidden.network is None and NETWORK_HEADING not in selfcheck_html(hidden)
    assert NETWORK_HEADING not in selfcheck_html(summarize(_result()))


@needs_chromium
def test_feedback_page_with_the_table_loads_without_console_errors_or_csp_violations(tmp_path, cifar2):
    page = tmp_path / "ann.html"
    page.write_text(feedback_html(_result(_network()), cifar2))
    dom, console = _browse(page)
    assert console == []
    assert "grader-network" in dom and "<img" not in dom


@needs_chromium
def test_csp_violations_are_detected(tmp_path, cifar2):
    """The test above would see the table's inline styles blocked: Chromium reports it."""
    page = tmp_path / "inline.html"
    html = feedback_html(_result(_network()), cifar2)
    page.write_text(html.replace(network_table_html(_network(), inline_styles=False), network_table_html(_network(), inline_styles=True)))
    assert any("Content Security Policy" in line for line in _browse(page)[1])


def test_github_step_summary_folds_the_table_in_when_points_are_lost():
    from grader.report.github import step_summary_markdown

    lost = step_summary_markdown(summarize(_result(_network())), notebook="ann.ipynb", assignment="cifar2")
    assert "<summary>Your network beside the reference</summary>" in lost and "| conv1 (Conv2d) |" in lost
    full = _result(_network())
    full.checks[1] = CheckResult("net.layers", 15, 15, details={"network": _network()})
    assert "Your network beside the reference" not in step_summary_markdown(summarize(full), notebook="a", assignment="cifar2")
