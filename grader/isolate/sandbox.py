"""Run one probe group of one submission in a forked child with limits; collect what it reports.

The child gets its own session (so the whole process group can be killed), an empty scratch
folder as working directory, stdin from /dev/null, stdout and stderr into pipes of which the
first and last CAPTURE_KEEP bytes are kept (the rest is read and dropped, so a child printing
without end never blocks), a memory cap, a file size cap, and a process count watchdog. It
reports observations as JSON lines over a private pipe, never over stdout, so whatever the
student prints cannot be mistaken for a result. When the child ends, times out or breaks a
limit, every process it started goes too.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from grader.isolate import landlock, seccomp, unprivileged
from grader.isolate.bubblewrap import SANDBOX_ENV
from grader.protocol import ChildReport

MAX_REPORT_BYTES = 64 * 1024 * 1024  # observations a child may send back
MAX_FILE_BYTES = 64 * 1024 * 1024  # largest file a child may write
CAPTURE_KEEP = 64 * 1024  # bytes kept from the start and from the end of stdout and of stderr
_WATCH_INTERVAL_S = 0.05
REPORT_FD = 3
_PR_SET_CHILD_SUBREAPER = 36
# Whether this process is a subreaper: then, and only then, its descendants are its children's
# (a worker has no other children); a process that merely reads a submission in a child, a
# test or a benchmark, may have children of its own that must live.
_subreaper = False
_PR_SET_PDEATHSIG = 1
# The uid this worker's children drop to (grader/isolate/unprivileged.py), or None: they keep the
# worker's. Set once by `claim_child_uid`.
_child_uid: int | None = None


@dataclass
class ChildLimits:
    timeout_s: float
    memory_mb: int
    max_processes: int = 64


@dataclass
class ChildRun:
    """What came back from one child: its observations and how it ended."""

    observations: list[dict[str, Any]] = field(default_factory=list)
    timed_out: bool = False
    limit_exceeded: str | None = None  # which limit ended the child, other than time
    exit_code: int | None = None
    signal: int | None = None
    seconds: float = 0.0
    stdout: str = ""
    stderr: str = ""
    protocol_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def report(self, limit_s: float) -> ChildReport:
        """What the worker sends the host about this child, which was given `limit_s` seconds."""
        return {
            "observations": self.observations, "timed_out": self.timed_out, "limit_exceeded": self.limit_exceeded,
            "exit_code": self.exit_code, "signal": self.signal, "seconds": self.seconds, "stdout": self.stdout,
            "stderr": self.stderr, "protocol_error": self.protocol_error, "limit_s": limit_s,
        }  # fmt: skip


class _Capture:
    """Keeps the head and the tail of a stream of unknown length."""

    def __init__(self, keep: int = CAPTURE_KEEP) -> None:
        self.keep = keep
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.keep - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            del self.tail[: max(0, len(self.tail) - self.keep)]

    def text(self) -> str:
        dropped = self.total - len(self.head) - len(self.tail)
        middle = f"\n[... {dropped} bytes left out ...]\n".encode() if dropped else b""
        return bytes(self.head + middle + self.tail).decode("utf-8", errors="replace")


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies, so nothing outlives a run."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass


def become_subreaper() -> bool:
    """Make this worker the subreaper of everything its children start: a process that detaches
    (setsid, a double fork) is then re-parented to the worker, not to init, when its parent
    exits, so `_kill_all` still finds it among the worker's descendants when the child's run
    ends. True when Linux agreed; not inherited by forked children."""
    global _subreaper
    if not sys.platform.startswith("linux"):
        return False
    try:
        _subreaper = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        _subreaper = False
    return _subreaper


def claim_child_uid() -> int | None:
    """As root, where the grading host asked for it (unprivileged.CHILD_USER_ENV): claim a uid
    of this worker's own for its children to drop to. None when they keep the worker's uid."""
    global _child_uid
    if os.environ.get(unprivileged.CHILD_USER_ENV) and unprivileged.needed():
        _child_uid = unprivileged.claim_uid()
    return _child_uid


def prepare_child_layers() -> None:
    """Build once, before the worker forks, what each child would otherwise build again: the
    seccomp filter's program."""
    if landlock_readable() is not None and seccomp.available():
        seccomp.compiled()


