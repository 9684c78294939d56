"""The messages between the grading host, its workers and their children, as types.

One place for the contract: the host builds requests with these types (grader/isolate/client.py),
the worker reads them (grader/isolate/worker.py) and answers with the replies below, each
checked on arrival by `parse_reply`. What a child observed travels inside a reply as a
`ChildReport`; each observation kind is a TypedDict in the last section, from which
grader/observations.py derives the validator every observation passes on the host before any
comparison reads it. Arrays travel as in grader/wire.py (JSON, never pickle).

A new probe is a field here, a probe in grader/child/observe/ and a comparison in grader/compare/.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, NotRequired, TypedDict, cast

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
    train_output: dict[str, Any] | None  # the output in training mode, seeded; None when it failed


class Configuration(TypedDict, total=False):
    """Trusted inputs every child of a worker gets; each `configure` message carries some of them."""

    settings: dict[str, Any]  # Assignment.probe_settings()
    packages: list[str]  # the display packages a program may import
    reference_helpers: dict[str, list[Unit]]  # per check group: what it may use of the reference
    loop_model_spec: list[dict[str, Any]]  # the stand-in model the loop check trains
    forward_inputs: dict[str, Any]  # an encoded array
    reference_weights: list[dict[str, Any]] | None  # encoded arrays: parameters then float buffers, in forward order
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
    child_uid: int | None  # the uid its children drop to (grader/isolate/unprivileged.py); None: they keep its own


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
    "ready": {"pid": int, "child_uid": (int, type(None))},
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


# ---------------------------------------------------------------- observations
# What a child reports to the grading host: one TypedDict per observation kind, the single
# definition of its fields. The probes (grader/child/observe/) build them, grader/observations.py
# derives its validator from them (a child's report is untrusted: each observation is checked
# against its TypedDict before anything reads it), and grader/compare/ reads them typed, so mypy
# checks both sides. A new probe is a TypedDict here, a probe in observe/ and a comparison in
# compare/.
#
# Beyond the types, `Annotated` metadata says what the validator checks: `MaxLen(n)`, at most n
# items in a list; `Finite()`, no NaN or infinity (JSON lets them through). Values are JSON: a
# `float` field takes an int too, and `bool` is never an int. Keys the TypedDict does not name
# are allowed and ignored.



@dataclass(frozen=True)
class MaxLen:
    """A list holds at most `n` items."""

    n: int


@dataclass(frozen=True)
class Finite:
    """A number is neither NaN nor infinite."""


MAX_LOSS_POINTS = 64  # points of a loss curve; the probes average neighbours to stay within it
MAX_LOADER_PASSES = 256  # passes over train_loader recorded one by one; a loop may start more
MAX_CALL_NAMES = 64  # parameter names of the student's training_loop reported
MAX_ALTERNATIVES = 16  # other classes or functions named when the graded one is missing
MAX_OPERATIONS = 256  # tensor operations of one forward pass recorded; a longer forward is cut short
MAX_GRADIENTS = 4096  # parameters whose gradient digest the forward probe reports
MAX_SHARED = 16  # modules reported as reachable under several paths
MAX_SHARED_PATHS = 64  # paths reported for each of them

FiniteOrNull = Annotated[float | None, Finite()]
# Three numbers summarising a tensor (grader/child/observe/operations.py); [] when not comparable.
Digest = Annotated[list[FiniteOrNull], MaxLen(3)]
# An array as grader/wire.py encodes it; decode_array checks its inside when it is read.
EncodedArray = dict[str, Any]
# A shape as a probe saw it: checked as a list here, its items where it is read (compare's `ints`).
Shape = list[Any]


class ProgramObservation(TypedDict):
    kind: Literal["program"]
    notes: list[str]  # the statements of the student's program that failed, and why


class CudaOnCpuObservation(TypedDict):
    """The first CUDA request the program made on a machine without CUDA, served by the CPU."""

    kind: Literal["cuda_on_cpu"]
    request: str  # as the student wrote it: "'cuda'", ".cuda()"


class ReferenceFailedObservation(TypedDict):
    kind: Literal["reference_failed"]
    notes: list[str]


class InstantiateObservation(TypedDict):
    kind: Literal["instantiate"]
    defined: bool
    is_class: bool
    is_module_class: bool
    error: str | None
    # when the class is missing, the nn.Module subclasses the program defines instead
    alternatives: Annotated[list[str], MaxLen(MAX_ALTERNATIVES)]


class Layer(TypedDict):
    """A module holding parameters itself."""

    path: str  # "conv1", "model.0"; "" when the network itself holds parameters directly
    type: str  # its class name: "Conv2d"
    hyper: dict[str, Any]  # its settings, as torch's `__constants__` declares them
    params: dict[str, list[int]]  # its own parameters' shapes by name
    trainable: int  # its own trainable parameters, counted


class Parameter(TypedDict):
    name: str  # "conv1.weight"
    shape: list[int]
    trainable: NotRequired[bool]  # whether it requires grad (the structure probe says)
    buffer: NotRequired[bool]  # a buffer (BatchNorm's running mean or variance), not a parameter


class SharedModule(TypedDict):
    """One module object with parameters that the Net holds under several paths, so they share
    its weights: `nn.Sequential(*(n * [ResBlock(c)]))` repeats one ResBlock, not n of them."""

    paths: Annotated[list[str], MaxLen(MAX_SHARED_PATHS)]  # "resblocks.0", "resblocks.1", ...
    count: int  # how many paths reach it (more than `paths` lists when cut short)
    type: str  # its class name: "ResBlock"
    trainable: int  # its trainable parameters, counted once


class StructureObservation(TypedDict):
    kind: Literal["structure"]
    layers: list[Layer]  # in the order __init__ creates them (a shared module once)
    parameters: list[Parameter]  # a shared parameter once
    total_trainable: int  # a shared parameter counted once
    # the outermost modules held under several paths; absent in reports made before it existed
    shared: NotRequired[Annotated[list[SharedModule], MaxLen(MAX_SHARED)]]


class LayerCall(Layer):
    """A layer as one forward pass ran it."""

    output_shape: Shape | None


class TraceObservation(TypedDict):
    """One forward pass on random input of `batch` images, the layers in the order they ran."""

    kind: Literal["trace"]
    batch: int
    ok: bool
    error: str | None
    calls: list[LayerCall]
    output_shape: Shape | None


class ForwardObservation(TypedDict):
    """The forward pass on the grader's inputs, with the reference weights when they fit: in
    eval mode, then in training mode (dropout on, BatchNorm on the batch's statistics) with the
    random generator seeded, so that the same dropout calls draw the same masks."""

    kind: Literal["forward"]
    # the Net's parameters in the order forward uses them, once per call of their layer (a
    # shared block's parameters as often as forward runs it, so a Net that gives each run its own
    # block takes the reference's shared weights, one copy each), then its floating-point buffers
    # (BatchNorm's running statistics) in the same order: what the reference weights load into
    order: list[Parameter]
    loaded: bool  # the reference weights fitted and were loaded
    output: EncodedArray | None
    # encoded arrays, like `order`: the reference's own while observing it, its norm layers drawn
    # away from their initial values (weight 1, bias 0, mean 0, variance 1) so that they matter
    weights: list[Any] | None
    error: str | None
    # one digest per entry of `order`, of the gradients of the cross-entropy on the
    # forward inputs (labels 0, 1, 2, ...) with the weights used: [] when not computed
    gradients: Annotated[list[Digest], MaxLen(MAX_GRADIENTS)]
    train_output: EncodedArray | None  # in training mode, seeded; None when it was not run or failed
    train_error: str | None  # why forward failed in training mode


class Operation(TypedDict):
    """One tensor operation of a forward pass."""

    op: str  # "conv2d", "relu", "view"
    module: str  # the layer that ran it ("conv1", "model.0"), "" for the network's own forward
    args: Annotated[list[int | float | bool | list[Any] | None], MaxLen(8)]  # non-tensor arguments, None where not shown
    kwargs: dict[str, int | float | bool | list[Any]]
    input_shape: Shape | None
    output_shape: Shape | None
    digest: Digest  # [] when not comparable (see grader/child/observe/operations.py)


class OperationsObservation(TypedDict):
    """One forward pass, operation by operation; with the reference weights when they loaded."""

    kind: Literal["operations"]
    operations: Annotated[list[Operation], MaxLen(MAX_OPERATIONS)]
    truncated: bool  # more operations ran than MAX_OPERATIONS
    error: str | None
    digests: bool  # the operations carry digests comparable with the reference's


class LossCurve(TypedDict):
    """The loss of every training batch, MAX_LOSS_POINTS points at most: each point averages
    `loss_stride` batches; None where one of them was NaN or infinite."""

    losses: Annotated[list[FiniteOrNull], MaxLen(MAX_LOSS_POINTS)]
    loss_stride: int


class TrainObservation(LossCurve):
    """A fresh Net trained with the reference's (or the standard) loop.

    `equivalent`: not trained, because with the reference weights the Net gave the reference's
    outputs and gradients (the probe checked; grader/compare checks again): it trains like it."""

    kind: Literal["train"]
    initial_loss: float | None  # over the whole training set, before and after
    final_loss: float | None
    error: str | None
    equivalent: bool
    seconds: NotRequired[float | None]  # how long training took; not kept in the fixtures


class LoaderPass(TypedDict):
    """One pass over train_loader: batches drawn, then backward passes and steps until the next pass."""

    batches: int
    backward: int
    steps: int


class LoopCall(TypedDict):
    """How the loop was called: "keyword" or "position", its own parameter names ([] when
    unreadable), and those it requires that the call could not give."""

    by: str
    parameters: Annotated[list[str], MaxLen(MAX_CALL_NAMES)]
    unfilled: Annotated[list[str], MaxLen(MAX_CALL_NAMES)]


class _LoopFound(TypedDict):
    kind: Literal["loop"]
    defined: bool
    # when the function is missing, others that take its arguments, with their parameters
    alternatives: Annotated[list[str], MaxLen(MAX_ALTERNATIVES)]


class LoopNotRun(_LoopFound):
    """The student's training_loop is missing, or not a function."""

    callable: Literal[False]


class LoopRun(_LoopFound, LossCurve):
    """The student's training_loop, run on the stand-in model, and what it did."""

    callable: Literal[True]
    error: str | None
    initial_loss: float | None
    final_loss: float | None
    n_epochs: int
    batches_per_epoch: int
    batches: int  # drawn from train_loader, all passes together
    epochs_started: int  # passes over train_loader begun
    passes: Annotated[list[LoaderPass], MaxLen(MAX_LOADER_PASSES)]
    backward_cleared: list[bool]  # per backward pass: the gradients were zero before it
    steps: int
    zero_grad_calls: int
    loss_calls: int
    # steps of an optimizer the loop made itself although it was given one (absent in reports
    # made before it existed)
    foreign_steps: NotRequired[int]
    call: LoopCall


LoopObservation = LoopNotRun | LoopRun  # `if seen["callable"]` tells them apart, for mypy too


class DoneObservation(TypedDict):
    """The probes finished: a report without it was cut short."""

    kind: Literal["done"]


Observation = (
    ProgramObservation
    | CudaOnCpuObservation
    | ReferenceFailedObservation
    | InstantiateObservation
    | StructureObservation
    | TraceObservation
    | ForwardObservation
    | OperationsObservation
    | TrainObservation
    | LoopObservation
    | DoneObservation
)
# Each kind's TypedDict (two for `loop`), by the `kind` it carries.
OBSERVATION_KINDS: dict[str, Any] = {
    "program": ProgramObservation,
    "cuda_on_cpu": CudaOnCpuObservation,
    "reference_failed": ReferenceFailedObservation,
    "instantiate": InstantiateObservation,
    "structure": StructureObservation,
    "trace": TraceObservation,
    "forward": ForwardObservation,
    "operations": OperationsObservation,
    "train": TrainObservation,
    "loop": LoopObservation,
    "done": DoneObservation,
}
