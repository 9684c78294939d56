"""Observe the student's network: build it, trace its layers, run it with given weights, train it.

Each observation is emitted as soon as it is made, so a later hang or crash does not lose it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from grader.child.observe.context import (
    LossHistory,
    ProbeContext,
    RecordingCrossEntropy,
    encode_tensor,
    finite_or_none,
    mean_loss,
    seed_everything,
    shape_of,
)
from grader.child.observe.loop_call import call_loop, makes_own, plan_call, role_values, watching_own_parts
from grader.child.observe.operations import digest, record_operations
from grader.child.observe.portable_dropout import PortableDropout
from grader.observations import DIGEST_RTOL, digests_agree
from grader.protocol import (
    MAX_ALTERNATIVES,
    MAX_GRADIENTS,
    MAX_SHARED,
    MAX_SHARED_PATHS,
    Digest,
    ForwardObservation,
    InstantiateObservation,
    Layer,
    LayerCall,
    Parameter,
    SharedModule,
    StructureObservation,
    TraceObservation,
    TrainObservation,
)
from grader.wire import decode_array

_JSON_SCALARS = (int, float, str, bool, type(None))


def observe_net(ctx: ProbeContext) -> None:
    settings = ctx.settings
    name = settings["model_class"]
    net_class = ctx.student.get(name)
    model = _instantiate(ctx, name, net_class)
    if model is None:
        return
    assert net_class is not None  # it made the model
    ctx.emit(_structure(model))
    traces: dict[int, TraceObservation] = {}
    batches = sorted(set(settings["shape_batch_sizes"]) | {settings["forward"]["batch_size"]})
    for batch in batches:
        seed_everything(settings["forward"]["seed"] + batch)
        sample = torch.randn(batch, *settings["input_shape"])
        traces[batch] = _trace(ctx, model, sample)
        ctx.emit(traces[batch])
    forward = _forward(ctx, model, traces)
    ctx.emit(forward)
    # Operation by operation, with the weights `_forward` left in place: the reference's when
    # they loaded, so each operation's output is comparable with the reference's own run.
    ctx.emit(record_operations(model, ctx.forward_inputs.clone(), digests=forward["loaded"], describe=ctx.describe))
    ctx.emit(_train(ctx, net_class, equivalent=_behaves_like_reference(ctx, forward)))


def _instantiate(ctx: ProbeContext, name: str, net_class: Any) -> nn.Module | None:
    is_class = isinstance(net_class, type)
    seen: InstantiateObservation = {
        "kind": "instantiate",
        "defined": net_class is not None,
        "is_class": is_class,
        "is_module_class": is_class and issubclass(net_class, nn.Module),
        "error": None,
        "alternatives": [] if net_class is not None else other_module_classes(ctx.student),
    }
    if not seen["is_module_class"]:
        ctx.emit(seen)
        return None
    seed_everything(ctx.settings["training"]["seed"])
    try:
        model = net_class()
    except BaseException as exc:
        seen["error"] = ctx.describe(exc)
        ctx.emit(seen)
        return None
    ctx.emit(seen)
    return model


def other_module_classes(namespace: dict[str, Any]) -> list[str]:
    """The nn.Module subclasses the student's own program defines (not imported ones), for
    saying "class Model(nn.Module) was found" when the graded name is missing."""
    own = namespace.get("__name__")
    found = [
        name
        for name, value in namespace.items()
        if isinstance(value, type) and issubclass(value, nn.Module) and getattr(value, "__module__", None) == own
    ]
    return [name[:80] for name in found[:MAX_ALTERNATIVES]]


def _hyperparameters(module: nn.Module) -> dict[str, Any]:
    """The constructor settings torch itself declares constant for this layer type."""
    found: dict[str, Any] = {}
    for key in getattr(type(module), "__constants__", []):
        value = getattr(module, key, None)
        if isinstance(value, (tuple, list)) and all(isinstance(v, _JSON_SCALARS) for v in value):
            found[key] = list(value)
        elif isinstance(value, _JSON_SCALARS):
            found[key] = value
    if "bias" in module._parameters or hasattr(module, "bias"):
        found["bias"] = getattr(module, "bias", None) is not None
    return found


def _layer(path: str, module: nn.Module) -> Layer:
    own = list(module.named_parameters(recurse=False))
    return {
        "path": path,  # "" when the network itself holds parameters directly
        "type": type(module).__name__,
        "hyper": _hyperparameters(module),
        "params": {n: list(p.shape) for n, p in own},
        "trainable": sum(p.numel() for _, p in own if p.requires_grad),
    }


def _parametrized(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(path, m) for path, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]


def _structure(model: nn.Module) -> StructureObservation:
    return {
        "kind": "structure",
        "layers": [_layer(path, m) for path, m in _parametrized(model)],
        "parameters": [{"name": n, "shape": list(p.shape), "trainable": p.requires_grad} for n, p in model.named_parameters()],
        "total_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "shared": _shared_modules(model),
    }


# Paths walked looking for shared modules: a module shared at every level of a deep tree has
# exponentially many; the first ones found are enough to name it.
_MAX_PATHS_WALKED = 20_000


def _shared_modules(model: nn.Module) -> list[SharedModule]:
    """The modules with parameters that `model` holds under more than one path: one object
    repeated (`nn.Sequential(*(n * [ResBlock(c)]))`), or one layer given two names. Only the
    outermost: the parts of a shared block are shared as well, and say nothing more."""
    paths: dict[int, list[str]] = {}
    modules: dict[int, nn.Module] = {}
    for path, module in itertools.islice(model.named_modules(remove_duplicate=False), _MAX_PATHS_WALKED):
        paths.setdefault(id(module), []).append(path)
        modules[id(module)] = module
    found: list[SharedModule] = []
    outer: list[str] = []
    for key, where in paths.items():  # parents first: named_modules walks the tree top down
        module = modules[key]
        if len(where) < 2 or not any(True for _ in module.parameters()):
            continue
        if all(any(path.startswith(f"{o}.") for o in outer) for path in where):
            continue
        outer += where
        found.append(
            {
                "paths": [path[:200] for path in where[:MAX_SHARED_PATHS]],
                "count": len(where),
                "type": type(module).__name__[:80],
                "trainable": sum(p.numel() for p in module.parameters() if p.requires_grad),
            }
        )
    return found[:MAX_SHARED]


def _trace(ctx: ProbeContext, model: nn.Module, sample: torch.Tensor) -> TraceObservation:
    """Run forward once with hooks on every parametrized layer; record calls in execution order."""
    calls: list[LayerCall] = []

    def record(path: str, module: nn.Module, _inputs: Any, output: Any) -> None:
        calls.append({**_layer(path, module), "output_shape": shape_of(output)})

    handles = [m.register_forward_hook(partial(record, path)) for path, m in _parametrized(model)]
    result: TraceObservation = {"kind": "trace", "batch": len(sample), "ok": False, "error": None, "calls": calls, "output_shape": None}
    model.eval()
    try:
        with torch.no_grad():
            output = model(sample)
        result["output_shape"] = shape_of(output)
        result["ok"] = result["output_shape"] is not None
        if not result["ok"]:
            result["error"] = f"forward returned {type(output).__name__}, not a tensor"
    except BaseException as exc:
        result["error"] = ctx.describe(exc)
    finally:
        for handle in handles:
            handle.remove()
    return result


def _forward_order(model: nn.Module, traces: dict[int, TraceObservation], batch: int) -> list[tuple[str, nn.Parameter]]:
    """Parameters in the order the forward pass uses their layers, once per call, then any
    others. A layer that runs twice (one block object repeated in an nn.Sequential) lists its
    parameters twice: the reference's shared block then lends each of a student's separate
    blocks a copy of its weights, and a student's shared block meets each of the reference's
    separate blocks (where the host can tell that they differ)."""
    preferred = [traces[batch]] + [t for b, t in sorted(traces.items()) if b != batch]
    best = max(preferred, key=lambda t: (t["ok"], len(t["calls"])))
    named = dict(model.named_parameters())
    order: list[str] = []
    for call in best["calls"]:
        for pname in call["params"]:
            full = f"{call['path']}.{pname}" if call["path"] else pname
            if full in named:
                order.append(full)
    if len(order) > MAX_GRADIENTS:  # a layer run in a long loop: each parameter once, as it first runs
        order = list(dict.fromkeys(order))
    used = set(order)
    order += [n for n in named if n not in used]
    return [(n, named[n]) for n in order]


def _forward(ctx: ProbeContext, model: nn.Module, traces: dict[int, TraceObservation]) -> ForwardObservation:
    batch = ctx.settings["forward"]["batch_size"]
    parameters = _forward_order(model, traces, batch)
    state = _with_buffers(model, parameters)
    seen: ForwardObservation = {
        "kind": "forward",
        "order": _described(state, len(parameters)),
        "loaded": False,
        "output": None,
        "weights": None,
        "error": None,
        "gradients": [],
        "train_output": None,
        "train_error": None,
    }
    weights = ctx.reference_weights
    if weights is None:
        _draw_norm_layers(model, ctx.settings["forward"]["seed"])
        seen["weights"] = [encode_tensor(t) for _, t in state]
    else:
        loadable = _loadable(weights, state, len(parameters))
        if loadable is None:
            return seen
        seen["order"] = _described(loadable, len(parameters))
        with torch.no_grad():
            for w, (_, t) in zip(weights, loadable):
                t.copy_(w)
    seen["loaded"] = True
    model.eval()
    try:
        with torch.no_grad():
            output = model(ctx.forward_inputs.clone())
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"forward returned {type(output).__name__}, not a tensor")
        seen["output"] = encode_tensor(output)
    except BaseException as exc:
        seen["error"] = ctx.describe(exc)
        return seen
    try:
        seen["gradients"] = _gradients(model, ctx.forward_inputs.clone(), [p for _, p in parameters])
    except BaseException:  # no gradients to compare: the Net is simply trained (see _train)
        seen["gradients"] = []
    try:
        seen["train_output"] = encode_tensor(_train_mode_output(model, ctx.forward_inputs.clone(), ctx.settings["forward"]["seed"]))
    except BaseException as exc:
        seen["train_error"] = ctx.describe(exc)
    return seen


# Layers whose parameters and running statistics start where they change almost nothing (weight 1,
# bias 0, running mean 0, running variance 1): drawn away from there in the reference (below).
_NORM_LAYERS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
    nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm,
)  # fmt: skip


def _draw_norm_layers(model: nn.Module, seed: int) -> None:
    """Give the reference's norm layers weights and running statistics that matter. Freshly
    built, a BatchNorm in eval mode is nearly the identity, so one applied in the wrong place
    (after tanh instead of before) would still give the reference's output; with these values it
    does not. Seeded, so the same reference always gets the same values; conv and linear weights
    are random already and stay as they are."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(tensor: torch.Tensor, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(tensor.shape, generator=generator)

    def normal(tensor: torch.Tensor, std: float) -> torch.Tensor:
        return std * torch.randn(tensor.shape, generator=generator)

    draws = {
        "weight": lambda t: uniform(t, 0.5, 1.5),
        "bias": lambda t: normal(t, 0.5),
        "running_mean": lambda t: normal(t, 0.5),
        "running_var": lambda t: uniform(t, 0.5, 2.0),
    }
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, _NORM_LAYERS):
                continue
            for name, draw in draws.items():
                tensor = getattr(module, name, None)
                if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                    tensor.copy_(draw(tensor))


