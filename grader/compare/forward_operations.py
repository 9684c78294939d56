"""How the student's forward differs from the reference's, operation by operation.

Both forwards were recorded by the same probe on the same input (grader/child/observe/operations.py):
the operations in order, the layer that ran each, and, when the reference weights loaded into the
student's Net, a digest of each output. Aligning the two sequences names the mistake in the
lecture's words: "your forward calls relu 2 times where the reference calls tanh", "no tanh after
fc1", "an extra dropout before fc2", "max_pool2d before tanh", "dropout2d after max_pool2d has
p=0.5, the reference's p=0.4". Dropout calls are recorded even in eval mode, where they change
nothing, so a missing or misplaced one is named here. Never imports torch or student code.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from grader.compare.hyperparameters import describe_layer
from grader.compare.sharing import repeated_in
from grader.observations import digests_agree
from grader.protocol import Layer, Operation, OperationsObservation, StructureObservation, TraceObservation

# One kind for the ways of flattening, so `view`, `reshape`, `flatten` and nn.Flatten align.
_RESHAPES = {"view", "reshape", "flatten"}
_FINAL_SOFTMAX = {"softmax", "log_softmax"}
_DROPOUTS = {"dropout", "dropout2d", "dropout1d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"}
MAX_FINDINGS = 6

Pair = tuple[int | None, int | None]


def kind(operation: Operation) -> str:
    return "reshape" if operation["op"] in _RESHAPES else operation["op"]


def ints(value: Any) -> list[int] | None:
    """An observed size as a list of ints (`2` or `[2, 2]`), or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return value
    return None


def pool_window(operation: Operation) -> tuple[list[int], list[int], list[int]] | None:
    """A pooling call's (kernel, stride, padding) as F.max_pool2d(x, kernel_size, stride=None,
    padding=0, ...) takes them, by position or keyword; None when they cannot be read."""
    args, kwargs = operation["args"], operation["kwargs"]
    kernel = ints(kwargs.get("kernel_size", args[0] if args else None))
    stride = ints(kwargs.get("stride", args[1] if len(args) > 1 else None)) or kernel
    padding = ints(kwargs.get("padding", args[2] if len(args) > 2 else 0))
    if not (kernel and stride and padding):
        return None
    return kernel, stride, padding


@dataclass
class ForwardOperations:
    """One forward pass as recorded, with its parametrized layers by path (from `structure`)."""

    operations: list[Operation]
    layers: dict[str, Layer]
    error: str | None = None
    truncated: bool = False
    digests: bool = False
    # how many times forward runs each layer that runs more than once (a block object repeated)
    runs: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(
        cls, observation: OperationsObservation | None, structure: StructureObservation | None, trace: TraceObservation | None = None
    ) -> ForwardOperations | None:
        if observation is None:
            return None
        layers = {layer["path"]: layer for layer in structure["layers"]} if structure else {}
        runs = Counter(call["path"] for call in trace["calls"]) if trace else Counter()
        repeated = {path: count for path, count in runs.items() if count > 1}
        return cls(observation["operations"], layers, observation["error"], observation["truncated"], observation["digests"], repeated)

    def layer_of(self, index: int) -> Layer | None:
        """The parametrized layer whose own computation this operation is (its first operation;
        for a layer that runs several times, the first of each run)."""
        operation = self.operations[index]
        layer = self.layers.get(operation["module"]) if operation["module"] else None
        if layer is None:
            return None
        if operation["module"] in self.runs:
            return None if index and self.operations[index - 1]["module"] == operation["module"] else layer
        earlier = [o for o in self.operations[:index] if o["module"] == operation["module"]]
        return None if earlier else layer

    def run_of(self, index: int) -> int:
        """Which run of its layer a layer's operation belongs to: 0 for the first."""
        module = self.operations[index]["module"]
        return sum(1 for k in range(index) if self.operations[k]["module"] == module and self.layer_of(k) is not None)

    def label(self, index: int) -> str:
        """`conv1 (Conv2d)`, `tanh`, `tanh (act1)`: how the student recognises this operation."""
        operation = self.operations[index]
        layer = self.layer_of(index)
        if layer is not None:
            return f"{operation['module']} ({layer['type']})"
        return f"{operation['op']} ({operation['module']})" if operation["module"] else operation["op"]

    def place(self, index: int) -> str:
        """A short name for a position: the layer's path, else the operation."""
        operation = self.operations[index]
        return operation["module"] if self.layer_of(index) is not None else operation["op"]


