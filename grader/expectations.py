"""What a correct submission looks like, derived from the reference solution at run time.

The instructor's `grader run` observes `reference/<name>.py` with the very probes used on
students. Students' `grader selfcheck` reads the same observations from the assignment's
fixtures file, which `grader fixtures` writes from the reference and which never contains the
reference's source. Both sides therefore compare against the same kind of expectations.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grader import __version__
from grader.assignment import Assignment
from grader.errors import FixturesError, ReferenceSolutionError
from grader.extract import extract_definitions
from grader.files import write_atomically
from grader.isolate.client import ConfigurationRecorder, Worker
from grader.load import SourceCell, read_cells
from grader.observations import GroupObservations, read_group, validate
from grader.wire import decode_array, encode_array

FIXTURES_FORMAT = 2  # 2: the reference's gradients, operations and training run


@dataclass
class Expectations:
    origin: str  # where they came from, for messages
    net: GroupObservations  # the reference's own Net observations
    forward_inputs: np.ndarray
    weights: list[np.ndarray]  # the reference's parameters in forward order
    loop_model_spec: list[dict[str, Any]]  # the stand-in model the loop check trains
    reference_loop: dict[str, Any] | None = None  # the reference loop's run on it; None in selfcheck

    @property
    def forward_output(self) -> np.ndarray:
        forward = self.net.get("forward")
        assert forward is not None and forward["output"] is not None
        return decode_array(forward["output"], what="reference output")

    @property
    def behaviour(self) -> dict[str, Any]:
        """What the reference Net does with its weights, for the probes to recognise a Net that
        behaves the same (see net_probes._behaves_like_reference): its output and gradients."""
        forward = self.net.get("forward")
        assert forward is not None and forward["output"] is not None
        return {"output": forward["output"], "gradients": forward["gradients"]}

    @property
    def layers(self) -> list[dict[str, Any]]:
        """The reference's parametrized layers in forward order."""
        return self.net.traces[max(self.net.traces)]["calls"]


def settings_fingerprint(assignment: Assignment) -> str:
    """Changes when anything that decides expected values changes (points do not)."""
    return hashlib.sha256(json.dumps(assignment.probe_settings(), sort_keys=True).encode()).hexdigest()[:16]


def forward_inputs(assignment: Assignment) -> np.ndarray:
    rng = np.random.default_rng(assignment.forward.seed)
    return rng.standard_normal((assignment.forward.batch_size, *assignment.input_shape), dtype=np.float32)


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


def worker_limits(assignment: Assignment) -> dict[str, Any]:
    return asdict(assignment.limits)


def read_observed(raw: dict[str, Any], assignment: Assignment) -> dict[str, GroupObservations]:
    names = {"net": "the Net checks", "loop": "the training_loop check"}
    return {
        group: read_group(run, what=names.get(group, group), memory_mb=assignment.limits.memory_mb)
        for group, run in raw.items()
    }


def reference_helpers(cells: list[SourceCell], assignment: Assignment) -> dict[str, list[dict[str, Any]]]:
    """What each child group may use from the reference, and nothing more: the Net checks get
    only the reference's training_loop (to train the student's Net); the loop check trains a
    stand-in model and gets nothing. A student's Net therefore never shares a process with the
    reference Net it could otherwise find in memory and pass off as its own."""
    return {"net": extract_definitions(cells, [assignment.loop_function]).to_json(), "loop": []}


