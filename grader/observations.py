"""What a child reported, validated, in a form the checks can read.

A child's report is untrusted data: each observation is checked against the shape it must have
before any check looks at it, and one that does not fit is dropped with a note. Nothing here
imports torch or student code.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grader.assignment import Assignment

# Minimal type language for the observation schema: a Python type, a tuple of allowed types,
# ("list", item_spec), ("list", item_spec, max_length), ("dict", value_spec), a dict of required
# keys -> spec, or _FINITE_OR_NONE.
_FINITE_OR_NONE = "finite number or null"  # JSON lets NaN and Infinity through; this does not
MAX_LOSS_POINTS = 64  # points of a loss curve; the probes average neighbours to stay within it
MAX_LOADER_PASSES = 256  # passes over train_loader recorded one by one; a loop may start more
MAX_CALL_NAMES = 64  # parameter names of the student's training_loop reported
MAX_ALTERNATIVES = 16  # other classes or functions named when the graded one is missing
MAX_OPERATIONS = 256  # tensor operations of one forward pass recorded; a longer forward is cut short
_INT_LIST = ("list", int)
_LAYER = {"path": str, "type": str, "hyper": ("dict", object), "params": ("dict", _INT_LIST), "trainable": int}
_TRACE_CALL = {**_LAYER, "output_shape": (list, type(None))}
_OPT_STR = (str, type(None))
_OPT_NUM = (float, int, type(None))
_OPERATION = {
    "op": str,
    "module": str,  # the layer that ran it ("conv1", "model.0"), "" for the network's own forward
    "args": ("list", (int, float, bool, list, type(None)), 8),  # non-tensor arguments, None where not shown
    "kwargs": ("dict", (int, float, bool, list)),
    "input_shape": (list, type(None)),
    "output_shape": (list, type(None)),
    "digest": ("list", _FINITE_OR_NONE, 3),  # [] when not comparable (see grader/child/observe/operations.py)
}
_LOSS_CURVE = {"losses": ("list", _FINITE_OR_NONE, MAX_LOSS_POINTS), "loss_stride": int}  # per training batch

SCHEMA: dict[str, dict[str, Any]] = {
    "program": {"notes": ("list", str)},
    # the first CUDA request the program made on a machine without CUDA, served by the CPU
    "cuda_on_cpu": {"request": str},
    "reference_failed": {"notes": ("list", str)},
    # `alternatives`: when the class is missing, the nn.Module subclasses the program defines instead
    "instantiate": {"defined": bool, "is_class": bool, "is_module_class": bool, "error": _OPT_STR, "alternatives": ("list", str, MAX_ALTERNATIVES)},
    "structure": {"layers": ("list", _LAYER), "parameters": ("list", {"name": str, "shape": _INT_LIST}), "total_trainable": int},
    "trace": {"batch": int, "ok": bool, "error": _OPT_STR, "calls": ("list", _TRACE_CALL), "output_shape": (list, type(None))},
    "forward": {
        "order": ("list", {"name": str, "shape": _INT_LIST}),
        "loaded": bool,
        "output": (dict, type(None)),
        "weights": (list, type(None)),
        "error": _OPT_STR,
        # one digest per parameter, in forward order, of the gradients of the cross-entropy on
        # the forward inputs (labels 0, 1, 2, ...) with the weights used: [] when not computed
        "gradients": ("list", ("list", _FINITE_OR_NONE, 3), 4096),
    },
    # one forward pass, operation by operation; with the reference weights when they loaded
    "operations": {"operations": ("list", _OPERATION, MAX_OPERATIONS), "truncated": bool, "error": _OPT_STR, "digests": bool},
    # `equivalent`: not trained, because with the reference weights the Net gave the reference's
    # outputs and gradients (the probe checked; grader/compare checks again): it trains like it
    "train": {"initial_loss": _OPT_NUM, "final_loss": _OPT_NUM, "error": _OPT_STR, "equivalent": bool, **_LOSS_CURVE},
    # `alternatives`: when the function is missing, others that take its arguments, with their parameters
    "loop": {"defined": bool, "callable": bool, "alternatives": ("list", str, MAX_ALTERNATIVES)},
    "loop_run": {
        "error": _OPT_STR,
        "initial_loss": _OPT_NUM,
        "final_loss": _OPT_NUM,
        "n_epochs": int,
        "batches_per_epoch": int,
        "batches": int,
        "epochs_started": int,
        # per pass over train_loader: batches drawn, then backward passes and steps until the next pass
        "passes": ("list", {"batches": int, "backward": int, "steps": int}, MAX_LOADER_PASSES),
        "backward_cleared": ("list", bool),
        "steps": int,
        "zero_grad_calls": int,
        "loss_calls": int,
        # how the loop was called: "keyword" or "position", its own parameter names ([] when
        # unreadable), and those it requires that the call could not give
        "call": {"by": str, "parameters": ("list", str, MAX_CALL_NAMES), "unfilled": ("list", str, MAX_CALL_NAMES)},
        **_LOSS_CURVE,
    },
    "done": {},
}


# Two digests of the same tensor (grader/child/observe/operations.py: sum, sum of magnitudes, a fixed
# weighting) agree when every component is within this fraction of the magnitude: far above
# float32's rounding, far below any real difference. The child decides with half of it, so the
# grader's own check of the same numbers never disagrees with the child's decision.
DIGEST_RTOL = 1e-4


def digests_agree(mine: list[float], theirs: list[float], rtol: float = DIGEST_RTOL) -> bool:
    if len(mine) != 3 or len(theirs) != 3:
        return False
    scale = max(abs(theirs[1]), 1.0)
    return all(abs(a - b) <= rtol * scale for a, b in zip(mine, theirs))


def _compile(spec: Any) -> Callable[[Any], bool]:
    """A function telling whether a value fits `spec`. Compiled once per schema entry: checking
    a child's whole report is then a few hundred calls, not thousands of lookups in the spec."""
    if isinstance(spec, dict):
        fields = [(key, _compile(value_spec)) for key, value_spec in spec.items()]
        return lambda value: isinstance(value, dict) and all(key in value and fits(value[key]) for key, fits in fields)
    if spec is _FINITE_OR_NONE:
        return _finite_or_none
    if isinstance(spec, tuple) and spec and spec[0] in ("list", "dict"):
        item = _compile(spec[1])
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


