"""Checks of the student's Net against the reference's observations."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from grader.assignment import Assignment
from grader.compare.error_explanations import diagnose_error, explain_error
from grader.compare.error_explanations import with_explanation as explained
from grader.compare.expectations import Expectations
from grader.compare.formulas import flatten_size, parameter_count, size_differences
from grader.compare.forward_operations import ForwardOperations, align, differences, first_divergence, network_picture
from grader.compare.hyperparameters import normalized as _normalized
from grader.compare.hyperparameters import show as _show
from grader.compare.outcome import Outcome
from grader.compare.sharing import Sharing, compare_sharing, conflicting_loads, load_conflict
from grader.errors import ObservationError
from grader.observations import GroupObservations, digests_agree
from grader.protocol import ForwardObservation, Layer, LossCurve, Parameter, TraceObservation
from grader.wire import decode_array

_NOT_BUILT = "skipped: your network class could not be built (see net.instantiate)"
_NOT_IMPLEMENTED = "skipped: your network class is not implemented yet (its stub raises NotImplementedError, see net.instantiate)"


def _net(student: dict[str, GroupObservations]) -> GroupObservations:
    return student["net"]


def _unavailable(group: GroupObservations, kind: Literal["instantiate", "structure", "forward", "train"]) -> Outcome | None:
    """A failed outcome when the observation a check needs never arrived, else None."""
    if group.get(kind) is not None:
        return None
    instantiate = group.get("instantiate")
    if instantiate is not None and (instantiate["error"] or not instantiate["is_module_class"]):
        stub = instantiate["error"] and (diagnose_error(instantiate["error"]) or ("",))[0] == "not_implemented"
        return Outcome.failed(_NOT_IMPLEMENTED if stub else _NOT_BUILT)
    if group.failure:
        return Outcome.failed(group.failure, error=group.failure)
    problem = "; ".join(group.problems) or "no observation was reported"
    return Outcome.failed(f"could not be checked: {problem}", error=problem)


def _full_trace(group: GroupObservations) -> TraceObservation | None:
    """A trace of a whole forward pass (the largest batch that ran through): how often each layer runs."""
    return next((trace for _, trace in sorted(group.traces.items(), reverse=True) if trace["ok"]), None)


def _operations(group: GroupObservations, expected: Expectations) -> tuple[ForwardOperations, ForwardOperations, list] | None:
    """Both forwards operation by operation, aligned; None when either was not recorded (an old
    fixtures file, or a Net that never ran)."""
    theirs = ForwardOperations.of(expected.net.get("operations"), expected.net.get("structure"), _full_trace(expected.net))
    mine = ForwardOperations.of(group.get("operations"), group.get("structure"), _full_trace(group))
    if theirs is None or mine is None:
        return None
    return theirs, mine, align(theirs, mine)


def _sharing(group: GroupObservations, expected: Expectations, assignment: Assignment) -> Sharing:
    """How the blocks the student's Net shares (one object under several paths) differ from the
    reference's (grader/compare/sharing.py)."""
    mine, _ = _student_layers(group, assignment)
    return compare_sharing(expected.net.get("structure"), group.get("structure"), expected.layers, mine)


def check_net_instantiate(student: dict[str, GroupObservations], expected: Expectations, assignment: Assignment) -> Outcome:
    group = _net(student)
    name = assignment.model_class
    seen = group.get("instantiate")
    if seen is None:
        return _unavailable(group, "instantiate") or Outcome.failed("no observation")
    if not seen["defined"]:
        others = seen["alternatives"]
        if others:
            found = " and ".join(f"class {other}(nn.Module)" for other in others[:3])
            return Outcome.failed(
                f"no class named {name} is defined, but your notebook defines {found}: the assignment grades the class "
                f"named {name}, so rename yours to {name}",
                error=f"{name} not defined (found {', '.join(others[:3])})",
            )
        return Outcome.failed(f"no class named {name} is defined", error=f"{name} not defined")
    if not seen["is_class"]:
        return Outcome.failed(f"{name} is defined, but not as a class", error=f"{name} is not a class")
    if not seen["is_module_class"]:
        return Outcome.failed(f"class {name} does not subclass nn.Module", error=f"{name} is not an nn.Module")
    if seen["error"]:
        meaning = explain_error(seen["error"])
        return Outcome.failed(
            f"{name}() failed. {meaning} (the error: {seen['error']})" if meaning
            else f"{name}() failed: {seen['error']}; {name}() must build with no arguments (give parameters defaults)",
            error=f"{name}() failed: {seen['error']}",
        )  # fmt: skip
    return Outcome.passed()


