"""GPU requests in a student's code, run on the CPU when the grading machine has no CUDA.

Students write their notebooks on Colab: `device = torch.device('cuda')`, `model.cuda()`,
`imgs.to(device, non_blocking=True)`, `torch.zeros(3, device='cuda')`. On a grading machine
without CUDA (the workers run with CUDA_VISIBLE_DEVICES empty) each of these raises "Found no
NVIDIA driver" and would cost a check although the code is right. While `cuda_on_cpu` is
active, such requests are served by the CPU instead, and the first one is reported once, so the
student's feedback can say so. Where CUDA is available it installs nothing.

What is redirected: a `device=` argument naming CUDA (`'cuda'`, `'cuda:0'`, `torch.device('cuda')`,
an ordinal such as `0`) of any torch function, the device of `Tensor.to` (and so of
`nn.Module.to`, which moves each tensor with it), `Tensor.cuda()` (and so `nn.Module.cuda()`),
pinned memory (`pin_memory()`, `pin_memory=True`), which only serves copies to a GPU, and
`torch.cuda.synchronize()`. `torch.device('cuda')` itself stays what it is: only its use is
redirected. Everything else, CPU code included, runs exactly as without it.

Runs in the forked child (and in a worker's rehearsal, on the reference) around the probes and
the student's program; never in the grading host, which never imports torch. A torch function
mode costs about 5 µs on every torch call, about 3% of a correct submission's checks, so it is
installed only for a program whose text `mentions_gpu`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

# The only spellings redirected: anything else that names CUDA is left to fail as it would.
_CUDA_NAME = re.compile(r"cuda(:\d{1,4})?")
# Text without any of these cannot ask for CUDA in a way the mode serves (short of building the
# word at run time, which is left to fail as it would).
_GPU_WORDS = re.compile(r"cuda|device|pin_memory|\.to\(\s*\d")


def mentions_gpu(sources: Iterable[str]) -> bool:
    """Whether a program's source may ask for CUDA, so `cuda_on_cpu` is worth its cost."""
    return any(_GPU_WORDS.search(source) for source in sources)


def _cuda_request(value: Any) -> str | None:
    """How `value` names a CUDA device, quoted as the student wrote it; None when it does not."""
    if isinstance(value, torch.device):
        return f"'{value}'" if value.type == "cuda" else None
    if isinstance(value, str):
        return f"'{value}'" if _CUDA_NAME.fullmatch(value) else None
    if isinstance(value, int) and not isinstance(value, bool):  # a device ordinal: CUDA's, on a grading machine
        return f"'cuda:{value}'" if 0 <= value < 10_000 else None
    return None


class CudaOnCpu(TorchFunctionMode):
    """A torch function mode that serves CUDA requests on the CPU and reports the first one
    through `report(request)`, e.g. `report("'cuda'")` or `report(".cuda()")`."""

    def __init__(self, report: Callable[[str], None]) -> None:
        super().__init__()
        self._report: Callable[[str], None] | None = report

    def note(self, request: str) -> None:
        if self._report is not None:
            report, self._report = self._report, None
            report(request)

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            self.note(".cuda()")
            return args[0].cpu(memory_format=kwargs.get("memory_format", torch.preserve_format))
        if func is torch.Tensor.pin_memory:
            self.note("pin_memory()")
            return args[0]
        if kwargs.get("pin_memory") is True:
            self.note("pin_memory=True")
            kwargs = {**kwargs, "pin_memory": False}
        if "device" in kwargs and (request := _cuda_request(kwargs["device"])):
            self.note(request)
            kwargs = {**kwargs, "device": "cpu"}
        if func is torch.Tensor.to and len(args) > 1 and (request := _cuda_request(args[1])):
            self.note(request)
            args = (args[0], "cpu", *args[2:])
        return func(*args, **kwargs)


@contextmanager
def cuda_on_cpu(report: Callable[[str], None]) -> Iterator[None]:
    """Serve CUDA requests on the CPU inside the block when this machine has no CUDA; `report`
    gets the first request, once. Where CUDA is available, nothing changes."""
    if torch.cuda.is_available():
        yield
        return
    mode = CudaOnCpu(report)
    synchronize = torch.cuda.synchronize

    def synchronize_nothing(device: Any = None) -> None:
        mode.note("torch.cuda.synchronize()")

    torch.cuda.synchronize = synchronize_nothing
    try:
        with mode:
            yield
    finally:
        torch.cuda.synchronize = synchronize
