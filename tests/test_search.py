"""Ticket search: the tokenizer, the Redis index (single server and cluster) and the endpoint."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.cluster import RedisCluster

from adapters import keys
from adapters.redis_search import RedisSearchIndex
from hub.accounts import Principal
from hub.ids import new_id
from hub.model import Message
from hub.search import (
    JAKARTA,
    MAX_DOC_TOKENS,
    ParsedQuery,
    SearchDoc,
    SearchQuery,
    normalize_text,
    parse_query,
    tokenize,
)
from hub.web import search_api
from hub.web.auth import PRINCIPAL
from hub.web.common import HUB
from tests.helpers import SID2, HubHarness, inbound_params

PHONE_SITI = "+6281234567890"
PHONE_BUDI = "+6285712345678"
PHONE_ANI = "+6281311112222"


# -- the tokenizer and the query reader (no Redis) -----------------------------------------


def test_normalize_folds_accents_case_and_punctuation() -> None:
    """Accents and case fold, punctuation becomes space, digit groups and letters split."""
    assert normalize_text("Pésangon PHK belum DIBAYAR!!") == "pesangon phk belum dibayar"
    assert normalize_text("Rp5.000.000,- per bulan") == "rp 5000000 per bulan"
    assert normalize_text("PT. Maju-Jaya (Bekasi)") == "pt maju jaya bekasi"
    assert normalize_text("Ça coûte… 2.5 juta") == "ca coute 2 5 juta"


def test_tokenize_keeps_digits_and_drops_short_tokens_and_stopwords() -> None:
    """Numbers like UMK 2026 survive; one-letter tokens and stopwords do not; no repeats."""
    assert tokenize("UMK 2026 di Jawa Barat") == ["umk", "2026", "jawa", "barat"]
    assert tokenize("Saya di PHK dari PT yang lama, PHK sepihak") == [
        "phk",
        "pt",
        "lama",
        "sepihak",
    ]
    assert tokenize("a b c 1 2 3 the and yang dan") == []
    assert tokenize("x" * 41 + " gaji") == ["gaji"]


def test_tokenize_caps_tokens_per_message() -> None:
    """A long message contributes at most MAX_DOC_TOKENS distinct tokens, the first ones."""
    words = [f"kata{i:03d}x" for i in range(200)]
    toks = tokenize(" ".join(words))
    assert len(toks) == MAX_DOC_TOKENS
    assert toks[:2] == ["kata", "000"]


def test_parse_query_tells_numbers_phones_emails_and_words_apart() -> None:
    """Ticket numbers, ids, e-mails and phones are exact lookups; anything else is words."""
    assert parse_query("kmn-2026-000123") == ParsedQuery("number", "KMN-2026-000123")
    tid = new_id() + ".3"
    assert parse_query(tid) == ParsedQuery("ticket_id", tid)
    assert parse_query(" Siti@Example.COM ") == ParsedQuery("email", "email:siti@example.com")
    for notation in ("081234567890", "+62 812-3456-7890", "6281234567890", "0812 3456 7890"):
        assert parse_query(notation) == ParsedQuery("phone", "phone:+6281234567890"), notation
    assert parse_query("UMK 2026") == ParsedQuery("words", tokens=("umk", "2026"))
    assert parse_query("3201234567890123") == ParsedQuery("words", tokens=("3201234567890123",))
    assert parse_query("  ") == ParsedQuery("all")
    assert parse_query("di yang") == ParsedQuery("words", tokens=())


def test_created_range_covers_whole_jakarta_days() -> None:
    """from/to are inclusive days in Asia/Jakarta (UTC+7), not UTC days."""
    q = SearchQuery(date_from=date(2026, 3, 1), date_to=date(2026, 3, 2))
    lo, hi = q.created_range_ms() or (0, 0)
    assert lo == int(datetime(2026, 3, 1, tzinfo=JAKARTA).timestamp() * 1000)
    assert hi == int(datetime(2026, 3, 3, tzinfo=JAKARTA).timestamp() * 1000)
    assert SearchQuery().created_range_ms() is None


# -- on Redis: data made through the webhook and the dispatcher, as in production ----------


async def _post(
    h: HubHarness,
    body: str,
    phone: str = PHONE_SITI,
    name: str = "Siti Rahayu",
    account: str = "wa1",
    at: datetime | None = None,
) -> None:
    if at is not None:
        h.clock.t = at.timestamp()
    else:
        h.clock.advance(60)
    extra = {"account_sid": SID2, "to": "+628119521151"} if account == "wa2" else {}
    status, text = await h.post_whatsapp(
        inbound_params(body, phone=phone, ProfileName=name, **extra), account=account
    )
    assert status == 200, text


async def _docs(h: HubHarness) -> list[SearchDoc]:
    """SearchDocs for every inbound message, built from what the ticket API shows."""
    docs = []
    for t in await h.tickets(limit="200"):
        full = await h.ticket(t["id"])
        for m in full["messages"]:
            if m.get("direction") == "in":
                docs.append(
                    SearchDoc(
                        ticket_id=t["id"],
                        contact_id=t["contact_id"],
                        number=t.get("number", ""),
                        created_at_ms=int(m["received_at"] * 1000),
                        text=m.get("text", ""),
                        display_name=m.get("display_name", ""),
                        identities=(m["sender"],),
                    )
                )
    return docs


async def _index(h: HubHarness) -> RedisSearchIndex:
    await h.drain_inbound()
    idx = RedisSearchIndex(h.hub.redis)
    h.hub.search = idx
    await idx.index(await _docs(h))
    return idx


async def _numbers(idx: RedisSearchIndex, **query: Any) -> tuple[list[str], int]:
    """Ticket numbers (not ids) of one search page, and the total."""
    tids, total = await idx.search(SearchQuery(**query))
    return [t["number"] for t in await idx.summaries(tids)], total


async def _three_citizens(h: HubHarness) -> dict[str, str]:
    """Siti (THR unpaid), Budi (THR paid, thanks), Ani (severance after layoff): phone → no."""
    await _post(h, "Selamat pagi, THR saya belum dibayar sampai sekarang", PHONE_SITI)
    await _post(h, "THR sudah dibayar, terima kasih", PHONE_BUDI, "Budi Santoso")
    await _post(h, "Pésangon PHK belum diberikan oleh perusahaan", PHONE_ANI, "Ani Wijaya")
    await h.drain_inbound()
    by_phone = {}
    for t in await h.tickets():
        by_phone[t["reply_to"]] = t["number"]
    return by_phone


async def test_search_by_ticket_number_and_id(harness: HubHarness) -> None:
    """A ticket number (any case) or id finds exactly its ticket; an unknown one nothing."""
    nos = await _three_citizens(harness)
    idx = await _index(harness)
    number = nos[PHONE_BUDI]
    assert await _numbers(idx, q=number) == ([number], 1)
    assert await _numbers(idx, q=number.lower()) == ([number], 1)
    assert await _numbers(idx, q="KMN-2026-999999") == ([], 0)
    tid = await harness.hub.store.resolve_ticket_ref(number)
    assert tid is not None
    assert await _numbers(idx, q=tid) == ([number], 1)
    seq = number.rsplit("-", 1)[1]
    assert number in (await _numbers(idx, q=seq))[0]


async def test_search_by_phone_in_any_notation(harness: HubHarness) -> None:
    """0812…, +62 812-…, 62812…, spaced or not: the same citizen's tickets."""
    nos = await _three_citizens(harness)
    idx = await _index(harness)
    for notation in (
        "081234567890",
        "+62 812-3456-7890",
        "6281234567890",
        "0812 3456 7890",
        "+6281234567890",
    ):
        assert await _numbers(idx, q=notation) == ([nos[PHONE_SITI]], 1), notation
    assert await _numbers(idx, q="081299998888") == ([], 0)
    assert await _numbers(idx, q="081234567890", status="resolved") == ([], 0)


