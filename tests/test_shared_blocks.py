"""Shared blocks, through real workers: the book's residual network (Deep Learning with PyTorch,
ch. 8), whose `nn.Sequential(*(n_blocks * [ResBlock(n_chans=n_chans1)]))` repeats ONE ResBlock
object, so its 10 blocks share their weights.

Two assignments, written here as an assignment.toml and a reference.py, grade the same students:
one whose reference builds 10 separate blocks, one whose reference is the book's own code.

- Sharing by mistake, against separate blocks: loses net.params' total and net.forward, with words
  naming the shared block (never the shape of an unrelated layer such as fc1).
- Separate blocks, against the book's shared one: the reference's weights load, one copy per
  block, and the output matches: full marks, with a note saying what differs.
- A skip connection missing from every block: said once, with where it repeats.
- The network picture counts a shared layer's parameters on its first run and marks it shared.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import FULL, points
from courses import BOOK_NET, RESBLOCK

from grader.assignment import Assignment, load_assignment
from grader.compare.sharing import Sharing, conflicting_loads, load_conflict, repeated_in, span
from grader.isolate.client import Worker
from grader.load import Submission
from grader.pipeline import grade_submission
from grader.reference.check import verified_reference_expectations
from grader.report.network_picture import checked_network, network_of, network_table_markdown
from grader.results import SubmissionResult

CONFIG = """\
[assignment]
name = "{name}"
title = "A residual network"
notebook = "resnet.ipynb"

[model]
class_name = "NetResDeep"
input_shape = [3, 32, 32]
num_classes = 2

[loop]
function_name = "training_loop"
signature = ["n_epochs", "optimizer", "model", "loss_fn", "train_loader"]

[data]
kind = "synthetic"
size = 128
seed = 0

[training]
epochs = 3
batch_size = 32
learning_rate = 0.01
min_loss_drop = 0.25

[forward]
batch_size = 8
seed = 1234
atol = 1e-4
rtol = 1e-4

