"""What a comparison concludes, before points are applied (see grader.score)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outcome:
    fraction: float  # 0.0 .. 1.0 of the check's points
    reasons: list[str] = field(default_factory=list)  # why points were lost, for the student
    error: str | None = None  # short cause when something went wrong rather than being wrong
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # worth knowing, but cost no points

    @classmethod
    def passed(cls, **details: Any) -> Outcome:
        return cls(1.0, details=details)

    @classmethod
    def failed(cls, reason: str, *, error: str | None = None, **details: Any) -> Outcome:
        return cls(0.0, [reason], error=error, details=details)
