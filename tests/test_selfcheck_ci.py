"""Grading pull requests in CI: `grader selfcheck --junit/--format json/--min-score`, the GitHub
step summary and annotations, hidden checks kept hidden in every output, and the shipped
workflow `assignments/<name>/github/grade.yml` run step by step with bash in a real git
repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
import variants as v
import yaml
from conftest import ROOT

from grader.commands.selfcheck import exit_status, min_score_sentence
from grader.report.github import check_annotations, definition_line, escape_data, escape_property, step_summary_markdown, workflow_command
from grader.report.junit import junit_xml
from grader.report.selfcheck_summary import summarize
from grader.results import CheckResult, Note, SubmissionResult

WORKFLOW = ROOT / "assignments" / "cifar2" / "github" / "grade.yml"


def grader(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "grader", *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=300
    )


def json_line_of(path: Path, source_line: str) -> int:
    """The line of the .ipynb file that holds `source_line` as nbformat writes it: a JSON string."""
    encoded = json.dumps(source_line + "\n")
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip().rstrip(",") == encoded)


# ---------------------------------------------------------------- the writers, without grading


def test_workflow_command_escaping_follows_github():
    assert escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    command = workflow_command("error", "line 1\nline 2: 100%", file="dir,x/nb:1.ipynb", line=7, title="net.forward: 0 / 20")
    assert command == "::error file=dir%2Cx/nb%3A1.ipynb,line=7,title=net.forward%3A 0 / 20::line 1%0Aline 2: 100%25"


def test_definition_line_points_at_the_code_cell_in_the_notebook_file(tmp_path):
    notebook = v.write_notebook(tmp_path / "nb.ipynb", ["# write `class Net` below\nx = 1", v.NET, v.LOOP])
    text = notebook.read_text()
    assert definition_line(text, "class", "Net", notebook=True) == json_line_of(notebook, "class Net(nn.Module):")
    assert definition_line(text, "def", "training_loop", notebook=True) == json_line_of(
        notebook, "def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):"
    )
    assert definition_line(text, "class", "Missing", notebook=True) is None
    script = "import torch\n\nclass Net:\n    pass\n\nclass Net(nn.Module):\n    pass\n"
    assert definition_line(script, "class", "Net", notebook=False) == 6  # the last definition wins, as in grading


def test_public_view_drops_hidden_checks_their_errors_and_output():
    result = SubmissionResult(
        "s", "s.ipynb", "graded",
        checks=[
            CheckResult("net.layers", 15, 15),
            CheckResult("loop.trains", 0, 20, public=False, reasons=["secret reason"], error="training_loop raised KeyError"),
        ],
        errors=["training_loop raised KeyError"],
        notes=[Note("cell 3 skipped"), Note("the child run printed too much", check="loop")],
        output={"net stdout": "hello", "loop stdout": "epoch 1, loss 0.3"},
    )
    view = result.public_view()
    assert [c.name for c in view.checks] == ["net.layers"]
    assert (view.total, view.max_total, view.errors, view.output) == (15, 15, [], {"net stdout": "hello"})
    assert view.notes == [Note("cell 3 skipped")]
    assert result.hidden_checks == 1 and len(result.checks) == 2  # the original is untouched
    assert summarize(result).notes == ("cell 3 skipped",)  # the terminal and Jupyter tables show the same view


HIDDEN_NOTE = Note("your loop calls the optimizer before loss.backward(), so it steps on stale gradients", check="loop.trains")


def _result_with_a_hidden_note() -> SubmissionResult:
    """A failing public net.forward and a failing hidden loop.trains, each with a note of its own."""
    return SubmissionResult(
        "s", "s.ipynb", "graded",
        checks=[
            CheckResult("net.forward", 10, 20, reasons=["use tanh after each convolution, not ReLU"]),
            CheckResult("loop.trains", 0, 20, public=False, reasons=["gradients were never cleared"]),
        ],
        notes=[
            Note("cell 2 skipped: it downloads data"),
            Note("x.view(-1) flattens the batch too", check="net.forward"),
            HIDDEN_NOTE,
            Note("printed 2 MB", check="loop"),
        ],
    )


def test_notes_withheld_for_hidden_checks_are_exactly_those_the_public_view_drops():
    result = _result_with_a_hidden_note()
    dropped = [note for note in result.notes if note not in result.public_view().notes]
    assert dropped == [HIDDEN_NOTE, Note("printed 2 MB", check="loop")]
    assert result.withheld_notes("loop.trains") == dropped  # its own note and its all-hidden group's
    assert result.withheld_notes("net.forward") == []  # public: nothing withheld
    assert result.notes_for("net.forward") == [Note("x.view(-1) flattens the batch too", check="net.forward")]


def test_junit_failure_holds_the_check_s_reasons_and_own_notes_never_a_hidden_one():
    result = _result_with_a_hidden_note()
    xml = junit_xml(result.public_view(), "cifar2", hidden_checks=result.hidden_checks)  # as selfcheck writes it
    suite = ET.fromstring(xml).find("testsuite")
    failure = next(c for c in suite.findall("testcase") if c.get("name") == "net.forward").find("failure")
    assert "use tanh after each convolution" in failure.get("message")
    assert failure.text.splitlines() == ["use tanh after each convolution, not ReLU", "net.forward: x.view(-1) flattens the batch too"]
    assert "cell 2 skipped" in suite.find("system-out").text  # notes about no check stay in the suite's output
    assert "loop" not in xml and "stale gradients" not in xml
    graded = ET.fromstring(junit_xml(result, "cifar2")).find("testsuite")  # the full result, as after publication
    trains = next(c for c in graded.findall("testcase") if c.get("name") == "loop.trains").find("failure")
    assert str(HIDDEN_NOTE) in trains.text and "net.forward" not in trains.text


def test_step_summary_and_annotations_show_the_public_notes_only():
    # The step summary and annotations are on the pull request's checks page, which the student
    # reads before grades are published: public view only.
    result = _result_with_a_hidden_note()
    markdown = step_summary_markdown(summarize(result), notebook="nb.ipynb", assignment="cifar2")
    assert "net.forward: x.view(-1) flattens the batch too" in markdown and "cell 2 skipped" in markdown
    assert "loop" not in markdown and "stale gradients" not in markdown
    commands = "\n".join(check_annotations(result.public_view(), "nb.ipynb", {}, hidden_checks=result.hidden_checks))
    assert "use tanh" in commands and "loop" not in commands and "stale gradients" not in commands


def test_min_score_decides_the_exit_status_on_the_public_score():
    result = SubmissionResult(
        "s", "s.ipynb", "graded", checks=[CheckResult("net.layers", 10, 15), CheckResult("loop.trains", 0, 20, public=False)]
    )
    assert [exit_status(result, m) for m in (None, 10, 10.5, 0)] == [1, 0, 1, 0]
    assert min_score_sentence(result, 10) == "Required score: 10 of the 15 public points: reached."
    assert min_score_sentence(result, 16).endswith("(More than the public checks can give: this requirement cannot be met.)")
    invalid = SubmissionResult("s", "s.ipynb", "invalid", checks=[CheckResult("net.layers", 0, 15)])
    assert exit_status(invalid, 0) == 2


# ---------------------------------------------------------------- selfcheck's CI outputs


@dataclass
class CIRun:
    done: subprocess.CompletedProcess[str]
    folder: Path
    notebook: Path


def _ci_env(folder: Path) -> dict[str, str]:
    return {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(folder / "summary.md"), "GITHUB_WORKSPACE": str(folder)}


@pytest.fixture(scope="module")
def hidden_checks_run(tmp_path_factory) -> CIRun:
    """Two hidden checks (net.params, loop.trains); the student loses the public net.forward
    (ReLU for tanh) and the hidden loop.trains (no zero_grad): 45 of the 65 public points."""
    folder = tmp_path_factory.mktemp("hidden")
    assignment = folder / "assignment"
    shutil.copytree(ROOT / "assignments" / "cifar2", assignment)
    config = assignment / "assignment.toml"
    text = config.read_text()
    for check, points in (("net.params", 15), ("loop.trains", 20)):
        text = text.replace(f'[checks."{check}"]\npoints = {points}\n', f'[checks."{check}"]\npoints = {points}\npublic = false\n')
    config.write_text(text)
    notebook = v.write_notebook(folder / "work" / "cifar2_cnn.ipynb", v.notebook_cells(v.NET_RELU, v.LOOP_NO_ZERO_GRAD))
    done = grader(
        "selfcheck", "work/cifar2_cnn.ipynb", "--assignment", str(assignment), "--format", "json", "--junit", "out/results.xml",
        "--min-score", "45", cwd=folder, env=_ci_env(folder),
    )
    return CIRun(done, folder, notebook)


def test_hidden_checks_are_counted_but_never_shown(hidden_checks_run):
    done, folder = hidden_checks_run.done, hidden_checks_run.folder
    assert done.returncode == 0, done.stderr  # points lost, but --min-score 45 is reached
    assert "Required score: 45 of the 65 public points: reached." in done.stderr
    document = json.loads(done.stdout)
    submission = document["submissions"][0]
    assert document["hidden_checks"] == 2
    assert [c["name"] for c in submission["checks"]] == ["net.instantiate", "net.layers", "net.shapes", "net.forward", "net.trains"]
    assert (submission["total"], submission["max_total"]) == (45, 65)
    assert "loop stdout" not in submission["output"]  # the training run of a hidden check
    summary = (folder / "summary.md").read_text()
    junit = (folder / "out" / "results.xml").read_text()
    outputs = {"json": done.stdout, "terminal": done.stderr, "summary": summary, "junit": junit}
    for where, text in outputs.items():
        for secret in ("net.params", "loop.trains", "gradients were never cleared", "All checks passed"):
            assert secret not in text, f"{secret!r} revealed in the {where} output"
    assert "Score on the 5 checks above: 45 / 65" in summary and "2 more checks are hidden and graded after you submit" in summary
    assert "2 more checks are hidden" in done.stderr


def test_json_goes_to_stdout_alone_and_annotations_to_stderr(hidden_checks_run):
    done = hidden_checks_run.done
    json.loads(done.stdout)  # nothing but the document
    assert "::notice file=work/cifar2_cnn.ipynb::2 hidden check(s) are graded after you submit" in done.stderr
    assert "::error file=work/cifar2_cnn.ipynb,line=" in done.stderr and done.stderr.count("::error") == 1  # net.forward


def test_junit_counts_hidden_checks_as_one_skipped_case(hidden_checks_run):
    suite = ET.parse(hidden_checks_run.folder / "out" / "results.xml").getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["net.instantiate", "net.layers", "net.shapes", "net.forward", "net.trains", "hidden checks"]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("6", "1", "1")
    assert cases[-1].find("skipped").get("message") == "2 hidden check(s) are graded after you submit"


@pytest.fixture(scope="module")
def unusable_run(tmp_path_factory) -> CIRun:
    folder = tmp_path_factory.mktemp("unusable")
    notebook = folder / "cifar2_cnn.ipynb"
    notebook.write_text("not json at all")
    done = grader(
        "selfcheck", "cifar2_cnn.ipynb", "--assignment", "cifar2", "--min-score", "0", "--junit", "r.xml",
        "--format", "json", "-o", "r.json", cwd=folder, env=_ci_env(folder),
    )
    return CIRun(done, folder, notebook)


def test_unusable_notebook_exits_2_even_with_min_score_and_says_why_everywhere(unusable_run):
    done, folder = unusable_run.done, unusable_run.folder
    assert done.returncode == 2
    assert re.search(r"^::error file=cifar2_cnn\.ipynb,line=1,title=selfcheck%3A the notebook could not be checked::.*invalid JSON", done.stdout, re.M)
    suite = ET.parse(folder / "r.xml").getroot().find("testsuite")
    assert suite.get("errors") == "7" and all(case.find("error") is not None for case in suite.findall("testcase"))
    assert json.loads((folder / "r.json").read_text())["submissions"][0]["status"] == "invalid"
    assert "Could not be checked" in (folder / "summary.md").read_text()


def test_output_without_json_format_is_refused(tmp_path):
    done = grader("selfcheck", "x.ipynb", "-o", "out.json", cwd=tmp_path)
    assert done.returncode == 2 and "--output needs --format json" in done.stderr


# ---------------------------------------------------------------- the shipped workflow, run locally


def load_workflow(path: Path) -> dict:
    workflow = yaml.safe_load(path.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as true
    return workflow


def resolve(value: object, expressions: dict[str, str]) -> str:
    """Substitute `${{ ... }}` as Actions would; an expression the test does not know fails it."""

    def one(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        assert expression in expressions, f"the local run does not know the expression {expression!r}"
        return expressions[expression]

    return re.sub(r"\$\{\{(.*?)\}\}", one, str(value))


@dataclass
class WorkflowRun:
    steps: dict[str, subprocess.CompletedProcess[str]]  # by step name, in order, up to the first failure
    summary: str
    results: Path

    @property
    def exit_code(self) -> int:
        return next((done.returncode for done in self.steps.values() if done.returncode), 0)


def run_workflow_locally(repo: Path, base_sha: str, scratch: Path, bin_dir: Path, **env_overrides: str) -> WorkflowRun:
    """Every `run:` step of the workflow's one job, with bash as Actions runs `shell: bash`, in
    order, stopping at the first failure.

    Skipped: `uses:` steps (checkout, setup-python, upload-artifact: the repository is already
    checked out here, Python is this virtualenv's), and the install step, which needs the
    network (apt-get, pip from git): `bin_dir` is put first on PATH instead, which is what that
    step provides: the `grader` of a student's install (conftest's student_python), not this checkout.
    """
    workflow = load_workflow(WORKFLOW)
    (job,) = workflow["jobs"].values()
    assert job["defaults"]["run"]["shell"] == "bash"
    scratch.mkdir(parents=True, exist_ok=True)
    summary = scratch / "summary.md"
    github = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(repo),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(scratch / "output"),
        "GITHUB_ENV": str(scratch / "env"),
        "RUNNER_TEMP": str(scratch / "runner"),
    }
    expressions = {"github.event.pull_request.base.sha": base_sha, "env.GRADER_RESULTS": workflow["env"]["GRADER_RESULTS"]}
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200", **github}
    env.pop("GRADER_ASSIGNMENTS", None)  # the installed grader's own assignments
    env.update({key: resolve(value, expressions) for key, value in {**workflow["env"], **job.get("env", {})}.items()})
    env.update(env_overrides)
    steps = {}
    for step in job["steps"]:
        if "uses" in step or step.get("id") == "install":
            continue
        script = scratch / "step.sh"
        script.write_text(step["run"])
        step_env = {**env, **{key: resolve(value, expressions) for key, value in step.get("env", {}).items()}}
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=repo, env=step_env, capture_output=True, text=True, timeout=300,
        )
        steps[step["name"]] = done
        if done.returncode:
            break
    return WorkflowRun(steps, summary.read_text() if summary.exists() else "", repo / env["GRADER_RESULTS"])


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout.strip()


def pull_request_repo(folder: Path, net: str) -> tuple[Path, str]:
    """A student's repository: the base commit holds the starter notebook, the pull request's
    commit a solution (and an unrelated change, which is not graded)."""
    repo = folder / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    shutil.copy(ROOT / "assignments" / "cifar2" / "cifar2_cnn.ipynb", repo / "cifar2_cnn.ipynb")
    (repo / "README.md").write_text("CIFAR-2 assignment\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "starter")
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "solution")
    v.write_notebook(repo / "cifar2_cnn.ipynb", v.notebook_cells(net))
    (repo / "README.md").write_text("CIFAR-2 assignment, done\n")
    git(repo, "commit", "-q", "-am", "my solution")
    return repo, base


@pytest.fixture(scope="module")
def correct_pull_request(tmp_path_factory, student_python) -> WorkflowRun:
    folder = tmp_path_factory.mktemp("correct_pr")
    repo, base = pull_request_repo(folder, v.NET)
    return run_workflow_locally(repo, base, folder / "scratch", student_python.parent)


@pytest.fixture(scope="module")
def wrong_pull_request(tmp_path_factory, student_python) -> tuple[WorkflowRun, Path]:
    """A solution that loses net.forward (80 / 100), with the course's min score lowered to 90."""
    folder = tmp_path_factory.mktemp("wrong_pr")
    repo, base = pull_request_repo(folder, v.NET_RELU)
    return run_workflow_locally(repo, base, folder / "scratch", student_python.parent, GRADER_MIN_SCORE="90"), repo / "cifar2_cnn.ipynb"