def _with_buffers(model: nn.Module, parameters: list[tuple[str, nn.Parameter]]) -> list[tuple[str, torch.Tensor]]:
    """`parameters` (in forward order), then the floating-point buffers (BatchNorm's running
    mean and variance) of their layers in the same order, then any other layer's: what the
    reference's weights load into. Integer buffers (num_batches_tracked) are left out."""
    modules = dict(model.named_modules())
    runs = _layer_runs(parameters)
    buffers: list[tuple[str, torch.Tensor]] = []
    seen: set[int] = set()
    # Once per run, like the parameters (a shared block's statistics as often as it runs, so a
    # Net with separate blocks takes a copy each); then the layers that did not run, once.
    ran = set(runs)
    for path in [*runs, *(path for path in modules if path not in ran)]:
        module = modules.get(path)
        for name, buffer in module.named_buffers(recurse=False) if module is not None else ():
            if buffer is not None and buffer.is_floating_point() and (path in ran or id(buffer) not in seen):
                seen.add(id(buffer))
                buffers.append((f"{path}.{name}" if path else name, buffer))
    return [*parameters, *buffers]


def _layer_runs(parameters: list[tuple[str, nn.Parameter]]) -> list[str]:
    """The layers' paths, once per run, from the parameters in forward order (which list a
    layer's parameters once per run, _forward_order): a new run begins where the path changes or
    a parameter comes again."""
    runs: list[str] = []
    names_in_run: set[str] = set()
    for name, _ in parameters:
        path, _, own = name.rpartition(".")
        if not runs or runs[-1] != path or own in names_in_run:
            runs.append(path)
            names_in_run = set()
        names_in_run.add(own)
    return runs


