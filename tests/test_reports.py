"""The Ombudsman reports against a hand-checked scenario on a manual clock, and their pure
parts (percentiles, periods, CSV) on known inputs.

The scenario, Monday 21 September 2026 (WIB). Business hours Mon-Thu 08:00-16:00; the
default policy promises a first response within 8 business hours and a resolution within
40; unit k3 (the Telegram bot's unit) has a 12-hour resolution target.

    WhatsApp → general                         Telegram → k3
    A 09:00 reply 09:10, note, category upah   C 10:00 reply Tue 09:00, category k3,
      resolved 11:00, the citizen writes at       resolved Wed 09:00 (15 business h: missed)
      12:00 (reopened), resolved 13:00         D 11:00 never answered (both timers breached)
    B 09:30 reply 10:30, category upah,        F 13:00 reply Wed 08:30 (11.5 business h:
      resolved Tue 10:00                          missed), still open (resolution breached)
    E 14:00 reply Tue 13:30 (7.5 business h)
    G 15:00 merged into B at 15:05 (not counted on its own)
    H Tue 09:00 (outside a Monday-only period)

The report is read on Wednesday 23 September at 10:00.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from hub.demo.fake_telegram import FakeTelegram
from hub.percentile import percentile
from hub.reports import (
    CSV_COLUMNS,
    TIMELINE_COLUMNS,
    Period,
    PeriodError,
    build_report,
    csv_text,
    finished_at,
    parse_period,
    report_csv,
    timeline_csv,
    timeline_row,
)
from hub.sla import SlaEngine, SlaSection
from hub.web.i18n import Translator
from tests.helpers import HubHarness, inbound_params
from tests.test_console_pages import Browser

Factory = Callable[..., Awaitable[HubHarness]]
MON_0900 = 1_789_956_000.0  # 2026-09-21 09:00 WIB
HOUR, MIN = 3600.0, 60.0
TUE_0900 = MON_0900 + 24 * HOUR
WED_0900 = MON_0900 + 48 * HOUR
AS_OF = WED_0900 + HOUR
MONDAY = {"from": "2026-09-21", "to": "2026-09-21"}
TG_TOKEN = "123456:ABCdefGhIjkl-test"
TG_SECRET = "tg-webhook-secret_01"
TG_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "telegram" / "text.json"
POLICIES = [
    {"unit": "k3", "first_response_minutes": 480, "resolution_hours": 12, "name": "k3"},
    {"first_response_minutes": 480, "resolution_hours": 40, "name": "default"},
]
PHONES = {"A": "+6281200000001", "B": "+6281200000002", "E": "+6281200000005",
          "G": "+6281200000007", "H": "+6281200000008"}  # fmt: skip
CHATS = {"C": 777003, "D": 777004, "F": 777006}


# -- the pure parts ------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    """rank = ceil(p/100 * n), 1-based, on the sorted values; the median of an even count is
    the lower middle value; p90 of 70 values is the 63rd (0.9 * 70 in floats is 63.000…01)."""
    assert percentile([], 50) is None
    assert percentile([7.0], 50) == percentile([7.0], 90) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 90) == 4.0
    assert percentile([float(i) for i in range(1, 11)], 90) == 9.0
    assert percentile([float(i) for i in range(1, 11)], 91) == 10.0
    assert percentile([float(i) for i in range(1, 71)], 90) == 63.0
    assert percentile([5.0, 1.0, 3.0], 0) == 1.0
    assert percentile([5.0, 1.0, 3.0], 100) == 5.0
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], 101)


def test_period_defaults_and_refusals() -> None:
    assert parse_period(None, None, MON_0900) == Period(date(2026, 9, 1), date(2026, 9, 21))
    # 2026-09-30 23:30 WIB is still September in Jakarta (16:30 UTC).
    assert parse_period("", "", 1_790_785_800.0) == Period(date(2026, 9, 1), date(2026, 9, 30))
    assert parse_period("2026-09-10", None, MON_0900) == Period(
        date(2026, 9, 10), date(2026, 9, 21)
    )
    assert parse_period("2026-10-05", None, MON_0900) == Period(
        date(2026, 10, 5), date(2026, 10, 5)
    )
    assert parse_period(None, "2026-08-15", MON_0900) == Period(date(2026, 8, 1), date(2026, 8, 15))
    p = parse_period("2026-09-21", "2026-09-21", 0)
    assert (p.since, p.until, p.days, p.label) == (
        MON_0900 - 9 * HOUR,
        MON_0900 + 15 * HOUR,
        1,
        "2026-09-21_2026-09-21",
    )
    assert parse_period("2025-08-01", "2026-09-04", 0).days == 400
    for raw_from, raw_to, code in (
        ("2026-9-1", None, "bad_date"),
        ("2026-02-30", "2026-03-01", "bad_date"),
        (None, "yesterday", "bad_date"),
        ("2026-09-10", "2026-09-09", "reversed"),
        ("2025-08-01", "2026-09-05", "too_long"),
    ):
        with pytest.raises(PeriodError) as caught:
            parse_period(raw_from, raw_to, MON_0900)
        assert caught.value.code == code, (raw_from, raw_to)


def _row(**fields: Any) -> dict[str, str]:
    base = {"id": "c.1", "unit": "general", "channel": "whatsapp", "priority": "normal"}
    return {**base, **{k: str(v) for k, v in fields.items()}}


def _ms(t: float) -> int:
    return int(t * 1000)


def test_empty_groups_and_csv_blanks() -> None:
    """No tickets: an overall row and a row per configured unit, counts 0, times and shares
    None, which the CSV writes as empty cells (not 0)."""
    sla = SlaEngine(SlaSection())
    report = build_report([], sla, parse_period("2026-09-21", None, MON_0900), MON_0900, ["k3"])
    assert [(r.group, r.key) for r in report.rows] == [("overall", ""), ("unit", "k3")]
    overall = report.row("overall")
    assert overall is not None
    assert (overall.created, overall.first_response_median_s) == (0, None)
    assert overall.reopen_rate is overall.first_response_compliance is None
    [line] = list(csv.DictReader(io.StringIO(report_csv(report, ["unit"]))))
    assert line["created"] == "0"
    assert line["first_response_median_s"] == line["resolution_compliance"] == ""


def test_merged_and_closed_tickets() -> None:
    """A merged ticket counts nowhere; a closed one finishes when it left open: its
    resolution when it was resolved first, its closing when it was closed from open."""
    t0 = MON_0900
    spam = _row(status="closed", created_at=_ms(t0), closed_at=_ms(t0 + 600))
    resolved_then_closed = _row(
        status="closed", created_at=_ms(t0), resolved_at=_ms(t0 + 1200), closed_at=_ms(t0 + 9000)
    )
    merged = _row(status="closed", created_at=_ms(t0), closed_at=_ms(t0 + 60), merged_into="x.1")
    assert finished_at(spam) == t0 + 600
    assert finished_at(resolved_then_closed) == t0 + 1200
    assert finished_at(_row(status="open", created_at=_ms(t0), resolved_at=_ms(t0 + 5))) is None
    period = parse_period("2026-09-21", "2026-09-21", t0)
    report = build_report([spam, resolved_then_closed, merged], SlaEngine(SlaSection()), period, t0)
    overall = report.row("overall")
    assert overall is not None
    assert (overall.created, overall.resolved, overall.resolved_once) == (2, 2, 1)
    assert (overall.resolution_median_s, overall.resolution_p90_s) == (600.0, 1200.0)
    assert (overall.resolution_met, overall.first_response_met) == (2, 2)


def test_csv_text_cannot_become_a_formula() -> None:
    assert csv_text("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_text("@SUM") == "'@SUM"
    assert csv_text("upah") == "upah"


def test_timeline_rows_of_each_kind() -> None:
    at = "2026-09-21T02:10:00+00:00"
    message = {"id": "m1", "direction": "in", "at": at, "text": "Halo", "display_name": "Siti",
               "attachments": [{"name": "slip.pdf"}]}  # fmt: skip
    reply = {"id": "m2", "direction": "out", "at": at, "kind": "agent", "author": "ani",
             "state": "delivered", "text": "Baik"}  # fmt: skip
    event = {"id": "m3", "direction": "event", "at": at, "type": "category", "actor": "ani",
             "category": "upah", "previous": ""}  # fmt: skip
    assert timeline_row(message) == {
        "at": "2026-09-21T09:10:00+07:00", "kind": "message", "actor": "Siti",
        "summary": "Halo [attachments: slip.pdf]", "state": "", "entry_id": "m1",
        "from_ticket": "",
    }  # fmt: skip
    assert (timeline_row(reply)["kind"], timeline_row(reply)["state"]) == ("reply", "delivered")
    assert timeline_row(event)["summary"] == "category=upah"
    text = timeline_csv([{**message, "text": "=cmd|' /C calc'!A0"}])
    [line] = list(csv.DictReader(io.StringIO(text)))
    assert line["summary"].startswith("'=cmd")


# -- the scenario, through the hub -----------------------------------------------------------


@pytest.fixture
async def bot() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram({TG_TOKEN})
    await fake.start()
    yield fake
    await fake.stop()


def _settings(bot: FakeTelegram) -> dict[str, Any]:
    account = {"bot_token": TG_TOKEN, "webhook_secret": TG_SECRET,
               "api_base_url": bot.base_url, "unit": "k3"}  # fmt: skip
    return {"channels__telegram__accounts": {"kemnaker": account}, "sla__policies": POLICIES}


async def _whatsapp(h: HubHarness, at: float, phone: str, text: str) -> None:
    h.clock.t = at
    assert (await h.post_whatsapp(inbound_params(text, phone=phone)))[0] == 200
    await h.drain_inbound()


async def _telegram(h: HubHarness, at: float, chat: int, text: str) -> None:
    h.clock.t = at
    update = json.loads(TG_FIXTURE.read_text())
    update["update_id"] = 900_000_000 + chat
    update["message"].update(message_id=chat % 1000, text=text, date=int(at))
    update["message"]["from"]["id"] = update["message"]["chat"]["id"] = chat
    assert h.session is not None
    async with h.session.post(
        f"{h.base}/webhooks/telegram/kemnaker", data=json.dumps(update),
        headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TG_SECRET},
    ) as r:  # fmt: skip
        assert r.status == 200
    await h.drain_inbound()


async def _act(h: HubHarness, at: float, tid: str, action: str, **body: str) -> None:
    h.clock.t = at
    await h.api_ok("POST", f"/api/v1/tickets/{tid}/{action}", json=body)


async def _scenario(h: HubHarness) -> dict[str, str]:
    """Plays the module docstring's week; returns letter → ticket id."""
    ids: dict[str, str] = {}

    async def opened(letter: str, address: str) -> None:
        tickets = await h.tickets(limit="50")
        ids[letter] = next(t["id"] for t in tickets if t["reply_to"] == address)

    t = MON_0900
    await _whatsapp(h, t, PHONES["A"], "THR saya belum dibayar")
    await opened("A", PHONES["A"])
    await _act(h, t + 10 * MIN, ids["A"], "replies", text="Baik, kami cek.")
    await _act(h, t + 15 * MIN, ids["A"], "notes", text="PT Maju Jaya, Bekasi")
    await _act(h, t + 20 * MIN, ids["A"], "category", category="upah")
    await _whatsapp(h, t + 30 * MIN, PHONES["B"], "Gaji dipotong")
    await opened("B", PHONES["B"])
    await _telegram(h, t + HOUR, CHATS["C"], "Alat angkat tidak diuji")
    await opened("C", str(CHATS["C"]))
    await _act(h, t + 90 * MIN, ids["B"], "replies", text="Mohon kirim slip gaji.")
    await _act(h, t + 100 * MIN, ids["B"], "category", category="upah")
    await _telegram(h, t + 2 * HOUR, CHATS["D"], "Tidak ada APD")
    await opened("D", str(CHATS["D"]))
    await _act(h, t + 2 * HOUR, ids["A"], "status", status="resolved")
    await _whatsapp(h, t + 3 * HOUR, PHONES["A"], "Belum dibayar juga")  # reopens A
    await _telegram(h, t + 4 * HOUR, CHATS["F"], "Kecelakaan kerja")
    await opened("F", str(CHATS["F"]))
    await _act(h, t + 4 * HOUR, ids["A"], "status", status="resolved")
    await _whatsapp(h, t + 5 * HOUR, PHONES["E"], "Kontrak kerja")
    await opened("E", PHONES["E"])
    await _whatsapp(h, t + 6 * HOUR, PHONES["G"], "Gaji dipotong, sama dengan B")
    await opened("G", PHONES["G"])
    await _act(h, t + 6 * HOUR + 5 * MIN, ids["G"], "merge", into=ids["B"])
    await _whatsapp(h, TUE_0900, PHONES["H"], "Lowongan kerja")
    await opened("H", PHONES["H"])
    await _act(h, TUE_0900, ids["C"], "replies", text="Kami jadwalkan pengujian.")
    await _act(h, TUE_0900 + 5 * MIN, ids["C"], "category", category="k3")
    await _act(h, TUE_0900 + HOUR, ids["B"], "status", status="resolved")
    await _act(h, TUE_0900 + 4.5 * HOUR, ids["E"], "replies", text="Kontrak PKWT maksimal 5 tahun.")
    await _act(h, WED_0900 - 30 * MIN, ids["F"], "replies", text="Petugas pengawas dikirim.")
    await _act(h, WED_0900, ids["C"], "status", status="resolved")
    h.clock.t = AS_OF
    return ids


