"""Grading on this machine: a pool of warm workers grading submissions in parallel.

Each worker is a long-lived process that imported torch once and forks a fresh, limited child
per check group (see grader/isolate/worker.py), so parallel grading costs no interpreter starts.
The grader drives each worker from a thread of its own, which blocks on that worker's pipe and
grades its submission there (grader/pipeline.py `grade`); results come back to the caller's
thread in the order they finish. Nothing here runs student code.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from grader.assignment import Assignment
from grader.compare.expectations import Expectations
from grader.errors import WorkerError
from grader.executors import Graded, job_deadline_s
from grader.gradebook import ResultDocument
from grader.isolate.client import Worker
from grader.load import Submission
from grader.pipeline import PreparedSubmission, conclude, grading_failed, observe, open_worker, prepare
from grader.protocol import Observed

Job = TypeVar("Job")
Outcome = TypeVar("Outcome")
_DONE = object()
_NOTHING = object()
_WATCH_INTERVAL_S = 1.0


# torch threads per child unless asked for more. Parallelism comes from workers: on 2 cores a
# second thread per child gained nothing measurable in `grader run` (bench/throughput.md) while
# its OpenMP threads spin on the second core, and every other process that wakes up (the
# worker's supervision, the grader's progress bar, other users) stalls both threads at once.
DEFAULT_THREADS = 1


class WorkerPool(Generic[Job, Outcome]):
    """`size` workers started by `start(threads)`; use as a context manager."""

    def __init__(self, size: int, start: Callable[[int], Worker], threads: int | None = None) -> None:
        """`start(threads)` must return a Worker created with `wait=False`, from this thread.
        `threads`: torch threads per child, default DEFAULT_THREADS."""
        if size < 1:
            raise ValueError("a pool needs at least one worker")
        threads = threads or DEFAULT_THREADS
        self._start, self._threads = start, threads
        self.workers: list[Worker] = []
        try:
            # All processes start here and import torch at the same time; the caller waits only
            # for the primary (it checks the reference), each other worker in its own lane.
            for _ in range(size):
                self.workers.append(start(threads))
            self.primary.wait_ready()
        except BaseException:
            self.kill()
            raise

    def __enter__(self) -> WorkerPool[Job, Outcome]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def primary(self) -> Worker:
        return self.workers[0]

    def share_configuration(self) -> None:
        """Give every worker the configuration the primary received (settings, reference, weights).
        Not waited for: the primary grades meanwhile, and each other worker's lane sends it its
        configuration (about a second of rehearsal) before its first job."""
        for worker in self.workers[1:]:
            worker.configure_like(self.primary, wait=False)

    def map_unordered(
        self,
        jobs: Iterable[Job],
        work: Callable[[Worker, Job], Outcome],
        *,
        job_timeout_s: float | None = None,
        on_lost_worker: Callable[[WorkerError], None] | None = None,
    ) -> Iterator[tuple[Job, Outcome | BaseException]]:
        """Run `work(worker, job)` for every job, on whichever worker is free, in the order given;
        yield (job, outcome) as each finishes, exactly once per job.

        Nothing a job does stops the others: whatever `work` raises is that job's outcome, and a
        job with no outcome after `job_timeout_s` (a watchdog for what the worker's own limits
        did not catch) yields a WorkerError while its worker is stopped and replaced. A worker
        that cannot start leaves its share to the others; `on_lost_worker` (called from that
        worker's thread) is told why."""
        todo: queue.Queue[Job] = queue.Queue()
        for job in jobs:
            todo.put(job)
        finished: queue.Queue[tuple[_Lane, Any, object]] = queue.Queue()  # (lane, a job or _DONE, its outcome)
        stop = threading.Event()

        def drive(lane: _Lane) -> None:
            try:
                lane.worker.wait_configured()
            except WorkerError as exc:  # a worker that cannot start leaves its share to the others
                if on_lost_worker is not None:
                    on_lost_worker(exc)
                finished.put((lane, _DONE, None))
                return
            while not stop.is_set() and not lane.retired:
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    break
                lane.begin(job)
                try:
                    outcome: object = work(lane.worker, job)
                except BaseException as exc:
                    outcome = exc
                if lane.end():
                    finished.put((lane, job, outcome))
            finished.put((lane, _DONE, None))

        lanes: list[_Lane] = []

        def open_lane(worker: Worker) -> None:
            lane = _Lane(worker)
            lanes.append(lane)
            threading.Thread(target=drive, args=(lane,), daemon=True).start()

        for worker in self.workers:
            open_lane(worker)
        live = len(self.workers)
        try:
            while live:
                try:
                    lane, job, outcome = finished.get(timeout=_WATCH_INTERVAL_S if job_timeout_s else None)
                except queue.Empty:
                    assert job_timeout_s is not None
                    for lane in [lane for lane in lanes if lane.overdue(job_timeout_s)]:
                        abandoned = lane.take_over()
                        if abandoned is _NOTHING:
                            continue
                        live -= 1
                        yield abandoned, WorkerError(  # type: ignore[misc]
                            f"no result within {job_timeout_s:.0f} s, although every check has its own time limit; "
                            "its worker was stopped and replaced"
                        )
                        replacement = self._replace(lane.worker)
                        if replacement is not None:
                            open_lane(replacement)
                            live += 1
                    continue
                if job is _DONE:
                    if not lane.retired:  # a retired lane was already counted out
                        live -= 1
                    continue
                yield job, outcome  # type: ignore[misc]
            while True:  # jobs no worker was left to take
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    break
                yield job, WorkerError("no grader worker was left to grade it")
        finally:
            stop.set()  # on Ctrl-C or an abandoned iterator: no new jobs start

    def _replace(self, stuck: Worker) -> Worker | None:
        """Kill `stuck` and start a worker configured like it in its place; None if none starts."""
        stuck.kill()
        try:
            worker = self._start(self._threads)
            worker.wait_ready()
            worker.configure_like(stuck)
        except Exception:
            return None
        self.workers[self.workers.index(stuck)] = worker
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.close()

    def kill(self) -> None:
        """Stop every worker now; threads waiting on them see their WorkerError and end."""
        for worker in self.workers:
            worker.kill()


class _Lane:
    """One worker and the thread that feeds it; what it works on, for the watchdog."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.retired = False
        self._lock = threading.Lock()
        self._job: object = _NOTHING
        self._since = 0.0

    def begin(self, job: object) -> None:
        with self._lock:
            self._job, self._since = job, time.monotonic()

    def end(self) -> bool:
        """The job is done; False when the watchdog has already answered for it."""
        with self._lock:
            self._job = _NOTHING
            return not self.retired

    def take_over(self) -> object:
        """Retire this lane and return the job it was stuck on (_NOTHING if it just finished)."""
        with self._lock:
            if self._job is _NOTHING:
                return _NOTHING
            self.retired = True
            job, self._job = self._job, _NOTHING
            return job

    def overdue(self, timeout_s: float) -> bool:
        with self._lock:
            return not self.retired and self._job is not _NOTHING and time.monotonic() - self._since > timeout_s


class LocalExecutor:
    """`size` warm workers on this machine (grader/executors/__init__.py Executor).
    `on_lost_worker` is told why a worker could not start; the others grade its share."""

    def __init__(
        self, assignment: Assignment, size: int, *, sandbox: str = "auto", threads: int | None = None,
        on_lost_worker: Callable[[WorkerError], None] | None = None, start: Callable[[int], Worker] | None = None,
    ) -> None:  # fmt: skip
        """`start(threads)`: how a worker is started (a test's stand-in), by default as
        grader/pipeline.py `open_worker` starts one."""

        def open_one(n: int) -> Worker:
            return open_worker(assignment, sandbox, n, wait=False)

        start = start or open_one
        self.pool: WorkerPool[Submission, tuple[PreparedSubmission, Observed | WorkerError | None]] = WorkerPool(size, start, threads)
        self.on_lost_worker = on_lost_worker

    @property
    def reference_worker(self) -> Worker:
        return self.pool.primary

    def grade(self, work: Sequence[Submission], assignment: Assignment, expected: Expectations) -> Graded:
        """`grade`'s two halves (grader/pipeline.py) in two threads: each worker's lane reads and
        observes, and this thread concludes, so a worker starts its next submission while the
        last one is compared and scored here."""
        self.pool.share_configuration()

        def observe_on(worker: Worker, submission: Submission) -> tuple[PreparedSubmission, Observed | WorkerError | None]:
            # Annotated whatever --format says: a stored result serves every later run's formats.
            prepared = prepare(submission, assignment, annotate=True)
            return prepared, (observe(prepared, worker, assignment) if prepared.request is not None else None)

        jobs = self.pool.map_unordered(work, observe_on, job_timeout_s=job_deadline_s(assignment), on_lost_worker=self.on_lost_worker)
        for submission, outcome in jobs:
            if isinstance(outcome, BaseException):  # the grader's own work on it failed
                yield submission, ResultDocument.of(grading_failed(submission, assignment, outcome))
            else:
                prepared, observed = outcome  # nothing observed: the file was not readable, the result is final
                yield submission, ResultDocument.of(prepared.result if observed is None else conclude(prepared, observed, assignment, expected))

    def kill(self) -> None:
        self.pool.kill()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *_: object) -> None:
        self.pool.close()
