"""The validator of a child's report is derived from the TypedDicts in grader/protocol.py. It gives
the verdicts the hand-written schema it replaced gave (kept below as the oracle, for as long as
this comparison is worth keeping), over the reference's real observations and thousands of
mutations of them, and a misspelt field is rejected with its kind named."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import ROOT

from grader.errors import ObservationError
from grader.observations import parse_observation, read_group, validate

# ---------------------------------------------------------------- the oracle: the schema as it was
# Copied from grader/observations.py before the TypedDicts in grader/protocol.py replaced it.
# Delete this section, and the comparisons that use it, rather than editing it.

_FINITE_OR_NONE = "finite number or null"
_INT_LIST = ("list", int)
_LAYER = {"path": str, "type": str, "hyper": ("dict", object), "params": ("dict", _INT_LIST), "trainable": int}
_TRACE_CALL = {**_LAYER, "output_shape": (list, type(None))}
_OPT_STR = (str, type(None))
_OPT_NUM = (float, int, type(None))
_OPERATION = {
    "op": str,
    "module": str,
    "args": ("list", (int, float, bool, list, type(None)), 8),
    "kwargs": ("dict", (int, float, bool, list)),
    "input_shape": (list, type(None)),
    "output_shape": (list, type(None)),
    "digest": ("list", _FINITE_OR_NONE, 3),
}
_LOSS_CURVE = {"losses": ("list", _FINITE_OR_NONE, 64), "loss_stride": int}
OLD_SCHEMA: dict[str, dict[str, Any]] = {
    "program": {"notes": ("list", str)},
    "cuda_on_cpu": {"request": str},
    "reference_failed": {"notes": ("list", str)},
    "instantiate": {"defined": bool, "is_class": bool, "is_module_class": bool, "error": _OPT_STR, "alternatives": ("list", str, 16)},
    "structure": {"layers": ("list", _LAYER), "parameters": ("list", {"name": str, "shape": _INT_LIST}), "total_trainable": int},
    "trace": {"batch": int, "ok": bool, "error": _OPT_STR, "calls": ("list", _TRACE_CALL), "output_shape": (list, type(None))},
    "forward": {
        "order": ("list", {"name": str, "shape": _INT_LIST}),
        "loaded": bool,
        "output": (dict, type(None)),
        "weights": (list, type(None)),
        "error": _OPT_STR,
        "gradients": ("list", ("list", _FINITE_OR_NONE, 3), 4096),
        "train_output": (dict, type(None)),
        "train_error": _OPT_STR,
    },
    "operations": {"operations": ("list", _OPERATION, 256), "truncated": bool, "error": _OPT_STR, "digests": bool},
    "train": {"initial_loss": _OPT_NUM, "final_loss": _OPT_NUM, "error": _OPT_STR, "equivalent": bool, **_LOSS_CURVE},
    "loop": {"defined": bool, "callable": bool, "alternatives": ("list", str, 16)},
    "loop_run": {
        "error": _OPT_STR,
        "initial_loss": _OPT_NUM,
        "final_loss": _OPT_NUM,
        "n_epochs": int,
        "batches_per_epoch": int,
        "batches": int,
        "epochs_started": int,
        "passes": ("list", {"batches": int, "backward": int, "steps": int}, 256),
        "backward_cleared": ("list", bool),
        "steps": int,
        "zero_grad_calls": int,
        "loss_calls": int,
        "call": {"by": str, "parameters": ("list", str, 64), "unfilled": ("list", str, 64)},
        **_LOSS_CURVE,
    },
    "done": {},
}


def _old_compile(spec: Any) -> Callable[[Any], bool]:
    if isinstance(spec, dict):
        fields = [(key, _old_compile(value_spec)) for key, value_spec in spec.items()]
        return lambda value: isinstance(value, dict) and all(key in value and fits(value[key]) for key, fits in fields)
    if spec is _FINITE_OR_NONE:
        return _old_finite_or_none
    if isinstance(spec, tuple) and spec and spec[0] in ("list", "dict"):
        item = _old_compile(spec[1])
        if spec[0] == "list":
            longest = spec[2] if len(spec) > 2 else math.inf
            return lambda value: isinstance(value, list) and len(value) <= longest and all(map(item, value))
        return lambda value: isinstance(value, dict) and all(isinstance(k, str) and item(v) for k, v in value.items())
    if spec is object:
        return lambda value: True
    kinds = spec if isinstance(spec, tuple) else (spec,)
    if bool in kinds:
        return lambda value: isinstance(value, kinds)
    return lambda value: isinstance(value, kinds) and not isinstance(value, bool)


def _old_finite_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


_OLD_FITS = {kind: _old_compile(spec) for kind, spec in OLD_SCHEMA.items()}


def old_validate(observation: dict[str, Any]) -> str | None:
    kind = observation.get("kind")
    if not isinstance(kind, str) or kind not in OLD_SCHEMA:
        return f"unknown observation kind {kind!r}"
    if not _OLD_FITS[kind](observation):
        return f"malformed '{kind}' observation"
    if kind == "loop" and observation["callable"] and not _OLD_FITS["loop_run"](observation):
        return "malformed 'loop' observation"
    return None


# ---------------------------------------------------------------- real observations, and mutations


def _fixtures_observations(assignment: str) -> list[dict[str, Any]]:
    return json.loads((ROOT / "assignments" / assignment / "fixtures.json").read_text())["net"]


# The training_loop probe's report on the cifar2 reference (a cached reference run), and the
# kinds the fixtures file does not keep, as the probes send them.
LOOP_RUN = {
    "kind": "loop", "defined": True, "callable": True, "alternatives": [], "initial_loss": 0.8700595498085022, "error": None,
    "call": {"by": "keyword", "parameters": ["n_epochs", "optimizer", "model", "loss_fn", "train_loader"], "unfilled": []},
    "final_loss": 0.08896081149578094, "n_epochs": 4, "batches_per_epoch": 2, "batches": 8, "epochs_started": 4,
    "passes": [{"batches": 2, "backward": 2, "steps": 2}] * 4, "backward_cleared": [True] * 8, "steps": 8,
    "zero_grad_calls": 8, "loss_calls": 8, "loss_stride": 1,
    "losses": [0.9106, 0.4439, 0.3025, 0.2138, 0.1692, 0.1373, 0.1177, 0.1000],
}  # fmt: skip
OTHER_KINDS = [
    {"kind": "program", "notes": ["cell 3, line 2: NameError: name 'x' is not defined"]},
    {"kind": "cuda_on_cpu", "request": "'cuda'"},
    {"kind": "reference_failed", "notes": ["cell 1, line 1: SyntaxError"]},
    {"kind": "done"},
    {"kind": "loop", "defined": False, "callable": False, "alternatives": ["train(n_epochs, optimizer, model, loss_fn, train_loader)"]},
    {"kind": "loop", "defined": True, "callable": False, "alternatives": []},
    LOOP_RUN,
    {**LOOP_RUN, "error": "RuntimeError: boom", "final_loss": None, "losses": [0.9, None], "loss_stride": 2},
    {"kind": "train", "initial_loss": None, "final_loss": None, "error": None, "seconds": None, "equivalent": True, "losses": [], "loss_stride": 1},
    {"kind": "forward", "order": [{"name": "fc.weight", "shape": [2, 4]}], "loaded": True, "error": None, "gradients": [],
     "output": {"dtype": "float32", "shape": [1, 2], "data": "AAAAAAAAAAA="}, "weights": [{"dtype": "float32", "shape": [2], "data": "AAAAAAAAAAA="}],
     "train_output": None, "train_error": "RuntimeError: boom"},
]  # fmt: skip
VALID = [*OTHER_KINDS, *(o for a in ("cifar2", "cifar2_width", "mnist_relu") for o in _fixtures_observations(a))]

# Values a field may be replaced with: each JSON type, bool beside int, NaN and infinity.
REPLACEMENTS: list[Any] = [None, True, False, 0, 1, -3, 2.5, math.nan, math.inf, -math.inf, "", "x", [], [1], [None], ["x"], [True], [2.5], [[1]], {}, {"a": 1}]
# Lengths on both sides of every MaxLen in the protocol.
LENGTHS = [3, 4, 8, 9, 16, 17, 64, 65, 256, 257]

# Fields the old schema ignored that the TypedDicts declare, as the probes send them: the only
# values on which the verdicts differ, where the new validator checks their type.
NEWLY_DECLARED = {("seconds",), ("parameters", "*", "trainable"), ("order", "*", "trainable"), ("order", "*", "buffer"), ("shared",), ("foreign_steps",)}


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place inside a JSON value, as the keys and indexes that lead to it."""
    yield path
    if isinstance(value, dict):
        for key in value:
            yield from _paths(value[key], (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):  # the first items stand for the others
            yield from _paths(item, (*path, index))


def _changed(value: Any, path: tuple[Any, ...], new: Any = None, *, delete: bool = False) -> Any:
    """`value` with the place at `path` replaced by `new` (or its key deleted), copying only the
    containers on the way there."""
    if not path:
        return new
    changed = dict(value) if isinstance(value, dict) else list(value)
    if delete and len(path) == 1:
        del changed[path[0]]
    else:
        changed[path[0]] = _changed(value[path[0]], path[1:], new, delete=delete)
    return changed


def mutants(observation: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """The observation with one place changed: a value replaced, a key removed or added, a list
    lengthened to either side of each limit."""
    for path in _paths(observation):
        if not path:
            yield path, {**observation, "unexpected": 1}
            continue
        for new in REPLACEMENTS:
            yield path, _changed(observation, path, new)
        if isinstance(path[-1], str):
            yield path, _changed(observation, path, delete=True)
        place = observation
        for step in path:
            place = place[step]
        if isinstance(place, list) and place:
            for length in LENGTHS:
                yield path, _changed(observation, path, [place[0]] * length)
        if isinstance(place, dict):
            yield path, _changed(observation, path, {**place, "unexpected": [None]})


def _generic(path: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple("*" if isinstance(step, int) else step for step in path)


# ---------------------------------------------------------------- the tests


def test_the_real_observations_are_valid():
    for observation in VALID:
        assert old_validate(observation) is None and validate(observation) is None, observation["kind"]


def test_the_derived_validator_gives_the_old_schemas_verdicts():
    compared, rejected = 0, 0
    for observation in VALID:
        for path, mutant in mutants(observation):
            old, new = old_validate(mutant), validate(mutant)
            if _generic(path) in NEWLY_DECLARED:
                assert new in (old, f"malformed '{mutant['kind']}' observation"), (path, mutant)
                continue
            assert new == old, (path, old, new)
            compared += 1
            rejected += new is not None
    # Enough of both verdicts that agreeing means something.
    assert compared > 20_000 and 0.2 < rejected / compared < 0.9, (compared, rejected)


@pytest.mark.parametrize("kind", [None, 3, "", "Forward", ["forward"]])
def test_an_unknown_kind_is_named(kind):
    assert validate({"kind": kind}) == old_validate({"kind": kind}) == f"unknown observation kind {kind!r}"
    assert validate({}) == "unknown observation kind None"


def test_loop_run_is_not_a_kind():
    # The old schema kept the fields of a loop that ran as a pseudo-kind, which it then accepted
    # as a kind of its own; the probes never send it.
    loop_run = {**LOOP_RUN, "kind": "loop_run"}
    assert old_validate(loop_run) is None
    assert validate(loop_run) == "unknown observation kind 'loop_run'"


def test_a_loop_that_was_called_must_say_what_it_did():
    not_called = {"kind": "loop", "defined": True, "callable": False, "alternatives": []}
    assert validate(not_called) is None
    assert validate({**not_called, "callable": True}) == "malformed 'loop' observation"
    assert validate({**LOOP_RUN, "callable": 1}) == "malformed 'loop' observation"


def test_a_misspelt_field_is_rejected_with_its_kind_named():
    for observation in VALID:
        # (optional fields, absent from reports made before them, may go missing: "shared", "foreign_steps")
        for key in set(observation) - {"kind", "seconds", "shared", "foreign_steps"}:
            typo = key[:-1]  # "gradient"
            misspelt = {(typo if k == key else k): v for k, v in observation.items()}
            assert validate(misspelt) == f"malformed '{observation['kind']}' observation", (observation["kind"], key)


def test_parsing_returns_the_observation_or_names_what_is_wrong():
    forward = next(o for o in VALID if o["kind"] == "forward")
    assert parse_observation(forward) is forward
    with pytest.raises(ObservationError, match="malformed 'forward' observation"):
        parse_observation({**{k: v for k, v in forward.items() if k != "gradients"}, "gradient": []})
    group = read_group({"observations": [{**forward, "ordr": forward["order"], "order": None}, {"kind": "done"}]}, what="the Net checks", memory_mb=1)
    assert group.problems == ["malformed 'forward' observation"] and group.get("forward") is None and group.failure is None


def test_a_huge_integer_loss_is_a_finite_number():
    # JSON can carry an integer too large for a float; the old check raised OverflowError on it.
    train = {"kind": "train", "initial_loss": 1.0, "final_loss": 0.5, "error": None, "equivalent": False, "loss_stride": 1}
    assert validate({**train, "losses": [10**400]}) is None
    assert validate({**train, "losses": [math.nan]}) == "malformed 'train' observation"
    with pytest.raises(OverflowError):
        old_validate({**train, "losses": [10**400]})
