"""The unprivileged user: a worker run as root without bubblewrap drops each child to a uid of its
own. Each thing the drop stops is shown to happen in the same child without it (as root), so the
tests prove something; the probe that decides whether children can drop says why not where
Python lies in a folder other users cannot enter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from isolation_modes import open_folder

from grader.isolate import unprivileged

pytestmark = pytest.mark.skipif(not unprivileged.needed(), reason="dropping to another uid needs root")

# A child forked by run_in_child, as a worker forks it, with and without the drop.
CHILD = """\
import json, os, subprocess, sys
from grader.isolate import sandbox
from grader.isolate.sandbox import ChildLimits, run_in_child

secret, drop = sys.argv[1], sys.argv[2] == "drop"
if drop:
    os.environ["GRADER_CHILD_USER"] = "1"
    sandbox.claim_child_uid()

def attempt(action):
    try:
        return f"done: {action()}"
    except OSError as exc:
        return type(exc).__name__

def fork_many():
    sleepers = [subprocess.Popen(["sleep", "5"]) for _ in range(12)]
    return len(sleepers)

def body(emit):
    emit({
        "kind": "tried",
        "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
        "read root's file": attempt(lambda: len(open(secret).read())),
        "signal the worker": attempt(lambda: os.kill(os.getppid(), 0)),
        "start 12 processes": attempt(fork_many),
        "write its scratch folder": attempt(lambda: open("scratch.txt", "w").write("fine")),
        "read its own fds": attempt(lambda: len(os.listdir("/proc/self/fd"))),
    })

run = run_in_child(body, ChildLimits(timeout_s=30, memory_mb=1024, max_processes=8))
print(json.dumps(run.observations[0] if run.observations else {"crashed": run.stderr, "exit": run.exit_code}))
"""


def _child(tmp_path: Path, drop: bool) -> dict:
    secret = tmp_path / "secret.txt"
    secret.write_text("the reference")
    secret.chmod(0o600)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    done = subprocess.run([sys.executable, str(script), str(secret), "drop" if drop else "keep"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_dropped_child_runs_as_its_own_uid_and_reaches_nothing_of_root(tmp_path):
    kept, dropped = _child(tmp_path, drop=False), _child(tmp_path, drop=True)
    assert "crashed" not in dropped, dropped
    assert (kept["uid"], kept["gid"]) == (0, 0)
    assert unprivileged.FIRST_UID <= dropped["uid"] < unprivileged.FIRST_UID + unprivileged.SLOTS
    assert dropped["gid"] == dropped["uid"] and dropped["groups"] == []
    # Root's file and the worker: reachable as root, not after the drop.
    assert kept["read root's file"] == "done: 13" and kept["signal the worker"] == "done: None"
    assert dropped["read root's file"] == "PermissionError" and dropped["signal the worker"] == "PermissionError"
    # RLIMIT_NPROC (8 here) holds the dropped child; root ignores it.
    assert kept["start 12 processes"] == "done: 12"
    assert dropped["start 12 processes"] == "BlockingIOError"
    # What a child needs still works: its scratch folder, its own /proc entries.
    for tried in (kept, dropped):
        assert tried["write its scratch folder"] == "done: 4" and tried["read its own fds"].startswith("done: ")


def test_python_in_a_closed_folder_keeps_children_root_and_says_which_folder():
    folder = open_folder("closed-python-")
    try:
        closed = folder / "closed"
        inner = closed / "python" / "lib"
        inner.mkdir(parents=True)
        (inner / "os.py").write_text("")
        closed.chmod(0o700)
        readable, why = unprivileged.status((str(inner),))
        assert not readable and f"{inner} is not readable by other users ({closed} has mode 700)" in why
        closed.chmod(0o755)
        unprivileged.status.cache_clear()  # asked once per process, as folders do not change under a run
        assert unprivileged.status((str(inner),)) == (True, "each child runs as an unprivileged uid of its own (64100 and up) with no groups, not as root")
    finally:
        shutil.rmtree(folder)


CLAIM = """\
import sys, time
from grader.isolate import unprivileged
print(unprivileged.claim_uid(), flush=True)
time.sleep(30)
"""


def test_two_workers_claim_two_uids_and_a_stopped_workers_uid_is_swept(tmp_path):
    script = tmp_path / "claim.py"
    script.write_text(CLAIM)
    holders = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        uids = [int(holder.stdout.readline()) for holder in holders]  # type: ignore[union-attr]
        assert len(set(uids)) == 2
        # A process left running as one of them, detached from everything: found by its uid alone.
        sleep = f"60.{os.getpid()}"
        subprocess.run(["setsid", "--fork", "sleep", sleep], user=uids[0], group=uids[0], extra_groups=[], check=True)
        assert _running(sleep)
        assert unprivileged.kill_processes_of(uids[0]) == 1
        time.sleep(0.1)
        assert not _running(sleep)
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


def _running(sleep: str) -> bool:
    return subprocess.run(["pgrep", "-f", f"sleep {sleep}"], capture_output=True).returncode == 0
