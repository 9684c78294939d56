"""What a child reported, validated, in a form the checks can read.

A child's report is untrusted data: each observation is checked against the TypedDict of its
kind in grader/protocol.py before any check looks at it, and one that does not fit is dropped
with a note. The checks are derived from those TypedDicts once, at import, so the protocol is
the one definition of every observation. Nothing here imports torch or student code.
"""

from __future__ import annotations

import math
import signal
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NotRequired, cast, overload

from grader.errors import ObservationError
from grader.protocol import (
    OBSERVATION_KINDS,
    CudaOnCpuObservation,
    DoneObservation,
    Finite,
    ForwardObservation,
    InstantiateObservation,
    LoopObservation,
    MaxLen,
    Observation,
    OperationsObservation,
    ProgramObservation,
    ReferenceFailedObservation,
    StructureObservation,
    TraceObservation,
    TrainObservation,
)

if TYPE_CHECKING:
    from grader.assignment import Assignment

# Two digests of the same tensor (grader/child/observe/operations.py: sum, sum of magnitudes, a fixed
# weighting) agree when every component is within this fraction of the magnitude: far above
# float32's rounding, far below any real difference. The child decides with half of it, so the
# grader's own check of the same numbers never disagrees with the child's decision.
DIGEST_RTOL = 1e-4


def digests_agree(mine: Sequence[float | None], theirs: Sequence[float | None], rtol: float = DIGEST_RTOL) -> bool:
    """Whether two digests are of the same tensor. One with a number missing (the protocol lets a
    null through, grader/protocol.py's `Digest`) agrees with none."""
    pairs = [(a, b) for a, b in zip(mine, theirs) if a is not None and b is not None]
    if len(pairs) != 3 or len(mine) != 3 or len(theirs) != 3:
        return False
    scale = max(abs(pairs[1][1]), 1.0)
    return all(abs(a - b) <= rtol * scale for a, b in pairs)


# A predicate telling whether a JSON value fits a type; None where any value fits (`Any`), so
# containers of anything check only their own type.
Fits = Callable[[Any], bool] | None
# Types an isinstance check settles, as the Python types JSON decodes to: a `float` field takes
# an int too (JSON does not tell 1 from 1.0), and `bool` is never an int or a float.
_PLAIN: dict[Any, tuple[type, ...]] = {str: (str,), int: (int,), float: (float, int), bool: (bool,), type(None): (type(None),)}