def test_workflow_install_step_is_the_only_one_that_needs_the_network():
    (job,) = load_workflow(WORKFLOW)["jobs"].values()
    network = re.compile(r"pip install|apt-get|git clone|curl|wget")
    assert [s.get("id") for s in job["steps"] if "run" in s and network.search(s["run"])] == ["install"]
    assert load_workflow(WORKFLOW)["on"] == {"pull_request": None}


def test_workflow_grades_the_changed_notebook_of_a_correct_pull_request(correct_pull_request):
    run = correct_pull_request
    assert run.exit_code == 0, {name: done.stdout + done.stderr for name, done in run.steps.items()}
    assert list(run.steps) == ["Find changed notebooks", "Selfcheck"]
    assert (run.results / "notebooks.txt").read_text() == "cifar2_cnn.ipynb\n"  # README.md changed too: not graded
    assert "| check | points | result |" in run.summary
    assert "| `net.forward` | 20 / 20 | ✅ passed |" in run.summary
    assert "**Score on the 7 checks above: 100 / 100**" in run.summary
    assert "Required score: 100 of the 100 public points: reached." in run.summary
    suite = ET.parse(run.results / "cifar2_cnn.xml").getroot().find("testsuite")
    assert len(suite.findall("testcase")) == 7 and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert "::error" not in run.steps["Selfcheck"].stdout


