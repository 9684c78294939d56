"""The training_loop check: five equal criteria, each earning its share of the points."""

from __future__ import annotations

from typing import Any

from grader.assignment import Assignment
from grader.compare.net_checks import loss_curves, loss_drop_problem
from grader.compare.outcome import Outcome
from grader.expectations import Expectations
from grader.observations import GroupObservations

CRITERIA = ("runs", "clears gradients", "backward per batch", "step per batch", "loss goes down")


def check_loop_trains(student: dict[str, GroupObservations], expected: Expectations, assignment: Assignment) -> Outcome:
    group = student["loop"]
    name = assignment.loop_function
    seen = group.get("loop")
    if seen is None:
        cause = group.failure or "; ".join(group.problems) or "no observation was reported"
        return Outcome.failed(cause, error=cause)
    if not seen["defined"]:
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
    failures = _criteria_failures(seen, name, assignment.training.min_loss_drop)
    passed = [c for c in CRITERIA if c not in failures]
    error = f"{name} raised {seen['error']}" if seen["error"] else None
    counts = {"passed": passed, "batches": seen["batches"], "backward": len(seen["backward_cleared"]), "steps": seen["steps"]}
    curves = loss_curves(seen, expected)
    if expected.loop_model_spec is not None:  # the loop trained a stand-in model, not the reference Net
        curves = {k: v for k, v in curves.items() if not k.startswith("reference_")}
    return Outcome(
        len(passed) / len(CRITERIA),
        list(dict.fromkeys(failures[c] for c in CRITERIA if c in failures)),
        error=error,
        details={**counts, **curves},
        notes=_call_notes(call, name, signature),
    )


def _call_notes(call: dict[str, Any], name: str, signature: list[str]) -> list[str]:
    """Say how the loop was called when its parameters are not the assignment's, as written."""
    own = [p for p in call["parameters"] if p in signature] if call["by"] == "keyword" else call["parameters"][: len(signature)]
    if not call["parameters"] or own == signature:
        return []
    takes = f"your {name} takes ({', '.join(call['parameters'])})"
    if call["by"] == "keyword":
        return [f"{takes}; it was called by keyword as the lecture does ({', '.join(f'{p}=...' for p in signature)}), so the order does not matter"]
    return [f"{takes}; it was called with the assignment's arguments by position, in the order ({', '.join(signature)})"]


def _criteria_failures(seen: dict[str, Any], name: str, min_drop: float) -> dict[str, str]:
    failures: dict[str, str] = {}
    batches = seen["batches"]
    backward = len(seen["backward_cleared"])
    raised = seen["error"] is not None
    if raised:
        failures["runs"] = f"{name} raised {seen['error']}"
    if batches == 0:
        never = f"{name} never took a batch from train_loader"
        return {**failures, **{c: never for c in CRITERIA if c != "runs"}}
    if raised and batches == 1:
        first = f"{name} failed on its first batch, so this could not be checked"
        return {**failures, **{c: first for c in CRITERIA if c != "runs"}}

    def once_per_batch(count: int) -> bool:
        # A loop that raised may have been stopped between drawing a batch and finishing it.
        return count == batches or (raised and count == batches - 1)

    if backward:
        uncleared = sum(not cleared for cleared in seen["backward_cleared"][1:])
        if uncleared == backward - 1 and backward > 1:
            failures["clears gradients"] = "gradients were never cleared: call optimizer.zero_grad() each step"
        elif uncleared:
            failures["clears gradients"] = f"gradients were not cleared before {uncleared} of {backward} backward passes: call optimizer.zero_grad() each step"
    elif not once_per_batch(seen["zero_grad_calls"]):
        failures["clears gradients"] = f"optimizer.zero_grad() ran {seen['zero_grad_calls']} times for {batches} batches: call it once per batch"
    if not once_per_batch(backward):
        failures["backward per batch"] = f"loss.backward() ran {backward} times for {batches} batches: call it once per batch"
    if not once_per_batch(seen["steps"]):
        failures["step per batch"] = f"optimizer.step() ran {seen['steps']} times for {batches} batches: call it once per batch"
    if raised:
        failures["loss goes down"] = f"{name} did not finish, so the loss could not be judged"
    else:
        problem = loss_drop_problem(seen["initial_loss"], seen["final_loss"], min_drop)
        if problem:
            failures["loss goes down"] = f"the loss did not go down enough ({problem})"
    return failures
