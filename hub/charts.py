"""Charts for the supervisors' dashboard, drawn on the server as SVG.

Why server-made SVG and not a charting library: the console's Content-Security-Policy allows
no inline script or style, the pages are server-rendered fragments swapped in live, and these
charts need only bars and lines. A string of SVG travels in the same fragment as the numbers,
needs no JavaScript, prints, and scales with its ``viewBox``.

Everything shown comes from outside (unit names from the configuration, account names, series
labels), so every text and attribute is escaped here, once; styling uses presentation
attributes (``fill``, ``stroke``), never a ``style`` attribute, which the CSP would refuse.
Each chart carries ``role="img"``, an ``aria-label`` and a ``<title>``, a ``<title>`` per bar or
per time bucket so the number shows on hover, and a ``Table`` of the same numbers for the page
to show under it (people who cannot see the chart, or want the exact figures).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

JAKARTA = ZoneInfo("Asia/Jakarta")

# Okabe & Ito's palette: told apart with the common colour-vision deficiencies. The yellow of
# the original set is left out (unreadable on white); grey is kept for the folded "other".
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#332288")
OTHER_COLOUR = "#8C8C8C"
INK, GRID, AXIS = "#17212B", "#E3E8EE", "#8A96A3"

WIDTH = 800
PLOT_H = 170
LEFT, RIGHT = 52, 16
LEGEND_ROW = 18
AXIS_H = 26
CHAR_W = 6.6  # average width of a 12 px sans-serif character, to wrap the legend

# First-response buckets: upper bounds in seconds (the last bucket has none).
RESPONSE_EDGES = (300, 900, 3600, 4 * 3600, 8 * 3600, 86_400, 3 * 86_400)
# Time-axis steps, in seconds: the first that gives at most ``most`` ticks over the window.
TICK_STEPS = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86_400, 172_800)

Named = Sequence[tuple[str, Sequence[float]]]


@dataclass(frozen=True, slots=True)
class Words:
    """The few words a chart draws itself, in the page's language."""

    no_data: str = "No data"
    total: str = "Total"
    other: str = "Other"
    time: str = "Time"
    weekdays: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class Table:
    """The chart's numbers: ``head`` are the column headings, each row starts with its label."""

    caption: str
    head: list[str]
    rows: list[list[str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Chart:
    svg: str
    table: Table


# -- numbers ----------------------------------------------------------------------------------


def fmt_num(v: float) -> str:
    """Counts read as counts (``3``), averages with one decimal (``2.5``)."""
    if math.isfinite(v) and abs(v - round(v)) < 1e-9:
        return str(round(v))
    return f"{v:.1f}"


def nice_ticks(top: float, target: int = 4) -> list[float]:
    """Round y-axis ticks from 0 to at least ``top``: steps of 1, 2, 2.5 or 5 times a power of
    ten, whole numbers only (the charts count messages and tickets, never halves of them)."""
    if not math.isfinite(top) or top <= 0:
        return [0.0, 1.0]
    raw = top / target
    step = 1.0
    if raw > 1:
        mag = 10.0 ** math.floor(math.log10(raw))
        step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw and m * mag % 1 == 0)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def fold(series: Named, limit: int, other: str) -> list[tuple[str, list[float]]]:
    """At most ``limit`` series: the largest keep their place (and colour), the rest are
    summed into one ``other`` series, so a busy week stays a readable chart."""
    rows = [(name, list(values)) for name, values in series]
    if len(rows) <= limit:
        return rows
    ranked = sorted(range(len(rows)), key=lambda i: -sum(rows[i][1]))
    keep = set(ranked[: limit - 1])
    rest = [rows[i][1] for i in range(len(rows)) if i not in keep]
    summed = [sum(col) for col in zip(*rest, strict=True)]
    return [rows[i] for i in range(len(rows)) if i in keep] + [(other, summed)]


def response_buckets(seconds: Sequence[float]) -> list[int]:
    """How many first responses fell in each bucket of ``RESPONSE_EDGES`` (plus the last,
    open-ended one)."""
    counts = [0] * (len(RESPONSE_EDGES) + 1)
    for s in seconds:
        counts[next((i for i, edge in enumerate(RESPONSE_EDGES) if s < edge), -1)] += 1
    return counts


# -- time -------------------------------------------------------------------------------------


def _local(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, JAKARTA)


def time_ticks(starts: Sequence[int], bucket_s: int, most: int = 8) -> list[int]:
    """Indices of the buckets starting on a round Jakarta time (every 10 minutes over an hour,
    3 hours over a day, midnight over a week), at most ``most`` of them."""
    if not starts:
        return []
    span = len(starts) * bucket_s
    step = next((s for s in TICK_STEPS if s >= bucket_s and span / s <= most), TICK_STEPS[-1])
    out = []
    for i, t in enumerate(starts):
        offset = _local(t).utcoffset()
        local = t + int(offset.total_seconds() if offset else 0)
        if local % step == 0:
            out.append(i)
    return out


def tick_label(epoch_s: float, step_s: int, words: Words) -> str:
    at = _local(epoch_s)
    if step_s >= 86_400:
        return f"{words.weekdays[at.weekday()]} {at.day}"
    return at.strftime("%H:%M")


def bucket_label(start: int, bucket_s: int, words: Words) -> str:
    """What a bucket covers, for hovers and the table: ``14:05`` for a minute,
    ``Sen 21 14:00–14:15`` for longer buckets (a day or a week crosses midnight)."""
    at = _local(start)
    if bucket_s <= 60:
        return at.strftime("%H:%M")
    end = _local(start + bucket_s)
    return f"{words.weekdays[at.weekday()]} {at.day} {at:%H:%M}–{end:%H:%M}"


# -- drawing ----------------------------------------------------------------------------------


def _a(value: object) -> str:
    """An attribute value, quoted and escaped."""
    return f'"{escape(str(value), quote=True)}"'


def _n(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True, slots=True)
class _Frame:
    """Where the plot sits in the picture, once the legend's rows are known."""

    legend_rows: list[list[tuple[float, str, str]]]  # per row: (x, colour, label)
    top: float
    height: float
    n: int  # categories (buckets or bars)

    @property
    def width(self) -> float:
        return WIDTH - LEFT - RIGHT

    @property
    def bottom(self) -> float:
        return self.top + PLOT_H

    @property
    def slot(self) -> float:
        return self.width / max(1, self.n)

    def y(self, value: float, scale: float) -> float:
        return self.bottom - value / scale * PLOT_H


def _frame(labels: Sequence[tuple[str, str]], n: int) -> _Frame:
    """Lay out the legend in rows that fit the width, then the plot under it."""
    rows: list[list[tuple[float, str, str]]] = [[]] if labels else []
    x = float(LEFT)
    for colour, label in labels:
        w = 18 + len(label) * CHAR_W + 16
        if rows[-1] and x + w > WIDTH - RIGHT:
            rows.append([])
            x = float(LEFT)
        rows[-1].append((x, colour, label))
        x += w
    top = 10 + len(rows) * LEGEND_ROW + 16
    return _Frame(rows, top, top + PLOT_H + AXIS_H, n)


def _colours(names: Sequence[str], other: str) -> list[str]:
    return [
        OTHER_COLOUR if name == other and i == len(names) - 1 else PALETTE[i % len(PALETTE)]
        for i, name in enumerate(names)
    ]


def _open(title: str, f: _Frame) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} '
        f'{_n(f.height)}" role="img" aria-label={_a(title)} font-family="system-ui, '
        f'-apple-system, Segoe UI, Roboto, Noto Sans, sans-serif" font-size="12" fill={_a(INK)}>',
        f"<title>{escape(title)}</title>",
    ]


