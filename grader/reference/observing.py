"""Observing the reference solution with the probes used on students, and configuring workers
to grade against it: the trusted inputs every child gets (forward inputs, reference weights and
behaviour, the reference's training_loop for the Net checks) and the rehearsal that warms it up.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from grader.assignment import Assignment
from grader.child.cells import SourceCell, read_cells
from grader.child.extract import extract_definitions
from grader.compare.expectations import Expectations
from grader.errors import ReferenceSolutionError
from grader.isolate.client import ConfigurationRecorder, Worker
from grader.observations import GroupObservations, read_observed
from grader.protocol import Unit, worker_limits
from grader.wire import decode_array, encode_array


def forward_inputs(assignment: Assignment) -> np.ndarray:
    """The batch net.forward feeds the reference's and every student's Net (none without a Net)."""
    rng = np.random.default_rng(assignment.forward.seed)
    batch = assignment.forward.batch_size if assignment.model_class else 0
    return rng.standard_normal((batch, *assignment.input_shape), dtype=np.float32)


def stand_in_loop_model(assignment: Assignment) -> list[dict[str, Any]]:
    """The stand-in model a student's training_loop trains (in `grader run` and selfcheck alike):
    images averaged down to a small grid, then one linear layer. Sized to the task (about 16
    inputs per class), it learns the grader's data gradually over the short training job, so the
    loss curve shows how a loop trains, instead of a linear layer on every pixel, which fits the
    data in one step and flattens every curve to zero."""
    shape = assignment.input_shape
    if len(shape) != 3:
        return [{"type": "Flatten"}, {"type": "Linear", "args": {"in_features": math.prod(shape), "out_features": assignment.num_classes}}]
    channels, height, width = shape
    grid = max(1, min(height, width, round(math.sqrt(16 * assignment.num_classes / channels))))
    return [
        {"type": "AdaptiveAvgPool2d", "args": {"output_size": grid}},
        {"type": "Flatten"},
        {"type": "Linear", "args": {"in_features": channels * grid * grid, "out_features": assignment.num_classes}},
    ]


def reference_helpers(cells: list[SourceCell], assignment: Assignment) -> dict[str, list[Unit]]:
    """What each child group may use from the reference, and nothing more: the Net checks get
    only the reference's training_loop (to train the student's Net); the loop check trains a
    stand-in model and gets nothing. A student's Net therefore never shares a process with the
    reference Net it could otherwise find in memory and pass off as its own."""
    return {"net": extract_definitions(cells, [assignment.loop_function]).to_json() if assignment.loop_function else [], "loop": []}


def observe_reference(
    assignment: Assignment,
    worker: Worker | ConfigurationRecorder,
    reference_path: Path,
    *,
    known: tuple[Expectations, GroupObservations] | None = None,
    rehearse: bool = True,
) -> tuple[Expectations, GroupObservations]:
    """Run the reference through the probes; returns its expectations and its loop observations.
    With `known` (what an earlier run observed of this very reference, grader/reference/cache.py)
    the probes are not run again.

    Leaves `worker` configured to grade students against this reference. Without `rehearse` (a
    worker that only checks the reference, as on a Dask cluster) the rehearsal is recorded in its
    configuration, for the workers configured like it, but not run in it: about a second saved.
    """
    if not reference_path.is_file():
        raise ReferenceSolutionError(f"{reference_path}: reference solution not found (use --reference PATH)")
    try:
        cells = read_cells(reference_path)
    except Exception as exc:
        raise ReferenceSolutionError(f"{reference_path}: {exc}") from None
    program = extract_definitions(cells, assignment.graded_names)
    if program.notes:
        raise ReferenceSolutionError(f"{reference_path}: " + "; ".join(program.notes))
    inputs = forward_inputs(assignment)
    # The student's loop trains a small stand-in model, not the reference Net: what the loop
    # check judges (batches, epochs, zero_grad, backward, step, the loss going down) does not
    # depend on the model, and a linear model trains in milliseconds.
    loop_model_spec = stand_in_loop_model(assignment)
    worker.configure(
        settings=assignment.probe_settings(),
        packages=list(assignment.packages),
        reference_helpers=reference_helpers(cells, assignment),
        loop_model_spec=loop_model_spec,
        forward_inputs=encode_array(inputs),
        reference_weights=None,
        reference_behaviour=None,
    )
    if known is None:
        assert isinstance(worker, Worker), "only a running worker observes the reference"
        known = _observed_reference(assignment, worker, reference_path, program.to_json(), inputs, loop_model_spec)
    expectations, loop = known
    worker.configure(reference_weights=[encode_array(w) for w in expectations.weights], reference_behaviour=expectations.behaviour)
    # The reference, now known to run, warms the worker up for the students' children.
    if rehearse:
        worker.configure(rehearsal=program.to_json())
    else:
        worker.record_configuration(rehearsal=program.to_json())
    return expectations, loop


def _observed_reference(
    assignment: Assignment, worker: Worker, reference_path: Path, units: list[Unit], inputs: np.ndarray, loop_model_spec: list[dict[str, Any]]
) -> tuple[Expectations, GroupObservations]:
    groups = read_observed(worker.observe(units, assignment.groups, worker_limits(assignment)), assignment)
    for group in groups.values():
        failed = group.get("reference_failed")
        if failed:
            raise ReferenceSolutionError(f"{reference_path}: " + "; ".join(failed["notes"]))
        problem = group.failure or (group.program_notes and "; ".join(group.program_notes))
        if problem:
            raise ReferenceSolutionError(f"{reference_path}: {problem}\n{group.stderr[-2000:]}")
    net, loop = groups.get("net", GroupObservations()), groups.get("loop", GroupObservations())  # one of them when only one is graded
    weights: list[np.ndarray] = []
    if "net" in groups:
        forward = net.get("forward")
        if forward is None or forward["output"] is None or not forward["weights"]:
            error = forward and forward["error"]
            raise ReferenceSolutionError(f"{reference_path}: the reference Net did not produce an output ({error})")
        weights = [decode_array(w, what="reference weights") for w in forward["weights"]]
    expectations = Expectations(
        origin=str(reference_path),
        net=net,
        forward_inputs=inputs,
        weights=weights,
        loop_model_spec=loop_model_spec,
        reference_loop=loop.get("loop"),
    )
    return expectations, loop


def configure_for_selfcheck(worker: Worker, assignment: Assignment, expectations: Expectations, *, wait: bool = True) -> None:
    """Configure `worker` to check students against the fixtures' expectations (no reference
    program: students do not have it). `wait=False`: see Worker.configure."""
    worker.configure(
        wait=wait,
        settings=assignment.probe_settings(),
        packages=list(assignment.packages),
        reference_helpers={},
        loop_model_spec=expectations.loop_model_spec,
        forward_inputs=encode_array(expectations.forward_inputs),
        reference_weights=[encode_array(w) for w in expectations.weights],
        reference_behaviour=expectations.behaviour,
    )
