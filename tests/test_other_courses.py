"""Assignments other courses write, authored from one solution notebook with `grader assign` and
graded with `grader run` as an instructor does: a loop with the course's own parameter names
(the PyTorch tutorial's), a loop that makes its own optimizer and loss (d2l's), a network graded
alone and a loop graded alone. Every correct student earns full marks, however the loop's
parameters are named; every one-mistake student loses exactly what the mistake costs, in words
that use the course's own names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import courses as c
import pandas as pd
import pytest
from conftest import points

from grader.assignment import load_assignment
from grader.commands.assign import assign
from grader.isolate.client import Worker
from grader.load import Submission
from grader.pipeline import grade_submission
from grader.reference.check import verified_reference_expectations
from grader.results import SubmissionResult


def _renamed(source: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        source = source.replace(old, new)
    return source


# The tutorial's loop with the student's own names, in the solution's order.
TUTORIAL_RENAMED_LOOP = _renamed(
    c.TUTORIAL_LOOP,
    ("def train(net, trainloader, criterion, optimizer, epochs):", "def train(model, loader, loss_fn, opt, n_epochs):"),
    ("range(epochs)", "range(n_epochs)"), ("trainloader", "loader"), ("optimizer.", "opt."), ("net(inputs)", "model(inputs)"), ("criterion(", "loss_fn("),
)
# The lecture's loop, written like the tutorial's.
LECTURE_LOOP = _renamed(
    c.TUTORIAL_LOOP,
    ("def train(net, trainloader, criterion, optimizer, epochs):", "def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):"),
    ("range(epochs)", "range(n_epochs)"), ("trainloader", "train_loader"), ("net(inputs)", "model(inputs)"), ("criterion(", "loss_fn("),
)
# Given an optimizer, the loop makes its own and steps that one instead.
OWN_OPTIMIZER_LOOP = _renamed(
    c.TUTORIAL_LOOP,
    ("    for epoch in range(epochs):", "    own = optim.SGD(net.parameters(), lr=0.05)\n    for epoch in range(epochs):"),
    ("optimizer.zero_grad()", "own.zero_grad()"), ("optimizer.step()", "own.step()"),
)
RENAMED_TRAIN = "net = Net()\ntrain(net, trainloader, nn.CrossEntropyLoss(), optim.SGD(net.parameters(), lr=0.001), 2)\n"
TUTORIAL_SEQUENTIAL_NET = """\
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
"""
D2L_FUNCTIONAL_LOOP = """\
import torch.nn.functional as F

def train_epochs(net, train_iter, num_epochs, lr):
    optimizer = torch.optim.SGD(net.parameters(), lr)
    for epoch in range(num_epochs):
        for X, y in train_iter:
            loss = F.cross_entropy(net(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch + 1} done")
"""


def _grade_class(tmp_path: Path, course: c.Course, students: dict[str, list[str]]) -> tuple[pd.DataFrame, Path]:
    """Author `course`'s assignment from its solution notebook, then grade `students` (name ->
    code cells) with `grader run`; the report and its folder (beside the assignment's folder,
    named after the course, and the submissions)."""
    folder = tmp_path / course.name
    assign(course.solution(tmp_path / "solutions"), folder)
    submissions = tmp_path / "submissions"
    for student, cells in students.items():
        c.student_notebook(submissions / f"{student}.ipynb", cells)
    csv = tmp_path / "out" / "grades.csv"
    done = subprocess.run(
        [sys.executable, "-m", "grader", "run", str(submissions), "-o", str(csv), "--assignment", str(folder), "--workers", "1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return pd.read_csv(csv, keep_default_na=False).set_index("student"), csv.parent


@pytest.fixture(scope="module")
def worker():
    """One warm worker for the courses graded in this process, configured for each in turn."""
    with Worker() as warm:
        yield warm


def _grade_here(tmp_path: Path, course: c.Course, students: dict[str, list[str]], worker: Worker) -> tuple[dict[str, SubmissionResult], Path]:
    """Author `course`'s assignment, then grade `students` through the whole pipeline in this
    process, as `grader run` does on one worker; the results and the assignment's folder."""
    folder = tmp_path / course.name
    files = assign(course.solution(tmp_path / "solutions"), folder)
    assignment = load_assignment(folder)
    expected = verified_reference_expectations(assignment, worker, files.reference)
    graded = {}
    for student, cells in students.items():
        path = c.student_notebook(tmp_path / "submissions" / f"{student}.ipynb", cells)
        graded[student] = grade_submission(Submission(student, path), assignment, worker, expected)
    return graded, folder


