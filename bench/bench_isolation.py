"""What each isolation mode costs when a correct class is graded, against the target of the work on
machines where bubblewrap cannot start: a correct class still earns full marks there at no more
than 10% extra grading time.

Each mode is a whole `grader run --workers 2 --force` of the same COUNT correct notebooks (the
correct layouts of tests/variants.py), CPU only, with the reference's expectations from the cache
(one run fills it first, as any run after a class's first finds it):

- `bwrap`: `--sandbox bwrap`, each worker inside bubblewrap, the usual case where it starts;
- `landlock`: a `bwrap` first on PATH that fails as on GitHub's ubuntu-24.04 runners
  (tests/isolation_modes.py UBUNTU_24_BWRAP) and `--sandbox auto`, which falls back to Landlock and
  the seccomp filter in each child;
- `landlock-unprivileged`: the same, but the grader run by a Python other users can read (the
  venv's own, else /usr/bin/python3.X of its minor version; tests/isolation_modes.py) with this
  checkout and the venv's site-packages on PYTHONPATH, so that a grader run as root drops its
  children to unprivileged uids. Skipped, with the reason, where there is no such Python, this
  is not root, or the checkout or the venv is closed to other users. Whether the run said its
  children run unprivileged is recorded either way;
- `none`: `--sandbox none`, process limits only: the floor.

The modes take turns ROUNDS times, each round starting at the next mode, so the machine's drift
spreads over all of them; each mode's median and every run's wall time are reported, with every
row read back from the run's report: a mode whose class does not earn full marks is a failure,
and the report says so. Last, what Landlock and the seccomp filter cost a child by themselves,
timed in forked processes as a worker's children apply them.

    .venv/bin/python bench/bench_isolation.py                  # 24 notebooks, 5 rounds (about 4-5 minutes)
    .venv/bin/python bench/bench_isolation.py --count 4 --rounds 1 --out /tmp/isolation   # a quick check that it works
    .venv/bin/python bench/bench_isolation.py --render-only    # isolation.md again from isolation.json, measuring nothing

Writes isolation.md and isolation.json into --out (default bench/).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import common
from isolation_modes import failing_bwrap, readable_python  # tests/, on the path through common

TARGET_PCT = 10.0
WORKERS = 2


@dataclass(frozen=True)
class Mode:
    name: str
    sandbox: str  # the run's --sandbox
    how: str  # for the report
    says: str  # what the run's word on isolation must hold, so the mode is the one meant
    failing_bwrap: bool = False
    system_python: bool = False


MODES = (
    Mode("bwrap", "bwrap", "`--sandbox bwrap` (Landlock and the seccomp filter inside it, as this kernel has them)", ""),
    Mode("landlock", "auto", "bwrap failing as on ubuntu-24.04, `--sandbox auto`", "Landlock ABI", failing_bwrap=True),
    Mode(
        "landlock-unprivileged", "auto", "the same, the grader run as root by the system's Python, so that its children can drop to an unprivileged user",
        "Landlock ABI", failing_bwrap=True, system_python=True,
    ),
    Mode("none", "none", "`--sandbox none` (process limits only)", "turned off (--sandbox none)"),
)  # fmt: skip
LANDLOCK_MODES = ("landlock", "landlock-unprivileged")


# ---------------------------------------------------------------- the system's Python, for unprivileged children
def system_python() -> tuple[list[str] | None, str]:
    """The command that runs the grader by a Python other users can read (tests/isolation_modes.py,
    which the test suite's runs as root use too), and the PYTHONPATH it needs; or None and why
    the unprivileged mode is skipped."""
    readable, why = readable_python()
    if readable is None:
        return None, why
    return [readable.executable, "-m", "grader"], readable.pythonpath


# ---------------------------------------------------------------- a whole `grader run` in one mode
def grade(mode: Mode, cohort: Path, out: Path, env: dict[str, str], grader: list[str] | None, count: int) -> dict[str, Any]:
    """One whole run of the cohort in `mode`: its wall time, the rows without full marks, and what it said about isolation."""
    options = ["--workers", str(WORKERS), "--force", "--format", "csv", "--sandbox", mode.sandbox]
    try:
        with mock.patch.object(common, "GRADER", grader or common.GRADER):  # common.run_grader runs common.GRADER
            run = common.run_grader(cohort, out, options, env=env)
    except SystemExit as failed:  # the run failed: a failure of this mode, reported, not the benchmark's end
        return {"seconds": None, "error": str(failed)[-1500:]}
    lines = run.log.splitlines()
    said = " ".join(line.strip() for line in lines if "bubblewrap sandbox" in line)
    # The run's own words, its folders left out (the report folder's name holds the mode's).
    words = [line.replace(str(out), "OUT").replace(str(cohort), "COHORT").strip() for line in lines]
    unprivileged = [line for line in words if "unprivileged uid of its own" in line]
    lost = sorted(student for student, row in run.rows.items() if not (row["max_total"] > 0 and row["total"] == row["max_total"]))
    lost_rows = [(student, run.rows[student]) for student in lost]
    result: dict[str, Any] = {
        "seconds": round(run.seconds, 2),
        "rows": len(run.rows),
        "full_marks": len(run.rows) - len(lost),
        "not_full_marks": [f"{student}: {row['total']:g}/{row['max_total']:g} {row['error']}"[:300] for student, row in lost_rows],
        "said": said,
        "says_unprivileged": bool(unprivileged),
        "unprivileged_lines": unprivileged[:3],
    }
    if len(run.rows) != count:
        result["error"] = f"{len(run.rows)} rows for {count} notebooks"
    elif mode.says not in said:
        result["error"] = f"the run did not say {mode.says!r} about isolation, so it did not grade as this mode means: {said or 'it said nothing'}"
    return result


def summarize(runs: list[dict[str, Any]], count: int) -> dict[str, Any]:
    walls = [run["seconds"] for run in runs if run["seconds"] is not None]
    problems = [f"run {i + 1}: {run['error']}" for i, run in enumerate(runs) if run.get("error")]
    problems += [f"run {i + 1}: {len(run['not_full_marks'])} of {count} without full marks ({'; '.join(run['not_full_marks'][:3])})"
                 for i, run in enumerate(runs) if run.get("not_full_marks")]  # fmt: skip
    return {
        "median_s": round(statistics.median(walls), 2) if walls else None,
        "runs_s": [run["seconds"] for run in runs],
        "all_full_marks": not problems,
        "problems": problems,
        "said": next((run["said"] for run in runs if run.get("said")), ""),
        "says_unprivileged": any(run.get("says_unprivileged") for run in runs),
        "unprivileged_lines": next((run["unprivileged_lines"] for run in runs if run.get("unprivileged_lines")), []),
        "runs": runs,
    }


def compare(modes: dict[str, dict[str, Any]]) -> None:
    """Each mode's extra time against bwrap and against none, in %, and the target for the Landlock modes."""
    for name, measured in modes.items():
        if measured.get("median_s") is None:
            continue
        for base in ("bwrap", "none"):
            against = modes.get(base, {}).get("median_s")
            measured[f"extra_vs_{base}_pct"] = round(100 * (measured["median_s"] / against - 1), 1) if against else None
        if name in LANDLOCK_MODES:
            extra = measured.get("extra_vs_bwrap_pct")
            measured["target_met"] = bool(measured["all_full_marks"] and extra is not None and extra <= TARGET_PCT)


# ---------------------------------------------------------------- the layers alone, per child
def layer_cost(scratch: Path, repeat: int) -> dict[str, Any]:
    """Landlock, then the seccomp filter, as each child of a Landlock worker applies them before
    student code (grader/isolate/sandbox.py _limit_access), timed in a fresh fork each time."""
    from grader.isolate import landlock, seccomp
    from grader.isolate.bubblewrap import readable_paths

    if not landlock.abi():
        return {"skipped": "this kernel offers no Landlock"}
    readable = readable_paths()
    scratch.mkdir(parents=True, exist_ok=True)
    seccomp.compiled()  # as a worker does before it forks (grader/isolate/sandbox.py prepare_child_layers)
    timings: list[list[float]] = []
    for _ in range(repeat):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: time both layers, report, leave without Python's clean-up
            try:
                os.close(read_end)
                started = time.perf_counter()
                landlock.restrict(readable, [str(scratch)])
                landlocked = time.perf_counter()
                if seccomp.available():
                    seccomp.restrict()
                filtered = time.perf_counter()
                os.write(write_end, json.dumps([landlocked - started, filtered - landlocked]).encode())
            except BaseException as exc:  # whatever it is, the parent reports it
                os.write(write_end, json.dumps({"error": repr(exc)}).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as reply:
            answer = reply.read()
        os.waitpid(pid, 0)
        timing = json.loads(answer or b'{"error": "the child died without a word"}')
        if isinstance(timing, dict):
            return {"skipped": f"a child could not apply the layers: {timing['error']}"}
        timings.append(timing)
    return {
        "repeat": repeat,
        "landlock_abi": landlock.abi(),
        "seccomp": seccomp.available(),
        "landlock_ms": _spread([1000 * t[0] for t in timings]),
        "seccomp_ms": _spread([1000 * t[1] for t in timings]),
        "both_ms": _spread([1000 * (t[0] + t[1]) for t in timings]),
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


# ---------------------------------------------------------------- report
def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1f}%"


def _target(name: str, measured: dict[str, Any]) -> str:
    if name not in LANDLOCK_MODES:
        return ""
    if not measured["all_full_marks"]:
        return "**not met** (not full marks)"
    return "met" if measured.get("target_met") else "**not met**"


def markdown(r: dict[str, Any]) -> str:
    m, modes = r["machine"], r["modes"]
    lines = [
        f"# Isolation benchmark ({r['date']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}, {m['platform']}. "
        f"Load average at start: {', '.join(map(str, r['load_average_at_start']))}. Written by `bench/bench_isolation.py`.",
        "",
        f"Cohort: {r['count']} correct notebooks (tests/variants.py: the lecture's layout, nn.Sequential, modules, magics, defaults, "
        f"a Net across cells, reshape, device code), each mode a whole `grader run --workers {r['workers']} --force`, CPU only, the "
        f"reference's expectations from the cache. The modes took turns {r['rounds']} times, each round starting at the next "
        "mode; the median of each.",
        "",
        f"Target: where bubblewrap cannot start, a correct class still earns full marks at no more than {r['target_pct']:g}% extra "
        "grading time (the Landlock modes against `bwrap`).",
        "",
        "| mode | how | median wall | each run (s) | vs bwrap | vs none | full marks | target |",
        "|---|---|---:|---|---:|---:|---|---|",
    ]
    for mode in MODES:
        measured = modes.get(mode.name)
        if measured is None:
            continue
        if measured.get("skipped"):
            lines.append(f"| {mode.name} | {mode.how} | skipped: {measured['skipped']} | | | | | |")
            continue
        each = " / ".join("failed" if s is None else f"{s:.1f}" for s in measured["runs_s"])
        median = "—" if measured["median_s"] is None else f"{measured['median_s']:.1f} s"
        marks = f"{r['count']}/{r['count']}, every run" if measured["all_full_marks"] else "**failure** (below)"
        lines.append(
            f"| {mode.name} | {mode.how} | {median} | {each} | {_pct(measured.get('extra_vs_bwrap_pct')) if mode.name != 'bwrap' else ''} | "
            f"{_pct(measured.get('extra_vs_none_pct')) if mode.name != 'none' else ''} | {marks} | {_target(mode.name, measured)} |"
        )
    spreads = {
        name: 100 * (max(walls) - min(walls)) / statistics.median(walls)
        for name, measured in modes.items()
        if len(walls := [s for s in measured.get("runs_s", []) if s is not None]) > 1
    }
    if spreads:
        lines += [
            "",
            "Each mode's runs spread, slowest less fastest, by "
            + ", ".join(f"{spread:.0f}% ({name})" for name, spread in spreads.items())
            + " of its median: a difference between medians well within that may be this machine's drift; more "
            "rounds (`--rounds`) narrow it.",
        ]
    lines += ["", "What each run said about isolation:", ""]
    for mode in MODES:
        measured = modes.get(mode.name)
        if measured and not measured.get("skipped"):
            lines.append(f"- {mode.name}: {measured['said'] or 'nothing (bubblewrap runs each worker)'}")
    unprivileged = modes.get("landlock-unprivileged")
    if unprivileged and not unprivileged.get("skipped"):
        if unprivileged["says_unprivileged"]:
            said = "; ".join(f"“{line}”" for line in unprivileged["unprivileged_lines"])
            lines += ["", f"`landlock-unprivileged`: the run said its children run as an unprivileged user: {said}."]
        else:
            lines += ["", "`landlock-unprivileged`: the run did **not** say that its children run as an unprivileged user: this grader "
                      "does not drop them to one, so that row measures Landlock and the seccomp filter under the system's Python, "
                      "the children as root."]  # fmt: skip
        lines.append(f"It ran `{' '.join(r.get('system_python', ['?']))}` with PYTHONPATH={r.get('system_pythonpath', '?')}.")
    failures = [(mode.name, modes[mode.name]["problems"]) for mode in MODES if modes.get(mode.name, {}).get("problems")]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- **{name}** {problem}" for name, problems in failures for problem in problems]
    layers = r.get("layers")
    if layers and not layers.get("skipped"):
        lines += [
            "",
            "## The layers alone, per child",
            "",
            f"What each child of a Landlock worker does before student code (grader/isolate/sandbox.py `_limit_access`), timed in "
            f"{layers['repeat']} forked processes: median (min–max).",
            "",
            "| layer | ms per child |",
            "|---|---:|",
            *(f"| {label} | {layers[key]['median']:.2f} ({layers[key]['min']:.2f}–{layers[key]['max']:.2f}) |"
              for label, key in ((f"Landlock (ABI {layers['landlock_abi']})", "landlock_ms"),
                                 ("seccomp filter" if layers["seccomp"] else "seccomp filter (libseccomp missing: not applied)", "seccomp_ms"),
                                 ("both", "both_ms"))),
        ]  # fmt: skip
    elif layers:
        lines += ["", f"The layers alone: not measured ({layers['skipped']})."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=24, help="correct notebooks in the class (default 24)")
    parser.add_argument("--rounds", type=int, default=5, help="whole runs of each mode, taken in turn (default 5)")
    parser.add_argument("--layers", type=int, default=50, help="forked children timing Landlock and seccomp alone (default 50; 0: none)")
    common.report_arguments(parser, "isolation")
    args = parser.parse_args()
    if args.render_only:
        return common.render_only("isolation", markdown, args.out)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "machine": common.machine(), "load_average_at_start": common.load_average(),
        "count": args.count, "workers": WORKERS, "rounds": args.rounds, "target_pct": TARGET_PCT,
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-isolation-") as tmp:
        work = Path(tmp)
        common.make_cohort(work / "cohort", args.count, common.CORRECT_LAYOUTS)
        base = {**os.environ, "GRADER_CACHE_DIR": str(work / "cache"), "CUDA_VISIBLE_DEVICES": ""}
        failing = {**failing_bwrap(work / "failing-bwrap"), "GRADER_CACHE_DIR": str(work / "cache"), "CUDA_VISIBLE_DEVICES": ""}
        grader, pythonpath = system_python()
        setups: dict[str, tuple[dict[str, str], list[str] | None]] = {}
        skipped: dict[str, str] = {}
        for mode in MODES:
            env = failing if mode.failing_bwrap else base
            if mode.system_python:
                if grader is None:
                    skipped[mode.name] = pythonpath
                    print(f"{mode.name}: skipped: {pythonpath}", flush=True)
                    continue
                env = {**env, "PYTHONPATH": pythonpath}
                results["system_python"], results["system_pythonpath"] = grader, pythonpath
            setups[mode.name] = (env, grader if mode.system_python else None)
        warm = grade(MODES[0], work / "cohort", work / "warm-up", base, None, args.count)  # fills the cache
        if warm.get("error"):
            raise SystemExit(f"the run that fills the cache failed: {warm['error']}")
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in setups}
        order = [mode for mode in MODES if mode.name in setups]
        for i in range(args.rounds):
            for mode in order[i % len(order) :] + order[: i % len(order)]:
                env, command = setups[mode.name]
                measured = grade(mode, work / "cohort", work / f"out-{mode.name}", env, command, args.count)
                runs[mode.name].append(measured)
                print(f"round {i + 1}, {mode.name}: {measured['seconds']} s, full marks {measured.get('full_marks')}/{args.count}"
                      f"{', ' + measured['error'] if measured.get('error') else ''}", flush=True)  # fmt: skip
        results["modes"] = {name: summarize(measured, args.count) for name, measured in runs.items()}
        results["modes"].update({name: {"skipped": reason} for name, reason in skipped.items()})
        compare(results["modes"])
        if args.layers:
            results["layers"] = layer_cost(work / "scratch", args.layers)
    common.write_report("isolation", results, markdown, args.out)


if __name__ == "__main__":
    main()
