"""Points and reasons decided from recorded observations, in milliseconds: no worker, no torch.

tests/recorded/ holds what a real worker reported for fifteen CIFAR-2 submissions (what
`grader.pipeline.observe` returns, children's output left out) and the reference's expectations
in the selfcheck fixtures format; tests/recorded/record.py made them and says when to run it
again. Here they go through the grading host's side alone, as `conclude` takes them: validated
by `read_observed`, compared by every check of `CHECKS`, scored by `score_outcomes`. Each variant
must earn the points tests/test_grading_variants.py pins through real workers, with the same
words in its reasons.

Recordings edited in memory then show that the points follow the observations (a mutated
recording scores differently), that the grader checks a child's claims itself, and that a
malformed or forged observation is rejected with a note rather than crashing the check.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from conftest import FULL

from grader.assignment import Assignment
from grader.compare import CHECKS
from grader.compare.expectations import Expectations
from grader.observations import read_observed
from grader.reference.fixtures import load_fixtures
from grader.results import CheckResult
from grader.score import score_outcomes

RECORDED = Path(__file__).resolve().parent / "recorded"
NET_ZERO = {name: 0 for name in FULL if name.startswith("net.")}

# variant: (points per check that differ from full marks, {check: phrases its reasons hold})
VARIANTS: dict[str, tuple[dict[str, float], dict[str, list[str]]]] = {
    "lecture_notebook": ({}, {}),
    "nn_sequential": ({}, {}),
    "dropout_layer": ({}, {}),  # an nn.Dropout is off in eval mode: a note, no points lost
    "relu_for_tanh": ({"net.forward": 0}, {"net.forward": ["your forward calls relu 3 times where the reference calls tanh"]}),
    "wrong_channels": (
        {"net.layers": 7.5, "net.shapes": 0, "net.params": 5, "net.forward": 0},
        {
            "net.layers": ["layer 1 (conv1, Conv2d): expected out_channels=16, got 32"],
            "net.shapes": ["conv1 (Conv2d): it makes 32 channels, the reference's 16"],
            "net.params": ["expected 448 parameters, got 896: yours c_out·(c_in·k·k + 1) = 32·(3·3·3 + 1) = 896"],
            "net.forward": ["could not load the reference weights", "has shape [32, 3, 3, 3], the reference's has [16, 3, 3, 3]"],
        },
    ),
    "no_padding": (
        {"net.layers": 3.75, "net.shapes": 0, "net.params": 7.5, "net.forward": 0},
        {
            "net.layers": ["expected padding=1, got 0"],
            "net.shapes": [
                "conv1 (Conv2d): output size (W − K + 2P)/S + 1 = (32 − 3 + 2·0)/1 + 1 = 30",
                "yours 8·6·6 = 288",
                "32 → 30 (conv1) → 15 (max_pool2d) → 13 (conv2) → 6 (max_pool2d)",
            ],
            "net.params": ["out·(in + 1) = 32·(288 + 1) = 9,248", "32·(512 + 1) = 16,416"],
            "net.forward": ["could not load the reference weights"],
        },
    ),
    # Layers are aligned, so one extra layer costs only itself in net.layers and net.params.
    "extra_layer": (
        {"net.layers": 12, "net.shapes": 0, "net.params": 8, "net.forward": 0},
        {
            "net.layers": ["layer 4 (fc_extra, Linear) is extra: the reference has 4 layers with parameters"],
            "net.shapes": ["layer 4 (fc_extra, Linear) output expected [1, 2], got [1, 32]"],
            "net.params": ["total trainable parameters: expected 18090, got 19146"],
            "net.forward": ["an extra fc_extra (Linear) and tanh before fc2"],
        },
    ),
    "missing_activation": ({"net.forward": 0}, {"net.forward": ["no tanh after conv2"]}),
    "hard_coded_batch_size": (
        {"net.shapes": 0},
        {"net.shapes": ["hard-coded batch size of 64", "torch.flatten(x, 1)", "batch size 7: forward failed"]},
    ),
    "active_dropout": ({"net.forward": 0}, {"net.forward": ["an extra dropout before fc2", "training=self.training"]}),
    "missing_zero_grad": ({"loop.trains": 16}, {"loop.trains": ["gradients were never cleared: call optimizer.zero_grad() each step"]}),
    "step_under_no_grad": ({"loop.trains": 0}, {"loop.trains": ["torch.no_grad()", "does not require grad"]}),
    "exception_mid_epoch": (
        {"loop.trains": 12},
        {"loop.trains": ["training_loop raised ValueError: batch went missing (in training_loop, cell 5, line 5)"]},
    ),
    "missing_net": (NET_ZERO, {"net.instantiate": ["no class named Net is defined"], "net.forward": ["could not be built"]}),
    "missing_training_loop": ({"loop.trains": 0}, {"loop.trains": ["no function named training_loop is defined"]}),
}


@cache
def _recording_text(name: str) -> str:
    return (RECORDED / f"{name}.json").read_text(encoding="utf-8")


def recorded(name: str) -> dict[str, Any]:
    """A fresh copy of what the worker reported for one variant: {"extraction", "groups"}."""
    return json.loads(_recording_text(name))


def observations(raw: dict[str, Any], group: str, kind: str) -> list[dict[str, Any]]:
    """The raw observations of one kind in a recorded child's report, for editing."""
    return [o for o in raw["groups"][group]["observations"] if o.get("kind") == kind]