def _reasons(result: SubmissionResult) -> str:
    return " | ".join([reason for check in result.checks for reason in check.reasons] + [str(note) for note in result.notes])


def _points(report: pd.DataFrame, student: str, checks: list[str]) -> dict[str, float]:
    return {name: float(report.loc[student, name]) for name in checks}


NET_CHECKS = {"net.instantiate": 5, "net.layers": 15, "net.shapes": 15, "net.params": 15, "net.forward": 20, "net.trains": 10}
FULL = {**NET_CHECKS, "loop.trains": 20}


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    head = [c.TUTORIAL_IMPORTS, c.TUTORIAL_DATA]
    return _grade_class(tmp_path_factory.mktemp("tutorial"), c.TUTORIAL, {
        "as_solved": [*head, c.TUTORIAL_NET, c.TUTORIAL_LOOP, c.TUTORIAL_TRAIN],
        "renamed_loop": [*head, c.TUTORIAL_NET, TUTORIAL_RENAMED_LOOP, RENAMED_TRAIN],
        "sequential_net": [*head, TUTORIAL_SEQUENTIAL_NET, c.TUTORIAL_LOOP, c.TUTORIAL_TRAIN],
        "no_zero_grad": [*head, c.TUTORIAL_NET, c.TUTORIAL_LOOP.replace("            optimizer.zero_grad()\n", ""), c.TUTORIAL_TRAIN],
        "one_epoch_short": [*head, c.TUTORIAL_NET, c.TUTORIAL_LOOP.replace("range(epochs)", "range(epochs - 1)"), c.TUTORIAL_TRAIN],
        "own_optimizer": [*head, c.TUTORIAL_NET, OWN_OPTIMIZER_LOOP, c.TUTORIAL_TRAIN],
    })  # fmt: skip


def test_a_loop_with_the_courses_own_parameter_names_is_authored_and_graded(tutorial):
    report, out = tutorial
    assert _points(report, "as_solved", list(FULL)) == FULL
    assert _points(report, "sequential_net", list(FULL)) == FULL
    # Names unlike the solution's, in its order: called by position, graded on what it does.
    assert _points(report, "renamed_loop", list(FULL)) == FULL
    assert "it was called with the assignment's arguments by position, in the order (net, trainloader, criterion, optimizer, epochs)" in (
        out / "feedback" / "renamed_loop.md"
    ).read_text()


def test_a_mistake_in_the_courses_loop_is_named_with_the_courses_names(tutorial):
    report, out = tutorial
    assert _points(report, "no_zero_grad", list(FULL)) == {**FULL, "loop.trains": 16}
    assert "gradients were never cleared" in (out / "feedback" / "no_zero_grad.md").read_text()
    assert _points(report, "one_epoch_short", list(FULL)) == {**FULL, "loop.trains": 16}
    # Its own optimizer trains the model, but the one the assignment hands it never steps (2 of 20).
    assert _points(report, "own_optimizer", list(FULL)) == {**FULL, "loop.trains": 18}
    assert "train steps an optimizer it makes itself, not the optimizer it is given" in (out / "feedback" / "own_optimizer.md").read_text()
    assert "ran 3 epochs where epochs was 4: train for exactly epochs epochs (for epoch in range(1, epochs + 1):)" in (
        out / "feedback" / "one_epoch_short.md"
    ).read_text()


@pytest.fixture(scope="module")
def d2l(tmp_path_factory: pytest.TempPathFactory, worker: Worker) -> tuple[dict[str, SubmissionResult], Path]:
    head = [c.D2L_IMPORTS, c.LENET]
    return _grade_here(tmp_path_factory.mktemp("d2l"), c.D2L, {
        "as_solved": [*head, c.D2L_LOOP, c.D2L_TRAIN],
        "functional_loss": [*head, D2L_FUNCTIONAL_LOOP, c.D2L_TRAIN],
        "no_zero_grad": [*head, c.D2L_LOOP.replace("            trainer.zero_grad()\n", ""), c.D2L_TRAIN],
        "no_step": [*head, c.D2L_LOOP.replace("            trainer.step()\n", ""), c.D2L_TRAIN],
        "first_batch_only": [*head, c.D2L_LOOP.replace("            trainer.step()\n", "            trainer.step()\n            break\n"), c.D2L_TRAIN],
    }, worker)  # fmt: skip


