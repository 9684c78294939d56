"""Checks of the student's Net against the reference's observations."""

from __future__ import annotations

import difflib
import json
from typing import Any, Callable

import numpy as np

from grader.assignment import Assignment
from grader.compare.outcome import Outcome
from grader.errors import ObservationError
from grader.expectations import Expectations
from grader.observations import GroupObservations
from grader.wire import decode_array

_NOT_BUILT = "skipped: Net() could not be built (see net.instantiate)"


def _net(student: dict[str, GroupObservations]) -> GroupObservations:
    return student["net"]


def _unavailable(group: GroupObservations, kind: str) -> Outcome | None:
    """A failed outcome when the observation a check needs never arrived, else None."""
    if group.get(kind) is not None:
        return None
    instantiate = group.get("instantiate")
    if instantiate is not None and (instantiate["error"] or not instantiate["is_module_class"]):
        return Outcome.failed(_NOT_BUILT)
    if group.failure:
        return Outcome.failed(group.failure, error=group.failure)
    problem = "; ".join(group.problems) or "no observation was reported"
    return Outcome.failed(f"could not be checked: {problem}", error=problem)


def check_net_instantiate(student: dict[str, GroupObservations], expected: Expectations, assignment: Assignment) -> Outcome:
    group = _net(student)
    name = assignment.model_class
    seen = group.get("instantiate")
    if seen is None:
        return _unavailable(group, "instantiate") or Outcome.failed("no observation")
    if not seen["defined"]:
        return Outcome.failed(f"no class named {name} is defined", error=f"{name} not defined")
    if not seen["is_class"]:
        return Outcome.failed(f"{name} is defined, but not as a class", error=f"{name} is not a class")
    if not seen["is_module_class"]:
        return Outcome.failed(f"class {name} does not subclass nn.Module", error=f"{name} is not an nn.Module")
    if seen["error"]:
        return Outcome.failed(
            f"{name}() failed: {seen['error']}; {name}() must build with no arguments (give parameters defaults)",
            error=f"{name}() failed: {seen['error']}",
        )
    return Outcome.passed()


# ---------------------------------------------------------------- layers


def _label(index: int, layer: dict[str, Any]) -> str:
    return f"layer {index + 1} ({layer['path'] or 'the network itself'}, {layer['type']})"


