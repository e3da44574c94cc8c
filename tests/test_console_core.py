"""The console's core on a real Redis: accounts, sessions, CSRF, roles, routing, the queue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from yarl import URL

from tests.helpers import AUTH, HubHarness, eventually, inbound_params

PASSWORD = "kata-sandi-rahasia-1"


@asynccontextmanager
async def signed_in(
    h: HubHarness, username: str
) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """A browser-like session: cookie jar, then the CSRF token from the login answer."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(
            h.base + "/api/v1/session", json={"username": username, "password": PASSWORD}
        ) as r:
            assert r.status == 200, await r.text()
            csrf = (await r.json())["csrf_token"]
        yield s, csrf


async def _users(h: HubHarness) -> None:
    auth = h.hub.auth
    await auth.create_user("ani", PASSWORD, "agent", ["general"], "Ani")
    await auth.create_user("budi", PASSWORD, "agent", ["general"], "Budi")
    await auth.create_user("citra", PASSWORD, "agent", ["hi_upah"], "Citra")
    await auth.create_user("sari", PASSWORD, "supervisor", [], "Sari")
    await auth.create_user("root", PASSWORD, "admin", [], "Admin")


async def _ticket(h: HubHarness, text: str = "Halo", phone: str = "+6281234567890") -> str:
    await h.post_whatsapp(inbound_params(text, phone=phone))
    await h.drain_inbound()
    [t] = [t for t in await h.tickets() if t["reply_to"] == phone]
    return str(t["id"])


async def test_login_session_and_logout(harness: HubHarness) -> None:
    """A session cookie signs the agent in; logout ends it on the server, not just the cookie."""
    await _users(harness)
    async with signed_in(harness, "ani") as (s, csrf):
        async with s.get(harness.base + "/api/v1/me") as r:
            me = await r.json()
        assert (me["name"], me["role"], me["units"]) == ("ani", "agent", ["general"])
        async with s.post(  # signing in again replaces the session (and its CSRF token)
            harness.base + "/api/v1/session", json={"username": "ani", "password": PASSWORD}
        ) as r:
            set_cookie = r.headers["Set-Cookie"]
            csrf = (await r.json())["csrf_token"]
        cookie = s.cookie_jar.filter_cookies(URL(harness.base))["hub_session"]
        assert "HttpOnly" in set_cookie
        assert "SameSite=Lax" in set_cookie
        async with s.post(
            harness.base + "/api/v1/session/logout", headers={"X-CSRF-Token": csrf}
        ) as r:
            assert r.status == 200
    # replaying the old cookie gets nothing
    async with (
        aiohttp.ClientSession() as other,
        other.get(
            harness.base + "/api/v1/me", headers={"Cookie": f"hub_session={cookie.value}"}
        ) as r,
    ):
        assert r.status == 401


async def test_wrong_password_and_lockout(harness: HubHarness) -> None:
    """Five wrong passwords lock the account, even against the right one, with one message."""
    await _users(harness)
    async with aiohttp.ClientSession() as s:
        for _ in range(5):
            async with s.post(
                harness.base + "/api/v1/session", json={"username": "ani", "password": "salah"}
            ) as r:
                assert r.status == 401
                assert (await r.json())["message"] == "wrong username or password"
        async with s.post(
            harness.base + "/api/v1/session", json={"username": "ani", "password": PASSWORD}
        ) as r:
            assert r.status == 401
            assert "too many failed attempts" in (await r.json())["message"]
        async with s.post(
            harness.base + "/api/v1/session", json={"username": "nobody", "password": "x"}
        ) as r:
            assert (await r.json())["message"] == "wrong username or password"
    stored = await harness.hub.redis.hget("hub:{users}:u:ani", "password")
    assert stored.startswith(b"scrypt$")


