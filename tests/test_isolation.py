"""Student code runs in limited child processes: a hang, crash, exit or memory blow-up costs only
the affected checks of that row, with an error naming the cause."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import pytest
import variants as v
from conftest import FULL, ROOT, points

from grader.assignment import Limits
from grader.isolate.bubblewrap import TMP_BYTES, bwrap_command, sandbox_status
from grader.isolate.client import Worker
from grader.load import Submission
from grader.pipeline import grade_submission
from grader.reference.check import verified_reference_expectations

NET_ZERO = {n: 0 for n in FULL if n.startswith("net.") and n != "net.instantiate"}
# Layers and parameter counts are still judged from __init__ when forward never finishes.
FORWARD_BROKEN = {"net.shapes": 0, "net.forward": 0, "net.trains": 0}


@pytest.fixture
def grade_fast(reference_worker, cifar2, tmp_path):
    """Grade with short time limits so hangs are cut quickly."""
    worker, expected = reference_worker
    quick = dataclasses.replace(cifar2, limits=Limits(timeout_s=12, check_timeout_s=5, memory_mb=1024))

    def _grade(net: str = v.NET, loop: str = v.LOOP, name: str = "student"):
        path = v.write_notebook(tmp_path / f"{name}.ipynb", v.notebook_cells(net, loop))
        return grade_submission(Submission(name, path), quick, worker, expected)

    return _grade


def test_endless_training_loop_times_out_and_net_checks_still_count(grade_fast):
    loop = "def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n    while True:\n        pass\n"
    started = time.monotonic()
    result = grade_fast(loop=loop)
    assert time.monotonic() - started < 12
    assert points(result) == {**FULL, "loop.trains": 0}
    assert "the training_loop check timed out after 5 s" in result.error


def test_endless_forward_costs_the_net_checks_only(grade_fast):
    net = v.NET.replace("out = out.view(-1, 8 * 8 * 8)", "while True:\n            pass")
    result = grade_fast(net=net)
    assert points(result) == {**FULL, **FORWARD_BROKEN}
    assert "the Net checks timed out after 5 s" in result.error


def test_sys_exit_in_constructor_is_an_error_not_a_crash(grade_fast):
    net = v.NET.replace("super().__init__()", "super().__init__()\n        import sys; sys.exit(0)")
    result = grade_fast(net=net)
    assert points(result) == {**FULL, **NET_ZERO, "net.instantiate": 0}
    assert "Net() failed: SystemExit(0)" in result.error


def test_os_exit_in_training_loop_stops_only_that_check(grade_fast):
    loop = "import os\n\ndef training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n    os._exit(0)\n"
    result = grade_fast(loop=loop)
    assert points(result) == {**FULL, "loop.trains": 0}
    assert "the training_loop check stopped early: the code exited the process" in result.error


def test_segfault_in_forward_is_reported_as_a_crash(grade_fast):
    net = v.NET.replace("out = out.view(-1, 8 * 8 * 8)", "import ctypes; ctypes.string_at(0)")
    result = grade_fast(net=net)
    assert points(result) == {**FULL, **FORWARD_BROKEN}
    assert "the Net checks crashed (SIGSEGV)" in result.error


def test_memory_cap_stops_a_memory_bomb(grade_fast):
    net = v.NET.replace("super().__init__()", "super().__init__()\n        self.hog = torch.ones(2 * 1024**3 // 4)")
    result = grade_fast(net=net)
    assert points(result)["net.instantiate"] == 0
    assert points(result)["loop.trains"] == 20
    assert "Net() failed" in result.error and "alloc" in result.error.lower()


def test_processes_started_by_student_code_do_not_outlive_the_check(grade_fast):
    marker = "31.4159"
    loop = (
        "import subprocess\n\ndef training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n"
        f"    subprocess.Popen(['sleep', '{marker}'])\n    while True:\n        pass\n"
    )
    grade_fast(loop=loop)
    time.sleep(0.2)
    survivors = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True).stdout
    assert survivors.strip() == ""


# A child that detaches a grandchild the way a daemon does (fork, setsid, fork, parent exits),
# run by a process that is a subreaper, as every worker is, or is not.
DETACHING_CHILD = """\
import os, sys, time
from grader.isolate.sandbox import ChildLimits, become_subreaper, run_in_child

if sys.argv[1] == "subreaper":
    assert become_subreaper()

def body(emit):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", sys.argv[2]])
        os._exit(0)
    time.sleep(0.3)