async def test_search_by_email_identity(harness: HubHarness) -> None:
    """An ``email:`` identity finds its contact's tickets, by identity key or by the index."""
    nos = await _three_citizens(harness)
    idx = await _index(harness)
    assert await _numbers(idx, q="siti@example.com") == ([], 0)
    # An e-mail identity that names Siti's contact (as the e-mail channel or a merge will).
    siti = await harness.hub.store.resolve_ticket_ref(nos[PHONE_SITI])
    assert siti is not None
    await harness.hub.redis.set(keys.identity("email:siti@example.com"), siti.split(".")[0])
    assert await _numbers(idx, q="Siti@Example.com") == ([nos[PHONE_SITI]], 1)
    assert await _numbers(idx, q="mailto:siti@example.com") == ([nos[PHONE_SITI]], 1)
    # A message indexed from an e-mail identity with no identity key yet.
    budi = await harness.hub.store.resolve_ticket_ref(nos[PHONE_BUDI])
    assert budi is not None
    await idx.index(
        [SearchDoc(budi, budi.split(".")[0], nos[PHONE_BUDI], 1, "", "", ("email:budi@x.id",))]
    )
    assert await _numbers(idx, q="BUDI@x.id") == ([nos[PHONE_BUDI]], 1)


async def test_search_by_name(harness: HubHarness) -> None:
    """Display names are searchable by any of their words, accents and case ignored."""
    nos = await _three_citizens(harness)
    idx = await _index(harness)
    assert await _numbers(idx, q="santoso") == ([nos[PHONE_BUDI]], 1)
    assert await _numbers(idx, q="Ani Wíjaya") == ([nos[PHONE_ANI]], 1)
    assert await _numbers(idx, q="siti budi") == ([], 0)


