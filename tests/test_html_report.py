"""The instructors' HTML class report and the students' HTML feedback pages: loss curves recorded
by the probes, escaping of everything a student controls, and the report in a real browser
(headless Chromium): no console errors, one row per student, sorting by clicking a header."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
import torch
import variants as v
from conftest import FULL

from grader.child.observe.context import LossHistory
from grader.load import Submission
from grader.observations import validate
from grader.pipeline import grade_submission
from grader.protocol import MAX_LOSS_POINTS
from grader.report.formats import DEFAULT_FORMATS, write_reports
from grader.report.html_report import class_report_html, feedback_html
from grader.report.svg_plot import nice_ticks
from grader.results import CheckResult, Note, SubmissionResult

HOSTILE_NAME = "<img src=x onerror=\"alert('&')\">"  # a file name may hold <>"'& (not /)
HOSTILE_CODE = '    """</code></pre><script>alert(2)</script>"""\n'
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium; scripts/setup.sh does as root)"
)


# ---------------------------------------------------------------- loss curves in the observations


def test_loss_history_stays_bounded_by_averaging_neighbours():
    history = LossHistory()
    for i in range(1000):
        history.add(torch.tensor(float(i)))
    seen = history.observation()
    assert len(seen["losses"]) <= MAX_LOSS_POINTS and seen["loss_stride"] == 16
    assert seen["losses"][0] == pytest.approx(sum(range(16)) / 16)  # the mean of the first 16 losses
    assert validate({"kind": "train", "initial_loss": 1.0, "final_loss": 0.5, "error": None, "equivalent": False, **seen}) is None


def test_nan_loss_is_a_gap_in_the_curve():
    history = LossHistory()
    for value in (0.7, math.nan, 0.5):
        history.add(torch.tensor(value))
    assert history.observation() == {"losses": [pytest.approx(0.7), None, pytest.approx(0.5)], "loss_stride": 1}


@pytest.mark.parametrize(
    "losses",
    [[0.5] * (MAX_LOSS_POINTS + 1), [math.nan], [math.inf], ["0.5"], [True], "0.5"],
    ids=["too long", "nan", "inf", "string", "bool", "not a list"],
)
def test_malformed_loss_curve_is_rejected(losses):
    train = {"kind": "train", "initial_loss": 1.0, "final_loss": 0.5, "error": None, "equivalent": False, "losses": losses, "loss_stride": 1}
    assert validate(train) == "malformed 'train' observation"


def test_ticks_cover_the_data():
    for low, high in [(0, 32), (0.013, 0.71), (0.5, 0.5), (-3, 1e6)]:
        ticks = nice_ticks(low, high)
        assert ticks[0] <= low and ticks[-1] >= high and ticks == sorted(set(ticks))


# ---------------------------------------------------------------- escaping


def _hostile_result() -> SubmissionResult:
    reason = "layer 1 (<b>conv</b>): expected out_channels=16 & got \"32\""
    checks = [CheckResult(name, points, points, reasons=[]) for name, points in FULL.items()]
    checks[1] = CheckResult("net.layers", 0.0, 15.0, reasons=[reason], error="<i>error</i>")
    checks[5].details = {"losses": [0.7, None, 0.5], "loss_stride": 1, "reference_losses": [0.7, 0.6, 0.5], "reference_loss_stride": 1}
    return SubmissionResult(
        student=HOSTILE_NAME,
        path=f"/subs/{HOSTILE_NAME}.ipynb",
        status="graded",
        checks=checks,
        errors=["<i>error</i>"],
        notes=[Note("cell 3: <script>alert(3)</script> skipped")],
        extracted_source="class Net(nn.Module):\n" + HOSTILE_CODE,
        output={"net stderr": "Traceback </pre><script>alert(4)</script>"},
    )


def test_everything_a_student_controls_is_escaped(cifar2):
    result = _hostile_result()
    report, feedback = class_report_html([result], cifar2), feedback_html(result, cifar2)
    for page, scripts in ((report, 1), (feedback, 0)):
        assert page.count("<script") == scripts  # only the report's own sorting script
        assert "<img" not in page and "<b>" not in page and "<i>" not in page
        assert "&lt;img src=x onerror=&quot;alert(&#x27;&amp;&#x27;)&quot;&gt;" in page
    assert "&lt;/code&gt;&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in feedback
    assert "alert(3)" in feedback and "alert(4)" in feedback  # shown, as text
    assert 'href="feedback/_img_src_x_onerror_alert_.html"' in report  # the file name written beside the .md
    assert "<svg" in feedback and "<path" in feedback  # the net.trains curve, with a gap


# ---------------------------------------------------------------- a graded cohort in a browser


class _StudentsTable(HTMLParser):
    """The rows of table#students, as lists of cell texts, plus each row's feedback link."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.links: list[str] = []
        self.header_sort: dict[str, str] = {}
        self._inside = self._in_body = self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table" and attributes.get("id") == "students":
            self._inside = True
        elif self._inside and tag == "th" and attributes.get("aria-sort"):
            self.header_sort[attributes["data-key"] or ""] = attributes["aria-sort"] or ""
        elif self._inside and tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append([])
        elif self._in_body and tag == "td":
            self.rows[-1].append("")
            self._in_cell = True
        elif self._in_body and tag == "a" and len(self.rows[-1]) == 1:
            self.links.append(attributes.get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._inside = self._in_body = False
        elif tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][-1] += data


