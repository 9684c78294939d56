"""Record the tensor operations one forward pass performs, in order, with the module that issued
each: the student's `F.max_pool2d(torch.tanh(self.conv1(x)), 2)` and the reference's
`nn.Sequential(nn.Conv2d(...), nn.Tanh(), nn.MaxPool2d(2))` both read as conv2d (conv1), tanh,
max_pool2d, so the comparison stage can say "relu where the reference has tanh".

A torch function mode sees functional calls (`F.relu`, `torch.tanh`, `x.view`) and the calls
layers make inside their own forward; module hooks say which layer is running. Each operation's
output is summarised by a few numbers (a digest), so two runs with the same weights on the same
input can be compared operation by operation without sending whole activations.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from grader.protocol import MAX_OPERATIONS, Digest, Operation, OperationsObservation

# Calls that convert, copy or describe a tensor without computing anything a student's design
# decides; recording them would only add noise to the comparison.
_NOT_OPERATIONS = frozenset(
    {
        "get", "set", "to", "cpu", "cuda", "float", "double", "half", "type", "type_as", "clone",
        "detach", "contiguous", "requires_grad", "size", "dim", "numel", "is_contiguous", "item",
        "tolist", "stride", "set_grad_enabled", "repr", "format", "len", "iter", "bool", "index",
    }
)
_CANONICAL = {"max_pool2d_with_indices": "max_pool2d", "max_pool1d_with_indices": "max_pool1d", "iadd": "add", "radd": "add",
              "isub": "sub", "imul": "mul", "rmul": "mul", "itruediv": "div", "truediv": "div", "matmul": "matmul"}
_SCALARS = (int, float, bool)


def canonical_name(func: Any) -> str:
    """`relu` for F.relu, torch.relu, Tensor.relu, Tensor.relu_ and nn.ReLU alike."""
    name = str(getattr(func, "__name__", type(func).__name__)).strip("_")
    return _CANONICAL.get(name, name)


def _small_value(value: Any) -> Any:
    """A JSON-able argument worth showing (`2`, `[-1, 512]`), or None for tensors and the rest."""
    if isinstance(value, _SCALARS) and (not isinstance(value, float) or math.isfinite(value)):
        return value
    if isinstance(value, (tuple, list, torch.Size)) and 0 < len(value) <= 8 and all(isinstance(v, int) for v in value):
        return list(value)
    return None


def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The non-tensor arguments worth showing, positional (None where not shown) and by keyword."""
    positional = [_small_value(value) for value in args if not isinstance(value, torch.Tensor)][:8]
    named = {str(key)[:24]: _small_value(value) for key, value in list(kwargs.items())[:8]}
    return positional, {key: value for key, value in named.items() if value is not None and key != "inplace"}


def _shape(value: Any) -> list[int] | None:
    return list(value.shape) if isinstance(value, torch.Tensor) else None


_WEIGHTS: dict[int, torch.Tensor] = {}  # the fixed weighting, by length: made once per size


def digest(tensor: torch.Tensor) -> Digest:
    """Three numbers that two equal tensors share and different ones almost never do: the sum,
    the sum of magnitudes, and a fixed pseudo-random weighting (catches a permutation); [] for a
    tensor that has none (integers, empty, NaN)."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return []
    values = tensor.detach().reshape(-1).double()
    weights = _WEIGHTS.get(values.numel())
    if weights is None:
        weights = _WEIGHTS[values.numel()] = torch.sin(torch.arange(values.numel(), dtype=torch.float64) * 0.7071 + 0.5)
    found: Digest = [float(values.sum()), float(values.abs().sum()), float(values @ weights)]
    return found if all(d is not None and math.isfinite(d) for d in found) else []


class OperationRecorder(TorchFunctionMode):
    """Records every operation of a forward pass while active (see the module docstring)."""

    def __init__(self, model: nn.Module, *, digests: bool) -> None:
        super().__init__()
        self.operations: list[Operation] = []
        self.truncated = False
        self._digests = digests
        self._path: list[str] = []
        self._handles = []
        for path, module in model.named_modules():
            self._handles.append(module.register_forward_pre_hook(lambda *_, p=path: self._path.append(p)))
            self._handles.append(module.register_forward_hook(lambda *_, p=path: self._leave(p)))

    def _leave(self, path: str) -> None:
        if self._path and self._path[-1] == path:
            self._path.pop()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        name = canonical_name(func)
        try:
            output = func(*args, **kwargs)
        except BaseException:
            if name not in _NOT_OPERATIONS:
                self._record(name, args, kwargs, None)  # the operation that failed, with no output
            raise
        first = output[0] if isinstance(output, tuple) and output else output
        if isinstance(first, torch.Tensor) and name not in _NOT_OPERATIONS:
            self._record(name, args, kwargs, first)
        return output

    def _record(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], output: torch.Tensor | None) -> None:
        if len(self.operations) >= MAX_OPERATIONS:
            self.truncated = True
            return
        source = args[0] if args and isinstance(args[0], torch.Tensor) else None
        positional, named = _arguments(args, kwargs)
        self.operations.append(
            {
                "op": name[:40],
                "module": self._path[-1][:80] if self._path else "",
                "args": positional,
                "kwargs": named,
                "input_shape": _shape(source),
                "output_shape": _shape(output),
                "digest": digest(output) if self._digests and output is not None else [],
            }
        )


def record_operations(model: nn.Module, sample: torch.Tensor, *, digests: bool, describe: Any) -> OperationsObservation:
    """The `operations` observation: what one forward pass of `model` on `sample` did, up to an
    exception if it raised (`describe` turns that into the student-facing text)."""
    seen: OperationsObservation = {"kind": "operations", "operations": [], "truncated": False, "error": None, "digests": digests}
    recorder = OperationRecorder(model, digests=digests)
    model.eval()
    try:
        with torch.no_grad(), recorder:
            model(sample)
    except BaseException as exc:
        seen["error"] = describe(exc)
    finally:
        recorder.remove()
    seen["operations"] = recorder.operations
    seen["truncated"] = recorder.truncated
    return seen