async def test_words_must_all_match_text_or_name(harness: HubHarness) -> None:
    """Every word must appear in the ticket's messages or the citizen's name (AND)."""
    nos = await _three_citizens(harness)
    idx = await _index(harness)
    siti, budi, ani = nos[PHONE_SITI], nos[PHONE_BUDI], nos[PHONE_ANI]
    assert await _numbers(idx, q="THR belum dibayar") == ([siti], 1)
    assert sorted((await _numbers(idx, q="thr dibayar"))[0]) == sorted([siti, budi])
    assert sorted((await _numbers(idx, q="belum"))[0]) == sorted([siti, ani])
    assert await _numbers(idx, q="pesangon PHK") == ([ani], 1)
    assert await _numbers(idx, q="PHK, pésangon!") == ([ani], 1)
    assert await _numbers(idx, q="budi THR") == ([budi], 1)  # a name word and a text word
    assert await _numbers(idx, q="pesangon dibayar") == ([], 0)


async def test_later_messages_are_searchable_too(harness: HubHarness) -> None:
    """Words of a follow-up message on the same ticket find that ticket."""
    nos = await _three_citizens(harness)
    await _post(harness, "Perusahaan PT Sinar Abadi di Bekasi", PHONE_SITI)
    idx = await _index(harness)
    assert await _numbers(idx, q="sinar abadi thr") == ([nos[PHONE_SITI]], 1)


async def test_filters_status_unit_and_channel(
    harness_factory: Callable[..., Awaitable[HubHarness]],
) -> None:
    """status, unit and channel narrow a text search, alone or together, and without text."""
    h = await harness_factory(channels__whatsapp__accounts__wa2__unit="hi_upah")
    await _post(h, "THR belum dibayar", PHONE_SITI)
    await _post(h, "THR belum dibayar juga", PHONE_BUDI, "Budi", account="wa2")
    await _post(h, "THR dipotong", PHONE_ANI, "Ani", account="wa2")
    await h.drain_inbound()
    nos = {t["reply_to"]: t["number"] for t in await h.tickets()}
    status, body = await h.api(
        "POST", f"/api/v1/tickets/{nos[PHONE_ANI]}/status", json={"status": "resolved"}
    )
    assert status == 200, body
    idx = await _index(h)
    assert (await _numbers(idx, q="thr"))[1] == 3
    assert await _numbers(idx, q="thr", status="resolved") == ([nos[PHONE_ANI]], 1)
    assert (await _numbers(idx, q="thr", status="open"))[1] == 2
    assert sorted((await _numbers(idx, q="thr", unit="hi_upah"))[0]) == sorted(
        [nos[PHONE_BUDI], nos[PHONE_ANI]]
    )
    assert await _numbers(idx, q="thr belum", unit="hi_upah", status="open") == (
        [nos[PHONE_BUDI]],
        1,
    )
    assert (await _numbers(idx, q="thr", channel="whatsapp"))[1] == 3
    assert await _numbers(idx, q="thr", channel="email") == ([], 0)
    assert await _numbers(idx, status="resolved") == ([nos[PHONE_ANI]], 1)
    assert (await _numbers(idx, unit="general"))[1] == 1
    assert await _numbers(idx, unit="no-such-unit") == ([], 0)