async def test_csrf_is_required_for_session_writes(harness: HubHarness) -> None:
    """A session POST without the CSRF token is refused; with it, accepted; bearer needs none."""
    await _users(harness)
    tid = await _ticket(harness)
    async with signed_in(harness, "ani") as (s, csrf):
        url = f"{harness.base}/api/v1/tickets/{tid}/notes"
        async with s.post(url, json={"text": "cek"}) as r:
            assert r.status == 403
            assert (await r.json())["error"] == "csrf"
        async with s.post(url, json={"text": "cek"}, headers={"X-CSRF-Token": "x" * 32}) as r:
            assert r.status == 403
        async with s.post(url, json={"text": "cek"}, headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 201
    status, _ = await harness.api("POST", f"/api/v1/tickets/{tid}/notes", json={"text": "api"})
    assert status == 201


async def test_roles_limit_what_each_person_sees_and_does(harness: HubHarness) -> None:
    """Agents see only their units' tickets and no admin endpoints; supervisors see all."""
    await _users(harness)
    tid = await _ticket(harness)  # lands in the general unit
    async with signed_in(harness, "citra") as (s, csrf):  # hi_upah only
        async with s.get(f"{harness.base}/api/v1/tickets/{tid}") as r:
            assert r.status == 404
        async with s.get(f"{harness.base}/api/v1/tickets?unit=general") as r:
            assert r.status == 403
        async with s.get(f"{harness.base}/api/v1/tickets") as r:
            assert (await r.json())["items"] == []
        for path in ("/api/v1/dead-letters", "/api/v1/users", "/api/v1/presence"):
            async with s.get(harness.base + path) as r:
                assert r.status == 403, path
        h = {"X-CSRF-Token": csrf}
        async with s.post(f"{harness.base}/api/v1/tickets/{tid}/claim", headers=h) as r:
            assert r.status == 404
        new_user = {"username": "x1", "password": "0123456789ab", "role": "admin"}
        async with s.post(harness.base + "/api/v1/users", json=new_user, headers=h) as r:
            assert r.status == 403
    async with signed_in(harness, "sari") as (s, _):
        async with s.get(f"{harness.base}/api/v1/tickets/{tid}") as r:
            assert r.status == 200
        async with s.get(harness.base + "/api/v1/dead-letters") as r:
            assert r.status == 200
    async with signed_in(harness, "root") as (s, csrf):
        new_user = {"username": "dewi", "password": "0123456789ab", "units": ["k3"]}
        async with s.post(
            harness.base + "/api/v1/users", json=new_user, headers={"X-CSRF-Token": csrf}
        ) as r:
            assert r.status == 201
    got = await harness.hub.users.get("dewi")
    assert got is not None
    assert got[0].units == ("k3",)


async def test_routing_rules_send_tickets_to_units(harness_factory: Any) -> None:
    """Keywords route a new ticket to its unit, category and priority; else the account's unit."""
    h = await harness_factory(
        routing=[
            {"keywords": ["pesangon", "PHK"], "unit": "hi_upah", "category": "PHK",
             "priority": "high"},
            {"keywords": ["magang"], "unit": "vokasi", "category": "pemagangan"},
        ]
    )  # fmt: skip
    await h.post_whatsapp(
        inbound_params("Saya kena PHK, pesangon belum dibayar", phone="+6281211112222")
    )
    await h.post_whatsapp(inbound_params("Info program MAGANG?", phone="+6285722223333"))
    await h.post_whatsapp(inbound_params("Halo selamat pagi", phone="+6287833334444"))
    await h.post_whatsapp(inbound_params("phkx bukan kata kunci", phone="+6281344445555"))
    await h.drain_inbound()
    by_phone = {t["reply_to"]: t for t in await h.tickets()}
    assert (by_phone["+6281211112222"]["unit"], by_phone["+6281211112222"]["category"]) == (
        "hi_upah",
        "PHK",
    )
    assert by_phone["+6281211112222"]["priority"] == "high"
    assert by_phone["+6285722223333"]["unit"] == "vokasi"
    assert by_phone["+6287833334444"]["unit"] == "general"
    assert by_phone["+6281344445555"]["unit"] == "general"  # whole words only
    _status, q = await h.api("GET", "/api/v1/queue")
    assert q["units"]["hi_upah"]["waiting"] == 1
    assert q["units"]["general"]["waiting"] == 2


async def test_claim_next_serves_priority_then_longest_waiting(harness: HubHarness) -> None:
    """The next claim takes the most urgent ticket, and among equals the one waiting longest."""
    await _users(harness)
    first = await _ticket(harness, "pertama", "+6281000000001")
    second = await _ticket(harness, "kedua", "+6281000000002")
    third = await _ticket(harness, "ketiga", "+6281000000003")
    status, _ = await harness.api(
        "POST", f"/api/v1/tickets/{third}/priority", json={"priority": "urgent"}
    )
    assert status == 200
    order = []
    async with signed_in(harness, "ani") as (s, csrf):
        for _ in range(4):
            async with s.post(
                harness.base + "/api/v1/queue/claim-next", headers={"X-CSRF-Token": csrf}
            ) as r:
                order.append((await r.json())["ticket_id"])
    assert order == [third, first, second, None]
    full = await harness.ticket(first)
    assert full["assignee"] == "ani"
    assert full["claim"]["agent"] == "ani"
    kinds = [m["type"] for m in full["messages"] if m["direction"] == "event"]
    assert kinds == ["claimed"]


async def test_concurrent_claims_never_share_or_lose_a_ticket(harness: HubHarness) -> None:
    """Ten agents claiming at once: every ticket claimed exactly once, none left behind."""
    for i in range(25):
        await harness.post_whatsapp(inbound_params(f"m{i}", phone=f"+62812000100{i:02d}"))
    await harness.drain_inbound()
    agents = [f"agent{i}" for i in range(10)]
    for a in agents:
        await harness.hub.auth.create_user(a, PASSWORD, "agent", ["general"])
    from hub.accounts import Principal

    async def claim_all(name: str) -> list[str]:
        who = Principal(name, "agent", ("general",))
        got = []
        while (r := await harness.hub.queue.claim_next(who)) is not None:
            got.append(r.ticket_id)
        return got

    results = await asyncio.gather(*(claim_all(a) for a in agents))
    claimed = [t for r in results for t in r]
    assert len(claimed) == 25
    assert len(set(claimed)) == 25
    for a, got in zip(agents, results, strict=True):
        assert sorted(await harness.hub.queue.queue.held_by(a)) == sorted(got)


async def test_lapsed_claim_returns_to_the_queue(harness_factory: Any) -> None:
    """An abandoned claim goes back to its place in the queue and another agent can take it."""
    h = await harness_factory(console__claim_lease_minutes=0.001)  # 60 ms
    await _users(h)
    tid = await _ticket(h)
    from hub.accounts import Principal

    ani = Principal("ani", "agent", ("general",))
    budi = Principal("budi", "agent", ("general",))
    assert (await h.hub.queue.claim_next(ani)).ticket_id == tid  # type: ignore[union-attr]
    assert await h.hub.queue.claim_next(budi) is None

    async def lapsed() -> int:
        return await h.hub.queue.expire_leases()

    assert await eventually(lapsed) == 1
    got = await h.hub.queue.claim_next(budi)
    assert got is not None
    assert got.ticket_id == tid
    kinds = [m["type"] for m in (await h.ticket(tid))["messages"] if m["direction"] == "event"]
    assert kinds == ["claimed", "lease_expired", "claimed"]


async def test_agents_reply_only_on_tickets_they_hold(harness: HubHarness) -> None:
    """An agent replying to a free ticket claims it; a colleague's ticket is refused."""
    await _users(harness)
    tid = await _ticket(harness)
    async with signed_in(harness, "ani") as (s, csrf), s.post(
        f"{harness.base}/api/v1/tickets/{tid}/replies", json={"text": "Baik, kami cek."},
        headers={"X-CSRF-Token": csrf},
    ) as r:  # fmt: skip
        assert r.status == 202
    async with signed_in(harness, "budi") as (s, csrf), s.post(
        f"{harness.base}/api/v1/tickets/{tid}/replies", json={"text": "Saya juga"},
        headers={"X-CSRF-Token": csrf},
    ) as r:  # fmt: skip
        assert r.status == 409
        assert (await r.json())["error"] == "claimed_by_other"
    full = await harness.ticket(tid)
    assert full["assignee"] == "ani"
    assert [m["author"] for m in full["messages"] if m.get("kind") == "agent"] == ["ani"]


async def test_transfer_release_resolve_and_audit_trail(harness: HubHarness) -> None:
    """Transfers move the ticket between queues and desks; every step is in the audit trail."""
    await _users(harness)
    tid = await _ticket(harness)
    api = harness.api
    assert (await api("POST", f"/api/v1/tickets/{tid}/transfer", json={"unit": "hi_upah"}))[
        0
    ] == 200
    _, q = await api("GET", "/api/v1/queue")
    assert (q["units"]["general"]["waiting"], q["units"]["hi_upah"]["waiting"]) == (0, 1)
    status, body = await api(
        "POST", f"/api/v1/tickets/{tid}/transfer", json={"unit": "hi_upah", "agent": "ani"}
    )
    assert (status, body["error"]) == (400, "agent_not_in_unit")
    assert (await api("POST", f"/api/v1/tickets/{tid}/transfer", json={"agent": "citra"}))[0] == 200
    assert await harness.hub.queue.queue.held_by("citra") == [tid]
    await api("POST", f"/api/v1/tickets/{tid}/notes", json={"text": "Sudah dihubungi via telepon"})
    await api("POST", f"/api/v1/tickets/{tid}/category", json={"category": "upah"})
    assert (await api("POST", f"/api/v1/tickets/{tid}/status", json={"status": "resolved"}))[
        0
    ] == 200
    assert await harness.hub.queue.queue.held_by("citra") == []
    full = await harness.ticket(tid)
    trail = [(m["type"], m["actor"]) for m in full["messages"] if m["direction"] == "event"]
    assert trail == [
        ("transferred", "agent-ani"),
        ("transferred", "agent-ani"),
        ("assigned", "agent-ani"),
        ("note", "agent-ani"),
        ("category", "agent-ani"),
        ("status", "agent-ani"),
    ]
    assert (full["status"], full["unit"], full["category"], full["assignee"]) == (
        "resolved",
        "hi_upah",
        "upah",
        "",
    )


async def test_least_loaded_policy_offers_within_capacity(harness_factory: Any) -> None:
    """A least-loaded unit hands tickets to online agents up to their capacity, and the next
    waiting ticket goes out the moment an agent frees up."""
    h = await harness_factory(
        units__general__policy="least_loaded", console__agent_capacity=1,
        units__general__name_id="Umum", units__general__name_en="General",
    )  # fmt: skip
    from hub.accounts import Principal

    for name in ("ani", "budi"):
        await h.hub.auth.create_user(name, PASSWORD, "agent", ["general"])
        await h.hub.queue.set_presence(Principal(name, "agent", ("general",)), "online")
    tids = [await _ticket(h, f"m{i}", f"+6281300000{i:03d}") for i in range(3)]
    held = {a: await h.hub.queue.queue.held_by(a) for a in ("ani", "budi")}
    assert sorted(len(v) for v in held.values()) == [1, 1]
    waiting = await h.hub.queue.queue.waiting("general")
    assert waiting == [tids[2]]
    done = held["ani"][0]
    await h.api("POST", f"/api/v1/tickets/{done}/status", json={"status": "resolved"})
    assert await h.hub.queue.queue.held_by("ani") == [tids[2]]
    assert await h.hub.queue.queue.waiting("general") == []


async def test_live_events_and_resume_after_disconnect(harness: HubHarness) -> None:
    """New messages arrive as server-sent events; a reconnect with Last-Event-ID gets what it
    missed, once."""
    await _users(harness)

    async def read_events(s: aiohttp.ClientSession, headers: dict[str, str], n: int) -> list:
        out: list[tuple[str, dict[str, Any]]] = []
        async with s.get(harness.base + "/api/v1/events", headers=headers) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            eid = ""
            async for raw in r.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("id: "):
                    eid = line[4:]
                elif line.startswith("data: "):
                    out.append((eid, json.loads(line[6:])))
                    if len(out) >= n:
                        return out
        return out

    async with signed_in(harness, "ani") as (s, _):
        reader = asyncio.create_task(read_events(s, {}, 1))
        await asyncio.sleep(0)  # let the request start; events are awaited below, not slept on

        async def connected() -> bool:
            return bool(harness.hub.live._subs)

        await eventually(connected)
        await harness.post_whatsapp(inbound_params("Halo live", phone="+6281234567890"))
        await harness.drain_inbound()
        [(first_id, ev)] = await asyncio.wait_for(reader, 10)
        assert ev["type"] in ("message.received", "queue.waiting")
        # while disconnected: another citizen writes
        await harness.post_whatsapp(inbound_params("Saat terputus", phone="+6285712345678"))
        await harness.drain_inbound()
        missed = await asyncio.wait_for(read_events(s, {"Last-Event-ID": first_id}, 3), 10)
    ids = [i for i, _ in missed]
    assert first_id not in ids
    assert len(ids) == len(set(ids))
    assert {e["type"] for _, e in missed} >= {"message.received", "queue.waiting"}


async def test_agents_only_get_events_of_their_units(harness: HubHarness) -> None:
    """An agent of another unit is not told about a general-queue ticket."""
    await _users(harness)
    await _ticket(harness)
    feed = harness.hub.live
    from hub.accounts import Principal

    citra = Principal("citra", "agent", ("hi_upah",))
    ani = Principal("ani", "agent", ("general",))
    events = await harness.hub.events.since("0")
    assert events
    assert not any([await feed.allowed(citra, e) for _, e in events])
    assert all([await feed.allowed(ani, e) for _, e in events])


async def test_merge_two_tickets_into_one_timeline(harness: HubHarness) -> None:
    """Merging closes the source, shows its messages on the target, and new messages follow."""
    a = await _ticket(harness, "Gaji belum dibayar", "+6281234567890")
    await harness.api("POST", f"/api/v1/tickets/{a}/status", json={"status": "resolved"})
    harness.clock.advance(80 * 3600)  # past the reopen window: a second ticket opens
    await harness.post_whatsapp(inbound_params("Soal yang sama", phone="+6281234567890"))
    await harness.drain_inbound()
    b = next(t["id"] for t in await harness.tickets() if t["id"] != a)
    status, body = await harness.api("POST", f"/api/v1/tickets/{b}/merge", json={"into": a})
    assert (status, body["error"]) == (409, "ticket_closed")  # the old one closed meanwhile
    status, body = await harness.api("POST", f"/api/v1/tickets/{a}/merge", json={"into": b})
    assert status == 200, body
    src, dst = await harness.ticket(a), await harness.ticket(b)
    assert (src["status"], src["merged_into"]) == ("closed", b)
    texts = [m.get("text") for m in dst["messages"] if m["direction"] == "in"]
    assert texts == ["Gaji belum dibayar", "Soal yang sama"]
    assert dst["merged_from"] == [a]
    assert "merged" in [m["type"] for m in dst["messages"] if m["direction"] == "event"]
    harness.clock.advance(60)
    await harness.post_whatsapp(inbound_params("Ada kabar?", phone="+6281234567890"))
    await harness.drain_inbound()
    dst = await harness.ticket(b)
    assert [m.get("text") for m in dst["messages"] if m["direction"] == "in"][-1] == "Ada kabar?"
    status, body = await harness.api("POST", f"/api/v1/tickets/{a}/merge", json={"into": b})
    assert (status, body["error"]) == (409, "already_merged")


async def test_merge_and_unmerge_contacts_with_audit(harness: HubHarness) -> None:
    """Two phones of one citizen become one contact, and the merge can be undone, audited."""
    a = await _ticket(harness, "Dari nomor pertama", "+6281234567890")
    b = await _ticket(harness, "Dari nomor kedua", "+6285712345678")
    ca, cb = a.split(".")[0], b.split(".")[0]
    status, body = await harness.api("POST", f"/api/v1/contacts/{ca}/merge", json={"contact": cb})
    assert status == 200, body
    assert body["identities"] == ["phone:+6285712345678"]
    _, contact = await harness.api("GET", f"/api/v1/contacts/{ca}")
    assert {i["value"] for i in contact["identities"]} == {"+6281234567890", "+6285712345678"}
    assert set(contact["tickets"]) == {a, b}
    assert contact["audit"][0]["type"] == "merged"
    assert contact["audit"][0]["actor"] == "agent-ani"
    # a new message from the second phone now belongs to the merged contact
    await harness.api("POST", f"/api/v1/tickets/{b}/status", json={"status": "closed"})
    await harness.post_whatsapp(inbound_params("Lanjutan", phone="+6285712345678"))
    await harness.drain_inbound()
    full = await harness.ticket(a)
    assert [m.get("text") for m in full["messages"] if m["direction"] == "in"][-1] == "Lanjutan"

    status, body = await harness.api("POST", f"/api/v1/contacts/{ca}/unmerge", json={"contact": cb})
    assert status == 200, body
    _, contact = await harness.api("GET", f"/api/v1/contacts/{ca}")
    assert [i["value"] for i in contact["identities"]] == ["+6281234567890"]
    assert [e["type"] for e in contact["audit"]] == ["merged", "unmerged"]
    _, other = await harness.api("GET", f"/api/v1/contacts/{cb}")
    assert [e["type"] for e in other["audit"]] == ["merged_into", "unmerged_from"]
    assert "merged_into" not in other
    status, _ = await harness.api("POST", f"/api/v1/contacts/{ca}/unmerge", json={"contact": cb})
    assert status == 400


async def test_round_robin_policy_takes_turns(harness_factory: Any) -> None:
    """A round-robin unit gives each online agent a ticket in turn."""
    h = await harness_factory(
        units__general__policy="round_robin", console__agent_capacity=10,
        units__general__name_id="Umum", units__general__name_en="General",
    )  # fmt: skip
    from hub.accounts import Principal

    for name in ("ani", "budi", "cici"):
        await h.hub.auth.create_user(name, PASSWORD, "agent", ["general"])
        await h.hub.queue.set_presence(Principal(name, "agent", ("general",)), "online")
    await h.hub.queue.set_presence(Principal("cici", "agent", ("general",)), "away")
    for i in range(4):
        await _ticket(h, f"m{i}", f"+6281300000{i:03d}")
    held = {a: len(await h.hub.queue.queue.held_by(a)) for a in ("ani", "budi", "cici")}
    assert held == {"ani": 2, "budi": 2, "cici": 0}


async def test_every_ticket_endpoint_hides_other_units_tickets(harness: HubHarness) -> None:
    """Role check on every route that names a ticket: an agent of another unit gets 404 (it
    cannot even learn that the ticket exists), and agents get 403 on supervisor routes."""
    from hub.web.openapi import spec

    await _users(harness)
    tid = await _ticket(harness)
    paths = spec()["paths"]
    checked = 0
    async with signed_in(harness, "citra") as (s, csrf):
        for path, ops in paths.items():
            for method in ops:
                if "{ticket}" not in path:
                    continue
                url = harness.base + path.replace("{ticket}", tid)
                async with s.request(
                    method.upper(), url, json={}, headers={"X-CSRF-Token": csrf}
                ) as r:
                    assert r.status == 404, (method, path, r.status)
                    checked += 1
        for method, path in (("GET", "/api/v1/users"), ("GET", "/api/v1/dead-letters"),
                             ("POST", "/api/v1/users"), ("POST", "/api/v1/dead-letters/replay"),
                             ("GET", "/api/v1/presence")):  # fmt: skip
            async with s.request(
                method, harness.base + path, json={}, headers={"X-CSRF-Token": csrf}
            ) as r:
                assert r.status == 403, (method, path, r.status)
    assert checked >= 12
    full = await harness.ticket(tid)
    assert [m["id"] for m in full["messages"] if m["direction"] == "event"] == []  # no change
    assert [m["kind"] for m in full["messages"] if m["direction"] == "out"] == ["auto"]


async def test_event_stream_refuses_a_bad_resume_id_before_streaming(harness: Any) -> None:
    """An unparseable Last-Event-ID is a 400 up front, not a 200 whose stream dies on the
    first Redis read; HEAD is headers only (a body after them breaks keep-alive)."""
    h = harness
    for bad in ("zz", "1-2-3", "9" * 30):
        status, body = await h.api("GET", "/api/v1/events", params={"since": bad})
        assert (status, body["error"]) == (400, "invalid_parameter")
    assert h.session is not None
    async with h.session.head(h.base + "/api/v1/events", headers=AUTH) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