def _loadable(weights: list[torch.Tensor], state: list[tuple[str, torch.Tensor]], n_parameters: int) -> list[tuple[str, torch.Tensor]] | None:
    """The tensors the reference's weights load into, one for one with the same shapes: the
    parameters and buffers; or the parameters alone, when the reference has no buffers and the
    Net has some of its own. None when they do not fit."""
    for candidate in (state, state[:n_parameters]):
        if len(weights) == len(candidate) and all(tuple(w.shape) == tuple(t.shape) for w, (_, t) in zip(weights, candidate)):
            return candidate
    return None


def _described(state: list[tuple[str, torch.Tensor]], n_parameters: int) -> list[Parameter]:
    described: list[Parameter] = []
    for i, (name, tensor) in enumerate(state):
        entry: Parameter = {"name": name, "shape": list(tensor.shape)}
        if i >= n_parameters:
            entry["buffer"] = True
        described.append(entry)
    return described


def _train_mode_output(model: nn.Module, inputs: torch.Tensor, seed: int) -> torch.Tensor:
    """The output in training mode (dropout on, BatchNorm on the batch's statistics), with the
    dropout masks drawn from `seed` the same way on every machine (portable_dropout.py): the
    same dropout calls, in the same order on the same shapes, draw the same masks in the
    reference and the student's Net. BatchNorm updates its running statistics in training mode:
    every buffer is put back after, and the Net back in eval mode, so the probes that follow see
    the weights they were given."""
    saved = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    model.train()
    try:
        torch.manual_seed(seed)  # for any other randomness the forward draws
        with torch.no_grad(), PortableDropout(seed):
            output = model(inputs)
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
        model.eval()
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"forward returned {type(output).__name__}, not a tensor")
    return output


