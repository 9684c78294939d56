"""Calling a training loop, the reference's or a student's, through the assignment's roles.

The config maps each parameter of the solution's loop to a role (grader/loop_roles.py): the
grader builds one value per role and hands each loop the values its parameters ask for, by
keyword when the loop's names are the solution's, else by position in the solution's order.
A loop that is not given an optimizer or a loss function makes its own; `watching_own_parts`
then observes them as the grader's own would be: steps, zero_grad calls and every loss computed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook
from torch.optim.optimizer import register_optimizer_step_post_hook

from grader.protocol import MAX_CALL_NAMES, LoopCall

_NAMED = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def plan_call(function: Any, signature: list[str], mode: str) -> LoopCall:
    """How to call a loop: by keyword, as the lecture does, when every parameter it requires
    has one of the solution's names; else by position in the solution's order. Also its own
    parameter names, and those it requires that neither way can give."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # no signature to read (a builtin, a C function): as the caller wrote it
        return {"by": "position", "parameters": [], "unfilled": []}
    required = [p for p in parameters if p.kind in _NAMED and p.default is inspect.Parameter.empty]
    by_name = all(p.name in signature and p.kind is not inspect.Parameter.POSITIONAL_ONLY for p in required)
    names = [p.name for p in parameters if p.kind in _NAMED][:MAX_CALL_NAMES]  # the observation's schema caps them
    if mode == "keyword" and by_name:
        return {"by": "keyword", "parameters": names, "unfilled": []}
    positional = [p for p in parameters if p.kind in _NAMED[:2]]
    unfilled = [p.name for p in required if p.kind is inspect.Parameter.KEYWORD_ONLY or positional.index(p) >= len(signature)]
    return {"by": "position", "parameters": names, "unfilled": unfilled[:MAX_CALL_NAMES]}


def call_loop(function: Callable[..., Any], call: LoopCall, settings: dict[str, Any], values: dict[str, Any]) -> Any:
    """Call `function` as `call` plans, each parameter of the solution's loop given its role's value."""
    signature, roles = settings["loop_signature"], settings["loop_roles"]
    if call["by"] == "keyword":
        return function(**{name: values[roles[name]] for name in signature})
    return function(*(values[roles[name]] for name in signature))


def role_values(settings: dict[str, Any], model: nn.Module, loader: Any, evaluation_loader: Any, **parts: Any) -> dict[str, Any]:
    """A value for every role the assignment's loop takes: `parts` gives the optimizer and the
    loss function when the loop takes them."""
    training = settings["training"]
    values = {
        "model": model,
        "train_loader": loader,
        "n_epochs": training["epochs"],
        "learning_rate": training["learning_rate"],
        "device": "cpu",
        "val_loader": evaluation_loader,
        **parts,
    }
    return {role: values[role] for role in set(settings["loop_roles"].values())}


def makes_own(settings: dict[str, Any], role: str) -> bool:
    """True when the assignment's loop is not given `role` (the optimizer, the loss function)."""
    return role not in settings["loop_roles"].values()


@contextmanager
def watching_own_parts(
    model: nn.Module,
    *,
    on_step: Callable[[], None] | None = None,
    on_zero_grad: Callable[[], None] | None = None,
    on_loss: Callable[[torch.Tensor], None] | None = None,
    besides: torch.optim.Optimizer | None = None,
) -> Iterator[None]:
    """While the loop runs, observe the parts it makes itself: each step (`on_step`) and
    zero_grad (`on_zero_grad`) of any optimizer over `model`'s parameters but `besides` (the
    grader's own), and each loss a torch loss module computes (`on_loss`). Restored after,
    whatever the loop did."""
    ours = {id(p) for p in model.parameters()}

    def made_by_loop(opt: torch.optim.Optimizer) -> bool:
        return opt is not besides and any(id(p) in ours for group in opt.param_groups for p in group["params"])

    handles = []
    original_zero_grad = torch.optim.Optimizer.zero_grad
    if on_step is not None:
        step = on_step

        def after_step(opt: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
            if made_by_loop(opt):
                step()

        handles.append(register_optimizer_step_post_hook(after_step))
    if on_zero_grad is not None:
        zero_grad_seen = on_zero_grad

        def zero_grad(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
            if made_by_loop(self):
                zero_grad_seen()
            return original_zero_grad(self, *args, **kwargs)

        torch.optim.Optimizer.zero_grad = zero_grad  # type: ignore[method-assign]  # restored below
    if on_loss is not None:
        loss_seen = on_loss

        def after_forward(module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(module, nn.modules.loss._Loss) and isinstance(output, torch.Tensor):
                loss_seen(output)

        handles.append(register_module_forward_hook(after_forward))
    try:
        yield
    finally:
        torch.optim.Optimizer.zero_grad = original_zero_grad  # type: ignore[method-assign]
        for handle in handles:
            handle.remove()
