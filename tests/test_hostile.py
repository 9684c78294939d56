"""Hostile and broken submissions, graded in one `grader run` batch inside the sandbox.

Every one must end with the batch complete, the honest rows untouched, and its own row holding
zero or partial points with an `error` naming the cause.

The batch is graded three ways: with bubblewrap (the whole batch); with bubblewrap failing as on
GitHub's ubuntu-24.04 runners and the grader run by an unprivileged user, as there; and with
bubblewrap failing and the grader run as root, as in Gradescope's Docker, where each child drops
to an unprivileged uid of its worker's own. The two runs without bubblewrap, held by Landlock,
seccomp, the subreaper and (as root) the unprivileged user, grade the attacks on the host
(network, files, the reference on disk, processes that detach, the report channel) and the
honest notebooks, not the broken files, whose reading does not depend on the layers.

The attacks whose harm shows on the host (a request to a listener on the host's loopback, files
written into the host's folders) are also graded once with `--sandbox none`, in a folder of their
own: there they must succeed, or the sandboxed run's "nothing happened" would prove nothing. That
run grades those two attack notebooks only, never the rest of the batch.
"""

from __future__ import annotations

import http.server
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import variants as v
from conftest import FULL, ROOT
from isolation_modes import RUNNER_UID, failing_bwrap, open_folder, readable_python

from grader.isolate import landlock, unprivileged
from grader.isolate.bubblewrap import sandbox_status

if not sys.platform.startswith("linux"):
    pytest.skip("the bubblewrap sandbox is Linux-only", allow_module_level=True)

SLEEP = f"30.{uuid.uuid4().int % 10**6:06d}"  # a sleep length no other process on this machine uses
NET_BROKEN = {"net.shapes": 0, "net.forward": 0, "net.trains": 0}
NET_ZERO = {n: 0 for n in FULL if n.startswith("net.")}


def loop_with(prefix: str) -> str:
    """The correct training_loop, with `prefix` run first."""
    head, body = v.LOOP.split(":\n", 1)
    lines = "".join(f"    {line}\n" for line in prefix.splitlines())
    return f"{head}:\n{lines}{body}"


def net_with(prefix: str) -> str:
    """The correct Net, with `prefix` run at the start of __init__."""
    lines = "".join(f"        {line}\n" for line in prefix.splitlines())
    return v.NET.replace("        super().__init__()\n", "        super().__init__()\n" + lines)


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    """Records the path of every request on its server's `paths`."""

    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    """A listener on the host's loopback; each run's attack asks for a path of its own."""
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _RecordingHandler)
    httpd.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


# Where the file-writing attack puts a marker, by what the folder is; absolute paths, so that the
# unsandboxed run's markers land where the test looks. The first three are host folders the
# sandbox does not show: a write there must fail inside it. /tmp and home may exist inside the
# sandbox (its own /tmp; bwrap makes the folders above each mount, and a home may hold the Python
# installation, as /root/.pyenv does here), so a write there may succeed inside: it must still
# never reach the host's folder of the same name.
HIDDEN_FOLDERS = ("test's own folder", "submissions folder", "report folder")


@dataclass(frozen=True)
class Attacks:
    """What the attack notebooks of one run aim at, each run with its own token."""

    token: str
    url_path: str
    markers: dict[str, Path]  # folder described -> the marker file the attack tries to write

    @classmethod
    def aimed_at(cls, root: Path, submissions: Path, report: Path) -> Attacks:
        token = uuid.uuid4().hex[:10]
        name = f"leaked-{token}"
        folders = dict(zip(HIDDEN_FOLDERS, (root / "outside", submissions, report)))
        folders.update({"/tmp": Path("/tmp"), "home": Path.home()})
        return cls(token, f"/leak-{token}", {what: folder / name for what, folder in folders.items()})

    def request(self, port: int) -> str:
        """Student code: ask the host's listener for this run's path; print what happened."""
        return (
            "import urllib.request\n"
            "try:\n"
            f"    urllib.request.urlopen('http://127.0.0.1:{port}{self.url_path}', timeout=3)\n"
            "    print('ATTACK http ok')\n"
            "except Exception as exc:\n"
            "    print(f'ATTACK http blocked: {exc!r}')"
        )

    def write(self) -> str:
        """Student code: write each marker file; print, for each, whether the write went through."""
        return (
            f"for path in {[str(p) for p in self.markers.values()]!r}:\n"
            "    try:\n"
            "        with open(path, 'w') as f:\n"
            "            f.write('x')\n"
            "        print(f'ATTACK write {path} ok')\n"
            "    except OSError as exc:\n"
            "        print(f'ATTACK write {path} blocked: {exc!r}')"
        )

    def notebooks(self, port: int) -> dict[str, list[str]]:
        """The two attack notebooks; both are otherwise correct and earn full marks."""
        return {
            "http_request": v.notebook_cells(net_with(self.request(port))),
            "writes_outside": v.notebook_cells(net_with(self.write())),
        }

    def leftovers(self, root: Path) -> list[Path]:
        """Marker files the host can see: at the aimed paths, or anywhere under `root`."""
        found = {p for p in self.markers.values() if p.exists()}
        return sorted(found | set(root.rglob(f"leaked-{self.token}")))

    def remove_markers(self, root: Path) -> None:
        for path in self.leftovers(root):
            path.unlink()


