"""Dropout masks that are the same on every machine, for comparing a Net in training mode.

The forward probe runs the reference's Net and the student's in training mode and compares the
outputs: equal dropout calls must draw equal masks. torch's own draws are not portable: on an
Intel CPU it takes them from MKL's generator, on AMD and ARM from its own, so the masks in the
fixtures (made on the instructor's machine) would differ from those a student's selfcheck draws.
While `PortableDropout` is active, each `F.dropout`, `F.dropout1d/2d/3d` call (and so each
nn.Dropout module) in training mode draws its mask here instead, from a counter-based hash of
the seed, the call's number and the element's index, in integer arithmetic. The same calls, in
the same order, on the same shapes, get the same masks anywhere; a dropout missing, moved, of
another kind or with another p changes them, as it does with torch's own.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from grader.child.observe.operations import canonical_name

# The input's dimensions with a batch, for dropout over whole channels: dropout2d on (N, C, H, W).
_FEATURE_DIMS = {"dropout1d": 3, "dropout2d": 4, "dropout3d": 5}
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _uniform(count: int, salt: int) -> np.ndarray:
    """`count` numbers in [0, 1), splitmix64 of the index and `salt` (uint64 arithmetic wraps)."""
    z = (np.arange(count, dtype=np.uint64) + np.uint64(salt % 2**64)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[float, bool, bool]:
    """p, training, inplace as F.dropout(input, p=0.5, training=True, inplace=False) takes them."""
    p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
    training = kwargs.get("training", kwargs.get("train", args[2] if len(args) > 2 else True))
    inplace = kwargs.get("inplace", args[3] if len(args) > 3 else False)
    return float(p), bool(training), bool(inplace)


class PortableDropout(TorchFunctionMode):
    """Draws every dropout mask of a forward pass as the module docstring says, while active."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self._seed = seed
        self._calls = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        name = canonical_name(func)
        if name != "dropout" and name not in _FEATURE_DIMS:
            return func(*args, **kwargs)
        source = args[0] if args else kwargs.get("input")
        try:
            p, training, inplace = _arguments(args, kwargs)
        except (TypeError, ValueError):
            return func(*args, **kwargs)
        shape = self._mask_shape(name, source)
        if not training or shape is None or not 0 <= p <= 1 or not isinstance(source, torch.Tensor):
            return func(*args, **kwargs)  # nothing drawn (eval mode, p out of range, an odd shape: torch says)
        self._calls += 1
        keep = _uniform(math.prod(shape), self._seed * 1_000_003 + self._calls) >= p
        scale = torch.from_numpy(keep.reshape(shape)).to(source.dtype) * (0.0 if p == 1 else 1 / (1 - p))
        return source.mul_(scale) if inplace else source * scale

    @staticmethod
    def _mask_shape(name: str, source: Any) -> tuple[int, ...] | None:
        """One draw per element, or per channel of each sample for dropout1d/2d/3d (batched or
        not, as torch takes them); None for a shape torch would refuse or warn about."""
        if not isinstance(source, torch.Tensor) or not source.is_floating_point():
            return None
        if name == "dropout":
            return tuple(source.shape)
        batched = _FEATURE_DIMS[name]
        if source.dim() == batched:
            return (*source.shape[:2], *([1] * (batched - 2)))
        if source.dim() == batched - 1:
            return (source.shape[0], *([1] * (batched - 2)))
        return None
