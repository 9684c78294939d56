"""Executors: grade a class on warm workers and hand back each submission's finished result.

Two feed the same per-submission path (grader/pipeline.py `grade`) and answer alike, with a
`ResultDocument` per submission ready for the gradebook: `pool.LocalExecutor` drives workers on
this machine, `cluster.ClusterExecutor` on a Dask cluster. They run no student code themselves:
the workers' children do (grader/isolate/).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from grader.assignment import Assignment
from grader.compare.expectations import Expectations
from grader.gradebook import ResultDocument
from grader.isolate.client import ConfigurationRecorder, grading_deadline_s
from grader.load import Submission
from grader.protocol import worker_limits

Graded = Iterator[tuple[Submission, ResultDocument]]

# A submission whose worker has not answered this long after its own deadline is failed by the
# executor's watchdog, so one stuck submission never holds up the class.
WATCHDOG_MARGIN_S = 30.0


class Executor(Protocol):
    """Where a class is graded. Used as a context manager: the workers start on entry and stop
    on exit."""

    @property
    def reference_worker(self) -> ConfigurationRecorder:
        """What the reference check configures (a worker, or only a recorder when the reference's
        observations are cached and grading happens elsewhere): every grading worker gets the
        same configuration."""
        ...

    def grade(self, work: Sequence[Submission], assignment: Assignment, expected: Expectations) -> Graded:
        """Each submission's result, in the order they finish, exactly once each; a failure of
        the grader's own work is that submission's row, never the end of the class."""
        ...

    def kill(self) -> None:
        """Abandon the submissions in progress at once (Ctrl-C)."""
        ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *_: object) -> None: ...


def job_deadline_s(assignment: Assignment) -> float:
    """How long one submission may go unanswered before the watchdog fails it."""
    return grading_deadline_s(worker_limits(assignment), assignment.groups) + WATCHDOG_MARGIN_S
