"""Grading on a Dask cluster, for classes that outgrow one machine (`grader run --dask ...`).

Each Dask worker process keeps warm grader workers (worker.py, in the same sandbox and with the
same limits as on one machine), one per Dask thread, configured once with the reference's
expectations. A Dask task takes a submission's bytes, reads and extracts them in a limited child
and returns the raw observations. Validation, comparison and scoring stay in the grader's own
process, and results go into the same gradebook, so a run resumed on another executor reuses
them.

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


def grade_on_cluster(settings: RemoteSettings, submission: dict[str, Any], groups: list[str], limits: dict[str, Any]) -> dict[str, Any]:
    """The Dask task: one submission read, extracted and observed by a warm worker of this process."""
    return _warm_worker(settings).grade(submission, groups, limits)


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
    request: Callable[[Job], dict[str, Any] | None],
    groups: list[str],
    limits: dict[str, Any],
    *,
    job_timeout_s: float | None = None,
) -> Iterator[tuple[Job, dict[str, Any] | Exception]]:
    """Grade every job's submission (`request(job)`: its bytes, or None when there is nothing to
    send) on the cluster; yield (job, raw observations or the exception) exactly once per job,
    as they finish. When no task finishes for `job_timeout_s`, the tasks running then are
    answered with a WorkerError and cancelled, and the rest go on."""
    from distributed import wait

    shared = client.scatter(settings, broadcast=True)  # the reference's weights travel once
    futures: dict[Any, Job] = {}
    for job in jobs:
        try:
            payload = request(job)
        except Exception as exc:  # noqa: BLE001 - this job's row says why
            yield job, exc
            continue
        if payload is None:
            yield job, {}
            continue
        futures[client.submit(grade_on_cluster, shared, payload, groups, limits, pure=False)] = job
    pending = set(futures)
    try:
        while pending:
            try:
                done, pending = wait(pending, timeout=job_timeout_s, return_when="FIRST_COMPLETED")
            except TimeoutError:
                running = {key for keys in client.processing().values() for key in keys}
                stuck = {future for future in pending if future.key in running}
                for future in stuck:
                    yield futures[future], WorkerError(f"no result from the Dask cluster within {job_timeout_s:.0f} s; the task was cancelled")
                client.cancel(list(stuck))
                pending -= stuck
                continue
            for future in done:
                yield futures[future], _task_result(future)
    finally:
        client.cancel(list(pending))


def _task_result(future: Any) -> dict[str, Any] | Exception:
    try:
        return future.result()
    except WorkerError as exc:
        return exc
    except Exception as exc:  # a Dask worker died or the task failed on its side
        return WorkerError(f"the Dask task failed: {type(exc).__name__}: {exc}")