def _gradients(model: nn.Module, inputs: torch.Tensor, parameters: list[nn.Parameter]) -> list[Digest]:
    """A digest of each parameter's gradient (forward order) of the cross-entropy on `inputs`
    with labels 0, 1, 2, ... in turn: equal to the reference's when the Net, with the reference
    weights, computes what the reference does and lets gradients flow the same way."""
    model.eval()  # deterministic: dropout off, batch norm on its running statistics
    model.zero_grad(set_to_none=True)
    output = model(inputs)
    labels = torch.arange(len(inputs)) % output.shape[-1]
    nn.functional.cross_entropy(output, labels).backward()
    return [digest(p.grad) if p.grad is not None else [] for p in parameters]


def _behaves_like_reference(ctx: ProbeContext, forward: ForwardObservation) -> bool:
    """True when, with the reference weights, the Net's output (in eval and in training mode) and
    every gradient equal the reference's: it then trains exactly as the reference does from the same weights, and net.trains
    need not spend a training run on it. Decided with half the tolerance grader/compare uses, so
    that the grader's own check of the same numbers always agrees."""
    behaviour = ctx.reference_behaviour
    if behaviour is None or not forward["loaded"] or forward["output"] is None or not forward["gradients"]:
        return False
    tolerance = ctx.settings["forward"]

    def matches(mine: Any, want: Any, what: str) -> bool:
        if mine is None or want is None:
            return mine is None and want is None
        output = decode_array(mine, what=what)
        return output.shape == want.shape and bool(np.allclose(output, want, atol=tolerance["atol"] / 2, rtol=tolerance["rtol"] / 2))

    # In training mode too: a dropout the reference lacks, or one it has, changes how the Net trains.
    if not matches(forward["output"], behaviour["output"], "forward output") or not matches(
        forward["train_output"], behaviour.get("train_output"), "training-mode output"
    ):
        return False
    theirs = behaviour["gradients"]
    return len(theirs) == len(forward["gradients"]) and all(
        digests_agree(mine, want, DIGEST_RTOL / 2) for mine, want in zip(forward["gradients"], theirs)
    )


