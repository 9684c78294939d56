"""loop.trains wants every batch of every requested epoch trained on: a loop that breaks after
the first batch, or ignores n_epochs, loses that criterion's 4 of 20 points and is told why.
Real notebooks on disk, graded through the whole pipeline against the real reference (4 epochs
of 8 batches), and through selfcheck's fixtures."""

from __future__ import annotations

import pytest
import variants as v
from conftest import FULL, points

from grader.commands.selfcheck import check_submission
from grader.load import Submission

COVERS_EVERY_BATCH = "train on every batch of train_loader in each epoch (for imgs, labels in train_loader:, with no break)"
RUNS_N_EPOCHS = "train for exactly n_epochs epochs (for epoch in range(1, n_epochs + 1):)"

LOOP_BREAKS_AFTER_FIRST_BATCH = v.LOOP.replace("            loss_train += loss.item()\n", "            loss_train += loss.item()\n            break\n")
LOOP_BREAKS_IN_LAST_EPOCH = v.LOOP.replace(
    "            loss_train += loss.item()\n", "            loss_train += loss.item()\n            if epoch == n_epochs:\n                break\n"
)
LOOP_ONE_EPOCH = v.LOOP.replace("range(1, n_epochs + 1)", "range(1)")
LOOP_TWO_EPOCHS = v.LOOP.replace("range(1, n_epochs + 1)", "range(1, 3)")
LOOP_ONE_EPOCH_TOO_MANY = v.LOOP.replace("range(1, n_epochs + 1)", "range(n_epochs + 1)")
# A validation pass each epoch: over a loader the grader does not give (the default), or over
# train_loader itself. A pass with no backward() or step() is evaluation, not an epoch.
LOOP_VALIDATES_SEPARATE_LOADER = v.LOOP.replace(
    "loss_fn, train_loader):", "loss_fn, train_loader, val_loader=None):"
).replace(
    "        if epoch == 1",
    "        with torch.no_grad():\n            for imgs, labels in (val_loader or []):\n                model(imgs)\n        if epoch == 1",
)
LOOP_VALIDATES_ON_TRAIN_LOADER = v.LOOP.replace(
    "        if epoch == 1",
    "        correct = 0\n        with torch.no_grad():\n            for imgs, labels in train_loader:\n"
    "                correct += int((model(imgs).argmax(dim=1) == labels).sum())\n        if epoch == 1",
)

# name: (loop cell, loop.trains points, phrases in the reasons)
LOOPS = {
    "lecture_loop": (v.LOOP, 20, []),
    "validates_on_a_separate_loader": (LOOP_VALIDATES_SEPARATE_LOADER, 20, []),
    "validates_on_train_loader": (LOOP_VALIDATES_ON_TRAIN_LOADER, 20, []),
    "breaks_after_first_batch": (
        LOOP_BREAKS_AFTER_FIRST_BATCH,
        16,
        [f"took 1 of 8 batches in each epoch: {COVERS_EVERY_BATCH}"],
    ),
    "breaks_in_last_epoch": (LOOP_BREAKS_IN_LAST_EPOCH, 16, ["took 8 of 8 batches in epochs 1-3, 1 in epoch 4"]),
    "fixed_one_epoch": (LOOP_ONE_EPOCH, 16, [f"ran 1 epoch where n_epochs was 4: {RUNS_N_EPOCHS}"]),
    "fixed_two_epochs": (LOOP_TWO_EPOCHS, 16, ["ran 2 epochs where n_epochs was 4"]),
    "one_epoch_too_many": (LOOP_ONE_EPOCH_TOO_MANY, 16, ["ran 5 epochs where n_epochs was 4"]),
}


@pytest.mark.parametrize("name", LOOPS)
def test_loop_points_follow_the_batches_and_epochs_it_trained(name, grade, tmp_path):
    loop, earned, phrases = LOOPS[name]
    result = grade(v.write_notebook(tmp_path / f"{name}.ipynb", v.notebook_cells(loop=loop)))
    assert points(result) == {**FULL, "loop.trains": earned}
    reasons = next(c for c in result.checks if c.name == "loop.trains").reasons
    assert len(reasons) == len(phrases), reasons
    for reason, phrase in zip(reasons, phrases):
        assert phrase in reason
    assert result.error == ""


def test_an_exception_mid_epoch_does_not_also_cost_the_epochs_it_never_reached(grade, tmp_path):
    # It stopped in epoch 2 of 4, having trained all of epoch 1: it loses "runs" and the loss,
    # and the epochs it never reached are not held against it a second time.
    result = grade(v.write_notebook(tmp_path / "raiser.ipynb", v.notebook_cells(loop=v.LOOP_RAISES_MID_EPOCH)))
    loop = next(c for c in result.checks if c.name == "loop.trains")
    assert loop.points == 12
    assert not any("epoch" in reason for reason in loop.reasons), loop.reasons


@pytest.mark.parametrize("name", ["breaks_after_first_batch", "fixed_one_epoch"])
def test_selfcheck_takes_the_same_loop_points(name, cifar2, tmp_path):
    loop, earned, phrases = LOOPS[name]
    path = v.write_notebook(tmp_path / f"{name}.ipynb", v.notebook_cells(loop=loop))
    result = check_submission(cifar2, Submission(name, path), sandbox="none")
    loop_check = next(c for c in result.checks if c.name == "loop.trains")
    assert loop_check.points == earned
    assert phrases[0] in loop_check.reasons[0]


def test_passes_beyond_the_record_limit_are_counted_not_recorded():
    # Each next(iter(train_loader)) starts a pass: the report keeps the first MAX_LOADER_PASSES,
    # so an observation from such a loop still fits its schema.
    from grader.child.observe.loop_probe import _CountingLoader, _Counts
    from grader.protocol import MAX_LOADER_PASSES

    counts = _Counts()
    loader = _CountingLoader([0, 1, 2], counts)
    for _ in range(MAX_LOADER_PASSES + 10):
        next(iter(loader))
        counts.steps += 1
    assert counts.epochs_started == MAX_LOADER_PASSES + 10
    assert counts.loader_passes() == [{"batches": 1, "backward": 0, "steps": 1}] * MAX_LOADER_PASSES