def _browse(page: Path, *args: str, query: str = "") -> tuple[str, list[str]]:
    """Load `page` in headless Chromium: the DOM after its script ran, and the console messages."""
    assert CHROMIUM is not None
    profile = page.parent / ".chromium-profile"
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={profile}", "--dump-dom", *args, page.as_uri() + query],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return done.stdout, console


def _table(dom: str) -> _StudentsTable:
    table = _StudentsTable()
    table.feed(dom)
    return table


@pytest.fixture(scope="module")
def cohort_report(tmp_path_factory, reference_worker, cifar2) -> Path:
    """Three notebooks graded, and the reports `grader run` writes by default written from the
    results: the folder holding report.csv."""
    worker, expected = reference_worker
    folder = tmp_path_factory.mktemp("cohort")
    hostile_net = v.NET.replace("class Net(nn.Module):\n", "class Net(nn.Module):\n" + HOSTILE_CODE)
    notebooks = {
        HOSTILE_NAME: v.notebook_cells(hostile_net),  # full marks
        "alice": v.notebook_cells(v.NET_WRONG_CHANNELS),
        "zed": v.notebook_cells(loop=v.LOOP_NO_ZERO_GRAD),
    }
    results = []
    for name, cells in notebooks.items():
        path = v.write_notebook(folder / "submissions" / f"{name}.ipynb", cells)
        results.append(grade_submission(Submission(name, path), cifar2, worker, expected))
    out = folder / "out"
    write_reports(DEFAULT_FORMATS, results, out / "report.csv", cifar2)
    _RESULTS[out] = results
    return out


_RESULTS: dict[Path, list[SubmissionResult]] = {}


def _results(report_folder: Path) -> list[SubmissionResult]:
    return _RESULTS[report_folder]


def test_run_writes_the_class_report_and_feedback_pages_with_loss_curves(cohort_report):
    html = (cohort_report / "report.html").read_text()
    assert "<script src" not in html and "<link" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert html.count("<svg") == 2 + 2 * 3  # histogram, pass rates, two loss curves per student
    for stem in ("alice", "zed", "_img_src_x_onerror_alert_"):
        assert (cohort_report / "feedback" / f"{stem}.md").is_file()
        assert (cohort_report / "feedback" / f"{stem}.html").read_text().count("<svg") == 2


