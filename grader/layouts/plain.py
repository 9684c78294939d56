"""A plain folder: `<student>.ipynb`, `<student>.py` or `<student>/` (grader/load.py). Fits any
folder, so the automatic choice ends here; says nothing of LMS ids or lateness."""

from __future__ import annotations

from pathlib import Path

from grader.layouts.layout import LayoutReading, Wanted, counted
from grader.load import discover_submissions

NAME = "plain"


def misfit(folder: Path, wanted: Wanted) -> str | None:
    return None


def read(folder: Path, wanted: Wanted) -> LayoutReading:
    submissions = discover_submissions(folder, wanted.notebook)
    return LayoutReading(submissions, f"plain folder ({counted(len(submissions), 'submission')})")
