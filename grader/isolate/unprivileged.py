"""An unprivileged user for the children of a worker that runs as root without bubblewrap
(Gradescope's Docker, a CI job run as root), beside Landlock and seccomp.

Each worker claims a uid of its own (and the gid of the same number) from a range no account on
the machine uses, held by a lock for the worker's life, so that `RLIMIT_NPROC` counts one
child's processes and never another worker's. Each child drops to it, with no supplementary
groups, before student code runs: the files only root may read or write (the reference, the
gradebook, the results, `/autograder/source` kept 0700) are then closed to it by the file
permissions as well as by Landlock, it cannot signal or trace the grader, and `RLIMIT_NPROC`
applies. It needs the Python installation and the `grader` package to be readable by other
users (a Python under /root, which is 0700, is not): `status` tries it in a forked process and
says why not, and children then stay root, held by Landlock and seccomp alone.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import pwd
import signal
import sys
import tempfile
import time
from pathlib import Path

CHILD_USER_ENV = "GRADER_CHILD_USER"  # set in a worker's environment when its children drop to a uid of their own
FIRST_UID = 64100  # the range children's uids are drawn from; a uid some account uses is skipped
SLOTS = 400
_PR_SET_DUMPABLE = 4
_held: list[int] = []  # the lock files that keep this worker's uid its own


def needed() -> bool:
    """Whether children would otherwise run as root."""
    return sys.platform.startswith("linux") and os.geteuid() == 0


def _accounts() -> set[int]:
    try:
        return {entry.pw_uid for entry in pwd.getpwall()}
    except OSError:
        return set()


def _child_uids() -> list[int]:
    taken = _accounts()
    return [uid for uid in range(FIRST_UID, FIRST_UID + SLOTS) if uid not in taken]


@functools.lru_cache(maxsize=8)
def status(readable: tuple[str, ...]) -> tuple[bool, str]:
    """Whether a child running as an unprivileged uid could read `readable` (the Python
    installation, its site-packages, the grader package) here, tried for real in a forked
    process; with the reason when it could not. Only meaningful as root."""
    uids = _child_uids()
    if not uids:
        return False, f"every uid from {FIRST_UID} to {FIRST_UID + SLOTS - 1} belongs to an account"
    existing = tuple(path for path in readable if os.path.exists(path))  # as root: the dropped probe may not see them
    read_r, read_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # ------------------------------------------------------------ the probe
        code = 1
        try:
            os.close(read_r)
            drop_to(uids[0])
            os.write(read_w, _first_unreadable(existing).encode()[:4000])
            code = 0
        except BaseException as exc:
            os.write(read_w, f"the probe could not drop to an unprivileged uid: {exc}".encode()[:4000])
        finally:
            os._exit(code)
    os.close(read_w)
    with os.fdopen(read_r, "rb") as pipe:
        said = pipe.read().decode(errors="replace")
    _, wait_status = os.waitpid(pid, 0)
    if os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) == 0 and not said:
        return True, f"each child runs as an unprivileged uid of its own ({FIRST_UID} and up) with no groups, not as root"
    return False, said or "the probe could not drop to an unprivileged uid"


def _first_unreadable(readable: tuple[str, ...]) -> str:
    """'' when every folder (and its ancestors) can be listed and every file read; else which
    one cannot, and how to fix it."""
    for path in readable:
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                with open(path, "rb"):
                    pass
        except OSError as exc:
            blocker = _closed_ancestor(Path(path))
            fix = f"{blocker} has mode {blocker.stat().st_mode & 0o777:o}" if blocker else exc.strerror
            return (
                f"children stay root: {path} is not readable by other users ({fix}); install Python and the "
                "grader where other users can read them (not under /root), or run the grader as an unprivileged user"
            )
    return ""


def _closed_ancestor(path: Path) -> Path | None:
    """The first folder from / down to `path` that others may not enter."""
    for folder in [*reversed(path.parents), path]:
        try:
            mode = folder.stat().st_mode
        except OSError:
            return None
        if folder.is_dir() and not mode & 0o001:
            return folder
    return None


def claim_uid() -> int:
    """A uid for this worker's children that no other worker on this machine holds, kept (by an
    flock) until this worker exits. OSError when none is free."""
    folder = Path(tempfile.gettempdir()) / f"grader-child-uids-{os.geteuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if not Path(folder).is_dir() or folder.is_symlink() or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise OSError(f"{folder} is not a private folder of this user; remove it")
    for uid in _child_uids():
        fd = os.open(folder / str(uid), os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _held.append(fd)
        return uid
    raise OSError(f"every uid from {FIRST_UID} to {FIRST_UID + SLOTS - 1} is held by another worker")


def drop_to(uid: int) -> None:
    """In a child, for good: no supplementary groups, gid and uid `uid` (real, effective and
    saved), then dumpable again so that the process may read its own /proc entries. Raises when
    root could be regained."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise OSError("the child could become root again after dropping its uid")
    if os.getuid() != uid or os.getgid() != uid or os.getgroups():
        raise OSError(f"the child did not become uid {uid}")
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    os.environ["USER"] = os.environ["LOGNAME"] = f"grader-child-{uid}"  # getpass.getuser() finds no account


def kill_processes_of(uid: int, timeout_s: float = 5.0) -> int:
    """Kill every process running as `uid` (a worker's children's, once the worker is gone),
    until none is left or `timeout_s` passes; returns how many were killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        left = [pid for pid, owner in _processes() if owner == uid]
        if not left or time.monotonic() > deadline:
            return len(killed)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)


def _processes() -> list[tuple[int, int]]:
    """(pid, real uid) of every process but zombies."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status_file:
                fields = dict(line.split(":", 1) for line in status_file if ":" in line)
        except OSError:
            continue
        if fields.get("State", "").strip().startswith("Z"):
            continue
        found.append((int(entry), int(fields["Uid"].split()[0])))
    return found