def _legend(f: _Frame) -> list[str]:
    out = ['<g class="legend">']
    for r, row in enumerate(f.legend_rows):
        y = 10 + r * LEGEND_ROW
        for x, colour, label in row:
            out.append(
                f'<rect x="{_n(x)}" y="{y + 2}" width="12" height="12" rx="2" fill={_a(colour)}/>'
                f'<text x="{_n(x + 18)}" y="{y + 12}">{escape(label)}</text>'
            )
    out.append("</g>")
    return out


def _y_axis(f: _Frame, ticks: Sequence[float], y_label: str) -> list[str]:
    out = [
        f'<text class="y-label" x="{LEFT}" y="{_n(f.top - 8)}" fill={_a(AXIS)} '
        f'font-size="11">{escape(y_label)}</text>',
        '<g class="y-axis">',
    ]
    for v in ticks:
        y = _n(f.y(v, ticks[-1]))
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" stroke={_a(GRID)}/>'
            f'<text x="{LEFT - 6}" y="{y}" dy="4" text-anchor="end" fill={_a(AXIS)}>'
            f"{fmt_num(v)}</text>"
        )
    out.append("</g>")
    return out


def _x_axis(f: _Frame, ticks: dict[int, str], centred: bool) -> list[str]:
    """Labels under the plot: at a bucket's left edge (a moment) or centred (a category)."""
    out = [
        f'<g class="x-axis"><line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_n(f.bottom)}" '
        f'y2="{_n(f.bottom)}" stroke={_a(AXIS)}/>'
    ]
    for i, label in sorted(ticks.items()):
        x = LEFT + (i + 0.5 if centred else i) * f.slot
        if not centred:
            out.append(
                f'<line x1="{_n(x)}" x2="{_n(x)}" y1="{_n(f.bottom)}" y2="{_n(f.bottom + 4)}" '
                f"stroke={_a(AXIS)}/>"
            )
        out.append(
            f'<text x="{_n(x)}" y="{_n(f.bottom + 17)}" text-anchor="middle" fill={_a(AXIS)}>'
            f"{escape(label)}</text>"
        )
    out.append("</g>")
    return out


