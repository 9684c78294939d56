"""Hostile and broken submissions, graded in one `grader run` batch inside the sandbox.

Every one must end with the batch complete, the honest rows untouched, and its own row holding
zero or partial points with an `error` naming the cause.
"""

from __future__ import annotations

import http.server
import json
import random
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import nbformat
import pandas as pd
import pytest

import variants as v
from conftest import FULL, ROOT
from grader.isolate.bubblewrap import sandbox_status

if not sys.platform.startswith("linux"):
    pytest.skip("the bubblewrap sandbox is Linux-only", allow_module_level=True)

TOKEN = uuid.uuid4().hex[:10]
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


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        type(self).hits += 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _CountingHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def _hostile_folder(folder: Path, port: int) -> dict[str, object]:
    """Write the batch; returns what each row must show."""
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
        "endless_loop": (cells(loop="def training_loop(n_epochs, optimizer, model, loss_fn, train_loader):\n    while True:\n        pass\n"), {"loop.trains": 0}, "the training_loop check timed out after 10 s"),
        "memory_bomb": (cells(net_with("self.hog = [torch.ones(256 * 1024**2) for _ in range(12)]")), NET_ZERO, "Net() failed: out of memory (over the limit):"),
        "sys_exit": (cells(loop=loop_with("import sys; sys.exit(0)")), {"loop.trains": 0}, "SystemExit(0)"),
        "os_exit": (cells(v.NET.replace("out = out.view(-1, 8 * 8 * 8)", "import os; os._exit(0)")), NET_BROKEN, "the Net checks stopped early: the code exited the process"),
        "self_sigkill": (cells(loop=loop_with("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")), {"loop.trains": 0}, "the training_loop check was killed (SIGKILL)"),
        "segfault": (cells(v.NET.replace("out = out.view(-1, 8 * 8 * 8)", "import ctypes; ctypes.string_at(0)")), NET_BROKEN, "the Net checks crashed (SIGSEGV)"),
        "prints_200mb": (cells(loop=loop_with("for _ in range(200):\n    print('x' * 1024 * 1024)")), FULL, ""),
        "fake_scores_on_stdout": (cells(v.NET_RELU, loop_with("print('{\"net.forward\": 20, \"total\": 100}')")), {"net.forward": 0}, ""),
        "patches_torch": (
            cells(v.NET_RELU, extra=["torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\ntorch.isclose = lambda a, b, **k: torch.ones_like(a, dtype=torch.bool)"]),
            {"net.forward": 0},
            "",
        ),
        "reads_files": (cells(net_with("import os\n" + scan)), NET_ZERO, "found: []"),
        "http_request": (cells(net_with(f"import urllib.request\ntry:\n    urllib.request.urlopen('http://127.0.0.1:{port}/leak', timeout=3)\nexcept Exception:\n    pass")), FULL, ""),
        "writes_outside": (cells(net_with(f"for p in ['/tmp/grader-{TOKEN}', '../grader-{TOKEN}', '../../grader-{TOKEN}', 'grader-{TOKEN}']:\n    try:\n        open(p, 'w').write('x')\n    except OSError:\n        pass")), FULL, ""),
        "process_bomb": (cells(loop=loop_with(f"import subprocess\nfor _ in range(300):\n    subprocess.Popen(['sleep', '{SLEEP}'])")), {"loop.trains": 0}, ("started more than 64 processes", "Resource temporarily unavailable")),
        "forges_report": (
            cells(net_with(
                "import os, json\n"
                "fake = {'kind': 'instantiate', 'defined': True, 'is_class': True, 'is_module_class': True, 'error': None, 'alternatives': []}\n"
                "for fd in range(3, 64):\n"
                "    try:\n"
                "        os.write(fd, (json.dumps(fake) + '\\n').encode())\n"
                "    except OSError:\n"
                "        pass"
            )),
            NET_ZERO,
            "could not be trusted: the submission's code wrote to the grader's report channel",
        ),
        "stderr_warnings": (cells(net_with("import sys, warnings\nwarnings.warn('this is deprecated', UserWarning)\nprint('UserWarning: torch says hi', file=sys.stderr)")), FULL, ""),
        "z_honest": (cells(v.NET_SEQUENTIAL), FULL, ""),
    }
    expected: dict[str, object] = {}
    for name, (notebook_cells, lost, phrase) in submissions.items():
        v.write_notebook(folder / f"{name}.ipynb", notebook_cells)
        expected[name] = ("graded", {**FULL, **lost}, phrase)

    (folder / "invalid_json.ipynb").write_text('{"cells": [{"cell_type": "code", "source": ')
    (folder / "empty.ipynb").write_bytes(b"")
    (folder / "random_bytes.ipynb").write_bytes(random.Random(7).randbytes(4096))
    (folder / "latin1.py").write_bytes("# Übung\n".encode("latin-1") + v.NET.encode())
    expected.update(
        invalid_json=("invalid", {n: 0 for n in FULL}, "invalid JSON"),
        empty=("invalid", {n: 0 for n in FULL}, "file is empty"),
        random_bytes=("invalid", {n: 0 for n in FULL}, "not a notebook"),
        latin1=("invalid", {n: 0 for n in FULL}, "save it as UTF-8"),
    )

    v3 = {
        "nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "old"},
        "worksheets": [{"cells": [{"cell_type": "code", "language": "python", "input": c, "outputs": [], "metadata": {}} for c in cells()], "metadata": {}}],
    }
    (folder / "nbformat_v3.ipynb").write_text(json.dumps(v3))
    expected["nbformat_v3"] = ("graded", FULL, "")

    markdown_only = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("I ran out of time.")])
    nbformat.write(markdown_only, str(folder / "no_code_cells.ipynb"))
    expected["no_code_cells"] = ("graded", {n: 0 for n in FULL}, "Net not defined")

    big = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells()])
    image = "iVBORw0KGgo" + "A" * (40 * 1024 * 1024)
    big.cells[-1].outputs = [nbformat.v4.new_output("display_data", data={"image/png": image})]
    nbformat.write(big, str(folder / "big_output.ipynb"))
    expected["big_output"] = ("graded", FULL, "")
    return expected


