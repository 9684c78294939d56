"""The messages between the grading host, its workers and their children, as types.

One place for the contract: the host builds requests with these types (grader/isolate/client.py),
the worker reads them (grader/isolate/worker.py) and answers with the replies below, each
checked on arrival by `parse_reply`. What a child observed travels inside a reply as a
`ChildReport`; each observation is validated on the host before any comparison reads it
(grader/observations.py). Arrays travel as in grader/wire.py (JSON, never pickle).

A new probe is a field here, a probe in grader/child/observe/ and a comparison in grader/compare/.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict, cast

from grader.errors import WorkerError

if TYPE_CHECKING:
    from grader.assignment import Assignment

# ---------------------------------------------------------------- host -> worker


class Unit(TypedDict):
    """One top-level statement of an extracted program (grader/child/extract.py ProgramUnit)."""

    source: str
    filename: str  # "cell 4", or the script's file name
    line: int  # its first line within `filename`


class AnnotateRequest(TypedDict):
    nonce: str  # marks the findings placeholders of this one rendering


class SubmissionRequest(TypedDict):
    """A submission as the host sends it: the file's name and bytes, untouched."""

    name: str
    data: str  # base64 of the file's bytes
    roots: list[str]  # the names the checks grade (`Net`, `training_loop`)
    annotate: NotRequired[AnnotateRequest]  # also render the notebook for the annotated page


class WorkerLimits(TypedDict):
    """The assignment's [limits] (grader/assignment.py Limits), sent with every request."""

    timeout_s: float
    check_timeout_s: float
    memory_mb: int
    max_processes: int
    read_timeout_s: float
    max_submission_mb: int
    max_cell_kb: int


class ReferenceBehaviour(TypedDict):
    """The reference Net's output and gradient digests with its own weights, so a probe can
    recognise a student's Net that behaves the same (grader/child/observe/net_probes.py)."""

    output: dict[str, Any]  # an encoded array (grader/wire.py)
    gradients: list[Any]  # a digest per parameter (grader/observations.py digests_agree)


class Configuration(TypedDict, total=False):
    """Trusted inputs every child of a worker gets; each `configure` message carries some of them."""

    settings: dict[str, Any]  # Assignment.probe_settings()
    packages: list[str]  # the display packages a program may import
    reference_helpers: dict[str, list[Unit]]  # per check group: what it may use of the reference
    loop_model_spec: list[dict[str, Any]]  # the stand-in model the loop check trains
    forward_inputs: dict[str, Any]  # an encoded array
    reference_weights: list[dict[str, Any]] | None  # encoded arrays, in forward order
    reference_behaviour: ReferenceBehaviour | None
    rehearsal: list[Unit]  # a trusted program run once in the worker to warm torch up


class ConfigureRequest(Configuration):
    op: Literal["configure"]


class ObserveRequest(TypedDict):
    """Run the check groups on a trusted, already extracted program (the reference)."""

    op: Literal["observe"]
    units: list[Unit]
    groups: list[str]
    limits: WorkerLimits


class GradeRequest(TypedDict):
    """Read and extract a submission in a child, then run the check groups on what it defines."""

    op: Literal["grade"]
    submission: SubmissionRequest
    groups: list[str]
    limits: WorkerLimits


class ReadRequest(TypedDict):
    """Read and extract a submission in a child, nothing more."""

    op: Literal["read"]
    submission: SubmissionRequest
    limits: WorkerLimits


class ShutdownRequest(TypedDict):
    op: Literal["shutdown"]


Request = ConfigureRequest | ObserveRequest | GradeRequest | ReadRequest | ShutdownRequest

# ---------------------------------------------------------------- worker -> host


class ChildReport(TypedDict):
    """What came back from one child (grader/isolate/sandbox.py ChildRun): its observations,
    still to be validated, and how it ended."""

    observations: list[Any]
    timed_out: bool
    limit_exceeded: str | None  # which limit ended the child, other than time
    exit_code: int | None
    signal: int | None
    seconds: float
    stdout: str
    stderr: str
    protocol_error: str | None
    limit_s: NotRequired[float]  # the time the child was given


