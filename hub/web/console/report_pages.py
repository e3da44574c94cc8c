"""The reports page: the period report (``hub.reports``) as tables a supervisor reads, prints
for the Ombudsman, or downloads as CSV. Numbers are formatted here, words come from
``hub.web.i18n_reports``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from hub.archive import period_report
from hub.reports import Period, PeriodError, Report, ReportRow, parse_period
from hub.web.console.view import View

# The groups the page shows, in this order (unit × channel is in the CSV and the API).
SECTIONS = ("overall", "unit", "channel", "category")


def _duration(view: View, seconds: float | None) -> str:
    """Coarse, like the rest of the console; under a minute in seconds, because a report is
    not "just now"."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return view.t("reports.seconds", n=int(seconds))
    return view.t.duration(seconds)


def _percent(view: View, share: float | None) -> str:
    if share is None:
        return "—"
    text = f"{share * 100:.1f}"
    return view.t("reports.percent", p=text.replace(".", ",") if view.lang == "id" else text)


def _label(view: View, group: str, key: str) -> str:
    if group == "overall":
        return view.t("reports.all_tickets")
    if group == "unit":
        return view.unit_name(key)
    if group == "channel":
        return view.label("channel", key)
    return key or view.t("reports.no_category")


def _cells(view: View, r: ReportRow) -> dict[str, Any]:
    return {
        "label": _label(view, r.group, r.key),
        "key": r.key,
        "created": r.created,
        "resolved": r.resolved,
        "open_at_end": r.open_at_end,
        "reopened": r.reopened,
        "reopen_rate": _percent(view, r.reopen_rate),
        "fr_median": _duration(view, r.first_response_median_s),
        "fr_p90": _duration(view, r.first_response_p90_s),
        "fr_compliance": _percent(view, r.first_response_compliance),
        "fr_breached": r.first_response_breached,
        "res_median": _duration(view, r.resolution_median_s),
        "res_p90": _duration(view, r.resolution_p90_s),
        "res_compliance": _percent(view, r.resolution_compliance),
        "res_breached": r.resolution_breached,
    }


def _section(view: View, report: Report, group: str) -> dict[str, Any]:
    """One table, its rows in the reader's alphabetical order of names."""
    rows = sorted(
        (_cells(view, r) for r in report.group(group)), key=lambda c: c["label"].casefold()
    )
    return {"group": group, "title": view.t(f"reports.group.{group}"), "rows": rows}


def _form(view: View, period: Period | None, group: str) -> dict[str, Any]:
    q = view.request.query
    return {
        "day_from": period.first.isoformat() if period else q.get("from", "")[:10],
        "day_to": period.last.isoformat() if period else q.get("to", "")[:10],
        "group": group,
        "groups": [(g, view.t(f"reports.group.{g}")) for g in SECTIONS],
    }


def _forbidden(view: View) -> web.Response:
    return view.render(
        "error.html",
        403,
        page="error",
        title=view.t("reports.forbidden_title"),
        message=view.t("reports.forbidden"),
    )


async def reports_page(request: web.Request) -> web.Response:
    view = await View.of(request)
    if not view.me.is_supervisor:
        return _forbidden(view)
    hub = view.hub
    asked = request.query.get("group", "")
    group = asked if asked in SECTIONS else ""
    period: Period | None = None
    try:
        period = parse_period(request.query.get("from"), request.query.get("to"), hub.clock.now())
        report = await period_report(
            hub.store, hub.archive, hub.sla, period, hub.clock.now(), list(hub.settings.units)
        )
    except PeriodError as exc:
        message = view.t(f"reports.err.{exc.code}", **exc.values)
        return view.render(
            "reports.html",
            409 if exc.code == "archived" else 400,
            page="reports",
            error=message,
            sections=[],
            **_form(view, period, group),
        )
    sections = [_section(view, report, g) for g in ((group,) if group else SECTIONS)]
    query = {"from": period.first.isoformat(), "to": period.last.isoformat()}
    csv_query = {**query, "group": group} if group else query
    return view.render(
        "reports.html",
        page="reports",
        error="",
        sections=sections,
        csv_url=f"/api/v1/reports.csv?{urlencode(csv_query)}",
        as_of=view.t.when_full(report.as_of),
        period_text=view.t("reports.period", first=query["from"], last=query["to"]),
        sla_enabled=hub.settings.sla.enabled,
        **_form(view, period, group),
    )