def _normalized(hyper: dict[str, Any]) -> dict[str, Any]:
    """Write equivalent settings one way: padding='same'/'valid' as numbers, scalars as lists."""
    found = dict(hyper)
    kernel = found.get("kernel_size")
    dims = len(kernel) if isinstance(kernel, list) else 1
    for key in ("kernel_size", "stride", "dilation", "output_padding"):
        if isinstance(found.get(key), int):
            found[key] = [found[key]] * dims
    padding = found.get("padding")
    if padding == "valid":
        found["padding"] = [0] * dims
    elif padding == "same" and isinstance(kernel, list):
        dilation = found.get("dilation") or [1] * dims
        if all((d * (k - 1)) % 2 == 0 for d, k in zip(dilation, kernel)):
            found["padding"] = [d * (k - 1) // 2 for d, k in zip(dilation, kernel)]
    elif isinstance(padding, int):
        found["padding"] = [padding] * dims
    return found


def _show(value: Any) -> str:
    if isinstance(value, list) and value and all(v == value[0] for v in value):
        return str(value[0])
    return str(tuple(value)) if isinstance(value, list) else str(value)


def _student_layers(group: GroupObservations, assignment: Assignment) -> tuple[list[dict[str, Any]], str]:
    """The student's parametrized layers in forward order, and a note when only partly known."""
    traces = group.traces
    preferred = [assignment.forward.batch_size, *sorted(traces)]
    for batch in preferred:
        if batch in traces and traces[batch]["ok"]:
            return traces[batch]["calls"], ""
    structure = group.get("structure")
    error = next((t["error"] for t in traces.values() if t["error"]), None)
    if structure is None:
        return [], ""
    return structure["layers"], f" (layers listed in the order __init__ creates them, because forward failed: {error})"


def _layer_key(layer: dict[str, Any]) -> str:
    return json.dumps([layer["type"], _normalized(layer["hyper"])], sort_keys=True)


def _align(theirs: list[dict[str, Any]], mine: list[dict[str, Any]]) -> list[tuple[int | None, int | None]]:
    """Pair reference layers with the student's, so one missing or extra layer does not shift
    every later comparison. Identical layers pair first (longest common subsequence); between
    them, the remaining layers pair up in order and the surplus is missing or extra."""
    pairs: list[tuple[int | None, int | None]] = []
    matcher = difflib.SequenceMatcher(a=[_layer_key(l) for l in theirs], b=[_layer_key(l) for l in mine], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pairs += list(zip(range(i1, i2), range(j1, j2)))
            continue
        wanted, got = list(range(i1, i2)), list(range(j1, j2))
        # Prefer pairing layers of the same type (a Conv2d with the wrong channels is still the
        # Conv2d the reference has there); anything left over is missing or extra.
        for i in wanted:
            same_type = next((j for j in got if mine[j]["type"] == theirs[i]["type"]), None)
            if same_type is not None:
                got.remove(same_type)
            pairs.append((i, same_type))
        pairs += [(None, j) for j in got]
    return pairs


def _compare_aligned(
    theirs: list[dict[str, Any]], mine: list[dict[str, Any]], mismatch: Callable[[dict[str, Any], dict[str, Any]], str | None]
) -> tuple[int, list[str]]:
    """Count aligned layer pairs that `mismatch` finds equal; a reason for every other layer."""
    matched, reasons = 0, []
    for i, j in _align(theirs, mine):
        if i is None:
            assert j is not None
            reasons.append(f"{_label(j, mine[j])} is extra: the reference has {len(theirs)} layers with parameters")
        elif j is None:
            reasons.append(f"layer {i + 1} of the reference ({theirs[i]['type']}) is missing from your Net")
        else:
            problem = mismatch(theirs[i], mine[j])
            if problem:
                reasons.append(f"{_label(j, mine[j])}: {problem}")
            else:
                matched += 1
    return matched, reasons


def _hyperparameter_mismatch(want: dict[str, Any], got: dict[str, Any]) -> str | None:
    if want["type"] != got["type"]:
        return f"expected {want['type']}, got {got['type']}"
    want_hyper, got_hyper = _normalized(want["hyper"]), _normalized(got["hyper"])
    wrong = [
        f"{key}={_show(want_hyper[key])}, got {_show(got_hyper.get(key))}"
        for key in want_hyper
        if want_hyper[key] != got_hyper.get(key)
    ]
    return ("expected " + "; expected ".join(wrong)) if wrong else None


def check_net_layers(student: dict[str, GroupObservations], expected: Expectations, assignment: Assignment) -> Outcome:
    group = _net(student)
    missing = _unavailable(group, "structure")
    if missing:
        return missing
    mine, note = _student_layers(group, assignment)
    theirs = expected.layers
    matched, reasons = _compare_aligned(theirs, mine, _hyperparameter_mismatch)
    total = max(len(mine), len(theirs), 1)
    if reasons and note:
        reasons[-1] += note
    return Outcome(matched / total, reasons, details={"matched": matched, "layers": total})


# ---------------------------------------------------------------- shapes


def check_net_shapes(student: dict[str, GroupObservations], expected: Expectations, assignment: Assignment) -> Outcome:
    group = _net(student)
    missing = _unavailable(group, "structure")
    if missing:
        return missing
    reasons: list[str] = []
    batches = assignment.shape_batch_sizes
    passed = 0
    for batch in batches:
        mine, theirs = group.traces.get(batch), expected.net.traces.get(batch)
        if theirs is None:
            raise ObservationError(f"{expected.origin} has no trace for batch size {batch}; regenerate the fixtures")
        problem = _shape_problem(mine, theirs)
        if problem:
            reasons.append(f"batch size {batch}: {problem}")
        else:
            passed += 1
    # An exception in the student's forward belongs in the error column, like any other.
    raised = [f"forward failed at batch size {b}: {group.traces[b]['error']}" for b in batches if b in group.traces and group.traces[b]["error"]]
    return Outcome(passed / len(batches), reasons, error="; ".join(raised) or None)


def _shape_problem(mine: dict[str, Any] | None, theirs: dict[str, Any]) -> str | None:
    if mine is None:
        return "not observed (the Net checks stopped early)"
    if not mine["ok"]:
        return f"forward failed: {mine['error']}" + (" — is the batch size hard-coded?" if "shape" in (mine["error"] or "") else "")
    for i, (got, want) in enumerate(zip(mine["calls"], theirs["calls"])):
        if got["output_shape"] != want["output_shape"]:
            return f"{_label(i, got)} output expected {want['output_shape']}, got {got['output_shape']}"
    if len(mine["calls"]) != len(theirs["calls"]):
        return f"{len(mine['calls'])} layers with parameters ran, the reference runs {len(theirs['calls'])}"
    if mine["output_shape"] != theirs["output_shape"]:
        return f"final output expected {theirs['output_shape']}, got {mine['output_shape']}"
    return None


# ---------------------------------------------------------------- parameter counts


def check_net_params(student: dict[str, GroupObservations], expected: Expectations, assignment: Assignment) -> Outcome:
    group = _net(student)
    missing = _unavailable(group, "structure")
    if missing:
        return missing
    structure = group.get("structure")
    assert structure is not None
    want_total = expected.net.by_kind["structure"]["total_trainable"]
    got_total = structure["total_trainable"]
    reasons: list[str] = []
    total_ok = want_total == got_total
    if not total_ok:
        reasons.append(f"total trainable parameters: expected {want_total}, got {got_total}")
    mine, _ = _student_layers(group, assignment)
    theirs = expected.layers

    def count_mismatch(want: dict[str, Any], got: dict[str, Any]) -> str | None:
        if want["trainable"] == got["trainable"]:
            return None
        return f"expected {want['trainable']} parameters, got {got['trainable']}"

    matched, layer_reasons = _compare_aligned(theirs, mine, count_mismatch)
    reasons += layer_reasons
    per_layer = matched / max(len(theirs), len(mine), 1)
    # A third of the points for the total, two thirds for the per-layer counts.
    return Outcome((1.0 if total_ok else 0.0) / 3 + 2 * per_layer / 3, reasons, details={"total": got_total})


# ---------------------------------------------------------------- forward with reference weights


def check_net_forward(student: dict[str, GroupObservations], expected: Expectations, assignment: Assignment) -> Outcome:
    group = _net(student)
    missing = _unavailable(group, "forward")
    if missing:
        return missing
    seen = group.get("forward")
    assert seen is not None
    if not seen["loaded"]:
        return Outcome.failed(_load_problem(seen["order"], expected.weights))
    if seen["error"]:
        return Outcome.failed(f"with the reference weights loaded, forward failed: {seen['error']}", error=f"forward failed: {seen['error']}")
    try:
        output = decode_array(seen["output"], what="forward output")
    except ObservationError as exc:
        return Outcome.failed(f"could not be checked: {exc}", error=str(exc))
    want = expected.forward_output
    if output.shape != want.shape:
        return Outcome.failed(f"output shape {list(output.shape)} differs from the reference's {list(want.shape)}")
    if not np.all(np.isfinite(output)):
        return Outcome.failed("with the reference weights loaded, the output contains NaN or infinity")
    difference = float(np.max(np.abs(output.astype(np.float64) - want)))
    tolerance = assignment.forward
    if not np.allclose(output, want, atol=tolerance.atol, rtol=tolerance.rtol):
        return Outcome.failed(
            f"after loading the reference weights the output differs by up to {difference:.3g}: check your "
            "activation functions, pooling, and the order of operations in forward",
            max_difference=difference,
        )
    return Outcome.passed(max_difference=difference)


def _load_problem(order: list[dict[str, Any]], weights: list[np.ndarray]) -> str:
    prefix = "could not load the reference weights into your Net"
    for i, (mine, want) in enumerate(zip(order, weights)):
        if list(want.shape) != mine["shape"]:
            return f"{prefix}: parameter {i + 1} in forward order ({mine['name']}) has shape {mine['shape']}, the reference's has {list(want.shape)}"
    return f"{prefix}: it has {len(order)} parameter tensors, the reference has {len(weights)}"


# ---------------------------------------------------------------- trains


def loss_drop_problem(initial: float | None, final: float | None, min_drop: float) -> str | None:
    """None when the loss fell by at least `min_drop` of its initial value."""
    if initial is None or final is None:
        return "the loss became NaN or infinite"
    target = initial * (1 - min_drop)
    if final <= target:
        return None
    return f"{initial:.3f} before training, {final:.3f} after; it needs to reach {target:.3f} or less"


def loss_curves(seen: dict[str, Any], expected: Expectations) -> dict[str, Any]:
    """Details for the report's loss plots: the loss of every training batch of this run, and of
    the reference Net trained by the reference loop on the same data (absent in selfcheck, whose
    fixtures hold no training run). Plots only: no points depend on them."""
    curves: dict[str, Any] = {"losses": seen["losses"], "loss_stride": seen["loss_stride"]}
    reference = expected.net.get("train")
    if reference is not None:
        curves.update(reference_losses=reference["losses"], reference_loss_stride=reference["loss_stride"])
    return curves


def check_net_trains(student: dict[str, GroupObservations], expected: Expectations, assignment: Assignment) -> Outcome:
    group = _net(student)
    missing = _unavailable(group, "train")
    if missing:
        return missing
    seen = group.get("train")
    assert seen is not None
    curves = loss_curves(seen, expected)
    if seen["error"]:
        return Outcome.failed(f"training your Net failed: {seen['error']}", error=f"training failed: {seen['error']}", **curves)
    problem = loss_drop_problem(seen["initial_loss"], seen["final_loss"], assignment.training.min_loss_drop)
    details = {"initial_loss": seen["initial_loss"], "final_loss": seen["final_loss"], **curves}
    if problem:
        epochs = assignment.training.epochs
        return Outcome.failed(f"trained for {epochs} epochs, the loss did not go down enough ({problem})", **details)
    return Outcome.passed(**details)