class Annotation(TypedDict, total=False):
    """The annotated notebook's HTML, or why there is none (costs the page, never the grade)."""

    html: str
    error: str


class Extracted(TypedDict):
    """A submission read and extracted: the program's kept statements and the student's notes."""

    kind: Literal["extracted"]
    units: list[Unit]
    notes: list[str]
    problems: list[str]
    annotated: NotRequired[Annotation]


class Unreadable(TypedDict):
    """A file that is no usable notebook or script; `cause` says why, for the student."""

    kind: Literal["invalid"]
    cause: str


Extraction = Extracted | Unreadable


class Observed(TypedDict):
    """Everything the workers found for one submission: its extraction (None for a trusted
    program observed as it is) and one report per check group."""

    extraction: Extraction | None
    groups: dict[str, ChildReport]


class ReadyReply(TypedDict):
    op: Literal["ready"]
    pid: int


class ConfiguredReply(TypedDict):
    op: Literal["configured"]


class ObservedReply(TypedDict):
    op: Literal["observed"]
    groups: dict[str, ChildReport]


class GradedReply(TypedDict):
    op: Literal["graded"]
    extraction: Extraction
    groups: dict[str, ChildReport]


class ReadReply(TypedDict):
    op: Literal["read"]
    extraction: Extraction


class ErrorReply(TypedDict):
    op: Literal["error"]
    message: str


Reply = ReadyReply | ConfiguredReply | ObservedReply | GradedReply | ReadReply | ErrorReply

# The fields each reply must carry, with their JSON types: checked on arrival, so a reply that
# does not fit is a WorkerError naming the field, never a KeyError deep in the grading.
_REPLY_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "ready": {"pid": int},
    "configured": {},
    "observed": {"groups": dict},
    "graded": {"extraction": dict, "groups": dict},
    "read": {"extraction": dict},
    "error": {"message": str},
}


class ProtocolError(WorkerError):
    """A worker's reply that is not valid JSON or lacks what its kind must carry."""


def parse_reply(line: bytes | str) -> Reply:
    """The reply a worker wrote as one JSON line, checked for its kind and fields."""
    try:
        reply = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"the worker's reply is not JSON ({exc})") from None
    if not isinstance(reply, dict):
        raise ProtocolError("the worker's reply is not an object")
    op = reply.get("op")
    fields = _REPLY_FIELDS.get(op) if isinstance(op, str) else None
    if fields is None:
        raise ProtocolError(f"the worker sent an unknown reply {str(reply.get('op'))[:40]!r}")
    for name, kind in fields.items():
        if not isinstance(reply.get(name), kind):
            raise ProtocolError(f"the worker's {reply['op']!r} reply lacks its {name!r}")
    return cast(Reply, reply)


def submission_request(name: str, raw: bytes, roots: list[str], *, annotate: bool = False) -> SubmissionRequest:
    """What the grading host sends for one submission: the file's name and bytes, untouched.
    With `annotate`, the reading child also renders the notebook with a placeholder after the
    cell defining each root, marked with a nonce drawn here (see grader/child/notebook_render.py)."""
    request: SubmissionRequest = {"name": name, "data": base64.b64encode(raw).decode("ascii"), "roots": roots}
    if annotate:
        request["annotate"] = {"nonce": secrets.token_hex(16)}
    return request


# The rendered notebook may be at most this long; the child cuts outputs to stay within it.
MAX_NOTEBOOK_HTML_CHARS = 2_000_000


def findings_placeholder(nonce: str, name: str) -> str:
    """The comment the reading child puts after the cell defining `name`, where the host puts
    the findings box of the checks that grade it (grader/report/annotated_notebook.py)."""
    return f"<!--grader-findings:{nonce}:{name}-->"


def worker_limits(assignment: Assignment) -> WorkerLimits:
    """The assignment's [limits] as a worker receives them with every request."""
    return cast(WorkerLimits, asdict(assignment.limits))
