"""The lecture's formulas, worked with the student's own numbers: a layer's output size
`(W − K + 2P)/S + 1`, a layer's parameters `c_out·(c_in·k·k + 1)` and `out·(in + 1)`, and the
flatten size `channels·height·width` that the first Linear layer needs.

Every number comes from what the probes observed (layer settings, the shapes each operation
received and produced); nothing here knows the assignment. A formula is only shown when it
reproduces the observed value, so a layer the formulas do not describe (dilation, `ceil_mode`,
a custom module) simply gets none. Never imports torch or student code.
"""

from __future__ import annotations

import math

from grader.compare.forward_operations import ForwardOperations, Pair, ints, kind, pool_window
from grader.compare.hyperparameters import normalized
from grader.protocol import Layer

_POOLS = {"max_pool2d", "avg_pool2d", "max_pool1d", "avg_pool1d"}
_SIZED = {"conv2d", "conv1d"} | _POOLS


def _window(ops: ForwardOperations, index: int) -> tuple[int, int, int] | None:
    """(kernel, padding, stride) along the width, for a convolution or pooling operation."""
    operation = ops.operations[index]
    if operation["op"] in _POOLS:
        window = pool_window(operation)
        if operation["kwargs"].get("ceil_mode") or window is None:
            return None
        pool_kernel, pool_stride, pool_padding = window
        return pool_kernel[-1], pool_padding[-1], pool_stride[-1]
    layer = ops.layers.get(operation["module"])
    if layer is None:
        return None
    hyper = normalized(layer["hyper"])
    kernel, stride, padding = (ints(hyper.get(key)) for key in ("kernel_size", "stride", "padding"))
    if not (kernel and stride and padding) or any(d != 1 for d in ints(hyper.get("dilation")) or [1]):
        return None
    return kernel[-1], padding[-1], stride[-1]


def output_size(ops: ForwardOperations, index: int) -> str | None:
    """`(32 − 3 + 2·0)/1 + 1 = 30` for a convolution or pooling, when it is what happened."""
    operation = ops.operations[index]
    window = _window(ops, index) if kind(operation) in _SIZED else None
    before, after = ints(operation["input_shape"]), ints(operation["output_shape"])
    if window is None or not before or not after or len(before) < 3:
        return None
    kernel, padding, stride = window
    width = before[-1]
    size = (width - kernel + 2 * padding) // stride + 1
    if size != after[-1]:
        return None
    return f"({width} − {kernel} + 2·{padding})/{stride} + 1 = {size}"


def size_differences(reference: ForwardOperations, student: ForwardOperations, pairs: list[Pair], *, limit: int = 2) -> list[str]:
    """For the first convolutions or poolings whose output differs from the reference's: the
    output-size formula with both sides' numbers, and the channels each makes."""
    lines: list[str] = []
    for i, j in pairs:
        if i is None or j is None or kind(student.operations[j]) not in _SIZED:
            continue
        mine, theirs = student.operations[j], reference.operations[i]
        my_shape, their_shape = ints(mine["output_shape"]), ints(theirs["output_shape"])
        if my_shape == their_shape or not (my_shape and their_shape):
            continue
        if mine["input_shape"] != theirs["input_shape"]:
            continue  # a consequence of an earlier step, which is the one to explain
        name = student.label(j)
        parts = []
        if my_shape[2:] != their_shape[2:]:
            yours, wanted = output_size(student, j), output_size(reference, i)
            if yours:
                parts.append(f"output size (W − K + 2P)/S + 1 = {yours}")
            if wanted:
                parts.append(f"the reference's: {wanted}")
        if my_shape[1:2] != their_shape[1:2] and kind(mine) not in _POOLS:
            parts.append(f"it makes {my_shape[1]} channels, the reference's {their_shape[1]}")
        if parts:
            lines.append(f"{name}: " + "; ".join(parts))
        if len(lines) >= limit:
            break
    return lines


