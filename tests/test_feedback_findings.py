"""Feedback that names the mistake: each typical wrong notebook, on disk and graded through the
whole pipeline, gets words that say what is wrong and how to fix it — the operation that differs
from the reference, the lecture's formulas with the student's own numbers, PyTorch errors
explained, and the near misses (a `Model` class, a `train` function) — while a correct network
gets no "what to fix" at all."""

from __future__ import annotations

import pytest
import variants as v
from conftest import FULL, points

from grader.compare.forward_operations import ForwardOperations, align, first_divergence
from grader.report.feedback import feedback_markdown


def _reasons(result, check: str) -> str:
    return " | ".join(next(c for c in result.checks if c.name == check).reasons)


def _graded(grade, tmp_path, name: str, cells: list[str]):
    return grade(v.write_notebook(tmp_path / f"{name}.ipynb", cells))


NO_FC1_TANH = v.NET.replace("out = torch.tanh(self.fc1(out))", "out = self.fc1(out)")
DROPOUT_LAYER = v.NET.replace(
    "self.fc2 = nn.Linear(32, 2)", "self.drop = nn.Dropout(0.5)\n        self.fc2 = nn.Linear(32, 2)"
).replace("out = self.fc2(out)", "out = self.fc2(self.drop(out))")
ACTIVE_DROPOUT = v.NET.replace("out = self.fc2(out)", "out = self.fc2(F.dropout(out, 0.5))")
POOL_FIRST = v.NET.replace("F.max_pool2d(torch.tanh(self.conv1(x)), 2)", "torch.tanh(F.max_pool2d(self.conv1(x), 2))")
SOFTMAX_OUTPUT = v.NET.replace("        return out", "        return F.softmax(out, dim=1)")
VIEW_64 = v.NET.replace("out.view(-1, 8 * 8 * 8)", "out.view(64, -1)")
NO_PADDING_FC1_512 = v.NET_NO_PADDING.replace("nn.Linear(8 * 6 * 6, 32)", "nn.Linear(8 * 8 * 8, 32)")


@pytest.mark.parametrize(
    ("net", "words"),
    [
        (v.NET_RELU, ["your forward calls relu 3 times where the reference calls tanh"]),
        (v.NET_AVGPOOL, ["avg_pool2d 2 times where the reference calls max_pool2d"]),
        (NO_FC1_TANH, ["no tanh after fc1"]),
        (v.NET_MISSING_ACTIVATION, ["no tanh after conv2"]),
        (SOFTMAX_OUTPUT, ["ends with softmax", "raw scores (logits)"]),
        (ACTIVE_DROPOUT, ["an extra dropout before fc2", "training=self.training"]),
    ],
    ids=["relu_for_tanh", "avg_pool", "no_tanh_after_fc1", "no_tanh_after_conv2", "softmax", "active_dropout"],
)
def test_forward_mistakes_are_named_operation_by_operation(net, words, grade, tmp_path):
    result = _graded(grade, tmp_path, "student", v.notebook_cells(net))
    assert points(result) == {**FULL, "net.forward": 0}, [c.reasons for c in result.checks]
    forward = _reasons(result, "net.forward")
    for word in words:
        assert word in forward
    assert "check your activation functions" not in forward  # the generic hint gives way to the named step


def test_extra_dropout_costs_nothing_but_is_mentioned(grade, tmp_path):
    result = _graded(grade, tmp_path, "dropout", v.notebook_cells(DROPOUT_LAYER))
    assert points(result) == FULL
    assert any(n.startswith("net.forward: an extra dropout (drop) before fc2") and "no points lost" in n for n in map(str, result.notes))
    assert "## What to fix" not in feedback_markdown(result, "CIFAR-2")


def test_pooling_before_the_activation_is_said_as_a_reordering(grade, tmp_path):
    result = _graded(grade, tmp_path, "reordered", v.notebook_cells(POOL_FIRST))
    assert points(result) == FULL  # max-pooling and tanh commute: the output is the same
    assert any("applies max_pool2d before tanh; the reference applies tanh first" in str(n) for n in result.notes)


@pytest.mark.parametrize("name", ["lecture", "sequential", "modules", "reshape", "across_cells"])
def test_correct_networks_get_no_findings(name, grade, tmp_path):
    cells = {
        "lecture": v.notebook_cells(),
        "sequential": v.notebook_cells(v.NET_SEQUENTIAL),
        "modules": v.notebook_cells(v.NET_MODULES),
        "reshape": v.notebook_cells(v.NET_RESHAPE),
        "across_cells": v.ACROSS_CELLS,
    }[name]
    result = _graded(grade, tmp_path, name, cells)
    assert points(result) == FULL
    assert not [n for n in result.notes if n.check and n.check.startswith("net")]
    markdown = feedback_markdown(result, "CIFAR-2")
    assert "## What to fix" not in markdown
    assert "## Your network beside the reference" in markdown
    network = next(c for c in result.checks if c.name == "net.layers").details["network"]
    assert all(row["differs"] == [] and row["reference"] and row["student"] for row in network["rows"])


def test_hard_coded_batch_size_shows_the_fix(grade, tmp_path):
    result = _graded(grade, tmp_path, "view64", v.notebook_cells(VIEW_64))
    shapes = _reasons(result, "net.shapes")
    assert points(result)["net.shapes"] == 0 and points(result)["net.forward"] == 20
    assert "hard-coded" in shapes and "view(-1, 512)" in shapes and "torch.flatten(x, 1)" in shapes
    assert "mat1 and mat2 shapes cannot be multiplied (64x8 and 512x32)" in shapes  # the original stays below
    assert shapes.count("hard-coded") == 1  # explained once, not once per batch size