def _attack_lines(report_json: Path, student: str) -> list[str]:
    """The `ATTACK ...` lines a student's code printed, from every child run, as `--format json`
    keeps them."""
    (result,) = [r for r in json.loads(report_json.read_text())["submissions"] if r["student"] == student]
    printed = "".join(text for key, text in result["output"].items() if key.endswith(" stdout"))
    return [line for line in printed.splitlines() if line.startswith("ATTACK ")]


def _fast_assignment(root: Path) -> Path:
    """A copy of the CIFAR-2 assignment with short timeouts and a small memory cap."""
    assignment = root / "assignment"
    shutil.copytree(ROOT / "assignments" / "cifar2", assignment)
    config = assignment / "assignment.toml"
    config.write_text(
        config.read_text()
        .replace("timeout_s = 60", "timeout_s = 25")
        .replace("check_timeout_s = 30", "check_timeout_s = 10")
        .replace("memory_mb = 4096", "memory_mb = 2048")
    )
    return assignment


def _grader_run(
    folder: Path, assignment: Path, report: Path, *options: str, python: str = sys.executable, env: dict[str, str] | None = None, user: int | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [python, "-m", "grader", "run", str(folder), "-o", str(report / "report.csv"), "--format", "csv,html,json",
         "--assignment", str(assignment), "--reference", str(ROOT / "reference" / "cifar2.py"), *options],
        check=False, capture_output=True, text=True, cwd=folder, timeout=900, env=env,
        user=user, group=user, extra_groups=[] if user is not None else None,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


# The notebooks whose harm, were it not stopped, would show on the host, and an honest one: what
# the runs without bubblewrap grade.
ON_THE_HOST = ("a_honest", "http_request", "writes_outside", "reads_files", "process_bomb", "detaches", "forges_report")


def _hostile_folder(folder: Path, attacks: Attacks, port: int, *, only_attacks: bool = False) -> dict[str, object]:
    """Write the batch (or, `only_attacks`, its ON_THE_HOST part); returns what each row must show."""
    cells = v.notebook_cells
    scan = (
        "found = []\n"
        "for top in ['/work', '/root', '/home', '/tmp', '..', '/']:\n"
        "    for dirpath, dirnames, filenames in os.walk(top):\n"
        "        dirnames[:] = [d for d in dirnames if d not in ('proc', 'sys', 'dev', 'usr', 'lib', 'bin', 'sbin', 'etc')\n"
        "                       and 'site-packages' not in dirpath and '.pyenv' not in dirpath]\n"
        "        found += [os.path.join(dirpath, f) for f in filenames if f.endswith(('.ipynb', '.csv', '.sqlite')) or f == 'cifar2.py']\n"
        "raise RuntimeError(f'found: {sorted(set(found))}')\n"
    )
    submissions = {
        "a_honest": (cells(), FULL, ""),
        "endless_loop": (
            cells(
                loop="def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n    while True:\n        pass\n"
            ),
            {"loop.trains": 0},
            "the training_loop check timed out after 10 s",
        ),
        "memory_bomb": (
            cells(net_with("self.hog = [torch.ones(256 * 1024**2) for _ in range(12)]")),
            NET_ZERO,
            "Net() failed: out of memory (over the limit):",
        ),
        "sys_exit": (cells(loop=loop_with("import sys; sys.exit(0)")), {"loop.trains": 0}, "SystemExit(0)"),
        "os_exit": (
            cells(v.NET.replace("out = out.view(-1, 8 * 8 * 8)", "import os; os._exit(0)")),
            NET_BROKEN,
            "the Net checks stopped early: the code exited the process",
        ),
        "self_sigkill": (
            cells(loop=loop_with("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")),
            {"loop.trains": 0},
            "the training_loop check was killed (SIGKILL)",
        ),
        "segfault": (
            cells(v.NET.replace("out = out.view(-1, 8 * 8 * 8)", "import ctypes; ctypes.string_at(0)")),
            NET_BROKEN,
            "the Net checks crashed (SIGSEGV)",
        ),
        "prints_200mb": (cells(loop=loop_with("for _ in range(200):\n    print('x' * 1024 * 1024)")), FULL, ""),
        "fake_scores_on_stdout": (
            cells(v.NET_RELU, loop_with('print(\'{"net.forward": 20, "total": 100}\')')),
            {"net.forward": 0},
            "",
        ),
        "patches_torch": (
            cells(
                v.NET_RELU,
                extra=[
                    "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\n"
                    "torch.isclose = lambda a, b, **k: torch.ones_like(a, dtype=torch.bool)"
                ],
            ),
            {"net.forward": 0},
            "",
        ),
        "reads_files": (cells(net_with("import os\n" + scan)), NET_ZERO, "found: []"),
        **{name: (attack, FULL, "") for name, attack in attacks.notebooks(port).items()},
        "process_bomb": (
            cells(
                loop=loop_with(f"import subprocess\nfor _ in range(300):\n    subprocess.Popen(['sleep', '{SLEEP}'])")
            ),
            {"loop.trains": 0},
            ("started more than 64 processes", "Resource temporarily unavailable"),
        ),
        "detaches": (
            cells(
                loop=loop_with(
                    "import os, subprocess\n"
                    f"subprocess.Popen(['setsid', 'sleep', '{SLEEP}'])\n"
                    "if os.fork() == 0:\n"
                    "    if os.fork() == 0:\n"
                    "        os.setsid()\n"
                    f"        os.execvp('sleep', ['sleep', '{SLEEP}'])\n"
                    "    os._exit(0)\n"
                    "print(f'ATTACK uid {os.getuid()} groups {os.getgroups()}')"
                )
            ),
            FULL,
            "",
        ),
        "forges_report": (
            cells(
                net_with(
                    "import os, json\n"
                    "fake = {'kind': 'instantiate', 'defined': True, 'is_class': True, 'is_module_class': True, 'error': None, 'alternatives': []}\n"
                    "for fd in range(3, 64):\n"
                    "    try:\n"
                    "        os.write(fd, (json.dumps(fake) + '\\n').encode())\n"
                    "    except OSError:\n"
                    "        pass"
                )
            ),
            NET_ZERO,
            "could not be trusted: the submission's code wrote to the grader's report channel",
        ),
        "stderr_warnings": (
            cells(
                net_with(
                    "import sys, warnings\nwarnings.warn('this is deprecated', UserWarning)\nprint('UserWarning: torch says hi', file=sys.stderr)"
                )
            ),
            FULL,
            "",
        ),
        "z_honest": (cells(v.NET_SEQUENTIAL), FULL, ""),
    }
    expected: dict[str, object] = {}
    for name, (notebook_cells, lost, phrase) in submissions.items():
        if only_attacks and name not in ON_THE_HOST:
            continue
        v.write_notebook(folder / f"{name}.ipynb", notebook_cells)
        expected[name] = ("graded", {**FULL, **lost}, phrase)
    if only_attacks:
        return expected

    (folder / "invalid_json.ipynb").write_text('{"cells": [{"cell_type": "code", "source": ')
    (folder / "empty.ipynb").write_bytes(b"")
    (folder / "random_bytes.ipynb").write_bytes(random.Random(7).randbytes(4096))
    (folder / "latin1.py").write_bytes("# Übung\n".encode("latin-1") + v.NET.encode())
    expected.update(
        invalid_json=("invalid", dict.fromkeys(FULL, 0), "invalid JSON"),
        empty=("invalid", dict.fromkeys(FULL, 0), "file is empty"),
        random_bytes=("invalid", dict.fromkeys(FULL, 0), "not a notebook"),
        latin1=("invalid", dict.fromkeys(FULL, 0), "save it as UTF-8"),
    )

    v3 = {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {"name": "old"},
        "worksheets": [
            {
                "cells": [
                    {"cell_type": "code", "language": "python", "input": c, "outputs": [], "metadata": {}}
                    for c in cells()
                ],
                "metadata": {},
            }
        ],
    }
    (folder / "nbformat_v3.ipynb").write_text(json.dumps(v3))
    expected["nbformat_v3"] = ("graded", FULL, "")

    markdown_only = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("I ran out of time.")])
    nbformat.write(markdown_only, str(folder / "no_code_cells.ipynb"))
    expected["no_code_cells"] = ("graded", dict.fromkeys(FULL, 0), "Net not defined")

    return expected


