"""A realistic corpus of hand-ins, graded in one `grader run`: every row as tests/corpus/expected.csv says.

tests/corpus/ holds notebooks and scripts as students hand them in (written once with nbformat and
committed as data): Colab preambles and GPU code, Japanese comments, several Nets where the last
one counts, the book's own chapter-8 layout, `validate` helpers, loops with their parameters in
another order or extra keyword arguments, nbformat 3, `# %%` scripts and a main guard, progress
bars and live plots, cells run out of order, outputs with images and tracebacks. The correct ones
earn full marks; each wrong one loses exactly what its mistake costs in the README's check table.

expected.csv gives, per student (file name without extension, or folder name): the status, the
total and the points of each check, a phrase the `error` column must hold (empty: the column must
be empty), and what the submission is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import FULL, ROOT

CORPUS = Path(__file__).resolve().parent / "corpus"
EXPECTED = CORPUS / "expected.csv"


@pytest.fixture(scope="module")
def graded_corpus(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("corpus")
    folder = root / "submissions"
    shutil.copytree(CORPUS, folder, ignore=shutil.ignore_patterns(EXPECTED.name))
    out = root / "out"
    done = subprocess.run(
        [sys.executable, "-m", "grader", "run", str(folder), "-o", str(out / "report.csv"), "--workers", "2"],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return pd.read_csv(out / "report.csv", keep_default_na=False, dtype={"student": str}).set_index("student")


def expected_rows() -> pd.DataFrame:
    return pd.read_csv(EXPECTED, keep_default_na=False, dtype={"student": str}).set_index("student")


def test_the_corpus_is_a_class_of_at_least_twenty_with_correct_and_wrong_work():
    expected = expected_rows()
    assert len(expected) >= 20 and expected.index.is_unique
    assert list(expected.columns[2:9]) == list(FULL)  # the checks, in the CSV's order
    for student, row in expected.iterrows():
        assert sum(row[c] for c in FULL) == row["total"], student
    assert (expected["total"] == 100).sum() >= 10 and (expected["total"] < 100).sum() >= 8
    # Committed data stays small: outputs are a few lines and thumbnail images.
    assert [p.name for p in CORPUS.rglob("*") if p.is_file() and p.stat().st_size > 32 * 1024] == []


def test_every_submission_gets_its_expected_row(graded_corpus: pd.DataFrame):
    expected = expected_rows()
    assert sorted(graded_corpus.index) == sorted(expected.index)
    wrong = []
    for student, want in expected.iterrows():
        got = graded_corpus.loc[student]
        got_points = {c: float(got[c]) for c in FULL}
        want_points = {c: float(want[c]) for c in FULL}
        phrase_ok = want["error"] in got["error"] if want["error"] else got["error"] == ""
        if got["status"] != want["status"] or got_points != want_points or float(got["total"]) != float(want["total"]) or not phrase_ok:
            lost = {c: f"{got_points[c]:g} (expected {want_points[c]:g})" for c in FULL if got_points[c] != want_points[c]}
            wrong.append(
                f"{student} ({want['description']}): status {got['status']} (expected {want['status']}), "
                f"total {got['total']} (expected {want['total']}), differing checks {lost}, "
                f"error {got['error']!r} (expected {want['error'] or 'empty'!r})"
            )
    assert not wrong, "\n".join(wrong)
