"""Landlock and the seccomp filter, the layers for machines where bubblewrap cannot start: each
child reads only Python and the data, writes only its scratch folder, opens no network socket
(TCP, UDP), and signals, inspects or traces no process outside it.
Every attack is shown to succeed in the same child without the layer, so the tests prove
something; and a correct notebook still earns full marks under it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import variants as v
from conftest import FULL, ROOT, points

from grader.isolate import landlock, seccomp
from grader.isolate.bubblewrap import bwrap_command, readable_paths, sandbox_status
from grader.isolate.client import Worker
from grader.load import Submission
from grader.pipeline import grade_submission
from grader.reference.check import verified_reference_expectations

pytestmark = pytest.mark.skipif(not landlock.abi(), reason="this kernel offers no Landlock")

# A child, forked by run_in_child as a worker forks it, tries each attack and reports what it got.
ATTACKS = """\
import json, os, socket, sys
from grader.isolate.sandbox import ChildLimits, run_in_child

secret, planted, port = sys.argv[1], sys.argv[2], int(sys.argv[3])

def attempt(action):
    try:
        action()
        return "done"
    except OSError as exc:
        return type(exc).__name__

def ptrace_attach():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    # PTRACE_SEIZE: traced without being stopped; the kernel detaches when this child exits
    if libc.ptrace(0x4206, os.getppid(), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "ptrace")

def body(emit):
    emit({
        "kind": "attacks",
        "read a file outside": attempt(lambda: open(secret).read()),
        "write a file outside": attempt(lambda: open(planted, "w").write("planted")),
        "connect to a TCP port": attempt(lambda: socket.create_connection(("127.0.0.1", port), timeout=2).close()),
        "signal the worker": attempt(lambda: os.kill(os.getppid(), 0)),
        "read the worker's environment": attempt(lambda: open(f"/proc/{os.getppid()}/environ", "rb").read()),
        "send a UDP packet": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", port))),
        "attach to the worker with ptrace": attempt(ptrace_attach),
        "write its scratch folder": attempt(lambda: open("scratch.txt", "w").write("fine")),
        "write its temporary folder": attempt(lambda: __import__("tempfile").TemporaryFile().write(b"fine")),
    })

run = run_in_child(body, ChildLimits(timeout_s=20, memory_mb=1024))
print(json.dumps(run.observations[0] if run.observations else {"crashed": run.stderr}))
"""

BLOCKED = ("read a file outside", "write a file outside", "connect to a TCP port", "signal the worker", "read the worker's environment")
FILTERED = ("send a UDP packet", "attach to the worker with ptrace")  # by the seccomp filter beside Landlock


@pytest.mark.parametrize("limited", [True, False], ids=["landlock", "without"])
def test_a_child_under_landlock_reads_writes_connects_and_signals_nothing_outside(tmp_path, limited):
    secret = tmp_path / "reference.py"
    secret.write_text("class Net: ...  # the instructor's solution\n")
    planted = tmp_path / "planted.txt"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    script = tmp_path / "attacks.py"
    script.write_text(ATTACKS)
    env = {key: value for key, value in os.environ.items() if key != landlock.LANDLOCK_ENV}
    if limited:  # as the grading host sets it for a worker whose children Landlock limits
        env[landlock.LANDLOCK_ENV] = os.pathsep.join(readable_paths())
    try:
        done = subprocess.run(
            [sys.executable, str(script), str(secret), str(planted), str(server.getsockname()[1])],
            capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
        )  # fmt: skip
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["write its scratch folder"] == got["write its temporary folder"] == "done", got
    for attack in BLOCKED:
        assert (got[attack] != "done") is limited, (attack, got)
    for attack in FILTERED:
        assert (got[attack] != "done") is (limited and seccomp.available()), (attack, got)
    assert planted.exists() is not limited


@pytest.mark.parametrize("layered", [True, False], ids=["with landlock", "bubblewrap alone"])
def test_inside_bubblewrap_landlock_keeps_a_child_from_its_worker(tmp_path, layered):
    """Inside bubblewrap the worker is the one process a child can reach: with the layers its
    signals and its /proc entries are out of reach. (What the child may read is bubblewrap's to
    decide there: its private /tmp stays readable and writable, as without the layers.)"""
    if not sandbox_status().active:
        pytest.skip(f"bubblewrap cannot start here: {sandbox_status().reason}")
    secret = tmp_path / "reference.py"
    secret.write_text("class Net: ...  # the instructor's solution\n")
    script = tmp_path / "attacks.py"
    script.write_text(ATTACKS)
    env = {key: value for key, value in os.environ.items() if key != landlock.LANDLOCK_ENV}
    if layered:
        env[landlock.LANDLOCK_ENV] = os.pathsep.join(readable_paths())
    done = subprocess.run(
        [*bwrap_command([tmp_path]), sys.executable, str(script), str(secret), str(tmp_path / "planted.txt"), "9"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["write its scratch folder"] == got["write its temporary folder"] == "done", got
    for attack in ("signal the worker", "read the worker's environment"):
        assert (got[attack] != "done") is layered, (attack, got)
    assert got["write a file outside"] != "done" and got["connect to a TCP port"] != "done"  # bubblewrap's own


def _planting_loop(planted: Path) -> str:
    """The lecture's loop, which first writes a file where the grader keeps its results."""
    head = "def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n"
    return v.LOOP.replace(head, f"{head}    open({str(planted)!r}, 'w').write('planted')\n")


@pytest.mark.parametrize("sandbox", ["landlock", "none"])
def test_grading_under_landlock_gives_full_marks_and_stops_a_planted_file(cifar2, tmp_path, sandbox):
    correct = v.write_notebook(tmp_path / "correct.ipynb", v.notebook_cells())
    planted = tmp_path / "planted.txt"
    hostile = v.write_notebook(tmp_path / "hostile.ipynb", v.notebook_cells(loop=_planting_loop(planted)))
    with Worker(sandbox=sandbox) as worker:
        assert worker.sandbox.landlock is (sandbox == "landlock")
        expected = verified_reference_expectations(cifar2, worker, ROOT / "reference" / "cifar2.py")
        assert points(grade_submission(Submission("correct", correct), cifar2, worker, expected)) == FULL
        attacked = grade_submission(Submission("hostile", hostile), cifar2, worker, expected)
    if sandbox == "landlock":
        assert not planted.exists()
        assert points(attacked) == {**FULL, "loop.trains": 0} and "PermissionError" in attacked.error
    else:  # the same notebook plants its file without the layer
        assert planted.read_text() == "planted" and points(attacked) == FULL


def test_a_missing_folder_is_skipped_and_the_rest_still_applies(tmp_path):
    """readable_paths names folders some machines lack (/lib32, /libx32): they are skipped."""
    script = tmp_path / "missing.py"
    script.write_text(
        "import sys\nfrom grader.isolate import landlock\n"
        f"landlock.restrict(['/no/such/folder', *sys.argv[1:]], [{str(tmp_path)!r}])\n"
        "try:\n    open('/etc/hostname').read()\n    print('read')\nexcept OSError:\n    print('denied')\n"
    )
    done = subprocess.run([sys.executable, str(script), *readable_paths()], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "denied"  # /etc/hostname is not among what the child may read
