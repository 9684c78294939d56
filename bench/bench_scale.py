"""Scale-out of `grader run --dask`: how many Dask threads one grading host keeps busy.

This machine has 2 cores, so the cluster is simulated, and says so: a real Dask scheduler and a
real Dask worker process with N threads (N = 1, 2, 4, ... 64), whose check step, the part that
needs a core per task, is replaced by a fixed delay returning the observations recorded from a
real worker for the same file (bench/simulated_checks.py). Everything else is the real code: the
grading host runs grader's own `run()` (discover, fingerprint, read each file's bytes, feed the
cluster, store in the gradebook, write the CSV, feedback and class report), and each Dask task
compares and scores in the Dask worker process as on a real cluster.

Per N it reports submissions per second while grading, efficiency against N / delay, the grading
host's CPU per submission (its own process: the scheduler and the workers are other processes,
as on a cluster) and its peak memory. Then 10,000 generated submissions at N = 64: total time,
host memory, gradebook size, and that the CSV has a row per submission with the expected total.
Last, unsimulated: `--dask local:2` against `--workers 2` on a real cohort, side by side.

The cohort: copies of the realistic notebooks in tests/corpus (expected totals in its
expected.csv) under distinct names.

    .venv/bin/python bench/bench_scale.py                      # everything (about 10 minutes)
    .venv/bin/python bench/bench_scale.py --threads 1 --big 0 --real 2 --rounds 1 --out /tmp/scale   # a quick check that it works
    .venv/bin/python bench/bench_scale.py --render-only        # scale.md again from scale.json, measuring nothing

Writes scale.md and scale.json into --out (default bench/).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

DASK = str(Path(sys.executable).parent / "dask")
TARGET_HOST_MS = 5.0
TARGET_EFFICIENCY = 0.90
TARGET_BIG_S = 120.0
# The Dask workers are configured as docs/dask.md advises for grading: Dask's profiler
# off (it samples every thread's stack 100 times a second, and the grading itself runs in
# sandboxed children it cannot see).
WORKER_CONFIG = {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}


# ---------------------------------------------------------------- cohort and recorded observations
def record(into: Path) -> Path:
    """Grade every corpus file once with a real worker and keep its raw observations, keyed by the
    file's sha256, with the nonce its annotated page's placeholders carry."""
    from grader.assignment import find_assignment
    from grader.load import discover_submissions
    from grader.pipeline import observe, open_worker, prepare
    from grader.reference.check import verified_reference_expectations

    assignment = find_assignment("cifar2")
    recorded: dict[str, Any] = {}
    with open_worker(assignment) as worker:
        verified_reference_expectations(assignment, worker, assignment.default_reference_path())
        for submission in discover_submissions(common.ROOT / "tests" / "corpus", assignment.notebook):
            prepared = prepare(submission, assignment, annotate=True)
            if prepared.request is None:
                continue
            raw = observe(prepared, worker, assignment)
            if isinstance(raw, Exception):
                raise SystemExit(f"{submission.path}: {raw}")
            digest = hashlib.sha256(submission.path.read_bytes()).hexdigest()
            recorded[digest] = {"nonce": prepared.request["annotate"]["nonce"], "raw": raw}
    path = into / "recorded.json"
    path.write_text(json.dumps(recorded))
    return path


def corpus_cohort(folder: Path, count: int) -> dict[str, float]:
    """`count` copies of the corpus files under distinct names; {student: expected total}."""
    return {member.student: member.template.total or 0.0 for member in common.make_cohort(folder, count, common.corpus_templates())}


# ---------------------------------------------------------------- the simulated cluster
class SimulatedCluster:
    """A Dask scheduler and `processes` Dask worker processes with `threads` threads in all, each
    its own process. Several worker processes stand for the many machines of a real cluster
    better than one: the compare-and-score step of each task then does not queue on one
    interpreter lock."""

    def __init__(self, threads: int, recorded: Path, delay_s: float, work: Path, processes: int = 2) -> None:
        processes = max(1, min(processes, threads))
        self.file = work / f"scheduler-{threads}.json"
        self.file.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(common.ROOT), "GRADER_SIM_RECORDED": str(recorded), "GRADER_SIM_DELAY_S": str(delay_s), **WORKER_CONFIG}
        self.log = open(work / f"cluster-{threads}.log", "w")  # noqa: SIM115  (the processes write to it until close())
        quiet = {"stdout": subprocess.DEVNULL, "stderr": self.log, "env": env}
        self.scheduler = subprocess.Popen([DASK, "scheduler", "--scheduler-file", str(self.file), "--port", "0", "--no-dashboard"], **quiet)
        while not self.file.exists():
            time.sleep(0.1)
        time.sleep(0.2)
        self.workers = [
            subprocess.Popen(
                [DASK, "worker", "--scheduler-file", str(self.file), "--nthreads", str(share), "--nworkers", "1", "--no-nanny",
                 "--no-dashboard", "--memory-limit", "0", "--preload", str(common.BENCH / "simulated_checks.py")],
                **quiet,
            )
            for share in (threads // processes + (i < threads % processes) for i in range(processes))
        ]
        self.address = json.loads(self.file.read_text())["address"]
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(processes, timeout=60)

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds the scheduler and the Dask worker processes have used so far."""
        return {"scheduler": common.cpu_seconds(self.scheduler.pid), "dask_workers": sum(common.cpu_seconds(w.pid) for w in self.workers)}

    def close(self) -> None:
        processes = [*self.workers, self.scheduler]
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.log.close()


