"""The outer isolation layer on Linux: the worker (and so every child it forks) runs inside
bubblewrap, with a read-only view of just what Python needs, no network, its own PID namespace
and a private /tmp.

Visible inside: the system's /usr (and the /lib, /bin links into it), a few files of /etc that
the dynamic loader and Python read, the Python installation, the virtual environment, the
`grader` package, and data folders the assignment names. Not visible: the submissions folder,
`reference/`, the report folder, the gradebook, home folders. The sandboxed uid is mapped to the
invoking user, so files are never readable inside that the user could not read outside.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SANDBOX_ENV = "GRADER_SANDBOX"  # set to "bwrap" inside the sandbox, so the worker may clean its /tmp

TMP_BYTES = 512 * 1024 * 1024
_SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/nsswitch.conf")


@dataclass(frozen=True)
class SandboxStatus:
    active: bool  # bubblewrap runs the worker
    reason: str  # why not, or what is in place
    landlock: bool = False  # without bubblewrap, Landlock limits each child (grader/isolate/landlock.py)
    unprivileged: bool = False  # as root without bubblewrap, children drop to a uid of their own (grader/isolate/unprivileged.py)


def readable_paths(read_only: list[Path] | tuple[Path, ...] = ()) -> list[str]:
    """What student code may read, as the sandbox shows it: the system's libraries, the files of
    /etc the loader reads, the Python installation and the data folders."""
    return [*_SYSTEM_DIRS, *_ETC_FILES, *(str(p) for p in _python_paths()), *(str(Path(p).resolve()) for p in read_only)]


def _python_paths() -> list[Path]:
    """Folders the worker's Python needs: its installation, the venv, the grader package, and any
    other site-packages on its path (a user site, or one a .pth file adds: where torch may live)."""
    paths = {Path(sys.base_prefix), Path(sys.prefix), Path(sys.exec_prefix), Path(__file__).resolve().parents[1]}  # the grader package
    paths |= {Path(entry).resolve() for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages")}
    executable = Path(sys.executable)
    paths.add(executable.parent)
    paths.add(executable.resolve().parent.parent)
    return sorted(p for p in paths if p.exists())


def bwrap_command(read_only: list[Path] | tuple[Path, ...] = ()) -> list[str]:
    """The bwrap argument list that wraps a worker command."""
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    for folder in _SYSTEM_DIRS:
        if os.path.islink(folder):
            args += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            args += ["--ro-bind", folder, folder]
    for path in _ETC_FILES:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    # /tmp and /dev/shm are memory: cap them, so files written there cannot exhaust the
    # machine's RAM. /tmp is mounted before the binds, so a Python or data folder under /tmp
    # stays visible.
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(TMP_BYTES), "--tmpfs", "/dev/shm"]
    args += ["--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    for bound in [*_python_paths(), *(Path(p).resolve() for p in read_only)]:
        args += ["--ro-bind", str(bound), str(bound)]
    # The sandbox's root and /dev are memory bwrap makes, uncapped: read-only once everything is
    # mounted (device files still open for writing), so /tmp and /dev/shm are all that is written.
    args += ["--remount-ro", "/dev", "--remount-ro", "/"]
    args += ["--chdir", "/tmp"]
    args += ["--setenv", SANDBOX_ENV, "bwrap", "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp"]
    return args


@functools.lru_cache(maxsize=1)
def sandbox_status() -> SandboxStatus:
    """Whether bubblewrap can run the worker here; the reason when it cannot."""
    if not sys.platform.startswith("linux"):
        return SandboxStatus(False, f"bubblewrap is Linux-only (this is {sys.platform})")
    if shutil.which("bwrap") is None:
        return SandboxStatus(False, "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")
    probe = [*bwrap_command(), sys.executable, "-c", "import grader.isolate.worker"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return SandboxStatus(False, f"bwrap could not start: {exc}")
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return SandboxStatus(False, f"bwrap is installed but cannot create a sandbox here: {detail}")
    return SandboxStatus(True, "bubblewrap: read-only system, private /tmp, no network, own PID namespace")