@pytest.fixture(scope="module")
def hostile_batch(tmp_path_factory, server):
    if not sandbox_status().active:
        pytest.fail(f"these tests need the bubblewrap sandbox: {sandbox_status().reason}")
    root = tmp_path_factory.mktemp("hostile")
    folder = root / "submissions"
    folder.mkdir()
    expected = _hostile_folder(folder, server.server_address[1])
    assignment = root / "assignment"
    shutil.copytree(ROOT / "assignments" / "cifar2", assignment)
    config = assignment / "assignment.toml"
    config.write_text(config.read_text().replace("timeout_s = 60", "timeout_s = 25").replace("check_timeout_s = 30", "check_timeout_s = 10").replace("memory_mb = 4096", "memory_mb = 2048"))
    out = root / "out"
    done = subprocess.run(
        [sys.executable, "-m", "grader", "run", str(folder), "-o", str(out / "report.csv"),
         "--assignment", str(assignment), "--reference", str(ROOT / "reference" / "cifar2.py")],
        capture_output=True, text=True, cwd=folder, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    frame = pd.read_csv(out / "report.csv", keep_default_na=False).set_index("student")
    return frame, expected, root, done


def test_every_row_is_written_with_the_expected_points(hostile_batch):
    frame, expected, _, _ = hostile_batch
    assert sorted(frame.index) == sorted(expected)
    for student, (status, points, phrase) in expected.items():
        row = frame.loc[student]
        assert row["status"] == status, (student, row["error"])
        assert {n: row[n] for n in FULL} == points, (student, row["error"])
        phrases = phrase if isinstance(phrase, tuple) else (phrase,)
        assert any(p in row["error"] for p in phrases), (student, row["error"])


def test_honest_rows_are_untouched(hostile_batch):
    frame, _, _, _ = hostile_batch
    for student in ("a_honest", "z_honest", "nbformat_v3", "big_output", "prints_200mb", "http_request", "writes_outside", "stderr_warnings"):
        assert frame.loc[student, "total"] == 100 and frame.loc[student, "error"] == "", student


def test_no_request_reached_the_host(hostile_batch, server):
    assert _CountingHandler.hits == 0


def test_nothing_was_written_outside_the_sandbox(hostile_batch):
    _, _, root, _ = hostile_batch
    leftovers = [p for p in [Path(f"/tmp/grader-{TOKEN}"), root / f"grader-{TOKEN}", root.parent / f"grader-{TOKEN}"] if p.exists()]
    leftovers += list(root.rglob(f"grader-{TOKEN}"))
    assert leftovers == []


def test_no_process_outlives_the_run(hostile_batch):
    # The 300 sleeps were started inside the sandbox with a length no other process uses.
    survivors = subprocess.run(["pgrep", "-f", f"sleep {SLEEP}"], capture_output=True, text=True).stdout
    assert survivors.strip() == ""


def test_huge_output_is_kept_short_in_feedback(hostile_batch):
    _, _, root, _ = hostile_batch
    feedback = (root / "out" / "feedback" / "prints_200mb.md").read_text()
    assert len(feedback) < 400_000


def test_a_40_mb_output_image_is_graded_fast(grade, tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in v.notebook_cells()])
    notebook.cells[-1].outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo" + "A" * (40 * 1024 * 1024)})]
    path = tmp_path / "big.ipynb"
    nbformat.write(notebook, str(path))
    result = grade(path)
    assert result.total == 100
    assert result.seconds < 10, result.seconds