async def test_date_range_is_in_jakarta_days(harness: HubHarness) -> None:
    """from/to select tickets by creation day in Jakarta: 00:30 WIB is the next day in UTC+7."""
    await _post(harness, "THR satu", PHONE_SITI, at=datetime(2026, 3, 1, 10, 0, tzinfo=JAKARTA))
    # 2026-03-02 00:30 WIB is still 2026-03-01 in UTC.
    await _post(harness, "THR dua", PHONE_BUDI, at=datetime(2026, 3, 2, 0, 30, tzinfo=JAKARTA))
    await _post(harness, "THR tiga", PHONE_ANI, at=datetime(2026, 3, 5, 23, 59, tzinfo=JAKARTA))
    # A later message on Siti's ticket changes its activity, not its creation day.
    await _post(harness, "masih THR", PHONE_SITI, at=datetime(2026, 3, 6, 9, 0, tzinfo=JAKARTA))
    idx = await _index(harness)
    nos = {t["reply_to"]: t["number"] for t in await harness.tickets()}
    d = date
    assert await _numbers(idx, q="thr", date_from=d(2026, 3, 1), date_to=d(2026, 3, 1)) == (
        [nos[PHONE_SITI]],
        1,
    )
    assert await _numbers(idx, date_from=d(2026, 3, 2), date_to=d(2026, 3, 2)) == (
        [nos[PHONE_BUDI]],
        1,
    )
    assert await _numbers(idx, date_from=d(2026, 3, 2)) == (
        [nos[PHONE_ANI], nos[PHONE_BUDI]],
        2,
    )
    assert (await _numbers(idx, q="thr", date_to=d(2026, 3, 4)))[1] == 2
    assert await _numbers(idx, q="tiga", date_to=d(2026, 3, 4)) == ([], 0)
    assert await _numbers(idx, date_from=d(2026, 3, 6)) == ([], 0)


async def test_pagination_newest_activity_first(harness: HubHarness) -> None:
    """Pages follow last activity, newest first; a new message moves its ticket to the top."""
    phones = [f"+62812555000{i:02d}" for i in range(5)]
    for i, phone in enumerate(phones):
        await _post(harness, f"Lembur tidak dibayar ke-{i}", phone, f"Pekerja {i}")
    idx = await _index(harness)
    nos = {t["reply_to"]: t["number"] for t in await harness.tickets()}
    newest_first = [nos[p] for p in reversed(phones)]
    assert await _numbers(idx, q="lembur", limit=2) == (newest_first[:2], 5)
    assert await _numbers(idx, q="lembur", limit=2, offset=2) == (newest_first[2:4], 5)
    assert await _numbers(idx, q="lembur", limit=2, offset=4) == (newest_first[4:], 5)
    assert await _numbers(idx, q="lembur", limit=2, offset=6) == ([], 5)
    await _post(harness, "Sudah sebulan lembur", phones[0])
    await harness.drain_inbound()
    await idx.index(await _docs(harness))
    assert (await _numbers(idx, q="lembur", limit=1))[0] == [nos[phones[0]]]
    assert (await _numbers(idx, limit=1))[0] == [nos[phones[4]]]  # no query: newest created


