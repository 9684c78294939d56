"""The machines the isolation tests stand in for: bubblewrap failing as on GitHub's ubuntu-24.04
runners, and a Python that users other than root can read, so that the grader can run as an
unprivileged user (as on those runners) or, run as root, drop its children to one (as in
Gradescope's Docker). bench/bench_isolation.py uses them too."""

from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from grader.isolate import unprivileged

ROOT = Path(__file__).resolve().parents[1]  # this checkout

# As on GitHub's ubuntu-24.04 runners: bwrap is installed, and AppArmor refuses it its user namespace.
UBUNTU_24_BWRAP = "#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n"
RUNNER_UID = unprivileged.FIRST_UID + unprivileged.SLOTS  # a user of no account, outside the children's range


def failing_bwrap(folder: Path) -> dict[str, str]:
    """Put a bwrap that fails as on ubuntu-24.04 into `folder`; the environment that finds it first."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bwrap").write_text(UBUNTU_24_BWRAP)
    (folder / "bwrap").chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200"}


def open_folder(prefix: str) -> Path:
    """A new folder under /tmp that every user may enter (pytest's own are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    folder.chmod(0o755)
    return folder


@dataclass(frozen=True)
class ReadablePython:
    executable: str
    pythonpath: str  # this checkout and this environment's site-packages

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, "PYTHONPATH": self.pythonpath}


def readable_python() -> tuple[ReadablePython | None, str]:
    """A Python 3 of this minor version that other users can read, with this checkout and the
    packages of this environment; or None and why there is none. This environment's own Python
    when it is readable, else the system's (here pyenv's lies under /root, which is 0700)."""
    if os.geteuid() != 0:
        return None, "these runs need root (to run as another user, or to drop the children to one)"
    site = sysconfig.get_paths()["purelib"]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for executable in (sys.executable, f"/usr/bin/{version}"):
        if not Path(executable).is_file():
            continue
        base = Path(executable).resolve().parent.parent
        paths = (str(base), site, str(ROOT))
        readable, why = unprivileged.status(paths)
        if readable:
            return ReadablePython(executable, os.pathsep.join([str(ROOT), site])), ""
    return None, f"no {version} that other users can read with this checkout and its packages: {why}"