# Hand-checked, for Monday 21 September, as of Wednesday 10:00 (see the module docstring).
# Columns: created resolved open_at_end reopened resolved_once reopen_rate | first response:
# count median p90 met missed breached compliance | resolution: the same.
_COLS = CSV_COLUMNS[4:]
EXPECTED: dict[tuple[str, str], tuple[str, ...]] = {
    ("overall", ""): ("6", "1", "5", "1", "3", "0.3333",
                      "5", "82800", "156600", "4", "1", "1", "0.8",
                      "3", "88200", "169200", "2", "1", "2", "0.6667"),
    ("unit", "general"): ("3", "1", "2", "1", "2", "0.5",
                          "3", "3600", "84600", "3", "0", "0", "1",
                          "2", "14400", "88200", "2", "0", "0", "1"),
    ("unit", "k3"): ("3", "0", "3", "0", "1", "0",
                     "2", "82800", "156600", "1", "1", "1", "0.5",
                     "1", "169200", "169200", "0", "1", "2", "0"),
    ("unit", "ppid"): ("0", "0", "0", "0", "0", "",
                       "0", "", "", "0", "0", "0", "",
                       "0", "", "", "0", "0", "0", ""),
    ("channel", "whatsapp"): ("3", "1", "2", "1", "2", "0.5",
                              "3", "3600", "84600", "3", "0", "0", "1",
                              "2", "14400", "88200", "2", "0", "0", "1"),
    ("channel", "telegram"): ("3", "0", "3", "0", "1", "0",
                              "2", "82800", "156600", "1", "1", "1", "0.5",
                              "1", "169200", "169200", "0", "1", "2", "0"),
    ("category", "upah"): ("2", "1", "1", "1", "2", "0.5",
                           "2", "600", "3600", "2", "0", "0", "1",
                           "2", "14400", "88200", "2", "0", "0", "1"),
    ("category", "k3"): ("1", "0", "1", "0", "1", "0",
                         "1", "82800", "82800", "1", "0", "0", "1",
                         "1", "169200", "169200", "0", "1", "0", "0"),
    ("category", ""): ("3", "0", "3", "0", "0", "",
                       "2", "84600", "156600", "1", "1", "1", "0.5",
                       "0", "", "", "0", "0", "2", ""),
}  # fmt: skip