def standard_training_loop(n_epochs: int, optimizer: Any, model: nn.Module, loss_fn: Any, train_loader: Any) -> None:
    """The textbook loop, used when no reference training_loop is at hand (selfcheck)."""
    for _ in range(n_epochs):
        for images, labels in train_loader:
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def _train(ctx: ProbeContext, net_class: Callable[[], Any], *, equivalent: bool) -> TrainObservation:
    """Train a fresh student Net with the reference's (or the standard) loop; record the losses:
    over the whole set before and after, and of every batch on the way (the loss curve). A Net
    that behaves like the reference (`equivalent`) is not trained: it is credited with the
    reference's own training run."""
    training = ctx.settings["training"]
    seen: TrainObservation = {
        "kind": "train", "initial_loss": None, "final_loss": None, "error": None, "seconds": None, "equivalent": equivalent,
        "losses": [], "loss_stride": 1,
    }  # fmt: skip
    if equivalent:
        return seen
    loss_fn = RecordingCrossEntropy()
    loop_name = ctx.settings["loop_function"]
    reference_loop = ctx.reference.get(loop_name) if ctx.reference is not None and loop_name else None
    own_losses = LossHistory()
    started = time.perf_counter()
    try:
        seed_everything(training["seed"])
        model = net_class()
        seen["initial_loss"] = finite_or_none(mean_loss(model, ctx.dataset, training["batch_size"]))
        optimizer = torch.optim.SGD(model.parameters(), lr=training["learning_rate"])
        loader = ctx.loader(training["seed"])
        if callable(reference_loop):  # called as it is written, through the assignment's roles
            values = role_values(ctx.settings, model, loader, DataLoader(ctx.dataset, batch_size=training["batch_size"]), optimizer=optimizer, loss_fn=loss_fn)
            call = plan_call(reference_loop, ctx.settings["loop_signature"], "keyword")
            with watching_own_parts(model, on_loss=own_losses.add if makes_own(ctx.settings, "loss_fn") else None):
                call_loop(reference_loop, call, ctx.settings, values)
        else:
            standard_training_loop(training["epochs"], optimizer, model, loss_fn, loader)
        seen["final_loss"] = finite_or_none(mean_loss(model, ctx.dataset, training["batch_size"]))
    except BaseException as exc:
        seen["error"] = ctx.describe(exc)
    seen["seconds"] = time.perf_counter() - started
    history = own_losses if callable(reference_loop) and makes_own(ctx.settings, "loss_fn") else loss_fn.history
    curve = history.observation()
    seen["losses"], seen["loss_stride"] = curve["losses"], curve["loss_stride"]
    return seen