def test_a_loop_that_makes_its_own_optimizer_and_loss_is_observed_like_any_other(d2l):
    graded, _ = d2l
    assert points(graded["as_solved"]) == FULL
    assert points(graded["functional_loss"]) == FULL  # F.cross_entropy, positional lr: the same loop
    # Gradients never cleared (4 of 20); no step: step per batch (2) and the loss (6); one batch
    # an epoch: every batch of every epoch (4).
    assert points(graded["no_zero_grad"]) == {**FULL, "loop.trains": 16}
    assert points(graded["no_step"]) == {**FULL, "loop.trains": 12}
    assert points(graded["first_batch_only"]) == {**FULL, "loop.trains": 16}
    assert "optimizer.step() ran 0 times for 40 batches" in _reasons(graded["no_step"])
    assert "took 1 of 10 batches in each epoch: train on every batch of train_iter in each epoch" in _reasons(graded["first_batch_only"])


def test_a_network_alone_is_graded_without_a_loop(tmp_path, worker):
    graded, _ = _grade_here(tmp_path, c.LENET_ONLY, {
        "as_solved": [c.D2L_IMPORTS, c.LENET],
        "max_pool": [c.D2L_IMPORTS, c.LENET.replace("nn.AvgPool2d", "nn.MaxPool2d")],
    }, worker)  # fmt: skip
    assert points(graded["as_solved"]) == NET_CHECKS and graded["as_solved"].total == 80  # no loop.trains, in any output
    assert points(graded["max_pool"]) == {**NET_CHECKS, "net.forward": 0}
    assert "your forward calls max_pool2d 2 times where the reference calls avg_pool2d" in _reasons(graded["max_pool"])
    assert "training_loop" not in _reasons(graded["as_solved"]) + _reasons(graded["max_pool"])


def test_a_loop_alone_is_graded_without_a_network(tmp_path, worker):
    graded, _ = _grade_here(tmp_path, c.LOOP_ONLY, {
        "as_solved": [c.TUTORIAL_IMPORTS, c.TUTORIAL_LOOP],
        "no_backward": [c.TUTORIAL_IMPORTS, c.TUTORIAL_LOOP.replace("            loss.backward()\n", "")],
    }, worker)  # fmt: skip
    assert points(graded["as_solved"]) == {"loop.trains": 20} and graded["as_solved"].total == 20
    assert points(graded["no_backward"]) == {"loop.trains": 12}  # backward per batch (2) and the loss (6)
    assert "Net" not in _reasons(graded["as_solved"]) + _reasons(graded["no_backward"])


def test_selfcheck_grades_a_loop_that_makes_its_own_optimizer(d2l):
    _, folder = d2l
    student = folder.parent / "submissions" / "no_zero_grad.ipynb"
    done = subprocess.run(
        [sys.executable, "-m", "grader", "selfcheck", str(student), "--assignment", str(folder)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "gradients were never cleared" in done.stdout and "96 / 100" in done.stdout, done.stdout + done.stderr


def _solution_regions(cls: str) -> str:
    """The class as an instructor hands it out: each method's body (after super().__init__())
    inside a solution region."""
    lines, out, indent = cls.splitlines(), [], None
    for line in lines:
        body = line.startswith("        ") and "super().__init__()" not in line
        if body and indent is None:
            out.append("        ### BEGIN SOLUTION")
            indent = True
        if not body and indent and line.strip():
            out.append("        ### END SOLUTION")
            indent = None
        out.append(line)
    if indent:
        out.append("        ### END SOLUTION")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("net", ["NetResDeep", "NetDropout"])
def test_the_books_networks_are_authored_from_the_input_shape_and_class_count(tmp_path, net):
    """The chapter's NetResDeep (one ResBlock object repeated, with BatchNorm) and NetDropout: a
    solution notebook whose config gives only the input shape and class count becomes an
    assignment (grader assign verifies that the reference earns full marks against itself and
    the fixtures, and that the handed-out notebook earns 0 with a reason for every check)."""
    cells = [c.RESBLOCK, _solution_regions(c.BOOK_NET)] if net == "NetResDeep" else [_solution_regions(c.NET_DROPOUT_REFERENCE)]
    course = c.Course(net, "# ASSIGNMENT CONFIG\n[model]\ninput_shape = [3, 32, 32]\nnum_classes = 2\n", (c.TUTORIAL_IMPORTS, *cells, LECTURE_LOOP))
    files = assign(course.solution(tmp_path), tmp_path / net.lower())
    config = files.config.read_text()
    assert f'class_name = "{net}"' in config and 'function_name = "training_loop"' in config