@pytest.fixture
async def played(harness_factory: Factory, bot: FakeTelegram) -> tuple[HubHarness, dict[str, str]]:
    h = await harness_factory(**_settings(bot))
    return h, await _scenario(h)


def _by_key(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["group"], r["key"]): r for r in rows}


async def test_scenario_numbers_in_json(played: tuple[HubHarness, dict[str, str]]) -> None:
    h, _ = played
    body = await h.api_ok("GET", "/api/v1/reports", params=MONDAY)
    assert (body["from"], body["to"], body["as_of"]) == ("2026-09-21", "2026-09-21", AS_OF)
    rows = _by_key(body["rows"])
    overall = rows[("overall", "")]
    assert (overall["created"], overall["resolved"], overall["open_at_end"]) == (6, 1, 5)
    assert (overall["reopened"], overall["resolved_once"], overall["reopen_rate"]) == (1, 3, 0.3333)
    assert overall["first_response_median_s"] == 23 * HOUR  # C, the 3rd of 5
    assert overall["first_response_p90_s"] == 43.5 * HOUR  # F, the 5th of 5
    assert overall["resolution_median_s"] == 24.5 * HOUR  # B, the 2nd of 3
    assert overall["resolution_p90_s"] == 47 * HOUR  # C
    assert overall["first_response_compliance"] == 0.8
    assert overall["resolution_compliance"] == 0.6667
    assert (overall["first_response_breached"], overall["resolution_breached"]) == (1, 2)
    assert rows[("unit_channel", "k3/telegram")]["created"] == 3
    for (group, key), values in EXPECTED.items():
        row = rows[(group, key)]
        got = tuple("" if row[c] is None else f"{row[c]:g}" for c in _COLS)
        assert got == values, (group, key)
    only_units = await h.api_ok("GET", "/api/v1/reports", params={**MONDAY, "group": "unit"})
    assert {r["group"] for r in only_units["rows"]} == {"unit"}
    assert len(only_units["rows"]) == len(h.settings.units)