def landlock_readable() -> list[str] | None:
    """What children may read when Landlock limits them (set in this worker's environment by
    the grading host); None when it does not."""
    readable = os.environ.get(landlock.LANDLOCK_ENV)
    return readable.split(os.pathsep) if readable else None


def _limit_access(scratch: str) -> None:
    """In the child, before student code, where the host asked for Landlock: Landlock (read
    only what the host named, write only `scratch`), then the seccomp filter when libseccomp is
    here (no socket but AF_UNIX, no ptrace, mounts or namespaces). Without bubblewrap `scratch`
    becomes HOME and the temporary folder too; inside it, /tmp and /dev/shm are the worker's own
    and stay writable, and the layers add what bubblewrap does not stop: signals to the worker,
    the worker's /proc entries, and the kernel's rarer calls. Fails closed: a child the kernel
    would not limit raises, and never runs student code."""
    readable = landlock_readable()
    if readable is None:
        return
    writable = [scratch]
    if sandboxed():
        writable += ["/tmp", "/dev/shm"]
    else:
        os.environ["HOME"] = os.environ["TMPDIR"] = scratch
        tempfile.tempdir = None  # tempfile reads TMPDIR again
    landlock.restrict(readable, writable)
    if seccomp.available():
        seccomp.restrict()


def sandboxed() -> bool:
    """True inside the bubblewrap sandbox, where this worker owns /tmp and the PID namespace."""
    return os.environ.get(SANDBOX_ENV) == "bwrap"


def _vm_size_bytes() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _limit_resources(limits: ChildLimits) -> None:
    # The child inherits torch already mapped (~3 GB of address space here), so the cap is
    # counted on top of what is mapped at fork: the student's code may allocate memory_mb more.
    cap = _vm_size_bytes() + limits.memory_mb * 1024 * 1024
    for name, value in (
        ("RLIMIT_AS", cap),
        ("RLIMIT_CORE", 0),
        ("RLIMIT_FSIZE", MAX_FILE_BYTES),
        ("RLIMIT_NPROC", limits.max_processes),  # enforced for non-root users; the watchdog covers root
    ):
        limit = getattr(resource, name, None)
        if limit is not None:
            try:
                resource.setrlimit(limit, (value, value))
            except (ValueError, OSError):
                pass
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-size writes fail with EFBIG instead of killing


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _process_table() -> list[tuple[int, int, int]]:
    """(pid, parent pid, session id) of every process this worker can see."""
    table = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                table.append((int(entry), int(fields[1]), int(fields[3])))
            except (OSError, IndexError, ValueError):
                continue
    return table


def _child_processes(child: int, table: list[tuple[int, int, int]] | None = None) -> list[int]:
    """Processes the child is responsible for: inside the sandbox every process but the
    sandbox's init and this worker; outside it, the child's session and every descendant of this
    worker, which as a subreaper (`become_subreaper`) inherits whatever left the session.
    `table`: the process table already read, else it is read now."""
    me = os.getpid()
    table = _process_table() if table is None else table
    if sandboxed():
        return [pid for pid, _, _ in table if pid not in (1, me)]
    session = [pid for pid, _, sid in table if sid == child]
    if not _subreaper:
        return session
    children: dict[int, list[int]] = {}
    for pid, parent, _ in table:
        children.setdefault(parent, []).append(pid)
    descendants, frontier = set(), [me]
    while frontier:
        for pid in children.get(frontier.pop(), []):
            if pid not in descendants:
                descendants.add(pid)
                frontier.append(pid)
    return sorted(descendants | set(session))


_SWEEPS = 100  # sweeps of a subreaper's descendants at most, 5 ms apart