# ---------------------------------------------------------------- layers


def _label(index: int, layer: Layer) -> str:
    return f"layer {index + 1} ({layer['path'] or 'the network itself'}, {layer['type']})"


def _student_layers(group: GroupObservations, assignment: Assignment) -> tuple[Sequence[Layer], str]:
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


def _layer_key(layer: Layer) -> str:
    return json.dumps([layer["type"], _normalized(layer["hyper"])], sort_keys=True)


def _align(theirs: Sequence[Layer], mine: Sequence[Layer]) -> list[tuple[int | None, int | None]]:
    """Pair reference layers with the student's, so one missing or extra layer does not shift
    every later comparison. Identical layers pair first (longest common subsequence); between
    them, the remaining layers pair up in order and the surplus is missing or extra."""
    pairs: list[tuple[int | None, int | None]] = []
    matcher = difflib.SequenceMatcher(a=[_layer_key(layer) for layer in theirs], b=[_layer_key(layer) for layer in mine], autojunk=False)
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


def _compare_aligned(theirs: Sequence[Layer], mine: Sequence[Layer], mismatch: Callable[[Layer, Layer], str | None]) -> tuple[int, list[str]]:
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


def _hyperparameter_mismatch(want: Layer, got: Layer) -> str | None:
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
    if reasons:
        reasons += _sharing(group, expected, assignment).mistakes()
    details: dict[str, Any] = {"matched": matched, "layers": total}
    operations = _operations(group, expected)
    if operations:
        # The steps between layers are what net.forward checks: a hidden net.forward keeps them out.
        details["network"] = network_picture(*operations, layers_only=not assignment.checks["net.forward"].public)
    return Outcome(matched / total, reasons, details=details)


# ---------------------------------------------------------------- shapes


def check_net_shapes(student: dict[str, GroupObservations], expected: Expectations, assignment: Assignment) -> Outcome:
    group = _net(student)
    missing = _unavailable(group, "structure")
    if missing:
        return missing
    reasons: list[str] = []
    batches = assignment.shape_batch_sizes
    passed = 0
    explain = True  # the first failure's explanation serves the others: they are the same mistake
    for batch in batches:
        mine, theirs = group.traces.get(batch), expected.net.traces.get(batch)
        if theirs is None:
            raise ObservationError(f"{expected.origin} has no trace for batch size {batch}; regenerate the fixtures")
        problem = _shape_problem(mine, theirs, batch if explain else None)
        explain = explain and problem is None
        if problem:
            reasons.append(f"batch size {batch}: {problem}")
        else:
            passed += 1
    # An exception in the student's forward belongs in the error column, like any other.
    raised = [f"forward failed at batch size {b}: {group.traces[b]['error']}" for b in batches if b in group.traces and group.traces[b]["error"]]
    operations = _operations(group, expected)
    if reasons and operations:
        # Why the sizes come out as they do, in the lecture's formulas with the student's numbers.
        reasons += size_differences(*operations)
        flatten = flatten_size(operations[0], operations[1])
        if flatten:
            reasons.append(flatten)
    return Outcome(passed / len(batches), reasons, error="; ".join(raised) or None)