@dataclass(frozen=True)
class GradedBatch:
    mode: str  # one of MODES
    frame: pd.DataFrame  # the CSV report, by student
    expected: dict[str, object]  # student -> (status, points, phrase in the error)
    root: Path
    report: Path  # the report folder
    attacks: Attacks
    said: str  # what the run wrote on stderr, on one line


# bubblewrap; bubblewrap failing as on ubuntu-24.04, the grader run by an unprivileged user as
# there; bubblewrap failing, the grader run as root as in Gradescope's Docker.
MODES = ("bubblewrap", "landlock as a user", "landlock as root")


@pytest.fixture(scope="module", params=MODES)
def hostile_batch(request, tmp_path_factory, server):
    mode = request.param
    python, env, user = sys.executable, None, None
    if mode == "bubblewrap":
        if not sandbox_status().active:
            pytest.fail(f"these tests need the bubblewrap sandbox: {sandbox_status().reason}")
        root = tmp_path_factory.mktemp("hostile")
    else:
        if not landlock.abi():
            pytest.skip("this kernel offers no Landlock")
        readable, why = readable_python()
        if readable is None:
            pytest.skip(why)
        root = open_folder("hostile-")
        python, env = readable.executable, readable.environment(failing_bwrap(root / "bin"))
        if mode == "landlock as a user":
            user = RUNNER_UID
            env.update(HOME=str(root / "home"), XDG_CACHE_HOME=str(root / "home" / ".cache"))
    folder, report = root / "submissions", root / "out"
    for path in (folder, report, root / "outside", root / "home"):
        path.mkdir()
    attacks = Attacks.aimed_at(root, folder, report)
    expected = _hostile_folder(folder, attacks, server.server_address[1], only_attacks=mode != "bubblewrap")
    assignment = _fast_assignment(root)
    if user is not None:
        for path in [root, *root.rglob("*")]:
            os.chown(path, user, user, follow_symlinks=False)
    try:
        done = _grader_run(folder, assignment, report, python=python, env=env, user=user)
        frame = pd.read_csv(report / "report.csv", keep_default_na=False).set_index("student")
        yield GradedBatch(mode, frame, expected, root, report, attacks, " ".join(done.stderr.split()))
    finally:
        attacks.remove_markers(root)  # had a marker reached the host, the test says so; do not leave it
        if mode != "bubblewrap":
            shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class UnsandboxedRun:
    attacks: Attacks
    report: Path  # the report folder
    found_on_host: list[Path]  # the marker files the host could see after the run (since removed)


