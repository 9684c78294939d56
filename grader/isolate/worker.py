"""The worker process: imports torch once, then forks a limited child per probe group.

Run as `python -m grader.isolate.worker` by grader.isolate.client. It speaks JSON lines on
stdin/stdout with the grader process. The worker itself never executes student code: only the
forked children do (see sandbox.py), so one submission cannot leave state for the next.

The messages, in and out, are the types of grader/protocol.py: `configure` (with a
`rehearsal`, see _rehearse), `observe` (trusted units), `grade` (a submission's bytes, read and
extracted in a child first: grader/isolate/reading.py), `read` (reading and extraction only) and
`shutdown`; each is answered with its reply, or with `error`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, cast

from grader.isolate import lazy_dynamo
from grader.isolate.reading import ReadingLimits, read_and_extract
from grader.isolate.sandbox import ChildLimits, ChildRun, become_subreaper, claim_child_uid, die_with_parent, prepare_child_layers, run_in_child
from grader.protocol import (
    ChildReport,
    ConfigureRequest,
    ErrorReply,
    GradedReply,
    GradeRequest,
    ObservedReply,
    ObserveRequest,
    ReadReply,
    ReadRequest,
    Reply,
    Request,
    Unit,
)


class _State:
    """Trusted inputs shared by every child, prepared once in the worker before forking."""

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}  # the probe settings: empty until configured
        self.reference_helpers: dict[str, list[Unit]] = {}  # per group; empty in selfcheck
        self.loop_model_spec: list[dict[str, Any]] | None = None
        self.forward_inputs: Any = None
        self.reference_weights: list[Any] | None = None
        self.reference_behaviour: dict[str, Any] | None = None
        self.role = "all"  # what this process is for: see client.ROLES
        self.packages: list[str] = []  # the assignment's display packages ([environment] packages)
        self.dataset: Any = None
        self.threads = 1  # torch threads in each child

    def configure(self, message: ConfigureRequest) -> None:
        import torch

        from grader.child.observe.data import build_dataset
        from grader.wire import decode_array

        if "settings" in message:
            self.settings = message["settings"]
            s = self.settings
            try:
                self.dataset = build_dataset(s["data"], s["input_shape"], s["num_classes"])
            except Exception as exc:
                where = s["data"].get("root") or "generated data"
                detail = str(exc).replace("You can use download=True to download it", "the grader never downloads data")
                raise RuntimeError(f"could not load the training data ({s['data']['kind']}, {where}): {detail}") from exc
        if "packages" in message:
            self.packages = list(message["packages"])  # imported when a program names them: see _observe
        if "reference_helpers" in message:
            self.reference_helpers = message["reference_helpers"]
        if "loop_model_spec" in message:
            self.loop_model_spec = message["loop_model_spec"]
        if "forward_inputs" in message:
            self.forward_inputs = torch.from_numpy(decode_array(message["forward_inputs"]).copy())
        if "reference_weights" in message:
            weights = message["reference_weights"]
            self.reference_weights = None if weights is None else [torch.from_numpy(decode_array(w).copy()) for w in weights]
        if "reference_behaviour" in message:
            behaviour = message["reference_behaviour"]
            self.reference_behaviour = None if behaviour is None else {
                "output": decode_array(behaviour["output"], what="reference output"),
                "gradients": behaviour["gradients"],
                "train_output": None if behaviour["train_output"] is None else decode_array(behaviour["train_output"], what="reference output"),
            }
        if "rehearsal" in message:
            _rehearse(self, message["rehearsal"])


def _rehearse(state: _State, units: list[Unit]) -> None:
    """Run every probe group once in this process on a trusted program (the reference), and
    throw the observations away.

    Without this, every forked child pays again for what torch does on first use in a process
    (kernel and primitive set-up for these layer shapes, autograd and optimizer paths, the
    DataLoader): about 0.3 s of CPU per submission on a 2-core machine. Children forked after a
    rehearsal inherit all of it warm. Student code never runs here, and every probe seeds its own
    random state, so nothing a child observes depends on the rehearsal. One torch thread, as
    always in the worker: an OpenMP pool started before fork() deadlocks the children.
    """
    threads, state.threads = state.threads, 1
    try:
        _prepare_packages_for(state, units)  # as _observe does before it forks
        for group in ("net", "loop"):
            _probe_body(state, group, units, module_name="__rehearsal__")(lambda observation: None)
    except Exception:  # a rehearsal only saves time; grading must not depend on it
        traceback.print_exc()
    finally:
        state.threads = threads


def _probe_body(
    state: _State, group: str, units: list[Unit], *, module_name: str = "__submission__"
) -> Callable[[Callable[[dict[str, Any]], None]], None]:
    """What the forked child does: run the programs, then the group's probes."""

    def body(emit: Callable[[dict[str, Any]], None]) -> None:
        import torch

        from grader.child.observe.cuda_on_cpu import mentions_gpu
        from grader.child.observe.group import load_units, observe_group

        assert state.settings, "observe before configure"
        torch.set_num_threads(state.threads)
        sources = (unit["source"] for unit in units)
        observe_group(group, state, load_units(units, module_name), emit, may_ask_for_cuda=mentions_gpu(sources))

    return body