def _shape_problem(mine: TraceObservation | None, theirs: TraceObservation, explain_for_batch: int | None) -> str | None:
    if mine is None:
        return "not observed (the Net checks stopped early)"
    if not mine["ok"]:
        error = mine["error"] or "no output"
        return f"forward failed: {explained(error, batch_size=explain_for_batch) if explain_for_batch else error}"
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
    structure, reference = group.get("structure"), expected.net.get("structure")
    assert structure is not None and reference is not None
    want_total = reference["total_trainable"]
    got_total = structure["total_trainable"]
    reasons: list[str] = []
    notes: list[str] = []
    sharing = _sharing(group, expected, assignment)
    total_ok = want_total == got_total
    if not total_ok and sharing.unshared and got_total == want_total + sharing.extra_parameters():
        # Separate blocks where the reference repeats one: each holds what the reference's one
        # block holds, so the total is larger by the copies, and nothing is wrong.
        total_ok = True
        notes += [f"{note} (no points lost: each of your blocks can hold the reference's shared weights)" for note in sharing.notes()]
    if not total_ok:
        reasons.append(f"total trainable parameters: expected {want_total}, got {got_total}")
    mine, _ = _student_layers(group, assignment)
    theirs = expected.layers

    def count_mismatch(want: Layer, got: Layer) -> str | None:
        if want["trainable"] == got["trainable"]:
            return None
        problem = f"expected {want['trainable']:,} parameters, got {got['trainable']:,}"
        mine, theirs = parameter_count(got), parameter_count(want)
        if mine and theirs:
            problem += f": yours {mine}; the reference's {theirs}"
        return problem

    matched, layer_reasons = _compare_aligned(theirs, mine, count_mismatch)
    reasons += layer_reasons
    if reasons:
        reasons += sharing.mistakes()
    per_layer = matched / max(len(theirs), len(mine), 1)
    # A third of the points for the total, two thirds for the per-layer counts.
    return Outcome((1.0 if total_ok else 0.0) / 3 + 2 * per_layer / 3, reasons, details={"total": got_total}, notes=notes)


# ---------------------------------------------------------------- forward with reference weights


def check_net_forward(student: dict[str, GroupObservations], expected: Expectations, assignment: Assignment) -> Outcome:
    group = _net(student)
    missing = _unavailable(group, "forward")
    if missing:
        return missing
    seen = group.get("forward")
    assert seen is not None
    conflicts = conflicting_loads(seen["order"], expected.weights) if seen["loaded"] else []
    if conflicts:
        # One block object where the reference has several: only the last block's weights stayed.
        problem = load_conflict(conflicts, seen["order"], _sharing(group, expected, assignment))
        outcome = Outcome.failed(f"could not load the reference weights into your Net: {problem}")
    else:
        outcome = _forward_outcome(seen, expected, assignment)
    operations = _operations(group, expected)
    if operations:
        # Name the steps that differ: as the reasons when points are lost, else as notes, so an
        # extra dropout that changes nothing in eval mode is still mentioned.
        found = differences(*operations)
        if outcome.fraction < 1:
            # Outputs compared step by step only mean something when every weight loaded.
            divergence = None if conflicts else first_divergence(*operations)
            named = found + ([divergence] if divergence and not found else [])
            if named and outcome.fraction == 0 and "max_difference" in outcome.details:
                # The general hint gives way to the named steps; the size of the difference stays.
                outcome.reasons = [f"after loading the reference weights the output differs by up to {outcome.details['max_difference']:.3g}"]
            outcome.reasons = named + outcome.reasons
        else:
            outcome.notes += [f"{finding} (no points lost: with the reference weights the output still matches)" for finding in found]
    return outcome