def observe_reference(
    assignment: Assignment,
    worker: Worker | ConfigurationRecorder,
    reference_path: Path,
    *,
    known: tuple[Expectations, GroupObservations] | None = None,
    rehearse: bool = True,
) -> tuple[Expectations, GroupObservations]:
    """Run the reference through the probes; returns its expectations and its loop observations.
    With `known` (what an earlier run observed of this very reference, grader/expectations_cache.py)
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
    program = extract_definitions(cells, [assignment.model_class, assignment.loop_function])
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
    expectations, loop = known or _observed_reference(assignment, worker, reference_path, program.to_json(), inputs, loop_model_spec)
    worker.configure(reference_weights=[encode_array(w) for w in expectations.weights], reference_behaviour=expectations.behaviour)
    # The reference, now known to run, warms the worker up for the students' children.
    if rehearse:
        worker.configure(rehearsal=program.to_json())
    else:
        worker.record_configuration(rehearsal=program.to_json())
    return expectations, loop


def _observed_reference(
    assignment: Assignment, worker: Worker, reference_path: Path, units: list[dict[str, Any]], inputs: np.ndarray, loop_model_spec: list[dict[str, Any]]
) -> tuple[Expectations, GroupObservations]:
    groups = read_observed(worker.observe(units, ["net", "loop"], worker_limits(assignment)), assignment)
    net = groups["net"]
    for group in groups.values():
        failed = group.get("reference_failed")
        if failed:
            raise ReferenceSolutionError(f"{reference_path}: " + "; ".join(failed["notes"]))
        problem = group.failure or (group.program_notes and "; ".join(group.program_notes))
        if problem:
            raise ReferenceSolutionError(f"{reference_path}: {problem}\n{group.stderr[-2000:]}")
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
        reference_loop=groups["loop"].get("loop"),
    )
    return expectations, groups["loop"]


def configure_for_selfcheck(worker: Worker, assignment: Assignment, expectations: Expectations) -> None:
    worker.configure(
        settings=assignment.probe_settings(),
        packages=list(assignment.packages),
        reference_helpers={},
        loop_model_spec=expectations.loop_model_spec,
        forward_inputs=encode_array(expectations.forward_inputs),
        reference_weights=[encode_array(w) for w in expectations.weights],
        reference_behaviour=expectations.behaviour,
    )


# ---------------------------------------------------------------- fixtures file


def write_fixtures(expectations: Expectations, assignment: Assignment, path: Path | None = None) -> Path:
    """Write the selfcheck fixtures: observations, inputs and weights — no reference source."""
    path = path or assignment.fixtures_path
    net = expectations.net
    forward = dict(net.by_kind["forward"])
    forward["weights"] = None  # kept once, below
    document = {
        "format": FIXTURES_FORMAT,
        "assignment": assignment.name,
        "settings_fingerprint": settings_fingerprint(assignment),
        "generated_by": f"grader {__version__}",
        "net": {
            "instantiate": net.by_kind["instantiate"],
            "structure": net.by_kind["structure"],
            "traces": [net.traces[b] for b in sorted(net.traces)],
            "forward": forward,
            # The reference's own training run: a Net that behaves like it is credited with it.
            "train": {key: value for key, value in net.by_kind["train"].items() if key != "seconds"},
            # The reference's forward step by step, for naming a student's differing step. Left
            # out while net.forward is hidden: selfcheck must not reveal what that check expects.
            "operations": net.by_kind.get("operations") if assignment.checks["net.forward"].public else None,
        },
        "forward_inputs": encode_array(expectations.forward_inputs),
        "weights": [encode_array(w) for w in expectations.weights],
        "loop_model": expectations.loop_model_spec,
    }
    write_atomically(path, json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path


def load_fixtures(assignment: Assignment, path: Path | None = None) -> Expectations:
    path = path or assignment.fixtures_path
    hint = f"ask your instructor for it, or run `grader fixtures --assignment {assignment.name}`"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FixturesError(f"{path}: selfcheck fixtures not found; {hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FixturesError(f"{path}: unreadable fixtures ({exc}); {hint}") from None
    try:
        if document.get("format") != FIXTURES_FORMAT:
            raise FixturesError(f"{path}: fixtures format {document.get('format')!r}, expected {FIXTURES_FORMAT}; {hint}")
        if document.get("settings_fingerprint") != settings_fingerprint(assignment):
            raise FixturesError(f"{path}: fixtures were made for different assignment settings; {hint}")
        net = GroupObservations()
        for kind in ("instantiate", "structure", "forward", "train", "operations"):
            if kind == "operations" and document["net"].get(kind) is None:
                continue  # fixtures from before operations were recorded: feedback without the step-by-step comparison
            observation = {"kind": kind, **document["net"][kind]}
            problem = validate(observation)
            if problem:
                raise FixturesError(f"{path}: {problem}")
            net.add(observation)
        for trace in document["net"]["traces"]:
            observation = {"kind": "trace", **trace}
            if validate(observation):
                raise FixturesError(f"{path}: malformed trace")
            net.add(observation)
        return Expectations(
            origin=str(path),
            net=net,
            forward_inputs=decode_array(document["forward_inputs"], what="fixtures inputs"),
            weights=[decode_array(w, what="fixtures weights") for w in document["weights"]],
            loop_model_spec=document["loop_model"],
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise FixturesError(f"{path}: malformed fixtures (missing {exc}); {hint}") from None
