"""Benchmark `grader run`: seconds per submission and peak memory of the whole process tree.

Generates a cohort of N submissions (mostly correct, some wrong, one invalid), grades it with
the real CLI in a child process while sampling the RSS of every process in its tree, and writes
bench/results.md and bench/results.json with a description of the machine.

    .venv/bin/python bench/bench_grading.py --count 30
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import variants as v  # noqa: E402  (the test suite's realistic student notebooks)
from proc_memory import tree_memory  # noqa: E402

COHORT = [
    ("correct", v.notebook_cells()),
    ("correct_sequential", v.notebook_cells(v.NET_SEQUENTIAL)),
    ("correct", v.notebook_cells()),
    ("relu", v.notebook_cells(v.NET_RELU)),
    ("correct_defaults", v.notebook_cells(v.NET_DEFAULTS)),
    ("wrong_channels", v.notebook_cells(v.NET_WRONG_CHANNELS)),
    ("correct", v.notebook_cells()),
    ("no_zero_grad", v.notebook_cells(loop=v.LOOP_NO_ZERO_GRAD)),
    ("raises", v.notebook_cells(loop=v.LOOP_RAISES_MID_EPOCH)),
    ("correct_magics", v.MAGIC_CELLS),
]


def make_cohort(folder: Path, count: int) -> None:
    for i in range(count):
        name, cells = COHORT[i % len(COHORT)]
        v.write_notebook(folder / f"s{i:03d}_{name}.ipynb", cells)
    if count >= 10:
        (folder / "zz_invalid.ipynb").write_text('{"cells": [')


def grade_and_measure(folder: Path, out: Path, sandbox: str) -> dict[str, float]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        # --force: grade everything, never reuse results stored by an earlier run
        [sys.executable, "-m", "grader", "run", str(folder), "-o", str(out / "report.csv"), "--force", "--sandbox", sandbox, "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_memory(proc.pid, with_pss=False)[0])
        time.sleep(0.05)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"grader run failed with exit code {proc.returncode}")
    return {"wall_s": wall, "peak_rss_mb": peak / 2**20}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="submissions in the cohort (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the single-submission case per mode (default 3)")
    parser.add_argument("--cohort-repeat", type=int, default=2, help="runs of the cohort per mode (default 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench")
    args = parser.parse_args()

    results: dict[str, object] = {"date": time.strftime("%Y-%m-%d"), "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        single = tmp_path / "single"
        v.write_notebook(single / "alice.ipynb", v.notebook_cells())
        cohort = tmp_path / "cohort"
        make_cohort(cohort, args.count)
        rows = len(list(cohort.iterdir()))
        # The two modes alternate, so drift in the machine's speed falls on both alike.
        singles: dict[str, list[dict[str, float]]] = {"bwrap": [], "none": []}
        cohorts: dict[str, list[dict[str, float]]] = {"bwrap": [], "none": []}
        for _ in range(args.repeat):
            for sandbox in ("bwrap", "none"):
                singles[sandbox].append(grade_and_measure(single, tmp_path, sandbox))
        for _ in range(args.cohort_repeat):
            for sandbox in ("bwrap", "none"):
                cohorts[sandbox].append(grade_and_measure(cohort, tmp_path, sandbox))
        for sandbox in ("bwrap", "none"):
            single_wall = statistics.median(r["wall_s"] for r in singles[sandbox])
            cohort_wall = statistics.median(r["wall_s"] for r in cohorts[sandbox])
            results[sandbox] = {
                "single_correct_submission_wall_s": round(single_wall, 2),
                "cohort_submissions": rows,
                "cohort_wall_s": round(cohort_wall, 2),
                "seconds_per_submission_in_cohort": round(cohort_wall / rows, 2),
                "marginal_seconds_per_submission": round((cohort_wall - single_wall) / (rows - 1), 3),
                "peak_rss_mb_single": round(max(r["peak_rss_mb"] for r in singles[sandbox])),
                "peak_rss_mb_cohort": round(max(r["peak_rss_mb"] for r in cohorts[sandbox])),
            }
    sandboxed, plain = results["bwrap"], results["none"]
    results["sandbox_overhead"] = {
        "per_submission_s": round(sandboxed["marginal_seconds_per_submission"] - plain["marginal_seconds_per_submission"], 3),
        "per_run_s": round(sandboxed["single_correct_submission_wall_s"] - plain["single_correct_submission_wall_s"], 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    rows_md = [
        ("one correct submission: `grader run` wall time, process start, worker start and reference check included (median of %d runs)" % args.repeat, "single_correct_submission_wall_s", "s"),
        (f"cohort of {sandboxed['cohort_submissions']} submissions (mostly correct, some wrong, one invalid): total wall time (median of {args.cohort_repeat} runs)", "cohort_wall_s", "s"),
        ("cohort: seconds per submission (total / count)", "seconds_per_submission_in_cohort", "s"),
        ("marginal seconds per extra submission", "marginal_seconds_per_submission", "s"),
        ("peak RSS of the whole process tree, single submission", "peak_rss_mb_single", "MB"),
        ("peak RSS of the whole process tree, cohort", "peak_rss_mb_cohort", "MB"),
    ]
    table = "\n".join(f"| {label} | {sandboxed[key]} {unit} | {plain[key]} {unit} |" for label, key, unit in rows_md)
    overhead = results["sandbox_overhead"]
    (args.out / "results.md").write_text(
        f"""# Grading benchmark ({results['date']})

Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, torch {m['torch']}
({m['platform']}). One worker (`--workers 1`), CPU only, every submission graded afresh (`--force`).

| measure | `--sandbox bwrap` | `--sandbox none` |
|---|---:|---:|
{table}

Sandbox overhead: {overhead['per_submission_s']} s per submission (marginal), {overhead['per_run_s']} s per
`grader run` (starting bubblewrap, probing it once). Differences of a few hundredths of a second are
within run-to-run noise on this machine.

Reproduce: `.venv/bin/python bench/bench_grading.py --count {args.count}`.
"""
    )
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
