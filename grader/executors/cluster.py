"""Grading on a Dask cluster, for classes that outgrow one machine (`grader run --dask ...`).

Each Dask worker process keeps warm grader workers (worker.py, in the same sandbox and with the
same limits as on one machine), one per Dask thread, configured once with the reference's
expectations. The cluster is fed with back-pressure: two tasks in flight per Dask thread, each
a batch of up to four submissions graded in turn (one per task as the class runs out), the next
read and sent as tasks finish, so the grading host holds a bounded number of files in memory
however large the class, and pays a task's upkeep once per batch. A task grades its submissions
through the same path as the local pool (grader/pipeline.py `grade`) and hands back each result
in the gradebook's form, all the grading host has left to store.

Needs the optional extra: `pip install 'grader[dask]'`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from grader.assignment import Assignment
from grader.compare.expectations import Expectations
from grader.errors import GraderError, WorkerError
from grader.executors import Graded, job_deadline_s
from grader.gradebook import ResultDocument
from grader.isolate.client import ConfigurationRecorder, Worker
from grader.load import Submission
from grader.pipeline import PreparedSubmission, grade, grading_failed, open_worker, prepare
from grader.protocol import ConfigureRequest

Job = TypeVar("Job")
Payload = TypeVar("Payload")

# Tasks in flight per Dask thread: one running, one queued beside it so a thread never waits
# for the grading host between two tasks.
IN_FLIGHT_PER_THREAD = 2
# Submissions per Dask task while many are left: a task's upkeep (client, scheduler and Dask
# worker together, some milliseconds) is paid once per batch. See `_batch_size`.
MAX_BATCH = 4
_NTHREADS_REFRESH_S = 5.0
_CONNECT_TIMEOUT_S = 10.0  # how often the cluster's size is asked again (workers may join or leave)

LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.gil.enabled": False,
    "distributed.admin.system-monitor.interval": "5s",
}

_WARM: dict[tuple[str, int], Worker] = {}  # in each Dask worker process: (configuration, thread) -> worker
# How a worker is started, before it is configured: what a prestarted worker must match.
class _WorkerKind(NamedTuple):
    sandbox: str
    read_only: tuple[str, ...]
    threads: int
_PRESTARTED: list[tuple[_WorkerKind, Worker]] = []  # started, not yet configured
_WARM_LOCK = threading.Lock()


@dataclass(frozen=True)
class RemoteSettings:
    """What a Dask worker needs to start a grader worker like the local one."""

    configuration: list[ConfigureRequest]  # the configure messages the local worker received
    sandbox: str
    read_only: tuple[str, ...]
    threads: int = 1

    @functools.cached_property
    def key(self) -> str:
        """Which warm workers serve these settings. Worked out once per Dask worker process (the
        settings reach it once): the configuration holds the reference's weights, and hashing it
        for every task cost milliseconds each."""
        text = json.dumps([self.configuration, self.sandbox, self.read_only, self.threads], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def prestart_workers(sandbox: str, read_only: tuple[str, ...], threads: int, dask_worker: Any = None, count: int | None = None) -> int:
    """Run on every Dask worker process (`client.run`) while the grading host checks the
    reference: start a grader worker per Dask thread (or `count`) now, so their torch imports
    overlap the check instead of following it. `warm_worker` configures them on first use.
    Returns how many this process has waiting."""
    wanted = count or (dask_worker.state.nthreads if dask_worker is not None else 1)
    kind = _WorkerKind(sandbox, tuple(read_only), threads)
    with _WARM_LOCK:
        waiting = sum(1 for k, _ in _PRESTARTED if k == kind)
        for _ in range(wanted - waiting):
            _PRESTARTED.append((kind, Worker(threads, sandbox=sandbox, read_only=tuple(Path(p) for p in read_only), wait=False)))
        return max(wanted, waiting)


def _prestarted(settings: RemoteSettings) -> Worker | None:
    kind = _WorkerKind(settings.sandbox, tuple(settings.read_only), settings.threads)
    with _WARM_LOCK:
        for i, (k, worker) in enumerate(_PRESTARTED):
            if k == kind:
                del _PRESTARTED[i]
                return worker
    return None


def warm_worker(settings: RemoteSettings) -> Worker:
    """The grader worker of the calling Dask thread, started (or taken from those prestarted)
    and configured on first use."""
    slot = (settings.key, threading.get_ident())
    with _WARM_LOCK:
        worker = _WARM.get(slot)
    if worker is None:
        worker = _prestarted(settings) or Worker(settings.threads, sandbox=settings.sandbox, read_only=tuple(Path(p) for p in settings.read_only))
        worker.configure_all(settings.configuration)
        with _WARM_LOCK:
            _WARM[slot] = worker
    return worker


@dataclass(frozen=True)
class ClusterGrading:
    """What every Dask worker receives once: how to start a grader worker like the local one, and
    the settings and expectations a result is decided by."""

    worker: RemoteSettings
    assignment: Assignment
    expected: Expectations


def grade_on_cluster(shared: ClusterGrading, prepared: PreparedSubmission) -> ResultDocument:
    """The Dask task for one submission, in a Dask worker process: `grade` on that process's warm
    worker. The host's clock means nothing here: the time taken starts now."""
    prepared = replace(prepared, started=time.monotonic())
    worker = warm_worker(shared.worker)
    return ResultDocument.of(grade(prepared, shared.assignment, shared.expected, worker))