def _key(ops: ForwardOperations, index: int) -> str:
    """What must agree for two operations to be the same step: the kind, and for a layer's own
    operation its type and settings (so an extra Linear(32, 32) does not pair with fc2)."""
    layer = ops.layer_of(index)
    if layer is None:
        return kind(ops.operations[index])
    return json.dumps([kind(ops.operations[index]), layer["type"], layer["hyper"]], sort_keys=True, default=str)


def align(reference: ForwardOperations, student: ForwardOperations) -> list[Pair]:
    """Pair the reference's operations with the student's in forward order (None: no partner).
    Identical steps pair first; inside a stretch that differs, steps of the same kind pair (a
    conv2d with other channels is still that conv2d); what is left pairs in order."""
    keys = ([_key(reference, i) for i in range(len(reference.operations))], [_key(student, j) for j in range(len(student.operations))])
    kinds = ([kind(o) for o in reference.operations], [kind(o) for o in student.operations])
    return _pairs(keys, kinds, range(len(keys[0])), range(len(keys[1])))


def _pairs(keys: tuple[list[str], list[str]], finer: tuple[list[str], list[str]] | None, left: range, right: range) -> list[Pair]:
    a, b = [keys[0][i] for i in left], [keys[1][j] for j in right]
    pairs: list[Pair] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        wanted, got = left[i1:i2], right[j1:j2]
        if tag == "equal":
            pairs += list(zip(wanted, got))
        elif finer is not None and wanted and got:
            pairs += _pairs(finer, None, wanted, got)
        else:
            common = min(len(wanted), len(got))
            pairs += list(zip(wanted[:common], got[:common]))
            pairs += [(i, None) for i in wanted[common:]] + [(None, j) for j in got[common:]]
    return pairs


def differences(reference: ForwardOperations, student: ForwardOperations, pairs: list[Pair]) -> list[str]:
    """Sentences naming each way the student's sequence of operations differs from the reference's;
    a mistake repeated in every block is said once, with where it repeats."""
    findings: list[tuple[str, str]] = []  # each with the module it happens in, to say a repeat once
    missing = [(n, i) for n, (i, j) in enumerate(pairs) if j is None and i is not None]
    if student.error:
        # After the step that raised, nothing ran: the reference's later steps are not missing.
        last = max((n for n, (_, j) in enumerate(pairs) if j is not None), default=-1)
        missing = [(n, i) for n, i in missing if n < last]
    extra = [(n, j) for n, (i, j) in enumerate(pairs) if i is None and j is not None]
    # An operation missing in one place and extra a step or two away was moved: say so once.
    for n_missing, i in list(missing):
        moved = next(
            ((n, j) for n, j in extra if kind(student.operations[j]) == kind(reference.operations[i]) and abs(n - n_missing) <= 3),
            None,
        )
        if moved is None:
            continue
        missing.remove((n_missing, i))
        extra.remove(moved)
        between = [pairs[k][1] for k in range(min(n_missing, moved[0]) + 1, max(n_missing, moved[0]))]
        others = [student.operations[j]["op"] for j in between if j is not None]
        name = reference.operations[i]["op"]
        where = student.operations[moved[1]]["module"]
        if others:
            first, then = (name, others[0]) if moved[0] < n_missing else (others[0], name)
            findings.append(
                (f"your forward applies {first} before {then}; the reference applies {then} first, then {first}", where)
            )
        else:
            findings.append((f"your forward applies {name} at a different place than the reference", where))
    substitutions = Counter(
        (reference.operations[i]["op"], student.operations[j]["op"])
        for i, j in pairs
        if i is not None and j is not None and kind(reference.operations[i]) != kind(student.operations[j])
    )
    for (theirs, mine), count in substitutions.items():
        times = "" if count == 1 else f" {count} times"
        findings.append((f"your forward calls {mine}{times} where the reference calls {theirs}", ""))
    for run in _runs(missing):
        names = " and ".join(reference.operations[i]["op"] for _, i in run)
        before = _neighbour(pairs, run[0][0])
        where = student.operations[before]["module"] if before is not None else ""
        findings.append(
            (f"no {names} {_context(pairs, run[0][0], student)}: the reference applies {'one' if len(run) == 1 else 'them'} there", where)
        )
    for run in _runs(extra):
        last = run[-1][1]
        if student.operations[last]["op"] in _FINAL_SOFTMAX and last == len(student.operations) - 1:
            findings.append(
                (f"your forward ends with {student.operations[last]['op']}: nn.CrossEntropyLoss applies log-softmax itself, "
                 "so forward should return the last layer's raw scores (logits)", "")
            )  # fmt: skip
            run = run[:-1]
        if run:
            names = " and ".join(student.label(j) for _, j in run)
            where = student.operations[run[-1][1]]["module"]
            findings.append((f"an extra {names} {_context(pairs, run[-1][0], student, after=False)}: the reference has none there", where))
    for position, (theirs_at, mine_at) in enumerate(pairs):
        if theirs_at is None or mine_at is None:
            continue
        my_step, their_step = student.operations[mine_at], reference.operations[theirs_at]
        if my_step["op"] not in _DROPOUTS or kind(my_step) != kind(their_step):
            continue
        p_mine, p_theirs = dropout_p(my_step), dropout_p(their_step)
        if p_mine is not None and p_theirs is not None and p_mine != p_theirs:
            findings.append((f"{student.label(mine_at)} {_context(pairs, position, student)} has p={p_mine}, the reference's p={p_theirs}", my_step["module"]))
    for j, operation in enumerate(student.operations):
        if operation["op"] in _DROPOUTS and operation["kwargs"].get("training") is True:
            findings.append(
                (f"{student.label(j)} stays active when the network is evaluated: F.{operation['op']}(x, p) defaults to "
                 "training=True; use an nn.Dropout layer, or pass training=self.training", "")
            )  # fmt: skip
            break
    return _said_once(findings)[:MAX_FINDINGS]


