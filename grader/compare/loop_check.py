"""The training_loop check: six criteria, each earning its weight's share of the points.

Never imports torch or student code: it reads the loop probe's validated observation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grader.assignment import Assignment
from grader.compare.error_explanations import explain_error
from grader.compare.expectations import Expectations
from grader.compare.net_checks import loss_drop_problem
from grader.compare.outcome import Outcome
from grader.observations import GroupObservations
from grader.protocol import LoopCall, LoopRun

# Weights, in twentieths of the check's points. The loss is the outcome the others serve, so it
# weighs most: a loop that raised loses "runs" with it (8), one missing backward() or step() its
# own criterion with it (8). Bugs the loss survives on the grader's short job carry 4 on their
# own: gradients never cleared, and training on less than every batch of n_epochs epochs (a
# `break` after the first batch, or a fixed `range(1, 3)`), which is one criterion with a reason
# per way it went wrong.
CRITERIA = {
    "runs": 2,
    "every batch of every epoch": 4,
    "clears gradients": 4,
    "backward per batch": 2,
    "step per batch": 2,
    "loss goes down": 6,
}


def check_loop_trains(student: dict[str, GroupObservations], expected: Expectations, assignment: Assignment) -> Outcome:
    group = student["loop"]
    name = assignment.loop_function
    assert name is not None, "loop.trains applies only to an assignment with a loop"
    seen = group.get("loop")
    if seen is None:
        cause = group.failure or "; ".join(group.problems) or "no observation was reported"
        return Outcome.failed(cause, error=cause)
    if not seen["defined"]:
        others = seen["alternatives"]
        if others:
            found = " and ".join(others[:3])
            return Outcome.failed(
                f"no function named {name} is defined, but your notebook defines {found}, which takes the loop's "
                f"arguments: the assignment grades the function named {name}, so rename yours to {name}",
                error=f"{name} not defined (found {', '.join(o.split('(')[0] for o in others[:3])})",
            )
        return Outcome.failed(f"no function named {name} is defined", error=f"{name} not defined")
    if not seen["callable"]:
        return Outcome.failed(f"{name} is defined, but is not a function", error=f"{name} is not a function")

    call = seen["call"]
    signature = list(assignment.loop_signature)
    if call["unfilled"]:
        missing = ", ".join(f"'{p}'" for p in call["unfilled"])
        reason = (
            f"{name} requires {missing} with no default value, but the assignment calls it with "
            f"({', '.join(signature)}) only: give {'it' if len(call['unfilled']) == 1 else 'them'} a default "
            f"(e.g. {call['unfilled'][0]}=None) or leave {'it' if len(call['unfilled']) == 1 else 'them'} out"
        )
        return Outcome.failed(reason, error=f"{name} requires {missing}, which the assignment does not give")
    training = _training(seen)
    failures = _criteria_failures(seen, training, name, assignment)
    passed = [c for c in CRITERIA if c not in failures]
    error = f"{name} raised {seen['error']}" if seen["error"] else None
    counts = {
        "passed": passed,
        "epochs": training.epochs,
        "batches": training.batches,
        "backward": len(seen["backward_cleared"]),
        "steps": seen["steps"],
    }
    # Beside the reference training_loop training the same stand-in model, when it was observed
    # (not in selfcheck, whose fixtures hold no loop run).
    curves: dict[str, Any] = {"losses": seen["losses"], "loss_stride": seen["loss_stride"]}
    reference = expected.reference_loop
    if reference is not None and reference["callable"]:
        curves.update(reference_losses=reference["losses"], reference_loss_stride=reference["loss_stride"])
    return Outcome(
        sum(CRITERIA[c] for c in passed) / sum(CRITERIA.values()),
        list(dict.fromkeys(reason for c in CRITERIA for reason in failures.get(c, []))),
        error=error,
        details={**counts, **curves},
        notes=_call_notes(call, name, signature),
    )


def _call_notes(call: LoopCall, name: str, signature: list[str]) -> list[str]:
    """Say how the loop was called when its parameters are not the assignment's, as written."""
    own = [p for p in call["parameters"] if p in signature] if call["by"] == "keyword" else call["parameters"][: len(signature)]
    if not call["parameters"] or own == signature:
        return []
    takes = f"your {name} takes ({', '.join(call['parameters'])})"
    if call["by"] == "keyword":
        return [f"{takes}; it was called by keyword as the lecture does ({', '.join(f'{p}=...' for p in signature)}), so the order does not matter"]
    return [f"{takes}; it was called with the assignment's arguments by position, in the order ({', '.join(signature)})"]


@dataclass
class _Training:
    """The passes over train_loader that trained, as the probe recorded them."""

    epochs: int  # passes that trained
    batches: int  # batches drawn in them
    per_epoch: list[int]  # batches drawn in each recorded pass that trained, in order


def _training(seen: LoopRun) -> _Training:
    """An epoch is a pass over train_loader followed by a backward pass or a step before the next
    pass began. A pass with neither is an evaluation pass (accuracy over train_loader, say): not
    an epoch, and its batches are not training batches. When no pass trained, nothing tells them
    apart, and every pass counts. Passes beyond those recorded count as epochs."""
    recorded = seen["passes"]
    trained = [p for p in recorded if p["backward"] or p["steps"]] or recorded
    unrecorded_batches = seen["batches"] - sum(p["batches"] for p in recorded)
    return _Training(
        epochs=len(trained) + seen["epochs_started"] - len(recorded),
        batches=sum(p["batches"] for p in trained) + unrecorded_batches,
        per_epoch=[p["batches"] for p in trained],
    )


