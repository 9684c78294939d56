"""The grader's handle on a worker process (see worker.py): start it, configure it, ask it to
observe submissions, and restart it if it dies. Runs in the grader's process; imports no torch.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Unpack, cast

from grader.errors import NoIsolationError, WorkerError
from grader.isolate import landlock, seccomp, unprivileged
from grader.isolate.bubblewrap import SandboxStatus, bwrap_command, readable_paths, sandbox_status
from grader.isolate.reading import MAX_ATTEMPTS
from grader.protocol import (
    ChildReport,
    Configuration,
    ConfigureRequest,
    Extraction,
    GradedReply,
    GradeRequest,
    Observed,
    ObservedReply,
    ObserveRequest,
    ReadReply,
    ReadRequest,
    Reply,
    Request,
    SubmissionRequest,
    Unit,
    WorkerLimits,
    parse_reply,
)

_STARTUP_TIMEOUT_S = 120.0
_REPLY_MARGIN_S = 30.0  # the worker enforces child limits itself; this only catches a stuck worker
_MAX_REPLY_BYTES = 256 * 1024 * 1024


SANDBOX_MODES = ("auto", "bwrap", "landlock", "none")


def worker_environment(threads: int = 1) -> dict[str, str]:
    """A minimal environment: nothing of the grader's (tokens, credentials) reaches student code."""
    env = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "TZ") if key in os.environ}
    env.update(
        HOME=tempfile.gettempdir(),
        CUDA_VISIBLE_DEVICES="",  # grading runs on the CPU; students' `.to(device)` then means CPU
        OMP_NUM_THREADS=str(threads),
        # A torch thread that waits for work sleeps instead of spinning: with --threads 2 on a machine
        # whose other core is busy, spinning threads made grading 3x slower (30.7 s against 11.2 s
        # on the examples), while an idle machine lost about 10%. Set it to ACTIVE to spin.
        OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        MKL_NUM_THREADS=str(threads),
        GRADER_TORCH_THREADS=str(threads),
        PYTHONHASHSEED="0",
        MPLBACKEND="Agg",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def grading_deadline_s(limits: WorkerLimits, groups: list[str]) -> float:
    """The longest a worker may take to answer a `grade` request before it counts as stuck:
    every reading attempt, the submission's time limit, and a margin per child."""
    reading = MAX_ATTEMPTS * float(limits["read_timeout_s"])
    return reading + float(limits["timeout_s"]) + _REPLY_MARGIN_S * (len(groups) + 1)


def chosen_sandbox(sandbox: str) -> SandboxStatus:
    """What `sandbox` ("auto", "bwrap", "landlock" or "none") gives here: "auto" is bubblewrap
    when it can start, else Landlock when the kernel offers it, else neither. WorkerError when a
    layer asked for by name cannot be had."""
    if sandbox not in SANDBOX_MODES:
        raise ValueError(f"sandbox must be one of {SANDBOX_MODES}, not {sandbox!r}")
    if sandbox == "none":
        return SandboxStatus(False, "turned off (--sandbox none)")
    status = sandbox_status() if sandbox != "landlock" else SandboxStatus(False, "not asked for")
    if sandbox == "bwrap" and not status.active:
        raise WorkerError(f"the bubblewrap sandbox is required but unavailable: {status.reason}")
    if status.active:
        return status
    version = landlock.abi()
    if not version:
        if sandbox == "landlock":
            raise WorkerError("Landlock is required but this kernel offers none (Linux 5.13 or later, with Landlock enabled)")
        return status
    # Only now, with Landlock to hold the children: whether they can also drop to another uid
    # (a forked probe, as root).
    filtered = f"; and a seccomp filter: {SECCOMP_DOES}" if seccomp.available() else "; no seccomp filter (libseccomp is missing)"
    dropped, as_whom = child_user()
    layers = f"{filtered}{'; ' + as_whom if as_whom else ''}"
    if sandbox == "landlock":
        return SandboxStatus(False, f"Landlock ABI {version}: each child {LANDLOCK_DOES}{layers}", landlock=True, unprivileged=dropped)
    return SandboxStatus(
        False, f"{status.reason}; Landlock ABI {version} limits each child instead: it {LANDLOCK_DOES}{layers}", landlock=True, unprivileged=dropped
    )


def child_user() -> tuple[bool, str]:
    """Whether children, where bubblewrap does not run them, drop to an unprivileged uid: only
    as root, and only where that uid can read Python and the grader; what to say about it ('' when
    the grader does not run as root)."""
    if not unprivileged.needed():
        return False, ""
    return unprivileged.status(tuple(readable_paths()))


LANDLOCK_DOES = "reads only Python and the data, writes only its scratch folder, no TCP"
SECCOMP_DOES = "no socket but AF_UNIX (no network), no ptrace, mounts, namespaces, BPF or io_uring"


def require_isolation(sandbox: str) -> SandboxStatus:
    """The isolation `sandbox` gives here, for grading a class: NoIsolationError, saying what is
    missing and how to get it, when that is neither bubblewrap nor Landlock and nobody turned
    isolation off on purpose (--sandbox none). A student's selfcheck of their own code does not
    ask (grader/pipeline.py note_isolation_for_students)."""
    status = chosen_sandbox(sandbox)
    if status.active or status.landlock or sandbox == "none":
        return status
    raise NoIsolationError(
        f"student code would run without isolation here: {status.reason}, and this kernel offers no Landlock "
        "(Linux 5.13 or later). Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap); on Ubuntu 24.04, "
        "which restricts the user namespaces it needs, also run `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`. "
        "`grader doctor` shows each layer. To grade without isolation on purpose, pass --sandbox none"
    )


# The reply each request gets when it succeeds (any may get an "error" reply instead); `shutdown`
# gets none: the worker exits.
_ANSWERS = {"configure": "configured", "observe": "observed", "grade": "graded", "read": "read"}

# What a worker process is for, given on its command line: everything (the default), only the
# checks of programs already extracted ("checks": no IPython import, about 0.8 s less to start),
# or only reading and extracting submissions ("reader": no torch at all). `grader selfcheck`
# starts a checks worker and a reader side by side, so the two imports run on two cores at once.
ROLES = ("all", "checks", "reader")


class ConfigurationRecorder:
    """Stands in for the grading host's worker where that worker would only be configured: on a
    Dask cluster, when the reference's observations are cached, its configure messages are kept
    for the cluster's workers and no process is started here (no torch import, about 3 s of CPU
    and 650 MB beside the cluster's own workers). It observes nothing. A Worker is one that also
    sends what it is given to its process."""

    def __init__(self, sandbox: str = "auto") -> None:
        self.sandbox = chosen_sandbox(sandbox)  # what the cluster's workers will be asked for
        self._configuration: list[ConfigureRequest] = []

    def configure(self, *, wait: bool = True, **fields: Unpack[Configuration]) -> None:
        self.record_configuration(**fields)

    def record_configuration(self, **fields: Unpack[Configuration]) -> None:
        """Keep a configure message for the workers configured like this one (and for a worker's
        restarts) without sending it now."""
        self._configuration.append({"op": "configure", **fields})

    @property
    def configuration(self) -> list[ConfigureRequest]:
        """The configure messages received, in order."""
        return list(self._configuration)

    def observe(self, units: list[Unit], groups: list[str], limits: WorkerLimits) -> dict[str, ChildReport]:
        raise WorkerError("the grading host started no worker: the reference's observations were expected from the cache")


class Worker(ConfigurationRecorder):
    """A started worker process. Use as a context manager so it is always shut down.

    `sandbox`: "auto" runs the worker inside bubblewrap when it works here and falls back to
    the plain process (with limits) otherwise; "bwrap" requires it; "none" does without.
    `read_only`: extra folders the sandbox shows (data the assignment reads from disk).
    `wait=False` returns as soon as the process is started; call `wait_ready()` before use, so
    several workers can import torch at the same time.
    """

    def __init__(
        self,
        threads: int = 1,
        *,
        sandbox: str = "auto",
        read_only: tuple[Path, ...] = (),
        wait: bool = True,
        role: str = "all",
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        super().__init__(sandbox)
        self._prefix = bwrap_command(read_only) if self.sandbox.active else []
        # Landlock instead of bubblewrap, or inside it as a second layer where the kernel has it.
        self._readable = readable_paths(read_only) if self.sandbox.landlock or (self.sandbox.active and landlock.abi()) else None
        self.threads = threads
        self.role = role
        self._proc: subprocess.Popen[bytes] | None = None
        self._child_uid: int | None = None  # what the worker said its children drop to
        self._buffer = b""
        self._ready = False  # the process said it is ready and has its configuration
        self._unsent: list[ConfigureRequest] = []  # from configure_like(wait=False), sent before the next request
        self._closed = False
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (the worker's stderr for its whole life; closed in close())
        try:
            self._spawn()
            if wait:
                self.wait_ready()
        except BaseException:  # Ctrl-C or a failed start: leave no worker behind
            self.close()
            raise

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _start(self) -> None:
        self._spawn()
        self.wait_ready()

    def _spawn(self) -> None:
        """Start the process. Linux ties PR_SET_PDEATHSIG to the thread that forks, so a worker
        meant to outlive a helper thread must be spawned from a long-lived thread."""
        self._buffer = b""
        self._ready = False
        self._unsent = []
        self._proc = subprocess.Popen(
            [*self._prefix, sys.executable, "-m", "grader.isolate.worker", "--role", self.role],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=self._environment(),
            start_new_session=True,  # Ctrl-C in the terminal reaches the grader, not the worker
        )

    def _environment(self) -> dict[str, str]:
        env = worker_environment(self.threads)
        if self._readable:
            env[landlock.LANDLOCK_ENV] = os.pathsep.join(self._readable)
        if self.sandbox.unprivileged:
            env[unprivileged.CHILD_USER_ENV] = "1"
        return env

    def wait_ready(self) -> None:
        """Wait until the worker has imported torch, then replay its configuration."""
        ready = self._receive(time.monotonic() + _STARTUP_TIMEOUT_S)
        if ready["op"] != "ready":
            raise WorkerError(f"worker did not start: {ready}")
        self._child_uid = ready["child_uid"]
        self._ready, self._unsent = True, []  # the replay sends everything
        for message in self._configuration:
            self._send(message)
            self._reply(time.monotonic() + _STARTUP_TIMEOUT_S)

    def configure(self, *, wait: bool = True, **fields: Unpack[Configuration]) -> None:
        """Send trusted inputs (settings, reference program, weights, ...); replayed on restart.
        With `wait=False` nothing is sent yet: see `configure_like`."""
        self.configure_all([{"op": "configure", **fields}], wait=wait)

    def configure_like(self, other: ConfigurationRecorder, *, wait: bool = True) -> None:
        """Give this worker everything `other` was configured with. With `wait=False` nothing is
        sent yet: the messages go out (and their replies are awaited) before this worker's next
        request, from whichever thread makes it, so the caller never blocks on a busy worker's
        pipe and several workers apply them (the rehearsal included) at the same time."""
        self.configure_all(other.configuration, wait=wait)

    def configure_all(self, messages: list[ConfigureRequest], *, wait: bool = True) -> None:
        """Apply these configure messages in order (see `configure_like` for `wait`)."""
        self._configuration.extend(messages)
        if self._ready:  # otherwise wait_ready() replays them with the rest
            self._unsent.extend(messages)
        if wait:
            self.wait_configured()

    def wait_configured(self) -> None:
        """Wait until the worker is ready and has applied every configuration message."""
        if not self._ready:
            self.wait_ready()
            return
        unsent, self._unsent = self._unsent, []
        for message in unsent:
            self._send(message)
        for _ in unsent:
            self._reply(time.monotonic() + _STARTUP_TIMEOUT_S)

    def observe(self, units: list[Unit], groups: list[str], limits: WorkerLimits) -> dict[str, ChildReport]:
        """Observe one trusted program; a report per group. Restarts a dead worker once."""
        message: ObserveRequest = {"op": "observe", "units": units, "groups": groups, "limits": limits}
        reply = self._request_or_restart(message, limits["timeout_s"] + _REPLY_MARGIN_S * len(groups))
        return cast(ObservedReply, reply)["groups"]

    def read(self, submission: SubmissionRequest, limits: WorkerLimits) -> Extraction:
        """Read and extract a submission (from `submission_request`) in a child: what
        `read_and_extract` gives. Restarts a dead worker once."""
        message: ReadRequest = {"op": "read", "submission": submission, "limits": limits}
        return cast(ReadReply, self._request_or_restart(message, grading_deadline_s(limits, [])))["extraction"]

    def grade(self, submission: SubmissionRequest, groups: list[str], limits: WorkerLimits) -> Observed:
        """Read and extract a submission (from `submission_request`) in a child, then observe
        what it defines. Restarts a dead worker once."""
        message: GradeRequest = {"op": "grade", "submission": submission, "groups": groups, "limits": limits}
        reply = cast(GradedReply, self._request_or_restart(message, grading_deadline_s(limits, groups)))
        return {"extraction": reply["extraction"], "groups": reply["groups"]}

    def _request_or_restart(self, message: Request, timeout: float) -> Reply:
        """A request whose failure leaves a fresh worker behind for the next one."""
        try:
            return self._request(message, timeout)
        except WorkerError:
            if not self._closed:  # a worker killed on purpose (Ctrl-C) is not brought back
                self.restart()
            raise

    def restart(self) -> None:
        self._kill()
        self._start()

    def _request(self, message: Request, timeout: float) -> Reply:
        self.wait_configured()  # a worker started or configured without waiting catches up first
        self._send(message)
        reply = self._reply(time.monotonic() + timeout)
        answers = _ANSWERS[message["op"]]
        if reply["op"] != answers:
            raise WorkerError(f"the worker answered {message['op']!r} with {reply['op']!r}")
        return reply

    def _send(self, message: Request) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write((json.dumps(message) + "\n").encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerError(f"the worker process died ({self._describe_exit()})") from None

    def _reply(self, deadline: float) -> Reply:
        reply = self._receive(deadline)
        if reply["op"] == "error":
            raise WorkerError(reply["message"])
        return reply

    def _receive(self, deadline: float) -> Reply:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._kill()
                raise WorkerError("the worker stopped answering and was killed")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise WorkerError(f"the worker process died ({self._describe_exit()})")
            self._buffer += chunk
            if len(self._buffer) > _MAX_REPLY_BYTES:
                self._kill()
                raise WorkerError("the worker sent an oversized reply and was killed")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return parse_reply(line)

    def _describe_exit(self) -> str:
        if self._closed:
            return "stopped by the grader"
        assert self._proc is not None
        code = self._proc.poll()
        try:
            self._log.seek(0)
            tail = self._log.read()[-2000:].decode("utf-8", errors="replace").strip()
        except (OSError, ValueError):
            tail = ""
        return f"exit code {code}" + (f"; its last output: {tail}" if tail else "")

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                self._proc.kill()
            self._proc.wait()
        if self._child_uid is not None:
            # Killed in the middle of a child's run, the worker (their subreaper) could not sweep
            # what that child detached; as the uid was this worker's alone, its processes can.
            unprivileged.kill_processes_of(self._child_uid)
            self._child_uid = None

    def alive(self) -> bool:
        """The process is running and was not stopped by the grader."""
        return not self._closed and self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """Stop the worker at once, even in the middle of a submission (Ctrl-C)."""
        self._closed = True
        self._kill()

    def close(self) -> None:
        """Stop the worker. It holds nothing that needs a graceful exit (its children are done,
        its files live in the sandbox's private /tmp), and an interpreter with torch loaded
        takes a good part of a second to wind down: it is killed."""
        self._closed = True
        if self._proc is None:
            return
        self._kill()
        self._proc = None
        self._log.close()

