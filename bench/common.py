"""What the benchmark scripts share: the machine's description, the cohorts they grade, a whole
`grader run` timed with its results read back, the memory and CPU time of processes read from
/proc (Linux only), and the writing of a benchmark's .json and .md, or of its .md alone from the
committed .json (`--render-only`: the figures stay those measured, only their wording changes).

Importing it puts this checkout and tests/ first on sys.path: a benchmark measures the grader
beside it, with the test suite's student variants (tests/variants.py). It measures nothing itself.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import variants as v  # noqa: E402  (tests/variants.py, which the path above makes importable; the scripts take it from here)

GRADER = [sys.executable, "-m", "grader"]
CORRECT, WRONG, TIMEOUT = "correct", "wrong", "times_out"
CATEGORIES = (CORRECT, WRONG, TIMEOUT)


# ---------------------------------------------------------------- the machine
def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        memory_kb = 0
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory_gib": f"{memory_kb / 2**20:.1f}",
        "python": platform.python_version(),
        "torch": metadata.version("torch"),
        "platform": platform.platform(),
    }


def load_average() -> list[float]:
    """Other work on this shared machine slows every figure: each report says how busy it was."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


# ---------------------------------------------------------------- cohorts
@dataclass(frozen=True)
class Template:
    """One kind of submission a cohort repeats: a notebook generated from `cells`, or `file` copied as it is."""

    variant: str
    category: str  # CORRECT, WRONG or TIMEOUT
    cells: list[str] | None = None
    file: Path | None = None
    total: float | None = None  # the total grader must give it, where known


@dataclass(frozen=True)
class Member:
    student: str
    path: Path
    template: Template


# The lecture's loop with the epoch counter never advanced: trains until something stops it.
LOOP_ENDLESS = v.LOOP.replace("    for epoch in range(1, n_epochs + 1):", "    epoch = 1\n    while epoch <= n_epochs:")
assert LOOP_ENDLESS != v.LOOP, "tests/variants.py LOOP changed: update LOOP_ENDLESS"

# One cycle of 20: 12 correct, 7 wrong, 1 endless loop. The first six hold every category, so a
# tiny cohort still exercises each path.
GENERATED = [
    Template("correct", CORRECT, v.notebook_cells()),
    Template("relu", WRONG, v.notebook_cells(v.NET_RELU)),
    Template("endless_loop", TIMEOUT, v.notebook_cells(loop=LOOP_ENDLESS)),
    Template("correct_sequential", CORRECT, v.notebook_cells(v.NET_SEQUENTIAL)),
    Template("no_zero_grad", WRONG, v.notebook_cells(loop=v.LOOP_NO_ZERO_GRAD)),
    Template("correct_magics", CORRECT, v.MAGIC_CELLS),
    Template("correct", CORRECT, v.notebook_cells()),
    Template("correct_modules", CORRECT, v.notebook_cells(v.NET_MODULES)),
    Template("wrong_channels", WRONG, v.notebook_cells(v.NET_WRONG_CHANNELS)),
    Template("correct_defaults", CORRECT, v.notebook_cells(v.NET_DEFAULTS)),
    Template("correct_across_cells", CORRECT, v.ACROSS_CELLS),
    Template("raises", WRONG, v.notebook_cells(loop=v.LOOP_RAISES_MID_EPOCH)),
    Template("correct_reshape", CORRECT, v.notebook_cells(v.NET_RESHAPE)),
    Template("correct_device", CORRECT, v.notebook_cells(loop=v.DEVICE_LOOP)),
    Template("avgpool", WRONG, v.notebook_cells(v.NET_AVGPOOL)),
    Template("correct", CORRECT, v.notebook_cells()),
    Template("no_step", WRONG, v.notebook_cells(loop=v.LOOP_NO_STEP)),
    Template("correct_sequential", CORRECT, v.notebook_cells(v.NET_SEQUENTIAL)),
    Template("hardcoded_batch", WRONG, v.notebook_cells(v.NET_HARDCODED_BATCH)),
    Template("correct_magics", CORRECT, v.MAGIC_CELLS),
]
# Each correct layout once, in the order the cycle first has it.
CORRECT_LAYOUTS = list({t.variant: t for t in GENERATED if t.category == CORRECT}.values())


def corpus_templates() -> list[Template]:
    """Every notebook and script in tests/corpus with its expected total (tests/corpus/expected.csv)."""
    corpus = ROOT / "tests" / "corpus"
    with open(corpus / "expected.csv", newline="") as f:
        totals = {row["student"]: float(row["total"]) for row in csv.DictReader(f)}
    return [
        Template(path.stem, CORRECT if totals[path.stem] == 100 else WRONG, file=path, total=totals[path.stem])
        for path in sorted(corpus.iterdir())
        if path.stem in totals and path.suffix in (".ipynb", ".py")
    ]