def _kill_all(child: int) -> None:
    table = _process_table()
    targets = [child, *_child_processes(child, table)]
    if targets == [child] and all(pid != child for pid, _, _ in table):
        return  # the child is gone (its supervisor waited for it) and left nothing behind
    # A subreaper sweeps again while any descendant is left: one forked while the last sweep
    # killed its parent came to this worker, not to init. The child itself is left to its
    # supervisor to wait for. One read of the process table per sweep.
    for _ in range(_SWEEPS if _subreaper else 1):
        for target in targets:
            try:
                os.killpg(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                os.kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if not _subreaper:
            return
        table = _process_table()
        reaped = _reap_orphans(table, besides=child)
        targets = [pid for pid in _child_processes(child, table) if pid != child and pid not in reaped]
        if not targets:
            return
        time.sleep(0.005)  # let the killed die, and their orphans come to this worker


def _reap_orphans(table: list[tuple[int, int, int]], *, besides: int) -> set[int]:
    """Collect the processes this subreaper inherited and killed, so none stays a zombie; never
    `besides`, the child whose status its supervisor reads. Returns those collected."""
    me = os.getpid()
    reaped = set()
    for pid, parent, _ in table:
        if parent == me and pid != besides:
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    reaped.add(pid)
            except ChildProcessError:
                pass
    return reaped


def _wipe_private_tmp() -> None:
    """Inside the sandbox /tmp and /dev/shm belong to this worker alone: empty them between
    children, so nothing one submission writes is seen by the next."""
    if not sandboxed():
        return
    for folder in ("/tmp", "/dev/shm"):
        _empty_own_filesystem(folder)


def _empty_own_filesystem(folder: str) -> None:
    """Remove what lies under `folder` on its own filesystem. A folder mounted inside it from
    elsewhere is skipped: a Python or course folder that lives under the host's /tmp is bound,
    read-only, into the sandbox's /tmp, and walking a virtualenv only to fail on every file cost
    most of a second per child. Iterative, so a student's deeply nested folders cannot exhaust the
    recursion limit."""
    try:
        device = os.lstat(folder).st_dev
    except OSError:
        return
    pending, folders = [folder], []
    while pending:
        try:
            with os.scandir(pending.pop()) as listing:
                entries = list(listing)
        except OSError:
            continue
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False):
                    os.unlink(entry.path)
                elif entry.stat(follow_symlinks=False).st_dev == device:
                    pending.append(entry.path)
                    folders.append(entry.path)
            except OSError:
                pass
    for path in reversed(folders):  # children were found after their parents
        try:
            os.rmdir(path)
        except OSError:
            pass  # it holds a mount point


def run_in_child(body: Callable[[Callable[[dict[str, Any]], None]], None], limits: ChildLimits) -> ChildRun:
    """Fork, run `body(emit)` in the child under `limits`, and gather the emitted observations."""
    scratch = tempfile.mkdtemp(prefix="grader-scratch-")
    if _child_uid is not None:
        os.chown(scratch, _child_uid, _child_uid)
    report_r, report_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    # Move every object the worker holds (torch's above all) out of the garbage collector's
    # reach: a full collection in the child would otherwise touch them all and copy most of the
    # worker's heap on write (measured: 0.27 s for a child that collects, 0.03 s frozen).
    gc.freeze()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # ---------------------------------------------------------------- child
        code = 0
        try:
            for fd in (report_r, out_r, err_r):
                os.close(fd)
            os.setsid()
            if _child_uid is not None:
                unprivileged.drop_to(_child_uid)
            die_with_parent()  # after the drop: changing the uid clears it
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            # The report pipe becomes fd 3 and every other inherited descriptor is closed, the
            # worker's own channel to the grader above all.
            os.dup2(report_w, REPORT_FD)
            os.closerange(REPORT_FD + 1, os.sysconf("SC_OPEN_MAX"))
            os.chdir(scratch)
            _limit_resources(limits)
            _limit_access(scratch)

            def emit(observation: dict[str, Any]) -> None:
                try:
                    line = json.dumps(observation)
                except (TypeError, ValueError) as exc:
                    line = json.dumps({"kind": "unserializable", "error": str(exc)[:200]})
                _write_all(REPORT_FD, (line + "\n").encode())

            body(emit)
        except BaseException:  # anything escaping the probes ends the child; the parent sees the exit code
            code = 70
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    # ---------------------------------------------------------------------------- parent
    for fd in (report_w, out_w, err_w):
        os.close(fd)
    run = ChildRun()
    report = bytearray()
    captures = {out_r: _Capture(), err_r: _Capture()}
    try:
        status = _supervise(pid, started + limits.timeout_s, limits, report_r, report, captures, run, scratch)
        if os.WIFEXITED(status):
            run.exit_code = os.WEXITSTATUS(status)
        elif os.WIFSIGNALED(status):
            run.signal = os.WTERMSIG(status)
    finally:
        _kill_all(pid)
        for fd in (report_r, out_r, err_r):
            os.close(fd)
        shutil.rmtree(scratch, ignore_errors=True)
        _wipe_private_tmp()
    run.seconds = time.monotonic() - started
    run.observations = _parse_lines(bytes(report), run)
    run.stdout = captures[out_r].text()
    run.stderr = captures[err_r].text()
    return run


