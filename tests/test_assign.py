"""`grader assign`: an assignment from one solution notebook.

Real notebooks on disk, real workers: the solution's reference must earn full marks and the
student notebook 0 with a reason per check before anything is written. The three shipped
assignments come from solution notebooks in reference/, and must equal what the command makes.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import variants as v
from conftest import FULL, ROOT, assert_close_documents
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell
from rich.console import Console

from grader.assignment import available_assignments, load_assignment
from grader.authoring.regions import RegionError, solution_text, student_text
from grader.authoring.solution import read_solution
from grader.commands.assign import assign
from grader.errors import AuthoringError, ReferenceSolutionError
from grader.reference.fixtures import load_fixtures

SHIPPED = {"cifar2": "cifar2_cnn.ipynb", "mnist_relu": "digits_cnn.ipynb", "cifar2_width": "cifar2_width.ipynb"}

# A console that prints nothing, for the commands whose output these tests do not read.
QUIET = Console(file=io.StringIO())


def _parses(code: str) -> bool:
    try:
        compile(code, "<cell>", "exec")
    except SyntaxError:
        return False
    return True


# ---------------------------------------------------------------- solution regions


def test_nbgrader_and_otter_regions_become_stubs_at_their_indentation():
    cell = """\
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        ### BEGIN SOLUTION
        self.fc = nn.Linear(4, 2)
        ### END SOLUTION

    def forward(self, x):
        # BEGIN SOLUTION NO PROMPT
        return self.fc(x)
        # END SOLUTION
"""
    assert student_text(cell, "cell 1", parses=_parses) == """\
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()

    def forward(self, x):
        # YOUR CODE HERE
        raise NotImplementedError()"""
    assert "BEGIN" not in solution_text(cell, "cell 1") and "self.fc = nn.Linear(4, 2)" in solution_text(cell, "cell 1")


def test_solution_lines_keep_what_they_assign_to_and_expressions_become_ellipses():
    cell = """\
lr = 1e-2  # SOLUTION
def accuracy(correct, total):
    return correct / total  # SOLUTION
print(lr)  # SOLUTION
optimizer = optim.SGD(model.parameters(), lr=
    ### BEGIN SOLUTION
    lr
    ### END SOLUTION
)"""
    assert student_text(cell, "cell 2", parses=_parses) == """\
lr = ...
def accuracy(correct, total):
    return ...
...
optimizer = optim.SGD(model.parameters(), lr=
    ...
)"""
    assert solution_text(cell, "cell 2").splitlines()[:3] == ["lr = 1e-2", "def accuracy(correct, total):", "    return correct / total"]


def test_a_marker_at_the_margin_inside_a_function_keeps_the_stub_inside_it():
    cell = "def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n# BEGIN SOLUTION\n    pass\n# END SOLUTION\n"
    assert student_text(cell, "cell 1", parses=_parses) == (
        "def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    )


def test_markdown_answers_become_nbgrader_prompts():
    text = "Why tanh?\n\n### BEGIN SOLUTION\nIt is zero-centred.\n### END SOLUTION"
    assert student_text(text, "cell 3", markdown=True) == "Why tanh?\n\nYOUR ANSWER HERE"


@pytest.mark.parametrize(("cell", "words"), [
    ("### BEGIN SOLUTION\nx = 1\n", "line 1: BEGIN SOLUTION is never closed"),
    ("x = 1\n### END SOLUTION\n", "line 2: END SOLUTION without a BEGIN SOLUTION"),
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n", "line 2: BEGIN SOLUTION inside the region opened on line 1"),
])
def test_a_broken_region_is_named_with_its_line(cell, words):
    with pytest.raises(RegionError, match=re.escape(f"sol.ipynb, cell 4, {words}")):
        student_text(cell, "sol.ipynb, cell 4")


# ---------------------------------------------------------------- a solution notebook in every style

NET_NBGRADER = """\
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        ### BEGIN SOLUTION
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 8, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(8 * 8 * 8, 32)
        self.fc2 = nn.Linear(32, 2)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        out = F.max_pool2d(torch.tanh(self.conv1(x)), 2)
        out = F.max_pool2d(torch.tanh(self.conv2(out)), 2)
        out = out.view(-1, 8 * 8 * 8)
        out = torch.tanh(self.fc1(out))
        return self.fc2(out)
        ### END SOLUTION
