"""The class statistics both reports show (terminal summary, HTML class report), computed on the
run's DataFrame: means, medians, full marks per check and the score histogram."""

from __future__ import annotations

import pytest

from grader.report.class_statistics import HISTOGRAM_BINS, class_statistics
from grader.results import GRADED, INVALID, CheckResult, SubmissionResult


def _result(student: str, points: dict[str, float], status: str = GRADED) -> SubmissionResult:
    maxima = {"net.layers": 15.0, "loop.trains": 20.0}
    checks = [CheckResult(name, points[name], maxima[name]) for name in maxima if name in points]
    return SubmissionResult(student=student, path=f"{student}.ipynb", status=status, checks=checks)


def test_statistics_count_full_marks_per_check_and_bin_the_totals():
    results = [
        _result("ann", {"net.layers": 15, "loop.trains": 20}),  # 35 of 35: the top bin
        _result("ben", {"net.layers": 9, "loop.trains": 20}),
        _result("cid", {"net.layers": 0, "loop.trains": 12}),
        _result("dan", {"net.layers": 0, "loop.trains": 0}, status=INVALID),
    ]
    stats = class_statistics(results)
    assert stats is not None
    assert (stats.students, stats.invalid, stats.max_total) == (4, 1, 35.0)
    assert stats.mean == pytest.approx((35 + 29 + 12 + 0) / 4) and stats.median == pytest.approx((29 + 12) / 2)
    by_name = {c.name: c for c in stats.checks}
    assert [c.name for c in stats.checks] == ["net.layers", "loop.trains"]
    assert (by_name["net.layers"].full_marks, by_name["net.layers"].mean_points) == (1, pytest.approx(6.0))
    assert (by_name["loop.trains"].full_marks, by_name["loop.trains"].full_marks_rate) == (2, 0.5)
    assert len(stats.histogram) == HISTOGRAM_BINS and sum(stats.histogram) == 4
    assert stats.histogram[0] == 1 and stats.histogram[3] == 1 and stats.histogram[8] == 1 and stats.histogram[-1] == 1
    assert stats.histogram_edges()[0] == 0 and stats.histogram_edges()[-1] == 35


def test_a_check_no_result_has_counts_nobody_and_no_results_give_no_statistics():
    stats = class_statistics([_result("ann", {"net.layers": 15})], ["net.layers", "loop.trains"])
    assert stats is not None and [(c.name, c.full_marks) for c in stats.checks] == [("net.layers", 1), ("loop.trains", 0)]
    assert class_statistics([]) is None