@pytest.fixture(scope="module")
def unsandboxed_attacks(tmp_path_factory, server):
    """The control: the two attack notebooks alone, graded with `--sandbox none` in a folder of
    their own; the marker files they leave are removed before the tests look."""
    root = tmp_path_factory.mktemp("unsandboxed")
    folder, report = root / "submissions", root / "out"
    for path in (folder, report, root / "outside"):
        path.mkdir()
    attacks = Attacks.aimed_at(root, folder, report)
    for name, notebook_cells in attacks.notebooks(server.server_address[1]).items():
        v.write_notebook(folder / f"{name}.ipynb", notebook_cells)
    try:
        _grader_run(folder, _fast_assignment(root), report, "--sandbox", "none", "--workers", "1")
        found = attacks.leftovers(root)
        attacks.remove_markers(root)
        yield UnsandboxedRun(attacks, report, found)
    finally:
        attacks.remove_markers(root)


def test_every_row_is_written_with_the_expected_points(hostile_batch):
    frame, expected = hostile_batch.frame, hostile_batch.expected
    assert sorted(frame.index) == sorted(expected)
    for student, (status, points, phrase) in expected.items():
        row = frame.loc[student]
        assert row["status"] == status, (student, row["error"])
        assert {n: row[n] for n in FULL} == points, (student, row["error"])
        phrases = phrase if isinstance(phrase, tuple) else (phrase,)
        assert any(p in row["error"] for p in phrases), (student, row["error"])


