"""What a probe works with inside the child: the student's namespace and the trusted inputs."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from grader.child.observe.program import describe_exception
from grader.protocol import MAX_LOSS_POINTS, LossCurve, Observation
from grader.wire import encode_array

# How a probe reports: an observation typed as grader/protocol.py defines its kind, so mypy
# checks what the probes send against what the grading host validates.
Report = Callable[[Observation], None]


def reporting(emit: Callable[[dict[str, Any]], None]) -> Report:
    """The child's report channel (a function of plain dicts), taking typed observations: a
    TypedDict is a plain dict when the program runs."""
    return cast(Report, emit)


@dataclass
class ProbeContext:
    settings: dict[str, Any]
    student: dict[str, Any]  # namespace the student's extracted program ran in
    student_files: set[str]
    reference: dict[str, Any] | None  # namespace of the reference program (instructor runs only)
    forward_inputs: torch.Tensor
    reference_weights: list[torch.Tensor] | None  # parameters then float buffers, forward-ordered; None while observing the reference
    # What the reference does with those weights: {"output": array, "gradients": [digest, ...],
    # "train_output": array or None (in training mode, seeded)};
    # None while observing the reference
    reference_behaviour: dict[str, Any] | None
    loop_model_spec: list[dict[str, Any]] | None
    dataset: TensorDataset
    emit: Report

    def describe(self, exc: BaseException) -> str:
        return describe_exception(exc, self.student_files)

    def loader(self, seed: int) -> DataLoader:
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(self.dataset, batch_size=self.settings["training"]["batch_size"], shuffle=True, generator=generator)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def encode_tensor(tensor: torch.Tensor) -> dict[str, Any]:
    return encode_array(tensor.detach().to("cpu", torch.float32).numpy())


def shape_of(value: Any) -> list[int] | None:
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return list(value[0].shape)
    return None


def mean_loss(model: nn.Module, dataset: TensorDataset, batch_size: int) -> float:
    """Cross-entropy over the whole training set, in eval mode, without touching gradients."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            images, labels = dataset[start : start + batch_size]
            outputs = model(images)
            total += float(nn.functional.cross_entropy(outputs, labels, reduction="sum"))
            count += len(labels)
    model.train(was_training)
    return total / count


def finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


class LossHistory:
    """The training losses a loop computed, in order, for the loss curve; never more than
    MAX_LOSS_POINTS points, so an endless loop cannot grow the report. When a new point would
    overflow, neighbouring points are averaged in pairs and each point from then on stands for
    twice as many losses (`stride`). A point is None when any loss in it was NaN or infinite."""

    def __init__(self) -> None:
        self.points: list[float | None] = []
        self.stride = 1
        self._sum = 0.0
        self._count = 0

    def add(self, loss: torch.Tensor) -> None:
        try:
            value = float(loss.detach().mean())
        except (AttributeError, TypeError, RuntimeError, ValueError):
            return  # not a tensor we can read; the loop will fail on it anyway
        self._sum += value  # NaN and inf propagate, and become None below
        self._count += 1
        if self._count == self.stride:
            if len(self.points) == MAX_LOSS_POINTS:
                pairs = zip(self.points[0::2], self.points[1::2])
                self.points = [None if a is None or b is None else (a + b) / 2 for a, b in pairs]
                self.stride *= 2
                return  # the current group keeps filling up to the new stride
            self._flush()

    def _flush(self) -> None:
        self.points.append(finite_or_none(self._sum / self._count))
        self._sum, self._count = 0.0, 0

    def observation(self) -> LossCurve:
        """`losses` and `loss_stride` for the probe's report; a last, partial point included."""
        points = list(self.points)
        if self._count and len(points) < MAX_LOSS_POINTS:
            points.append(finite_or_none(self._sum / self._count))
        return {"losses": points, "loss_stride": self.stride}


class RecordingCrossEntropy(nn.Module):
    """nn.CrossEntropyLoss that also records every loss it computes in `history`."""

    def __init__(self) -> None:
        super().__init__()
        self._loss = nn.CrossEntropyLoss()
        self.history = LossHistory()

    def forward(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = self._loss(outputs, labels)
        self.history.add(loss)
        return loss
