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


# ---------------------------------------------------------------- a class of thousands

def _trained(student: str, net_trains: float, error: str = "") -> SubmissionResult:
    losses = {"losses": [2.3, 1.9, 1.2, 0.8], "reference_losses": [2.3, 1.8, 1.1, 0.7]}
    checks = [CheckResult("net.layers", 15.0, 15.0), CheckResult("net.trains", net_trains, 10.0, details=losses)]
    result = SubmissionResult(student=student, path=f"{student}.ipynb", status=GRADED, checks=checks)
    result.errors = [error] if error else []
    return result


def _large_class(size: int) -> list[SubmissionResult]:
    """Everyone at full marks, but every 40th student, who lost the training points with an error."""
    return [
        _trained(f"s{i:05d}", 0.0, "timed out after 60 s") if i % 40 == 7 else _trained(f"s{i:05d}", 10.0)
        for i in range(size)
    ]


def test_a_large_class_lists_in_the_terminal_only_the_submissions_with_an_error():
    from io import StringIO

    from rich.console import Console

    from grader.report.terminal import MAX_STUDENT_ROWS, class_summary

    small, large = StringIO(), StringIO()
    class_summary(_large_class(MAX_STUDENT_ROWS), Console(file=small, width=200))
    class_summary(_large_class(4000), Console(file=large, width=200))
    assert "s00000" in small.getvalue() and "s00049" in small.getvalue()  # a small class: every student
    text = " ".join(large.getvalue().split())  # the title wraps at the table's width
    assert "Scores: 50 of the 100 submissions with an error, of 4000 (the report has every row)" in text
    listed = [f"s{i:05d}" for i in range(4000) if f"s{i:05d}" in text]
    assert listed == [f"s{i:05d}" for i in range(7, 4000, 40)][:50]
    assert "4000 submissions" in text  # the statistics still cover everyone


def test_a_large_class_report_draws_the_loss_curves_of_students_who_lost_training_points_only():
    from grader.assignment import find_assignment
    from grader.report.html_report import MAX_CLASS_CURVES, class_report_html

    cifar2 = find_assignment("cifar2")
    small = class_report_html(_large_class(MAX_CLASS_CURVES), cifar2)
    assert small.count('<article class="student">') == MAX_CLASS_CURVES
    page = class_report_html(_large_class(1000), cifar2)
    assert page.count('<article class="student">') == 25
    assert "1000 students: shown here are the curves of 25 who lost points on a training check." in page
    assert page.count('<tr') > 1000  # the table still has every student
