"""Observe the student's training_loop driving a known-good model with instrumented parts.

Counts what the loop does — batches drawn, backward passes, optimizer steps, whether gradients
were cleared before each backward, and per pass over train_loader the batches it drew and the
backward passes and steps that followed — and the model's loss before and after, with every loss
the loop computed on the way (the loss curve). Gradients count as
cleared when every parameter's `.grad` is None or zero as a new backward pass reaches it, so
`optimizer.zero_grad()`, `model.zero_grad()` and setting grads to None all count.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from grader.child.observe.context import LossHistory, ProbeContext, RecordingCrossEntropy, finite_or_none, mean_loss, seed_everything
from grader.child.observe.loop_call import call_loop, makes_own, plan_call, role_values, watching_own_parts
from grader.protocol import MAX_ALTERNATIVES, MAX_CALL_NAMES, MAX_LOADER_PASSES, LoaderPass, LoopRun


class _Counts:
    def __init__(self) -> None:
        self.batches = 0
        self.epochs_started = 0
        self.backward_cleared: list[bool] = []  # one entry per backward pass
        self.steps = 0
        self.zero_grad_calls = 0
        self.loss_calls = 0
        # per pass over the loader, the first MAX_LOADER_PASSES + 1 (the last one only marks
        # where the one before ended): [batches drawn, backward passes before it, steps before it]
        self.passes: list[list[int]] = []

    def loader_passes(self) -> list[LoaderPass]:
        """Per pass over the loader: the batches it drew, and the backward passes and steps from
        its start to the next pass's start (so a loop that collects the batches first and trains
        afterwards still has them counted in the pass that drew them)."""
        ends = [p[1:] for p in self.passes[1:]] + [[len(self.backward_cleared), self.steps]]
        return [
            {"batches": batches, "backward": end[0] - backward, "steps": end[1] - steps}
            for (batches, backward, steps), end in zip(self.passes[:MAX_LOADER_PASSES], ends)
        ]


class _CountingLoader:
    """Wraps the DataLoader; counts batches handed out. Other attributes pass through."""

    def __init__(self, loader: Any, counts: _Counts) -> None:
        self._loader = loader
        self._counts = counts

    def __iter__(self) -> Iterator[Any]:
        counts = self._counts
        counts.epochs_started += 1
        this_pass = [0, len(counts.backward_cleared), counts.steps]
        if len(counts.passes) <= MAX_LOADER_PASSES:
            counts.passes.append(this_pass)
        for batch in self._loader:
            counts.batches += 1
            this_pass[0] += 1
            yield batch

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _CountingLoss(RecordingCrossEntropy):
    def __init__(self, counts: _Counts) -> None:
        super().__init__()
        self._counts = counts

    def forward(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._counts.loss_calls += 1
        return super().forward(outputs, labels)


def _counting_sgd(params: list[nn.Parameter], lr: float, counts: _Counts) -> torch.optim.Optimizer:
    class SGD(torch.optim.SGD):  # named like the real one: students may print it
        def step(self, closure: Any = None) -> Any:
            counts.steps += 1
            return super().step(closure)

        def zero_grad(self, set_to_none: bool = True) -> None:
            counts.zero_grad_calls += 1
            super().zero_grad(set_to_none)

    return SGD(params, lr=lr)


def _watch_gradients(params: list[nn.Parameter], counts: _Counts) -> None:
    """Record, per backward pass, whether gradients were cleared before it accumulated.

    Tensor hooks run before the gradient is accumulated into `.grad`, and the output layer's
    parameters (last registered) are reached first, so the sentinel opens each pass's record.
    """
    sentinel = params[-1]

    def before_accumulate(param: nn.Parameter, grad: torch.Tensor) -> None:
        cleared = param.grad is None or not bool(param.grad.detach().any())
        if param is sentinel:
            counts.backward_cleared.append(cleared)
        elif counts.backward_cleared:
            counts.backward_cleared[-1] = counts.backward_cleared[-1] and cleared

    for param in params:
        if param.requires_grad:
            param.register_hook(partial(before_accumulate, param))


def _loop_model(ctx: ProbeContext) -> nn.Module:
    """The stand-in model the student's loop trains (expectations.stand_in_loop_model): the loop's
    behaviour does not depend on the model, and this one trains in milliseconds."""
    seed_everything(ctx.settings["training"]["seed"])
    assert ctx.loop_model_spec, "no model to exercise training_loop with"
    return nn.Sequential(*(getattr(nn, layer["type"])(**layer.get("args", {})) for layer in ctx.loop_model_spec))


def _other_loops(namespace: dict[str, Any], signature: list[str]) -> list[str]:
    """Functions the student's program defines that take the loop's arguments, as
    `train(n_epochs, optimizer, model, loss_fn, train_loader)`: a loop under another name."""
    own = namespace.get("__name__")
    found = []
    for name, value in namespace.items():
        if not inspect.isfunction(value) or getattr(value, "__module__", None) != own:
            continue
        try:
            parameters = list(inspect.signature(value).parameters)
        except (TypeError, ValueError):
            continue
        if len(parameters) == len(signature) or len(set(parameters) & set(signature)) * 2 > len(signature):
            found.append(f"{name}({', '.join(parameters[:MAX_CALL_NAMES])})"[:200])
    return found[:MAX_ALTERNATIVES]


def observe_loop(ctx: ProbeContext) -> None:
    settings = ctx.settings
    training = settings["training"]
    function = ctx.student.get(settings["loop_function"])
    defined = function is not None
    alternatives = [] if defined else _other_loops(ctx.student, settings["loop_signature"])
    if not callable(function):
        ctx.emit({"kind": "loop", "defined": defined, "callable": False, "alternatives": alternatives})
        return
    counts = _Counts()
    model = _loop_model(ctx)
    params = [p for p in model.parameters() if p.requires_grad]
    _watch_gradients(params, counts)
    loader = _CountingLoader(ctx.loader(training["seed"]), counts)
    # The grader's optimizer and loss, for a loop that takes them; one that makes its own is
    # watched instead (loop_call.watching_own_parts), counted the same way.
    loss_fn = _CountingLoss(counts)
    own_losses = LossHistory()
    optimizer = _counting_sgd(params, training["learning_rate"], counts)
    values = role_values(settings, model, loader, DataLoader(ctx.dataset, batch_size=training["batch_size"]), optimizer=optimizer, loss_fn=loss_fn)
    initial_loss = finite_or_none(mean_loss(model, ctx.dataset, training["batch_size"]))
    error = None
    call = plan_call(function, settings["loop_signature"], settings["loop_call"])
    own_optimizer = makes_own(settings, "optimizer")
    foreign_steps = [0]  # steps of an optimizer the loop made although it was given one

    def count_step() -> None:
        if own_optimizer:
            counts.steps += 1
        else:
            foreign_steps[0] += 1

    def count_zero_grad() -> None:
        counts.zero_grad_calls += 1

    def record_loss(loss: torch.Tensor) -> None:
        counts.loss_calls += 1
        own_losses.add(loss)

    try:
        if call["unfilled"]:
            raise TypeError(f"missing required argument{'s' if len(call['unfilled']) > 1 else ''} {', '.join(map(repr, call['unfilled']))}")
        with watching_own_parts(
            model,
            on_step=count_step,
            on_zero_grad=count_zero_grad if own_optimizer else None,
            on_loss=record_loss if makes_own(settings, "loss_fn") else None,
            besides=optimizer,
        ):
            call_loop(function, call, settings, values)
    except BaseException as exc:
        error = ctx.describe(exc)
    try:
        final_loss = finite_or_none(mean_loss(model, ctx.dataset, training["batch_size"]))
    except BaseException as exc:  # the student's loop may have left the model unusable
        final_loss = None
        error = error or ctx.describe(exc)
    curve = (own_losses if makes_own(settings, "loss_fn") else loss_fn.history).observation()
    seen: LoopRun = {
        "kind": "loop",
        "defined": defined,
        "callable": True,
        "alternatives": alternatives,
        "initial_loss": initial_loss,
        "error": error,
        "call": call,
        "final_loss": final_loss,
        "n_epochs": training["epochs"],
        "batches_per_epoch": len(loader),
        "batches": counts.batches,
        "epochs_started": counts.epochs_started,
        "passes": counts.loader_passes(),
        "backward_cleared": counts.backward_cleared,
        "steps": counts.steps,
        "zero_grad_calls": counts.zero_grad_calls,
        "loss_calls": counts.loss_calls,
        "foreign_steps": foreign_steps[0],
        "losses": curve["losses"],
        "loss_stride": curve["loss_stride"],
    }
    ctx.emit(seen)