def _said_once(findings: list[tuple[str, str]]) -> list[str]:
    """Each sentence once, in the order first found: a skip connection missing from each of 10
    residual blocks is one mistake made 10 times, "(in each of the 10 blocks resblocks.0 …
    resblocks.9)", not 10 findings that crowd out the rest."""
    places: dict[str, list[str]] = {}
    for sentence, where in findings:
        places.setdefault(sentence, []).append(where)
    return [sentence + _repeats(where) for sentence, where in places.items()]


def _repeats(places: list[str]) -> str:
    count = len(places)
    if count == 1:
        return ""
    blocks = repeated_in(places)
    if blocks:
        return f" (in each of the {count} blocks, {blocks})"
    if len(set(places)) == 1 and places[0]:
        return f" (in each of the {count} runs of {places[0]})"
    return f" ({count} places)"


def _neighbour(pairs: list[Pair], n: int) -> int | None:
    """The student's operation nearest before position n of the alignment that both sides have."""
    for k in range(n - 1, -1, -1):
        i, j = pairs[k]
        if i is not None and j is not None:
            return j
    return None


def dropout_p(operation: Operation) -> float | None:
    """A dropout call's p, as F.dropout(x, p=0.5, training=True, inplace=False) takes it (0.5
    when not given); None when it cannot be read."""
    args, kwargs = operation["args"], operation["kwargs"]
    p = kwargs.get("p", args[0] if args else 0.5)
    return float(p) if isinstance(p, (int, float)) and not isinstance(p, bool) else None


