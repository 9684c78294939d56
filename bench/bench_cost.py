"""What grading costs, against the targets of the "same verdicts at a fifth of the cost" work.

Measures on this machine, CPU only:

- the checks' own CPU time per correct submission, one torch thread, in one warm process
  (bench/notebook_way.py time-checks: no fork, sandbox or JSON), and which probe spends it;
- a whole `grader run --workers 2` of COUNT correct notebooks (process start, worker start and
  the reference included), with the reference's expectations taken from the cache (the usual
  second run) and observed afresh (`GRADER_CACHE_DIR=off`), and `--workers 1`, for the scaling;
- the same COUNT notebooks executed the notebook way (bench/notebook_way.py: a fresh Jupyter
  kernel per notebook, top to bottom, the grader's data and training budget, then the checks in
  the kernel), two kernels at a time, as a 2-core machine would run them;
- `grader selfcheck NOTEBOOK` wall time (median of REPEAT runs, warm disk), and `selfcheck()` as a
  notebook calls it, three times in one process;
- where a worker's start-up goes (interpreter, torch, torch's first optimizer step, display packages,
  the notebook renderer), each timed in a fresh process: the floor under a whole run and selfcheck;
- the calibration: the reference's and the stand-in model's loss over the short training jobs;
- with --suite, the whole test suite as CI runs it: a fresh clone, its own set-up, an empty
  expectations cache (pytest's own time, installs aside).

Writes cost.md and cost.json into --out (default bench/).

    .venv/bin/python bench/bench_cost.py              # 24 notebooks, the figures in bench/cost.md
    .venv/bin/python bench/bench_cost.py --count 2 --repeat 1 --runs 1 --out /tmp/cost   # a quick check that it works
    .venv/bin/python bench/bench_cost.py --suite      # and time the test suite in a fresh clone (about 8 minutes more)
    .venv/bin/python bench/bench_cost.py --suite-only # only that; the other figures stay as committed
    .venv/bin/python bench/bench_cost.py --render-only  # cost.md again from cost.json, measuring nothing
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import notebook_way


def grader_run(cohort: Path, out: Path, workers: int, *, cache: str) -> dict[str, Any]:
    env = {**os.environ, "GRADER_CACHE_DIR": cache, "CUDA_VISIBLE_DEVICES": ""}
    run = common.run_grader(cohort, out, ["--workers", str(workers), "--force", "--format", "csv"], env=env)
    steady = common.steady_per_second(run.rows)
    return {
        "seconds": round(run.seconds, 2),
        "submissions": len(run.rows),
        "full_marks": sum(row["total"] == 100 for row in run.rows.values()),
        "steady_per_second": round(steady, 2) if steady else None,
    }


def grader_runs(cohort: Path, out: Path, workers: int, *, cache: str, repeat: int) -> dict[str, Any]:
    """The median of `repeat` whole runs: this shared machine's speed drifts by 20-30% within minutes."""
    runs = [grader_run(cohort, out / str(i), workers, cache=cache) for i in range(repeat)]
    middle = sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]
    return {**middle, "runs_s": [run["seconds"] for run in runs]}


# Each step of a worker's start, timed in one fresh interpreter (the script prints JSON).
_STARTUP_PARTS = """
import json, time
parts = {}
t = time.perf_counter()
import torch
from torch import nn
from grader.isolate import lazy_dynamo
parts["import torch"] = time.perf_counter() - t
t = time.perf_counter()
lazy_dynamo.install()  # without it this step imports torch._dynamo: 1.1-1.8 s
model = nn.Linear(2, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model(torch.ones(1, 2)).sum().backward()
optimizer.step()
parts["torch's first optimizer step (torch._dynamo stood in, as in the worker)"] = time.perf_counter() - t
t = time.perf_counter()
import IPython.core.inputtransformer2, nbformat, grader.child.extract, grader.child.observe.group
parts["the notebook reader and the probes (IPython, nbformat, grader)"] = time.perf_counter() - t
t = time.perf_counter()
from grader.child.observe.headless import prepare_packages
prepare_packages(["matplotlib", "tqdm"])
parts["display packages students import (matplotlib, tqdm), only once a program names them"] = time.perf_counter() - t
t = time.perf_counter()
from grader.child.notebook_render import warm_up
warm_up()
parts["the annotated notebook's renderer (nbconvert), grader run only"] = time.perf_counter() - t
print(json.dumps(parts))
"""


