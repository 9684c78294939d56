"""Grading on a Dask cluster, for classes that outgrow one machine (`grader run --dask ...`).

Each Dask worker process keeps warm grader workers (worker.py, in the same sandbox and with the
same limits as on one machine), one per Dask thread, configured once with the reference's
expectations. A Dask task only observes: it takes a submission's extracted program and returns
the raw observations. Validation, comparison and scoring stay in the grader's own process, and
results go into the same gradebook, so a run resumed on another executor reuses them.

Needs the optional extra: `pip install 'grader[dask]'`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from grader.errors import GraderError, WorkerError
from grader.isolate.client import Worker

Job = TypeVar("Job")

_WARM: dict[tuple[str, int], Worker] = {}  # in each Dask worker process: (configuration, thread) -> worker
_WARM_LOCK = threading.Lock()


@dataclass(frozen=True)
class RemoteSettings:
    """What a Dask worker needs to start a grader worker like the local one."""

    configuration: list[dict[str, Any]]  # the configure messages the local worker received
    sandbox: str
    read_only: tuple[str, ...]
    threads: int = 1

    @property
    def key(self) -> str:
        text = json.dumps([self.configuration, self.sandbox, self.read_only, self.threads], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def _warm_worker(settings: RemoteSettings) -> Worker:
    slot = (settings.key, threading.get_ident())
    with _WARM_LOCK:
        worker = _WARM.get(slot)
    if worker is None:
        worker = Worker(settings.threads, sandbox=settings.sandbox, read_only=tuple(Path(p) for p in settings.read_only))
        for message in settings.configuration:
            worker.configure(**{k: v for k, v in message.items() if k != "op"})
        with _WARM_LOCK:
            _WARM[slot] = worker
    return worker


def observe_on_cluster(settings: RemoteSettings, units: list[dict[str, Any]], groups: list[str], limits: dict[str, Any]) -> dict[str, Any]:
    """The Dask task: raw observations of one program, from a warm worker of this process."""
    return _warm_worker(settings).observe(units, groups, limits)


def connect(spec: str) -> Any:
    """A Dask client for `spec`: a scheduler address, or `local:N` for a LocalCluster of N workers."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise GraderError("--dask needs Dask: pip install 'grader[dask]'") from None
    if spec.startswith("local:"):
        try:
            count = int(spec.split(":", 1)[1])
        except ValueError:
            raise GraderError(f"--dask {spec}: expected local:N with N a number of workers") from None
        cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster)
    try:
        return Client(spec, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise GraderError(f"--dask {spec}: cannot reach the Dask scheduler ({exc})") from None


def map_on_cluster(
    client: Any,
    settings: RemoteSettings,
    jobs: Iterable[Job],
    program: Callable[[Job], list[dict[str, Any]]],
    groups: list[str],
    limits: dict[str, Any],
) -> Iterator[tuple[Job, dict[str, Any] | WorkerError]]:
    """Observe every job's program on the cluster; yield (job, raw observations) as they finish."""
    from distributed import as_completed

    shared = client.scatter(settings, broadcast=True)  # the reference's weights travel once
    futures = {}
    for job in jobs:
        future = client.submit(observe_on_cluster, shared, program(job), groups, limits, pure=False)
        futures[future] = job
    try:
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except WorkerError as exc:
                yield futures[future], exc
            except Exception as exc:  # a Dask worker died or the task failed on its side
                yield futures[future], WorkerError(f"the Dask task failed: {type(exc).__name__}: {exc}")
    finally:
        client.cancel(list(futures))
