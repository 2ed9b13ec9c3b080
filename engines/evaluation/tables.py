"""Numbers in the evaluation's Markdown tables."""

from __future__ import annotations


def fmt(x: float | None, digits: int = 3) -> str:
    """``x`` with ``digits`` decimals, or ``n/a`` when there is no value."""
    return "n/a" if x is None else f"{x:.{digits}f}"
