"""The messages the grading host sends to a worker about one submission or one assignment.

Both sides import this module: the host builds the messages here, and the worker reads them.
What a child sends back is validated in grader/observations.py; arrays travel as in
grader/wire.py (JSON, never pickle).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import asdict
from typing import Any

from grader.assignment import Assignment


def submission_request(name: str, raw: bytes, roots: list[str], *, annotate: bool = False) -> dict[str, Any]:
    """What the grading host sends for one submission: the file's name and bytes, untouched.
    With `annotate`, the reading child also renders the notebook with a placeholder after the
    cell defining each root, marked with a nonce drawn here (see grader/child/notebook_render.py)."""
    request: dict[str, Any] = {"name": name, "data": base64.b64encode(raw).decode("ascii"), "roots": roots}
    if annotate:
        request["annotate"] = {"nonce": secrets.token_hex(16)}
    return request


# The rendered notebook may be at most this long; the child cuts outputs to stay within it.
MAX_NOTEBOOK_HTML_CHARS = 2_000_000


def findings_placeholder(nonce: str, name: str) -> str:
    """The comment the reading child puts after the cell defining `name`, where the host puts
    the findings box of the checks that grade it (grader/report/annotated_notebook.py)."""
    return f"<!--grader-findings:{nonce}:{name}-->"


def worker_limits(assignment: Assignment) -> dict[str, Any]:
    """The assignment's [limits] as a worker receives them with every request."""
    return asdict(assignment.limits)