def test_workflow_fails_below_min_score_and_annotates_the_net_definition(wrong_pull_request):
    strict, notebook = wrong_pull_request
    assert strict.exit_code == 1
    selfcheck = strict.steps["Selfcheck"].stdout
    line = json_line_of(notebook, "class Net(nn.Module):")
    annotation = f"::error file=cifar2_cnn.ipynb,line={line},title=selfcheck net.forward%3A 0 / 20 points::"
    assert annotation + "your forward calls relu 3 times where the reference calls tanh" in selfcheck
    assert (
        "| `net.forward` | 0 / 20 | ❌ your forward calls relu 3 times where the reference calls tanh" in strict.summary
    )
    assert "Required score: 90 of the 100 public points: not reached." in strict.summary
    failure = (
        ET.parse(strict.results / "cifar2_cnn.xml").getroot().find("testsuite/testcase[@name='net.forward']/failure")
    )
    assert failure.get("message").startswith("0 / 20: your forward calls relu 3 times where the reference calls tanh")


def test_every_assignment_ships_the_same_workflow_for_its_own_name():
    cifar2 = load_workflow(WORKFLOW)
    for folder in sorted((ROOT / "assignments").iterdir()):
        if (folder / "assignment.toml").is_file():
            shipped = load_workflow(folder / "github" / "grade.yml")
            assert shipped["env"]["GRADER_ASSIGNMENT"] == folder.name
            assert {**shipped, "env": {**shipped["env"], "GRADER_ASSIGNMENT": "cifar2"}} == cifar2


def test_every_checkout_leaves_no_token_for_student_code_and_namespaces_are_opened_for_bubblewrap():
    """actions/checkout keeps its token in .git/config unless told not to, and the notebooks a
    pull request changes run in the same job; Ubuntu 24.04 refuses bubblewrap its user namespaces
    unless AppArmor's restriction is lifted. The shipped workflow and the one the docs give for
    grading a class do both."""
    docs = (ROOT / "docs" / "ci.md").read_text()
    private = yaml.safe_load(docs.split("# .github/workflows/grade-all.yml in the private grading repository\n", 1)[1].split("```", 1)[0])
    for steps in (load_workflow(ROOT / "grader" / "authoring" / "grade.yml")["jobs"]["selfcheck"]["steps"], private["jobs"]["grade"]["steps"]):
        checkouts = [step for step in steps if str(step.get("uses", "")).startswith("actions/checkout")]
        assert checkouts and all(step["with"]["persist-credentials"] is False for step in checkouts)
        commands = "\n".join(str(step.get("run", "")) for step in steps)
        assert "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0" in commands and "grader doctor" in commands
