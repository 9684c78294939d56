"""Training images for the short training jobs: generated, or read from disk. Never downloaded."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import TensorDataset


def build_dataset(data: dict[str, Any], input_shape: list[int], num_classes: int) -> TensorDataset:
    if data["kind"] == "synthetic":
        return synthetic_dataset(input_shape, num_classes, size=data["size"], seed=data["seed"], noise=data["noise"])
    return _disk_dataset(data, input_shape, num_classes)


def synthetic_dataset(input_shape: list[int], num_classes: int, *, size: int, seed: int, noise: float) -> TensorDataset:
    """A deterministic CIFAR-like task: each class is a smooth random picture, seen shifted,
    with varied contrast and pixel noise.

    A small CNN learns it within a few epochs; a network whose forward pass is broken does not.
    """
    channels, height, width = _chw(input_shape)
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(num_classes, channels, max(2, height // 8), max(2, width // 8), generator=gen)
    prototypes = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    prototypes = prototypes / prototypes.flatten(1).std(dim=1).view(-1, 1, 1, 1)
    labels = torch.arange(size) % num_classes
    labels = labels[torch.randperm(size, generator=gen)]
    shifts = torch.randint(-2, 3, (size, 2), generator=gen)
    contrast = 0.7 + 0.6 * torch.rand(size, generator=gen)
    images = torch.empty(size, channels, height, width)
    for i in range(size):
        shifted = torch.roll(prototypes[labels[i]], shifts=(int(shifts[i, 0]), int(shifts[i, 1])), dims=(1, 2))
        images[i] = contrast[i] * shifted
    images += noise * torch.randn(images.shape, generator=gen)
    return TensorDataset(images.reshape(size, *input_shape), labels)


def _chw(input_shape: list[int]) -> tuple[int, int, int]:
    if len(input_shape) == 3:
        return input_shape[0], input_shape[1], input_shape[2]
    if len(input_shape) == 2:
        return 1, input_shape[0], input_shape[1]
    raise ValueError(f"synthetic images need an input_shape of [C, H, W] or [H, W], got {input_shape}")


def _disk_dataset(data: dict[str, Any], input_shape: list[int], num_classes: int) -> TensorDataset:
    from torchvision import datasets, transforms

    channels, height, width = _chw(input_shape)
    steps: list[Any] = []
    if channels == 1:
        steps.append(transforms.Grayscale(num_output_channels=1))
    steps += [transforms.Resize((height, width)), transforms.ToTensor()]
    if data["mean"] and data["std"]:
        steps.append(transforms.Normalize(data["mean"], data["std"]))
    transform = transforms.Compose(steps)
    if data["kind"] == "imagefolder":
        source = datasets.ImageFolder(data["root"], transform=transform)
    else:
        source = datasets.CIFAR10(data["root"], train=True, download=False, transform=transform)
    wanted = list(data["classes"]) or list(range(num_classes))
    if len(wanted) != num_classes:
        raise ValueError(f"data.classes lists {len(wanted)} classes but the model has {num_classes} outputs")
    relabel = {original: new for new, original in enumerate(wanted)}
    targets = list(source.targets)
    per_class = -(-data["size"] // num_classes)
    chosen: list[int] = []
    for original in wanted:
        chosen += [i for i, t in enumerate(targets) if t == original][:per_class]
    chosen.sort()
    images = torch.stack([source[i][0] for i in chosen]).reshape(len(chosen), *input_shape)
    labels = torch.tensor([relabel[targets[i]] for i in chosen])
    return TensorDataset(images, labels)
