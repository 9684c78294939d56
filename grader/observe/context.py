"""What a probe works with inside the child: the student's namespace and the trusted inputs."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from grader.observe.program import describe_exception
from grader.wire import encode_array


@dataclass
class ProbeContext:
    settings: dict[str, Any]
    student: dict[str, Any]  # namespace the student's extracted program ran in
    student_files: set[str]
    reference: dict[str, Any] | None  # namespace of the reference program (instructor runs only)
    forward_inputs: torch.Tensor
    reference_weights: list[torch.Tensor] | None  # forward-ordered; None while observing the reference
    loop_model_spec: list[dict[str, Any]] | None
    dataset: TensorDataset
    emit: Callable[[dict[str, Any]], None]

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
