"""Real notebooks on disk, graded through the whole pipeline against the real reference:
each variant earns exactly the points pinned here."""

from __future__ import annotations

import pytest
import variants as v
from conftest import FULL, points

CORRECT = {
    "lecture_notebook": v.notebook_cells(),
    "nn_sequential": v.notebook_cells(v.NET_SEQUENTIAL),
    "modules_and_torch_flatten": v.notebook_cells(v.NET_MODULES),
    "reshape": v.notebook_cells(v.NET_RESHAPE),
    "constructor_defaults": v.notebook_cells(v.NET_DEFAULTS),
    "net_across_cells": v.ACROSS_CELLS,
    "device_at_top_level": v.notebook_cells(loop=v.DEVICE_LOOP),
    "magics": v.MAGIC_CELLS,
    "redefined_net": [*v.notebook_cells(v.NET_RELU)[:3], v.NET, *v.notebook_cells()[3:]],
}


@pytest.mark.parametrize("name", CORRECT)
def test_correct_variant_gets_full_marks(name, grade, tmp_path):
    result = grade(v.write_notebook(tmp_path / f"{name}.ipynb", CORRECT[name]))
    assert result.status == "graded"
    assert points(result) == FULL, [c.reasons for c in result.checks]
    assert result.total == 100 and result.error == ""


def test_python_script_submission_gets_full_marks(grade, tmp_path):
    script = tmp_path / "scripter.py"
    script.write_text("\n\n".join(v.notebook_cells()).replace("%matplotlib inline\n", ""))
    assert points(grade(script)) == FULL


def test_script_with_percent_cells_keeps_its_line_numbers(grade, tmp_path):
    script = tmp_path / "cells.py"
    body = "# %%\n" + "\n# %%\n".join(v.notebook_cells()).replace("%matplotlib inline\n", "")
    script.write_text(body + "\n# %%\ndef oops(:\n    pass\n")
    result = grade(script)
    assert points(result) == FULL
    syntax_line = body.count("\n") + 3
    assert f"cells.py, line {syntax_line}: SyntaxError" in result.error


def test_top_level_download_and_training_are_never_run(grade, tmp_path):
    # The lecture notebook downloads CIFAR-10 and trains 100 epochs at top level; grading it is
    # quick and touches no network, and the extracted program holds neither.
    result = grade(v.write_notebook(tmp_path / "lecture.ipynb", v.notebook_cells()))
    assert "CIFAR10" not in result.extracted_source
    assert "training_loop(n_epochs=100" not in result.extracted_source
    assert result.seconds < 30


WRONG = {
    # name: (cells, points per check that differ from full marks, phrase in the reasons)
    "relu_for_tanh": (v.notebook_cells(v.NET_RELU), {"net.forward": 0}, "relu 3 times where the reference calls tanh"),
    "wrong_channels": (
        v.notebook_cells(v.NET_WRONG_CHANNELS),
        {"net.layers": 7.5, "net.shapes": 0, "net.params": 5, "net.forward": 0},
        "layer 1 (conv1, Conv2d): expected out_channels=16, got 32",
    ),
    "no_padding": (
        v.notebook_cells(v.NET_NO_PADDING),
        {"net.layers": 3.75, "net.shapes": 0, "net.params": 7.5, "net.forward": 0},
        "expected padding=1, got 0",
    ),
    # Layers are aligned, so one extra layer costs only itself in net.layers and net.params.
    "extra_layer": (
        v.notebook_cells(v.NET_EXTRA_LAYER),
        {"net.layers": 12, "net.shapes": 0, "net.params": 8, "net.forward": 0},
        "layer 4 (fc_extra, Linear) is extra: the reference has 4 layers with parameters",
    ),
    "avgpool_for_maxpool": (v.notebook_cells(v.NET_AVGPOOL), {"net.forward": 0}, "avg_pool2d 2 times where the reference calls max_pool2d"),
    "missing_activation": (v.notebook_cells(v.NET_MISSING_ACTIVATION), {"net.forward": 0}, "no tanh after conv2"),
    "hard_coded_batch_size": (v.notebook_cells(v.NET_HARDCODED_BATCH), {"net.shapes": 0}, "hard-coded batch size of 64"),
    "missing_zero_grad": (
        v.notebook_cells(loop=v.LOOP_NO_ZERO_GRAD),
        {"loop.trains": 16},
        "gradients were never cleared: call optimizer.zero_grad() each step",
    ),
    "missing_step": (v.notebook_cells(loop=v.LOOP_NO_STEP), {"loop.trains": 12}, "optimizer.step() ran 0 times for 32 batches"),
    "missing_backward": (v.notebook_cells(loop=v.LOOP_NO_BACKWARD), {"loop.trains": 12}, "loss.backward() ran 0 times for 32 batches"),
    "no_grad_loop": (v.notebook_cells(loop=v.LOOP_NO_GRAD), {"loop.trains": 0}, "does not require grad"),
    "exception_mid_epoch": (v.notebook_cells(loop=v.LOOP_RAISES_MID_EPOCH), {"loop.trains": 12}, "ValueError: batch went missing"),
    "missing_net": (
        v.notebook_cells(net="# TODO: write Net\n"),
        {name: 0 for name in FULL if name.startswith("net.")},
        "no class named Net is defined",
    ),
    "missing_training_loop": (v.notebook_cells(loop="# TODO: write training_loop\n"), {"loop.trains": 0}, "no function named training_loop"),
}