@pytest.fixture(scope="module")
def expected(cifar2: Assignment) -> Expectations:
    return load_fixtures(cifar2, RECORDED / "cifar2_expectations.json")


class Graded:
    """One submission decided from its recorded report, as the grading host decides it."""

    def __init__(self, raw: dict[str, Any], expected: Expectations, assignment: Assignment) -> None:
        groups = read_observed(raw["groups"], assignment)
        outcomes = {name: check(groups, expected, assignment) for name, check in CHECKS.items()}
        self.checks: dict[str, CheckResult] = {c.name: c for c in score_outcomes(outcomes, assignment)}
        self.notes = [f"{name}: {note}" for name, outcome in outcomes.items() for note in outcome.notes]
        # What validation said about each child's report: the rejected observations and why a
        # child ended early. The pipeline shows both to the student; the only place here that
        # reads the validated groups' own fields.
        self.rejections = {name: [*group.problems, *([group.failure] if group.failure else [])] for name, group in groups.items()}

    @property
    def points(self) -> dict[str, float]:
        return {name: check.points for name, check in self.checks.items()}

    def reasons(self, check: str) -> str:
        return " | ".join(self.checks[check].reasons)


@pytest.fixture
def grade(expected: Expectations, cifar2: Assignment):
    return lambda raw: Graded(raw, expected, cifar2)


