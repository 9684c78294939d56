"""A pool of warm workers grading submissions in parallel.

Each worker is a long-lived process that imported torch once and forks a fresh, limited child
per check group (see worker.py), so parallel grading costs no interpreter starts. The grader
drives each worker from a thread of its own, which blocks on that worker's pipe; results come
back to the caller's thread in the order they finish. Nothing here runs student code.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from grader.errors import WorkerError
from grader.isolate.client import Worker

Job = TypeVar("Job")
Outcome = TypeVar("Outcome")
_DONE = object()


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
        self.workers: list[Worker] = []
        try:
            # All processes start first, then import torch at the same time.
            for _ in range(size):
                self.workers.append(start(threads))
            for worker in self.workers:
                worker.wait_ready()
        except BaseException:
            self.kill()
            raise

    def __enter__(self) -> "WorkerPool[Job, Outcome]":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def primary(self) -> Worker:
        return self.workers[0]

    def share_configuration(self) -> None:
        """Give every worker the configuration the primary received (settings, reference, weights)."""
        for worker in self.workers[1:]:
            worker.configure_like(self.primary, wait=False)
        for worker in self.workers[1:]:
            worker.wait_configured()

    def map_unordered(self, jobs: Iterable[Job], work: Callable[[Worker, Job], Outcome]) -> Iterator[tuple[Job, Outcome]]:
        """Run `work(worker, job)` for every job, on whichever worker is free, in the order given;
        yield (job, outcome) as each finishes. A failed job yields its WorkerError as outcome."""
        todo: queue.Queue[object] = queue.Queue()
        for job in jobs:
            todo.put(job)
        finished: queue.Queue[tuple[object, object]] = queue.Queue()
        stop = threading.Event()

        def drive(worker: Worker) -> None:
            while not stop.is_set():
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    break
                try:
                    outcome: object = work(worker, job)  # type: ignore[arg-type]
                except WorkerError as exc:
                    outcome = exc
                finished.put((job, outcome))
            finished.put((_DONE, None))

        threads = [threading.Thread(target=drive, args=(w,), daemon=True) for w in self.workers]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                job, outcome = finished.get()
                if job is _DONE:
                    running -= 1
                    continue
                yield job, outcome  # type: ignore[misc]
        finally:
            stop.set()  # on Ctrl-C or an abandoned iterator: no new jobs start

    def close(self) -> None:
        for worker in self.workers:
            worker.close()

    def kill(self) -> None:
        """Stop every worker now; threads waiting on them see their WorkerError and end."""
        for worker in self.workers:
            worker.kill()
