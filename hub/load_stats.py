"""Channel load over time, for the supervisors' charts: what arrived, what opened, and how
long the queues were, per minute, summed into the buckets a chart shows.

Counting happens where the facts are made (the dispatcher counts messages it stored for the
first time, never a redelivery); backlog is sampled once a minute by the observer.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from hub.model import Message
from hub.ports import Applied, StatsPort

INBOUND = "inbound"  # subject: channel/account
OPENED = "opened"  # subject: channel/account|unit
BACKLOG = "backlog"  # subject: unit (waiting tickets), sampled

Window = Literal["hour", "day", "week"]
# (bucket seconds, number of buckets) a chart of each window shows
WINDOWS: dict[str, tuple[int, int]] = {"hour": (60, 60), "day": (900, 96), "week": (3600, 168)}


@dataclass(frozen=True, slots=True)
class Series:
    """Buckets of one window: ``starts`` (unix seconds) and, per subject, one value each."""

    window: str
    bucket_s: int
    starts: list[int]
    values: dict[str, list[float]]

    def total(self) -> list[float]:
        return [sum(v[i] for v in self.values.values()) for i in range(len(self.starts))]


class LoadStats:
    def __init__(self, port: StatsPort) -> None:
        self.port = port

    async def record(
        self, applied: Sequence[Applied], msgs: Sequence[Message], units: dict[str, str]
    ) -> None:
        """Count first-time messages per channel account and opened tickets per channel and
        unit (``units``: ticket id → unit). Summed per subject and minute first: a batch
        makes a few counter writes, not one per message; both metrics at once."""
        inbound: Counter[tuple[str, int]] = Counter()
        opened: Counter[tuple[str, int]] = Counter()
        for a, m in zip(applied, msgs, strict=True):
            if a.duplicate:
                continue
            minute = int(m.received_at // 60)
            inbound[(f"{m.channel}/{m.account}", minute)] += 1
            if a.outcome == "new":
                unit = units.get(a.ticket_id, "general")
                opened[(f"{m.channel}/{m.account}|{unit}", minute)] += 1
        work = [
            self.port.incr(metric, [(s, minute * 60, n) for (s, minute), n in counts.items()])
            for metric, counts in ((INBOUND, inbound), (OPENED, opened))
            if counts
        ]
        for r in await asyncio.gather(*work, return_exceptions=True):
            if isinstance(r, BaseException):
                raise r

    async def sample_backlog(self, waiting: dict[str, int], at: float) -> None:
        await self.port.sample(BACKLOG, {u: float(n) for u, n in waiting.items()}, at)

    async def series(self, metric: str, window: str, now: float, peak: bool = False) -> Series:
        """The window ending now, in whole buckets; counters add up, samples (``peak``) keep
        the highest minute of their bucket."""
        bucket_s, n = WINDOWS[window]
        end = (int(now) // bucket_s + 1) * bucket_s
        start = end - bucket_s * n
        raw = await self.port.minutes(metric, start, end)
        starts = [start + i * bucket_s for i in range(n)]
        values: dict[str, list[float]] = {}
        for subject, minutes in sorted(raw.items()):
            row = [0.0] * n
            for minute, v in minutes.items():
                i = (minute * 60 - start) // bucket_s
                if 0 <= i < n:
                    row[i] = max(row[i], v) if peak else row[i] + v
            values[subject] = row
        return Series(window, bucket_s, starts, values)

    async def per_minute(self, metric: str, now: float, minutes: int = 15) -> dict[str, float]:
        """Each subject's count over the last ``minutes`` minutes, as a rate per minute."""
        raw = await self.port.minutes(metric, now - minutes * 60, now)
        return {s: sum(v.values()) / minutes for s, v in raw.items()}