[shapes]
batch_sizes = [1, 7]
"""  # no [checks] table: each check has its default points

IMPORTS = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


SEPARATE_NET = BOOK_NET.replace(
    "nn.Sequential(*(n_blocks * [ResBlock(n_chans=n_chans1)]))", "nn.Sequential(*[ResBlock(n_chans=n_chans1) for _ in range(n_blocks)])"
)
# conv1 also kept in an nn.Sequential that forward never runs: one object under two names, run once.
ALIASED_NET = SEPARATE_NET.replace(
    "        self.fc1 = nn.Linear(", "        self.stem = nn.Sequential(self.conv1)\n        self.fc1 = nn.Linear("
)
NO_SKIP_RESBLOCK = RESBLOCK.replace("return out + x", "return out")

LOOP = """\
def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):
    for epoch in range(1, n_epochs + 1):
        for imgs, labels in train_loader:
            outputs = model(imgs)
            loss = loss_fn(outputs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
"""

# student: (ResBlock cell, NetResDeep cell)
STUDENTS = {
    "separate": (RESBLOCK, SEPARATE_NET),
    "book": (RESBLOCK, BOOK_NET),
    "aliased_conv1": (RESBLOCK, ALIASED_NET),
    "no_skip": (NO_SKIP_RESBLOCK, SEPARATE_NET),
}

SHARED_BY_MISTAKE = (
    "resblocks.0 … resblocks.9 are one ResBlock object, so all 10 blocks share one set of weights where the "
    "reference's 10 blocks have their own: nn.Sequential(*(n * [ResBlock(...)])) repeats the same object n times; "
    "build each block, e.g. nn.Sequential(*[ResBlock(...) for _ in range(n)])"
)
SEPARATE_WHERE_BOOK_SHARES = (
    "your resblocks.0 … resblocks.9 are 10 distinct ResBlock objects; the reference repeats one ResBlock object, "
    "as nn.Sequential(*(n * [ResBlock(...)])) does, so its 10 blocks share their weights "
    "(no points lost: each of your blocks can hold the reference's shared weights)"
)


def _notebook(path: Path, resblock: str, net: str) -> Path:
    cells = [IMPORTS, resblock, net, LOOP]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), str(path))
    return path


def _graded(base: Path, name: str, reference_net: str) -> dict[str, SubmissionResult]:
    folder = base / name
    folder.mkdir()
    (folder / "assignment.toml").write_text(CONFIG.format(name=name))
    (folder / "reference.py").write_text("\n\n".join([IMPORTS, RESBLOCK, reference_net, LOOP]))
    assignment: Assignment = load_assignment(folder)
    with Worker() as worker:
        expected = verified_reference_expectations(assignment, worker, folder / "reference.py")
        return {
            student: grade_submission(Submission(student, _notebook(folder / f"{student}.ipynb", *cells)), assignment, worker, expected)
            for student, cells in STUDENTS.items()
        }


@pytest.fixture(scope="module")
def separate_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SubmissionResult]:
    return _graded(tmp_path_factory.mktemp("resnet"), "resnet_separate", SEPARATE_NET)


@pytest.fixture(scope="module")
def book_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SubmissionResult]:
    return _graded(tmp_path_factory.mktemp("resnet"), "resnet_book", BOOK_NET)


def _reasons(result: SubmissionResult, check: str) -> list[str]:
    return next(c.reasons for c in result.checks if c.name == check)


def _notes(result: SubmissionResult) -> list[str]:
    return [note.text for note in result.notes]


def _parameters(result: SubmissionResult, side: str) -> list[str]:
    """The parameters column of one side of the network picture, as the Markdown table shows it."""
    network = network_of(result)
    assert network is not None
    rows = [line.split(" | ") for line in network_table_markdown(network).splitlines() if line.startswith("| ") and line[2].isdigit()]
    return [row[4 if side == "reference" else 8].strip(" |*") for row in rows]


# ---------------------------------------------------------------- the reference builds 10 blocks


def test_separate_blocks_like_the_reference_get_full_marks(separate_reference):
    for student in ("separate", "aliased_conv1"):
        result = separate_reference[student]
        assert points(result) == FULL, [c.reasons for c in result.checks]
        assert not any("ResBlock" in note for note in _notes(result))


def test_one_block_shared_by_mistake_loses_the_total_and_forward_with_words_naming_it(separate_reference):
    result = separate_reference["book"]
    # Per-layer counts match run by run; the total is 9 blocks short, and the reference's 10
    # different blocks cannot be loaded into one.
    assert points(result) == {**FULL, "net.params": 10, "net.forward": 0}
    assert _reasons(result, "net.params") == ["total trainable parameters: expected 22626, got 17298", SHARED_BY_MISTAKE]
    assert _reasons(result, "net.forward") == [f"could not load the reference weights into your Net: {SHARED_BY_MISTAKE}"]
    assert not any("fc1" in reason for check in result.checks for reason in check.reasons)


def test_a_skip_connection_missing_from_every_block_is_said_once_with_where_it_repeats(separate_reference):
    result = separate_reference["no_skip"]
    assert points(result) == {**FULL, "net.forward": 0, "net.trains": 0}
    reasons = _reasons(result, "net.forward")
    assert reasons[0] == "no add after relu: the reference applies one there (in each of the 10 blocks, resblocks.0 … resblocks.9)"
    assert sum("no add" in reason for reason in reasons) == 1


def test_the_picture_counts_a_shared_layers_parameters_once_and_marks_it(separate_reference):
    result = separate_reference["book"]
    student, reference = _parameters(result, "student"), _parameters(result, "reference")
    # conv1, then per block conv (576) and batch_norm (16) between relu and add, then fc1, fc2.
    assert [p for p in student if p] == ["224", "576 (shared by 10 runs)", "16 (shared by 10 runs)", *["shared"] * 18, "16,416", "66"]
    assert [p for p in reference if p] == ["224", *["576", "16"] * 10, "16,416", "66"]


# ---------------------------------------------------------------- the book's reference shares one block


def test_a_student_copying_the_book_gets_full_marks(book_reference):
    result = book_reference["book"]
    assert points(result) == FULL, [c.reasons for c in result.checks]
    assert _parameters(result, "student") == _parameters(result, "reference")


def test_separate_blocks_where_the_book_shares_one_load_its_weights_and_are_told_so(book_reference):
    result = book_reference["separate"]
    assert points(result) == FULL, [c.reasons for c in result.checks]
    assert _notes(result) == [SEPARATE_WHERE_BOOK_SHARES]
    assert not any("fc1" in note for note in _notes(result))


def test_a_skip_connection_missing_from_separate_blocks_against_the_book(book_reference):
    result = book_reference["no_skip"]
    assert points(result) == {**FULL, "net.forward": 0, "net.trains": 0}
    assert _reasons(result, "net.forward")[0] == (
        "no add after relu: the reference applies one there (in each of the 10 blocks, resblocks.0 … resblocks.9)"
    )
    assert _notes(result) == [SEPARATE_WHERE_BOOK_SHARES]


# ---------------------------------------------------------------- the words, without a worker


def test_shared_paths_are_named_by_their_first_and_last():
    assert span(["conv_a", "conv_b"], 2) == "conv_a and conv_b"
    assert span([f"blocks.{i}" for i in range(3)], 3) == "blocks.0 … blocks.2"
    assert span([f"blocks.{i}" for i in range(64)], 100) == "blocks.0 … (100 paths in all)"
    assert repeated_in(["resblocks.0.act", "resblocks.1.act", "resblocks.2.act"]) == "resblocks.0 … resblocks.2"
    assert repeated_in(["resblocks.0", "resblocks.0"]) is None  # one block run twice: not "each block"
    assert repeated_in(["conv1", "conv2"]) is None


def test_a_layer_run_twice_where_the_reference_has_two_is_named():
    order = [{"name": "conv.weight", "shape": [2]}, {"name": "conv.weight", "shape": [2]}]
    assert conflicting_loads(order, [np.ones(2), np.ones(2)]) == []  # the same weights twice: a shared reference
    assert conflicting_loads(order, [np.zeros(2), np.ones(2)]) == ["conv.weight"]
    assert load_conflict(["conv.weight"], order, Sharing()) == (
        "your forward runs conv 2 times where the reference runs 2 separate layers with their own weights: give each its own layer"
    )


@pytest.mark.parametrize("shared", [1, True, "10", -2])
def test_a_malformed_shared_mark_is_not_drawn(shared):
    side = {"layer": "conv (Conv2d)", "settings": "", "output_shape": [1, 8], "parameters": 576, "shared": shared}
    with pytest.raises(ValueError, match="shared must be a count of runs"):
        checked_network({"rows": [{"reference": side, "student": side, "differs": []}]})
