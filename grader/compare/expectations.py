"""What a correct submission looks like: the reference's own observations, as the checks read them.

Derived from the reference solution at run time (grader/reference/): the instructor's
`grader run` observes `reference/<name>.py` with the very probes used on students; students'
`grader selfcheck` reads the same observations from the assignment's fixtures file, which never
contains the reference's source. Both sides therefore compare against the same expectations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from grader.observations import GroupObservations
from grader.protocol import LayerCall, LoopObservation, ReferenceBehaviour
from grader.wire import decode_array


@dataclass
class Expectations:
    origin: str  # where they came from, for messages
    net: GroupObservations  # the reference's own Net observations
    forward_inputs: np.ndarray
    weights: list[np.ndarray]  # the reference's parameters, then its floating-point buffers, in forward order
    loop_model_spec: list[dict[str, Any]]  # the stand-in model the loop check trains
    reference_loop: LoopObservation | None = None  # the reference loop's run on it; None in selfcheck

    @property
    def forward_output(self) -> np.ndarray:
        forward = self.net.get("forward")
        assert forward is not None and forward["output"] is not None
        return decode_array(forward["output"], what="reference output")

    @property
    def behaviour(self) -> ReferenceBehaviour | None:
        """What the reference Net does with its weights, for the probes to recognise a Net that
        behaves the same (see net_probes._behaves_like_reference): its output and gradients, and
        its output in training mode. None for an assignment that grades no network."""
        forward = self.net.get("forward")
        if forward is None:
            return None
        assert forward["output"] is not None
        return {"output": forward["output"], "gradients": forward["gradients"], "train_output": forward["train_output"]}

    @property
    def train_output(self) -> np.ndarray | None:
        """The reference's output in training mode (dropout on, BatchNorm on the batch's
        statistics), seeded; None when its forward failed in training mode."""
        forward = self.net.get("forward")
        assert forward is not None
        if forward["train_output"] is None:
            return None
        return decode_array(forward["train_output"], what="reference training-mode output")

    @property
    def layers(self) -> list[LayerCall]:
        """The reference's parametrized layers in forward order."""
        return self.net.traces[max(self.net.traces)]["calls"]
