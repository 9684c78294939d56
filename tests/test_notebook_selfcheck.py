"""`from grader import selfcheck; selfcheck()` in a notebook: executed for real in a Jupyter kernel
(this virtualenv's Python, via nbclient), with assertions on what the cells display. One kernel
runs every selfcheck call, so the kernel and torch start once. The summary, HTML and script
source are also pinned without a kernel."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import variants as v
from conftest import ROOT
from nbformat.v4 import new_code_cell, new_notebook

from grader.child.cells import read_cells
from grader.commands.notebook_selfcheck import SelfcheckReport, definition_cells, program_source, show, write_program
from grader.report.selfcheck_html import selfcheck_html
from grader.report.selfcheck_summary import summarize
from grader.results import CheckResult, Note, SubmissionResult

IMPORTS = "import datetime\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\nimport torch.optim as optim"
WRONG_NET = v.NET_WRONG_CHANNELS.replace("class Net(", "class WrongNet(")
# The starter notebook's own last cell, so the cell students are given is the one executed here.
SELFCHECK = nbformat.read(str(ROOT / "assignments" / "cifar2" / "cifar2_cnn.ipynb"), as_version=4).cells[-1].source


def _kernel_spec_manager(folder: Path):
    """A kernelspec that runs this interpreter, so the kernel imports this checkout's grader."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = folder / "kernels" / "grader-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "grader test", "language": "python"}))
    return KernelSpecManager(kernel_dirs=[str(folder / "kernels")], ensure_native_kernel=False)


def _hidden_assignment(folder: Path) -> Path:
    """A copy of cifar2 whose loop.trains check is hidden from selfcheck."""
    copy = folder / "cifar2-hidden"
    shutil.copytree(ROOT / "assignments" / "cifar2", copy)
    config = copy / "assignment.toml"
    text = config.read_text()
    config.write_text(text.replace('[checks."loop.trains"]\npoints = 20', '[checks."loop.trains"]\npoints = 20\npublic = false'))
    assert "public = false" in config.read_text()
    return copy


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> list[dict[str, str]]:
    """Run one notebook in a real kernel; per selfcheck cell, its displayed text/plain and text/html."""
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    folder = tmp_path_factory.mktemp("kernel")
    hidden = _hidden_assignment(folder)
    work = folder / "work"  # the kernel's folder: one notebook, named as cifar2's
    work.mkdir()
    cells = [
        IMPORTS,
        v.NET,
        v.LOOP,
        SELFCHECK,
        WRONG_NET,
        "selfcheck(Net=WrongNet)",
        f"selfcheck(assignment={str(hidden)!r})",
    ]
    notebook = new_notebook(cells=[new_code_cell(c) for c in cells])
    nbformat.write(notebook, str(work / "cifar2_cnn.ipynb"))
    km = KernelManager(kernel_name="grader-test", kernel_spec_manager=_kernel_spec_manager(folder))
    client = NotebookClient(notebook, km=km, timeout=300, resources={"metadata": {"path": str(work)}})
    client.execute()
    shown = []
    for cell in notebook.cells:
        if "selfcheck(" not in cell.source:
            continue
        bundles = [o["data"] for o in cell.outputs if o["output_type"] == "display_data"]
        assert len(bundles) == 1, cell.outputs
        shown.append({"text": bundles[0]["text/plain"], "html": bundles[0]["text/html"]})
    return shown


def test_selfcheck_in_a_kernel_shows_the_table_and_full_marks(executed):
    shown = executed[0]
    for check in ("net.instantiate", "net.layers", "net.forward", "loop.trains"):
        assert check in shown["html"] and check in shown["text"]
    assert "<table>" in shown["html"] and "passed" in shown["html"]
    assert "selfcheck: cifar2_cnn (cifar2)" in shown["text"]
    assert "Score on the 7 checks above: 100 / 100" in shown["text"]
    assert "Score on the 7 checks above: 100 / 100" in shown["html"]
    assert "All checks passed." in shown["text"] and "All checks passed." in shown["html"]


def test_selfcheck_of_a_class_passed_by_another_name_explains_lost_points(executed):
    shown = executed[1]
    reason = "layer 1 (conv1, Conv2d): expected out_channels=16, got 32"
    assert reason in shown["text"] and reason in shown["html"]
    assert "100 / 100" not in shown["text"] and "All checks passed" not in shown["text"]


def test_selfcheck_with_hidden_checks_counts_them_and_never_says_all_passed(executed):
    shown = executed[2]
    for output in (shown["text"], shown["html"]):
        assert "Score on the 6 checks above: 80 / 80" in output
        assert "1 more check is hidden and graded after you submit" in output
        assert "all checks passed" not in output.lower()
        assert "loop.trains" not in output  # a hidden check's result is not shown


