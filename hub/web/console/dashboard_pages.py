"""The supervisors' live dashboard: what waits where, who works on it, what failed, and how the
load moved over the last hour, day or week.

Two fragments make the page, so the browser re-fetches only what moves: ``/live`` (alerts,
tiles, the tables, failures; cheap, swapped in on every event and on a timer, because rates
and ages move without events) and ``/charts`` (the SVG charts of one window, refreshed less
often). Both read the same ``hub.dashboard.snapshot()`` and load statistics as the REST API
and the alert rules, so the page never tells a different story than an alert.

``?window=`` takes ``hour``, ``day`` or ``week``; anything else shows the hour (a hand-typed
or stale link should still open the dashboard, not an error page). Every route answers 403
to agents, with a page that says so.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web

from hub import charts
from hub.dashboard import AgentRow, Snapshot
from hub.load_stats import BACKLOG, INBOUND, OPENED, WINDOWS
from hub.web.console.fmt import form_text
from hub.web.console.view import View, safe_next
from hub.web.i18n import JAKARTA

log = structlog.get_logger("hub.console.dashboard")

WINDOW_NAMES = tuple(WINDOWS)
DEAD_SHOWN = 20  # per stream; the REST API lists them all
ATTENTION_SHOWN = 15
DEAD_ID = re.compile(r"\d{1,20}-\d{1,20}")
HOME = "/console/dashboard"

Route = Callable[[web.Request], Awaitable[web.Response]]


def supervisors_only(handler: Callable[[View], Awaitable[web.Response]]) -> Route:
    """Agents get a page that says why, on every dashboard route (fragments included)."""

    @functools.wraps(handler)
    async def route(request: web.Request) -> web.Response:
        view = await View.of(request)
        if not view.me.is_supervisor:
            return view.render(
                "error.html", 403, page="error", title=view.t("dash.forbidden_title"),
                message=view.t("dash.forbidden"),
            )  # fmt: skip
        return await handler(view)

    return route


# -- formatting -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fmt:
    """Formats the templates call, so a table cell and a tile never disagree on how a
    duration or a rate reads; "—" where there is no data rather than a misleading 0."""

    view: View
    now: float

    def dur(self, seconds: float | None) -> str:
        """A waiting or response time; seconds stay seconds (a fast answer is not "just now")."""
        if seconds is None:
            return self.view.t("dash.none")
        if seconds < 60:
            return self.view.t("dash.seconds", n=int(seconds))
        return self.view.t.duration(seconds)

    def rate(self, v: float) -> str:
        return f"{v:.2f}".rstrip("0").rstrip(".") if v else "0"

    def pct(self, v: float) -> str:
        return f"{round(v * 100)}%"

    def when(self, epoch_s: float | None) -> str:
        return self.view.t.when(epoch_s, self.now) if epoch_s else self.view.t("dash.none")

    def full(self, epoch_s: float | None) -> str:
        return self.view.t.when_full(epoch_s) if epoch_s else ""


# -- the live fragment ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kpis:
    waiting: int
    oldest_s: float
    at_risk: int
    breached: int
    inbound_per_min: float
    online: int
    busy: int
    away: int


@dataclass(frozen=True, slots=True)
class AgentView:
    name: str
    display: str
    state: str  # busy | online | away | offline
    row: AgentRow


@dataclass(frozen=True, slots=True)
class AlertView:
    key: str
    severity: str
    message: str
    fired_at: float
    age_s: float
    clearing: bool


@dataclass(frozen=True, slots=True)
class DeadView:
    id: str
    at: float
    error: str
    deliveries: str


@dataclass(frozen=True, slots=True)
class StreamView:
    stream: str
    label: str
    dead: int
    pending: int
    lag: int
    entries: list[DeadView]


def agent_state(a: AgentRow) -> str:
    """Busy: online and holding at least one ticket (the page's hint says the same)."""
    return "busy" if a.presence == "online" and a.holding > 0 else a.presence


def kpis(snap: Snapshot) -> Kpis:
    states = Counter(agent_state(a) for a in snap.agents)
    return Kpis(
        waiting=sum(u.waiting for u in snap.units),
        oldest_s=max((u.oldest_waiting_s for u in snap.units), default=0.0),
        at_risk=sum(u.sla_at_risk for u in snap.units),
        breached=sum(u.sla_breached for u in snap.units),
        inbound_per_min=sum(c.inbound_per_min for c in snap.channels),
        online=states["online"] + states["busy"],
        busy=states["busy"],
        away=states["away"],
    )


def _agent_order(a: AgentView) -> tuple[int, float, str]:
    rank = {"busy": 0, "online": 1, "away": 2}.get(a.state, 3)
    return rank, -a.row.occupancy, a.display.lower()


async def _agents(view: View, rows: Sequence[AgentRow]) -> list[AgentView]:
    out = [AgentView(a.name, await view.display(a.name), agent_state(a), a) for a in rows]
    return sorted(out, key=_agent_order)


async def _alerts(view: View, now: float) -> list[AlertView]:
    out = []
    for a in await view.hub.alert_board.active():
        message = a.message_en if view.lang == "en" else a.message_id
        age = max(0.0, now - a.fired_at)
        out.append(AlertView(a.key, a.severity, message, a.fired_at, age, a.clearing))
    return out


def stream_labels(view: View) -> dict[str, str]:
    """Every stream a dead letter can sit on, with its name for people."""
    hub = view.hub
    out = {s: view.t("dash.stream_inbound", n=i) for i, s in enumerate(hub.inbound_streams())}
    for channel, s in hub.outbox_streams().items():
        out[s] = view.t("dash.stream_outbox", channel=view.label("channel", channel))
    return out


def _dead_at(entry_id: str) -> float:
    ms, _, _ = entry_id.partition("-")
    return int(ms) / 1000 if ms.isdigit() else 0.0


async def _streams(view: View) -> list[StreamView]:
    hub = view.hub
    labels = stream_labels(view)
    out = []
    for stream, group in hub.dashboard.streams:
        stats = await hub.ops.stream_stats(stream, group)
        entries = await hub.ops.dead_letters(stream, DEAD_SHOWN) if stats["dead"] else []
        out.append(
            StreamView(
                stream, labels.get(stream, stream), stats["dead"], stats["pending"], stats["lag"],
                [DeadView(e["id"], _dead_at(e["id"]), e.get("error", "")[:300],
                          e.get("deliveries", "")) for e in entries],
            )
        )  # fmt: skip
    return out


async def _opened_per_unit(view: View, now: float) -> Counter[str]:
    """New tickets per unit over the last hour (the snapshot counts them per channel)."""
    minutes = await view.hub.load.port.minutes(OPENED, now - 3600, now)
    out: Counter[str] = Counter()
    for subject, counts in minutes.items():
        out[subject.partition("|")[2] or "general"] += int(sum(counts.values()))
    return out


async def live_context(view: View) -> dict[str, Any]:
    hub = view.hub
    snap = await hub.dashboard.snapshot()
    now = snap.at
    users = await view.users()
    names = {u.unit: view.unit_name(u.unit) for u in snap.units}
    return {
        "snap": snap,
        "at_label": datetime.fromtimestamp(now, JAKARTA).strftime("%H:%M:%S"),
        "fmt": Fmt(view, now),
        "view_label": view.label,
        "kpi": kpis(snap),
        "alerts": await _alerts(view, now),
        "agents": await _agents(view, snap.agents),
        "capacity": hub.settings.console.agent_capacity,
        "opened_per_unit": await _opened_per_unit(view, now),
        "unit_names": names,
        "units": sorted(snap.units, key=lambda u: (-u.waiting, -u.open, names[u.unit].lower())),
        "attention": snap.attention[:ATTENTION_SHOWN],
        "attention_more": len(snap.attention) > ATTENTION_SHOWN,
        "assignees": {n: (u.display_name or n) for n, u in users.items()},
        "streams": await _streams(view),
        "back": f"{HOME}#dead-letters",
    }


# -- the charts fragment ----------------------------------------------------------------------


def window_of(request: web.Request) -> str:
    asked = request.query.get("window", "hour")
    return asked if asked in WINDOWS else "hour"


def _words(view: View) -> charts.Words:
    t = view.t
    return charts.Words(
        no_data=t("dash.no_data"), total=t("dash.total"), other=t("dash.other"),
        time=t("dash.col.time"), weekdays=tuple(t("dash.weekdays").split(",")),
    )  # fmt: skip


def _account_label(view: View, subject: str) -> str:
    channel, _, account = subject.partition("/")
    return f"{view.label('channel', channel)} · {account}" if account else subject


async def charts_context(view: View, window: str) -> dict[str, Any]:
    hub, t = view.hub, view.t
    now = hub.clock.now()
    words = _words(view)
    bucket_s, n = WINDOWS[window]
    span = {"window": t(f"dash.window.{window}"), "bucket": t(f"dash.bucket.{window}")}
    inbound = await hub.load.series(INBOUND, window, now)
    backlog = await hub.load.series(BACKLOG, window, now, peak=True)
    times = await hub.dashboard.response_times(now - bucket_s * n, now)
    load = charts.time_chart(
        t("dash.chart.load"), t("dash.y.messages"), inbound.starts, inbound.bucket_s,
        [(_account_label(view, s), v) for s, v in inbound.values.items()], words,
    )  # fmt: skip
    waiting = charts.time_chart(
        t("dash.chart.backlog"), t("dash.y.tickets"), backlog.starts, backlog.bucket_s,
        [(view.unit_name(u), v) for u, v in backlog.values.items()], words, kind="lines",
    )  # fmt: skip
    response = charts.response_chart(
        t("dash.chart.response"), t("dash.y.tickets"), t("dash.col.response"),
        [t(f"dash.rbucket.{i}") for i in range(len(charts.RESPONSE_EDGES) + 1)],
        [(view.label("channel", ch), s) for ch, s in sorted(times.items())], words,
    )  # fmt: skip
    return {
        "window": window,
        "windows": WINDOW_NAMES,
        "charts": [
            ("load", load, t("dash.chart.load_hint", **span)),
            ("backlog", waiting, t("dash.chart.backlog_hint", **span)),
            ("response", response, t("dash.chart.response_hint", **span)),
        ],
    }


# -- routes -----------------------------------------------------------------------------------


@supervisors_only
async def dashboard_page(view: View) -> web.Response:
    window = window_of(view.request)
    return view.render(
        "dashboard.html",
        page="dashboard",
        events_since=await view.hub.events.last_id(),
        **await live_context(view),
        **await charts_context(view, window),
    )


@supervisors_only
async def dashboard_live(view: View) -> web.Response:
    return view.render("_dashboard_live.html", **await live_context(view))


@supervisors_only
async def dashboard_charts(view: View) -> web.Response:
    return view.render(
        "_dashboard_charts.html", **await charts_context(view, window_of(view.request))
    )


@supervisors_only
async def replay_dead_letter(view: View) -> web.Response:
    """Put one dead entry back on its stream (the same call as the REST API's replay)."""
    form = await view.request.post()
    stream, dead_id = form_text(form, "stream"), form_text(form, "id")
    back = safe_next(form_text(form, "back"), HOME)
    labels = stream_labels(view)
    if stream not in labels or not DEAD_ID.fullmatch(dead_id):
        return view.redirect(back, view.t("dash.replay_bad"), "error", "bad_request")
    new_id = await view.hub.ops.replay_dead_letter(stream, dead_id)
    if new_id is None:
        return view.redirect(back, view.t("dash.replay_gone", id=dead_id), "error", "not_found")
    log.info(
        "dead_letter.replayed", stream=stream, entry=dead_id, new_entry=new_id, by=view.me.name
    )
    done = view.t("dash.replayed", id=dead_id, stream=labels[stream])
    return view.redirect(back, done, "ok", "replayed")