def _fits(hint: Any) -> Fits:
    """Compile a type from grader/protocol.py into a predicate, once: checking a child's whole
    report is then a few hundred calls, not thousands of looks at the types."""
    if hint is Any:
        return None
    kinds = _plain_kinds(hint)
    if kinds is not None:
        if bool in kinds:
            return lambda value: isinstance(value, kinds)
        return lambda value: isinstance(value, kinds) and not isinstance(value, bool)
    if typing.is_typeddict(hint):
        return _fits_typeddict(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _fits_annotated(args[0], args[1:])
    if origin is Literal:
        if len(args) == 1:
            choice, kind = args[0], type(args[0])
            return lambda value: value == choice and type(value) is kind  # True is not 1
        allowed = [(type(choice), choice) for choice in args]
        return lambda value: any(value == choice and type(value) is kind for kind, choice in allowed)
    if origin is list:
        return _fits_list(args[0], longest=None)
    if origin is dict:
        assert args[0] is str, f"observation keys are strings: {hint}"
        item = _fits(args[1])
        if item is None:
            return lambda value: isinstance(value, dict) and all(isinstance(key, str) for key in value)
        return lambda value: isinstance(value, dict) and all(isinstance(key, str) and item(v) for key, v in value.items())
    if origin in (typing.Union, types.UnionType):
        choices = [_fits(arg) for arg in args]
        if None in choices:
            return None
        first, *others = cast(list[Callable[[Any], bool]], choices)
        if len(others) == 1:
            second = others[0]
            return lambda value: first(value) or second(value)
        return lambda value: any(fits(value) for fits in (first, *others))
    raise TypeError(f"no check for the observation type {hint!r}")


def _plain_kinds(hint: Any) -> tuple[type, ...] | None:
    """The types an isinstance check of `hint` takes when it settles it (`str`, `float | None`,
    `list[Any]`), else None."""
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    kinds: list[type] = []
    for member in members:
        if member in _PLAIN:
            kinds += _PLAIN[member]
        elif member is list or (typing.get_origin(member) is list and typing.get_args(member) == (Any,)):
            kinds.append(list)
        else:
            return None
    return tuple(dict.fromkeys(kinds))


def _fits_list(item_hint: Any, *, longest: int | None) -> Fits:
    item = _fits(item_hint)
    if item is None:
        if longest is None:
            return lambda value: isinstance(value, list)
        return lambda value: isinstance(value, list) and len(value) <= longest
    if longest is None:
        return lambda value: isinstance(value, list) and all(map(item, value))
    return lambda value: isinstance(value, list) and len(value) <= longest and all(map(item, value))


def _fits_annotated(hint: Any, metadata: tuple[Any, ...]) -> Fits:
    """`MaxLen(n)` on a list, `Finite()` on a number; other metadata is not ours to check."""
    longest = next((m.n for m in metadata if isinstance(m, MaxLen)), None)
    finite = any(isinstance(m, Finite) for m in metadata)
    if longest is not None:
        assert typing.get_origin(hint) is list, f"MaxLen applies to lists: {hint}"
        return _fits_list(typing.get_args(hint)[0], longest=longest)
    if finite:
        if _plain_kinds(hint) == (float, int, type(None)):
            return _finite_or_none
        number = _fits(hint)
        assert number is not None
        return lambda value: number(value) and (not isinstance(value, float) or math.isfinite(value))
    return _fits(hint)


def _finite_or_none(value: Any) -> bool:
    # An int is finite, however large (math.isfinite would overflow on it).
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _fits_typeddict(typeddict: Any) -> Callable[[Any], bool]:
    """A dict with every required key, each value (and each optional one present) fitting its
    type. Keys the TypedDict does not name are ignored. Which keys are required is read from the
    hints: Python 3.11 misreads `NotRequired` in a module with postponed annotations."""
    required: list[tuple[str, Callable[[Any], bool]]] = []
    optional: list[tuple[str, Callable[[Any], bool]]] = []
    for key, hint in typing.get_type_hints(typeddict, include_extras=True).items():
        if typing.get_origin(hint) is NotRequired:
            optional.append((key, _fits(typing.get_args(hint)[0]) or _anything))
        else:
            required.append((key, _fits(hint) or _anything))
    if not optional:
        return lambda value: isinstance(value, dict) and all(key in value and fits(value[key]) for key, fits in required)
    return lambda value: (
        isinstance(value, dict)
        and all(key in value and fits(value[key]) for key, fits in required)
        and all(fits(value[key]) for key, fits in optional if key in value)
    )


def _anything(value: Any) -> bool:
    return True


_FITS: dict[str, Callable[[Any], bool]] = {kind: cast(Callable[[Any], bool], _fits(hint)) for kind, hint in OBSERVATION_KINDS.items()}


def validate(observation: dict[str, Any]) -> str | None:
    """None when the observation has the shape of its kind's TypedDict in grader/protocol.py,
    else what is wrong with it."""
    kind = observation.get("kind")
    fits = _FITS.get(kind) if isinstance(kind, str) else None
    if fits is None:
        return f"unknown observation kind {kind!r}"
    if not fits(observation):
        return f"malformed '{kind}' observation"
    return None


def parse_observation(raw: dict[str, Any]) -> Observation:
    """`raw`, typed as the TypedDict of its kind once it has that shape; ObservationError says
    what is wrong with it otherwise."""
    problem = validate(raw)
    if problem:
        raise ObservationError(problem)
    return cast(Observation, raw)


@dataclass
class GroupObservations:
    """Everything one child run (the Net checks, or the loop check) reported."""

    by_kind: dict[str, Observation] = field(default_factory=dict)  # every kind but traces
    traces: dict[int, TraceObservation] = field(default_factory=dict)  # by batch size
    failure: str | None = None  # why the child stopped early: timeout, crash, exit
    problems: list[str] = field(default_factory=list)  # observations that were rejected
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    # The observation of one kind, typed as grader/protocol.py defines it; None when none came.
    @overload
    def get(self, kind: Literal["program"]) -> ProgramObservation | None: ...
    @overload
    def get(self, kind: Literal["cuda_on_cpu"]) -> CudaOnCpuObservation | None: ...
    @overload
    def get(self, kind: Literal["reference_failed"]) -> ReferenceFailedObservation | None: ...
    @overload
    def get(self, kind: Literal["instantiate"]) -> InstantiateObservation | None: ...
    @overload
    def get(self, kind: Literal["structure"]) -> StructureObservation | None: ...
    @overload
    def get(self, kind: Literal["forward"]) -> ForwardObservation | None: ...
    @overload
    def get(self, kind: Literal["operations"]) -> OperationsObservation | None: ...
    @overload
    def get(self, kind: Literal["train"]) -> TrainObservation | None: ...
    @overload
    def get(self, kind: Literal["loop"]) -> LoopObservation | None: ...
    @overload
    def get(self, kind: Literal["done"]) -> DoneObservation | None: ...
    def get(self, kind: str) -> Observation | None:
        return self.by_kind.get(kind)

    def add(self, observation: Observation) -> bool:
        """File a validated observation: a trace under its batch size, any other under its kind.
        False, and nothing filed, when that place is already taken."""
        if observation["kind"] == "trace":
            if observation["batch"] in self.traces:
                return False
            self.traces[observation["batch"]] = observation
        else:
            if observation["kind"] in self.by_kind:
                return False
            self.by_kind[observation["kind"]] = observation
        return True

    def observations(self) -> list[Observation]:
        """Every observation filed, traces last by batch size: what `add` takes back."""
        return [*self.by_kind.values(), *(self.traces[batch] for batch in sorted(self.traces))]

    @property
    def program_notes(self) -> list[str]:
        program = self.get("program")
        return list(program["notes"]) if program else []

    @property
    def cuda_request(self) -> str | None:
        """How the program asked for a GPU the grading machine lacks (`'cuda'`, `.cuda()`), if it did."""
        seen = self.get("cuda_on_cpu")
        return seen["request"][:40] if seen else None


def cuda_on_cpu_note(groups: Iterable[GroupObservations]) -> str | None:
    """The one line the feedback gets when the program's CUDA requests ran on the CPU: they cost
    nothing, but the student should know their code did not run as written."""
    requests = list(dict.fromkeys(g.cuda_request for g in groups if g.cuda_request))
    if not requests:
        return None
    return f"your code asks for a GPU ({', '.join(requests)}); the grading machine has none, so it ran on the CPU (no points lost)"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def read_group(run: dict[str, Any], *, what: str, memory_mb: int) -> GroupObservations:
    """Validate one child's raw report (sandbox.ChildRun as a dict): the one way a report
    becomes typed observations."""
    group = GroupObservations(
        stdout=str(run.get("stdout", ""))[:100_000],
        stderr=str(run.get("stderr", ""))[:100_000],
        seconds=float(run.get("seconds") or 0.0),
    )
    for raw in run.get("observations", []):
        if not isinstance(raw, dict):
            continue
        try:
            observation = parse_observation(raw)
        except ObservationError as exc:
            group.problems.append(str(exc))
            continue
        if not group.add(observation):
            # The probes report each fact once; a second copy can only come from student code
            # writing to the report pipe. Trust nothing from this child.
            group.by_kind.clear()
            group.traces.clear()
            group.failure = f"{what} could not be trusted: the submission's code wrote to the grader's report channel"
            return group
    if "done" not in group.by_kind:
        group.failure = _failure(run, what=what, memory_mb=memory_mb)
    if run.get("protocol_error"):
        group.problems.append(str(run["protocol_error"]))
    return group


def read_observed(raw: dict[str, Any], assignment: Assignment) -> dict[str, GroupObservations]:
    """Validate what a worker sent for each child group of one submission."""
    names = {"net": "the Net checks", "loop": "the training_loop check"}
    return {
        group: read_group(run, what=names.get(group, group), memory_mb=assignment.limits.memory_mb)
        for group, run in raw.items()
    }



def _failure(run: dict[str, Any], *, what: str, memory_mb: int) -> str:
    if run.get("limit_exceeded"):
        return f"{what} stopped: the code {run['limit_exceeded']}"
    if run.get("timed_out"):
        limit = float(run.get("limit_s") or 0)
        if limit <= 0:
            return f"{what} did not run: the submission's time limit was used up"
        return f"{what} timed out after {limit:.0f} s (an endless loop, or far too much work?)"
    sig = run.get("signal")
    if sig:
        if sig == signal.SIGKILL:
            return f"{what} was killed (SIGKILL), possibly for using more than {memory_mb} MB of memory"
        return f"{what} crashed ({_signal_name(sig)})"
    code = run.get("exit_code")
    if code == 0:
        return f"{what} stopped early: the code exited the process (os._exit or similar)"
    return f"{what} stopped early with exit code {code}"