# ---------------------------------------------------------------- the grading host
def host(address: str, folder: Path, out: Path) -> dict[str, Any]:
    """In a fresh process: grader's own run() against the cluster, timed by phase."""
    from rich.console import Console

    import grader.commands.run as run_module
    from grader.assignment import find_assignment
    from grader.executors.cluster import ClusterExecutor

    phases: dict[str, tuple[float, float]] = {}
    graded_on_cluster = ClusterExecutor.grade
    report = run_module._report

    def timed_grading(*args: Any, **kwargs: Any) -> Any:
        phases["grading_start"] = (time.monotonic(), time.process_time())
        yield from graded_on_cluster(*args, **kwargs)
        phases["grading_end"] = (time.monotonic(), time.process_time())

    def timed_report(*args: Any, **kwargs: Any) -> None:
        phases["report_start"] = (time.monotonic(), time.process_time())
        report(*args, **kwargs)

    ClusterExecutor.grade = timed_grading  # type: ignore[method-assign]
    run_module._report = timed_report
    started = (time.monotonic(), time.process_time())
    assignment = find_assignment("cifar2")
    with open(os.devnull, "w") as devnull:
        summary = run_module.run(assignment, folder, out / "report.csv", dask=address, console=Console(file=devnull, width=120))
    ended = (time.monotonic(), time.process_time())
    spans = {
        "start_up": (started, phases["grading_start"]),
        "grading": (phases["grading_start"], phases["grading_end"]),
        "storing_to_report": (phases["grading_end"], phases["report_start"]),
        "report": (phases["report_start"], ended),
        "whole_run": (started, ended),
    }
    return {
        "graded": summary.graded,
        "wall_s": {name: b[0] - a[0] for name, (a, b) in spans.items()},
        "cpu_s": {name: b[1] - a[1] for name, (a, b) in spans.items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def grade_on_simulated_cluster(threads: int, count: int, recorded: Path, delay_s: float, work: Path, processes: int) -> dict[str, Any]:
    folder, out = work / f"cohort-{threads}-{count}", work / f"out-{threads}-{count}"
    expected = corpus_cohort(folder, count)
    shutil.rmtree(out, ignore_errors=True)
    cluster = SimulatedCluster(threads, recorded, delay_s, work, processes)
    try:
        before = cluster.cpu_s()
        done = subprocess.run(
            [sys.executable, str(Path(__file__)), "--host", cluster.address, str(folder), str(out)],
            capture_output=True, text=True, cwd=common.ROOT, timeout=1800,
        )
        cluster_cpu = {name: used - before[name] for name, used in cluster.cpu_s().items()}
    finally:
        cluster.close()
    if done.returncode != 0:
        raise SystemExit(f"the grading host failed:\n{done.stderr[-3000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    with open(out / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    wrong = [r["student"] for r in rows if abs(float(r["total"]) - expected.get(r["student"], -1)) > 1e-6]
    grading_s = measured["wall_s"]["grading"]
    ideal = threads / delay_s
    measured.update(
        threads=threads,
        count=count,
        rows=len(rows),
        rows_with_unexpected_total=len(wrong),
        per_second=count / grading_s,
        efficiency=count / grading_s / ideal,
        host_cpu_ms_per_submission=1000 * measured["cpu_s"]["whole_run"] / count,
        host_grading_cpu_ms_per_submission=1000 * measured["cpu_s"]["grading"] / count,
        gradebook_mb=(out / "gradebook.sqlite").stat().st_size / 2**20,
        cluster_cpu_ms_per_submission={name: 1000 * used / count for name, used in cluster_cpu.items()},
    )
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    if wrong or len(rows) != count:
        raise SystemExit(f"N={threads}: {len(rows)} rows for {count} submissions; unexpected totals for {wrong[:5]}")
    return measured


# ---------------------------------------------------------------- unsimulated: local:2 against --workers 2
_SIDE_BY_SIDE = (("--workers 2", ["--workers", "2"]), ("--dask local:2", ["--dask", "local:2"]))


def real_side_by_side(work: Path, count: int, rounds: int = 3) -> dict[str, Any]:
    """Both ways in turn, `rounds` times, after one run that fills the reference's cache (as any
    run after a class's first finds it); the median of each."""
    folder = work / "real-cohort"
    expected = corpus_cohort(folder, count)
    env = {**os.environ, "GRADER_CACHE_DIR": str(work / "real-cache")}
    _grade_real(folder, work / "real-warm-up", ["--workers", "2"], env, expected)
    measured: dict[str, list[float]] = {label: [] for label, _ in _SIDE_BY_SIDE}
    for _ in range(rounds):
        for label, options in _SIDE_BY_SIDE:
            measured[label].append(_grade_real(folder, work / f"real-{options[0][2:]}", options, env, expected))
    medians = {label: statistics.median(walls) for label, walls in measured.items()}
    return {
        "count": count, "rounds": rounds, "wall_s": medians, "all_wall_s": measured,
        "ratio_dask_over_workers": medians["--dask local:2"] / medians["--workers 2"],
    }  # fmt: skip


def _grade_real(folder: Path, out: Path, options: list[str], env: dict[str, str], expected: dict[str, float]) -> float:
    """One whole `grader run` of the cohort into a fresh report folder; its wall time."""
    run = common.run_grader(folder, out, options, env=env)
    totals = {student: row["total"] for student, row in run.rows.items()}
    assert totals == expected, f"{' '.join(options)}: totals differ from the corpus's expected ones"
    return run.seconds


# ---------------------------------------------------------------- report
def _per_submission_ms(run: dict[str, Any]) -> float:
    """The grading host's CPU for each submission: the whole run's, less the fixed start-up."""
    return 1000 * (run["cpu_s"]["whole_run"] - run["cpu_s"]["start_up"]) / run["count"]


_SLOWER = (
    "slower: what local:2 adds is Dask in the grading process, 1.3-1.5 s more of its CPU in such a run, mostly the "
    "import of distributed (0.8 s, py-spy), on two cores already busy starting two torch workers"
)


def _growth(results: dict[str, Any]) -> str:
    """How the host's memory grows with the class: the results the report holds, beyond the smallest run's peak."""
    big, smallest = results["big"], min(results["scaling"], key=lambda r: r["count"], default=None)
    if smallest is None:
        return ""
    per = (big["peak_rss_mb"] - smallest["peak_rss_mb"]) * 1024 / (big["count"] - smallest["count"])
    return (f" ({per:.0f} kB per submission beyond the {smallest['peak_rss_mb']:.0f} MB of a run of {smallest['count']}: "
            "the results the report holds, without their annotated notebooks, which it fetches one at a time)")


def markdown(results: dict[str, Any]) -> str:
    m, delay = results["machine"], results["delay_s"]
    lines = [
        f"# Scale-out benchmark ({results['date']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}. "
        f"Written by `bench/bench_scale.py`.",
        "",
        f"**Simulated cluster.** This machine has {m['cores']} cores: the Dask cluster is one real scheduler process and "
        f"{results.get('processes', 'several')} real Dask worker processes with N threads in all, whose check step is a fixed delay of {delay} s "
        "returning the observations recorded from a real worker for the same file (`bench/simulated_checks.py`). The Dask workers run with Dask's "
        "profiler off, as docs/dask.md advises for grading. The grading host is grader's own "
        "`run()`, unchanged: discover, fingerprint, read each file's bytes, feed the cluster (batches of up to four "
        "submissions per task while many are left), store in the gradebook, write "
        "the CSV, feedback and class report. Each task compares and scores in the Dask worker process, as on a real cluster. "
        "Host CPU is the grading host's own process, start-up and report included; the scheduler and the Dask workers are "
        "other processes, as on a cluster, and share this machine's 2 cores with it.",
        "",
        "The host's CPU per submission is its work for each submission (feeding the cluster, storing, the report), "
        "the whole run's CPU less its start-up; the start-up (imports, the fingerprint, connecting, the reference "
        "from the cache) is a fixed cost, given apart. The cluster's CPU (scheduler, Dask worker processes) shares "
        "these 2 cores with the host; on a real cluster it is spread over the cluster's machines.",
        "",
        f"| N threads | submissions | per second while grading | efficiency (vs N / {delay} s) | host CPU per submission | "
        "host start-up CPU | host peak RSS | scheduler CPU per submission | Dask workers' CPU per submission | whole run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["scaling"]:
        cluster = r["cluster_cpu_ms_per_submission"]
        lines.append(
            f"| {r['threads']} | {r['count']} | {r['per_second']:.1f} | {100 * r['efficiency']:.0f}% | "
            f"{_per_submission_ms(r):.2f} ms | {r['cpu_s']['start_up']:.2f} s | {r['peak_rss_mb']:.0f} MB | "
            f"{cluster['scheduler']:.1f} ms | {cluster['dask_workers']:.1f} ms | {r['wall_s']['whole_run']:.1f} s |"
        )
    lines += ["", "Targets:", ""]
    top = max(results["scaling"], key=lambda r: r["threads"], default=None)
    if top is not None:
        runs = results["scaling"] + ([results["big"]] if results.get("big") else [])
        largest = max(runs, key=lambda r: r["count"])
        cost = _per_submission_ms(largest)
        lines.append(
            f"- host CPU ≤ {TARGET_HOST_MS:g} ms per submission: {cost:.2f} ms in the largest run ({largest['count']:,} "
            f"submissions), plus its start-up of {largest['cpu_s']['start_up']:.1f} s — "
            f"{'met' if cost <= TARGET_HOST_MS else 'not met'}. At that cost one host feeds {1000 / cost:.0f} submissions "
            f"per second, {400 / cost:.0f} Dask threads at {delay} s each. The smaller runs' figures above also carry what "
            "does not grow with the class (the report's fixed part, the progress bar and the Dask client's upkeep over "
            "about 20 s of grading) spread over fewer submissions."
        )
        cluster = top["cluster_cpu_ms_per_submission"]
        cores = top["per_second"] * (_per_submission_ms(top) + cluster["scheduler"] + cluster["dask_workers"]) / 1000
        start_note = (f" The same N kept {100 * results['big']['efficiency']:.0f}% over the {results['big']['count']:,} submissions below: "
                      f"what a run of {top['wall_s']['grading']:.0f} s loses is mostly its start (the reference's expectations, about "
                      "2 MB, sent to every Dask worker, and the first batches on their way)") if results.get("big") else ""
        lines.append(f"- efficiency ≥ {100 * TARGET_EFFICIENCY:.0f}% at N = {top['threads']}: {100 * top['efficiency']:.1f}% "
                     f"({top['per_second']:.0f} per second, {top['count']} submissions) — "
                     f"{'met' if top['efficiency'] >= TARGET_EFFICIENCY else 'not met'}; at that rate the host, the scheduler "
                     f"and the Dask workers together use {cores:.1f} of this machine's {m['cores']} cores, the host "
                     f"{top['per_second'] * _per_submission_ms(top) / 1000:.2f} of them.{start_note}")
    big = results.get("big")
    if big:
        w = big["wall_s"]
        lines.append(
            f"- {big['count']:,} submissions at N = {big['threads']} in under {TARGET_BIG_S:g} s: {w['whole_run']:.0f} s, "
            f"{big['per_second']:.0f} per second while grading, efficiency {100 * big['efficiency']:.0f}% "
            f"(start-up {w['start_up']:.1f} s, grading {w['grading']:.0f} s, report {w['report']:.0f} s) — "
            f"{'met' if w['whole_run'] <= TARGET_BIG_S else 'not met'}; host peak RSS {big['peak_rss_mb']:.0f} MB{_growth(results)}, "
            f"gradebook {big['gradebook_mb']:.0f} MB, CSV {big['rows']:,} rows, all with the corpus's expected total; "
            f"host CPU {_per_submission_ms(big):.2f} ms per submission, start-up apart "
            f"(grading {1000 * big['cpu_s']['grading'] / big['count']:.2f} ms, report {1000 * big['cpu_s']['report'] / big['count']:.2f} ms)"
        )
    real = results.get("real")
    if real:
        w = real["wall_s"]
        runs = real.get("all_wall_s")
        each = f"; each run: {', '.join(f'{label} ' + ' / '.join(f'{t:.1f}' for t in walls) for label, walls in runs.items())} s" if runs else ""
        lines.append(
            f"- unsimulated, {real['count']} corpus notebooks on this machine, the reference's observations cached "
            f"(as for any run after the first; the median of {real.get('rounds', 1)} runs each, taken in turn): "
            f"`--dask local:2` {w['--dask local:2']:.1f} s, `--workers 2` {w['--workers 2']:.1f} s "
            f"(ratio {real['ratio_dask_over_workers']:.2f}) — {'no slower' if real['ratio_dask_over_workers'] <= 1.05 else _SLOWER}{each}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--host":  # the grading host, in the fresh process grade_on_simulated_cluster starts
        print(json.dumps(host(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2,4,8,16,32,64", help="Dask threads to simulate, comma-separated")
    parser.add_argument("--per-thread", type=int, default=50, help="submissions per thread in each scaling run (at least 50)")
    parser.add_argument("--big", type=int, default=10_000, help="submissions of the large run at the most threads (0: none)")
    parser.add_argument("--delay", type=float, default=0.4, help="seconds the simulated check step takes")
    parser.add_argument("--real", type=int, default=24, help="corpus notebooks for the unsimulated comparison (0: none)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each way in the unsimulated comparison")
    parser.add_argument(
        "--processes", type=int, default=4,
        help="Dask worker processes the threads are spread over (default 4: nearer a real cluster's thread or few per "
             "process, whose threads share one interpreter lock each, while each process costs its upkeep on these 2 cores)",
    )  # fmt: skip
    common.report_arguments(parser, "scale")
    args = parser.parse_args()
    if args.render_only:
        return common.render_only("scale", markdown, args.out)
    threads = [int(t) for t in args.threads.split(",") if t.strip()]  # none: only the other runs
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "machine": common.machine(), "delay_s": args.delay, "processes": args.processes, "scaling": [],
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="grader-scale-") as tmp:
        work = Path(tmp)
        recorded = record(work) if threads else None
        for n in threads:
            measured = grade_on_simulated_cluster(n, max(50, args.per_thread * n), recorded, args.delay, work, args.processes)
            results["scaling"].append(measured)
            print(f"N={n}: {measured['per_second']:.1f}/s, efficiency {100 * measured['efficiency']:.0f}%, "
                  f"host {measured['host_cpu_ms_per_submission']:.2f} ms/submission, {measured['peak_rss_mb']:.0f} MB, "
                  f"cluster {measured['cluster_cpu_ms_per_submission']}", flush=True)
        if args.big and threads:
            results["big"] = grade_on_simulated_cluster(max(threads), args.big, recorded, args.delay, work, args.processes)
            print(f"big: {results['big']['wall_s']}", flush=True)
        if args.real:
            results["real"] = real_side_by_side(work, args.real, args.rounds)
            print(f"real: {results['real']}", flush=True)
    common.write_report("scale", results, markdown, args.out)


if __name__ == "__main__":
    main()