run_in_child(body, ChildLimits(timeout_s=10, memory_mb=1024))
"""


def _survivors(marker: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True).stdout.split()


@pytest.mark.parametrize(("worker", "survives"), [("subreaper", False), ("plain", True)])
def test_a_process_that_detaches_from_the_child_dies_with_it_only_under_a_subreaper(tmp_path, worker, survives):
    """Outside bubblewrap, a grandchild in its own session escapes the child's process group; the
    worker, a subreaper, inherits it and kills it when the child's run ends. The same child run by
    a process that is not a subreaper leaves it running: the attack works without the layer."""
    marker = f"27.{len(worker)}1828"
    script = tmp_path / "detach.py"
    script.write_text(DETACHING_CHILD)
    try:
        done = subprocess.run([sys.executable, str(script), worker, marker], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 0, done.stderr
        time.sleep(0.2)
        assert bool(_survivors(marker)) is survives
    finally:
        for pid in _survivors(marker):
            subprocess.run(["kill", "-9", pid], check=False)


def test_detached_processes_do_not_outlive_the_check_without_the_sandbox(cifar2, tmp_path):
    """Graded with --sandbox none: the loop starts sleepers in sessions of their own."""
    marker = "16.18034"
    loop = (
        "import subprocess\n\ndef training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n"
        f"    for _ in range(5):\n        subprocess.Popen(['setsid', 'sleep', '{marker}'])\n"
        "    raise RuntimeError('done')\n"
    )
    path = v.write_notebook(tmp_path / "detacher.ipynb", v.notebook_cells(v.NET, loop))
    try:
        with Worker(sandbox="none") as worker:
            expected = verified_reference_expectations(cifar2, worker, ROOT / "reference" / "cifar2.py")
            result = grade_submission(Submission("detacher", path), cifar2, worker, expected)
        assert points(result)["loop.trains"] == 0
        time.sleep(0.2)
        assert _survivors(marker) == []
    finally:
        for pid in _survivors(marker):
            subprocess.run(["kill", "-9", pid], check=False)


def test_student_output_and_files_stay_out_of_the_grader(grade_fast, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loop = (
        "def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n"
        "    print('{\"net.forward\": 20}')\n"
        "    open('written_by_student.txt', 'w').write('x')\n" + v.LOOP.split(":\n", 1)[1]
    )
    result = grade_fast(loop=loop)
    assert points(result) == FULL
    assert not (tmp_path / "written_by_student.txt").exists()
    assert '{"net.forward": 20}' in result.output["loop stdout"]


def test_the_grader_process_never_imports_torch():
    code = (
        "import sys, grader.cli, grader.commands.run, grader.commands.selfcheck, grader.pipeline;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "False"


WIPE_AND_REPORT = """\
import json, os, sys
from grader.isolate import sandbox
bound = sys.argv[1]
os.makedirs("/tmp/student/a/b")
open("/tmp/student/a/b/weights.pt", "w").write("x")
open("/tmp/top.txt", "w").write("x")
os.symlink("/tmp/student", "/tmp/link")
open("/dev/shm/segment", "w").write("x")
open(os.path.join(os.path.dirname(bound), "beside_the_bound_folder.txt"), "w").write("x")
tried = []
unlink = os.unlink
os.unlink = lambda path, *args, **kwargs: (tried.append(os.path.basename(path)), unlink(path, *args, **kwargs))
sandbox._wipe_private_tmp()
left, tmpfs = [], os.lstat("/tmp").st_dev
for folder, subfolders, files in os.walk("/tmp"):  # what is left on the sandbox's own /tmp
    subfolders[:] = [f for f in subfolders if os.lstat(os.path.join(folder, f)).st_dev == tmpfs]
    left += [os.path.join(folder, f) for f in files]
