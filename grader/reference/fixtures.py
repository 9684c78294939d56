"""The selfcheck fixtures file: the reference's observations, inputs and weights, never its source.

`grader fixtures` (and `grader assign`) write it from the reference; `grader selfcheck` and
`selfcheck()` read it where the reference solution is not available, so students are compared
against the same expectations as `grader run` uses.
"""

from __future__ import annotations

import json
from pathlib import Path

from grader.assignment import Assignment
from grader.compare.expectations import Expectations
from grader.errors import FixturesError, ObservationError
from grader.files import write_atomically
from grader.fingerprints import settings_fingerprint
from grader.observations import GroupObservations, parse_observation
from grader.version import __version__
from grader.wire import decode_array, encode_array

FIXTURES_FORMAT = 2  # 2: the reference's gradients, operations and training run


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
            try:
                net.add(parse_observation({"kind": kind, **document["net"][kind]}))
            except ObservationError as exc:
                raise FixturesError(f"{path}: {exc}") from None
        for trace in document["net"]["traces"]:
            try:
                net.add(parse_observation({"kind": "trace", **trace}))
            except ObservationError:
                raise FixturesError(f"{path}: malformed trace") from None
        return Expectations(
            origin=str(path),
            net=net,
            forward_inputs=decode_array(document["forward_inputs"], what="fixtures inputs"),
            weights=[decode_array(w, what="fixtures weights") for w in document["weights"]],
            loop_model_spec=document["loop_model"],
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise FixturesError(f"{path}: malformed fixtures (missing {exc}); {hint}") from None
