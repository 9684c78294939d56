"""The one file format for a reference's expectations, written by the selfcheck fixtures
(grader/reference/fixtures.py: what students get, committed beside the assignment) and by the
cache of an earlier run's observations (grader/reference/cache.py: the instructor's machine).

    {"format": 4, "assignment": NAME, "settings_fingerprint": ..., "generated_by": "grader X",
     "net": [observation, ...],           # the reference Net's, as the probes reported them
     "loop": [observation, ...] | null,   # the reference loop's run; null in the fixtures
     "forward_inputs": ARRAY, "weights": [ARRAY, ...], "loop_model": [layer, ...]}

"weights" are the reference's parameters, then its floating-point buffers (BatchNorm's running
statistics, drawn away from their initial values by the probe), in forward order: what the probes
load into a student's Net. The forward observation keeps no weights: they are stored once, there. Read back,
every observation is validated like a child's report, so a damaged file is refused, never
believed. What students may see is chosen here (`for_students`): the Net's observations that
selfcheck compares with, without the reference's step-by-step forward while `net.forward` is
hidden, and without timings, which differ on every run.
"""

from __future__ import annotations

from typing import Any

from grader.assignment import Assignment
from grader.compare.expectations import Expectations
from grader.errors import ObservationError
from grader.fingerprints import settings_fingerprint
from grader.observations import GroupObservations, parse_observation
from grader.version import __version__
from grader.wire import decode_array, encode_array

# 3: one format for the fixtures and the cache, observations as the probes report them;
# 4: "weights" carry the norm layers' buffers, the forward observation its training-mode output
FORMAT = 4

# The Net observations selfcheck compares a student's with.
_FOR_STUDENTS = ("instantiate", "structure", "trace", "forward", "train", "operations")


class ExpectationsFileError(Exception):
    """The document is not expectations this grader can use; the message says why."""


def expectations_document(
    expectations: Expectations, assignment: Assignment, *, loop: GroupObservations | None = None, for_students: bool = False
) -> dict[str, Any]:
    """The document for `expectations` (and the reference loop's run, `loop`)."""
    shown = [o for o in expectations.net.observations() if not for_students or _for_students(o["kind"], assignment)]
    return {
        "format": FORMAT,
        "assignment": assignment.name,
        "settings_fingerprint": settings_fingerprint(assignment),
        "generated_by": f"grader {__version__}",
        "net": [_stored(o, for_students) for o in shown],
        "loop": None if loop is None else [_stored(o, for_students) for o in loop.observations()],
        "forward_inputs": encode_array(expectations.forward_inputs),
        "weights": [encode_array(w) for w in expectations.weights],
        "loop_model": expectations.loop_model_spec,
    }


def read_expectations(document: Any, assignment: Assignment, origin: str) -> tuple[Expectations, GroupObservations | None]:
    """The expectations in `document` and the reference loop's run (None when the document has
    none); ExpectationsFileError says why a document cannot be used."""
    if not isinstance(document, dict):
        raise ExpectationsFileError("not a JSON object")
    if document.get("format") != FORMAT:
        raise ExpectationsFileError(f"format {document.get('format')!r}, expected {FORMAT}")
    if document.get("settings_fingerprint") != settings_fingerprint(assignment):
        raise ExpectationsFileError("made for different assignment settings")
    try:
        net = _group(document["net"])
        loop = None if document["loop"] is None else _group(document["loop"])
        expectations = Expectations(
            origin=origin,
            net=net,
            forward_inputs=decode_array(document["forward_inputs"], what="forward inputs"),
            weights=[decode_array(w, what="weights") for w in document["weights"]],
            loop_model_spec=document["loop_model"],
            reference_loop=None if loop is None else loop.get("loop"),
        )
    except KeyError as exc:
        raise ExpectationsFileError(f"malformed (missing {exc})") from None
    except (ObservationError, TypeError, AttributeError) as exc:
        raise ExpectationsFileError(f"malformed ({exc})") from None
    if assignment.model_class and (net.get("forward") is None or not net.traces):
        raise ExpectationsFileError("malformed (the reference's forward pass or trace is missing)")
    return expectations, loop


def _for_students(kind: str, assignment: Assignment) -> bool:
    if kind == "operations":  # selfcheck must not reveal what a hidden net.forward expects
        return "net.forward" in assignment.checks and assignment.checks["net.forward"].public
    return kind in _FOR_STUDENTS


def _stored(observation: Any, for_students: bool) -> dict[str, Any]:
    stored = dict(observation)
    if stored["kind"] == "forward":
        stored["weights"] = None  # kept once, under "weights"
    if for_students:
        stored.pop("seconds", None)
    return stored


def _group(observations: Any) -> GroupObservations:
    if not isinstance(observations, list):
        raise ExpectationsFileError("malformed (observations are not a list)")
    group = GroupObservations()
    for observation in observations:
        if not group.add(parse_observation(observation)):
            raise ExpectationsFileError(f"malformed (a second '{observation.get('kind')}' observation)")
    return group
