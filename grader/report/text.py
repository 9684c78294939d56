"""Text every writer shares: how points are written."""

from __future__ import annotations


def format_points(value: float) -> str:
    """Points as people write them: `12`, `7.5`, `3.33` (at most two decimals, no trailing zeros)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")
