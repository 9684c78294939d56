"""Throughput of `grader run --workers N`, against grading the same cohort in fresh Jupyter kernels.

Generates a cohort of N submissions (mostly correct, some wrong, a few whose training_loop never
ends), then measures, on this machine:

- `grader run --workers W [--threads T]` for each setting asked (default: 1 worker, 1 worker with
  2 torch threads, 2 workers): submissions per minute, median
  per-submission wall time, scaling ratio (like for like: 1 thread per worker on both sides),
  peak memory of the whole process tree (RSS, and PSS, which counts pages shared by forked
  processes once), sampled from /proc;
- the checks alone: grader's probes run in-process on a correct submission in one warm process
  with torch imported; per-submission overhead = median per-submission wall time of correct
  submissions - the checks' own time (their CPU time at one torch thread; their wall time at as
  many threads as `grader run` gave its workers, read from the workers' environment in /proc);
- "the notebook way" (bench/notebook_way.py): each notebook executed top to bottom in a fresh
  Jupyter kernel with nbclient, like Otter-Grader or nbgrader, with the grader's synthetic data
  and training budget, then grader's own checks run in that kernel and scored by grader.compare;
  the totals must agree with `grader run` on the correct notebooks;
- RSS of a bare `python -c "import torch"`, the unit of the memory target.

It writes throughput.md and throughput.json (with the machine description) into --out.
`--sandbox none` against the default measures what the bubblewrap sandbox costs.

    .venv/bin/python bench/bench_throughput.py --count 100 --workers 1 1x2 2 --notebook-sample 20   # the figures in bench/throughput.md
    .venv/bin/python bench/bench_throughput.py --count 2 --workers 1 --notebook-sample 1 --check-repeat 1 --out /tmp/tp   # a quick check
    .venv/bin/python bench/bench_throughput.py --render-only   # throughput.md again from throughput.json, measuring nothing

Needs, beyond grader's own dependencies: ipykernel (the kernels) and matplotlib (the lecture
notebooks import it; a kernel stops the import cell at the first missing module).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import notebook_way

from grader.executors.pool import DEFAULT_THREADS


# ---------------------------------------------------------------- the assignment copy and the unit of memory
def write_assignment_copy(folder: Path, check_timeout_s: int) -> Path:
    """assignments/cifar2 with a shorter per-check time limit, so an endless loop costs seconds."""
    shutil.copytree(common.ROOT / "assignments" / "cifar2", folder)
    config = folder / "assignment.toml"
    text, n = re.subn(r"(?m)^check_timeout_s\s*=\s*\d+", f"check_timeout_s = {check_timeout_s}", config.read_text())
    if n != 1:
        raise SystemExit(f"{config}: no check_timeout_s line to shorten")
    config.write_text(text)
    return folder


def torch_import_rss_mb(repeat: int = 3) -> float:
    """Peak RSS of `python -c "import torch"` (CPU only, one thread), median of `repeat` runs."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = "import torch, resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    runs = [int(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout) for _ in range(repeat)]
    return statistics.median(runs) / 1024  # ru_maxrss is in KiB on Linux


# ---------------------------------------------------------------- grader run
def run_setting(text: str) -> str:
    """`W` or `WxT` (argparse type): W workers, T torch threads per worker."""
    parse_run_setting(text)
    return text