async def test_scenario_csv_parses_back(played: tuple[HubHarness, dict[str, str]]) -> None:
    h, _ = played
    assert h.session is not None
    async with h.session.get(
        h.base + "/api/v1/reports.csv", params=MONDAY, headers={"Authorization": _bearer(h)}
    ) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert r.headers["Content-Disposition"] == (
            'attachment; filename="laporan-2026-09-21_2026-09-21.csv"'
        )
        text = await r.text()
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    lines = list(reader)
    assert {(x["period_from"], x["period_to"]) for x in lines} == {("2026-09-21", "2026-09-21")}
    got = {(x["group"], x["key"]): tuple(x[c] for c in _COLS) for x in lines}
    for key, values in EXPECTED.items():
        assert got[key] == values, key
    groups = [x["group"] for x in lines]
    assert groups == sorted(groups, key=["overall", "unit", "channel", "category",
                                         "unit_channel"].index)  # fmt: skip


async def test_period_end_and_default_period(played: tuple[HubHarness, dict[str, str]]) -> None:
    """Monday to Wednesday takes in H, and B and C resolved before the period's end; without
    from/to the report is the month so far."""
    h, _ = played
    params = {"from": "2026-09-21", "to": "2026-09-23"}
    body = await h.api_ok("GET", "/api/v1/reports", params=params)
    overall = _by_key(body["rows"])[("overall", "")]
    assert (overall["created"], overall["resolved"], overall["open_at_end"]) == (7, 3, 4)
    # H: 7 business hours on Tuesday and 2 on Wednesday, unanswered: breached like D.
    assert overall["first_response_breached"] == 2
    default = await h.api_ok("GET", "/api/v1/reports")
    assert (default["from"], default["to"]) == ("2026-09-01", "2026-09-23")
    assert _by_key(default["rows"])[("overall", "")]["created"] == 7
    before = await h.api_ok("GET", "/api/v1/reports", params={"to": "2026-09-20"})
    assert _by_key(before["rows"])[("overall", "")]["created"] == 0