"""

LOOP_OTTER = """\
def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):
    for epoch in range(1, n_epochs + 1):
        # BEGIN SOLUTION
        for imgs, labels in train_loader:
            loss = loss_fn(model(imgs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        # END SOLUTION
        print(f"epoch {epoch} done")
"""

TRAIN_SUFFIX = """\
model = Net()
optimizer = optim.SGD(model.parameters(), lr=1e-2)  # SOLUTION
training_loop(n_epochs=100, optimizer=optimizer, model=model, loss_fn=nn.CrossEntropyLoss(), train_loader=train_loader)
"""

SECRET = "assert sum(p.numel() for p in Net().parameters()) == 18090  # instructors' own check"


def solution_notebook(path: Path, *, net: str = NET_NBGRADER, config: dict | None = None) -> Path:
    """A CIFAR-2 solution notebook: config in the metadata, a hidden cell, a markdown answer."""
    notebook = new_notebook(cells=[
        new_markdown_cell("# Birds and airplanes, authored in one notebook"),
        new_code_cell(v.IMPORTS),
        new_code_cell(net),
        new_code_cell(SECRET, metadata={"tags": ["hidden"]}),
        new_code_cell(LOOP_OTTER, execution_count=3, outputs=[nbformat.v4.new_output("stream", text="epoch 1 done\n")]),
        new_code_cell(TRAIN_SUFFIX),
        new_markdown_cell("Why max pooling?\n\n### BEGIN SOLUTION\nIt keeps the strongest response.\n### END SOLUTION"),
    ])
    notebook.metadata["grader"] = config or {"model": {"input_shape": [3, 32, 32], "num_classes": 2}}
    nbformat.write(notebook, str(path))
    return path


def test_grader_assign_writes_the_student_notebook_reference_config_and_fixtures(tmp_path):
    solution = solution_notebook(tmp_path / "birds_solution.ipynb")
    folder = tmp_path / "course" / "assignments" / "birds"
    done = subprocess.run(
        [sys.executable, "-m", "grader", "assign", str(solution), "-o", str(folder)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    # The verification table: the reference earns everything, the handed-out notebook nothing, with reasons.
    table = done.stderr
    assert re.search(r"total\s+│\s+100 / 100\s+│\s+0 / 100", table), table
    assert table.count("Not implemented yet") >= 2 and "net.instantiate" in table

    student = nbformat.read(str(folder / "birds.ipynb"), as_version=4)  # named after the folder
    sources = "\n".join(cell.source for cell in student.cells)
    for solution_line in ("nn.Conv2d(3, 16", "optimizer.step()", "lr=1e-2", "strongest response", "18090"):
        assert solution_line not in sources
    for stub in ("# YOUR CODE HERE\n        raise NotImplementedError()", "optimizer = ...", "YOUR ANSWER HERE"):
        assert stub in sources
    assert 'print(f"epoch {epoch} done")' in sources  # what is outside a region stays
    assert all(cell.get("outputs", []) == [] and cell.get("execution_count") is None for cell in student.cells if cell.cell_type == "code")
    assert student.cells[-1].source == 'from grader import selfcheck\nselfcheck(assignment="birds")'
    assert "grader" not in student.metadata

    reference = (tmp_path / "course" / "reference" / "birds.py").read_text()
    assert "class Net(nn.Module)" in reference and "def training_loop(" in reference
    assert "BEGIN SOLUTION" not in reference and "18090" not in reference and "optimizer = " not in reference
    config = tomllib.loads((folder / "assignment.toml").read_text())
    assert config["assignment"] == {"name": "birds", "title": "Birds and airplanes, authored in one notebook", "notebook": "birds.ipynb"}
    assert config["model"]["class_name"] == "Net" and config["loop"]["function_name"] == "training_loop"
    assert config["loop"]["signature"] == ["n_epochs", "optimizer", "model", "loss_fn", "train_loader"]
    fixtures = (folder / "fixtures.json").read_text()
    assert json.loads(fixtures)["assignment"] == "birds" and "nn.Conv2d" not in fixtures
    assert not list(folder.parent.glob(".*"))  # the staging folder is gone
    workflow = folder / "github" / "grade.yml"
    assert "  GRADER_ASSIGNMENT: birds\n" in workflow.read_text()
    workflow.write_text(workflow.read_text().replace("YOUR-COURSE", "our-course"))  # the course's own settings

    # Run again after an edit that changes the student notebook: refused, then replaced with --force.
    solution_notebook(solution, net=NET_NBGRADER.replace("### END SOLUTION\n\n", "### END SOLUTION\n        # (the layers)\n\n", 1))
    with pytest.raises(AuthoringError, match=r"birds\.ipynb exists and would change.*--force"):
        assign(solution, folder, console=QUIET)
    assign(solution, folder, force=True, console=QUIET)
    assert "# (the layers)" in (folder / "birds.ipynb").read_text()
    assert "our-course" in workflow.read_text()  # kept


def test_a_student_notebook_that_earns_points_unfilled_stops_before_writing(tmp_path):
    given_net = re.sub(r" *### (BEGIN|END) SOLUTION\n", "", NET_NBGRADER)
    solution = solution_notebook(tmp_path / "given.ipynb", net=given_net)
    folder = tmp_path / "assignments" / "given"
    with pytest.raises(AuthoringError) as raised:
        assign(solution, folder, console=QUIET)
    message = str(raised.value)
    assert "earns points before any work is done" in message
    assert "net.layers (15 of 15)" in message and "loop.trains" not in message
    assert not folder.exists() and not (tmp_path / "reference").exists()


@pytest.mark.parametrize(("config", "net", "words"), [
    ({"model": {"num_classes": 2}}, NET_NBGRADER, "does not give [model] input_shape; the grader does not guess"),
    ({"model": {"input_shape": [3, 32, 32], "num_classes": 2}}, NET_NBGRADER + "\n\nclass Other(nn.Module):\n    pass\n",
     "cannot tell which nn.Module class students write (found: Net, Other); name it in the config as [model] class_name"),
    ({"model": {"input_shape": [3, 32, 32], "num_classes": 2, "class_name": "Model"}}, NET_NBGRADER,
     "the solution defines no nn.Module class 'Model'"),
    ({"model": {"input_shape": [3, 32, 32], "num_classes": 1}}, NET_NBGRADER, "key 'model.num_classes'"),
    ({"model": {"input_shape": [3, 32, 32], "num_classes": 2}}, NET_NBGRADER.replace("        ### END SOLUTION\n\n", "\n", 1),
     "cell 3, line 11: BEGIN SOLUTION inside the region opened on line 4"),
], ids=["no_input_shape", "two_networks", "named_class_missing", "invalid_setting", "unclosed_region"])
def test_what_stops_grader_assign_is_named_and_nothing_is_written(tmp_path, config, net, words):
    solution = solution_notebook(tmp_path / "sol.ipynb", net=net, config=config)
    folder = tmp_path / "assignments" / "sol"
    with pytest.raises(AuthoringError, match=re.escape(words)) as raised:
        assign(solution, folder, console=QUIET)
    assert str(solution) in str(raised.value) and ".assign" not in str(raised.value)  # never the temporary folder
    assert not folder.exists()


def test_a_folder_outside_the_assignments_layout_keeps_its_reference_inside_and_grader_run_finds_it(tmp_path):
    solution = solution_notebook(tmp_path / "birds_solution.ipynb")
    folder = tmp_path / "courses" / "week8" / "birds"
    out = io.StringIO()
    made = assign(solution, folder, console=Console(file=out, width=300))
    assert made.reference == folder / "reference.py" and made.reference.is_file()
    assert not (tmp_path / "courses" / "reference").exists()  # never a folder the instructor did not name
    assert "birds/reference.py is the solution: leave it out of what students get" in out.getvalue()
    assert load_assignment(folder).default_reference_path() == made.reference
    elsewhere = tmp_path / "private" / "birds_reference.py"
    again = assign(solution, tmp_path / "courses" / "week9" / "birds", console=QUIET, reference_path=elsewhere)
    assert again.reference == elsewhere and elsewhere.is_file() and not (again.folder / "reference.py").exists()


def test_a_refused_setting_is_shown_as_made_and_where_to_write_it(tmp_path):
    solution = solution_notebook(tmp_path / "sol.ipynb", config={"model": {"input_shape": [3, 32, 32], "num_classes": 1}})
    with pytest.raises(AuthoringError) as raised:
        assign(solution, tmp_path / "assignments" / "sol", console=QUIET)
    assert str(raised.value) == (
        f"{solution}, notebook metadata 'grader': key 'model.num_classes': must be at least 2, got 1; the config made from "
        "the notebook has num_classes = 1. Write the setting in the config under [model] as `num_classes = ...`"
    )


def test_a_reference_that_fails_its_own_check_names_the_solutions_config(tmp_path):
    # A learning rate of 0: the reference's own training cannot lower the loss.
    config = {"model": {"input_shape": [3, 32, 32], "num_classes": 2}, "training": {"learning_rate": 0.0}}
    solution = solution_notebook(tmp_path / "sol.ipynb", config=config)
    folder = tmp_path / "assignments" / "sol"
    with pytest.raises(ReferenceSolutionError) as raised:
        assign(solution, folder, console=QUIET)
    message = str(raised.value)
    assert message.startswith(f"the solution in {solution} fails its own check "), message
    assert message.endswith(f"(adjust the settings in the config of {solution}, notebook metadata 'grader')"), message
    assert ".assign" not in message and not folder.exists() and not (tmp_path / "reference").exists()


def test_a_config_cell_and_its_comments_are_kept_and_a_second_config_is_refused(tmp_path):
    path = tmp_path / "two.ipynb"
    notebook = new_notebook(cells=[new_raw_cell("# ASSIGNMENT CONFIG\n# my notes\n[model]\ninput_shape = [1, 8, 8]\nnum_classes = 3")])
    nbformat.write(notebook, str(path))
    solution = read_solution(path)
    assert solution.config_cell == 0 and "# my notes" in solution.config_text
    notebook.metadata["grader"] = {"model": {"num_classes": 3}}
    nbformat.write(notebook, str(path))
    with pytest.raises(AuthoringError, match=re.escape("the assignment config is given more than once (cell 1, the notebook metadata)")):
        read_solution(path)


# ---------------------------------------------------------------- the shipped assignments


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_assignments_are_what_grader_assign_makes_of_their_solution_notebooks(tmp_path, name):
    folder = tmp_path / "assignments" / name
    made = assign(ROOT / "reference" / f"{name}.ipynb", folder, console=QUIET)
    committed = ROOT / "assignments" / name
    hint = f"run `grader assign reference/{name}.ipynb --force` and commit the result"
    assert made.notebook.name == SHIPPED[name]
    for generated, shipped in ((made.config, committed / "assignment.toml"), (made.notebook, committed / SHIPPED[name]),
                               (made.reference, ROOT / "reference" / f"{name}.py")):
        assert generated.read_text() == shipped.read_text(), f"{shipped} differs from what grader assign makes: {hint}"
    fixtures = (committed / "fixtures.json").read_text()
    load_fixtures(load_assignment(committed))  # selfcheck can read them as committed
    assert_close_documents(json.loads(made.fixtures.read_text()), json.loads(fixtures), f"{name} fixtures ({hint})")
    # The fixtures name the reference's steps by operation, so selfcheck can name a student's
    # differing step; its source never appears.
    for source_line in ("def forward", "class ", "torch.tanh", "F.max_pool2d(", "zero_grad", "nn.Conv2d"):
        assert source_line not in fixtures


# ---------------------------------------------------------------- the third assignment, end to end

NARROW = v.NET.replace("class Net(", "class NetWidth(")  # the chapter's first network, 16 channels


def _filled(notebook: nbformat.NotebookNode, solution: Path) -> nbformat.NotebookNode:
    """The student notebook with each stubbed code cell replaced by the solution's, as handed in."""
    answers = read_solution(solution).code_cells()
    filled = nbformat.from_dict(notebook)
    stubbed = [cell for cell in filled.cells if cell.cell_type == "code" and ("NotImplementedError" in cell.source or "= ..." in cell.source)]
    for cell in stubbed:
        first = cell.source.splitlines()[0]
        cell.source = next(a.source for a in answers if a.source.splitlines()[0] == first)
    return filled


def test_the_authored_assignment_grades_a_class_end_to_end(tmp_path):
    folder = ROOT / "assignments" / "cifar2_width"
    handed_out = nbformat.read(str(folder / "cifar2_width.ipynb"), as_version=4)
    correct = _filled(handed_out, ROOT / "reference" / "cifar2_width.ipynb")
    narrow = nbformat.from_dict(correct)
    next(c for c in narrow.cells if c.source.startswith("class NetWidth")).source = NARROW
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    for student, notebook in (("correct", correct), ("blank", handed_out), ("narrow", narrow)):
        nbformat.write(notebook, str(submissions / f"{student}.ipynb"))
    csv = tmp_path / "out" / "grades.csv"
    done = subprocess.run(
        [sys.executable, "-m", "grader", "run", str(submissions), "-o", str(csv), "--assignment", "cifar2_width"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = pd.read_csv(csv, keep_default_na=False).set_index("student")
    rows = {student: {name: float(report.loc[student, name]) for name in FULL} for student in report.index}
    assert rows["correct"] == FULL
    assert rows["blank"] == dict.fromkeys(FULL, 0)
    # 16 and 8 channels instead of 32 and 16: of four layers only fc2 matches (a quarter of net.layers;
    # of net.params, nothing for the total and a quarter of the two thirds for per-layer counts); the
    # shapes differ and the reference's weights do not load, but the narrower network trains.
    assert rows["narrow"] == {**FULL, "net.layers": 3.75, "net.shapes": 0, "net.params": 2.5, "net.forward": 0}
    feedback = (csv.parent / "feedback" / "blank.md").read_text()
    assert "Not implemented yet" in feedback and "NetWidth" in feedback
    assert feedback.count("is not implemented yet (its stub raises NotImplementedError") == 5  # each other Net check


def test_a_staged_assignment_is_not_offered_while_grader_assign_verifies_it(tmp_path):
    for folder in ("birds", ".birds.assign"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "assignment.toml").write_text("[model]\ninput_shape = [3, 32, 32]\nnum_classes = 2\n")
    assert available_assignments(tmp_path) == [tmp_path / "birds"]
