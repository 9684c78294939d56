"""A hidden check (`public = false`) is graded before submission but shown only after: no output a
student reads before then may carry its notes. Built from results types alone (no worker), so it
renders every output in well under a second."""

from __future__ import annotations

import io
import json

from conftest import FULL
from rich.console import Console

from grader.commands.notebook_selfcheck import SelfcheckReport
from grader.commands.selfcheck_outputs import SelfcheckOutputs
from grader.protocol import findings_placeholder
from grader.report.annotated_notebook import fill_findings
from grader.report.formats import FORMATS, write_reports
from grader.report.gradescope import VISIBLE, gradescope_results
from grader.report.selfcheck_html import selfcheck_html
from grader.report.selfcheck_summary import summarize
from grader.report.terminal import selfcheck_report
from grader.results import CheckResult, Note, SubmissionResult

# The words of the hidden check's notes: its own, and its child run's (every loop check is hidden).
HIDDEN_WORDS = "quixotic optimizer stepped before backward()", "zyzzyva printed 2 MB"
PUBLIC_NOTE = "x.view(-1) flattens the batch too"
NONCE = "n" * 32


def _graded_with_a_hidden_check(assignment) -> SubmissionResult:
    """Every check graded; loop.trains hidden and failed, with a note of its own and one of its group's."""
    checks = [CheckResult(name, points, points) for name, points in FULL.items() if name not in ("net.forward", "loop.trains")]
    checks.append(CheckResult("net.forward", 10, 20, reasons=["use tanh after each convolution, not ReLU"]))
    checks.append(CheckResult("loop.trains", 5, 20, public=False, reasons=["the loss did not go down"]))
    result = SubmissionResult(
        "ann", "ann.ipynb", "graded", checks=checks,
        notes=[
            Note("cell 2 skipped: it downloads data"),
            Note(PUBLIC_NOTE, check="net.forward"),
            Note(HIDDEN_WORDS[0], check="loop.trains"),
            Note(HIDDEN_WORDS[1], check="loop"),
        ],
    )  # fmt: skip
    notebook = f"<div>class Net</div>{findings_placeholder(NONCE, 'Net')}<div>def training_loop</div>{findings_placeholder(NONCE, 'training_loop')}"
    result.annotated_notebook = fill_findings(notebook, NONCE, result, assignment)  # as the pipeline does after scoring
    return result


def test_no_output_reveals_a_hidden_checks_note(cifar2, tmp_path, capsys):
    result = _graded_with_a_hidden_check(cifar2)
    notebook = tmp_path / "ann.ipynb"
    notebook.write_text("{}")

    # What a student reads before submitting or before grades are published.
    before = {}
    summary = summarize(result)
    terminal = io.StringIO()
    selfcheck_report(summary, Console(file=terminal, width=200, color_system=None))
    before["selfcheck table"] = terminal.getvalue()
    before["selfcheck table, Jupyter"] = selfcheck_html(summary)
    report = SelfcheckReport(summary, cifar2.name)  # what selfcheck() in a notebook holds and shows
    before["selfcheck() report"] = str(report) + report._repr_html_()
    ci = tmp_path / "ci"
    ci.mkdir()
    outputs = SelfcheckOutputs(junit=ci / "junit.xml", json_file=ci / "results.json", step_summary=ci / "summary.md", annotate=True)
    outputs.write(result, cifar2, notebook)
    before["selfcheck JSON"] = (ci / "results.json").read_text()
    before["selfcheck JUnit"] = (ci / "junit.xml").read_text()
    before["GitHub step summary"] = (ci / "summary.md").read_text()
    before["GitHub annotations"] = capsys.readouterr().out
    gradescope = gradescope_results(result, cifar2)
    before["Gradescope summary"] = gradescope["output"]
    before["Gradescope visible tests"] = json.dumps([t for t in gradescope["tests"] if t["visibility"] == VISIBLE])

    # What `grader run` writes for the instructor, who hands it back once hidden checks are revealed.
    write_reports(tuple(FORMATS), [result], tmp_path / "run" / "report.csv", cifar2)
    feedback = tmp_path / "run" / "feedback"
    after = {
        "Markdown feedback": (feedback / "ann.md").read_text(),
        "HTML feedback": (feedback / "ann.html").read_text(),
        "annotated notebook": (feedback / "ann.notebook.html").read_text(),
        "run's JSON": (tmp_path / "run" / "report.json").read_text(),
        "Gradescope once published": json.dumps([t for t in gradescope["tests"] if t["visibility"] != VISIBLE]),
    }

    with_notes = before.keys() - {"GitHub annotations", "Gradescope visible tests"}  # these give the checks' reasons only
    assert all(PUBLIC_NOTE in before[output] for output in with_notes), before  # a public check's note is shown
    leaks = {output: [words for words in HIDDEN_WORDS if words in text] for output, text in before.items()}
    assert not any(leaks.values()), leaks
    missing = {output: [words for words in HIDDEN_WORDS if words not in text] for output, text in after.items()}
    assert not any(missing.values()), missing  # the same notes do reach the outputs that show hidden checks: the check above can fail
