"""Landlock: the isolation layer that needs no user namespace (Linux 5.13+, unprivileged), for
machines where bubblewrap cannot start (GitHub's ubuntu-24.04 runners, Docker graders).

Applied in each forked child before student code runs, it limits that child and everything it
starts: read (and execute) only the system's libraries, the Python installation with its
site-packages and the `grader` package, the data folders the assignment names, a few device
files and its own /proc entries; write only the child's own scratch folder; with ABI 4+ neither bind nor connect TCP; with
ABI 6+ no signal to, and no abstract socket of, a process outside the child. What the child
opened before (its report pipe) stays usable. The rules cannot be lifted by the child.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

# Set in a worker's environment when Landlock limits its children: what they may read,
# os.pathsep-separated (grader/isolate/bubblewrap.py readable_paths).
LANDLOCK_ENV = "GRADER_LANDLOCK"

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same on x86-64 and arm64
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights, by the ABI that introduced them.
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_WRITES = sum(1 << bit for bit in range(4, 13))  # remove, make char/dir/reg/sock/fifo/block/sym
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_CONNECT_AND_BIND_TCP = (1 << 0) | (1 << 1)
_SCOPE_ABSTRACT_UNIX_SOCKET_AND_SIGNAL = (1 << 0) | (1 << 1)

# Files a child reads or writes outside its folders: /dev/null takes what is thrown away. Of
# /proc only its own entries and the machine's figures: another process's (the grader's
# environment, its command line, its open files) stay closed.
_DEVICES_READ = ("/dev/urandom", "/dev/random", "/dev/zero", "/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/sys/devices/system/cpu")
_DEVICES_WRITE = ("/dev/null",)


class _RulesetAttr(ctypes.Structure):
    _fields_ = (("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64), ("scoped", ctypes.c_uint64))


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi() -> int:
    """The Landlock ABI this kernel offers; 0 when it offers none (or this is not Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        version = _libc().syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(0, int(version))


def _fs_rights(version: int) -> int:
    rights = _EXECUTE | _WRITE_FILE | _READ_FILE | _READ_DIR | _WRITES
    if version >= 2:
        rights |= _REFER
    if version >= 3:
        rights |= _TRUNCATE
    if version >= 5:
        rights |= _IOCTL_DEV
    return rights


def restrict(readable: list[str], writable: list[str]) -> None:
    """Limit this process and its future children to reading `readable` (and the system's
    device files), writing `writable`, and no TCP; OSError when the kernel refuses. Paths that do
    not exist are skipped."""
    version = abi()
    if version < 1:
        raise OSError("this kernel offers no Landlock")
    libc = _libc()
    handled = _fs_rights(version)
    attr = _RulesetAttr(handled, _CONNECT_AND_BIND_TCP if version >= 4 else 0, _SCOPE_ABSTRACT_UNIX_SOCKET_AND_SIGNAL if version >= 6 else 0)
    size = 24 if version >= 6 else 16 if version >= 4 else 8  # the struct as this ABI knows it
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        read_dir = _EXECUTE | _READ_FILE | _READ_DIR
        file_rights = _EXECUTE | _WRITE_FILE | _READ_FILE | (_TRUNCATE if version >= 3 else 0) | (_IOCTL_DEV if version >= 5 else 0)
        for paths, rights in ((readable, read_dir), (_DEVICES_READ, _READ_FILE | _READ_DIR), (_DEVICES_WRITE, _READ_FILE | _WRITE_FILE), (writable, handled)):
            for path in paths:
                _allow(libc, ruleset, path, rights, file_rights)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)


def _allow(libc: ctypes.CDLL, ruleset: int, path: str, rights: int, file_rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # not on this machine: nothing to allow
    try:
        if not Path(path).is_dir():
            rights &= file_rights  # a file takes only the rights that apply to files
        attr = _PathBeneathAttr(rights, fd)
        if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(attr), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
    finally:
        os.close(fd)