class ClusterExecutor:
    """Grading on the Dask cluster at `spec` (grader/executors/__init__.py Executor). The grading
    host starts one worker of its own, to observe the reference, unless `known` says an earlier
    run's observations of it are cached: then only a recorder stands in, and the host imports no
    torch at all."""

    def __init__(self, spec: str, assignment: Assignment, *, sandbox: str = "auto", threads: int | None = None, known: bool = False) -> None:
        read_only = tuple(map(str, assignment.data_folders()))
        self.settings = (sandbox, read_only, threads or 1)
        # Connects, and has the cluster's workers import torch, while the local worker starts.
        self.connection = ClusterConnection(spec, self.settings)
        try:
            self._reference_worker = ConfigurationRecorder(sandbox) if known else open_worker(assignment, sandbox, threads or 1)
        except BaseException:
            self.connection.close()
            raise

    @property
    def reference_worker(self) -> ConfigurationRecorder:
        return self._reference_worker

    def grade(self, work: Sequence[Submission], assignment: Assignment, expected: Expectations) -> Graded:
        """Each submission's bytes read here as its turn comes, everything else done on the cluster."""
        client = self.connection.client()
        remote = RemoteSettings(self._reference_worker.configuration, *self.settings)
        final: dict[int, ResultDocument] = {}  # decided here: a file that could not be read

        def payload(submission: Submission) -> PreparedSubmission | None:
            prepared = prepare(submission, assignment, annotate=True)
            if prepared.request is None:
                final[id(submission)] = ResultDocument.of(prepared.result)
                return None
            return prepared

        shared = ClusterGrading(remote, assignment, expected)
        for submission, outcome in map_on_cluster(client, shared, grade_on_cluster, work, payload, job_timeout_s=job_deadline_s(assignment)):
            if outcome is None:
                yield submission, final.pop(id(submission))
            elif isinstance(outcome, ResultDocument):
                yield submission, outcome
            else:  # the row says the grader failed; the run goes on
                failure = outcome if isinstance(outcome, BaseException) else TypeError(f"a Dask task returned {type(outcome).__name__}")
                yield submission, ResultDocument.of(grading_failed(submission, assignment, failure))

    def kill(self) -> None:
        if isinstance(self._reference_worker, Worker):
            self._reference_worker.kill()

    def __enter__(self) -> ClusterExecutor:
        return self

    def __exit__(self, *_: object) -> None:
        try:
            if isinstance(self._reference_worker, Worker):
                self._reference_worker.close()
        finally:
            self.connection.close()