async def test_numbers_survive_a_restart(
    played: tuple[HubHarness, dict[str, str]], harness_factory: Factory, bot: FakeTelegram
) -> None:
    """A new hub process on the same Redis reports exactly the same: nothing was in memory."""
    h, _ = played
    before_json = await h.api_ok("GET", "/api/v1/reports", params=MONDAY)
    before_csv = await h.api_ok("GET", "/api/v1/reports.csv", params=MONDAY)
    await h.stop()
    again = await harness_factory(**_settings(bot))
    again.clock.t = AS_OF
    assert await again.api_ok("GET", "/api/v1/reports", params=MONDAY) == before_json
    assert await again.api_ok("GET", "/api/v1/reports.csv", params=MONDAY) == before_csv


def _bearer(h: HubHarness) -> str:
    token = h.settings.api.tokens[0].token.get_secret_value()
    return f"Bearer {token}"


async def _agent(h: HubHarness) -> dict[str, str]:
    await h.hub.auth.create_user("ani", "password-ani-1", "agent", ["general"], "Ani")
    return {"Authorization": f"Bearer {await h.hub.users.create_token('ani', 'cli')}"}


async def test_who_may_see_reports_and_bad_periods(harness: HubHarness) -> None:
    h = harness
    h.clock.t = MON_0900
    agent = await _agent(h)
    for path in ("/api/v1/reports", "/api/v1/reports.csv"):
        status, body = await h.api("GET", path, headers=agent)
        assert (status, body["error"]) == (403, "forbidden"), path
        assert h.session is not None
        async with h.session.get(h.base + path) as r:
            assert r.status == 401
    for params, reason in (
        ({"from": "2026-13-01"}, "from must be a date as YYYY-MM-DD"),
        ({"from": "2026-09-10", "to": "2026-09-01"}, "is before from"),
        ({"from": "2025-01-01", "to": "2026-09-01"}, "at most 400"),
        ({"to": "21/09/2026"}, "to must be a date"),
    ):
        for path in ("/api/v1/reports", "/api/v1/reports.csv"):
            status, body = await h.api("GET", path, params=params)
            assert (status, body["error"]) == (400, "invalid_period"), params
            assert reason in body["message"], body
    status, body = await h.api("GET", "/api/v1/reports", params={"group": "weekly"})
    assert (status, body["error"]) == (400, "invalid_parameter")


