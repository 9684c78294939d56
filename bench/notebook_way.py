"""Grade a notebook "the way notebook graders do it", for bench/bench_cost.py to compare.

Otter-Grader and nbgrader execute each submission top to bottom in a fresh Jupyter kernel
(nbclient) and then run their tests in that kernel. This module does the same with grader's own
checks, so both ways of grading produce comparable totals:

1. the notebook is read with nbformat; a harness cell is put first that imports torch, sets one
   torch thread, and replaces `torchvision.datasets.CIFAR10` with the grader's synthetic data
   (nothing is downloaded); every `n_epochs=<number>` is set to the grader's training epochs;
2. two cells are appended that run grader's own probes on the kernel's namespace through
   grader.child.observe.group.observe_group, as the worker's child does, with the same trusted inputs
   `grader run` gives its worker, writing every observation as a
   JSON line to a file the moment it is made;
3. the notebook runs in a fresh kernel (CUDA hidden, one thread): errors do not stop it, and a
   cell past its time limit is interrupted and counted as a timeout;
4. the benchmark process validates the observations (grader.observations.read_group) and scores
   them with grader.compare and grader.score, exactly as `grader run` scores a child's report.

Roles of this file:
- in the benchmark process: `write_config`, then `grade_notebooks` (`execute_notebook` and
  `score_observations` for each), and `time_checks_alone`;
- inside each kernel (imported by the harness cells): `patch_cifar10`, `run_group`;
- as a script, `python bench/notebook_way.py time-checks CONFIG NOTEBOOK [--repeat N]`, which
  `time_checks_alone` runs: times grader's checks alone, in one warm process with torch imported
  (no fork, no sandbox, no JSON transfer, no kernel): the floor that any way of grading pays per
  submission.

Module-level imports stay light: the kernels import this file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

# The lecture notebook keeps CIFAR-10's labels 0 (airplane) and 2 (bird); the grader's synthetic
# classes 0 and 1 stand in for them.
CIFAR10_LABELS = [0, 2]
HARNESS_TIMEOUT_S = 120  # the harness's own setup cell (torch import), like the worker's startup timeout
GROUPS = ("net", "loop")
_EPOCHS = re.compile(r"\bn_epochs(\s*)=(\s*)\d+")


# ---------------------------------------------------------------- benchmark process: inputs
def write_config(path: Path, assignment: Any, expected: Any, reference_path: Path) -> Path:
    """The trusted inputs `grader run` hands its worker, as one JSON file the kernels read.

    `expected`: grader.compare.expectations.Expectations for `assignment` (the reference observed and
    verified by `verified_reference_expectations`, as `grader run` does before grading)."""
    from grader.child.cells import read_cells
    from grader.reference.observing import reference_helpers
    from grader.wire import encode_array

    config = {
        "settings": assignment.probe_settings(),
        "reference_helpers": reference_helpers(read_cells(reference_path), assignment),
        "forward_inputs": encode_array(expected.forward_inputs),
        "reference_weights": [encode_array(w) for w in expected.weights],
        "reference_behaviour": expected.behaviour,
        "loop_model_spec": expected.loop_model_spec,
        "cifar10_labels": CIFAR10_LABELS,
        "repo_root": str(ROOT),
    }
    path.write_text(json.dumps(config))
    return path


# ---------------------------------------------------------------- inside the kernel
class _Config:
    """The config file's contents, decoded once per process (torch tensors, dataset)."""

    _cache: ClassVar[dict[str, _Config]] = {}

    def __init__(self, path: str) -> None:
        import torch

        from grader.child.observe.data import build_dataset
        from grader.wire import decode_array

        raw = json.loads(Path(path).read_text())
        s = raw["settings"]
        self.raw = raw
        self.settings = s
        self.dataset = build_dataset(s["data"], s["input_shape"], s["num_classes"])
        self.forward_inputs = torch.from_numpy(decode_array(raw["forward_inputs"]).copy())
        self.reference_weights = [torch.from_numpy(decode_array(w).copy()) for w in raw["reference_weights"]]
        behaviour = raw["reference_behaviour"]
        self.reference_behaviour = {
            "output": decode_array(behaviour["output"]),
            "gradients": behaviour["gradients"],
            "train_output": None if behaviour["train_output"] is None else decode_array(behaviour["train_output"]),
        }
        self.reference_helpers = raw["reference_helpers"]
        self.loop_model_spec = raw["loop_model_spec"]

    @classmethod
    def load(cls, path: str) -> _Config:
        if path not in cls._cache:
            cls._cache[path] = cls(path)
        return cls._cache[path]


