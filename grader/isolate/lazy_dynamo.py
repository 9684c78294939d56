"""torch._dynamo, imported only when something compiles.

torch's optimizers import torch._dynamo on their first step: step() is wrapped in
`torch._dynamo.graph_break()` and the update in `torch._dynamo.disable(...)`. The import costs
1.1-1.8 s per process on a 2-core machine, a third of a worker's start-up and of selfcheck's
floor, yet both calls do nothing unless something is being compiled, and nothing is compiled
until torch._dynamo is really imported (torch.compile imports it).

install() puts a stand-in at `torch._dynamo` until then: its graph_break and disable do nothing
while the real module is absent and defer to it once loaded; any other attribute (torch.compile
asking for `optimize`, a student's `torch._dynamo.config`) imports the real module, which then
replaces the stand-in. Nothing a program observes changes, only when the import is paid.

Used by the worker before it warms up; never needed in the grading host, which does not train.
"""

from __future__ import annotations

import functools
import importlib
import sys
import types
from collections.abc import Callable
from typing import Any

_NAME = "torch._dynamo"


class _StandIn(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__") and name != "__path__":
            raise AttributeError(name)  # introspection must not trigger the import; a submodule's must
        return getattr(_real_module(), name)


def install() -> None:
    """Stand in for torch._dynamo in this process (and the children it forks), unless loaded."""
    import torch

    if _NAME in sys.modules:
        return
    stand_in = _StandIn(_NAME)
    stand_in.graph_break = _graph_break  # type: ignore[attr-defined]
    stand_in.disable = _disable  # type: ignore[attr-defined]
    sys.modules[_NAME] = stand_in
    torch._dynamo = stand_in  # bypasses torch's lazy __getattr__


def is_loaded() -> bool:
    """Whether the real torch._dynamo has been imported in this process."""
    module = sys.modules.get(_NAME)
    return module is not None and not isinstance(module, _StandIn)


def _real_module() -> types.ModuleType:
    module = sys.modules.get(_NAME)
    if module is not None and not isinstance(module, _StandIn):
        return module
    import torch

    sys.modules.pop(_NAME, None)
    if isinstance(torch.__dict__.get("_dynamo"), _StandIn):
        del torch._dynamo
    return importlib.import_module(_NAME)  # sets torch._dynamo to the real module


def _graph_break(*args: Any, **kwargs: Any) -> None:
    if is_loaded():
        _real_module().graph_break(*args, **kwargs)


def _disable(fn: Callable[..., Any] | None = None, recursive: bool = True, **kwargs: Any) -> Any:
    if fn is None:  # used as @disable(recursive=...)
        return functools.partial(_disable, recursive=recursive, **kwargs)
    real_disabled: list[Callable[..., Any]] = []

    @functools.wraps(fn)
    def deferred(*args: Any, **call_kwargs: Any) -> Any:
        if not is_loaded():  # nothing can be compiling: disabling is a no-op
            return fn(*args, **call_kwargs)
        if not real_disabled:
            real_disabled.append(_real_module().disable(fn, recursive, **kwargs))
        return real_disabled[0](*args, **call_kwargs)

    return deferred
