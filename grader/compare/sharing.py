"""Words for a block that is one object under several names, so its weights are shared.

`nn.Sequential(*(n * [ResBlock(c)]))` repeats one ResBlock object n times: the n blocks run one
after the other with one set of weights. The structure probe reports each module with
parameters that a Net holds under several paths (grader/child/observe/net_probes.py); here the
student's are set against the reference's, both ways:

- the student shares where the reference builds separate blocks: a mistake, named in the
  reasons of the checks that lose points for it (net.params, net.forward, net.layers);
- the reference shares (the book's own NetResDeep does) where the student builds separate
  blocks: no mistake. Separate blocks can each hold the reference's shared weights, so net.forward
  loads them, one copy per block, and compares the output; the student is told the difference
  in a note and loses no points for it (docs/instructors.md, "Shared blocks").

Never imports torch or student code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from grader.protocol import Layer, Parameter, SharedModule, StructureObservation


def shared_modules(structure: StructureObservation | None) -> list[SharedModule]:
    return list(structure.get("shared", [])) if structure else []


def span(paths: Sequence[str], count: int) -> str:
    """`resblocks.0 … resblocks.9`, `conv_a and conv_b`: the paths of one shared module."""
    if count == 2 and len(paths) == 2:
        return f"{paths[0]} and {paths[1]}"
    last = paths[-1] if count == len(paths) else f"({count} paths in all)"
    return f"{paths[0]} … {last}"


def repeated_in(places: Sequence[str]) -> str | None:
    """`resblocks.0 … resblocks.9` when each place lies in its own item of one container (the
    modules `resblocks.0`, ..., `resblocks.9`, or their parts `resblocks.0.act`, ...), else None."""
    if len(places) < 2 or len(set(places)) != len(places) or not all(places):
        return None
    parts = [place.split(".") for place in places]
    if len({len(p) for p in parts}) != 1:
        return None
    varying = [k for k in range(len(parts[0])) if len({p[k] for p in parts}) > 1]
    if len(varying) != 1 or not all(p[varying[0]].isdigit() for p in parts):
        return None
    blocks = [".".join(p[: varying[0] + 1]) for p in parts]
    return span(blocks, len(blocks))


def _in_a_list(paths: Sequence[str]) -> bool:
    """The paths are items of one container (`resblocks.0`, `resblocks.1`): a repeated list."""
    parents = {path.rpartition(".")[0] for path in paths}
    return len(parents) == 1 and all(path.rpartition(".")[2].isdigit() for path in paths)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(f"{root}.")


def _runs_repeatedly(module: SharedModule, calls: Counter[str]) -> bool:
    """Forward runs the shared module more than once. A layer kept both as an attribute and
    inside an nn.Sequential is one object under two names too, but runs once: harmless."""
    first = module["paths"][0]  # the name the trace's hooks use (named_modules finds it first)
    return any(count > 1 for path, count in calls.items() if _under(path, first))


def _has_like(module: SharedModule, others: Sequence[SharedModule]) -> bool:
    return any(o["type"] == module["type"] and o["count"] == module["count"] for o in others)


@dataclass
class Sharing:
    """How the student's shared modules differ from the reference's."""

    mistaken: list[SharedModule] = field(default_factory=list)  # the student's, where the reference has separate ones
    unshared: list[SharedModule] = field(default_factory=list)  # the reference's, where the student has separate ones
    student_layers: list[str] = field(default_factory=list)  # the student's layer paths, to name their blocks

    def mistakes(self) -> list[str]:
        """A sentence per block the student shares where the reference has separate ones."""
        return [_mistake(module) for module in self.mistaken]

    def notes(self) -> list[str]:
        """A sentence per block the reference shares where the student has separate ones."""
        return [_unshared(module, self.student_layers) for module in self.unshared]

    def extra_parameters(self) -> int:
        """How many more trainable parameters the student's separate blocks hold than the
        reference's shared ones: what the student's total may exceed the reference's by."""
        return sum((module["count"] - 1) * module["trainable"] for module in self.unshared)


def compare_sharing(
    reference: StructureObservation | None,
    student: StructureObservation | None,
    reference_calls: Sequence[Layer],
    student_calls: Sequence[Layer],
) -> Sharing:
    """The differences that matter: a shared module counts only where forward runs it more than
    once, and one the other side shares alike (same class, as many times) is no difference."""
    theirs_calls, mine_calls = Counter(c["path"] for c in reference_calls), Counter(c["path"] for c in student_calls)
    theirs = [m for m in shared_modules(reference) if _runs_repeatedly(m, theirs_calls)]
    mine = [m for m in shared_modules(student) if _runs_repeatedly(m, mine_calls)]
    layers = [layer["path"] for layer in student["layers"]] if student else []
    return Sharing(
        mistaken=[m for m in mine if not _has_like(m, theirs)],
        unshared=[m for m in theirs if not _has_like(m, mine)],
        student_layers=layers,
    )


def _mistake(module: SharedModule) -> str:
    name, count = module["type"], module["count"]
    where = span(module["paths"], count)
    if _in_a_list(module["paths"]):
        return (
            f"{where} are one {name} object, so all {count} blocks share one set of weights where the reference's "
            f"{count} blocks have their own: nn.Sequential(*(n * [{name}(...)])) repeats the same object n times; "
            f"build each block, e.g. nn.Sequential(*[{name}(...) for _ in range(n)])"
        )
    return (
        f"{where} are one {name} object, so they share one set of weights where the reference has a separate "
        f"{name} for each: create each with its own {name}(...) call"
    )


def _unshared(module: SharedModule, student_layers: Sequence[str]) -> str:
    name, count, paths = module["type"], module["count"], module["paths"]
    idiom = f", as nn.Sequential(*(n * [{name}(...)])) does," if _in_a_list(paths) else ","
    theirs = f"the reference repeats one {name} object{idiom} so its {count} blocks share their weights"
    if len(paths) == count and all(any(_under(layer, path) for layer in student_layers) for path in paths):
        return f"your {span(paths, count)} are {count} distinct {name} objects; {theirs}"
    return f"your Net builds a separate {name} for each of the {count} blocks; {theirs}"


def conflicting_loads(order: Sequence[Parameter], weights: Sequence[np.ndarray]) -> list[str]:
    """The student's parameters that forward uses in several calls where the reference's weights
    differ from call to call: loading the reference's weights could keep only the last of them."""
    positions: dict[str, list[int]] = {}
    for index, parameter in enumerate(order[: len(weights)]):
        positions.setdefault(parameter["name"], []).append(index)
    return [
        name
        for name, where in positions.items()
        if len(where) > 1 and any(not np.array_equal(weights[where[0]], weights[i]) for i in where[1:])
    ]


def load_conflict(names: Sequence[str], order: Sequence[Parameter], sharing: Sharing) -> str:
    """Why the reference's weights cannot all go into the student's Net: a shared block, or a
    layer forward runs several times where the reference runs separate layers."""
    for module in sharing.mistaken:
        if any(_under(name, module["paths"][0]) for name in names):
            return _mistake(module)
    name = names[0]
    layer = name.rpartition(".")[0] or name
    times = sum(1 for parameter in order if parameter["name"] == name)
    return (
        f"your forward runs {layer} {times} times where the reference runs {times} separate layers with their own "
        "weights: give each its own layer"
    )