def _finite_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


_FITS = {kind: _compile(spec) for kind, spec in SCHEMA.items()}


def validate(observation: dict[str, Any]) -> str | None:
    """None when the observation has the documented shape, else what is wrong with it."""
    kind = observation.get("kind")
    if not isinstance(kind, str) or kind not in SCHEMA:
        return f"unknown observation kind {kind!r}"
    if not _FITS[kind](observation):
        return f"malformed '{kind}' observation"
    if kind == "loop" and observation["callable"] and not _FITS["loop_run"](observation):
        return "malformed 'loop' observation"
    return None


@dataclass
class GroupObservations:
    """Everything one child run (the Net checks, or the loop check) reported."""

    by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)
    traces: dict[int, dict[str, Any]] = field(default_factory=dict)
    failure: str | None = None  # why the child stopped early: timeout, crash, exit
    problems: list[str] = field(default_factory=list)  # observations that were rejected
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    def get(self, kind: str) -> dict[str, Any] | None:
        return self.by_kind.get(kind)

    def add(self, observation: dict[str, Any]) -> bool:
        """File a validated observation: a trace under its batch size, any other under its kind.
        False, and nothing filed, when that place is already taken."""
        seen = self.traces if observation["kind"] == "trace" else self.by_kind
        key = observation["batch"] if observation["kind"] == "trace" else observation["kind"]
        if key in seen:
            return False
        seen[key] = observation
        return True

    def observations(self) -> list[dict[str, Any]]:
        """Every observation filed, traces last by batch size: what `add` takes back."""
        return [*self.by_kind.values(), *(self.traces[batch] for batch in sorted(self.traces))]

    @property
    def program_notes(self) -> list[str]:
        program = self.by_kind.get("program")
        return list(program["notes"]) if program else []

    @property
    def cuda_request(self) -> str | None:
        """How the program asked for a GPU the grading machine lacks (`'cuda'`, `.cuda()`), if it did."""
        seen = self.by_kind.get("cuda_on_cpu")
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
    """Validate one child's raw report (sandbox.ChildRun as a dict)."""
    group = GroupObservations(
        stdout=str(run.get("stdout", ""))[:100_000],
        stderr=str(run.get("stderr", ""))[:100_000],
        seconds=float(run.get("seconds") or 0.0),
    )
    for observation in run.get("observations", []):
        if not isinstance(observation, dict):
            continue
        problem = validate(observation)
        if problem:
            group.problems.append(problem)
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