async def test_no_match_is_empty(harness: HubHarness) -> None:
    """Unknown words, stopword-only queries and an empty index give nothing, not everything."""
    idx = RedisSearchIndex(harness.hub.redis)
    assert await idx.search(SearchQuery(q="thr")) == ([], 0)
    assert await idx.search(SearchQuery()) == ([], 0)
    await _three_citizens(harness)
    idx = await _index(harness)
    assert await idx.search(SearchQuery(q="asuransi")) == ([], 0)
    assert await idx.search(SearchQuery(q="yang dan di")) == ([], 0)
    assert await idx.search(SearchQuery(q="thr asuransi")) == ([], 0)
    assert await idx.summaries([]) == []


async def _search_keys(h: HubHarness) -> dict[str, list[tuple[str, float]]]:
    out = {}
    async for k in h.hub.redis.scan_iter(match="hub:{search}:*"):
        out[k.decode()] = await h.hub.redis.zrange(k, 0, -1, withscores=True)
    return out


async def test_reindexing_is_idempotent(harness: HubHarness) -> None:
    """Indexing the same messages again, or an older one later, changes no key or score."""
    await _three_citizens(harness)
    idx = await _index(harness)
    before = await _search_keys(harness)
    assert before
    docs = await _docs(harness)
    await idx.index(docs)
    await idx.index(docs[::-1] + docs)
    assert await _search_keys(harness) == before
    old = [SearchDoc(d.ticket_id, d.contact_id, d.number, 1, d.text, d.display_name) for d in docs]
    await idx.index(old)
    assert await _search_keys(harness) == before
    await idx.index([])


async def test_doc_from_applied_message(harness: HubHarness) -> None:
    """SearchDoc.from_applied indexes what the dispatcher just applied, under its number."""
    now = harness.clock.now()
    msg = Message(
        id=new_id(int(now * 1000)),
        channel="whatsapp",
        account="wa1",
        provider_id="SM" + "f" * 32,
        sender="phone:" + PHONE_BUDI,
        reply_address=PHONE_BUDI,
        received_at=now,
        text="Kartu Prakerja saya diblokir",
        display_name="Budi Santoso",
    )
    [applied] = await harness.dispatcher().apply([msg])
    t = await harness.hub.store.get_ticket_fields(applied.ticket_id)
    doc = SearchDoc.from_applied(applied, msg, t["number"])
    assert (doc.ticket_id, doc.created_at_ms) == (applied.ticket_id, int(now * 1000))
    assert doc.identities == ("phone:" + PHONE_BUDI,)
    idx = RedisSearchIndex(harness.hub.redis)
    await idx.index([doc])
    assert await idx.search(SearchQuery(q="prakerja diblokir")) == ([applied.ticket_id], 1)
    assert await idx.search(SearchQuery(q="0857-1234-5678")) == ([applied.ticket_id], 1)


async def test_candidate_cap_bounds_the_driving_set(harness: HubHarness) -> None:
    """Past the cap a common word counts only its most recent tickets; a narrower filter
    drives instead and stays exact."""
    phones = [f"+62812555000{i:02d}" for i in range(5)]
    for phone in phones:
        await _post(harness, "Upah di bawah UMK", phone)
    await harness.drain_inbound()
    nos = {t["reply_to"]: t["number"] for t in await harness.tickets()}
    for p in phones[:2]:
        status, _ = await harness.api(
            "POST", f"/api/v1/tickets/{nos[p]}/status", json={"status": "resolved"}
        )
        assert status == 200
    idx = RedisSearchIndex(harness.hub.redis, candidate_cap=3)
    await idx.index(await _docs(harness))
    assert await _numbers(idx, q="umk") == ([nos[p] for p in reversed(phones[2:])], 3)
    resolved = await _numbers(idx, q="umk upah", status="resolved")
    assert sorted(resolved[0]) == sorted(nos[p] for p in phones[:2])
    assert resolved[1] == 2


# -- the endpoint ------------------------------------------------------------------------