def parse_run_setting(text: str) -> tuple[int, int | None]:
    workers, _, threads = text.partition("x")
    try:
        w, t = int(workers), (int(threads) if threads else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected W or WxT (workers, threads), got {text!r}") from None
    if w < 1 or (t is not None and t < 1):
        raise argparse.ArgumentTypeError(f"workers and threads must be at least 1, got {text!r}")
    return w, t


def run_options(setting: str) -> str:
    workers, threads = parse_run_setting(setting)
    return f"--workers {workers}" + (f" --threads {threads}" if threads else "")


def grade_with_grader(
    setting: str, work: Path, assignment_dir: Path, sandbox: str, entries: list[common.Member], torch_mb: float
) -> tuple[common.GraderRun, dict[str, Any]]:
    """One whole `grader run` of the cohort with this setting, and its figures."""
    workers, threads = parse_run_setting(setting)
    options = ["--force", "--assignment", str(assignment_dir), "--reference", str(common.ROOT / "reference" / "cifar2.py"), "--sandbox", sandbox]
    options += ["--workers", str(workers)] + (["--threads", str(threads)] if threads else [])
    load_before = common.load_average()
    run = common.run_grader(work / "cohort", work / f"run-{setting}", options, sample_memory=True)
    assert run.memory is not None
    rows = run.rows
    n = len(rows)
    correct = [e.student for e in entries if e.template.category == common.CORRECT]
    stored = sorted((r["graded_at"], s) for s, r in rows.items() if r.get("graded_at") is not None)
    steady = common.steady_per_second(rows)
    intervals_correct = [after - before for (before, _), (after, student) in itertools.pairwise(stored) if student in correct]
    return run, {
        "workers": workers,
        "threads_option": threads,
        "command": " ".join(run.command[2:]).replace(str(common.ROOT) + "/", ""),
        "sandbox_active": "without the bubblewrap sandbox" not in run.log,
        "submissions": n,
        "wall_s": _r(run.seconds),
        "submissions_per_minute": _r(n / run.seconds * 60),
        "steady_submissions_per_minute": _r(steady * 60) if steady else None,
        "startup_s": _r(stored[0][0] - run.started_epoch - (rows[stored[0][1]].get("seconds") or 0)) if stored else None,
        "median_submission_s": _r(_median([r.get("seconds") for r in rows.values()]), 3),
        "median_correct_submission_s": _r(_median([rows[s].get("seconds") for s in correct if s in rows]), 3),
        "median_interval_correct_s": _r(_median(intervals_correct), 3),
        "timed_out": sum("timed out" in r["error"] for r in rows.values()),
        "correct_at_full_marks": f"{sum(rows[s]['total'] >= rows[s]['max_total'] for s in correct if s in rows)}/{len(correct)}",
        "peak_rss_mb": round(run.memory.peak_rss / 2**20),
        "peak_pss_mb": round(run.memory.peak_pss / 2**20),
        "peak_processes": run.memory.peak_processes,
        "worker_torch_threads": "/".join(sorted(run.memory.torch_threads)) or "unknown",
        "peak_rss_above_torch_imports_mb": round(run.memory.peak_rss / 2**20 - workers * torch_mb),
        "load_average_before": load_before,
        "load_average_after": common.load_average(),
    }


# ---------------------------------------------------------------- the notebook way
def choose_sample(entries: list[common.Member], k: int | None) -> list[common.Member]:
    """All entries, or k of them spread over the categories (one of each of the largest first,
    the rest in proportion to their size), evenly spaced within each category."""
    if k is None or k >= len(entries):
        return list(entries)
    by_category = {c: [e for e in entries if e.template.category == c] for c in common.CATEGORIES}
    order = sorted((c for c in common.CATEGORIES if by_category[c]), key=lambda c: -len(by_category[c]))
    take = dict.fromkeys(order, 0)
    for c in order[:k]:
        take[c] = 1
    left = k - sum(take.values())
    while left > 0:
        c = max((c for c in order if take[c] < len(by_category[c])), key=lambda c: len(by_category[c]) / (take[c] + 1))
        take[c] += 1
        left -= 1
    chosen = []
    for c in order:
        members = by_category[c]
        chosen += [members[int(i * len(members) / take[c])] for i in range(take[c])]
    return sorted(chosen, key=lambda e: e.student)


def grade_the_notebook_way(sample: list[common.Member], work: Path, config: Path, assignment: Any, expected: Any) -> dict[str, Any]:
    load_before = common.load_average()
    with common.MemorySampler(os.getpid(), include_root=False) as memory:  # the kernels (and their shells), not this process
        graded = notebook_way.grade_notebooks([member.path for member in sample], config, work, assignment, expected)
    notebooks: dict[str, dict[str, Any]] = {}
    for member in sample:
        outcome, score = graded[member.path]
        notebooks[member.student] = {
            "category": member.template.category,
            "seconds": outcome["seconds"],
            "timed_out": bool(outcome["timed_out_cells"]) or outcome["kernel_died"],
            "timed_out_cells": outcome["timed_out_cells"],
            "kernel_died": outcome["kernel_died"],
            "total": score["total"],
            "max_total": score["max_total"],
            "checks": score["checks"],
        }
    return {
        "notebooks": notebooks,
        "peak_rss_mb": memory.peak_rss / 2**20,
        "peak_pss_mb": memory.peak_pss / 2**20,
        "load_average_before": load_before,
        "load_average_after": common.load_average(),
    }


# ---------------------------------------------------------------- figures
def _median(values: list[float]) -> float | None:
    values = [x for x in values if x is not None]
    return statistics.median(values) if values else None


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def summarize_notebook_way(nb: dict[str, Any], entries: list[common.Member], reference_s: float) -> dict[str, Any]:
    done = nb["notebooks"]
    counts = {c: sum(e.template.category == c for e in entries) for c in common.CATEGORIES}
    all_mean = statistics.mean(r["seconds"] for r in done.values())
    per_category: dict[str, Any] = {}
    estimated = 0.0
    for c in common.CATEGORIES:
        times = [r["seconds"] for r in done.values() if r["category"] == c]
        mean = statistics.mean(times) if times else all_mean
        per_category[c] = {"in_cohort": counts[c], "executed": len(times), "mean_s": _r(mean), "mean_from": c if times else "all executed notebooks"}
        estimated += mean * counts[c]
    n = len(entries)
    extrapolated = len(done) < n
    return {
        "executed": len(done),
        "of": n,
        "extrapolated": extrapolated,
        "per_category": per_category,
        "median_notebook_s": _r(statistics.median(r["seconds"] for r in done.values())),
        "mean_notebook_s_cohort_mix": _r(estimated / n),
        "cohort_kernel_s": _r(estimated),
        "cohort_kernel_s_measured": None if extrapolated else _r(sum(r["seconds"] for r in done.values())),
        "reference_setup_s": _r(reference_s),
        "submissions_per_minute": _r(n / estimated * 60),
        "timed_out": sum(r["timed_out"] for r in done.values()),
        "peak_rss_mb": round(nb["peak_rss_mb"]),
        "peak_pss_mb": round(nb["peak_pss_mb"]),
        "load_average_before": nb["load_average_before"],
        "load_average_after": nb["load_average_after"],
    }


def agreement(nb: dict[str, Any], grader_rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    compared = []
    for student, r in sorted(nb["notebooks"].items()):
        g = grader_rows[student]["total"]
        compared.append({"student": student, "category": r["category"], "grader_total": g, "notebook_total": r["total"], "agree": abs(g - r["total"]) < 0.01})
    correct = [c for c in compared if c["category"] == common.CORRECT]
    return {
        "compared": len(compared),
        "agree": sum(c["agree"] for c in compared),
        "correct_compared": len(correct),
        "correct_agree": sum(c["agree"] for c in correct),
        "disagreements": [c for c in compared if not c["agree"]],
    }


def checks_own_time(config: Path, notebook: Path, repeat: int, threads: int) -> dict[str, Any]:
    """The checks alone at `threads` torch threads, as one `grader run` setting's children had:
    their CPU time at one thread (= their torch work), else their wall time (CPU time then counts
    the threads' waiting too)."""
    timed = notebook_way.time_checks_alone(config, notebook, repeat, threads)["median"]
    key = "cpu_s" if threads == 1 else "wall_s"
    measure = "CPU time of the checks alone, 1 thread" if threads == 1 else f"wall time of the checks alone, {threads} threads"
    return {"value": timed[key], "measure": measure}


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "**NOT met**")


# ---------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="submissions in the cohort (default 100)")
    parser.add_argument("--workers", type=run_setting, nargs="+", default=["1", "1x2", "2"], metavar="W[xT]",
                        help="`grader run` settings to measure: W workers, optionally xT torch threads per worker (--threads T); "
                        "without xT, grader's default (1 thread). Default: 1 1x2 2")
    parser.add_argument("--skip-notebook-way", action="store_true", help="do not execute notebooks in Jupyter kernels")
    parser.add_argument("--notebook-sample", type=int, metavar="K", help="execute only K notebooks the notebook way (spread over correct, "
                        "wrong and timing-out ones) and extrapolate the cohort's time from their per-category means")
    parser.add_argument("--check-timeout", type=int, default=10, help="check_timeout_s of the assignment copy, and the per-cell limit "
                        "of the notebook way (default 10; cifar2 itself has 30; at 5 the reference's own Net checks can time out on "
                        "a busy 2-core machine, which stops `grader run`)")
    parser.add_argument("--check-repeat", type=int, default=7, help="runs of the checks alone, in-process (default 7, after a warm-up)")
    parser.add_argument("--sandbox", default="auto", choices=("auto", "bwrap", "none"), help="passed to grader run (default auto)")
    common.report_arguments(parser, "throughput")
    args = parser.parse_args()
    if args.render_only:
        return common.render_only("throughput", markdown, args.out)
    if args.count < 1:
        parser.error("--count must be at least 1")
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        results = measure(args, Path(tmp))
    common.write_report("throughput", results, markdown, args.out)
    check = results.get("agreement")
    if check and check["correct_agree"] != check["correct_compared"]:
        raise SystemExit(f"the notebook way and grader run disagree on correct notebooks: {check['disagreements']}")


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": common.machine(),
        "arguments": {k: (str(val) if isinstance(val, Path) else val) for k, val in vars(args).items() if k != "render_only"},
        "load_average_at_start": common.load_average(),
    }
    assignment_dir = write_assignment_copy(work / "cifar2", args.check_timeout)
    entries = common.make_cohort(work / "cohort", args.count, common.GENERATED)
    results["cohort"] = {
        "submissions": len(entries),
        **{c: sum(e.template.category == c for e in entries) for c in common.CATEGORIES},
        "variants": sorted({e.template.variant for e in entries}),
        "check_timeout_s": args.check_timeout,
    }
    print(f"cohort: {results['cohort']}", file=sys.stderr)

    torch_mb = torch_import_rss_mb()
    results["torch_import_rss_mb"] = round(torch_mb)
    print(f"python -c 'import torch': {torch_mb:.0f} MB RSS", file=sys.stderr)

    assignment, expected, reference_s = common.reference_expectations(assignment_dir)
    results["cohort"]["training_epochs"] = assignment.training.epochs
    config = notebook_way.write_config(work / "checks.json", assignment, expected, common.ROOT / "reference" / "cifar2.py")
    checks = notebook_way.time_checks_alone(config, entries[0].path, args.check_repeat)
    results["checks_alone"] = {
        "submission": entries[0].student,
        "repeat": checks["repeat"],
        "torch_threads": checks["torch_threads"],
        **{key: round(value, 3) for key, value in checks["median"].items()},
    }
    print(f"checks alone (in-process, median of {checks['repeat']}): {checks['median']['wall_s']:.3f} s wall, "
          f"{checks['median']['cpu_s']:.3f} s CPU", file=sys.stderr)

    runs: dict[str, common.GraderRun] = {}
    results["grader_run"] = {}
    for setting in args.workers:
        # This machine's speed drifts (shared host): the checks alone are timed right before
        # and right after each run, at the run's torch threads, and the overhead uses their mean.
        child_threads = parse_run_setting(setting)[1] or DEFAULT_THREADS
        before = checks_own_time(config, entries[0].path, args.check_repeat, child_threads)
        print(f"grader run {run_options(setting)} ...", file=sys.stderr)
        runs[setting], summary = grade_with_grader(setting, work, assignment_dir, args.sandbox, entries, torch_mb)
        after = checks_own_time(config, entries[0].path, args.check_repeat, child_threads)
        results["grader_run"][setting] = summary
        summary["checks_own_before_after"] = f"{before['value']:.3f} / {after['value']:.3f} s"
        summary["checks_own_s"] = round((before["value"] + after["value"]) / 2, 3)
        summary["checks_own_measure"] = f"{before['measure']}, mean of before and after the run"
        median = summary["median_correct_submission_s"]
        summary["overhead_s"] = None if median is None else round(median - summary["checks_own_s"], 3)
        print(f"  workers {setting}: {summary['submissions_per_minute']} submissions/min, median {summary['median_submission_s']} s, "
              f"peak RSS {summary['peak_rss_mb']} MB", file=sys.stderr)
    results["grader_run_per_submission"] = {
        str(w): {
            student: {"total": row["total"], "seconds": _r(row.get("seconds"), 3), "timed_out": "timed out" in row["error"]}
            for student, row in sorted(run.rows.items())
        }
        for w, run in runs.items()
    }

    if not args.skip_notebook_way:
        sample = choose_sample(entries, args.notebook_sample)
        print(f"notebook way: {len(sample)} of {len(entries)} notebooks in fresh kernels ...", file=sys.stderr)
        nb = grade_the_notebook_way(sample, work / "kernels", config, assignment, expected)
        results["notebook_way"] = summarize_notebook_way(nb, entries, reference_s)
        base = runs.get("1") or next(iter(runs.values()), None)
        results["agreement"] = agreement(nb, base.rows) if base else None
        results["notebook_way_per_notebook"] = nb["notebooks"]
    results["targets"] = targets(results, torch_mb)
    return results


