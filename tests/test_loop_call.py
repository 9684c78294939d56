"""How a student's training_loop is called: by keyword, as the lecture does, whenever the names
allow it; by position in the assignment's order otherwise, or always with `call = "positional"`.
Notebooks on disk, graded through the whole pipeline (`grader run`'s path and selfcheck's)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import variants as v
from conftest import FULL, ROOT, points

from grader.assignment import Assignment
from grader.child.observe.loop_call import plan_call
from grader.commands.selfcheck import check_submission
from grader.isolate.client import Worker
from grader.load import Submission
from grader.pipeline import grade_submission
from grader.reference.check import verified_reference_expectations

LECTURE_ORDER = "n_epochs, optimizer, model, loss_fn, train_loader"


def loop_taking(
    parameters: str,
    *,
    model: str = "model",
    optimizer: str = "optimizer",
    loss_fn: str = "loss_fn",
    loader: str = "train_loader",
    epochs: str = "n_epochs",
) -> str:
    """The lecture's loop with its parameters written as `parameters`, and its body using the names given."""
    body = v.LOOP.split(":\n", 1)[1]
    for old, new in (
        ("n_epochs", epochs),
        ("optimizer", optimizer),
        ("model", model),
        ("loss_fn", loss_fn),
        ("train_loader", loader),
    ):
        body = body.replace(old, new)
    return f"def training_loop({parameters}):\n{body}"


SWAPPED = loop_taking("n_epochs, model, optimizer, loss_fn, train_loader")
RENAMED = loop_taking(
    "epochs, opt, net, criterion, loader",
    epochs="epochs",
    optimizer="opt",
    model="net",
    loss_fn="criterion",
    loader="loader",
)
RENAMED_REORDERED = loop_taking(
    "epochs, net, opt, criterion, loader",
    epochs="epochs",
    optimizer="opt",
    model="net",
    loss_fn="criterion",
    loader="loader",
)
EXTRA_REQUIRED = loop_taking(f"{LECTURE_ORDER}, device")
EXTRA_WITH_DEFAULT = loop_taking("n_epochs, model, optimizer, loss_fn, train_loader, device='cpu', log_every=10")


def _loop_notes(result) -> list[str]:
    return [str(note) for note in result.notes if note.check == "loop.trains"]


def _write(tmp_path: Path, name: str, loop: str) -> Path:
    return v.write_notebook(tmp_path / f"{name}.ipynb", v.notebook_cells(loop=loop))


def test_a_loop_with_model_and_optimizer_swapped_earns_full_marks_with_a_note(grade, tmp_path):
    result = grade(_write(tmp_path, "swapped", SWAPPED))
    assert points(result) == FULL, result.error
    assert result.error == ""
    assert _loop_notes(result) == [
        "loop.trains: your training_loop takes (n_epochs, model, optimizer, loss_fn, train_loader); it was called by keyword "
        "as the lecture does (n_epochs=..., optimizer=..., model=..., loss_fn=..., train_loader=...), so the order does not matter"
    ]


def test_the_lecture_order_gets_no_note(grade, tmp_path):
    result = grade(_write(tmp_path, "lecture", v.LOOP))
    assert points(result) == FULL and _loop_notes(result) == []


def test_renamed_parameters_in_the_assignment_order_are_called_by_position(grade, tmp_path):
    result = grade(_write(tmp_path, "renamed", RENAMED))
    assert points(result) == FULL, result.error
    assert _loop_notes(result) == [
        "loop.trains: your training_loop takes (epochs, opt, net, criterion, loader); it was called with the "
        f"assignment's arguments by position, in the order ({LECTURE_ORDER})"
    ]


def test_renamed_and_reordered_parameters_are_called_by_position_and_earn_what_they_earn(grade, tmp_path):
    result = grade(_write(tmp_path, "renamed_reordered", RENAMED_REORDERED))
    assert points(result) == {**FULL, "loop.trains": 0}
    assert "training_loop raised" in result.error  # the SGD optimizer landed where the model was expected
    assert _loop_notes(result) == [
        "loop.trains: your training_loop takes (epochs, net, opt, criterion, loader); it was called with the "
        f"assignment's arguments by position, in the order ({LECTURE_ORDER})"
    ]