def _no_data(title: str, y_label: str, words: Words) -> str:
    f = _frame([], 1)
    mid_y = f.top + PLOT_H / 2
    return "".join(
        [
            *_open(title, f),
            *_y_axis(f, [0.0, 1.0], y_label),
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_n(f.bottom)}" y2="{_n(f.bottom)}" '
            f"stroke={_a(AXIS)}/>",
            f'<text class="no-data" x="{WIDTH / 2}" y="{_n(mid_y)}" text-anchor="middle" '
            f'font-size="14" fill={_a(AXIS)}>{escape(words.no_data)}</text>',
            "</svg>",
        ]
    )


def _table(
    caption: str, first: str, categories: Sequence[str], series: Named, words: Words
) -> Table:
    rows = [
        [cat, *(fmt_num(v[i]) for _, v in series), fmt_num(sum(v[i] for _, v in series))]
        for i, cat in enumerate(categories)
    ]
    return Table(caption, [first, *(name for name, _ in series), words.total], rows)


def stacked_bars(
    title: str,
    y_label: str,
    categories: Sequence[str],
    series: Named,
    ticks: dict[int, str],
    words: Words,
    centred: bool = False,
) -> str:
    """Bars per category, one segment per series; each segment's ``<title>`` names its
    category, series and value. With few bars (a distribution) the total sits on top."""
    names = [name for name, _ in series]
    colours = _colours(names, words.other)
    f = _frame(list(zip(colours, names, strict=True)), len(categories))
    totals = [sum(v[i] for _, v in series) for i in range(len(categories))]
    scale = nice_ticks(max(totals, default=0.0))
    bar_w = f.slot * (0.6 if centred else 0.78)
    out = [*_open(title, f), *_legend(f), *_y_axis(f, scale, y_label), '<g class="bars">']
    for i, cat in enumerate(categories):
        x = LEFT + i * f.slot + (f.slot - bar_w) / 2
        base = 0.0
        for (name, values), colour in zip(series, colours, strict=True):
            v = values[i]
            if v <= 0:
                continue
            y0, y1 = f.y(base, scale[-1]), f.y(base + v, scale[-1])
            out.append(
                f'<rect class="bar" x="{_n(x)}" y="{_n(y1)}" width="{_n(bar_w)}" '
                f'height="{_n(y0 - y1)}" fill={_a(colour)} data-value="{fmt_num(v)}">'
                f"<title>{escape(f'{cat} · {name}: {fmt_num(v)}')}</title></rect>"
            )
            base += v
        if centred and totals[i] > 0:
            out.append(
                f'<text class="total" x="{_n(x + bar_w / 2)}" y="{_n(f.y(base, scale[-1]) - 5)}" '
                f'text-anchor="middle" font-weight="600">{fmt_num(totals[i])}</text>'
            )
    out += ["</g>", *_x_axis(f, ticks, centred), "</svg>"]
    return "".join(out)