class _SyntheticCIFAR10:
    """Stands in for torchvision.datasets.CIFAR10: the grader's synthetic images, with CIFAR-10
    label numbers, whatever root, train, transform or download the notebook passes."""

    def __init__(self, images: Any, labels: list[int]) -> None:
        self._images = images
        self.targets = labels
        self.classes = [str(label) for label in sorted(set(labels))]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self._images[index], self.targets[index]


def patch_cifar10(config_path: str) -> None:
    """Make every `datasets.CIFAR10(...)` in this kernel return the grader's synthetic data."""
    import torchvision.datasets

    config = _Config.load(config_path)
    images, labels = config.dataset.tensors
    mapped = [config.raw["cifar10_labels"][int(label)] for label in labels]

    def cifar10(*_args: Any, **_kwargs: Any) -> _SyntheticCIFAR10:
        return _SyntheticCIFAR10(images, mapped)

    torchvision.datasets.CIFAR10 = cifar10  # type: ignore[assignment,misc]


def run_group(group: str, namespace: dict[str, Any], config_path: str, out_path: str) -> None:
    """Run one of grader's check groups ("net" or "loop") on the kernel's namespace, as the
    worker's child does (grader/isolate/worker.py), writing each observation as a JSON line."""
    from grader.child.observe.group import observe_group

    config = _Config.load(config_path)
    with open(out_path, "w") as out:

        def emit(observation: dict[str, Any]) -> None:
            # Stamped, so that what a group reports after its cell was interrupted can be dropped:
            # grader kills a child at its time limit, and the probes would catch KeyboardInterrupt.
            out.write(json.dumps({"t": time.time(), "observation": observation}) + "\n")
            out.flush()

        # The kernel ran the whole notebook: its namespace is the program, with no extraction notes.
        observe_group(group, config, lambda: (namespace, set(), []), emit)


# ---------------------------------------------------------------- benchmark process: execution
def kernel_environment(runtime_dir: Path) -> dict[str, str]:
    """The environment of every kernel: CPU only, one thread, no network for pip, private dirs."""
    for folder in ("ipython", "jupyter"):
        (runtime_dir / folder).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env.update(
        CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONHASHSEED="0",
        PATH=venv_bin + os.pathsep + env.get("PATH", ""),  # `!pip` in a notebook means this environment's pip
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        PIP_NO_INDEX="1",  # `!pip install torchvision` is answered from what is installed: there is no internet
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        IPYTHONDIR=str(runtime_dir / "ipython"),
        JUPYTER_RUNTIME_DIR=str(runtime_dir / "jupyter"),
        MPLBACKEND="Agg",
    )
    return env


def harnessed_notebook(notebook: Any, config_path: Path, out_dir: Path, epochs: int) -> Any:
    """A copy of `notebook` with the harness: setup cell first, the short training budget, and
    the two check cells last. Harness cells are tagged in metadata["bench"]."""
    import copy

    from nbformat.v4 import new_code_cell

    nb = copy.deepcopy(notebook)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = _EPOCHS.sub(lambda m: f"n_epochs{m.group(1)}={m.group(2)}{epochs}", cell.source)
            cell.outputs = []
    setup = new_code_cell(
        "import sys as _bench_sys\n"
        f"_bench_sys.path.insert(0, {str(BENCH_DIR)!r})\n"
        "import torch as _bench_torch\n"
        "_bench_torch.set_num_threads(1)\n"
        "import notebook_way as _bench\n"
        f"_bench.patch_cifar10({str(config_path)!r})\n"
    )
    setup.metadata["bench"] = "setup"
    checks = []
    for group in GROUPS:
        cell = new_code_cell(f"_bench.run_group({group!r}, globals(), {str(config_path)!r}, {str(out_dir / f'{group}.jsonl')!r})\n")
        cell.metadata["bench"] = f"check-{group}"
        checks.append(cell)
    nb.cells = [setup, *nb.cells, *checks]
    return nb