@web.middleware
async def _test_principal(request: web.Request, handler: Any) -> web.StreamResponse:
    """Stands in for the auth middleware: X-Test-Units makes an agent of those units,
    X-Test-Anonymous nobody; otherwise a supervisor."""
    units = request.headers.get("X-Test-Units")
    if "X-Test-Anonymous" not in request.headers:
        request[PRINCIPAL] = (
            Principal("sri", "supervisor")
            if units is None
            else Principal("ani", "agent", tuple(u for u in units.split(",") if u))
        )
    response: web.StreamResponse = await handler(request)
    return response


@pytest.fixture
async def search_client(harness: HubHarness) -> AsyncIterator[TestClient[Any, Any]]:
    """The search route alone on an app around the harness's hub (the lead mounts it)."""
    app = web.Application(middlewares=[_test_principal])
    app[HUB] = harness.hub
    search_api.setup(app)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_endpoint_returns_ticket_summaries(
    harness: HubHarness, search_client: TestClient[Any, Any]
) -> None:
    """GET /api/v1/search answers items shaped like the ticket list, and the total."""
    nos = await _three_citizens(harness)
    await _index(harness)
    r = await search_client.get("/api/v1/search", params={"q": "thr", "limit": "1"})
    body = await r.json()
    assert r.status == 200, body
    assert (body["total"], body["limit"], body["offset"]) == (2, 1, 0)
    [item] = body["items"]
    listed = {t["id"]: t for t in await harness.tickets()}
    assert item == listed[item["id"]]
    assert item["number"] == nos[PHONE_BUDI]
    r = await search_client.get(
        "/api/v1/search", params={"q": "0812 3456 7890", "from": "2020-01-01", "to": "2099-12-31"}
    )
    assert [t["number"] for t in (await r.json())["items"]] == [nos[PHONE_SITI]]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"from": "2026-13-01"}, "from must be a date"),
        ({"to": "20260301"}, "to must be a date"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "from must not be after to"),
        ({"limit": "0"}, "limit must be an integer"),
        ({"limit": "101"}, "limit must be an integer"),
        ({"offset": "-1"}, "offset must be an integer"),
        ({"status": "lost"}, "status must be one of"),
        ({"q": "x" * 201}, "q must be at most"),
    ],
)
async def test_endpoint_rejects_bad_parameters(
    harness: HubHarness,
    search_client: TestClient[Any, Any],
    params: dict[str, str],
    reason: str,
) -> None:
    """Bad dates, limits, offsets or statuses get 400 invalid_parameter with the reason."""
    harness.hub.search = RedisSearchIndex(harness.hub.redis)
    r = await search_client.get("/api/v1/search", params=params)
    body = await r.json()
    assert (r.status, body["error"]) == (400, "invalid_parameter")
    assert reason in body["message"]


async def test_agents_find_only_their_units_tickets(
    harness_factory: Callable[..., Awaitable[HubHarness]],
) -> None:
    """An agent's search covers their units only; another unit is 403, no principal 401."""
    h = await harness_factory(channels__whatsapp__accounts__wa2__unit="hi_upah")
    await _post(h, "THR belum dibayar", PHONE_SITI)
    await _post(h, "THR belum dibayar juga", PHONE_BUDI, "Budi", account="wa2")
    idx = await _index(h)
    nos = {t["reply_to"]: t["number"] for t in await h.tickets()}
    assert (await _numbers(idx, q="thr", units=("hi_upah", "general")))[1] == 2
    assert await _numbers(idx, q="thr", units=()) == ([], 0)
    app = web.Application(middlewares=[_test_principal])
    app[HUB] = h.hub
    search_api.setup(app)
    async with TestClient(TestServer(app)) as client:

        async def get(headers: dict[str, str], **params: str) -> tuple[int, Any]:
            r = await client.get("/api/v1/search", params=params, headers=headers)
            return r.status, await r.json()

        agent = {"X-Test-Units": "hi_upah"}
        status, body = await get(agent, q="thr")
        assert (status, [t["number"] for t in body["items"]]) == (200, [nos[PHONE_BUDI]])
        status, body = await get(agent, q="081234567890")
        assert (status, body["total"]) == (200, 0)
        status, body = await get(agent, q="thr", unit="general")
        assert (status, body["error"]) == (403, "forbidden")
        status, body = await get({"X-Test-Units": ""}, q="thr")
        assert (status, body["total"]) == (200, 0)
        status, body = await get({}, q="thr", unit="general")
        assert (status, [t["number"] for t in body["items"]]) == (200, [nos[PHONE_SITI]])
        status, body = await get({"X-Test-Anonymous": "1"}, q="thr")
        assert (status, body["error"]) == (401, "unauthorized")


