"""Expectations from the reference, and proof that the reference passes its own checks.

A reference that loses points against itself means the assignment's settings are wrong (for
example a training budget too small to lower the loss), and grading would be unfair.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grader.assignment import Assignment
from grader.compare import CHECKS
from grader.errors import ReferenceSolutionError
from grader.expectations import Expectations, observe_reference
from grader.isolate.client import Worker


def verified_reference_expectations(
    assignment: Assignment, worker: Worker, reference_path: Path, *, loop_model_spec: list[dict[str, Any]] | None = None
) -> Expectations:
    expected, loop = observe_reference(assignment, worker, reference_path, loop_model_spec=loop_model_spec)
    groups = {"net": expected.net, "loop": loop}
    for name, check in CHECKS.items():
        outcome = check(groups, expected, assignment)
        if outcome.fraction < 1.0:
            raise ReferenceSolutionError(
                f"{reference_path} fails its own check {name}: {'; '.join(outcome.reasons)} "
                f"(adjust {assignment.config_path})"
            )
    return expected