def execute_notebook(
    path: Path,
    config_path: Path,
    work_dir: Path,
    *,
    epochs: int,
    cell_timeout_s: float,
    notebook_timeout_s: float,
    env: dict[str, str],
) -> dict[str, Any]:
    """Execute one submission in a fresh kernel and return what happened.

    Each student cell and each check cell gets `cell_timeout_s` (the grader's check_timeout_s),
    all of them together `notebook_timeout_s` (the grader's timeout_s). A cell past its limit is
    interrupted and the notebook goes on, as grader goes on to its next check group. The time
    counts from before the kernel starts to after it has shut down.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    started = time.perf_counter()
    outcome: dict[str, Any] = {"status": "graded", "timed_out_cells": [], "timed_out_at": {}, "kernel_died": False, "error": None}
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        notebook = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # what grader calls an invalid submission
        outcome.update(status="invalid", error=f"unreadable notebook: {exc}"[:200], seconds=time.perf_counter() - started)
        return outcome
    nb = harnessed_notebook(notebook, config_path, work_dir, epochs)
    deadline: list[float] = []

    def timeout_for(cell: Any) -> float:
        role = cell.metadata.get("bench")
        if role == "setup":
            return HARNESS_TIMEOUT_S
        if not deadline:  # the notebook's budget starts with its first own cell
            deadline.append(time.monotonic() + notebook_timeout_s)
        return max(1.0, min(cell_timeout_s, deadline[0] - time.monotonic()))

    class Client(NotebookClient):
        async def _async_handle_timeout(self, timeout: int, cell: Any = None) -> Any:
            role = cell.metadata.get("bench", "student") if cell is not None else "unknown"
            outcome["timed_out_cells"].append(role)
            outcome["timed_out_at"].setdefault(role, time.time())
            return await super()._async_handle_timeout(timeout, cell)

    client = Client(
        nb,
        kernel_name="python3",
        timeout_func=timeout_for,
        interrupt_on_timeout=True,
        allow_errors=True,
        startup_timeout=HARNESS_TIMEOUT_S,
        resources={"metadata": {"path": str(work_dir)}},
    )
    # A cell that swallows the interrupt would hold the kernel forever: kill it at a hard limit.
    hard_limit = HARNESS_TIMEOUT_S + notebook_timeout_s + 2 * cell_timeout_s
    killed = threading.Event()

    def kill_kernel() -> None:
        pid = getattr(getattr(client.km, "provisioner", None), "pid", None)
        if pid:
            killed.set()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    watchdog = threading.Timer(hard_limit, kill_kernel)
    watchdog.daemon = True
    watchdog.start()
    try:
        with open(work_dir / "kernel.log", "wb") as log:  # the kernel's own stdout and stderr
            client.execute(env=env, stdout=log, stderr=log)  # cwd: resources' metadata path
    except DeadKernelError as exc:
        outcome.update(kernel_died=True, error=("killed at the hard time limit" if killed.is_set() else f"kernel died: {exc}")[:200])
    except Exception as exc:  # the harness itself failed: report it, do not hide it in the figures
        outcome.update(status="harness_error", error=f"{type(exc).__name__}: {exc}"[:400])
    finally:
        watchdog.cancel()
    outcome["seconds"] = time.perf_counter() - started
    outcome["observations"] = {group: _read_jsonl(work_dir / f"{group}.jsonl") for group in GROUPS}
    return outcome


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """[{"t": time it was made, "observation": {...}}, ...] as run_group wrote them."""
    if not path.is_file():
        return []
    stamped = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line cut short by an interrupt
            stamped.append(json.loads(line))
    return stamped


def score_observations(outcome: dict[str, Any], assignment: Any, expected: Any, cell_timeout_s: float) -> dict[str, Any]:
    """Score what the kernel observed with grader.compare and grader.score; same as `grader run`
    does with a child's report (a group that did not finish counts as timed out or crashed)."""
    from grader.compare import CHECKS
    from grader.observations import read_group
    from grader.score import score_outcomes, zero_scores

    if outcome["status"] == "invalid":
        checks = zero_scores(assignment, "not graded")
    else:
        names = {"net": "the Net checks", "loop": "the training_loop check"}
        groups = {}
        for group in GROUPS:
            # Only what was observed before the cell's time limit counts, as in grader, whose child
            # is killed at its limit.
            cutoff = outcome["timed_out_at"].get(f"check-{group}", math.inf)
            timed_out = cutoff < math.inf or outcome["kernel_died"]
            observations = [s["observation"] for s in outcome["observations"][group] if s["t"] < cutoff]
            run = {"observations": observations, "timed_out": timed_out, "limit_s": cell_timeout_s, "exit_code": None if timed_out else 0}
            groups[group] = read_group(run, what=names[group], memory_mb=assignment.limits.memory_mb)
        checks = score_outcomes({name: check(groups, expected, assignment) for name, check in CHECKS.items()}, assignment)
    return {
        "total": round(sum(c.points for c in checks), 2),
        "max_total": round(sum(c.max_points for c in checks), 2),
        "checks": {c.name: c.points for c in checks},
        "errors": [c.error for c in checks if c.error],
    }