def _runs(positions: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Consecutive alignment positions grouped: three extra operations in a row are one finding."""
    runs: list[list[tuple[int, int]]] = []
    for position in positions:
        if runs and runs[-1][-1][0] == position[0] - 1:
            runs[-1].append(position)
        else:
            runs.append([position])
    return runs


def _context(pairs: list[Pair], n: int, student: ForwardOperations, *, after: bool = True) -> str:
    """`after fc1`, `before fc2`, `at the start of forward`: where position n of the alignment is,
    named by the nearest neighbour both sides have, in the student's own names."""
    steps = range(n - 1, -1, -1) if after else range(n + 1, len(pairs))
    for k in steps:
        i, j = pairs[k]
        if i is not None and j is not None:
            return f"{'after' if after else 'before'} {student.place(j)}"
    return "at the start of forward" if after else "at the end of forward"


def first_divergence(reference: ForwardOperations, student: ForwardOperations, pairs: list[Pair]) -> str | None:
    """With the reference weights loaded in both, the first operation whose output differs,
    and what still matched before it; None when that cannot be told."""
    if not (reference.digests and student.digests):
        return None
    matched = None
    for i, j in pairs:
        if j is not None and i is None and matched is not None and _same_output(student.operations[j], student.operations[matched]):
            continue  # an extra step that changed nothing here (dropout in eval mode)
        if i is None or j is None or kind(reference.operations[i]) != kind(student.operations[j]):
            return None  # a step that differs by name is already named; digests after it add nothing
        mine, theirs = student.operations[j], reference.operations[i]
        if not _same_output(mine, theirs):
            where = f"{student.label(j)}" + (f", right after {student.place(matched)}" if matched is not None else "")
            start = "everything before it matches; " if matched is not None else ""
            return f"with the reference weights, {start}the first output that differs from the reference's is that of {where}"
        matched = j
    return None


def _same_output(mine: Operation, theirs: Operation) -> bool:
    if mine["output_shape"] != theirs["output_shape"]:
        return False
    if len(mine["digest"]) != 3 or len(theirs["digest"]) != 3:
        return True  # nothing to compare: not evidence of a difference
    return digests_agree(mine["digest"], theirs["digest"])


# ---------------------------------------------------------------- the picture of both networks


def _settings(ops: ForwardOperations, index: int) -> str:
    operation = ops.operations[index]
    layer = ops.layer_of(index)
    if layer is not None:
        return describe_layer(layer["hyper"])
    args, kwargs = operation["args"], operation["kwargs"]
    shown = [_plain(a) for a in args if a is not None and not isinstance(a, bool)]
    if kind(operation) == "reshape":
        return f"({', '.join(shown)})"
    if operation["op"] in _DROPOUTS:
        p = kwargs.get("p", args[0] if args else None)
        return f"p={_plain(p)}" if p is not None else ""
    window = pool_window(operation) if "pool" in operation["op"] else None
    if window is not None:
        kernel, stride, padding = window
        return f"kernel {_plain(kernel)}" + (f", stride {_plain(stride)}" if stride != kernel else "") + (
            f", padding {_plain(padding)}" if any(padding) else ""
        )
    if "dim" in kwargs:
        return f"dim={_plain(kwargs['dim'])}"
    return ", ".join(shown)[:60]


def _plain(value: Any) -> str:
    if isinstance(value, list):
        flat = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return str(flat[0]) if flat and len(set(flat)) == 1 and len(flat) == len(value) and len(flat) > 1 else ", ".join(map(str, flat))
    return str(value)


def _side(ops: ForwardOperations, index: int) -> dict[str, Any]:
    operation = ops.operations[index]
    layer = ops.layer_of(index)
    side = {
        "layer": ops.label(index),
        "settings": _settings(ops, index),
        "output_shape": operation["output_shape"],
        "parameters": layer["trainable"] if layer is not None else None,
    }
    runs = ops.runs.get(operation["module"]) if layer is not None else None
    if runs:
        # One layer object run several times (a repeated block): its parameters are counted on
        # its first run only, and every run is marked as sharing them.
        side["shared"] = runs
        if ops.run_of(index):
            side["parameters"] = None
    return side


def network_picture(reference: ForwardOperations, student: ForwardOperations, pairs: list[Pair], *, layers_only: bool) -> dict[str, Any]:
    """Both networks side by side, step by step, with what differs on each row (the data of the
    feedback's picture; grader/report/network_picture.py draws it). `layers_only` keeps the
    layers with parameters, for when the forward check is hidden and its steps must not show."""
    rows = []
    for i, j in pairs:
        if layers_only and not ((i is not None and reference.layer_of(i)) or (j is not None and student.layer_of(j))):
            continue
        theirs = _side(reference, i) if i is not None else None
        mine = _side(student, j) if j is not None else None
        differs = []
        if theirs and mine and i is not None and j is not None:
            if _layer_differs(reference, i, student, j):
                differs.append("layer")
            differs += [field for field in ("settings", "output_shape", "parameters") if _differs(field, theirs, mine, reference.operations[i])]
        rows.append({"reference": theirs, "student": mine, "differs": differs})
    return {"rows": rows, "truncated": reference.truncated or student.truncated, "student_error": student.error}


def _layer_differs(reference: ForwardOperations, i: int, student: ForwardOperations, j: int) -> bool:
    if kind(reference.operations[i]) != kind(student.operations[j]):
        return True
    theirs, mine = reference.layer_of(i), student.layer_of(j)
    return (theirs is None) != (mine is None) or (theirs is not None and mine is not None and theirs["type"] != mine["type"])


def _differs(field: str, theirs: dict[str, Any], mine: dict[str, Any], operation: Operation) -> bool:
    if field == "settings" and kind(operation) == "reshape":
        return False  # view(-1, 512) and flatten(1) do the same: the output shape tells
    if field == "parameters":
        return (theirs["parameters"], bool(theirs.get("shared"))) != (mine["parameters"], bool(mine.get("shared")))
    return theirs[field] != mine[field]