def test_loss_curves_reach_the_check_details_without_changing_scores(cohort_report):
    results = {r.student: {c.name: c for c in r.checks} for r in _results(cohort_report)}
    assert {name: c.points for name, c in results[HOSTILE_NAME].items()} == FULL
    for checks in results.values():
        for name in ("net.trains", "loop.trains"):
            details = checks[name].details
            assert len(details["losses"]) == 32 and details["loss_stride"] == 1  # 4 epochs of 8 batches
            assert len(details["reference_losses"]) == 32
    correct = results[HOSTILE_NAME]["loop.trains"].details
    assert correct["losses"] == pytest.approx(correct["reference_losses"])  # the same training as the reference
    assert results["zed"]["loop.trains"].details["losses"] != pytest.approx(correct["reference_losses"])


@needs_chromium
def test_report_in_a_browser_has_a_row_per_student_and_no_console_errors(cohort_report):
    page = cohort_report / "report.html"
    shot = cohort_report / "report.png"
    dom, console = _browse(page, f"--screenshot={shot}", "--window-size=1240,1600", "--hide-scrollbars")
    assert console == []
    table = _table(dom)
    assert [row[0] for row in table.rows] == [HOSTILE_NAME, "alice", "zed"]  # escaped, so shown as text
    assert dom.count("<script") == 1
    for link in table.links:
        assert (cohort_report / unquote(link)).is_file()
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_chromium
def test_clicking_a_header_sorts_the_table(cohort_report):
    page = cohort_report / "report.html"

    def by_total(table):
        return [float(row[2]) for row in table.rows]
    unsorted = by_total(_table(_browse(page)[0]))
    assert unsorted != sorted(unsorted) and unsorted != sorted(unsorted, reverse=True)

    dom, console = _browse(page, query="?click=total")
    assert console == [] and by_total(_table(dom)) == sorted(unsorted)
    assert _table(dom).header_sort == {"total": "ascending"}
    dom, console = _browse(page, query="?click=total&click=total")  # a second click: the other way
    assert console == [] and by_total(_table(dom)) == sorted(unsorted, reverse=True)
    assert _table(dom).header_sort == {"total": "descending"}
    dom, _ = _browse(page, query="?click=total&click=student")
    assert [row[0] for row in _table(dom).rows] == sorted([HOSTILE_NAME, "alice", "zed"], key=str.lower)


@needs_chromium
def test_ticking_late_only_shows_the_late_submissions(tmp_path, cifar2):
    def result(student: str, late: bool) -> SubmissionResult:
        checks = [CheckResult(name, points, points) for name, points in FULL.items()]
        return SubmissionResult(student=student, path=f"{student}.ipynb", status="graded", checks=checks, lms_id="1", late=late)

    page = tmp_path / "report.html"
    page.write_text(class_report_html([result("roejohn", True), result("doejane", False), result("leeamy", True)], cifar2))
    dom, console = _browse(page)
    assert console == [] and [row[:2] for row in _table(dom).rows] == [["roejohn", "late"], ["doejane", "on time"], ["leeamy", "late"]]
    dom, console = _browse(page, query="?tick=late-only")
    rows = re.findall(r"<tr([^>]*)>(.*?)</tr>", dom)
    shown = [re.search(r'data-value="([^"]+)"', cells).group(1) for tag, cells in rows if "data-value" in cells and "hidden" not in tag]
    assert console == [] and shown == ["roejohn", "leeamy"]


@needs_chromium
def test_console_errors_are_detected(tmp_path):
    """The browser tests' own check: a page whose script fails is caught."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    assert any("undefinedFunction" in line for line in _browse(page)[1])


@needs_chromium
def test_feedback_page_in_a_browser_shows_hostile_code_as_text(cohort_report):
    dom, console = _browse(cohort_report / "feedback" / "_img_src_x_onerror_alert_.html")
    assert console == [] and "<script" not in dom.replace("&lt;script", "")
    assert re.search(r"&lt;/code&gt;&lt;/pre&gt;&lt;script&gt;alert\(2\)", dom)
