"""Code written for a GPU earns full marks on a grading machine without CUDA.

Students write their notebooks on Colab: `device = torch.device('cuda')`, `model.cuda()`,
`imgs.to(device, non_blocking=True)`. The workers run with CUDA hidden, and such requests run on
the CPU (grader/child/observe/cuda_on_cpu.py) with one note in the feedback and no point lost. Real
notebooks on disk, graded through the whole pipeline against the real reference.
"""

from __future__ import annotations

import pytest
import torch
import variants as v
from conftest import FULL, points
from torch import nn

from grader.child.observe.cuda_on_cpu import CudaOnCpu, cuda_on_cpu, mentions_gpu

GPU_NOTE = "your code asks for a GPU ({}); the grading machine has none, so it ran on the CPU (no points lost)"


def gpu_loop(*, move_model: str, move_batch: str, after_epoch: str = "pass") -> str:
    """The lecture's loop, with the lines that move the model and each batch to the GPU."""
    return (
        v.LOOP.replace("    for epoch in", f"    {move_model}\n    for epoch in", 1)
        .replace("            outputs = model(imgs)", f"            {move_batch}\n            outputs = model(imgs)", 1)
        .replace("        if epoch == 1 or", f"        {after_epoch}\n        if epoch == 1 or", 1)
    )


TO_DEVICE_LOOP = gpu_loop(
    move_model="model.to(device)",
    move_batch="imgs = imgs.to(device, non_blocking=True); labels = labels.to(device, non_blocking=True)",
)
CUDA_CALLS_LOOP = gpu_loop(
    move_model="model = model.cuda()",
    move_batch="imgs, labels = imgs.cuda(non_blocking=True), labels.cuda()",
    after_epoch="torch.cuda.synchronize()",
)
NET_TO_DEVICE = v.NET.replace("        self.fc2 = nn.Linear(32, 2)\n", "        self.fc2 = nn.Linear(32, 2)\n        self.to(device)\n").replace(
    "out = F.max_pool2d(torch.tanh(self.conv1(x)), 2)", "x = x.to(device)\n        out = F.max_pool2d(torch.tanh(self.conv1(x)), 2)"
)
NET_CUDA_FACTORY = v.NET.replace("out = self.fc2(out)", "out = self.fc2(out) + torch.zeros(out.shape[0], 2, device='cuda')")
TRAIN_ON_GPU = v.TRAIN.replace("model = Net()", "model = Net().cuda()")  # top-level work: never run by the grader


def with_device(device: str, loop: str) -> str:
    return f"device = {device}\n\n{loop}"


GPU_NOTEBOOKS = {
    # name: (cells, the request the note quotes)
    "torch_device_cuda": (v.notebook_cells(loop=with_device("torch.device('cuda')", TO_DEVICE_LOOP)), "'cuda'"),
    "string_cuda": (v.notebook_cells(loop=with_device("'cuda'", TO_DEVICE_LOOP)), "'cuda'"),
    "cuda_ordinal": (v.notebook_cells(loop=with_device("torch.device('cuda:0')", TO_DEVICE_LOOP)), "'cuda:0'"),
    "cuda_calls": ([*v.notebook_cells(loop=CUDA_CALLS_LOOP)[:4], TRAIN_ON_GPU, *v.notebook_cells()[5:]], ".cuda()"),
    "to_device_in_forward": (v.notebook_cells(net=with_device("torch.device('cuda')", NET_TO_DEVICE)), "'cuda'"),
    "factory_in_forward": (v.notebook_cells(net=NET_CUDA_FACTORY), "'cuda'"),
}


@pytest.mark.parametrize("name", GPU_NOTEBOOKS)
def test_gpu_code_earns_full_marks_with_one_note(name, grade, tmp_path):
    cells, request = GPU_NOTEBOOKS[name]
    result = grade(v.write_notebook(tmp_path / f"{name}.ipynb", cells))
    assert points(result) == FULL, [c.reasons for c in result.checks]
    assert result.error == ""
    assert [n for n in map(str, result.notes) if "asks for a GPU" in n] == [GPU_NOTE.format(request)]


def test_requests_of_both_check_groups_share_one_note(grade, tmp_path):
    # The Net checks meet the forward pass's 'cuda', the loop check meets the loop's .cuda().
    cells = v.notebook_cells(net=NET_CUDA_FACTORY, loop=CUDA_CALLS_LOOP)
    result = grade(v.write_notebook(tmp_path / "both.ipynb", cells))
    assert points(result) == FULL and result.error == ""
    assert [n for n in map(str, result.notes) if "asks for a GPU" in n] == [GPU_NOTE.format("'cuda', .cuda()")]