@pytest.mark.parametrize("name", WRONG)
def test_wrong_variant_loses_exactly_its_points(name, grade, tmp_path):
    cells, lost, phrase = WRONG[name]
    result = grade(v.write_notebook(tmp_path / f"{name}.ipynb", cells))
    assert result.status == "graded"
    assert points(result) == {**FULL, **lost}
    reasons = " | ".join(r for c in result.checks for r in c.reasons)
    assert phrase in reasons


def test_exception_mid_epoch_names_the_line_in_error(grade, tmp_path):
    result = grade(v.write_notebook(tmp_path / "raiser.ipynb", v.notebook_cells(loop=v.LOOP_RAISES_MID_EPOCH)))
    # The loop is the 5th cell after the markdown title: notebook cell 5.
    assert "training_loop raised ValueError: batch went missing (in training_loop, cell 5, line 5)" in result.error


def test_missing_net_costs_only_the_net_checks_and_says_why(grade, tmp_path):
    result = grade(v.write_notebook(tmp_path / "nonet.ipynb", v.notebook_cells(net="pass\n")))
    assert result.error == "Net not defined"
    assert points(result)["loop.trains"] == 20


def test_syntax_error_in_unrelated_cell_is_reported_but_grading_goes_on(grade, tmp_path):
    cells = v.notebook_cells(extra=["def plot_losses(:\n    pass"])
    result = grade(v.write_notebook(tmp_path / "typo.ipynb", cells))
    assert points(result) == FULL
    assert "cell 8, line 1: SyntaxError" in result.error
    assert any("SyntaxError" in str(note) for note in result.notes)


def test_syntax_error_in_the_net_cell_explains_the_missing_net(grade, tmp_path):
    broken = v.NET.replace("def forward(self, x):", "def forward(self, x)")
    result = grade(v.write_notebook(tmp_path / "typo.ipynb", v.notebook_cells(broken)))
    assert points(result) == {**FULL, **{n: 0 for n in FULL if n.startswith("net.")}}
    assert "cell 4, line 9: SyntaxError" in result.error
    assert "Net not defined" in result.error


def test_loop_reading_a_top_level_loader_is_told_why(grade, tmp_path):
    loop = v.LOOP.replace("for imgs, labels in train_loader:", "for imgs, labels in loader:")
    cells = v.notebook_cells(loop=loop, extra=["loader = torch.utils.data.DataLoader(cifar2, batch_size=64)"])
    result = grade(v.write_notebook(tmp_path / "global_loader.ipynb", cells))
    assert points(result)["loop.trains"] == 0
    assert any("uses 'loader', which only top-level code creates (cell 8, line 1)" in str(n) for n in result.notes)
    assert "NameError: name 'loader' is not defined" in result.error


def test_invalid_json_is_an_invalid_row_with_zero_points(grade, tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text('{"cells": [ {"cell_type": "code", ')
    result = grade(path)
    assert result.status == "invalid"
    assert "invalid JSON" in result.error
    assert result.total == 0 and set(points(result)) == set(FULL)


def test_grading_is_deterministic(grade, tmp_path):
    path = v.write_notebook(tmp_path / "same.ipynb", v.notebook_cells(v.NET_RELU))
    first, second = grade(path), grade(path)
    assert points(first) == points(second)
    assert [c.details for c in first.checks] == [c.details for c in second.checks]


def test_student_folder_submission_gets_full_marks(grade, tmp_path, cifar2):
    from grader.load import discover_submissions

    folder = tmp_path / "subs" / "grace"
    v.write_notebook(folder / "cifar2_cnn.ipynb", v.notebook_cells())
    v.write_notebook(folder / ".ipynb_checkpoints" / "cifar2_cnn-checkpoint.ipynb", v.notebook_cells(v.NET_RELU))
    (folder / "notes.txt").write_text("my notes")
    [submission] = discover_submissions(tmp_path / "subs", cifar2.notebook)
    assert submission.student == "grace" and submission.path.name == "cifar2_cnn.ipynb"
    assert points(grade(submission.path, student=submission.student)) == FULL


def test_an_exception_in_forward_is_named_in_the_error_column(grade, tmp_path):
    result = grade(v.write_notebook(tmp_path / "hardcoded.ipynb", v.notebook_cells(v.NET_HARDCODED_BATCH)))
    assert "forward failed at batch size 1: RuntimeError: shape '[64, 512]' is invalid for input of size 512 (in forward, cell 4, line 12)" in result.error
    assert "forward failed at batch size 7: RuntimeError:" in result.error


def test_wrong_values_without_an_exception_leave_the_error_column_empty(grade, tmp_path):
    result = grade(v.write_notebook(tmp_path / "relu.ipynb", v.notebook_cells(v.NET_RELU)))
    assert points(result)["net.forward"] == 0 and result.error == ""
