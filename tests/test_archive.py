"""Archiving of closed tickets (hub/archive.py, adapters/redis_archive.py) on a real Redis and
a manual clock: what leaves Redis, what the file holds, what survives a crash half-way, and
how reports and lookups behave afterwards.

The scenario: on Monday 21 September 2026 (WIB) citizen A writes about "pesangon", gets a
reply, a note, and the ticket is resolved and closed; B writes and stays open; C's ticket is
closed on 20 November (recent). Archiving runs on 1 December with a 30-day cut.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hub.cli import run_archive
from hub.clock import ManualClock
from tests.helpers import HubHarness, inbound_params

Factory = Callable[..., Awaitable[HubHarness]]
MON_0900 = 1_789_956_000.0  # 2026-09-21 09:00 WIB
HOUR, DAY = 3600.0, 86400.0
NOV_20 = MON_0900 + 60 * DAY
DEC_01 = MON_0900 + 71 * DAY
A, B, C = "+6281200000001", "+6281200000002", "+6281200000003"


async def _write(h: HubHarness, at: float, phone: str, text: str) -> str:
    h.clock.t = at
    assert (await h.post_whatsapp(inbound_params(text, phone=phone)))[0] == 200
    await h.drain_inbound()
    tickets = await h.tickets(limit="50")
    return str(next(t["id"] for t in tickets if t["reply_to"] == phone))


async def _scenario(h: HubHarness) -> dict[str, str]:
    ids = {"A": await _write(h, MON_0900, A, "Pesangon saya tidak dibayar")}
    h.clock.t = MON_0900 + 600
    await h.api_ok("POST", f"/api/v1/tickets/{ids['A']}/replies", json={"text": "Baik, kami cek."})
    await h.drain_outbox()  # the reply gets its provider id
    await h.api_ok("POST", f"/api/v1/tickets/{ids['A']}/notes", json={"text": "PT Maju Jaya"})
    h.clock.t = MON_0900 + HOUR
    await h.api_ok("POST", f"/api/v1/tickets/{ids['A']}/status", json={"status": "resolved"})
    h.clock.t = MON_0900 + 2 * HOUR
    await h.api_ok("POST", f"/api/v1/tickets/{ids['A']}/status", json={"status": "closed"})
    ids["B"] = await _write(h, MON_0900 + 3 * HOUR, B, "Gaji dipotong")
    ids["C"] = await _write(h, MON_0900 + 4 * HOUR, C, "Cuti tidak diberikan")
    h.clock.t = NOV_20
    await h.api_ok("POST", f"/api/v1/tickets/{ids['C']}/status", json={"status": "closed"})
    h.clock.t = DEC_01
    return ids


async def _harness(harness_factory: Factory) -> HubHarness:
    return await harness_factory(retention__archive_closed_after_days=30)


async def _keys(h: HubHarness, pattern: str) -> list[str]:
    return sorted(k.decode() for k in await h.hub.redis.keys(pattern))


def _lines(h: HubHarness, name: str = "2026-09.jsonl.gz") -> list[dict[str, Any]]:
    path = h.settings.archive_dir / name
    return [json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines()]


async def test_archives_an_old_closed_ticket_and_only_it(harness_factory: Factory) -> None:
    h = await _harness(harness_factory)
    ids = await _scenario(h)
    before = await h.api_ok("GET", f"/api/v1/tickets/{ids['A']}/export")
    number = before["ticket"]["number"]
    cid, n = ids["A"].split(".")
    month_report = await h.api_ok("GET", "/api/v1/reports", params={"from": "2026-09-01",
                                                                  "to": "2026-09-30"})  # fmt: skip

    result = await h.hub.make_archiver().run_once()

    assert [t for t, _ in result.archived] == [ids["A"]]
    assert not result.skipped  # B (open) and C (recent) are not even candidates
    # the file: one line, the export document plus archived_at
    (line,) = _lines(h)
    assert line["ticket"]["id"] == ids["A"]
    assert line["ticket"]["number"] == number
    assert line["archived_at"].startswith("2026-12-01")
    assert [e["id"] for e in line["timeline"]] == [e["id"] for e in before["timeline"]]
    kinds = [e.get("type") or e["direction"] for e in line["timeline"]]
    assert "note" in kinds
    assert "out" in kinds
    assert "in" in kinds
    # every key of the ticket is gone; the contact and its identity stay
    assert await _keys(h, f"hub:c:{{{cid}}}:t:{n}*") == []
    for e in before["timeline"]:
        assert await _keys(h, f"hub:c:{{{cid}}}:m:{e['id']}") == []
    assert await h.hub.redis.exists(f"hub:c:{{{cid}}}") == 1
    assert await h.hub.redis.get("hub:id:{phone:" + A + "}") == cid.encode()
    assert await h.hub.redis.hget("hub:{tickets}:numbers", number) is None
    assert await h.hub.redis.hlen(f"hub:c:{{{cid}}}:seen") == 0
    assert await h.hub.redis.zcard(f"hub:c:{{{cid}}}:tickets") == 0
    for k in await _keys(h, "hub:{tickets}:ix:*"):
        assert await h.hub.redis.zscore(k, ids["A"]) is None, k
    for k in await _keys(h, "hub:{search}:*"):
        assert await h.hub.redis.zscore(k, ids["A"]) is None, k
    for k in await _keys(h, "hub:pid:*"):
        assert not (await h.hub.redis.get(k) or b"").startswith(cid.encode()), k
    assert await h.hub.redis.hlen("hub:{tickets}:archive:pending") == 0
    # search, lists and lookups
    found = await h.api_ok("GET", "/api/v1/search", params={"q": "pesangon"})
    assert found["total"] == 0
    assert ids["A"] not in [t["id"] for t in await h.tickets(limit="50")]
    assert {ids["B"], ids["C"]} <= {t["id"] for t in await h.tickets(limit="50")}
    for ref in (ids["A"], number):
        status, body = await h.api("GET", f"/api/v1/tickets/{ref}/export")
        assert status == 410, body
        assert body["error"] == "archived"
        assert body["file"] == "2026-09.jsonl.gz"
    doc = await h.api_ok("GET", f"/api/v1/tickets/{number}/export", params={"archived": "1"})
    assert doc["ticket"]["id"] == ids["A"]
    assert doc["timeline"] == line["timeline"]
    # the month's report was saved first, and is served whole; a part of it is refused
    again = await h.api_ok("GET", "/api/v1/reports", params={"from": "2026-09-01",
                                                           "to": "2026-09-30"})  # fmt: skip
    assert again["rows"] == month_report["rows"]
    saved = json.loads((h.settings.archive_dir / "reports" / "2026-09.json").read_text())
    assert saved["rows"] == month_report["rows"]
    status, body = await h.api("GET", "/api/v1/reports", params={"from": "2026-09-21",
                                                                 "to": "2026-10-05"})  # fmt: skip
    assert status == 409, body
    assert body["error"] == "archived_period"
    assert "2026-09" in body["message"]
    assert body["months"] == "2026-09"
    status, _ = await h.api("GET", "/api/v1/reports", params={"from": "2026-10-01",
                                                              "to": "2026-10-31"})  # fmt: skip
    assert status == 200

    # the citizen writes again, quoting nothing: a new ticket, the same contact
    new = await _write(h, DEC_01 + HOUR, A, "Pesangon masih belum dibayar")
    assert new != ids["A"]
    assert new.split(".")[0] == cid
    assert (await h.ticket(new))["status"] == "open"

    # a second run archives nothing twice
    again_result = await h.hub.make_archiver().run_once()
    assert again_result.archived == []
    assert len(_lines(h)) == 1


async def test_a_crash_before_the_commit_converges(harness_factory: Factory) -> None:
    """The file was written and fsynced, the commit never happened: the next run cuts the
    uncommitted bytes and writes the ticket once."""
    h = await _harness(harness_factory)
    ids = await _scenario(h)
    real_begin = h.hub.archive.begin

    async def crash(*_: Any) -> None:
        raise ConnectionError("Redis went away")

    h.hub.archive.begin = crash  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await h.hub.make_archiver().run_once()
    assert len(_lines(h)) == 1  # written, not committed
    assert (await h.ticket(ids["A"]))["status"] == "closed"  # still whole and visible
    h.hub.archive.begin = real_begin  # type: ignore[method-assign]
    result = await h.hub.make_archiver().run_once()
    assert [t for t, _ in result.archived] == [ids["A"]]
    assert [x["ticket"]["id"] for x in _lines(h)] == [ids["A"]]


async def test_a_crash_after_the_commit_is_finished_next_run(harness_factory: Factory) -> None:
    """Committed, then the process died before deleting: the ticket is pending; the next
    run deletes it without writing it again."""
    h = await _harness(harness_factory)
    ids = await _scenario(h)
    real = h.hub.archive.delete_ticket

    async def crash(*_: Any) -> str:
        raise ConnectionError("Redis went away")

    h.hub.archive.delete_ticket = crash  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await h.hub.make_archiver().run_once()
    assert await h.hub.redis.hlen("hub:{tickets}:archive:pending") == 1
    h.hub.archive.delete_ticket = real  # type: ignore[method-assign]
    result = await h.hub.make_archiver().run_once()
    assert result.resumed == 1
    assert [t for t, _ in result.archived] == [ids["A"]]
    assert len(_lines(h)) == 1
    status, _ = await h.api("GET", f"/api/v1/tickets/{ids['A']}/export")
    assert status == 410
    assert await h.hub.redis.hlen("hub:{tickets}:archive:pending") == 0


async def test_a_ticket_that_changes_while_archived_stays(harness_factory: Factory) -> None:
    """A note added between the file write and the delete: the ticket is kept whole."""
    h = await _harness(harness_factory)
    ids = await _scenario(h)
    real = h.hub.archive.delete_ticket

    async def late_note(tid: str, plan: dict[str, Any]) -> str:
        await h.hub.store.add_event(tid, {"type": "note", "actor": "ani", "text": "late"})
        return await real(tid, plan)

    h.hub.archive.delete_ticket = late_note  # type: ignore[method-assign]
    result = await h.hub.make_archiver().run_once()
    assert result.archived == []
    assert result.conflicts == 1
    ticket = await h.ticket(ids["A"])
    assert ticket["messages"][-1]["text"] == "late"
    assert await h.hub.redis.hlen("hub:{tickets}:archive:pending") == 0


async def test_cli_dry_run_lists_without_deleting(
    harness_factory: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    h = await _harness(harness_factory)
    ids = await _scenario(h)
    number = (await h.ticket(ids["A"]))["number"]
    code = await run_archive(h.settings, dry_run=True, days=None, clock=ManualClock(DEC_01))
    assert code == 0
    out = [x for x in capsys.readouterr().out.splitlines() if x.startswith("would archive")]
    assert out[0] == f"would archive {number} {ids['A']}"
    assert out[1].startswith("would archive 1 tickets")
    assert len(out) == 2  # B (open) and C (recent) are not listed
    assert (await h.ticket(ids["A"]))["status"] == "closed"
    assert not (h.settings.archive_dir / "2026-09.jsonl.gz").exists()
    assert await h.hub.redis.hlen("hub:{tickets}:archive:reports") == 0


# -- what is not archived (yet): queued or held tickets, merged tickets ------------------------


async def test_a_closed_ticket_still_queued_or_held_stays(harness_factory: Factory) -> None:
    """Closing and leaving the queue are two steps: a ticket caught between them (a crash,
    or a claim racing the close) is waiting in a queue or on an agent's desk. It stays whole
    until the queue lets it go, then the next run archives it."""
    h = await _harness(harness_factory)
    ids = await _scenario(h)
    queue = h.hub.queue.queue
    assert await queue.enqueue(ids["A"], "general", 0) == "waiting"  # though closed

    result = await h.hub.make_archiver().run_once()
    assert result.archived == []
    assert result.skipped == {"queued": 1}
    assert (await h.ticket(ids["A"]))["status"] == "closed"
    assert not (h.settings.archive_dir / "2026-09.jsonl.gz").exists()
    assert await h.hub.redis.hlen("hub:{tickets}:archive:reports") == 0  # nothing to save yet

    status, tid = await queue.claim("ani", [], 600_000, ids["A"], int(DEC_01 * 1000))
    assert (status, tid) == ("ok", ids["A"])  # now held by an agent
    assert await queue.holder(ids["A"]) == ("ani", int(DEC_01 * 1000) + 600_000)
    result = await h.hub.make_archiver().run_once()
    assert result.archived == []
    assert result.skipped == {"queued": 1}
    assert (await h.ticket(ids["A"]))["status"] == "closed"

    await h.hub.queue.done(ids["A"])  # off the desk
    result = await h.hub.make_archiver().run_once()
    assert [t for t, _ in result.archived] == [ids["A"]]
    assert [x["ticket"]["id"] for x in _lines(h)] == [ids["A"]]


async def _merged(h: HubHarness) -> dict[str, str]:
    """On 21 September A writes (X) and B writes (Y); X is merged into Y at 09:20. C writes
    at 11:00 (Z). All three stay open or merged until the test says otherwise."""
    ids = {"X": await _write(h, MON_0900, A, "Pesangon saya tidak dibayar")}
    ids["Y"] = await _write(h, MON_0900 + 600, B, "Pesangon teman saya juga belum dibayar")
    h.clock.t = MON_0900 + 1200
    merged = await h.api_ok("POST", f"/api/v1/tickets/{ids['X']}/merge", json={"into": ids["Y"]})
    assert merged == {"merged": ids["X"], "into": ids["Y"]}
    ids["Z"] = await _write(h, MON_0900 + 2 * HOUR, C, "Cuti tidak diberikan")
    return ids


async def test_a_merged_ticket_waits_for_its_target_and_goes_with_it(
    harness_factory: Factory,
) -> None:
    """X (merged into Y, closed by the merge) is old enough on 1 December, but Y is open: X
    waits. Y and Z are closed on 1 December; on 5 January all three go, X and Y together,
    even when they come one per batch (X's batch passed before Y's took it along)."""
    h = await harness_factory(retention__archive_closed_after_days=30, retention__batch_size=1)
    ids = await _merged(h)
    h.clock.t = DEC_01
    result = await h.hub.make_archiver().run_once()
    assert result.archived == []
    assert result.skipped == {"merged_into": 1}
    assert (await h.ticket(ids["X"]))["merged_into"] == ids["Y"]

    h.clock.t = DEC_01 + HOUR
    await h.api_ok("POST", f"/api/v1/tickets/{ids['Y']}/status", json={"status": "closed"})
    h.clock.t = DEC_01 + 2 * HOUR
    await h.api_ok("POST", f"/api/v1/tickets/{ids['Z']}/status", json={"status": "closed"})
    y_export = await h.api_ok("GET", f"/api/v1/tickets/{ids['Y']}/export")
    numbers = {k: (await h.ticket(v))["number"] for k, v in ids.items()}

    h.clock.t = DEC_01 + 35 * DAY  # 5 January 2027: the closed index is X (Sep), Y, Z (Dec)
    result = await h.hub.make_archiver().run_once()
    assert sorted(t for t, _ in result.archived) == sorted(ids.values())
    assert result.skipped == {"merged_into": 1}  # X in its own batch; it went with Y
    docs = {x["ticket"]["id"]: x for x in _lines(h)}
    assert set(docs) == set(ids.values())
    assert docs[ids["X"]]["ticket"]["merged_into"] == ids["Y"]
    assert docs[ids["Y"]]["ticket"]["merged_from"] == [ids["X"]]
    assert docs[ids["Y"]]["timeline"] == y_export["timeline"]  # X's messages included
    assert any(e.get("from_ticket") == ids["X"] for e in docs[ids["Y"]]["timeline"])
    x_rec, y_rec = [await h.hub.archive.lookup(ids[k]) for k in "XY"]
    assert x_rec is not None
    assert y_rec is not None
    assert x_rec["offset"] == y_rec["offset"]  # one batch, one gzip member
    for k in ids:
        status, body = await h.api("GET", f"/api/v1/tickets/{numbers[k]}/export")
        assert status == 410, (k, body)
    for k in "XY":
        cid, n = ids[k].split(".")
        assert await _keys(h, f"hub:c:{{{cid}}}:t:{n}*") == []
    assert await h.hub.redis.hlen("hub:{tickets}:archive:pending") == 0
    assert await h.tickets(limit="50", status="closed") == []


async def test_a_merge_target_waits_for_its_recent_merged_ticket(
    harness_factory: Factory,
) -> None:
    """Y (X merged into it) was closed in September, but a note went on X on 25 November:
    on 1 December X is recent, so Y is skipped (``merge_partner``) and X waits for Y (which
    it would anyway): both stay whole. Once X is old enough both go together."""
    h = await _harness(harness_factory)
    ids = await _merged(h)
    h.clock.t = MON_0900 + HOUR
    await h.api_ok("POST", f"/api/v1/tickets/{ids['Y']}/status", json={"status": "closed"})
    h.clock.t = NOV_20 + 5 * DAY
    await h.api_ok("POST", f"/api/v1/tickets/{ids['X']}/notes", json={"text": "Salinan PKB"})

    h.clock.t = DEC_01
    result = await h.hub.make_archiver().run_once()
    assert result.archived == []
    assert result.skipped["merge_partner"] == 1
    assert result.skipped["recent"] == 1  # X: still listed by its close, changed since
    assert sum(result.skipped.values()) == 2
    for k in "XY":
        assert (await h.ticket(ids[k]))["status"] == "closed"
        assert await h.hub.archive.lookup(ids[k]) is None
    assert not (h.settings.archive_dir / "2026-09.jsonl.gz").exists()
    assert await h.hub.redis.hlen("hub:{tickets}:archive:reports") == 0

    h.clock.t = NOV_20 + 36 * DAY  # 26 December: the note is 31 days old
    result = await h.hub.make_archiver().run_once()
    assert sorted(t for t, _ in result.archived) == sorted([ids["X"], ids["Y"]])
    x_doc = next(x for x in _lines(h) if x["ticket"]["id"] == ids["X"])
    assert x_doc["timeline"][-1]["text"] == "Salinan PKB"
