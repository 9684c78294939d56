"""One probe group ("net" or "loop") run on a student's program: load the reference helpers the
group may use, then the student's program, then the group's probes, reporting as it goes.

The one sequence every runner of the probes follows: the worker's forked child
(grader/isolate/worker.py) and the benchmark's Jupyter kernel (bench/notebook_way.py).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, Protocol

from grader.child.observe.context import ProbeContext, Report, reporting
from grader.child.observe.cuda_on_cpu import cuda_on_cpu
from grader.child.observe.loop_probe import observe_loop
from grader.child.observe.net_probes import observe_net
from grader.child.observe.program import load_program
from grader.protocol import Unit

Emit = Callable[[dict[str, Any]], None]
# The student's program, loaded: its namespace, the file names of its units (tracebacks are
# traced back to them), and notes on statements that failed.
LoadedProgram = tuple[dict[str, Any], set[str], list[str]]


class TrustedInputs(Protocol):
    """What the grader hands the probes, decoded: never comes from the student."""

    settings: dict[str, Any]
    reference_helpers: dict[str, list[Unit]]  # per group; empty in selfcheck
    loop_model_spec: list[dict[str, Any]] | None
    forward_inputs: Any
    reference_weights: list[Any] | None
    reference_behaviour: dict[str, Any] | None
    dataset: Any


def observe_group(
    group: str, inputs: TrustedInputs, load_student: Callable[[], LoadedProgram], emit: Emit, *, may_ask_for_cuda: bool = True
) -> None:
    """Run `group` on the program `load_student` loads, reporting through `emit`. The reference
    helpers load before the student's program runs, so it cannot tamper with them first. On a
    machine without CUDA, the program's CUDA requests run on the CPU (see cuda_on_cpu.py), unless
    `may_ask_for_cuda` is False: its text names no GPU (`mentions_gpu`), so that costs nothing."""

    report = reporting(emit)

    def report_cuda(request: str) -> None:
        report({"kind": "cuda_on_cpu", "request": request})

    with cuda_on_cpu(report_cuda) if may_ask_for_cuda else nullcontext():
        _observe_group(group, inputs, load_student, report)


def _observe_group(group: str, inputs: TrustedInputs, load_student: Callable[[], LoadedProgram], report: Report) -> None:
    reference = None
    helpers = inputs.reference_helpers.get(group)
    if helpers:
        reference, notes = load_program(helpers, "__reference__")
        if notes:
            report({"kind": "reference_failed", "notes": notes})
            return
    student, student_files, notes = load_student()
    report({"kind": "program", "notes": notes})
    ctx = ProbeContext(
        settings=inputs.settings,
        student=student,
        student_files=student_files,
        reference=reference,
        forward_inputs=inputs.forward_inputs,
        reference_weights=inputs.reference_weights,
        reference_behaviour=inputs.reference_behaviour,
        loop_model_spec=inputs.loop_model_spec,
        dataset=inputs.dataset,
        emit=report,
    )
    (observe_net if group == "net" else observe_loop)(ctx)
    report({"kind": "done"})


def load_units(units: list[Unit], module_name: str = "__submission__") -> Callable[[], LoadedProgram]:
    """`load_student` for an extracted program (units of source)."""

    def load() -> LoadedProgram:
        namespace, notes = load_program(units, module_name)
        return namespace, {u["filename"] for u in units}, notes

    return load