def test_honest_rows_are_untouched(hostile_batch):
    frame = hostile_batch.frame
    honest = ("a_honest", "z_honest", "nbformat_v3", "prints_200mb", "http_request", "writes_outside", "detaches", "stderr_warnings")
    for student in [s for s in honest if s in hostile_batch.expected]:
        assert frame.loc[student, "total"] == 100 and frame.loc[student, "error"] == "", student


def test_the_run_says_which_layers_hold_and_children_run_as_whom(hostile_batch):
    said = hostile_batch.said
    (line,) = [line for line in _attack_lines(hostile_batch.report / "report.json", "detaches") if line.startswith("ATTACK uid ")][:1]
    uid = int(line.split()[2])
    if hostile_batch.mode == "bubblewrap":
        assert "without the bubblewrap sandbox" not in said and uid == os.getuid()
        return
    assert "bwrap: setting up uid map: Permission denied; Landlock ABI" in said and "seccomp filter" in said, said
    if hostile_batch.mode == "landlock as a user":
        assert uid == RUNNER_UID and "uid of its own" not in said, said
    else:  # root: each worker's children drop to a uid of the range no account uses, with no groups
        assert "each child runs as an unprivileged uid of its own" in said, said
        assert unprivileged.FIRST_UID <= uid < RUNNER_UID and line.endswith("groups []"), line


def test_a_request_from_the_sandbox_never_reaches_the_host(hostile_batch, server):
    lines = _attack_lines(hostile_batch.report / "report.json", "http_request")
    # The attack ran (else there would be no line), and each time the connection was refused.
    assert lines and all(line.startswith("ATTACK http blocked: ") for line in lines), lines
    assert hostile_batch.attacks.url_path not in server.paths


def test_without_the_sandbox_the_same_request_reaches_the_host(unsandboxed_attacks, server):
    run = unsandboxed_attacks
    assert "ATTACK http ok" in _attack_lines(run.report / "report.json", "http_request")
    assert run.attacks.url_path in server.paths


def test_nothing_the_sandbox_writes_reaches_the_host(hostile_batch):
    attacks = hostile_batch.attacks
    lines = _attack_lines(hostile_batch.report / "report.json", "writes_outside")
    for what, marker in attacks.markers.items():
        tried = [line for line in lines if line.startswith(f"ATTACK write {marker} ")]
        assert tried, f"the attack never tried the {what}: {lines}"
        if what in HIDDEN_FOLDERS:
            assert all(" blocked: " in line for line in tried), tried
    assert attacks.leftovers(hostile_batch.root) == []


def test_without_the_sandbox_the_same_writes_reach_the_host(unsandboxed_attacks):
    # As root the unsandboxed writes succeed trivially; as any user they succeed too: every
    # folder aimed at is the user's own (/tmp is open to all).
    run = unsandboxed_attacks
    lines = _attack_lines(run.report / "report.json", "writes_outside")
    for what, marker in run.attacks.markers.items():
        assert f"ATTACK write {marker} ok" in lines, (what, lines)
    assert run.found_on_host == sorted(run.attacks.markers.values())


def test_no_process_outlives_the_run(hostile_batch):
    # The 300 sleeps were started inside the sandbox with a length no other process uses.
    survivors = subprocess.run(["pgrep", "-f", f"sleep {SLEEP}"], capture_output=True, text=True).stdout
    assert survivors.strip() == ""


def test_huge_output_is_kept_short_in_feedback(hostile_batch):
    if "prints_200mb" not in hostile_batch.expected:
        pytest.skip("graded with bubblewrap only")
    feedback = (hostile_batch.report / "feedback" / "prints_200mb.md").read_text()
    assert len(feedback) < 400_000


def test_a_40_mb_output_image_is_graded_fast(grade, tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in v.notebook_cells()])
    notebook.cells[-1].outputs = [
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo" + "A" * (40 * 1024 * 1024)})
    ]
    path = tmp_path / "big.ipynb"
    nbformat.write(notebook, str(path))
    result = grade(path)
    assert result.total == 100
    assert result.seconds < 10, result.seconds