def test_every_recording_has_its_points_pinned() -> None:
    assert sorted(p.stem for p in RECORDED.glob("*.json") if p.stem != "cifar2_expectations") == sorted(VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
def test_recorded_variant_earns_exactly_its_points(name: str, grade) -> None:
    lost, phrases = VARIANTS[name]
    graded = grade(recorded(name))
    assert graded.points == pytest.approx({**FULL, **lost}, abs=1e-9), {c: graded.reasons(c) for c in lost}
    for check, words in phrases.items():
        for word in words:
            assert word in graded.reasons(check), (check, word, graded.reasons(check))
    for check in FULL:  # a check that keeps its points gives no reason to lose them
        if check not in lost:
            assert graded.checks[check].reasons == [], (check, graded.checks[check].reasons)
    assert graded.rejections == {"net": [], "loop": []}, "every recorded observation fits its schema"


def test_correct_networks_are_credited_with_the_reference_training_run(grade) -> None:
    for name in ("lecture_notebook", "nn_sequential"):
        trains = grade(recorded(name)).checks["net.trains"]
        assert trains.details["trained_like_reference"] is True
        assert trains.details["final_loss"] < trains.details["initial_loss"] * 0.75


def test_extra_dropout_layer_costs_nothing_but_is_mentioned(grade) -> None:
    graded = grade(recorded("dropout_layer"))
    assert graded.points == pytest.approx(FULL)
    assert any(n.startswith("net.forward: an extra dropout (drop) before fc2") and "no points lost" in n for n in graded.notes), graded.notes


@pytest.mark.parametrize(
    ("name", "check", "error"),
    [
        (
            "hard_coded_batch_size",
            "net.shapes",
            "forward failed at batch size 1: RuntimeError: shape '[64, 512]' is invalid for input of size 512 (in forward, cell 4, line 12)",
        ),
        ("missing_net", "net.instantiate", "Net not defined"),
        ("missing_training_loop", "loop.trains", "training_loop not defined"),
        ("exception_mid_epoch", "loop.trains", "training_loop raised ValueError: batch went missing (in training_loop, cell 5, line 5)"),
        ("step_under_no_grad", "loop.trains", "element 0 of tensors does not require grad"),
    ],
)
def test_an_exception_is_named_in_the_error_column(name: str, check: str, error: str, grade) -> None:
    graded = grade(recorded(name))
    assert error in (graded.checks[check].error or "")
    assert [c for c, result in graded.checks.items() if result.error] == [check]


def test_wrong_values_without_an_exception_leave_the_error_column_empty(grade) -> None:
    graded = grade(recorded("relu_for_tanh"))
    assert graded.points["net.forward"] == 0
    assert not any(c.error for c in graded.checks.values())
    assert graded.checks["net.forward"].details["max_difference"] == pytest.approx(0.084, rel=0.05)


# ---------------------------------------------------------------- the points follow the observations


def test_a_recording_with_gradients_never_cleared_loses_the_loop_points(grade) -> None:
    raw = recorded("lecture_notebook")
    (loop,) = observations(raw, "loop", "loop")
    loop["backward_cleared"] = [True] + [False] * (len(loop["backward_cleared"]) - 1)

    graded = grade(raw)

    assert graded.points == pytest.approx({**FULL, "loop.trains": 16})
    assert graded.reasons("loop.trains") == "gradients were never cleared: call optimizer.zero_grad() each step"


def test_a_recording_whose_loop_breaks_after_one_batch_loses_the_coverage_points(grade) -> None:
    raw = recorded("lecture_notebook")
    (loop,) = observations(raw, "loop", "loop")
    loop["passes"] = [{"batches": 1, "backward": 1, "steps": 1} for _ in loop["passes"]]
    loop["batches"] = loop["steps"] = loop["loss_calls"] = len(loop["passes"])
    loop["backward_cleared"] = loop["backward_cleared"][: len(loop["passes"])]

    graded = grade(raw)

    assert graded.points == pytest.approx({**FULL, "loop.trains": 16})
    assert "took 1 of 8 batches in each epoch" in graded.reasons("loop.trains")


def test_a_recording_with_a_wrong_shape_at_one_batch_size_loses_half_the_shape_points(grade) -> None:
    raw = recorded("lecture_notebook")
    (trace,) = [t for t in observations(raw, "net", "trace") if t["batch"] == 7]
    trace["calls"][0]["output_shape"] = [7, 16, 30, 30]

    graded = grade(raw)

    assert graded.points == pytest.approx({**FULL, "net.shapes": 7.5})  # batch size 1 is still right
    assert "batch size 7: layer 1 (conv1, Conv2d) output expected [7, 16, 32, 32], got [7, 16, 30, 30]" in graded.reasons("net.shapes")


def test_the_claim_to_train_like_the_reference_is_checked_by_the_grader(grade) -> None:
    # The child did not train this Net, saying it behaves like the reference; gradients that
    # differ by 1% in one parameter disprove the claim, and the credit is withheld.
    raw = recorded("lecture_notebook")
    (forward,) = observations(raw, "net", "forward")
    (train,) = observations(raw, "net", "train")
    assert train["equivalent"] is True
    forward["gradients"][0] = [value * 1.01 for value in forward["gradients"][0]]

    graded = grade(raw)

    assert graded.points == pytest.approx({**FULL, "net.trains": 0})
    assert "the Net was not trained although its gradients differ from the reference's" in graded.reasons("net.trains")


def test_gradients_equal_within_float_rounding_keep_the_credit(grade) -> None:
    # Another CPU gives other last bits: a relative change of 1e-7 is no difference.
    raw = recorded("lecture_notebook")
    (forward,) = observations(raw, "net", "forward")
    forward["gradients"] = [[value * (1 + 1e-7) for value in digest] for digest in forward["gradients"]]

    assert grade(raw).points == pytest.approx(FULL)


# ---------------------------------------------------------------- malformed and forged observations


def test_a_non_finite_loss_is_rejected_with_a_note_and_costs_only_the_loop_check(grade) -> None:
    raw = recorded("lecture_notebook")
    (loop,) = observations(raw, "loop", "loop")
    loop["losses"][3] = math.nan  # JSON lets NaN through; the schema does not

    graded = grade(raw)

    assert graded.rejections == {"net": [], "loop": ["malformed 'loop' observation"]}
    assert graded.points == pytest.approx({**FULL, "loop.trains": 0})
    assert graded.reasons("loop.trains") == "malformed 'loop' observation"


def test_an_observation_of_an_unknown_kind_is_rejected_and_costs_nothing(grade) -> None:
    raw = recorded("lecture_notebook")
    raw["groups"]["net"]["observations"].insert(1, {"kind": "full_marks", "points": 100})
    raw["groups"]["net"]["observations"].insert(2, "not an observation at all")

    graded = grade(raw)

    assert graded.rejections == {"net": ["unknown observation kind 'full_marks'"], "loop": []}
    assert graded.points == pytest.approx(FULL)


def test_a_forward_output_that_is_not_an_array_is_a_reason_not_a_crash(grade) -> None:
    raw = recorded("lecture_notebook")
    (forward,) = observations(raw, "net", "forward")
    forward["output"] = {"dtype": "float32", "shape": [64, 2], "data": "not base64!"}

    graded = grade(raw)

    assert graded.points["net.forward"] == 0
    assert "could not be checked: forward output: data is not valid base64" in graded.reasons("net.forward")


def test_an_observation_reported_twice_distrusts_the_whole_child(grade) -> None:
    # A second copy can only come from student code writing to the report channel.
    raw = recorded("relu_for_tanh")
    (structure,) = observations(raw, "net", "structure")
    raw["groups"]["net"]["observations"].insert(0, structure)

    graded = grade(raw)

    assert graded.points == pytest.approx({**FULL, **NET_ZERO})
    (failure,) = graded.rejections["net"]
    assert "could not be trusted: the submission's code wrote to the grader's report channel" in failure
    assert graded.rejections["loop"] == []


def test_a_child_killed_before_it_finished_costs_the_checks_it_never_reported(grade) -> None:
    raw = recorded("lecture_notebook")
    net = raw["groups"]["net"]
    net["observations"] = [o for o in net["observations"] if o["kind"] not in ("forward", "operations", "train", "done")]
    net["signal"], net["exit_code"] = 9, None

    graded = grade(raw)

    assert graded.points == pytest.approx({**FULL, "net.forward": 0, "net.trains": 0})
    assert graded.rejections["net"] == ["the Net checks was killed (SIGKILL), possibly for using more than 4096 MB of memory"]
    assert "killed (SIGKILL)" in graded.reasons("net.forward")
