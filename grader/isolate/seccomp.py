"""seccomp: the system calls a child may not make, beside Landlock where bubblewrap cannot start.

Landlock limits files and TCP; this filter closes what it leaves open: sockets of any family but
AF_UNIX (UDP, raw and netlink sockets, so no network at all), and the calls that reach beyond the
child: ptrace and reading other processes' memory, mounts, namespaces, kernel keyrings, BPF,
perf events, io_uring (which can make calls behind a filter's back), module loading, kexec and
reboot. Each is refused with EPERM, so student code sees an ordinary error. Built with the
system's libseccomp (on every Debian and Ubuntu: apt itself needs it), through ctypes; where it
is missing the layer is missing, and `grader doctor` says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os

_ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO = 0x00050000
_CMP_NE = 1
_AF_UNIX = 1
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2

# Refused outright: what reaches beyond the child's own process tree and files.
REFUSED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsmount", "fsconfig", "move_mount", "open_tree", "mount_setattr",
    "unshare", "setns",
    "bpf", "perf_event_open", "userfaultfd",
    "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "open_by_handle_at", "name_to_handle_at", "quotactl", "acct", "settimeofday", "clock_settime",
)  # fmt: skip


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


class _ArgCmp(ctypes.Structure):
    _fields_ = (("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64))


@functools.cache
def _library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        library = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    library.seccomp_init.restype = ctypes.c_void_p
    library.seccomp_init.argtypes = (ctypes.c_uint32,)
    library.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    library.seccomp_rule_add_array.argtypes = (ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp))
    library.seccomp_load.argtypes = (ctypes.c_void_p,)
    library.seccomp_release.argtypes = (ctypes.c_void_p,)
    library.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
    return library


def available() -> bool:
    """Whether the filter can be built here (Linux with libseccomp)."""
    return _library() is not None


def restrict() -> None:
    """Load the filter into this process (and so every process it starts); OSError when it cannot.
    The program built by `compiled` is loaded as it is (a worker builds it once; each child only
    loads it), else libseccomp builds and loads it here."""
    program = compiled()
    if program is None:
        _build(load=True)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


@functools.cache
def compiled() -> bytes | None:
    """The filter as a BPF program, built once per process: libseccomp's work (and finding the
    library, which runs ldconfig) done by a worker before it forks instead of in every child.
    None where libseccomp is missing."""
    if _library() is None:
        return None
    return _build(load=False)


def _build(*, load: bool) -> bytes | None:
    """Build the filter; load it into this process, or return it as BPF."""
    library = _library()
    if library is None:
        raise OSError("libseccomp is not installed (Debian/Ubuntu: apt-get install libseccomp2)")
    refuse = _ACT_ERRNO | errno.EPERM
    context = library.seccomp_init(_ACT_ALLOW)
    if not context:
        raise OSError("seccomp_init failed")
    try:
        for name in REFUSED:
            number = library.seccomp_syscall_resolve_name(name.encode())
            if number < 0:
                continue  # not a call on this architecture
            _check(library.seccomp_rule_add_array(context, refuse, number, 0, None), name)
        not_unix = (_ArgCmp * 1)(_ArgCmp(0, _CMP_NE, _AF_UNIX, 0))  # socket(domain, ...): only AF_UNIX
        _check(library.seccomp_rule_add_array(context, refuse, library.seccomp_syscall_resolve_name(b"socket"), 1, not_unix), "socket")
        if load:
            _check(library.seccomp_load(context), "loading the filter")
            return None
        exported = os.memfd_create("grader-seccomp", os.MFD_CLOEXEC)
        try:
            _check(library.seccomp_export_bpf(context, exported), "exporting the filter")
            os.lseek(exported, 0, os.SEEK_SET)
            program = b"".join(iter(lambda: os.read(exported, 1 << 16), b""))
        finally:
            os.close(exported)
        if not program or len(program) % 8:
            raise OSError(f"seccomp: the exported filter has {len(program)} bytes, not whole instructions")
        return program
    finally:
        library.seccomp_release(context)


def _check(result: int, what: str) -> None:
    if result < 0:
        raise OSError(-result, f"seccomp: {what} failed")