kept = os.path.exists(os.path.join(bound, "deep", "data.txt"))
print(json.dumps({"left": left, "links": os.path.lexists("/tmp/link"), "shm": os.listdir("/dev/shm"), "kept": kept, "tried": tried}))
"""


def test_the_sandbox_empties_its_tmp_between_children_without_walking_folders_bound_into_it(tmp_path):
    # A clone or virtualenv under the host's /tmp is bound read-only into the sandbox's /tmp.
    # Emptying /tmp once walked all of it, failing file by file: most of a second per child.
    if not sandbox_status().active:
        pytest.fail(f"this test needs the bubblewrap sandbox: {sandbox_status().reason}")
    bound = tmp_path / "course"
    (bound / "deep").mkdir(parents=True)
    (bound / "deep" / "data.txt").write_text("kept")
    command = [*bwrap_command(read_only=[bound]), sys.executable, "-c", WIPE_AND_REPORT, str(bound)]
    seen = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    assert seen["left"] == [] and not seen["links"] and seen["shm"] == []
    assert seen["kept"]
    assert "data.txt" not in seen["tried"] and "weights.pt" in seen["tried"]


WRITE_EVERYWHERE = """\
import json, os
tried = {}
for path in ("/planted", "/dev/planted", "/tmp/planted", "/dev/shm/planted"):
    try:
        with open(path, "w") as f:
            f.write("x")
        tried[path] = "written"
    except OSError as exc:
        tried[path] = exc.strerror
with open("/dev/null", "w") as f:
    f.write("x")
sizes = {p: os.statvfs(p).f_blocks * os.statvfs(p).f_frsize for p in ("/", "/dev", "/tmp", "/dev/shm")}
print(json.dumps({"tried": tried, "sizes": sizes}))
"""


def test_inside_the_sandbox_only_its_capped_tmp_and_shm_take_files():
    """The sandbox's root and /dev are memory bwrap makes, as large as half the machine's RAM: a
    child writing file after file there could fill it. Only /tmp and /dev/shm, 512 MB each,
    take files; /dev/null still takes writes."""
    if not sandbox_status().active:
        pytest.fail(f"this test needs the bubblewrap sandbox: {sandbox_status().reason}")
    done = subprocess.run([*bwrap_command(), sys.executable, "-c", WRITE_EVERYWHERE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["tried"] == {
        "/planted": "Read-only file system", "/dev/planted": "Read-only file system", "/tmp/planted": "written", "/dev/shm/planted": "written",
    }  # fmt: skip
    assert seen["sizes"]["/tmp"] == seen["sizes"]["/dev/shm"] == TMP_BYTES


SCRATCH_FILLER = """\
import json, os, sys, time
from grader.isolate import sandbox
from grader.isolate.sandbox import ChildLimits, run_in_child

sandbox.MAX_SCRATCH_BYTES = 4 * 2**20  # small, so the test writes little
how = sys.argv[1]

def body(emit):
    if how == "many files":
        for i in range(10_001):
            open(f"f{i}", "w").close()
    elif how == "large files":
        for i in range(3):
            with open(f"f{i}", "wb") as f:
                f.write(os.urandom(2**21))
    else:
        with open("f", "wb") as f:
            f.write(os.urandom(2**20))
        time.sleep(1.5)
        return
    time.sleep(30)  # stopped long before, unless the limit does not hold

run = run_in_child(body, ChildLimits(timeout_s=60, memory_mb=1024))
print(json.dumps({"limit": run.limit_exceeded, "seconds": run.seconds}))
"""


@pytest.mark.parametrize(
    ("how", "stopped_for"),
    [("many files", "wrote more than 10,000 files"), ("large files", "wrote more than 4 MB of files"), ("within the limits", None)],
)
def test_outside_the_sandbox_a_child_that_fills_its_scratch_folder_is_stopped(tmp_path, how, stopped_for):
    """Without bubblewrap's capped /tmp the scratch folder lies on the machine's disk, where the
    file size limit alone lets a child write file after file; the watchdog stops it (long before
    the 30 s it then sleeps), and leaves a child within the limits to finish (a sleep of 1.5 s)."""
    script = tmp_path / "fill.py"
    script.write_text(SCRATCH_FILLER)
    done = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["limit"] == stopped_for
    assert run["seconds"] < 20 if stopped_for else run["seconds"] >= 1.5, run


NET_STEALS_REFERENCE = """\
class Net(nn.Module):
    def __new__(cls, *args, **kwargs):
        import gc
        for thing in gc.get_objects():
            if isinstance(thing, type) and thing.__name__ == "Net" and thing is not cls and issubclass(thing, nn.Module):
                return thing()
        return super().__new__(cls)

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 2)

    def forward(self, x):
        return self.fc(x.flatten(1))
"""


def test_a_net_cannot_pass_off_the_reference_net_as_its_own(grade_fast):
    # The Net checks' child never holds the reference Net (only its training_loop), so there is
    # nothing to find in memory: the student's own one-layer Net is what gets graded.
    result = grade_fast(net=NET_STEALS_REFERENCE)
    assert points(result)["net.forward"] == 0
    assert points(result)["net.layers"] < 15