def _forward_outcome(seen: ForwardObservation, expected: Expectations, assignment: Assignment) -> Outcome:
    batch = assignment.forward.batch_size
    if not seen["loaded"]:
        return Outcome.failed(_load_problem(seen["order"], expected.weights))
    if seen["error"]:
        return Outcome.failed(
            f"with the reference weights loaded, forward failed: {explained(seen['error'], batch_size=batch)}",
            error=f"forward failed: {seen['error']}",
        )
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
    training = _training_mode_problem(seen, expected, assignment)
    if training is None:
        return Outcome.passed(max_difference=difference)
    reason, training_difference = training
    details = {"max_difference": difference, "training_mode_max_difference": training_difference}
    return Outcome(TRAINING_MODE_SHARE, [reason], details={k: v for k, v in details.items() if v is not None})


# The share of net.forward a Net keeps when its output matches the reference's in eval mode but
# not in training mode: everything but its dropout (or BatchNorm on batch statistics) is right.
TRAINING_MODE_SHARE = 0.5
_TRAINING_MODE = "in training mode (dropout on, BatchNorm on the batch's statistics)"


def _training_mode_problem(seen: ForwardObservation, expected: Expectations, assignment: Assignment) -> tuple[str, float | None] | None:
    """Why the output in training mode, with the reference weights and the same random seed,
    differs from the reference's, and by how much; None when it matches. Only where the
    reference's own output depends on the mode (it applies dropout or BatchNorm): otherwise an
    extra dropout costs nothing, and the operation diff mentions it as a note."""
    want = expected.train_output
    tolerance = assignment.forward
    if want is None or (want.shape == expected.forward_output.shape and np.allclose(want, expected.forward_output, atol=tolerance.atol, rtol=tolerance.rtol)):
        return None
    if seen["train_error"] or seen["train_output"] is None:
        error = seen["train_error"] or "no output"
        return f"{_TRAINING_MODE}, with the reference weights loaded, forward failed: {error}", None
    try:
        output = decode_array(seen["train_output"], what="training-mode output")
    except ObservationError as exc:
        return f"{_TRAINING_MODE} your output could not be checked: {exc}", None
    if output.shape == want.shape and np.allclose(output, want, atol=tolerance.atol, rtol=tolerance.rtol):
        return None
    difference = float(np.max(np.abs(output.astype(np.float64) - want))) if output.shape == want.shape else None
    by = f" by up to {difference:.3g}" if difference is not None and np.isfinite(difference) else ""
    return (
        f"{_TRAINING_MODE}, with the reference weights and the same random seed, your output differs from the "
        f"reference's{by} (in eval mode it matches): check that each dropout the reference applies is there, in the same "
        "place, of the same kind and with the same p, and that BatchNorm comes where the reference applies it",
        difference,
    )


def _load_problem(order: list[Parameter], weights: list[np.ndarray]) -> str:
    prefix = "could not load the reference weights into your Net"
    for i, (mine, want) in enumerate(zip(order, weights)):
        if list(want.shape) != mine["shape"]:
            what = "buffer" if mine.get("buffer") else "parameter"
            return f"{prefix}: {what} {i + 1} in forward order ({mine['name']}) has shape {mine['shape']}, the reference's has {list(want.shape)}"
    buffers = sum(1 for mine in order if mine.get("buffer"))
    counted = f"{len(order) - buffers} parameter tensors and {buffers} buffers" if buffers else f"{len(order)} parameter tensors"
    return f"{prefix}: it has {counted}, the reference has {len(weights)}"


# ---------------------------------------------------------------- trains


def loss_drop_problem(initial: float | None, final: float | None, min_drop: float) -> str | None:
    """None when the loss fell by at least `min_drop` of its initial value."""
    if initial is None or final is None:
        return "the loss became NaN or infinite"
    target = initial * (1 - min_drop)
    if final <= target:
        return None
    return f"{initial:.3f} before training, {final:.3f} after; it needs to reach {target:.3f} or less"