def _supervise(
    pid: int,
    deadline: float,
    limits: ChildLimits,
    report_fd: int,
    report: bytearray,
    captures: dict[int, _Capture],
    run: ChildRun,
    scratch: str,
) -> int:
    """Read the child's pipes until it exits, enforcing the deadline, the process limit and,
    where bubblewrap's capped /tmp does not hold the scratch folder, its size. Returns the child's
    wait status."""
    open_fds = [report_fd, *captures]
    next_watch = 0.0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            _drain(open_fds, report_fd, report, captures, run)
            return status
        now = time.monotonic()
        if now >= deadline:
            run.timed_out = True
            _kill_all(pid)
            return os.waitpid(pid, 0)[1]
        if now >= next_watch:
            next_watch = now + _WATCH_INTERVAL_S
            if len(_child_processes(pid)) > limits.max_processes:
                run.limit_exceeded = f"started more than {limits.max_processes} processes"
                _kill_all(pid)
                return os.waitpid(pid, 0)[1]
            too_much = None if sandboxed() else _scratch_over_limit(scratch)
            if too_much:
                run.limit_exceeded = too_much
                _kill_all(pid)
                return os.waitpid(pid, 0)[1]
        if open_fds:
            ready, _, _ = select.select(open_fds, [], [], min(_WATCH_INTERVAL_S, max(0.0, deadline - now)))
            for fd in ready:
                if not _read_into(fd, report_fd, report, captures, run):
                    open_fds.remove(fd)
        else:
            time.sleep(0.005)


MAX_SCRATCH_BYTES = 512 * 1024 * 1024  # what a child may leave in its scratch folder, as bubblewrap's /tmp
MAX_SCRATCH_ENTRIES = 10_000


def _scratch_over_limit(scratch: str) -> str | None:
    """Why the scratch folder is over its limits (the bytes its files take on disk, the number of
    its entries), or None. Without bubblewrap it lies on the machine's own disk, and the file
    size limit alone would let a child write file after file until the disk is full. Counting
    stops at the entry limit, so a folder of a million files costs no more to check."""
    used, entries, pending = 0, 0, [scratch]
    while pending:
        try:
            with os.scandir(pending.pop()) as listing:
                for entry in listing:
                    entries += 1
                    if entries > MAX_SCRATCH_ENTRIES:
                        return f"wrote more than {MAX_SCRATCH_ENTRIES:,} files"
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
                        else:
                            used += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
        except OSError:
            continue
    if used > MAX_SCRATCH_BYTES:
        return f"wrote more than {MAX_SCRATCH_BYTES // 2**20} MB of files"
    return None


def _read_into(fd: int, report_fd: int, report: bytearray, captures: dict[int, _Capture], run: ChildRun) -> bool:
    """Read one chunk from `fd`; False at end of file."""
    chunk = os.read(fd, 1 << 16)
    if not chunk:
        return False
    if fd == report_fd:
        if len(report) + len(chunk) > MAX_REPORT_BYTES:
            run.protocol_error = f"the child sent more than {MAX_REPORT_BYTES // 2**20} MB of observations"
        else:
            report += chunk
    else:
        captures[fd].feed(chunk)
    return True


def _drain(open_fds: list[int], report_fd: int, report: bytearray, captures: dict[int, _Capture], run: ChildRun) -> None:
    """After the child exited: read what is already in the pipes, without waiting on processes
    it may have left holding them open (they are killed next)."""
    until = time.monotonic() + 1.0
    for fd in list(open_fds):
        while time.monotonic() < until and select.select([fd], [], [], 0)[0]:
            if not _read_into(fd, report_fd, report, captures, run):
                break


def _parse_lines(raw: bytes, run: ChildRun) -> list[dict[str, Any]]:
    observations = []
    for line in raw.splitlines():
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            run.protocol_error = run.protocol_error or "the child sent a line that is not JSON"
            continue
        if isinstance(value, dict) and isinstance(value.get("kind"), str):
            observations.append(value)
        else:
            run.protocol_error = run.protocol_error or "the child sent an observation without a kind"
    return observations