def _flatten_step(ops: ForwardOperations) -> tuple[int, list[int], int | None] | None:
    """The first flattening before a Linear layer: its index, the [channels, height, width] it
    received, and the in_features of the Linear layer that follows (None when unknown)."""
    for index, operation in enumerate(ops.operations):
        shape = ints(operation["input_shape"])
        if kind(operation) != "reshape" or not shape or len(shape) < 3:
            continue
        following = next((k for k in range(index + 1, len(ops.operations)) if ops.operations[k]["op"] == "linear"), None)
        layer = ops.layers.get(ops.operations[following]["module"]) if following is not None else None
        wants = normalized(layer["hyper"]).get("in_features") if layer else None
        return index, shape[1:], wants if isinstance(wants, int) else None
    return None


def _width_chain(ops: ForwardOperations, upto: int) -> str:
    """`32 → 30 (conv1) → 15 (max_pool2d)`: the width after each convolution and pooling."""
    first = next((shape for o in ops.operations[:upto] if (shape := ints(o["input_shape"])) and len(shape) >= 3), None)
    if first is None:
        return ""
    chain = [str(first[-1])]
    for index, operation in enumerate(ops.operations[:upto]):
        shape = ints(operation["output_shape"])
        if kind(operation) in _SIZED and shape and len(shape) >= 3:
            chain.append(f"{shape[-1]} ({ops.place(index)})")
    return " → ".join(chain)


def flatten_size(reference: ForwardOperations, student: ForwardOperations) -> str | None:
    """When the student's flatten size differs from what its first Linear layer takes, or from
    the reference's: `channels·height·width` worked out on both sides."""
    mine, theirs = _flatten_step(student), _flatten_step(reference)
    if mine is None:
        return None
    index, dims, wants = mine
    size = math.prod(dims)
    if theirs is not None and math.prod(theirs[1]) == size and (wants is None or wants == size):
        return None
    if theirs is None and (wants is None or wants == size):
        return None
    text = f"the first Linear layer needs in_features = channels·height·width of what reaches it: yours {'·'.join(map(str, dims))} = {size}"
    chain = _width_chain(student, index)
    if chain:
        text += f" (width {chain})"
    if wants is not None and wants != size:
        text += f", but it is built with in_features={wants}"
    if theirs is not None:
        reference_dims = theirs[1]
        text += f"; in the reference {'·'.join(map(str, reference_dims))} = {math.prod(reference_dims)}"
        reference_chain = _width_chain(reference, theirs[0])
        if reference_chain:
            text += f" (width {reference_chain})"
    return text


def parameter_count(layer: Layer) -> str | None:
    """`c_out·(c_in·k·k + 1) = 16·(3·3·3 + 1) = 448` or `out·(in + 1) = 32·(512 + 1) = 16,416`,
    when the formula gives the layer's observed trainable count."""
    hyper = normalized(layer["hyper"])
    bias = 1 if hyper.get("bias", True) else 0
    plus = " + 1" if bias else ""
    if "in_channels" in hyper and "out_channels" in hyper and ints(hyper.get("kernel_size")):
        groups = hyper.get("groups", 1) if isinstance(hyper.get("groups", 1), int) else 1
        kernel = ints(hyper["kernel_size"]) or []
        c_in, c_out = hyper["in_channels"], hyper["out_channels"]
        if not (isinstance(c_in, int) and isinstance(c_out, int)) or groups < 1:
            return None
        per_filter = c_in // groups * math.prod(kernel)
        count = c_out * (per_filter + bias)
        symbols = "c_out·(c_in" + "·k" * len(kernel) + (" + 1)" if bias else ")")
        numbers = f"{c_out}·({c_in // groups}·" + "·".join(map(str, kernel)) + f"{plus})"
    elif "in_features" in hyper and "out_features" in hyper:
        n_in, n_out = hyper["in_features"], hyper["out_features"]
        if not (isinstance(n_in, int) and isinstance(n_out, int)):
            return None
        count = n_out * (n_in + bias)
        symbols, numbers = "out·(in" + (" + 1)" if bias else ")"), f"{n_out}·({n_in}{plus})"
    else:
        return None
    if count != layer["trainable"]:
        return None
    return f"{symbols} = {numbers} = {count:,}"