def loss_curves(seen: LossCurve, expected: Expectations) -> dict[str, Any]:
    """Details for the report's loss plots: the loss of every training batch of this run, and of
    the reference Net trained by the reference loop on the same data (absent in selfcheck, whose
    fixtures hold no training run). Plots only: no points depend on them."""
    curves: dict[str, Any] = {"losses": seen["losses"], "loss_stride": seen["loss_stride"]}
    reference = expected.net.get("train")
    if reference is not None:
        curves.update(reference_losses=reference["losses"], reference_loss_stride=reference["loss_stride"])
    return curves


def _trains_like_reference(group: GroupObservations, expected: Expectations, assignment: Assignment) -> Outcome:
    """The probe did not train this Net because, with the reference weights, it gave the
    reference's output and gradients. Check that here too (the child's word is not taken): such
    a Net takes the very steps the reference takes, so the reference's own training run, which
    lowered the loss, stands for it."""
    forward, reference = group.get("forward"), expected.net.get("train")
    behaviour = expected.behaviour
    assert behaviour is not None, "the Net checks run only with a reference Net"
    theirs = behaviour["gradients"]
    problem = None
    if reference is None or reference["equivalent"] or reference["error"]:
        problem = f"{expected.origin} holds no training run of the reference to compare with; regenerate it"
    elif forward is None or _forward_outcome(forward, expected, assignment).fraction < 1 or conflicting_loads(forward["order"], expected.weights):
        problem = "the Net was not trained although its output differs from the reference's"
    elif len(forward["gradients"]) != len(theirs) or not all(digests_agree(a, b) for a, b in zip(forward["gradients"], theirs)):
        problem = "the Net was not trained although its gradients differ from the reference's"
    elif not _same_training_mode_output(forward, expected, assignment):
        problem = "the Net was not trained although its output in training mode differs from the reference's"
    if problem:
        return Outcome.failed(f"could not be checked: {problem}", error=problem)
    assert reference is not None
    details = {
        "initial_loss": reference["initial_loss"],
        "final_loss": reference["final_loss"],
        "trained_like_reference": True,
        **loss_curves(reference, expected),
    }
    if loss_drop_problem(reference["initial_loss"], reference["final_loss"], assignment.training.min_loss_drop):
        return Outcome.failed("could not be checked: the reference itself does not lower the loss enough", **details)
    return Outcome.passed(**details)


def _same_training_mode_output(forward: ForwardObservation, expected: Expectations, assignment: Assignment) -> bool:
    """Whether the Net's output in training mode is the reference's, even where the reference's
    does not depend on the mode: a dropout the reference lacks changes how the Net trains."""
    want, mine = expected.train_output, forward["train_output"]
    if want is None or mine is None:
        return want is None and mine is None
    try:
        output = decode_array(mine, what="training-mode output")
    except ObservationError:
        return False
    tolerance = assignment.forward
    return output.shape == want.shape and bool(np.allclose(output, want, atol=tolerance.atol, rtol=tolerance.rtol))


def check_net_trains(student: dict[str, GroupObservations], expected: Expectations, assignment: Assignment) -> Outcome:
    group = _net(student)
    missing = _unavailable(group, "train")
    if missing:
        return missing
    seen = group.get("train")
    assert seen is not None
    if seen["equivalent"]:
        return _trains_like_reference(group, expected, assignment)
    curves = loss_curves(seen, expected)
    if seen["error"]:
        reason = f"training your Net failed: {explained(seen['error'], batch_size=assignment.training.batch_size)}"
        return Outcome.failed(reason, error=f"training failed: {seen['error']}", **curves)
    problem = loss_drop_problem(seen["initial_loss"], seen["final_loss"], assignment.training.min_loss_drop)
    details = {"initial_loss": seen["initial_loss"], "final_loss": seen["final_loss"], **curves}
    if problem:
        epochs = assignment.training.epochs
        return Outcome.failed(f"trained for {epochs} epochs, the loss did not go down enough ({problem})", **details)
    return Outcome.passed(**details)