def make_cohort(folder: Path, count: int, templates: list[Template]) -> list[Member]:
    """`count` submissions cycling through `templates`, each under its own student name."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    width = max(3, len(str(count - 1)))
    members = []
    for i in range(count):
        template = templates[i % len(templates)]
        student = f"s{i:0{width}d}_{template.variant}"
        if template.file is not None:
            path = folder / f"{student}{template.file.suffix}"
            shutil.copyfile(template.file, path)
        else:
            path = v.write_notebook(folder / f"{student}.ipynb", template.cells or [])
        members.append(Member(student, path, template))
    return members


# ---------------------------------------------------------------- processes, read from /proc
def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces): [0] is the state."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- a whole `grader run`
@dataclass
class GraderRun:
    command: list[str]
    seconds: float
    started_epoch: float
    rows: dict[str, dict[str, Any]]  # student: the report's status, error, total and max_total, the gradebook's seconds and graded_at
    log: str


def run_grader(folder: Path, out: Path, options: list[str], *, env: dict[str, str] | None = None) -> GraderRun:
    """`grader run FOLDER -o OUT/report.csv OPTIONS` in a fresh process and a fresh OUT; its wall
    time, and each submission's result read back from the report and the gradebook."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    command = [*GRADER, "run", str(folder), "-o", str(out / "report.csv"), *options]
    started_epoch, started = time.time(), time.perf_counter()
    with open(out / "grader.log", "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=log, cwd=ROOT, env=env)
        try:
            proc.wait(timeout=1800)
        except subprocess.TimeoutExpired:  # a hung run must not hold the benchmark forever
            proc.kill()
            proc.wait()
    seconds = time.perf_counter() - started
    text = (out / "grader.log").read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"`grader run {' '.join(options)}` failed with exit code {proc.returncode}:\n{text[-3000:]}")
    with open(out / "report.csv", newline="") as f:
        rows = {
            row["student"]: {"status": row["status"], "error": row["error"], "total": float(row["total"]), "max_total": float(row["max_total"])}
            for row in csv.DictReader(f)
        }
    with sqlite3.connect(out / "gradebook.sqlite") as db:
        for student, graded_at, result in db.execute("SELECT student, graded_at, result FROM results"):
            if student in rows:
                rows[student]["seconds"] = json.loads(result).get("seconds")
                rows[student]["graded_at"] = datetime.fromisoformat(graded_at).timestamp()
    return GraderRun(command, seconds, started_epoch, rows, text)


def steady_per_second(rows: dict[str, dict[str, Any]]) -> float | None:
    """Results stored per second from the first to the last: the run's pace with its start-up left out."""
    stored = sorted(r["graded_at"] for r in rows.values() if r.get("graded_at") is not None)
    return (len(stored) - 1) / (stored[-1] - stored[0]) if len(stored) > 1 and stored[-1] > stored[0] else None


def reference_expectations(assignment_dir: Path) -> tuple[Any, Any, float]:
    """What `grader run` computes before grading: the reference observed and verified; and how long it took."""
    from grader.assignment import find_assignment
    from grader.isolate.client import Worker
    from grader.reference.check import verified_reference_expectations

    started = time.perf_counter()
    assignment = find_assignment(str(assignment_dir))
    with Worker(sandbox="none") as worker:
        expected = verified_reference_expectations(assignment, worker, ROOT / "reference" / "cifar2.py")
    return assignment, expected, time.perf_counter() - started


# ---------------------------------------------------------------- reports
def report_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--out", type=Path, default=BENCH, help=f"where {name}.md and {name}.json go (default bench/)")
    parser.add_argument("--render-only", action="store_true", help=f"write {name}.md again from --out's {name}.json, measuring nothing")


def write_report(name: str, results: dict[str, Any], markdown: Callable[[dict[str, Any]], str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown(results))
    print(markdown(results))


def render_only(name: str, markdown: Callable[[dict[str, Any]], str], out: Path) -> None:
    """`name`.md again from `name`.json. A note written by hand under the title (a `>` quote, for
    example that later work made the figures stale) stays: it belongs to those figures."""
    text = markdown(json.loads((out / f"{name}.json").read_text()))
    committed = out / f"{name}.md"
    if committed.is_file():
        rest = committed.read_text().partition("\n\n")[2]
        if rest.startswith("> "):
            note = rest.partition("\n\n")[0]
            title, _, body = text.partition("\n\n")
            text = f"{title}\n\n{note}\n\n{body}"
    committed.write_text(text)