def _prepare_packages_for(state: _State, units: list[Unit]) -> None:
    """Import the display packages `units` name (matplotlib, tqdm), once per worker and before it
    forks, so no child pays the import (about a second for matplotlib) and a worker whose programs
    never plot never pays it at all. A missing package is the student's message, and doctor's."""
    from grader.child.observe.headless import packages_used, prepare_packages

    prepare_packages(packages_used(state.packages, [unit["source"] for unit in units]))


def _observe(state: _State, message: ObserveRequest) -> ObservedReply:
    _prepare_packages_for(state, message["units"])
    limits = message["limits"]
    submission_deadline = time.monotonic() + limits["timeout_s"]
    runs: dict[str, ChildReport] = {}
    for group in message["groups"]:
        remaining = submission_deadline - time.monotonic()
        if remaining <= 0:
            runs[group] = ChildRun(timed_out=True).report(limit_s=0.0)
            continue
        child_limits = ChildLimits(
            timeout_s=min(limits["check_timeout_s"], remaining),
            memory_mb=limits["memory_mb"],
            max_processes=limits["max_processes"],
        )
        run = run_in_child(_probe_body(state, group, message["units"]), child_limits)
        runs[group] = run.report(limit_s=child_limits.timeout_s)
    return {"op": "observed", "groups": runs}


def _grade(state: _State, message: GradeRequest) -> GradedReply:
    """Read and extract the submission in a child, then observe what it defines."""
    limits = message["limits"]
    if message["submission"].get("annotate"):
        _warm_up_renderer()
    extraction = read_and_extract(message["submission"], ReadingLimits.from_limits(limits))
    groups: dict[str, ChildReport] = {}
    if extraction["kind"] == "extracted":
        observe: ObserveRequest = {"op": "observe", "units": extraction["units"], "groups": message["groups"], "limits": limits}
        groups = _observe(state, observe)["groups"]
    return {"op": "graded", "extraction": extraction, "groups": groups}


def _warm_up(role: str) -> None:
    """Import and exercise torch once, single-threaded, so forked children start fast (kernel and
    autograd set-up for the first step); and IPython's transformer for reading children."""
    if role != "checks":  # what the reading children parse with
        import IPython.core.inputtransformer2  # noqa: F401
        import nbformat  # noqa: F401

        import grader.child.extract
    if role == "reader":
        return
    import torch
    from torch import nn

    torch.set_num_threads(1)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(torch.zeros(2, 1, 4, 4)), torch.tensor([0, 1]))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    import torch.utils.data

    import grader.child.observe.group  # noqa: F401  (and with it the context and both probes)


def _warm_up_renderer() -> None:
    """Once per worker, and only for runs that annotate notebooks (not selfcheck): import nbconvert
    and compile its templates on a trusted notebook, so each reading child renders in about 0.1 s
    instead of paying 1-3 s of imports and template compilation."""
    from grader.child.notebook_render import warm_up

    try:
        warm_up()
    except Exception:  # only saves time: the child renders (or says why it cannot) all the same
        traceback.print_exc()


def main() -> None:
    die_with_parent()
    become_subreaper()  # what a child starts and detaches is still found and killed when its run ends
    child_uid = claim_child_uid()  # as root without bubblewrap, when the host asks: children drop to a uid of this worker's own
    prepare_child_layers()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the grader's to handle
    # Keep the protocol on a private copy of stdout; anything printed by libraries goes to stderr.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    # The worker itself stays single-threaded: an OpenMP pool started before fork() deadlocks
    # the children. Each child starts its own pool of `threads` (see _probe_body).
    role = sys.argv[sys.argv.index("--role") + 1] if "--role" in sys.argv else "all"
    if role != "reader":
        lazy_dynamo.install()  # torch's first optimizer step would import it: 1-2 s for nothing
    _warm_up(role)
    state = _State()
    state.role = role
    state.threads = int(os.environ.get("GRADER_TORCH_THREADS", "1"))
    protocol.write(json.dumps({"op": "ready", "pid": os.getpid(), "child_uid": child_uid}) + "\n")
    for line in sys.stdin:
        try:
            message = cast(Request, json.loads(line))  # from the grading host: trusted
            if message["op"] == "shutdown":
                break
            reply = _answer(state, message)
        except Exception as exc:  # report and keep serving; the grader decides what to do
            traceback.print_exc()  # into the worker's log, which the grader shows if the worker dies
            failed: ErrorReply = {"op": "error", "message": str(exc) or type(exc).__name__}
            reply = failed
        protocol.write(json.dumps(reply) + "\n")


def _answer(state: _State, message: Request) -> Reply:
    if message["op"] == "configure":
        state.configure(message)
        return {"op": "configured"}
    if message["op"] == "observe":
        return _observe(state, message)
    if message["op"] == "grade":
        return _grade(state, message)
    if message["op"] == "read":
        return _read(message)
    return {"op": "error", "message": f"unknown op {message['op']!r}"}


def _read(message: ReadRequest) -> ReadReply:
    return {"op": "read", "extraction": read_and_extract(message["submission"], ReadingLimits.from_limits(message["limits"]))}


if __name__ == "__main__":
    main()