def grade_notebooks(paths: list[Path], config: Path, work: Path, assignment: Any, expected: Any, *, at_a_time: int = 1) -> dict[Path, Any]:
    """Each notebook executed in its fresh kernel and scored, `at_a_time` kernels at once:
    {path: (execute_notebook's outcome, score_observations' score)}."""
    env = kernel_environment(work)
    os.environ["JUPYTER_RUNTIME_DIR"] = env["JUPYTER_RUNTIME_DIR"]  # connection files are written by this process
    limits = assignment.limits

    def one(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        outcome = execute_notebook(
            path, config, work / path.stem, epochs=assignment.training.epochs,
            cell_timeout_s=limits.check_timeout_s, notebook_timeout_s=limits.timeout_s, env=env,
        )  # fmt: skip
        if outcome["status"] == "harness_error":
            raise SystemExit(f"the notebook way failed on {path.name}: {outcome['error']}")
        score = score_observations(outcome, assignment, expected, limits.check_timeout_s)
        print(f"  notebook way: {path.stem}: {outcome['seconds']:.1f} s, total {score['total']}"
              + (f", timed out in {outcome['timed_out_cells']}" if outcome["timed_out_cells"] else ""), file=sys.stderr)
        return outcome, score

    with ThreadPoolExecutor(at_a_time) as pool:
        return dict(zip(paths, pool.map(one, paths), strict=True))


# ---------------------------------------------------------------- the checks alone, in-process
def time_checks_alone(config: Path, notebook: Path, repeat: int, threads: int = 1) -> dict[str, Any]:
    """`time_checks` in a fresh process with `threads` torch threads (the script's time-checks command)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / "notebook_way.py"), "time-checks", str(config), str(notebook), "--repeat", str(repeat), "--threads", str(threads)],
        check=False, env=env, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"timing the checks in-process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_checks(config_path: str, notebook: str, repeat: int, threads: int = 1) -> dict[str, Any]:
    """Run grader's checks on one submission `repeat` times in this (warm) process: the work of
    the worker's two children (load the programs, run the probes), without fork, sandbox, pipes
    or JSON. Returns wall and CPU seconds per run; the first, warm-up run is not counted."""
    import torch

    torch.set_num_threads(threads)
    from grader.child.cells import read_cells
    from grader.child.extract import extract_definitions

    config = _Config.load(config_path)
    settings = config.settings
    units = extract_definitions(read_cells(Path(notebook)), [settings["model_class"], settings["loop_function"]]).to_json()
    runs = []
    for i in range(repeat + 1):
        timings: dict[str, float] = {}
        for group in GROUPS:
            observations: list[dict[str, Any]] = []
            wall, cpu = time.perf_counter(), time.process_time()
            _run_group_in_process(group, units, config, observations.append)
            timings[f"{group}_wall_s"] = time.perf_counter() - wall
            timings[f"{group}_cpu_s"] = time.process_time() - cpu
            if not any(o.get("kind") == "done" for o in observations):
                raise RuntimeError(f"the {group} checks did not finish on {notebook}: {observations[-1:]}")
        timings["wall_s"] = timings["net_wall_s"] + timings["loop_wall_s"]
        timings["cpu_s"] = timings["net_cpu_s"] + timings["loop_cpu_s"]
        if i:
            runs.append(timings)
    return {
        "repeat": repeat,
        "torch_threads": torch.get_num_threads(),
        "runs": runs,
        "median": {key: statistics.median(r[key] for r in runs) for key in runs[0]},
    }


def _run_group_in_process(group: str, units: list[dict[str, Any]], config: _Config, emit: Any) -> None:
    from grader.child.observe.cuda_on_cpu import mentions_gpu
    from grader.child.observe.group import load_units, observe_group

    observe_group(group, config, load_units(units), emit, may_ask_for_cuda=mentions_gpu(u["source"] for u in units))


def main(argv: list[str] | None = None) -> None:
    import argparse
    import contextlib
    import io

    parser = argparse.ArgumentParser(description="Time grader's checks alone, in one warm process.")
    sub = parser.add_subparsers(dest="command", required=True)
    timing = sub.add_parser("time-checks")
    timing.add_argument("config", help="written by write_config")
    timing.add_argument("notebook", help="a submission the checks run on")
    timing.add_argument("--repeat", type=int, default=7)
    timing.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    with contextlib.redirect_stdout(io.StringIO()):  # the reference training_loop prints every epoch
        result = time_checks(args.config, args.notebook, args.repeat, args.threads)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