def test_an_extra_required_parameter_is_named_with_the_fix(grade, tmp_path):
    result = grade(_write(tmp_path, "extra", EXTRA_REQUIRED))
    assert points(result) == {**FULL, "loop.trains": 0}
    loop = next(c for c in result.checks if c.name == "loop.trains")
    assert loop.reasons == [
        f"training_loop requires 'device' with no default value, but the assignment calls it with ({LECTURE_ORDER}) only: "
        "give it a default (e.g. device=None) or leave it out"
    ]
    assert "training_loop requires 'device', which the assignment does not give" in result.error


def test_extra_parameters_with_defaults_keep_working_in_any_order(grade, tmp_path):
    result = grade(_write(tmp_path, "defaults", EXTRA_WITH_DEFAULT))
    assert points(result) == FULL, result.error


def test_selfcheck_calls_the_loop_the_same_way(cifar2: Assignment, tmp_path):
    # selfcheck trains the fixtures' stand-in model with the student's loop: the same rule applies.
    result = check_submission(cifar2, Submission("swapped", _write(tmp_path, "swapped", SWAPPED)), sandbox="none")
    assert points(result) == FULL, result.error
    assert len(_loop_notes(result)) == 1 and "called by keyword as the lecture does" in _loop_notes(result)[0]
    assert _loop_notes(result.public_view()) == _loop_notes(result)


def test_a_hidden_loop_check_keeps_its_call_note_hidden(cifar2: Assignment, tmp_path):
    result = check_submission(cifar2, Submission("swapped", _write(tmp_path, "swapped", SWAPPED)), sandbox="none")
    result.checks = [replace(c, public=not c.name.startswith("loop.")) for c in result.checks]
    assert _loop_notes(result) and _loop_notes(result.public_view()) == []


def test_call_positional_grades_the_order_as_before(cifar2: Assignment, tmp_path):
    positional = replace(cifar2, loop_call="positional")
    with Worker(sandbox="none") as worker:
        expected = verified_reference_expectations(positional, worker, ROOT / "reference" / "cifar2.py")
        result = grade_submission(
            Submission("swapped", _write(tmp_path, "swapped", SWAPPED)), positional, worker, expected
        )
    assert points(result) == {**FULL, "loop.trains": 0}
    assert "'SGD' object is not callable" in result.error


@pytest.mark.parametrize(
    ("source", "mode", "by", "unfilled"),
    [
        (f"def f({LECTURE_ORDER}): pass", "keyword", "keyword", []),
        ("def f(n_epochs, model, optimizer, loss_fn, train_loader, *, verbose=False): pass", "keyword", "keyword", []),
        ("def f(*args, **kwargs): pass", "keyword", "keyword", []),
        ("def f(n_epochs, optimizer, model, loss_fn, train_loader, /): pass", "keyword", "position", []),
        ("def f(a, b, c, d, e): pass", "keyword", "position", []),
        ("def f(a, b, c, d, e, f, g=1): pass", "keyword", "position", ["f"]),
        (f"def f({LECTURE_ORDER}, *, device): pass", "keyword", "position", ["device"]),
        ("def f(n_epochs, model, optimizer, loss_fn, train_loader): pass", "positional", "position", []),
    ],
)
def test_the_call_plan_follows_the_parameters(source, mode, by, unfilled):
    namespace: dict = {}
    exec(source, namespace)
    plan = plan_call(namespace["f"], LECTURE_ORDER.split(", "), mode)
    assert (plan["by"], plan["unfilled"]) == (by, unfilled)


def test_a_loop_with_very_many_parameters_is_still_observed():
    extra = ", ".join(f"p{i}=None" for i in range(100))
    namespace: dict = {}
    exec(f"def f({LECTURE_ORDER}, {extra}, *, q): pass", namespace)
    plan = plan_call(namespace["f"], LECTURE_ORDER.split(", "), "keyword")
    assert plan["by"] == "position" and plan["unfilled"] == ["q"] and len(plan["parameters"]) == 64