def test_missing_padding_shows_the_output_size_and_flatten_formulas(grade, tmp_path):
    result = _graded(grade, tmp_path, "nopad", v.notebook_cells(v.NET_NO_PADDING))
    shapes = _reasons(result, "net.shapes")
    assert "conv1 (Conv2d): output size (W − K + 2P)/S + 1 = (32 − 3 + 2·0)/1 + 1 = 30" in shapes
    assert "the reference's: (32 − 3 + 2·1)/1 + 1 = 32" in shapes
    assert "yours 8·6·6 = 288" in shapes and "in the reference 8·8·8 = 512" in shapes
    assert "32 → 30 (conv1) → 15 (max_pool2d) → 13 (conv2) → 6 (max_pool2d)" in shapes
    params = _reasons(result, "net.params")
    assert "out·(in + 1) = 32·(288 + 1) = 9,248" in params and "32·(512 + 1) = 16,416" in params


def test_flatten_size_that_fc1_rejects_is_worked_out(grade, tmp_path):
    result = _graded(grade, tmp_path, "nopad512", v.notebook_cells(NO_PADDING_FC1_512))
    shapes = _reasons(result, "net.shapes")
    assert "yours 8·6·6 = 288" in shapes and "but it is built with in_features=512" in shapes
    assert "in_features" in shapes and "(the error: RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x288 and 512x32)" in shapes
    forward = _reasons(result, "net.forward")
    assert "no tanh" not in forward  # steps after the one that raised never ran: not "missing"


def test_wrong_channels_show_the_parameter_formula(grade, tmp_path):
    result = _graded(grade, tmp_path, "channels", v.notebook_cells(v.NET_WRONG_CHANNELS))
    params = _reasons(result, "net.params")
    assert "expected 448 parameters, got 896: yours c_out·(c_in·k·k + 1) = 32·(3·3·3 + 1) = 896" in params
    assert "the reference's c_out·(c_in·k·k + 1) = 16·(3·3·3 + 1) = 448" in params
    assert "conv1 (Conv2d): it makes 32 channels, the reference's 16" in _reasons(result, "net.shapes")


def test_training_step_under_no_grad_is_explained(grade, tmp_path):
    result = _graded(grade, tmp_path, "nograd", v.notebook_cells(loop=v.LOOP_NO_GRAD))
    loop = _reasons(result, "loop.trains")
    assert "torch.no_grad()" in loop and "does not require grad" in loop


def test_right_network_under_another_class_name(grade, tmp_path):
    cells = v.notebook_cells(v.NET.replace("class Net(", "class Model("))
    result = _graded(grade, tmp_path, "model", cells)
    instantiate = _reasons(result, "net.instantiate")
    assert "your notebook defines class Model(nn.Module)" in instantiate and "rename yours to Net" in instantiate
    assert "Net not defined (found Model)" in result.error


def test_loop_under_another_function_name(grade, tmp_path):
    cells = v.notebook_cells(loop=v.LOOP.replace("def training_loop(", "def train("))
    result = _graded(grade, tmp_path, "train", cells)
    loop = _reasons(result, "loop.trains")
    assert "train(n_epochs, optimizer, model, loss_fn, train_loader)" in loop and "rename yours to training_loop" in loop
    assert points(result)["net.forward"] == 20  # the Net is graded as usual


def test_network_picture_shows_every_step_beside_the_reference(grade, tmp_path):
    result = _graded(grade, tmp_path, "relu", v.notebook_cells(v.NET_RELU))
    network = next(c for c in result.checks if c.name == "net.layers").details["network"]
    rows = network["rows"]
    assert [r["student"]["layer"] for r in rows][:3] == ["conv1 (Conv2d)", "relu", "max_pool2d"]
    assert rows[1]["reference"]["layer"] == "tanh" and rows[1]["differs"] == ["layer"]
    assert rows[0]["reference"]["parameters"] == 448 and rows[0]["differs"] == []


# ---------------------------------------------------------------- first differing output


def _operation(op: str, digest: list[float], module: str = "") -> dict:
    return {"op": op, "module": module, "args": [], "kwargs": {}, "input_shape": [2, 4], "output_shape": [2, 4], "digest": digest}


def test_first_differing_output_is_named_when_the_steps_are_the_same():
    reference = ForwardOperations([_operation("linear", [1.0, 5.0, 2.0], "fc1"), _operation("tanh", [0.5, 3.0, 1.0])], {}, digests=True)
    student = ForwardOperations([_operation("linear", [1.0, 5.0, 2.0], "fc1"), _operation("tanh", [0.9, 3.5, 1.4])], {}, digests=True)
    found = first_divergence(reference, student, align(reference, student))
    assert found is not None and "first output that differs" in found and "tanh" in found and "right after linear" in found


def test_outputs_equal_within_float_rounding_are_not_a_divergence():
    reference = ForwardOperations([_operation("linear", [1.0, 5000.0, 2.0])], {}, digests=True)
    student = ForwardOperations([_operation("linear", [1.0001, 5000.01, 2.0002])], {}, digests=True)
    assert first_divergence(reference, student, align(reference, student)) is None