class ClusterConnection:
    """A Dask client for `spec` (see `connect`), connected in a thread of its own so that a local
    cluster starts while the grading host's own worker imports torch. Once connected, every Dask
    worker starts its grader workers (`prestart_workers` with `prestart`: sandbox, read-only
    folders, threads), so their torch imports overlap the host's start-up and reference check.
    `client()` waits for the connection and raises what connecting raised; `close()` closes it,
    and the cluster `local:N` started."""

    def __init__(self, spec: str, prestart: tuple[str, tuple[str, ...], int] | None = None) -> None:
        _check_reachable(spec)  # here, before any worker starts: a wrong address is said at once
        local = _local_threads(spec)
        if local and prestart is not None:
            # local:N grades in this very process: its grader workers start at once, their torch
            # imports beside Dask's own import and start-up instead of after them.
            prestart_workers(*prestart, count=local)
            prestart = None
        self._client: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._connect, args=(spec, prestart), daemon=True)
        self._thread.start()

    def _connect(self, spec: str, prestart: tuple[str, tuple[str, ...], int] | None) -> None:
        try:
            self._client = connect(spec)
        except BaseException as exc:
            self._error = exc
            return
        if prestart is not None:
            try:
                self._client.run(prestart_workers, *prestart)
            except Exception:
                pass

    def client(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._client

    def close(self) -> None:
        self._thread.join()
        if self._client is not None:
            cluster = getattr(self._client, "cluster", None)
            self._client.close()
            if cluster is not None:
                cluster.close()
        # A local:N cluster ran in this process: its grader workers, used or not, go with it.
        with _WARM_LOCK:
            workers = [worker for _, worker in _PRESTARTED] + list(_WARM.values())
            _PRESTARTED.clear()
            _WARM.clear()
        for worker in workers:
            worker.close()


def _check_reachable(spec: str) -> None:
    """Raise a GraderError now when nothing listens at a tcp:// scheduler address, instead of
    after Dask's own connection attempts time out."""
    if not spec.startswith("tcp://"):
        return
    host, _, port = spec[len("tcp://"):].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_TIMEOUT_S):
            pass
    except ValueError:
        raise GraderError(f"--dask {spec}: expected tcp://HOST:PORT") from None
    except OSError as exc:
        raise GraderError(f"--dask {spec}: cannot reach the Dask scheduler ({exc.strerror or exc})") from None


def _local_threads(spec: str) -> int | None:
    """N of `local:N`; None for a scheduler address."""
    if not spec.startswith("local:"):
        return None
    try:
        return int(spec.split(":", 1)[1])
    except ValueError:
        raise GraderError(f"--dask {spec}: expected local:N with N a number of workers") from None


