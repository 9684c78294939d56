"""Read and extract one submission in a limited child (stages 1-2 for untrusted text).

A submission's bytes are turned into cells (JSON, nbformat, decoding) and its definitions are
extracted (IPython's transformer, Python's parser) only here, in a child forked by the worker
with a time and memory limit. The parser's own failure modes (RecursionError, MemoryError,
...) are caught per cell by grader/extract.py; this module covers the rest: a child that
crashes, runs out of memory or time while on one cell is run again without that cell, which is
then reported like a cell with a syntax error. So one crafted cell costs that cell, and a file
that cannot be read at all costs that one submission, never the grading host.

Runs in the worker process (grader/isolate/worker.py); never in the grading host.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from grader.isolate.sandbox import ChildLimits, ChildRun, run_in_child

# A child that fails on a cell is run again without it, at most this many times in all.
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class ReadingLimits:
    timeout_s: float  # per attempt
    memory_mb: int
    max_cell_chars: int

    @classmethod
    def from_limits(cls, limits: dict[str, Any]) -> "ReadingLimits":
        """From the assignment's [limits] as the worker receives them."""
        return cls(
            timeout_s=float(limits["read_timeout_s"]),
            memory_mb=int(limits["memory_mb"]),
            max_cell_chars=int(limits["max_cell_kb"]) * 1024,
        )


def submission_request(name: str, raw: bytes, roots: list[str], *, annotate: bool = False) -> dict[str, Any]:
    """What the grading host sends for one submission: the file's name and bytes, untouched.
    With `annotate`, the reading child also renders the notebook with a placeholder after the
    cell defining each root, marked with a nonce drawn here (see notebook_render.py)."""
    request: dict[str, Any] = {"name": name, "data": base64.b64encode(raw).decode("ascii"), "roots": roots}
    if annotate:
        request["annotate"] = {"nonce": secrets.token_hex(16)}
    return request


def read_and_extract(request: dict[str, Any], limits: ReadingLimits) -> dict[str, Any]:
    """The extracted program of a submission as plain data:
    {"kind": "extracted", "units": [...], "notes": [...], "problems": [...]}, or
    {"kind": "invalid", "cause": ...} when the file is not a usable notebook or script. When the
    request asks to annotate, "extracted" also holds "annotated": {"html": ...} or {"error": ...}."""
    try:
        raw = base64.b64decode(request["data"], validate=True)
    except (binascii.Error, KeyError, TypeError, ValueError):
        return {"kind": "invalid", "cause": "the grader received this file damaged; please report this grader bug"}
    skip: dict[str, str] = {}
    run = ChildRun()
    for _ in range(MAX_ATTEMPTS):
        run = run_in_child(_extraction_body(request, raw, limits, skip), ChildLimits(limits.timeout_s, limits.memory_mb))
        outcome = next((o for o in run.observations if o["kind"] in ("extracted", "invalid")), None)
        if outcome is not None:
            if outcome["kind"] == "extracted" and isinstance(request.get("annotate"), dict):
                outcome["annotated"] = _annotation(run, limits)
            return outcome
        culprit = next((o.get("cell") for o in reversed(run.observations) if o["kind"] == "parsing"), None)
        if not isinstance(culprit, str) or culprit in skip:
            break
        skip[culprit] = _why_failed(run, limits)
    return {"kind": "invalid", "cause": f"the grader could not read this file: it {_why_failed(run, limits)}"}


def _why_failed(run: ChildRun, limits: ReadingLimits) -> str:
    """What went wrong in a reading child that gave no result, as the end of "cell 5 ..."."""
    failed = next((o.get("error") for o in run.observations if o["kind"] == "failed"), None)
    if run.timed_out:
        return f"took longer than {limits.timeout_s:g} s to parse"
    if run.limit_exceeded:
        return f"was stopped while being parsed ({run.limit_exceeded})"
    if isinstance(failed, str):
        return f"could not be parsed ({failed[:200]})"
    if run.signal is not None or run.exit_code:
        how = f"signal {run.signal}" if run.signal is not None else f"exit code {run.exit_code}"
        return f"made Python's parser crash ({how}, usually too deeply nested code or not enough memory)"
    return "gave no result when parsed"


def _annotation(run: ChildRun, limits: ReadingLimits) -> dict[str, str]:
    """The rendered notebook the child sent after its extraction result, or why there is none:
    the child may have been stopped while rendering, which costs the page and nothing else."""
    found = next((o for o in run.observations if o["kind"] in ("annotated", "annotation_failed")), None)
    if found is not None and found["kind"] == "annotated" and isinstance(found.get("html"), str):
        return {"html": found["html"]}
    if found is not None:
        return {"error": str(found.get("error"))[:300]}
    if run.timed_out:
        return {"error": f"rendering it took longer than the {limits.timeout_s:g} s limit for reading a submission"}
    if run.limit_exceeded:
        return {"error": f"rendering it was stopped ({run.limit_exceeded})"}
    how = f"signal {run.signal}" if run.signal is not None else f"exit code {run.exit_code}"
    return {"error": f"the renderer crashed ({how})"}


Emit = Callable[[dict[str, Any]], None]


def _extraction_body(request: dict[str, Any], raw: bytes, limits: ReadingLimits, skip: dict[str, str]) -> Callable[[Emit], None]:
    def body(emit: Emit) -> None:
        from grader.errors import SubmissionError
        from grader.extract import extract_definitions
        from grader.load import cells_from_bytes

        name = str(request.get("name", "submission"))
        try:
            cells = cells_from_bytes(Path(name), raw)
        except SubmissionError as exc:
            emit({"kind": "invalid", "cause": exc.cause})
            return
        except Exception as exc:  # the readers' own failure modes on crafted files
            emit({"kind": "invalid", "cause": f"not readable as a notebook or script ({type(exc).__name__})"})
            return
        try:
            program = extract_definitions(
                cells,
                [str(root) for root in request.get("roots", [])],
                max_cell_chars=limits.max_cell_chars,
                skip=skip,
                progress=lambda title: emit({"kind": "parsing", "cell": title}),
            )
        except BaseException as exc:  # blamed on the cell in progress; the supervisor retries without it
            emit({"kind": "failed", "error": f"{type(exc).__name__}: {exc}"[:300]})
            return
        emit(
            {
                "kind": "extracted",
                "units": program.to_json(),
                "notes": program.notes,
                "problems": program.problems,
            }
        )
        annotate = request.get("annotate")
        if isinstance(annotate, dict):  # after the grade's input is out: a failure here costs the page only
            from grader.isolate.notebook_render import annotation_observation

            emit(annotation_observation(Path(name), raw, cells, program.defined_in, str(annotate.get("nonce"))))

    return body
