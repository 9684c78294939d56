"""`grader doctor`: which isolation layers are active on this machine, and why not.

Each layer is checked for real where that is possible: a probe process is started in exactly
the sandbox a grading worker gets, and tries to reach a server of the doctor's on 127.0.0.1, to
read the current folder and home folder, and to count the processes it can see.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grader.assignment import Assignment, available_assignments, load_assignment
from grader.errors import AssignmentConfigError
from grader.isolate import landlock, seccomp, unprivileged
from grader.isolate.bubblewrap import bwrap_command, sandbox_status
from grader.isolate.client import LANDLOCK_DOES, SECCOMP_DOES, child_user
from grader.version import __version__

_PROBE = """
import json, os, socket, sys
port, folders = int(sys.argv[1]), sys.argv[2:]
try:
    seen = {"uid": os.getuid(), "processes": len([p for p in os.listdir('/proc') if p.isdigit()])}
except OSError:  # Landlock: of /proc only its own entries
    seen = {"uid": os.getuid(), "processes": None}
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    seen["network"] = True
except OSError:
    seen["network"] = False
seen["visible"] = [f for f in folders if os.path.exists(f)]
print(json.dumps(seen))
"""


@dataclass
class Layer:
    name: str
    active: bool
    detail: str


def _private_samples() -> list[Path]:
    """A few files of the current and home folders that the sandbox must not show (the parts
    of Python's own installation that live there are shown on purpose)."""
    shown = [Path(a) for a in bwrap_command()[1:] if a.startswith("/")]
    samples: list[Path] = []
    for folder in (Path.cwd(), Path.home()):
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        hidden = [e for e in entries if not any(e == s or e in s.parents or s in e.parents for s in shown)]
        samples += hidden[:5]
    return samples


def _sandbox_probe(*, landlocked: bool = False) -> dict[str, object] | str:
    """Run the probe inside the worker's sandbox (or, `landlocked`, in a process limited as a
    child is where bubblewrap cannot start); its findings, or why it could not run."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    folders = [str(p) for p in _private_samples()]
    command = [sys.executable, "-c", _LANDLOCK_PROBE] if landlocked else [*bwrap_command(), sys.executable, "-c", _PROBE]
    try:
        done = subprocess.run(
            [*command, str(server.getsockname()[1]), *folders],
            capture_output=True, text=True, timeout=60,
        )
    finally:
        server.close()
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["no message"])[-1]
    return json.loads(done.stdout)


# Run like _PROBE, in a process limited as a worker's child is where bubblewrap cannot start.
_LANDLOCK_PROBE = """
from grader.isolate import landlock, seccomp
from grader.isolate.bubblewrap import readable_paths
landlock.restrict(readable_paths(), [])
if seccomp.available():
    seccomp.restrict()
""" + _PROBE


def _landlock_layer(bubblewrap: bool) -> Layer:
    version = landlock.abi()
    here = f"ABI {version}" if version else "this kernel offers none (Linux 5.13 or later)"
    if bubblewrap:  # a second layer here: never a reason to say the grader is not isolated
        if version:
            return Layer("Landlock", True, f"{here}; inside bubblewrap too: no signal to the worker, none of its /proc entries")
        return Layer("Landlock", True, f"not needed: bubblewrap isolates the workers ({here})")
    return Layer("Landlock", bool(version), f"{here}; used instead of bubblewrap: each child {LANDLOCK_DOES}" if version else here)


def _seccomp_layer(bubblewrap: bool) -> Layer:
    here = "libseccomp found" if seccomp.available() else "libseccomp is not installed (Debian/Ubuntu: apt-get install libseccomp2)"
    if bubblewrap:
        inside = f"inside bubblewrap too: {SECCOMP_DOES}" if seccomp.available() else f"not needed: bubblewrap isolates the workers ({here})"
        return Layer("seccomp filter", True, inside)
    return Layer("seccomp filter", seccomp.available(), f"beside Landlock: {SECCOMP_DOES}" if seccomp.available() else here)


def _unprivileged_layer(bubblewrap: bool) -> Layer:
    if bubblewrap:
        return Layer("unprivileged user", True, "not needed: bubblewrap isolates the workers, with every capability dropped")
    if not unprivileged.needed():
        return Layer("unprivileged user", True, "the grader does not run as root: children run as its user")
    dropped, why = child_user()
    return Layer("unprivileged user", dropped, why)


def isolation_layers() -> list[Layer]:
    status = sandbox_status()
    nproc = not unprivileged.needed() or (not status.active and child_user()[0])
    layers = [
        Layer("own process per check group", hasattr(os, "fork"), "student code never runs in the grader's process"),
        Layer("wall-clock limits", True, "per check group and per submission; the process group is killed"),
        Layer("memory limit", hasattr(resource, "RLIMIT_AS"), "RLIMIT_AS: memory_mb on top of what torch maps"),
        Layer("file size limit", hasattr(resource, "RLIMIT_FSIZE"), "RLIMIT_FSIZE: 64 MB per file"),
        Layer(
            "process count limit",
            True,
            "watchdog kills the child past limits.max_processes"
            + ("; RLIMIT_NPROC as well" if nproc else ""),
        ),
        Layer("clean environment", True, "only PATH, LANG and grader settings reach student code"),
        Layer("bubblewrap sandbox", status.active, status.reason),
        _landlock_layer(status.active),
        _seccomp_layer(status.active),
        _unprivileged_layer(status.active),
        Layer("subreaper", sys.platform.startswith("linux"), "what a child detaches (setsid, a double fork) comes to its worker and is killed with it"),
    ]
    landlocked = not status.active and bool(landlock.abi())
    if not status.active and not landlocked:
        for name in ("private filesystem view", "no network", "own PID namespace"):
            layers.append(Layer(name, False, "needs the bubblewrap sandbox or Landlock"))
        return layers
    probe = _sandbox_probe(landlocked=landlocked)
    if isinstance(probe, str):
        layers.append(Layer("sandbox probe", False, f"the probe failed: {probe}"))
        return layers
    by = "Landlock: " if landlocked else ""
    visible = probe["visible"]
    layers.append(
        Layer("private filesystem view", not visible, f"{by}files of the current and home folders are hidden" if not visible else f"visible: {visible}")
    )
    layers.append(
        Layer("no network", not probe["network"], f"{by}a server on 127.0.0.1 was unreachable" if not probe["network"] else "reached 127.0.0.1")
    )
    if landlocked:
        layers.append(Layer("own PID namespace", False, "needs bubblewrap: other processes' ids stay visible in /proc (not their contents)"))
    else:
        processes = int(str(probe["processes"]))
        layers.append(Layer("own PID namespace", processes <= 3, f"{processes} processes visible inside"))
    return layers


def allowed_packages(assignments: list[Assignment]) -> dict[str, list[str]]:
    """Each package some assignment lets student code import, with the assignments that do."""
    allowed: dict[str, list[str]] = {}
    for assignment in assignments:
        for package in assignment.packages:
            allowed.setdefault(package, []).append(assignment.name)
    return dict(sorted(allowed.items()))


def installed(package: str) -> bool:
    """Whether student code can import it: the workers run this very Python."""
    return importlib.util.find_spec(package) is not None


def doctor(console: Console | None = None) -> int:
    console = console or Console()
    console.print(f"grader {__version__}, Python {sys.version.split()[0]} ({sys.executable})")
    packages_ok = _report_packages(console)
    layers = isolation_layers()
    table = Table(title="Isolation of student code")
    table.add_column("layer")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for layer in layers:
        table.add_row(layer.name, "[green]active[/green]" if layer.active else "[red]missing[/red]", escape(layer.detail))
    console.print(table)
    missing = [layer.name for layer in layers if not layer.active]
    if missing:
        console.print(f"[yellow]Not fully isolated: {', '.join(missing)}.[/yellow] See README, 'Security model'.")
        return 1
    console.print("[green]All isolation layers are active.[/green]")
    return 0 if packages_ok else 1


def _report_packages(console: Console) -> bool:
    """The grading environment: packages the assignments let student code import. True if all
    are installed."""
    assignments = []
    for folder in available_assignments():
        try:
            assignments.append(load_assignment(folder))
        except AssignmentConfigError as exc:
            console.print(f"[yellow]{escape(str(exc))}[/yellow]", soft_wrap=True)
    table = Table(title="Packages student code may import (besides torch, torchvision, numpy, the standard library)")
    table.add_column("package")
    table.add_column("status")
    table.add_column("allowed by", overflow="fold")
    allowed = allowed_packages(assignments)
    for package, names in allowed.items():
        table.add_row(package, "[green]installed[/green]" if installed(package) else "[red]missing[/red]", escape(", ".join(names)))
    console.print(table)
    missing = [package for package in allowed if not installed(package)]
    if missing:
        console.print(
            f"[yellow]Missing: {', '.join(missing)}.[/yellow] Install {'it' if len(missing) == 1 else 'them'} where grading runs "
            f"(pip install {' '.join(missing)}); until then, student code that imports {'it' if len(missing) == 1 else 'them'} "
            "fails with a message saying so.",
            soft_wrap=True,
        )
    return not missing