def connect(spec: str) -> Any:
    """A Dask client for `spec`: a scheduler address, or `local:N` for a LocalCluster of N workers."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise GraderError("--dask needs Dask: pip install 'grader[dask]'") from None
    count = _local_threads(spec)
    if count is not None:
        import dask

        # The cluster lives in this process, beside the grading host: none of Dask's self-watching
        # (a profiler sampling every thread's stack 100 times a second, the interpreter-lock and
        # system monitors) is wanted here.
        dask.config.set(LOCAL_CLUSTER_CONFIG)
        cluster = LocalCluster(n_workers=1, threads_per_worker=count, processes=False, dashboard_address=None)
        return Client(cluster)
    try:
        return Client(spec, timeout=f"{_CONNECT_TIMEOUT_S:g}s")
    except (OSError, TimeoutError) as exc:
        raise GraderError(f"--dask {spec}: cannot reach the Dask scheduler ({exc})") from None


def map_on_cluster(
    client: Any,
    shared: Any,
    task: Callable[[Any, Payload], Any],
    jobs: Sequence[Job],
    payload: Callable[[Job], Payload | None],
    *,
    job_timeout_s: float | None = None,
    in_flight_per_thread: int = IN_FLIGHT_PER_THREAD,
    max_batch: int = MAX_BATCH,
) -> Iterator[tuple[Job, Any]]:
    """Run `task(shared, payload(job))` on the cluster for every job, in the order given, and
    yield (job, what the task returned or the exception) exactly once per job, as they finish.

    `shared` travels to every Dask worker once. Jobs travel in batches, one Dask task running
    up to `max_batch` of them in turn, while many are left (see `_batch_size`), one per task
    towards the end. `payload(job)` is called just before its job is sent, with at most
    `in_flight_per_thread` batches per Dask thread sent and not yet answered; when it returns
    None there is nothing to send and the job is answered with None at once. A job whose task
    raises is answered with a WorkerError; its batch's other jobs go on. When no task finishes
    for `job_timeout_s` per job of the largest batch running, the tasks running then are
    answered, every job of theirs, with a WorkerError and cancelled, and the rest go on."""
    shared_future = client.scatter(shared, broadcast=True)
    run_batch = functools.partial(_run_batch, task)
    todo = iter(jobs)
    unsent = len(jobs)
    futures: dict[Any, list[Job]] = {}  # sent and not yet answered: each task's jobs
    in_flight = 0  # their jobs, all tasks together
    finished: queue.Queue[Any] = queue.Queue()  # filled by Dask's own thread as tasks end
    threads, sized_at = 1, -_NTHREADS_REFRESH_S
    try:
        while True:
            if time.monotonic() - sized_at >= _NTHREADS_REFRESH_S:
                threads = max(1, sum(client.nthreads().values()))
                sized_at = time.monotonic()
            batch = _batch_size(unsent, threads, in_flight_per_thread, max_batch)
            capacity = in_flight_per_thread * threads * batch  # in jobs
            # Topped up a quarter of the capacity at a time, in one message to the scheduler:
            # one task per message costs the scheduler more than the task itself.
            if unsent and in_flight <= capacity - max(1, capacity // 4):
                batches: list[tuple[list[Job], list[Payload]]] = []
                while unsent and in_flight < capacity:
                    job = next(todo)
                    unsent -= 1
                    try:
                        data = payload(job)
                    except Exception as exc:
                        yield job, exc
                        continue
                    if data is None:
                        yield job, None
                        continue
                    if not batches or len(batches[-1][0]) == batch:
                        batches.append(([], []))
                    batches[-1][0].append(job)
                    batches[-1][1].append(data)
                    in_flight += 1
                if batches:
                    sent = client.map(run_batch, [shared_future] * len(batches), [data for _, data in batches], pure=False)
                    for future, (batch_jobs, _) in zip(sent, batches):
                        futures[future] = batch_jobs
                        future.add_done_callback(finished.put)
            if not futures:
                return
            deadline = None if job_timeout_s is None else job_timeout_s * max(len(batch_jobs) for batch_jobs in futures.values())
            try:
                done = [finished.get(timeout=deadline)]
            except queue.Empty:
                running = {key for keys in client.processing().values() for key in keys}
                stuck = [future for future in futures if future.key in running]
                client.cancel(stuck)
                for future in stuck:
                    batch_jobs = futures.pop(future)
                    in_flight -= len(batch_jobs)
                    for job in batch_jobs:
                        yield job, WorkerError(f"no result from the Dask cluster within {deadline:.0f} s; the task was cancelled")
                continue
            while not finished.empty():
                done.append(finished.get_nowait())
            done = [future for future in done if future in futures]  # not one the watchdog answered
            for future, outcomes in _outcomes(client, done):
                batch_jobs = futures.pop(future)
                in_flight -= len(batch_jobs)
                if not isinstance(outcomes, list) or len(outcomes) != len(batch_jobs):  # the whole task failed
                    outcomes = [outcomes] * len(batch_jobs)
                yield from zip(batch_jobs, outcomes)
    finally:
        client.cancel(list(futures))


def _batch_size(unsent: int, threads: int, in_flight_per_thread: int, max_batch: int) -> int:
    """Jobs per Dask task: `max_batch` while every thread has more than twice its in-flight
    share of full batches left, shrinking as they run out, so that the class's last jobs go one
    per task and no thread finishes long after the others. A batch costs the grading host, the
    scheduler and the Dask worker one task's upkeep (a few milliseconds in all) instead of one per job."""
    per_thread = unsent // (threads * in_flight_per_thread * 2)
    return max(1, min(max_batch, per_thread))


def _run_batch(task: Callable[[Any, Any], Any], shared: Any, payloads: list[Any]) -> list[Any]:
    """The Dask task: `task` for each payload in turn, what each returned or why it failed."""
    outcomes: list[Any] = []
    for data in payloads:
        try:
            outcomes.append(task(shared, data))
        except WorkerError as exc:
            outcomes.append(exc)
        except Exception as exc:
            outcomes.append(_failed(exc))
    return outcomes


def _outcomes(client: Any, batch: list[Any]) -> list[tuple[Any, Any]]:
    """What each finished task returned, fetched in one round trip, or why there is nothing."""
    succeeded = [future for future in batch if future.status == "finished"]
    values: dict[Any, Any] = {}
    # Straight from the workers, not through the scheduler, which would otherwise carry every
    # result; through it when the workers cannot be reached from here.
    for direct in (True, False):
        try:
            values = dict(zip(succeeded, client.gather(succeeded, direct=direct))) if succeeded else {}
            break
        except Exception:
            continue
    return [(future, values[future] if future in values else _task_result(future)) for future in batch]


def _failed(exc: BaseException) -> WorkerError:
    return WorkerError(f"the Dask task failed: {type(exc).__name__}: {exc}")


def _task_result(future: Any) -> Any:
    try:
        return future.result()
    except WorkerError as exc:
        return exc
    except Exception as exc:  # a Dask worker died or the task failed on its side
        return _failed(exc)
