"""One definition of median and p90 for the dashboard and the reports, so the same tickets
give the same figure on both."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile: the value at rank ``ceil(p / 100 * n)`` (1-based, at least
    1) of the values sorted ascending, i.e. the smallest value with at least p % of the values
    at or below it. The median is p = 50: for an even count, the lower of the two middle
    values. No interpolation, so the answer is always a value that occurred. None for no
    values. The rank is computed in exact arithmetic (0.9 * 70 is not 63 in floats)."""
    if not 0 <= p <= 100:
        raise ValueError(f"p must be in 0..100, not {p!r}")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(Fraction(p) * len(ordered) / 100))
    return ordered[rank - 1]
