"""Expectations from the reference, and proof that the reference passes its own checks.

A reference that loses points against itself means the assignment's settings are wrong (for
example a training budget too small to lower the loss), and grading would be unfair.
"""

from __future__ import annotations

from pathlib import Path

from grader.assignment import Assignment
from grader.compare import CHECKS
from grader.compare.expectations import Expectations
from grader.errors import ReferenceSolutionError
from grader.isolate.client import ConfigurationRecorder, Worker
from grader.observations import GroupObservations
from grader.reference import cache as expectations_cache
from grader.reference.observing import observe_reference


def verified_reference_expectations(
    assignment: Assignment,
    worker: Worker | ConfigurationRecorder,
    reference_path: Path,
    *,
    rehearse: bool = True,
    known: tuple[Expectations, GroupObservations] | None = None,
    settings_at: str | None = None,
) -> Expectations:
    """The reference's expectations, from the cache when an earlier run observed this very
    reference (grader/reference/cache.py), and proof that it passes its own checks.
    `rehearse`: see observe_reference. `known`: the cache's entry, already read by the caller
    (`expectations_cache.cached`), so that it cannot go missing in between. `settings_at`: where
    the instructor changes the settings when the reference fails (its assignment.toml unless
    said: `grader assign` names the solution notebook's config cell)."""
    entry = expectations_cache.entry_path(assignment, reference_path) if reference_path.is_file() else None
    known = known or expectations_cache.load(entry, assignment, reference_path)
    expected, loop = observe_reference(assignment, worker, reference_path, known=known, rehearse=rehearse)
    groups = {"net": expected.net, "loop": loop}
    for name in assignment.checks:
        outcome = CHECKS[name](groups, expected, assignment)
        if outcome.fraction < 1.0:
            raise ReferenceSolutionError(
                f"{reference_path} fails its own check {name}: {'; '.join(outcome.reasons)} "
                f"(adjust the settings in {settings_at or assignment.config_path})"
            )
    if known is None:
        expectations_cache.store(entry, assignment, expected, loop)
    return expected