async def test_ticket_export_has_the_audit_trail(
    played: tuple[HubHarness, dict[str, str]],
) -> None:
    h, ids = played
    body = await h.api_ok("GET", f"/api/v1/tickets/{ids['A']}/export")
    assert body["ticket"]["id"] == ids["A"]
    assert body["ticket"]["reopen_count"] == "1"
    assert (body["exported_by"], body["exported_at"]) == ("agent-ani", "2026-09-23T03:00:00+00:00")
    kinds = [e.get("type") or e["direction"] for e in body["timeline"]]
    assert [k for k in kinds if k in ("in", "note", "category", "status")] == [
        "in", "note", "category", "status", "in", "status",
    ]  # fmt: skip
    text = await h.api_ok("GET", f"/api/v1/tickets/{ids['A']}/export", params={"format": "csv"})
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == TIMELINE_COLUMNS
    lines = [x for x in reader if x["kind"] != "auto_reply"]
    assert [(x["at"], x["kind"], x["actor"], x["summary"], x["state"]) for x in lines] == [
        ("2026-09-21T09:00:00+07:00", "message", "Siti Rahayu", "THR saya belum dibayar", ""),
        ("2026-09-21T09:10:00+07:00", "reply", "agent-ani", "Baik, kami cek.", "queued"),
        ("2026-09-21T09:15:00+07:00", "note", "agent-ani", "PT Maju Jaya, Bekasi", ""),
        ("2026-09-21T09:20:00+07:00", "category", "agent-ani", "category=upah", ""),
        ("2026-09-21T11:00:00+07:00", "status", "agent-ani", "status=resolved", ""),
        ("2026-09-21T12:00:00+07:00", "message", "Siti Rahayu", "Belum dibayar juga", ""),
        ("2026-09-21T13:00:00+07:00", "status", "agent-ani", "status=resolved", ""),
    ]
    # B carries the ticket merged into it, marked with where each entry came from.
    merged = await h.api_ok("GET", f"/api/v1/tickets/{ids['B']}/export", params={"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(merged)))
    assert [x["kind"] for x in rows if x["kind"] == "merged"] == ["merged"]
    assert {x["from_ticket"] for x in rows} == {"", ids["G"]}
    status, body = await h.api("GET", f"/api/v1/tickets/{ids['A']}/export", params={"format": "x"})
    assert (status, body["error"]) == (400, "invalid_parameter")


async def test_ticket_export_follows_unit_visibility(
    played: tuple[HubHarness, dict[str, str]],
) -> None:
    h, ids = played
    agent = await _agent(h)
    status, body = await h.api("GET", f"/api/v1/tickets/{ids['A']}/export", headers=agent)
    assert (status, body["ticket"]["unit"]) == (200, "general")
    status, body = await h.api("GET", f"/api/v1/tickets/{ids['C']}/export", headers=agent)
    assert (status, body["error"]) == (404, "not_found")  # k3's ticket: not even its existence
    assert h.session is not None
    async with h.session.get(f"{h.base}/api/v1/tickets/{ids['A']}/export") as r:
        assert r.status == 401


async def test_reports_page(played: tuple[HubHarness, dict[str, str]]) -> None:
    h, _ = played
    await h.hub.auth.create_user("sri", "password-sri-1", "supervisor", [], "Sri")
    await h.hub.auth.create_user("ani", "password-ani-1", "agent", ["general"], "Ani")
    sup, agent = Browser(h), Browser(h)
    try:
        assert (await sup.login("sri", "password-sri-1"))[0] == 303
        status, html, r = await sup.get("/console/reports?from=2026-09-21&to=2026-09-21")
        assert status == 200
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        t = Translator("id")
        assert "Laporan layanan" in html
        assert 'href="/console/reports" aria-current="page"' in html
        assert "80,0 %" in html  # first-response compliance, all tickets
        assert "66,7 %" in html  # resolution compliance, all tickets
        assert "33,3 %" in html  # reopen rate
        for seconds in (23 * HOUR, 43.5 * HOUR, 24.5 * HOUR, 47 * HOUR):
            assert t.duration(seconds) in html
        assert "Hubungan Kerja dan Pengupahan" in html  # a unit without tickets still shows
        assert "(tanpa kategori)" in html
        assert 'href="/api/v1/reports.csv?from=2026-09-21&amp;to=2026-09-21"' in html
        css = html.split('<link rel="stylesheet" href="')[2].split('"')[0]
        assert css.startswith("/static/reports.css")
        status, stylesheet, _ = await sup.get(css)
        assert status == 200
        assert "@media print" in stylesheet
        status, html, _ = await sup.get("/console/reports?from=2026-09-21&to=2026-09-01&lang=en")
        assert status == 400
        assert "The end date (2026-09-01) is before the start date (2026-09-21)." in html
        status, html, _ = await sup.get("/console/reports?group=category")
        assert (status, html.count('class="panel report-section"')) == (200, 1)

        assert (await agent.login("ani", "password-ani-1"))[0] == 303
        status, html, _ = await agent.get("/console/reports")
        assert status == 403
        assert "Khusus supervisor" in html
        assert 'href="/console/reports"' not in html  # no nav link for agents either
    finally:
        await sup.close()
        await agent.close()
