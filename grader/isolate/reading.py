"""Supervise the reading of one submission in limited children (stages 1-2 for untrusted text).

A submission's bytes are turned into cells and its definitions extracted only in a child forked
by the worker with a time and memory limit (what the child does: grader/child/reading.py). The
parser's own failure modes (RecursionError, MemoryError, ...) are caught per cell by
grader/child/extract.py; this module covers the rest: a child that crashes, runs out of memory
or time while on one cell is run again without that cell, which is then reported like a cell
with a syntax error. So one crafted cell costs that cell, and a file that cannot be read at all
costs that one submission, never the grading host.

Runs in the worker process (grader/isolate/worker.py); never in the grading host.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import cast

from grader.child.reading import read_submission
from grader.isolate.sandbox import ChildLimits, ChildRun, run_in_child
from grader.protocol import Annotation, Extraction, SubmissionRequest, WorkerLimits

# A child that fails on a cell is run again without it, at most this many times in all.
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class ReadingLimits:
    timeout_s: float  # per attempt
    memory_mb: int
    max_cell_chars: int

    @classmethod
    def from_limits(cls, limits: WorkerLimits) -> ReadingLimits:
        """From the assignment's [limits] as the worker receives them."""
        return cls(
            timeout_s=float(limits["read_timeout_s"]),
            memory_mb=int(limits["memory_mb"]),
            max_cell_chars=int(limits["max_cell_kb"]) * 1024,
        )


def read_and_extract(request: SubmissionRequest, limits: ReadingLimits) -> Extraction:
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
        run = run_in_child(read_submission(request, raw, limits.max_cell_chars, skip), ChildLimits(limits.timeout_s, limits.memory_mb))
        outcome = next((o for o in run.observations if o["kind"] in ("extracted", "invalid")), None)
        if outcome is not None:
            if outcome["kind"] == "extracted" and isinstance(request.get("annotate"), dict):
                outcome["annotated"] = _annotation(run, limits)
            return cast(Extraction, outcome)  # the reading child runs the grader's code only
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


def _annotation(run: ChildRun, limits: ReadingLimits) -> Annotation:
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