def lines(
    title: str,
    y_label: str,
    categories: Sequence[str],
    series: Named,
    ticks: dict[int, str],
    words: Words,
) -> str:
    """One line per series over the buckets; a transparent band per bucket carries a
    ``<title>`` with every series' value at that time, so hovering anywhere reads the numbers."""
    names = [name for name, _ in series]
    colours = _colours(names, words.other)
    f = _frame(list(zip(colours, names, strict=True)), len(categories))
    scale = nice_ticks(max((max(v, default=0.0) for _, v in series), default=0.0))
    out = [*_open(title, f), *_legend(f), *_y_axis(f, scale, y_label), '<g class="lines">']
    for (_, values), colour in zip(series, colours, strict=True):
        points = " ".join(
            f"{_n(LEFT + (i + 0.5) * f.slot)},{_n(f.y(v, scale[-1]))}" for i, v in enumerate(values)
        )
        out.append(
            f'<polyline points="{points}" fill="none" stroke={_a(colour)} stroke-width="2" '
            'stroke-linejoin="round" stroke-linecap="round"/>'
        )
    out.append('</g><g class="hits">')
    for i, cat in enumerate(categories):
        said = "; ".join(f"{name}: {fmt_num(v[i])}" for name, v in series)
        out.append(
            f'<rect class="hit" x="{_n(LEFT + i * f.slot)}" y="{_n(f.top)}" '
            f'width="{_n(f.slot)}" height="{PLOT_H}" fill="#000" fill-opacity="0">'
            f"<title>{escape(f'{cat} — {said}')}</title></rect>"
        )
    out += ["</g>", *_x_axis(f, ticks, False), "</svg>"]
    return "".join(out)


# -- the dashboard's charts -------------------------------------------------------------------

Drawer = Callable[[str, str, Sequence[str], Named, dict[int, str], Words], str]


def time_chart(
    title: str,
    y_label: str,
    starts: Sequence[int],
    bucket_s: int,
    series: Named,
    words: Words,
    kind: str = "bars",
    limit: int = len(PALETTE),
) -> Chart:
    """A window of buckets (``hub.load_stats.Series``): stacked bars for counts that add up
    (messages per channel), lines for levels (backlog per unit)."""
    moved = [(name, values) for name, values in series if any(values)]
    folded = fold(moved or series, limit, words.other)  # flat-zero lines only hide the rest
    categories = [bucket_label(t, bucket_s, words) for t in starts]
    table = _table(title, words.time, categories, folded, words)
    if not folded or not starts:
        return Chart(_no_data(title, y_label, words), Table(title, table.head))
    idx = time_ticks(starts, bucket_s)
    step = starts[idx[1]] - starts[idx[0]] if len(idx) > 1 else bucket_s
    ticks = {i: tick_label(starts[i], step, words) for i in idx}
    draw: Drawer = lines if kind == "lines" else stacked_bars
    return Chart(draw(title, y_label, categories, folded, ticks, words), table)


def response_chart(
    title: str,
    y_label: str,
    first: str,
    bucket_names: Sequence[str],
    times: Sequence[tuple[str, Sequence[float]]],
    words: Words,
) -> Chart:
    """The distribution of first-response times, one stacked bar per bucket
    (``RESPONSE_EDGES``; ``bucket_names`` labels them), a segment per channel."""
    if len(bucket_names) != len(RESPONSE_EDGES) + 1:
        raise ValueError(f"{len(RESPONSE_EDGES) + 1} bucket names needed")
    counted = [(name, [float(c) for c in response_buckets(s)]) for name, s in times if s]
    folded = fold(counted, len(PALETTE), words.other)
    table = _table(title, first, bucket_names, folded, words)
    if not folded:
        return Chart(_no_data(title, y_label, words), Table(title, table.head))
    ticks = dict(enumerate(bucket_names))
    svg = stacked_bars(title, y_label, bucket_names, folded, ticks, words, centred=True)
    return Chart(svg, table)
