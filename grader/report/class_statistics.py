"""A class's statistics, computed once on the run's DataFrame (grader.results.results_frame) for
every report that shows them: the terminal summary after `grader run` and the HTML class report."""

from __future__ import annotations

from dataclasses import dataclass

from grader.results import INVALID, SubmissionResult, results_frame

HISTOGRAM_BINS = 10


@dataclass(frozen=True)
class CheckStatistics:
    name: str
    max_points: float
    full_marks: int  # students with every point of this check
    students: int
    mean_points: float

    @property
    def full_marks_rate(self) -> float:
        return self.full_marks / self.students if self.students else 0.0


@dataclass(frozen=True)
class ClassStatistics:
    students: int
    invalid: int  # rows whose submission could not be read
    mean: float
    median: float
    max_total: float
    checks: list[CheckStatistics]
    histogram: list[int]  # students per bin of HISTOGRAM_BINS equal bins of [0, max_total]

    def histogram_edges(self) -> list[float]:
        top = self.max_total or 1.0
        return [round(top * i / HISTOGRAM_BINS, 2) for i in range(HISTOGRAM_BINS + 1)]


def class_statistics(results: list[SubmissionResult], checks: list[str] | None = None) -> ClassStatistics | None:
    """None when there are no results. `checks`: which, in order (default: the results' own)."""
    if not results:
        return None
    frame = results_frame(results, checks)
    max_points = frame.attrs["max_points"]
    names = list(checks) if checks is not None else list(max_points)
    top = float(frame["max_total"].max()) or 1.0
    bins = (frame["total"] / top * HISTOGRAM_BINS).astype(int).clip(upper=HISTOGRAM_BINS - 1)
    return ClassStatistics(
        students=len(frame),
        invalid=int((frame["status"] == INVALID).sum()),
        mean=float(frame["total"].mean()),
        median=float(frame["total"].median()),
        max_total=float(frame["max_total"].max()),
        checks=[
            CheckStatistics(
                name=name,
                max_points=max_points.get(name, 0.0),
                full_marks=int((frame[name] >= max_points[name]).sum()) if name in max_points else 0,
                students=len(frame),
                mean_points=float(frame[name].mean()),
            )
            for name in names
        ],
        histogram=bins.value_counts().reindex(range(HISTOGRAM_BINS), fill_value=0).tolist(),
    )
