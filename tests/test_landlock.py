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
from grader.isolate.bubblewrap import readable_paths
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


# As on GitHub's ubuntu-24.04 runners: bwrap is installed, and AppArmor refuses it its user namespace.
UBUNTU_24_BWRAP = "#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n"


def test_grader_run_where_bwrap_is_refused_falls_back_to_landlock_and_no_attack_escapes(tmp_path):
    """`grader run --sandbox auto` with a bwrap that fails as on ubuntu-24.04: the run says it
    uses Landlock, the honest notebook earns full marks, and each attack (a request to the host's
    loopback, files planted in the host's folders, a search of the disk for the reference,
    sleepers detached in sessions of their own) fails. tests/test_hostile.py shows the same
    request and writes succeed with --sandbox none, and the tests above each attack with and
    without the layers."""
    sleep = f"29.{os.getpid() % 100000:05d}"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    outside = tmp_path / "outside"
    outside.mkdir()
    planted = [outside / "planted.txt", Path("/tmp") / f"planted-{sleep}.txt"]
    attacks = (
        "import os, socket, subprocess\n"
        f"for path in {[str(p) for p in planted]!r}:\n"
        "    try:\n        open(path, 'w').write('x')\n    except OSError:\n        pass\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('ATTACK connected')\nexcept OSError:\n    pass\n"
        f"for _ in range(3):\n    subprocess.Popen(['setsid', 'sleep', '{sleep}'])\n"
        "found = [os.path.join(d, f) for top in ('/work', '/root', '/tmp') for d, _, files in os.walk(top) for f in files if f == 'cifar2.py']\n"
        "print('ATTACK found', found)\n"
    )
    submissions = tmp_path / "submissions"
    v.write_notebook(submissions / "honest.ipynb", v.notebook_cells())
    v.write_notebook(submissions / "attacker.ipynb", v.notebook_cells(loop=_planting_loop(outside / "from_loop.txt").replace(
        "    open(", "    " + attacks.replace("\n", "\n    ").rstrip() + "\n    open(", 1)))
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "bwrap").write_text(UBUNTU_24_BWRAP)
    (fake_bin / "bwrap").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "grader", "run", str(submissions), "-o", str(tmp_path / "out" / "r.csv"), "--format", "csv,json",
             "--assignment", "cifar2", "--workers", "1"],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        said = " ".join(done.stderr.split())
        assert "bwrap is installed but cannot create a sandbox here: bwrap: setting up uid map: Permission denied" in said
        assert "Landlock ABI" in said and "seccomp" in said
        report = json.loads((tmp_path / "out" / "r.json").read_text())
        rows = {r["student"]: r for r in report["submissions"]}
        assert sum(c["points"] for c in rows["honest"]["checks"]) == 100
        printed = "".join(text for key, text in rows["attacker"]["output"].items() if key.endswith(" stdout"))
        assert "ATTACK connected" not in printed and "ATTACK found []" in printed, printed
        assert not any(path.exists() for path in [*planted, outside / "from_loop.txt"])
        assert subprocess.run(["pgrep", "-f", f"sleep {sleep}"], capture_output=True, text=True).stdout == ""
    finally:
        server.close()
        subprocess.run(["pkill", "-9", "-f", f"sleep {sleep}"], check=False)
        for path in planted:
            path.unlink(missing_ok=True)