@pytest.mark.parametrize(
    "cells",
    [
        v.notebook_cells(),
        v.notebook_cells(loop=v.DEVICE_LOOP),  # `if torch.cuda.is_available()` picks the CPU: nothing to redirect
        v.notebook_cells(net=with_device("torch.device('cuda' if torch.cuda.is_available() else 'cpu')", NET_TO_DEVICE)),
        [*v.notebook_cells()[:4], TRAIN_ON_GPU, *v.notebook_cells()[5:]],  # `Net().cuda()` at top level is never run
    ],
    ids=["lecture", "guarded_loop", "guarded_forward", "top_level_cuda"],
)
def test_cpu_code_gets_no_gpu_note(cells, grade, tmp_path):
    result = grade(v.write_notebook(tmp_path / "cpu.ipynb", cells))
    assert points(result) == FULL and result.error == ""
    assert not [n for n in map(str, result.notes) if "GPU" in n]


# ---------------------------------------------------------------- the mode itself, in this process


def train_a_little(device: str | None) -> list[torch.Tensor]:
    """A few SGD steps of a small CNN, optionally moving everything to `device` first."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    if device:
        model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        images, labels = torch.randn(5, 3, 8, 8), torch.tensor([0, 1, 0, 1, 1])
        if device:
            images, labels = images.to(device, non_blocking=True), labels.to(device)
        loss = nn.functional.cross_entropy(model(images) + torch.zeros(2, device=device), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def same_bits(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(a, b))


def test_cpu_results_are_bit_identical_under_the_mode():
    plain = train_a_little(None)
    requests: list[str] = []
    with CudaOnCpu(requests.append):
        assert same_bits(train_a_little(None), plain)
        assert same_bits(train_a_little("cpu"), plain)
        assert requests == []
        assert same_bits(train_a_little("cuda"), plain)  # the same work, asked of a GPU
    assert requests == ["'cuda'"]  # the first request, once


@pytest.mark.skipif(torch.cuda.is_available(), reason="redirects only where there is no CUDA")
def test_each_kind_of_cuda_request_runs_on_the_cpu():
    requests: list[str] = []
    with cuda_on_cpu(requests.append):
        made = {
            "factory": torch.zeros(3, device="cuda"),
            "device object": torch.ones(3).to(torch.device("cuda:0"), non_blocking=True),
            "keyword": torch.ones(3).to(device="cuda", dtype=torch.float64),
            "ordinal": torch.ones(3).to(0),
            ".cuda()": torch.ones(3).cuda(0, non_blocking=True),
            "pinned": torch.ones(3).pin_memory(),
            "module.cuda()": next(nn.Linear(2, 2).cuda().parameters()),
            "module.to()": next(nn.Linear(2, 2).to("cuda").parameters()),
        }
        torch.cuda.synchronize()
        assert torch.device("cuda").type == "cuda"  # constructing a device is not a request
    assert {name: t.device.type for name, t in made.items()} == dict.fromkeys(made, "cpu")
    assert requests == ["'cuda'"]


def test_mode_is_gone_after_the_block():
    synchronize = torch.cuda.synchronize
    with cuda_on_cpu(lambda request: None):
        pass
    assert torch.cuda.synchronize is synchronize
    assert torch._C._len_torch_function_stack() == 0


def test_nothing_is_installed_where_cuda_is_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    synchronize = torch.cuda.synchronize
    with cuda_on_cpu(lambda request: None):
        assert torch._C._len_torch_function_stack() == 0
        assert torch.cuda.synchronize is synchronize


def test_only_programs_that_name_a_gpu_pay_for_the_mode():
    assert not mentions_gpu([v.NET, v.LOOP])
    assert mentions_gpu([v.NET, TO_DEVICE_LOOP])
    assert mentions_gpu(["x = torch.zeros(3).to(0)"])
    assert mentions_gpu([v.DEVICE_LOOP])


def test_a_mixed_precision_scaler_made_at_top_level_earns_full_marks(grade, tmp_path):
    loop = v.LOOP.replace(
        "            loss.backward()\n            optimizer.step()\n",
        "            scaler.scale(loss).backward()\n            scaler.step(optimizer)\n            scaler.update()\n",
    )
    cells = v.notebook_cells(loop="device = torch.device('cuda')\nscaler = torch.cuda.amp.GradScaler()\n\n" + loop)
    result = grade(v.write_notebook(tmp_path / "amp.ipynb", cells))
    assert points(result) == FULL, result.error