# ---------------------------------------------------------------- without a kernel


def _result_with_hidden_check() -> SubmissionResult:
    return SubmissionResult(
        student="ann",
        path="ann.ipynb",
        status="graded",
        checks=[
            CheckResult("net.layers", 7.5, 15, reasons=["layer 1 <conv1>: expected out_channels=16, got 32"]),
            CheckResult("net.forward", 20, 20),
            CheckResult("loop.trains", 0, 20, public=False, reasons=["secret reason"]),
        ],
        notes=[Note("cell 3: <b>SyntaxError</b>")],
    )


def test_summary_keeps_hidden_results_out_and_counts_them():
    summary = summarize(_result_with_hidden_check())
    assert [row.name for row in summary.rows] == ["net.layers", "net.forward"]
    assert summary.verdict == (
        "Score on the 2 checks above: 27.5 / 35",
        "1 more check is hidden and graded after you submit; it is not in this score.",
    )
    assert "secret" not in repr(summary)


def test_html_escapes_reasons_and_notes_and_text_shows_the_same_sentences():
    report = SelfcheckReport(summarize(_result_with_hidden_check()), "cifar2")
    html = selfcheck_html(report.summary)
    assert "layer 1 &lt;conv1&gt;: expected" in html and "&lt;b&gt;SyntaxError&lt;/b&gt;" in html
    assert "<conv1>" not in html and "secret" not in html
    text = str(report)
    assert "layer 1 <conv1>: expected out_channels=16, got 32" in text
    assert "1 more check is hidden and graded after you submit" in text and "secret" not in text


def test_outside_ipython_the_calling_script_is_graded_with_its_own_line_numbers(tmp_path):
    script = tmp_path / "mine.py"
    script.write_text(f"{IMPORTS}\n# %%\n{v.NET}\n# %%\n{SELFCHECK}\n")
    source = program_source({"__file__": str(script)})
    assert (source.name, source.file, source.from_kernel, source.cells) == ("mine", script, False, [script.read_text()])
    (tmp_path / "out").mkdir()
    written = read_cells(write_program(source, ["Net = MyNet\n"], tmp_path / "out"))
    # The student's cells keep their labels and lines; the definitions passed in come after them.
    assert [(c.label, c.first_line, c.source) for c in written[:-1]] == [(c.label, c.first_line, c.source) for c in read_cells(script)]
    assert written[-1].source == "# %%\nNet = MyNet\n"


def test_outside_ipython_the_table_is_printed_as_text(capsys):
    show(SelfcheckReport(summarize(_result_with_hidden_check()), "cifar2"))
    printed = capsys.readouterr().out
    assert "net.layers" in printed and "7.5 / 15" in printed and "<html" not in printed and "<td" not in printed
    assert "Score on the 2 checks above: 27.5 / 35" in printed and "secret" not in printed


def test_a_class_from_a_module_file_brings_its_module_and_an_alias(tmp_path):
    module = tmp_path / "student_models.py"
    module.write_text("import math\n\nclass MyNet:\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        from student_models import MyNet  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    assert definition_cells(MyNet, "Net", is_class=True) == [module.read_text(), "Net = MyNet\n"]
    with pytest.raises(TypeError, match="takes the class itself"):
        definition_cells(MyNet(), "Net", is_class=True)


def test_selfcheck_keeps_its_workers_between_calls_and_replaces_a_dead_one(tmp_path):
    # A student calls selfcheck() again after each fix: only the first call should pay the torch
    # import. The kept workers grade each call afresh (a wrong Net in between loses its points),
    # and a worker that died is replaced instead of failing the next call.
    from grader.assignment import load_assignment
    from grader.commands import notebook_selfcheck

    cifar2 = load_assignment(ROOT / "assignments" / "cifar2")
    script = tmp_path / "mine.py"
    caller = {"__file__": str(script)}

    def check(net: str):
        script.write_text(f"{IMPORTS}\n# %%\n{net}\n# %%\n{v.LOOP}\n")
        return notebook_selfcheck.check_definitions(assignment=cifar2, caller_globals=caller)

    try:
        assert check(v.NET).full_marks
        (kept,) = notebook_selfcheck._kept.values()
        wrong = check(v.NET_WRONG_CHANNELS)
        assert not wrong.full_marks and any("channels" in " ".join(row.reasons) for row in wrong.summary.rows)
        assert check(v.NET).full_marks
        assert list(notebook_selfcheck._kept.values()) == [kept] and kept.alive()

        kept.checks.kill()
        assert check(v.NET).full_marks
        (replacement,) = notebook_selfcheck._kept.values()
        assert replacement is not kept and replacement.alive()
    finally:
        notebook_selfcheck.close_kept_workers()
    assert not notebook_selfcheck._kept and not replacement.alive()
