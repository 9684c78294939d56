"""Run one probe group of one submission in a forked child with limits; collect what it reports.

The child gets its own session (so the whole process group can be killed), an empty scratch
folder as working directory, stdout/stderr redirected to capture files, a memory cap and a file
size cap. It reports observations as JSON lines over a private pipe, never over stdout, so
whatever the student prints cannot be mistaken for a result. On timeout the process group is
killed with SIGKILL.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

MAX_REPORT_BYTES = 64 * 1024 * 1024  # observations a child may send back
MAX_FILE_BYTES = 64 * 1024 * 1024  # largest file a child may write (stdout capture included)
CAPTURE_KEEP = 8 * 1024  # bytes kept from the start and from the end of stdout/stderr
_PR_SET_PDEATHSIG = 1


@dataclass
class ChildLimits:
    timeout_s: float
    memory_mb: int


@dataclass
class ChildRun:
    """What came back from one child: its observations and how it ended."""

    observations: list[dict[str, Any]] = field(default_factory=list)
    timed_out: bool = False
    exit_code: int | None = None
    signal: int | None = None
    seconds: float = 0.0
    stdout: str = ""
    stderr: str = ""
    protocol_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies, so nothing outlives a run."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass


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
    for name, value in (("RLIMIT_AS", cap), ("RLIMIT_CORE", 0), ("RLIMIT_FSIZE", MAX_FILE_BYTES)):
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


def run_in_child(body: Callable[[Callable[[dict[str, Any]], None]], None], limits: ChildLimits) -> ChildRun:
    """Fork, run `body(emit)` in the child under `limits`, and gather the emitted observations."""
    scratch = tempfile.mkdtemp(prefix="grader-scratch-")
    capture = tempfile.mkdtemp(prefix="grader-capture-")
    out_path, err_path = os.path.join(capture, "stdout"), os.path.join(capture, "stderr")
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # ---------------------------------------------------------------- child
        code = 0
        try:
            os.close(read_fd)
            os.setsid()
            die_with_parent()
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
            os.dup2(os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
            os.chdir(scratch)
            _limit_resources(limits)

            def emit(observation: dict[str, Any]) -> None:
                try:
                    line = json.dumps(observation)
                except (TypeError, ValueError) as exc:
                    line = json.dumps({"kind": "unserializable", "error": str(exc)[:200]})
                _write_all(write_fd, (line + "\n").encode())

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
    os.close(write_fd)
    run = ChildRun()
    deadline = started + limits.timeout_s
    try:
        raw = _read_until(read_fd, deadline, run)
        status = _wait_until(pid, deadline)
        if status is None:
            run.timed_out = True
            _kill_group(pid)
            status = os.waitpid(pid, 0)[1]
        if os.WIFEXITED(status):
            run.exit_code = os.WEXITSTATUS(status)
        elif os.WIFSIGNALED(status):
            run.signal = os.WTERMSIG(status)
    finally:
        os.close(read_fd)
        _kill_group(pid)  # anything the child left running in its session goes too
    run.seconds = time.monotonic() - started
    run.observations = _parse_lines(raw, run)
    run.stdout = _head_and_tail(out_path)
    run.stderr = _head_and_tail(err_path)
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(capture, ignore_errors=True)
    return run


def _read_until(fd: int, deadline: float, run: ChildRun) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(chunks)
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_REPORT_BYTES:
            run.protocol_error = f"the child sent more than {MAX_REPORT_BYTES // 2**20} MB of observations"
            return b"".join(chunks)
        chunks.append(chunk)


def _wait_until(pid: int, deadline: float) -> int | None:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.005)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


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


def _head_and_tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(0)
            if size <= 2 * CAPTURE_KEEP:
                data = f.read()
            else:
                head = f.read(CAPTURE_KEEP)
                f.seek(size - CAPTURE_KEEP)
                data = head + f"\n[... {size - 2 * CAPTURE_KEEP} bytes left out ...]\n".encode() + f.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")