def _parameter(assignment: Assignment, role: str) -> str:
    """The solution loop's name for a role ("train_loader", "trainloader", "train_iter"), so the
    reasons speak of the parameters students wrote."""
    return next((name for name, held in assignment.loop_roles.items() if held == role), role)


def _criteria_failures(seen: LoopRun, training: _Training, name: str, assignment: Assignment) -> dict[str, list[str]]:
    """The reasons each failed criterion lost its points, by criterion."""
    min_drop, batch_size, loader = assignment.training.min_loss_drop, assignment.training.batch_size, _parameter(assignment, "train_loader")
    failures: dict[str, list[str]] = {}
    batches = training.batches
    backward = len(seen["backward_cleared"])
    error = seen["error"]
    raised = error is not None
    if error is not None:
        meaning = explain_error(error, batch_size=batch_size)
        raised_how = f"an error. {meaning} (the error: {error})" if meaning else error
        failures["runs"] = [f"{name} raised {raised_how}"]
    if batches == 0:
        never = [f"{name} never took a batch from {loader}"]
        return {**failures, **{c: never for c in CRITERIA if c != "runs"}}
    if raised and batches == 1:
        first = [f"{name} failed on its first batch, so this could not be checked"]
        return {**failures, **{c: first for c in CRITERIA if c != "runs"}}

    def once_per_batch(count: int) -> bool:
        # A loop that raised may have been stopped between drawing a batch and finishing it.
        return count == batches or (raised and count == batches - 1)

    if backward:
        uncleared = sum(not cleared for cleared in seen["backward_cleared"][1:])
        if uncleared == backward - 1 and backward > 1:
            failures["clears gradients"] = ["gradients were never cleared: call optimizer.zero_grad() each step"]
        elif uncleared:
            failures["clears gradients"] = [
                f"gradients were not cleared before {uncleared} of {backward} backward passes: call optimizer.zero_grad() each step"
            ]
    elif not once_per_batch(seen["zero_grad_calls"]):
        failures["clears gradients"] = [
            f"optimizer.zero_grad() ran {seen['zero_grad_calls']} times for {batches} batches: call it once per batch"
        ]
    if not once_per_batch(backward):
        failures["backward per batch"] = [
            f"loss.backward() ran {backward} times for {batches} batches: call it once per batch"
        ]
    if not once_per_batch(seen["steps"]):
        failures["step per batch"] = [
            f"optimizer.step() ran {seen['steps']} times for {batches} batches: call it once per batch"
        ]
        if seen.get("foreign_steps") and not seen["steps"]:
            given = _parameter(assignment, "optimizer")
            failures["step per batch"] = [
                f"{name} steps an optimizer it makes itself, not the {given} it is given, so the optimizer the "
                f"assignment chooses is never used: call {given}.step() (and {given}.zero_grad()) on the {given} parameter"
            ]
    if coverage := _coverage_problems(training, seen["n_epochs"], seen["batches_per_epoch"], raised, _parameter(assignment, "n_epochs"), loader):
        failures["every batch of every epoch"] = coverage
    if raised:
        failures["loss goes down"] = [f"{name} did not finish, so the loss could not be judged"]
    else:
        problem = loss_drop_problem(seen["initial_loss"], seen["final_loss"], min_drop)
        if problem:
            failures["loss goes down"] = [f"the loss did not go down enough ({problem})"]
    return failures


def _coverage_problems(training: _Training, n_epochs: int, per_epoch: int, raised: bool, epochs_name: str, loader: str) -> list[str]:
    """Why the loop did not train on every batch of n_epochs epochs. A loop that raised is judged
    on what it did before: more epochs than n_epochs, or an epoch it finished short."""
    problems = []
    if training.epochs > n_epochs or (training.epochs < n_epochs and not raised):
        problems.append(
            f"ran {_plural(training.epochs, 'epoch', 'epochs')} where {epochs_name} was {n_epochs}: "
            f"train for exactly {epochs_name} epochs (for epoch in range(1, {epochs_name} + 1):)"
        )
    finished = training.per_epoch[:-1] if raised else training.per_epoch
    if any(count < per_epoch for count in finished):
        problems.append(
            f"took {_batches_per_epoch(finished, per_epoch)}: train on every batch of {loader} "
            f"in each epoch (for imgs, labels in {loader}:, with no break)"
        )
    return problems


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _batches_per_epoch(per_epoch: list[int], expected: int) -> str:
    """'1 of 8 batches in each epoch', or by runs of epochs: '8 of 8 batches in epochs 1-3, 1 in epoch 4'."""
    of = f"of {_plural(expected, 'batch', 'batches')}"
    if len(set(per_epoch)) == 1:
        return f"{per_epoch[0]} {of} in each epoch"
    runs: list[list[int]] = []  # [first epoch, last epoch, batches], epochs counted from 1
    for epoch, count in enumerate(per_epoch, 1):
        if runs and runs[-1][2] == count:
            runs[-1][1] = epoch
        else:
            runs.append([epoch, epoch, count])
    parts = [
        f"{count}{f' {of}' if i == 0 else ''} in {f'epoch {first}' if first == last else f'epochs {first}-{last}'}"
        for i, (first, last, count) in enumerate(runs[:6])
    ]
    return ", ".join(parts) + (", ..." if len(runs) > 6 else "")