def _label(setting: str, run: dict[str, Any]) -> str:
    return f"`{run_options(setting)}` ({run['worker_torch_threads']} torch thread(s) per worker)"


def _one_worker(runs: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The 1-worker run to compare with: one torch thread (like for like with 2 workers, and with
    the checks' 1-thread CPU time)."""
    for setting in ("1", "1x1"):
        if setting in runs:
            return setting, runs[setting]
    return None


def targets(results: dict[str, Any], torch_mb: float) -> list[dict[str, Any]]:
    runs = results["grader_run"]
    one = _one_worker(runs)
    two = next(((k, runs[k]) for k in ("2", "2x1") if k in runs), None)
    checks_cpu = results["checks_alone"]["cpu_s"]
    rows: list[dict[str, Any]] = []

    overhead = measured = None
    if one and one[1].get("overhead_s") is not None:
        setting, run = one
        overhead = run["overhead_s"]
        median = run["median_correct_submission_s"]
        measured = (f"{overhead:.3f} s with {_label(setting, run)} = {median:.3f} s per correct submission - "
                    f"{run['checks_own_s']:.3f} s ({run['checks_own_measure']})")
        for other, r in runs.items():
            if other != setting and r["workers"] == 1 and r.get("overhead_s") is not None:
                measured += f"; with {_label(other, r)}: {r['overhead_s']:.3f} s ({r['checks_own_measure']})"
    rows.append({
        "target": "per-submission overhead (median, correct submissions, 1 worker) <= 0.3 s",
        "measured": measured,
        "value": _r(overhead, 3),
        "met": None if overhead is None else overhead <= 0.3,
    })
    scaling = None
    if one and two:
        scaling = two[1]["submissions_per_minute"] / one[1]["submissions_per_minute"]
        text = f"{scaling:.2f}x: {_label(*two)} {two[1]['submissions_per_minute']} vs {_label(*one)} {one[1]['submissions_per_minute']} submissions/min"
        if one[1]["steady_submissions_per_minute"] and two[1]["steady_submissions_per_minute"]:
            text += f" (steady state, first to last result: {two[1]['steady_submissions_per_minute'] / one[1]['steady_submissions_per_minute']:.2f}x)"
        for other, r in runs.items():
            if other != one[0] and r["workers"] == 1:
                text += f"; against {_label(other, r)}: {two[1]['submissions_per_minute'] / r['submissions_per_minute']:.2f}x"
    rows.append({
        "target": "2 workers >= 1.7x the throughput of 1 (whole run, start to end)",
        "measured": None if scaling is None else text,
        "value": _r(scaling),
        "met": None if scaling is None else scaling >= 1.7,
    })
    nb = results.get("notebook_way")
    for setting, run in runs.items():
        ratio = run["submissions_per_minute"] / nb["submissions_per_minute"] if nb else None
        # Both ways pay for the checks' own torch work: with zero overhead, W workers finish W
        # submissions per "checks' own time", and can be at most this much faster than the kernels.
        own = run.get("checks_own_s") or checks_cpu
        ceiling = nb["mean_notebook_s_cohort_mix"] / own * run["workers"] if nb else None
        rows.append({
            "target": f">= 10x the throughput of the notebook way (grader `{run_options(setting)}` vs one kernel at a time)",
            "measured": None if ratio is None else f"{ratio:.1f}x ({run['submissions_per_minute']} vs {nb['submissions_per_minute']} submissions/min"
            + (", notebook way extrapolated from a sample" if nb["extrapolated"] else "")
            + f"; both ways run the same checks ({own:.2f} s per submission with {run['worker_torch_threads']} torch thread(s) per worker), "
            f"so even with zero overhead this setting could reach at most {ceiling:.1f}x: a notebook takes "
            f"{nb['mean_notebook_s_cohort_mix']:.1f} s on average, with one thread)",
            "value": _r(ratio, 1),
            "met": None if ratio is None else ratio >= 10,
        })
    for setting, run in runs.items():
        w = run["workers"]
        limit = w * torch_mb + 1024
        per_worker_limit = w * (torch_mb + 1024)
        rows.append({
            "target": f"peak RSS of the whole tree, `{run_options(setting)}` <= {w} x torch import + 1 GB = {limit:.0f} MB",
            "measured": f"{run['peak_rss_mb']} MB RSS ({run['peak_rss_above_torch_imports_mb']} MB above {w} x {torch_mb:.0f} MB); "
            f"PSS {run['peak_pss_mb']} MB. Read per worker ({w} x (torch import + 1 GB) = {per_worker_limit:.0f} MB): "
            + ("met" if run["peak_rss_mb"] <= per_worker_limit else "not met"),
            "value": run["peak_rss_mb"],
            "met": run["peak_rss_mb"] <= limit,
        })
    return rows


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    cohort = results["cohort"]
    runs = results["grader_run"]
    lines = [
        f"# Throughput benchmark ({results['date']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, torch {m['torch']} ({m['platform']}).",
        f"Load average (1, 5, 15 min) at start: {', '.join(f'{x:.2f}' for x in results['load_average_at_start'])} "
        "(other work on the machine slows every figure below).",
        "",
        f"Cohort: {cohort['submissions']} generated notebooks (tests/variants.py): {cohort[common.CORRECT]} correct, {cohort[common.WRONG]} wrong, "
        f"{cohort[common.TIMEOUT]} whose training_loop never ends. Graded with a copy of assignments/cifar2 whose "
        f"`check_timeout_s` is {cohort['check_timeout_s']} s (30 s in cifar2), CPU only, every run `--force`; torch threads per worker "
        "as `grader run` chooses them (1) or as `--threads` sets them (see the table).",
        "",
        "## `grader run`",
        "",
    ]
    measures = [
        ("submissions per minute (whole run: process start, worker start, reference check included)", "submissions_per_minute", ""),
        ("submissions per minute, steady state (first result stored to last)", "steady_submissions_per_minute", ""),
        ("whole run wall time", "wall_s", " s"),
        ("start-up: process start to the first submission's grading", "startup_s", " s"),
        ("median per-submission wall time, all submissions (each result's own grading time)", "median_submission_s", " s"),
        ("median per-submission wall time, correct submissions", "median_correct_submission_s", " s"),
        ("median time between stored results, correct submissions (bookkeeping included)", "median_interval_correct_s", " s"),
        ("the checks alone, timed right before / right after this run (see below)", "checks_own_before_after", ""),
        ("the checks' own time per submission: their mean", "checks_own_s", " s"),
        ("per-submission overhead: median correct submission - the checks' own time", "overhead_s", " s"),
        ("submissions timed out", "timed_out", ""),
        ("correct submissions at full marks", "correct_at_full_marks", ""),
        ("peak RSS, whole process tree", "peak_rss_mb", " MB"),
        ("peak PSS, whole process tree (shared pages counted once)", "peak_pss_mb", " MB"),
        ("peak processes in the tree", "peak_processes", ""),
        ("torch threads per worker (GRADER_TORCH_THREADS seen in /proc)", "worker_torch_threads", ""),
        ("bubblewrap sandbox active", "sandbox_active", ""),
        ("load average before / after", None, ""),
    ]
    keys = list(runs)
    lines.append("| measure | " + " | ".join(f"`{run_options(k)}`" for k in keys) + " |")
    lines.append("|---|" + "---:|" * len(keys))
    for label, key, unit in measures:
        if key is None:
            cells = [" / ".join(f"{x[0]:.2f}" if x else "?" for x in (runs[k]["load_average_before"], runs[k]["load_average_after"])) for k in keys]
        else:
            cells = [f"{runs[k][key]}{unit}" if runs[k].get(key) is not None else "n/a" for k in keys]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    threads = {k: runs[k]["worker_torch_threads"] for k in keys}
    if len(set(threads.values())) > 1:
        lines += ["", "Torch threads per worker differ between runs ("
                  + ", ".join(f"`{run_options(k)}`: {t}" for k, t in threads.items())
                  + "); the scaling target compares runs with one thread per worker when both were measured."]
    c = results["checks_alone"]
    lines += [
        "",
        f"Checks alone: grader's probes (Net checks and training_loop check, programs loaded) run in-process on `{c['submission']}`, "
        f"in one warm process with torch imported and {c['torch_threads']} thread, no fork, sandbox or JSON: median of {c['repeat']} runs "
        f"{c['wall_s']} s wall, **{c['cpu_s']} s CPU** (Net checks {c['net_cpu_s']} s, training_loop check {c['loop_cpu_s']} s). "
        "That CPU time is the checks' own time for workers with one torch thread.",
    ]
    lines.append("The same checks are timed again right before and right after each `grader run`, with as many torch threads as that "
                 "run's children had (this shared machine's speed drifts by 10-20% within minutes): their CPU time at one thread, their "
                 "wall time at more. The mean of the two is that run's checks' own time; per-submission overhead = median "
                 "per-submission wall time of correct submissions - the checks' own time.")
    lines += [
        "",
        f"`python -c \"import torch\"`: {results['torch_import_rss_mb']} MB peak RSS (the unit of the memory target). RSS summed over a "
        "tree counts pages that forked children share with their worker once per process, so it overstates; PSS splits them.",
    ]
    nb = results.get("notebook_way")
    if nb:
        lines += [
            "",
            "## The notebook way (nbclient, a fresh kernel per notebook, one at a time)",
            "",
            "Each notebook runs top to bottom in a fresh `python3` kernel (CUDA hidden, one torch thread), its CIFAR-10 download replaced "
            f"by the grader's synthetic data and `n_epochs=100` by the grader's {cohort['training_epochs']} epochs; then two "
            "appended cells run grader's own probes in the kernel, and grader.compare + grader.score score what they observed. Each cell "
            f"has the check time limit ({cohort['check_timeout_s']} s), a cell past it is interrupted and the notebook goes on. Time per "
            "notebook: kernel start to kernel shutdown.",
            "",
        ]
        if nb["extrapolated"]:
            lines += [f"**Extrapolated**: {nb['executed']} of {nb['of']} notebooks were executed; the cohort's time is each category's mean "
                      "time x its count in the cohort (a category with none executed takes the mean of all executed).", ""]
        lines += ["| category | in cohort | executed | mean seconds per notebook |", "|---|---:|---:|---:|"]
        for cat, row in nb["per_category"].items():
            mean_from = "" if row["mean_from"] == cat else " (mean of all executed)"
            lines.append(f"| {cat} | {row['in_cohort']} | {row['executed']} | {row['mean_s']} s{mean_from} |")
        lines += [
            "",
            f"- submissions per minute: **{nb['submissions_per_minute']}** (cohort kernel time {nb['cohort_kernel_s']} s"
            + (", extrapolated" if nb["extrapolated"] else "") + f"; median notebook {nb['median_notebook_s']} s)",
            f"- not counted above: computing the expected values from the reference once, {nb['reference_setup_s']} s (grader counts its own in the whole run)",
            f"- notebooks timed out: {nb['timed_out']} of {nb['executed']} executed",
            f"- peak RSS of the kernel: {nb['peak_rss_mb']} MB (PSS {nb['peak_pss_mb']} MB)",
        ]
        a = results.get("agreement")
        if a:
            lines.append(f"- totals agree with `grader run`: {a['agree']} of {a['compared']} executed notebooks; correct ones: "
                         f"{a['correct_agree']} of {a['correct_compared']} (must be all)")
            for d in a["disagreements"]:
                lines.append(f"  - {d['student']} ({d['category']}): grader {d['grader_total']}, notebook way {d['notebook_total']}")
    lines += ["", "## Targets", "", "| target | measured | |", "|---|---|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['measured'] or 'not measured'} | {verdict(t['met'])} |")
    a = results["arguments"]
    reproduce = f".venv/bin/python bench/bench_throughput.py --count {a['count']} --workers {' '.join(map(str, a['workers']))}"
    if a["skip_notebook_way"]:
        reproduce += " --skip-notebook-way"
    if a["notebook_sample"] is not None:
        reproduce += f" --notebook-sample {a['notebook_sample']}"
    if a["check_timeout"] != 10:
        reproduce += f" --check-timeout {a['check_timeout']}"
    if a["sandbox"] != "auto":
        reproduce += f" --sandbox {a['sandbox']}"
    lines += ["", f"Reproduce: `{reproduce}` (needs ipykernel and matplotlib in .venv).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
