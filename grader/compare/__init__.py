"""Stage 5, compare: decide, from validated observations, how a submission differs from the
expectations. Runs in the grader's own process; never imports torch or student code.

Every check has the same signature, `check(student, expected, assignment) -> Outcome`, and is
registered here once; the CSV column order is the order of DEFAULT_CHECKS.
"""

from __future__ import annotations

from collections.abc import Callable

from grader.assignment import DEFAULT_CHECKS, Assignment
from grader.compare.expectations import Expectations
from grader.compare.loop_check import check_loop_trains
from grader.compare.net_checks import (
    check_net_forward,
    check_net_instantiate,
    check_net_layers,
    check_net_params,
    check_net_shapes,
    check_net_trains,
)
from grader.compare.outcome import Outcome
from grader.observations import GroupObservations

Check = Callable[[dict[str, GroupObservations], Expectations, Assignment], Outcome]

CHECKS: dict[str, Check] = {
    "net.instantiate": check_net_instantiate,
    "net.layers": check_net_layers,
    "net.shapes": check_net_shapes,
    "net.params": check_net_params,
    "net.forward": check_net_forward,
    "net.trains": check_net_trains,
    "loop.trains": check_loop_trains,
}
assert list(CHECKS) == list(DEFAULT_CHECKS), "every check needs default points, in column order"

__all__ = ["CHECKS", "Check", "Outcome"]
