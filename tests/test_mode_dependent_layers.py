"""Layers whose behaviour depends on the mode or on state (BatchNorm, dropout) are graded where it
shows: two assignments written to a temporary folder from the book's chapter-8 networks,
NetBatchNorm and NetDropout, each graded through one real worker like `grader run` grades, and
once against their selfcheck fixtures like `grader selfcheck`.

Before the grader drew the reference's BatchNorm statistics away from their initial values and
compared the output in training mode too, both wrong students below earned full marks on
net.forward: a fresh BatchNorm is nearly the identity in eval mode (BatchNorm after tanh differed
by 4e-7), and eval mode switches dropout off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import variants as v
from conftest import FULL, points
from courses import NET_DROPOUT_REFERENCE

from grader.assignment import Assignment, load_assignment
from grader.load import Submission
from grader.pipeline import grade_submission, open_worker
from grader.reference.check import verified_reference_expectations
from grader.reference.fixtures import load_fixtures, write_fixtures
from grader.reference.observing import configure_for_selfcheck
from grader.results import SubmissionResult

NET_BATCHNORM = """\
class NetBatchNorm(nn.Module):
    def __init__(self, n_chans1=32):
        super().__init__()
        self.n_chans1 = n_chans1
        self.conv1 = nn.Conv2d(3, n_chans1, kernel_size=3, padding=1)
        self.conv1_batchnorm = nn.BatchNorm2d(num_features=n_chans1)
        self.conv2 = nn.Conv2d(n_chans1, n_chans1 // 2, kernel_size=3, padding=1)
        self.conv2_batchnorm = nn.BatchNorm2d(num_features=n_chans1 // 2)
        self.fc1 = nn.Linear(8 * 8 * n_chans1 // 2, 32)
        self.fc2 = nn.Linear(32, 2)

    def forward(self, x):
        out = self.conv1_batchnorm(self.conv1(x))
        out = F.max_pool2d(torch.tanh(out), 2)
        out = self.conv2_batchnorm(self.conv2(out))
        out = F.max_pool2d(torch.tanh(out), 2)
        out = out.view(-1, 8 * 8 * self.n_chans1 // 2)
        out = torch.tanh(self.fc1(out))
        out = self.fc2(out)
        return out
"""

# BatchNorm applied to the activations instead of the convolutions' outputs.
NET_BATCHNORM_AFTER_TANH = NET_BATCHNORM.replace(
    "out = self.conv1_batchnorm(self.conv1(x))\n        out = F.max_pool2d(torch.tanh(out), 2)",
    "out = self.conv1_batchnorm(torch.tanh(self.conv1(x)))\n        out = F.max_pool2d(out, 2)",
).replace(
    "out = self.conv2_batchnorm(self.conv2(out))\n        out = F.max_pool2d(torch.tanh(out), 2)",
    "out = self.conv2_batchnorm(torch.tanh(self.conv2(out)))\n        out = F.max_pool2d(out, 2)",
)

# The reference applies F.dropout2d (courses.NET_DROPOUT_REFERENCE); the book's own NetDropout holds nn.Dropout2d modules.

NET_DROPOUT = """\
class NetDropout(nn.Module):
    def __init__(self, n_chans1=32):
        super().__init__()
        self.n_chans1 = n_chans1
        self.conv1 = nn.Conv2d(3, n_chans1, kernel_size=3, padding=1)
        self.conv1_dropout = nn.Dropout2d(p=0.4)
        self.conv2 = nn.Conv2d(n_chans1, n_chans1 // 2, kernel_size=3, padding=1)
        self.conv2_dropout = nn.Dropout2d(p=0.4)
        self.fc1 = nn.Linear(8 * 8 * n_chans1 // 2, 32)
        self.fc2 = nn.Linear(32, 2)

    def forward(self, x):
        out = F.max_pool2d(torch.tanh(self.conv1(x)), 2)
        out = self.conv1_dropout(out)
        out = F.max_pool2d(torch.tanh(self.conv2(out)), 2)
        out = self.conv2_dropout(out)
        out = out.view(-1, 8 * 8 * self.n_chans1 // 2)
        out = torch.tanh(self.fc1(out))
        out = self.fc2(out)
        return out
"""

# The dropout layers defined, but never applied in forward.
NET_DROPOUT_NOT_APPLIED = NET_DROPOUT.replace("        out = self.conv1_dropout(out)\n", "").replace("        out = self.conv2_dropout(out)\n", "")
NET_DROPOUT_WRONG_P = NET_DROPOUT.replace("nn.Dropout2d(p=0.4)", "nn.Dropout2d(p=0.5)")

REFERENCE_HEADER = """\
import datetime
import torch
import torch.nn as nn
import torch.nn.functional as F
"""

CONFIG = """\
[assignment]
name = "{name}"
title = "CIFAR-2 with {name}"
notebook = "{name}.ipynb"

[model]
class_name = "{model}"
input_shape = [3, 32, 32]
num_classes = 2

[loop]
function_name = "training_loop"
signature = ["n_epochs", "optimizer", "model", "loss_fn", "train_loader"]

[data]
kind = "synthetic"
size = 256
seed = 0

[training]
epochs = 4
batch_size = 64
learning_rate = 0.05
min_loss_drop = 0.25

[forward]
batch_size = 64
seed = 1234
atol = 1e-4
rtol = 1e-4

[shapes]
batch_sizes = [1, 7]
"""  # no [checks] table: each check has its default points

# assignment: (model class, reference Net, {student: Net cell})
ASSIGNMENTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "net_batchnorm": (
        "NetBatchNorm",
        NET_BATCHNORM,
        {"correct": NET_BATCHNORM, "batchnorm_after_tanh": NET_BATCHNORM_AFTER_TANH},
    ),
    "net_dropout": (
        "NetDropout",
        NET_DROPOUT_REFERENCE,
        {"dropout_modules": NET_DROPOUT, "dropout_not_applied": NET_DROPOUT_NOT_APPLIED, "dropout_p_0_5": NET_DROPOUT_WRONG_P},
    ),
}
SELFCHECKED = {"net_batchnorm": ["correct", "batchnorm_after_tanh"]}


def _assignment(folder: Path, name: str, model: str, reference_net: str) -> Assignment:
    folder.mkdir(parents=True)
    (folder / "assignment.toml").write_text(CONFIG.format(name=name, model=model))
    (folder / "reference.py").write_text("\n\n".join([REFERENCE_HEADER, reference_net, v.LOOP]))
    return load_assignment(folder)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every student of both assignments, graded by one worker (configured for one assignment
    after the other); then the BatchNorm students again against the selfcheck fixtures."""
    base = tmp_path_factory.mktemp("mode_dependent")
    results: dict[str, dict[str, Any]] = {"run": {}, "selfcheck": {}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADER_CACHE_DIR", str(base / "cache"))
        first = _assignment(base / "assignments" / "net_batchnorm", "net_batchnorm", *ASSIGNMENTS["net_batchnorm"][:2])
        with open_worker(first) as worker:
            for name, (model, reference_net, students) in ASSIGNMENTS.items():
                assignment = first if name == "net_batchnorm" else _assignment(base / "assignments" / name, name, model, reference_net)
                expected = verified_reference_expectations(assignment, worker, assignment.default_reference_path())
                for student, net in students.items():
                    cells = [cell.replace("model = Net()", f"model = {model}()") for cell in v.notebook_cells(net)]
                    path = v.write_notebook(base / name / f"{student}.ipynb", cells)
                    results["run"][student] = grade_submission(Submission(student, path), assignment, worker, expected)
                if name in SELFCHECKED:
                    fixtures = load_fixtures(assignment, write_fixtures(expected, assignment, base / name / "fixtures.json"))
                    configure_for_selfcheck(worker, assignment, fixtures)
                    for student in SELFCHECKED[name]:
                        path = base / name / f"{student}.ipynb"
                        results["selfcheck"][student] = grade_submission(Submission(student, path), assignment, worker, fixtures)
    return results


def _reasons(result: SubmissionResult, check: str) -> str:
    return " | ".join(next(c for c in result.checks if c.name == check).reasons)


@pytest.mark.parametrize("student", ["correct", "dropout_modules"])
def test_the_books_networks_earn_full_marks(graded, student):
    result = graded["run"][student]
    assert points(result) == FULL, [c.reasons for c in result.checks]


def test_batchnorm_after_tanh_loses_net_forward_and_says_where(graded):
    result = graded["run"]["batchnorm_after_tanh"]
    assert points(result) == {**FULL, "net.forward": 0}, [c.reasons for c in result.checks]
    reasons = _reasons(result, "net.forward")
    assert "your forward applies tanh before batch_norm; the reference applies batch_norm first, then tanh (2 places)" in reasons


def test_dropout_defined_but_not_applied_loses_half_of_net_forward(graded):
    result = graded["run"]["dropout_not_applied"]
    assert points(result) == {**FULL, "net.forward": 10}, [c.reasons for c in result.checks]
    reasons = _reasons(result, "net.forward")
    assert "no dropout2d after max_pool2d: the reference applies one there (2 places)" in reasons
    assert "in training mode (dropout on, BatchNorm on the batch's statistics)" in reasons
    assert "(in eval mode it matches)" in reasons


def test_dropout_with_another_p_loses_half_of_net_forward(graded):
    result = graded["run"]["dropout_p_0_5"]
    assert points(result) == {**FULL, "net.forward": 10}, [c.reasons for c in result.checks]
    reasons = _reasons(result, "net.forward")
    assert "dropout2d (conv1_dropout) after max_pool2d has p=0.5, the reference's p=0.4" in reasons
    assert "in training mode" in reasons


def test_a_net_that_matches_only_in_eval_mode_is_trained_for_real(graded):
    # The shortcut that credits a Net with the reference's training run needs the training-mode
    # output to match too: a Net without dropout does not train like one with it.
    trained = {student: not next(c for c in graded["run"][student].checks if c.name == "net.trains").details.get("trained_like_reference")
               for student in ("dropout_modules", "dropout_not_applied")}
    assert trained == {"dropout_modules": False, "dropout_not_applied": True}


@pytest.mark.parametrize("student", SELFCHECKED["net_batchnorm"])
def test_selfcheck_fixtures_carry_the_batchnorm_statistics(graded, student):
    assert points(graded["selfcheck"][student]) == points(graded["run"][student])


def test_dropout_masks_are_the_same_on_every_machine():
    # torch draws dropout masks with MKL on Intel CPUs and with its own generator elsewhere, so the
    # fixtures' masks would differ from a student's; the probe draws them itself, in integer
    # arithmetic. Pinned values: a change here changes every fixtures file's training-mode output.
    import torch
    import torch.nn.functional as F
    from torch import nn

    from grader.child.observe.portable_dropout import PortableDropout

    with PortableDropout(1234):
        channels = F.dropout2d(torch.ones(2, 4, 1, 1), 0.5)
        elements = F.dropout(torch.ones(2, 6), 0.25)
    assert channels.flatten().tolist() == [0.0, 0.0, 2.0, 0.0, 2.0, 2.0, 2.0, 2.0]
    assert (elements > 0).tolist() == [[False, True, True, True, True, True], [True, False, True, False, True, True]]
    assert torch.allclose(elements[elements > 0], torch.tensor(4 / 3))
    with PortableDropout(1234):
        module = nn.Dropout2d(0.5)(torch.ones(2, 4, 3, 3))  # an nn.Dropout2d draws what F.dropout2d draws
        same_call_again = F.dropout2d(torch.ones(2, 4, 3, 3), 0.5)  # the second call draws anew
    assert module[:, :, 0, 0].flatten().tolist() == channels.flatten().tolist()
    assert bool((module == module[:, :, :1, :1]).all()) and not torch.equal(module, same_call_again)