def startup_parts() -> dict[str, float]:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    interpreter = time.perf_counter() - started
    done = subprocess.run([sys.executable, "-c", _STARTUP_PARTS], cwd=common.ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": ""})  # fmt: skip
    parts = {"interpreter start": interpreter, **json.loads(done.stdout.strip().splitlines()[-1])}
    return {name: round(seconds, 2) for name, seconds in parts.items()}


def suite_wall() -> dict[str, Any]:
    """The whole suite as CI runs it: a fresh clone of this commit, its own .venv set up by
    scripts/test.sh, an empty expectations cache, all cores. The time is pytest's own (installs
    aside); the set-up before it is reported beside it."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.ROOT, capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(common.ROOT), str(clone)], check=True)
        env = {**os.environ, "GRADER_CACHE_DIR": str(Path(tmp) / "cache")}
        started = time.perf_counter()
        done = subprocess.run(["bash", "scripts/test.sh", "-q", "-p", "no:cacheprovider"], cwd=clone, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    summary = (done.stdout.strip().splitlines() or [""])[-1].strip("= ")
    timed = re.search(r" in ([0-9.]+)s", summary)
    suite_s = float(timed.group(1)) if timed else seconds
    return {
        "seconds": round(suite_s, 1), "setup_s": round(seconds - suite_s, 1), "passed": done.returncode == 0,
        "summary": summary, "cores": os.cpu_count(), "commit": commit, "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip


def notebook_way_two_at_a_time(cohort: list[Path], config: Path, work: Path, assignment: Any, expected: Any) -> dict[str, Any]:
    started = time.perf_counter()
    graded = notebook_way.grade_notebooks(cohort, config, work, assignment, expected, at_a_time=2).values()
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "median_notebook_s": round(statistics.median(outcome["seconds"] for outcome, _ in graded), 2),
        "full_marks": sum(score["total"] == 100 for _, score in graded),
    }


def selfcheck_wall(notebook: Path, repeat: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeat + 1):  # the first warms the disk cache
        started = time.perf_counter()
        done = subprocess.run([*common.GRADER, "selfcheck", str(notebook), "--assignment", "cifar2"], cwd=common.ROOT, capture_output=True, text=True)
        runs.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"selfcheck failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return {"median_s": round(statistics.median(runs[1:]), 2), "runs_s": [round(r, 2) for r in runs[1:]]}


# selfcheck() as a notebook calls it, twice in one process (the second call reuses the kept workers).
_NOTEBOOK_SELFCHECK = """
import json, sys, time
from pathlib import Path
from grader.assignment import load_assignment
from grader.commands.notebook_selfcheck import check_definitions
assignment = load_assignment(Path("assignments/cifar2"))
seconds = []
for _ in range(3):
    started = time.perf_counter()
    report = check_definitions(assignment=assignment, caller_globals={"__file__": sys.argv[1]})
    seconds.append(time.perf_counter() - started)
    assert report.full_marks, str(report)
print(json.dumps(seconds))
"""


def notebook_selfcheck_wall(script: Path) -> dict[str, Any]:
    """`selfcheck()` three times in one fresh process, as a student re-runs the cell after each fix
    (the interpreter's own start and the grader's import are not counted, as in a kernel)."""
    done = subprocess.run([sys.executable, "-c", _NOTEBOOK_SELFCHECK, str(script)], cwd=common.ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"selfcheck() failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    first, *again = json.loads(done.stdout.strip().splitlines()[-1])
    return {"first_s": round(first, 2), "again_s": [round(x, 2) for x in again]}


def calibration(expected: Any) -> dict[str, Any]:
    train, loop = expected.net.get("train"), expected.reference_loop
    return {
        "reference_net_trained": {"initial_loss": round(train["initial_loss"], 3), "final_loss": round(train["final_loss"], 3)},
        "stand_in_model": expected.loop_model_spec,
        "stand_in_trained_by_reference_loop": {"initial_loss": round(loop["initial_loss"], 3), "final_loss": round(loop["final_loss"], 3)},
    }


def markdown(r: dict[str, Any]) -> str:
    checks, runs, nb, sc, nsc = r["checks"], r["grader_run"], r["notebook_way"], r["selfcheck"], r["notebook_selfcheck"]
    cached, fresh, one = runs["workers_2_cached"], runs["workers_2_fresh"], runs["workers_1_cached"]
    ratio = nb["seconds"] / cached["seconds"]
    scaling = one["seconds"] / cached["seconds"]
    steady = (cached["steady_per_second"] or 0) / (one["steady_per_second"] or 1)
    count = r["count"]
    per_submission = (cached["seconds"] - r["startup_s"]) / count if count else 0
    parts, suite = r["startup_parts"], r.get("suite")
    floor = parts["interpreter start"] + parts["import torch"] + parts["torch's first optimizer step (torch._dynamo stood in, as in the worker)"]
    worker_start = sum(parts.values())
    suite_row = (
        f"| the whole test suite as `.ci/run` runs it: a fresh clone of {suite['commit']}, empty expectations cache, "
        f"installs aside ({suite['setup_s']:.0f} s); {suite['cores']} cores, {suite['date']} | "
        f"{suite['seconds'] / 60:.1f} min ({suite['summary']}) | ≤ 6 min | {_met(suite['passed'] and suite['seconds'] <= 360)} |"
        if suite else "| the whole test suite | not measured this time (`--suite`) | ≤ 6 min | |"
    )
    lines = [
        f"# Cost benchmark ({r['date']})",
        "",
        f"Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores, Python {r['machine']['python']}, torch {r['machine']['torch']}. "
        f"Load average at start: {', '.join(map(str, r['load_average_at_start']))}.",
        "",
        f"Cohort: {count} correct notebooks (tests/variants.py: the lecture's layout, nn.Sequential, modules, magics, defaults, "
        "a Net across cells, reshape, device code), CPU only.",
        "",
        "| measure | figure | target | |",
        "|---|---:|---|---|",
        f"| the checks' CPU per correct submission, 1 torch thread (median of {checks['repeat']}) | {checks['cpu_s']:.3f} s "
        f"(Net checks {checks['net_cpu_s']:.3f} s, loop check {checks['loop_cpu_s']:.3f} s) | ≤ 0.4 s | {_met(checks['cpu_s'] <= 0.4)} |",
        f"| `grader run --workers 2`, whole run, reference from the cache (median of {len(cached['runs_s'])}: "
        f"{', '.join(f'{x:.1f}' for x in cached['runs_s'])}) | {cached['seconds']:.1f} s | | |",
        f"| `grader run --workers 2`, whole run, reference observed afresh | {fresh['seconds']:.1f} s | | |",
        f"| the notebook way, fresh kernels two at a time | {nb['seconds']:.1f} s (median notebook {nb['median_notebook_s']:.1f} s) | | |",
        f"| notebook way ÷ `grader run --workers 2` (cached) | {ratio:.1f}× | ≥ 10× | {_met(ratio >= 10)} |",
        f"| 2 workers ÷ 1, steady state (results per second, first stored to last) | {steady:.2f}× "
        f"({one['steady_per_second']} → {cached['steady_per_second']} per s) | ≥ 1.7× | {_met(steady >= 1.7)} |",
        f"| `grader run --workers 1` ÷ `--workers 2`, whole runs (start-up included) | {scaling:.2f}× | | |",
        f"| `grader selfcheck NOTEBOOK`, wall (median of {len(sc['runs_s'])}) | {sc['median_s']:.2f} s | ≤ 4 s | {_met(sc['median_s'] <= 4)} |",
        f"| `selfcheck()` in a notebook, first call / each call after (the workers are kept) | {nsc['first_s']:.2f} s / "
        f"{', '.join(f'{x:.2f}' for x in nsc['again_s'])} s | ≤ 4 s | {_met(nsc['first_s'] <= 4 and max(nsc['again_s']) <= 4)} |",
        f"| full marks | grader {cached['full_marks']}/{count}, notebook way {nb['full_marks']}/{count} | all | "
        f"{_met(cached['full_marks'] == nb['full_marks'] == count)} |",
        suite_row,
        "",
        f"Start-up of a whole run (process start, worker start with the torch import, the reference from the cache and its self-check): "
        f"about {r['startup_s']:.1f} s, measured as a `grader run --workers 2` of one notebook. The rest, {per_submission:.2f} s per "
        f"submission over {count}, is the checks on two workers plus bookkeeping. The ceiling the checks imply: with "
        f"{checks['cpu_s']:.2f} s of checks per notebook on 2 cores and {nb['median_notebook_s']:.1f} s per notebook the notebook way, "
        f"grading alone could be {nb['median_notebook_s'] / max(checks['cpu_s'], 1e-9):.0f}× faster; a class-sized run approaches that "
        f"as the start-up is spread over more notebooks.",
        "",
        "## Where a worker's start-up goes",
        "",
        "Each step timed in one fresh interpreter, in the order a worker takes them:",
        "",
        "| step | seconds |",
        "|---|---:|",
        *(f"| {name} | {seconds:.2f} |" for name, seconds in parts.items()),
        f"| total | {worker_start:.2f} |",
        "",
        f"The floor: a process that checks a network pays the interpreter, torch and torch's first optimizer step, {floor:.1f} s here "
        "(torch's optimizers import torch._dynamo on their first step, another 1.1-1.8 s; the worker stands in for it until "
        "something compiles, see grader/isolate/lazy_dynamo.py), "
        "before it does any work (`grader selfcheck` runs its reader beside it, so the reading is not added). On 2 cores "
        f"a whole run with 2 workers pays the whole start-up on both cores at once, about {worker_start:.1f} s of the run's wall "
        "time before the first notebook is graded, plus the grading host's own start; the notebook way pays the torch import in "
        "every kernel instead. A larger class spreads this start-up over more notebooks (the ceiling above); a faster start "
        "would need workers forked from one warm process instead of started one by one.",
        "",
        "## Calibration of the short training jobs",
        "",
        f"- `net.trains`: the reference Net, trained by the reference loop: loss {r['calibration']['reference_net_trained']['initial_loss']} → "
        f"{r['calibration']['reference_net_trained']['final_loss']} (it must fall by the configured margin). A Net that gives the "
        "reference's output and gradients with the reference weights is credited with this run; any other Net is trained the same way.",
        f"- `loop.trains`: the stand-in model {json.dumps(r['calibration']['stand_in_model'])}, trained by the reference loop: loss "
        f"{r['calibration']['stand_in_trained_by_reference_loop']['initial_loss']} → {r['calibration']['stand_in_trained_by_reference_loop']['final_loss']}.",
        "",
        "Every verdict is unchanged: the test suite's pinned points, the reference's full marks against itself and the bundled "
        "examples' expected report all pass with these settings.",
        "",
    ]
    return "\n".join(lines)


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=5, help="selfcheck runs and checks-alone runs (default 5)")
    parser.add_argument("--runs", type=int, default=3, help="whole `grader run`s behind each median of them (default 3)")
    parser.add_argument("--suite", action="store_true", help="also time the whole test suite in a fresh clone, as CI runs it")
    parser.add_argument("--suite-only", action="store_true", help="time only the suite; the other figures stay those of --out's cost.json")
    common.report_arguments(parser, "cost")
    args = parser.parse_args()
    if args.render_only:
        return common.render_only("cost", markdown, args.out)
    if args.suite_only:
        if not (args.out / "cost.json").is_file():
            parser.error(f"--suite-only keeps the other figures of {args.out / 'cost.json'}, which does not exist: run without it first")
        results = json.loads((args.out / "cost.json").read_text())
        results["suite"] = suite_wall()
        return common.write_report("cost", results, markdown, args.out)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "machine": common.machine(), "count": args.count, "load_average_at_start": common.load_average(),
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        work = Path(tmp)
        cohort = [member.path for member in common.make_cohort(work / "cohort", args.count, common.CORRECT_LAYOUTS)]
        assignment, expected, _ = common.reference_expectations(common.ROOT / "assignments" / "cifar2")
        results["calibration"] = calibration(expected)
        config = notebook_way.write_config(work / "checks.json", assignment, expected, common.ROOT / "reference" / "cifar2.py")
        timing = notebook_way.time_checks_alone(config, cohort[0], args.repeat)
        results["checks"] = {"repeat": args.repeat, **{k: round(timing["median"][k], 3) for k in ("cpu_s", "net_cpu_s", "loop_cpu_s")}}
        cache = str(work / "cache")
        grader_run(work / "cohort", work / "warm", 2, cache=cache)  # fills the cache
        common.make_cohort(work / "one", 1, common.CORRECT_LAYOUTS)
        results["startup_s"] = grader_runs(work / "one", work / "one-out", 2, cache=cache, repeat=args.runs)["seconds"]
        results["startup_parts"] = startup_parts()
        results["grader_run"] = {
            "workers_2_cached": grader_runs(work / "cohort", work / "w2", 2, cache=cache, repeat=args.runs),
            "workers_2_fresh": grader_run(work / "cohort", work / "w2f", 2, cache="off"),
            "workers_1_cached": grader_run(work / "cohort", work / "w1", 1, cache=cache),
        }
        results["notebook_way"] = notebook_way_two_at_a_time(cohort, config, work / "nb", assignment, expected)
        results["selfcheck"] = selfcheck_wall(cohort[0], args.repeat)
        script = work / "mine.py"
        script.write_text("\n# %%\n".join(cell for cell in (common.v.IMPORTS, common.v.NET, common.v.LOOP)) + "\n")
        results["notebook_selfcheck"] = notebook_selfcheck_wall(script)
    if args.suite:
        results["suite"] = suite_wall()
    common.write_report("cost", results, markdown, args.out)


if __name__ == "__main__":
    main()
