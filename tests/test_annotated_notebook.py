"""The student's own notebook, annotated with the grader's findings (feedback/<student>.notebook.html):
rendered by nbconvert in the reading child, with a findings box right after the cells defining
`Net` and `training_loop`, filled in by the grading host. Real notebooks graded by the real
pipeline; hostile ones cannot run a script or forge findings; a failure to render costs the page,
never a point."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest
import variants as v
from conftest import FULL, ROOT, points
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell
from test_html_report import _browse, needs_chromium

from grader.isolate.reading import ReadingLimits, read_and_extract
from grader.load import Submission
from grader.pipeline import conclude, grade_submission, prepare
from grader.protocol import MAX_NOTEBOOK_HTML_CHARS, worker_limits
from grader.report.annotated_notebook import notebook_page
from grader.report.context import ReportContext
from grader.report.html_report import write as write_html
from grader.results import SubmissionResult

BOX = '<aside class="grader-findings'
FAKE_PLACEHOLDER = "<!--grader-findings:00112233445566778899aabbccddeeff:Net-->"
TINY_PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f80f0000010101005a4d6e0c0000000049454e44ae426082"
    )
).decode()


@pytest.fixture
def annotated(reference_worker, cifar2):
    """Grade a file through the whole pipeline as `grader run` does, annotation included."""
    worker, expected = reference_worker

    def _grade(path: Path) -> SubmissionResult:
        return grade_submission(Submission(path.stem, path), cifar2, worker, expected, annotate=True)

    return _grade


def _positions(html: str, *needles: str) -> list[int]:
    found = [html.find(needle) for needle in needles]
    assert -1 not in found, [n for n, at in zip(needles, found) if at == -1]
    return found


def _boxes(html: str) -> list[str]:
    return re.findall(r'<aside class="grader-findings.*?</aside>', html, re.DOTALL)


# ---------------------------------------------------------------- where the findings go


def test_findings_follow_the_cells_that_define_net_and_training_loop(annotated, tmp_path):
    path = v.write_notebook(tmp_path / "relu.ipynb", v.notebook_cells(v.NET_RELU, v.LOOP_NO_ZERO_GRAD))
    result = annotated(path)
    assert points(result) == {**FULL, "net.forward": 0, "loop.trains": 16}  # as without the annotation
    html = result.annotated_notebook
    # The markdown title is cell 1, so Net is cell 4 and training_loop cell 5.
    net_cell, net_box, loop_cell, loop_box, next_cell = _positions(
        html, 'id="cell-id=cell-4"', "Grader on <code>Net</code>", 'id="cell-id=cell-5"', "Grader on <code>training_loop</code>", 'id="cell-id=cell-6"'
    )
    assert net_cell < net_box < loop_cell < loop_box < next_cell
    net, loop = _boxes(html)
    assert "grader-failed" in net and "net.forward" in net and "relu" in net and "loop.trains" not in net
    assert "grader-failed" in loop and "optimizer.zero_grad()" in loop and "net." not in loop
    assert "<h1>CIFAR-2: birds vs airplanes</h1>" in html  # the student's own cells, rendered
    assert '<span class="nc">Net</span>' in html and '<span class="nf">training_loop</span>' in html


def test_correct_notebook_gets_only_passed_boxes(annotated, tmp_path):
    result = annotated(v.write_notebook(tmp_path / "correct.ipynb", v.notebook_cells()))
    assert points(result) == FULL
    boxes = _boxes(result.annotated_notebook)
    assert len(boxes) == 2 and all("grader-passed" in box and "all checks on this definition passed" in box for box in boxes)
    assert "grader-failed" not in result.annotated_notebook and "<!--" not in result.annotated_notebook


def test_script_is_shown_as_its_cells_with_the_boxes_after_the_definitions(annotated, tmp_path):
    imports = v.IMPORTS.replace("%matplotlib inline\n", "")
    path = tmp_path / "script.py"
    path.write_text("\n".join(f"# %%\n{part}" for part in (imports, v.NET_WRONG_CHANNELS, v.LOOP, v.TRAIN)))
    result = annotated(path)
    assert result.checks and points(result)["loop.trains"] == 20 and points(result)["net.layers"] < 15
    html = result.annotated_notebook
    found = _positions(
        html, 'id="cell-id=cell-2"', "Grader on <code>Net</code>", 'id="cell-id=cell-3"', "Grader on <code>training_loop</code>", 'id="cell-id=cell-4"'
    )
    assert found == sorted(found)  # Net is the script's second `# %%` cell
    assert "out_channels=16, got 32" in _boxes(html)[0]


def test_a_missing_definition_gets_its_box_at_the_top(annotated, tmp_path):
    cells = [v.IMPORTS, v.NET.replace("class Net(", "class Model("), v.LOOP]
    result = annotated(v.write_notebook(tmp_path / "model.ipynb", cells))
    first = _boxes(result.annotated_notebook)[0]
    assert result.annotated_notebook.startswith(BOX) and "no cell the grader could read defines <code>Net</code>" in first
    assert "net.instantiate" in first


# ---------------------------------------------------------------- what a student cannot do


def _hostile_notebook(path: Path) -> Path:
    markdown = (
        "# Hostile\n\n<script>document.body.setAttribute('data-pwned', 'markdown')</script>\n\n"
        "<img src=x onerror=\"document.body.setAttribute('data-pwned', 'img')\">\n\n"
        '<div class="grader-findings grader-passed">Grader on Net: all checks on this definition passed</div>\n\n'
        f"{FAKE_PLACEHOLDER}\n\n[click](javascript:document.body.setAttribute('data-pwned','link'))\n\n"
        '<style>body { display: none }</style><p style="color: red">styled</p><iframe src="https://example.org"></iframe>'
    )
    shown = new_code_cell(f'x = "{FAKE_PLACEHOLDER}"  # <script>alert(1)</script>', execution_count=3)
    shown.outputs = [
        new_output(
            "display_data",
            data={
                "text/html": "<script>document.body.setAttribute('data-pwned', 'html')</script><b>bold output</b>",
                "text/plain": "x",
            },
        ),
        new_output("display_data", data={"application/javascript": "document.body.setAttribute('data-pwned', 'js')"}),
        new_output(
            "display_data", data={"image/png": TINY_PNG}, metadata={"image/png": {"width": "1 onload=alert(1)"}}
        ),
        new_output("display_data", data={"text/html": "<p>isolated</p>"}, metadata={"text/html": {"isolated": True}}),
        new_output("stream", name="stdout", text="\x1b[38;5;208mcoloured\x1b[0m\n"),
    ]
    shown.metadata = {"grader_findings": ["<script>alert('metadata')</script>"], "tags": ['x" onmouseover="alert(1)']}
    raw = new_raw_cell(
        "<script>document.body.setAttribute('data-pwned', 'raw')</script>", metadata={"raw_mimetype": "text/html"}
    )
    notebook = new_notebook(
        cells=[
            new_markdown_cell(markdown),
            new_code_cell(v.IMPORTS),
            shown,
            raw,
            new_code_cell(v.NET),
            new_code_cell(v.LOOP),
        ]
    )
    notebook.metadata["language_info"] = {"name": "html", "pygments_lexer": "html"}
    nbformat.write(notebook, str(path))
    return path


@pytest.fixture(scope="module")
def hostile_pages(tmp_path_factory, reference_worker, cifar2) -> tuple[SubmissionResult, Path]:
    """The hostile notebook graded, and the HTML format written: the result and feedback/."""
    worker, expected = reference_worker
    folder = tmp_path_factory.mktemp("hostile")
    path = _hostile_notebook(folder / "hostile.ipynb")
    result = grade_submission(Submission("hostile", path), cifar2, worker, expected, annotate=True)
    write_html(ReportContext([result], folder / "out" / "report.csv", cifar2, frozenset({"html"})))
    return result, folder / "out" / "feedback"


def test_hostile_notebook_cannot_inject_a_script_or_forge_findings(hostile_pages, cifar2):
    result, _ = hostile_pages
    assert points(result) == FULL
    html = result.annotated_notebook
    assert not re.search(r"<\s*(script|iframe|style)", html, re.IGNORECASE)
    for trace in ("data-pwned", "onerror", "onload", "onmouseover", "javascript:", "style=", "metadata"):
        assert trace not in html, trace
    # Exactly the two real boxes: the fake box lost its class, the fake placeholder is gone or text.
    assert len(_boxes(html)) == 2 and html.count("grader-findings grader-") == 2 and "<!--" not in html
    assert "&lt;!--grader-findings:00112233445566778899aabbccddeeff:Net--&gt;" in html  # the code, shown as text
    assert "<b>bold output</b>" in html and "styled" in html and "coloured" in html  # harmless content stays
    assert "an output the page does not show (application/javascript)" in html
    page = notebook_page(result, cifar2)
    assert "default-src 'none'; script-src 'none'" in page and "<script" not in page.lower()


@needs_chromium
def test_annotated_page_in_a_browser_runs_nothing_and_logs_nothing(hostile_pages):
    _, feedback = hostile_pages
    page = feedback / "hostile.notebook.html"
    dom, console = _browse(page, f"--screenshot={feedback / 'notebook.png'}", "--window-size=1100,1600")
    assert console == []  # the cleaner left nothing for the CSP to block, and nothing failed
    assert "data-pwned" not in dom and "<iframe" not in dom
    assert dom.count(BOX) == 2 and "Grader on <code>training_loop</code>" in dom
    assert 'href="hostile.notebook.html"' in (feedback / "hostile.html").read_text()


def test_huge_outputs_are_cut_and_the_page_keeps_its_limit(annotated, tmp_path):
    notebook = new_notebook(cells=[new_markdown_cell("# Huge"), new_code_cell(v.IMPORTS)])
    loud = new_code_cell("print('x' * 3_000_000)")
    loud.outputs = [new_output("stream", name="stdout", text="x" * 3_000_000)]
    image = new_code_cell("plt.show()")
    image.outputs = [new_output("display_data", data={"image/png": base64.b64encode(os.urandom(900_000)).decode()})]
    chatty = []
    for i in range(300):
        cell = new_code_cell(f"print({i})")
        cell.outputs = [new_output("stream", name="stdout", text=f"line {i}\n" * 2000)]
        chatty.append(cell)
    notebook.cells += [loud, image, *chatty, new_code_cell(v.NET), new_code_cell(v.LOOP)]
    path = tmp_path / "huge.ipynb"
    nbformat.write(notebook, str(path))
    result = annotated(path)
    assert points(result) == FULL
    html = result.annotated_notebook
    assert len(html) <= MAX_NOTEBOOK_HTML_CHARS
    assert "2,990,000 characters of output cut" in html
    assert "[output left out (image/png, 1.2 MB): over the 300 KB limit for one output]" in html
    assert re.search(r"\d+ cells left out here: this page is limited to 2 MB", html)
    assert [("grader-passed" in box) for box in _boxes(html)] == [True, True]  # the definitions are always shown


# ---------------------------------------------------------------- a failure costs the page only


def _crash(*args):
    os.kill(os.getpid(), signal.SIGKILL)


def _stall(*args):
    time.sleep(60)


def _fail(*args):
    raise RuntimeError("staged renderer failure")


@pytest.mark.parametrize(
    ("renderer", "timeout_s", "why"),
    [
        (_fail, 20.0, "rendering it failed: RuntimeError: staged renderer failure"),
        (_crash, 20.0, "the renderer crashed (signal 9)"),
        (_stall, 3.0, "rendering it took longer than the 3 s limit for reading a submission"),
    ],
    ids=["exception", "crash", "timeout"],
)
def test_a_rendering_failure_keeps_the_points_and_says_why(
    renderer, timeout_s, why, reference_worker, cifar2, tmp_path, monkeypatch
):
    # The reading child is forked from this process here (the fork inherits the staged renderer);
    # the checks then run on the real worker and the host concludes, as in `grader run`.
    import grader.child.notebook_render

    monkeypatch.setattr(grader.child.notebook_render, "render_annotated", renderer)
    worker, expected = reference_worker
    path = v.write_notebook(tmp_path / "student.ipynb", v.notebook_cells(loop=v.LOOP_NO_ZERO_GRAD))
    prepared = prepare(Submission("student", path), cifar2, annotate=True)
    limits = worker_limits(cifar2)
    started = time.monotonic()
    extraction = read_and_extract(prepared.request, replace(ReadingLimits.from_limits(limits), timeout_s=timeout_s))
    assert time.monotonic() - started < timeout_s + 5
    groups = worker.observe(extraction["units"], cifar2.groups, limits)
    result = conclude(prepared, {"extraction": extraction, "groups": groups}, cifar2, expected)
    assert points(result) == {**FULL, "loop.trains": 16} and result.error == ""
    assert result.annotated_notebook == ""
    note = f"your notebook could not be shown with the grader's notes ({why}); your grade does not depend on it"
    assert note in map(str, result.notes)


def test_only_grader_run_asks_for_the_page_each_time_with_a_fresh_nonce(cifar2, tmp_path):
    path = v.write_notebook(tmp_path / "student.ipynb", v.notebook_cells())
    assert "annotate" not in prepare(Submission("student", path), cifar2).request  # as selfcheck prepares
    nonces = {
        prepare(Submission("student", path), cifar2, annotate=True).request["annotate"]["nonce"] for _ in range(2)
    }
    assert len(nonces) == 2 and all(re.fullmatch(r"[0-9a-f]{32}", nonce) for nonce in nonces)


def test_selfcheck_views_and_old_gradebook_entries_hold_no_annotation():
    result = SubmissionResult("s", "s.ipynb", "graded", annotated_notebook="<p>page</p>")
    assert SubmissionResult.from_json(result.to_json()) == result
    old = {key: value for key, value in result.to_json().items() if key != "annotated_notebook"}
    assert SubmissionResult.from_json(old).annotated_notebook == ""  # a result stored before the field existed
    assert result.public_view().annotated_notebook == ""


# ---------------------------------------------------------------- `grader run`


def _grader(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "grader", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )


def test_grader_run_writes_the_annotated_notebooks_and_links_them(tmp_path):
    submissions = tmp_path / "submissions"
    v.write_notebook(submissions / "ann.ipynb", v.notebook_cells())
    v.write_notebook(submissions / "ben.ipynb", v.notebook_cells(v.NET_RELU))
    (submissions / "cat.ipynb").write_text("{ not json")
    out = tmp_path / "out"
    done = _grader("run", str(submissions), "-o", str(out / "report.csv"))
    assert done.returncode == 0, done.stderr
    feedback = out / "feedback"
    assert sorted(p.name for p in feedback.glob("*.notebook.html")) == ["ann.notebook.html", "ben.notebook.html"]
    ben = (feedback / "ben.notebook.html").read_text()
    assert "Content-Security-Policy" in ben and "your forward calls relu" in ben and 'href="ben.html"' in ben
    assert 'href="ben.notebook.html"' in (feedback / "ben.html").read_text()
    assert "[your notebook, annotated](ben.notebook.html)" in (feedback / "ben.md").read_text()
    assert "annotated" not in (feedback / "cat.md").read_text()  # an invalid file has no page
    report = (out / "report.html").read_text()
    assert 'href="feedback/ann.notebook.html"' in report and 'href="feedback/cat.notebook.html"' not in report
    assert "annotated_notebook" not in json.dumps(json.loads(_grader_json(tmp_path, out)))

    # Markdown alone: the page is not written, so it is not linked; the gradebook is reused.
    alone = tmp_path / "alone"
    done = _grader(
        "run",
        str(submissions),
        "-o",
        str(alone / "report.csv"),
        "--db",
        str(out / "gradebook.sqlite"),
        "--format",
        "csv",
    )
    assert done.returncode == 0 and "0 graded, 3 reused" in done.stderr, done.stderr
    assert (
        not list((alone / "feedback").glob("*.html")) and "annotated" not in (alone / "feedback" / "ben.md").read_text()
    )


def _grader_json(tmp_path: Path, out: Path) -> str:
    """The JSON report from the stored results: the page is not part of it."""
    target = tmp_path / "json" / "report.csv"
    done = _grader(
        "run",
        str(tmp_path / "submissions"),
        "-o",
        str(target),
        "--db",
        str(out / "gradebook.sqlite"),
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    return (target.parent / "report.json").read_text()


def test_a_class_report_holds_no_notebook_text_and_fetches_each_page_as_it_writes_it(tmp_path, cifar2):
    from grader.gradebook import Gradebook, GradebookKey
    from grader.report.formats import write_reports
    from grader.results import CheckResult

    def result(student: str, page: str) -> SubmissionResult:
        checks = [CheckResult(name, points, points) for name, points in FULL.items()]
        return SubmissionResult(student, f"{student}.ipynb", "graded", checks=checks, annotated_notebook=page)

    full = [result("ann", "<p>ann's notebook</p>" * 1000), result("ben", "<p>ben's notebook</p>"), result("cat", "")]
    keys = {r.student: GradebookKey(r.student, f"{r.student}.ipynb", "hash", "fingerprint") for r in full}
    with Gradebook(tmp_path / "gradebook.sqlite") as gradebook:
        for r in full:
            gradebook.store(keys[r.student], r)
        light = [gradebook.lookup(keys[r.student], notebook=False) for r in full]
        assert [r.annotated_notebook for r in light] == ["", "", ""]
        assert [r.has_annotated_notebook for r in light] == [True, True, False]
        assert (
            gradebook.lookup(keys["ann"]) == full[0]
            and gradebook.annotated_notebook(keys["ben"]) == full[1].annotated_notebook
        )
        fetched: list[str] = []

        def notebook_text(r: SubmissionResult) -> str:
            fetched.append(r.student)
            return gradebook.annotated_notebook(keys[r.student])

        formats = ("csv", "html", "json", "gradescope")
        write_reports(formats, full, tmp_path / "from_full" / "report.csv", cifar2)
        write_reports(formats, light, tmp_path / "from_light" / "report.csv", cifar2, notebook_text=notebook_text)
    assert fetched == ["ann", "ben"]  # once each, as its page is written
    written = sorted(p.relative_to(tmp_path / "from_full") for p in (tmp_path / "from_full").rglob("*") if p.is_file())
    assert Path("feedback/ann.notebook.html") in written and Path("feedback/cat.notebook.html") not in written
    assert written == sorted(
        p.relative_to(tmp_path / "from_light") for p in (tmp_path / "from_light").rglob("*") if p.is_file()
    )
    for path in written:
        assert (tmp_path / "from_light" / path).read_bytes() == (tmp_path / "from_full" / path).read_bytes(), path
    with pytest.raises(ValueError, match="ann: the annotated notebook is elsewhere"):
        write_html(ReportContext(light, tmp_path / "no_source" / "report.csv", cifar2, frozenset({"html"})))