def test_openapi_paths_describe_the_route() -> None:
    """OPENAPI_PATHS names exactly the route setup() mounts, with every query parameter."""
    app = web.Application()
    search_api.setup(app)
    served = {
        (r.resource.canonical, r.method.lower())
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {(p, m) for p, ops in search_api.OPENAPI_PATHS.items() for m in ops}
    assert served == documented
    names = {p["name"] for p in search_api.OPENAPI_PATHS["/api/v1/search"]["get"]["parameters"]}
    assert names == {"q", "status", "unit", "channel", "assignee", "from", "to", "limit", "offset"}


# -- Redis Cluster: the {search} and {tickets} tags are never mixed in one command -----------


async def test_search_on_redis_cluster(cluster_url: str) -> None:
    """Index and every kind of query run on a 3-master cluster without CROSSSLOT errors."""
    from adapters.redis_store import RedisStore

    rc = RedisCluster.from_url(cluster_url)
    try:
        store = RedisStore(rc)
        idx = RedisSearchIndex(rc)
        # Tickets written the way the store does it, then indexed.
        docs = []
        for i, (phone, text) in enumerate(
            [(PHONE_SITI, "THR belum dibayar"), (PHONE_BUDI, "Pesangon PHK belum dibayar")]
        ):
            tid = f"{new_id()}.1"
            cid = tid.split(".")[0]
            number = f"KMN-2026-00000{i + 1}"
            at = int(datetime(2026, 3, 1 + i, 12, tzinfo=JAKARTA).timestamp() * 1000)
            await rc.set(keys.identity("phone:" + phone), cid)
            await rc.zadd(keys.contact_tickets(cid), {"1": at})
            await rc.hset(
                keys.ticket(cid, 1),
                mapping={
                    "status": "open",
                    "created_at": at,
                    "updated_at": at,
                    "channel": "whatsapp",
                    "unit": "general",
                    "number": number,
                },
            )
            await rc.hset(keys.ticket_numbers(), number, tid)
            await store.reindex([tid])
            docs.append(SearchDoc(tid, cid, number, at, text, "Warga", ("phone:" + phone,)))
        await idx.index(docs)
        by_no = {d.number: d.ticket_id for d in docs}
        siti, budi = by_no["KMN-2026-000001"], by_no["KMN-2026-000002"]
        assert await idx.search(SearchQuery(q="belum dibayar")) == ([budi, siti], 2)
        assert await idx.search(SearchQuery(q="phk", status="open", unit="general")) == (
            [budi],
            1,
        )
        assert await idx.search(SearchQuery(q="0812-3456-7890")) == ([siti], 1)
        assert await idx.search(SearchQuery(q="kmn-2026-000002")) == ([budi], 1)
        assert await idx.search(SearchQuery(date_from=date(2026, 3, 2))) == ([budi], 1)
        assert await idx.search(SearchQuery(q="warga", limit=1, offset=1)) == ([siti], 2)
        assert [t["number"] for t in await idx.summaries([siti, budi])] == list(by_no)
    finally:
        await rc.aclose()


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
def test_ascii_text_normalizes_as_the_general_way_does(text: str) -> None:
    """The ASCII shortcut of ``normalize_text`` gives what the general walk (NFKD, combining
    marks dropped, casefold, ``isalnum``) gives: ASCII text is searched as before."""
    s = unicodedata.normalize("NFKD", text)
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).casefold()
    s = re.sub(r"(?<=\d)[.,](?=\d{3}(?!\d))", "", s)
    s = "".join(ch if ch.isalnum() else " " for ch in s)
    s = re.sub(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])", " ", s)
    assert normalize_text(text) == " ".join(s.split())
