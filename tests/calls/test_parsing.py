"""Call-log parsing on recorded fixtures: Master.csv variants, queue_log, JSON lines; the
Indonesian summaries and the identities ``to_message`` gives (0812… → +62812…, withheld never
merged)."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.calls.cdr_csv import BASE_COLUMNS, NEW_COLUMNS, CdrFormat, CdrParser, parse_clid
from channels.calls.jsonl import JsonlParser, to_jsonl
from channels.calls.queue_log import QueueLogParser
from channels.calls.records import CallRecord, RecordError, duration_text, summary, to_message

FIX = Path(__file__).parent.parent / "fixtures" / "calls"
T0 = 1772417700.0  # 2026-03-02 09:15:00 WIB


def lines(name: str) -> list[str]:
    return (FIX / name).read_text(encoding="utf-8").splitlines()


def queue_records(parser: QueueLogParser | None = None) -> list[CallRecord]:
    p = parser or QueueLogParser()
    out = []
    offset = 0
    for line in lines("queue_log"):
        rec = p.feed(line, offset)
        offset += len(line.encode()) + 1
        if rec is not None:
            out.append(rec)
    return out


def test_cdr_base_columns_answered() -> None:
    """A 16-column Master.csv line: Jakarta local times, clid name, queue, agent, durations."""
    rec = CdrParser().parse_line(lines("Master_base.csv")[0])
    assert rec.direction == "in"
    assert (rec.caller, rec.callee, rec.caller_name) == ("081234567890", "1500630", "Budi Santoso")
    assert rec.offered_at == T0
    assert rec.answered_at == T0 + 35
    assert rec.ended_at == T0 + 287
    assert (rec.wait_s, rec.talk_s, rec.disposition) == (35, 252, "ANSWERED")
    assert (rec.queue, rec.agent) == ("layanan", "SIP/agent101")
    assert rec.synthetic_id
    assert rec.call_id.startswith("cdr-")
    assert rec.provider_id == f"{rec.call_id}:cdr"


def test_cdr_base_unanswered_and_outbound() -> None:
    """Empty answer time gives no answered_at; an extension dialling out is outbound BUSY."""
    p = CdrParser(CdrFormat(outbound_contexts=frozenset({"from-internal"})))
    withheld, out = (p.parse_line(x) for x in lines("Master_base.csv")[1:])
    assert withheld.answered_at is None
    assert (withheld.disposition, withheld.wait_s, withheld.agent) == ("NO ANSWER", 20, "")
    assert (out.direction, out.caller, out.callee, out.disposition) == (
        "out", "101", "081298765432", "BUSY",
    )  # fmt: skip


def test_cdr_synthetic_id_is_stable() -> None:
    """A line without uniqueid gets the same digest id each time it is read."""
    line = lines("Master_base.csv")[0]
    assert CdrParser().parse_line(line).call_id == CdrParser().parse_line(line).call_id


def test_cdr_uniqueid_userfield_columns() -> None:
    """18 columns: uniqueid is the call id; quotes and commas inside clid survive."""
    a, b = (CdrParser().parse_line(x) for x in lines("Master_uniqueid.csv"))
    assert (a.call_id, a.synthetic_id) == ("1772417700.101", False)
    assert a.caller_name == 'Budi, "Pak" Santoso'
    assert a.extra["userfield"] == "wrapup=INFO"
    assert (b.disposition, b.caller) == ("CONGESTION", "0215551234")


def test_cdr_newcdrcolumns_sequence_in_dedupe_key() -> None:
    """21 columns: linkedid and sequence; two CDRs of one uniqueid get distinct provider ids."""
    a, b = (CdrParser().parse_line(x) for x in lines("Master_newcdr.csv"))
    assert a.call_id == b.call_id == "1772417700.101"
    assert a.linkedid == "1772417700.100"
    assert (a.provider_id, b.provider_id) == ("1772417700.101:cdr:7", "1772417700.101:cdr:8")


def test_cdr_configured_columns_and_gmtime() -> None:
    """Configured columns (base + newcdrcolumns, 19) and usegmtime read times as UTC."""
    base = lines("Master_base.csv")[0]
    line = base + ',"","1772417700.100","3"'
    p = CdrParser(CdrFormat(columns=BASE_COLUMNS + NEW_COLUMNS, usegmtime=True))
    rec = p.parse_line(line)
    assert rec.offered_at == T0 + 7 * 3600
    assert (rec.linkedid, rec.sequence) == ("1772417700.100", "3")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('"","1","2"', "3 fields"),
        (lines("Master_base.csv")[0].replace("ANSWERED", "MAYBE"), "unknown disposition"),
        (lines("Master_base.csv")[0].replace("2026-03-02 09:15:00", "kemarin"), "bad start"),
        (lines("Master_base.csv")[0].replace(",287,", ",x,"), "bad duration"),
        (lines("Master_base.csv")[0] + ',"x"', "17 fields"),
    ],
)
def test_cdr_malformed_lines_raise_with_reason(line: str, reason: str) -> None:
    """Malformed lines raise RecordError naming the problem."""
    with pytest.raises(RecordError, match=reason):
        CdrParser().parse_line(line)


def test_parse_clid_forms() -> None:
    """clid as "Name" <number>, bare number, bare name."""
    assert parse_clid('"Budi" <0812>') == ("Budi", "0812")
    assert parse_clid("081234") == ("", "081234")
    assert parse_clid("Budi") == ("Budi", "")


def test_queue_log_folds_calls() -> None:
    """Answered, abandoned, transferred and timed-out calls each become one record."""
    parser = QueueLogParser()
    recs = {r.call_id: r for r in queue_records(parser)}
    assert parser.open_calls == 0
    assert list(recs) == ["1772417710.102", "1772417800.103", "1772417700.101", "1772417900.104"]
    ans = recs["1772417700.101"]
    assert (ans.caller, ans.callee, ans.queue, ans.agent) == (
        "081234567890", "1500630", "layanan", "SIP/agent101",
    )  # fmt: skip
    assert (ans.offered_at, ans.answered_at, ans.ended_at) == (T0, T0 + 35, T0 + 287)
    assert (ans.wait_s, ans.talk_s, ans.disposition) == (35, 252, "ANSWERED")
    assert ans.extra["ring_no_answer"] == "1"
    assert ans.extra["hangup_by"] == "caller"
    assert ans.provider_id == "1772417700.101:queue"
    ab = recs["1772417710.102"]
    assert (ab.disposition, ab.wait_s, ab.caller) == ("ABANDONED", 120, "085611112222")
    assert ab.agent == ""
    tr = recs["1772417800.103"]
    assert (tr.disposition, tr.agent, tr.wait_s, tr.talk_s) == ("ANSWERED", "Agent/2001", 12, 88)
    assert tr.transferred_to == "300@pengawasan"
    to = recs["1772417900.104"]
    assert (to.disposition, to.caller, to.wait_s) == ("ABANDONED", "anonymous", 100)
    assert to.extra["exit_reason"] == "timeout"
    assert to.extra["agents_tried"] == "SIP/agent101,SIP/agent102"


def test_queue_log_hold_from_is_oldest_open_call() -> None:
    """While calls are open, hold_from names the first line of the oldest; rebase clears it."""
    p = QueueLogParser()
    src = lines("queue_log")
    offsets = []
    off = 0
    for line in src:
        offsets.append(off)
        off += len(line.encode()) + 1
    for i in range(4):  # QUEUESTART, DID+ENTERQUEUE of .101, ENTERQUEUE of .102
        p.feed(src[i], offsets[i])
    assert p.hold_from() == offsets[1]  # the DID line of .101
    p.rebase()
    assert p.hold_from() is None
    assert p.open_calls == 2


def test_queue_log_bounded() -> None:
    """Past max_calls the oldest open call is dropped (counted), never growing unbounded."""
    p = QueueLogParser(max_calls=2)
    for i in range(5):
        p.feed(f"{1772417700 + i}|u{i}|q|NONE|ENTERQUEUE||0812345678{i}|1", i)
    assert p.open_calls == 2
    assert p.evicted == 3


def test_queue_log_malformed() -> None:
    """Too few fields, a bad epoch and a bad number raise RecordError."""
    p = QueueLogParser()
    for bad, reason in [
        ("1|2|3", "fields"),
        ("x|u|q|a|ENTERQUEUE|", "epoch"),
        ("1|u|q|a|CONNECT|abc|x|1", "holdtime"),
    ]:
        with pytest.raises(RecordError, match=reason):
            p.feed(bad, 0)


def test_jsonl_export() -> None:
    """JSON lines: ISO and epoch times, wrap-up, notes, recording, extra keys kept as meta."""
    a, b, c = (JsonlParser().parse_line(x) for x in lines("calls.jsonl"))
    assert a.offered_at == 1772418100.0
    assert (a.wrapup_s, a.wrapup_code, a.recording) == (
        45, "INFO-PHK", "rec/2026/03/02/1772418100.120.wav",
    )  # fmt: skip
    assert a.extra == {"crm_ref": "X1"}
    assert a.provider_id == "1772418100.120:export"
    assert (b.disposition, b.caller, b.answered_at) == ("ABANDONED", "", None)
    assert (c.direction, c.provider_id) == ("out", "1772418300.122:callback")
    assert JsonlParser().parse_line(to_jsonl(a)) == a


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "not json"),
        ("[1]", "not a json object"),
        ('{"direction":"in","disposition":"ANSWERED"}', "missing call_id"),
        ('{"call_id":"1","direction":"sideways","disposition":"ANSWERED"}', "direction"),
        ('{"call_id":"1","direction":"in","disposition":"LOST"}', "disposition"),
        ('{"call_id":"1","direction":"in","disposition":"BUSY","ended_at":"2026-03-02"}', "offset"),
        ('{"call_id":"1","direction":"in","disposition":"BUSY","wait_s":-3}', "negative"),
    ],
)
def test_jsonl_malformed(line: str, reason: str) -> None:
    """Malformed export lines raise RecordError with the reason."""
    with pytest.raises(RecordError, match=reason):
        JsonlParser().parse_line(line)


def test_duration_text() -> None:
    """Durations read as dtk / mnt / jam."""
    assert duration_text(35) == "35 dtk"
    assert duration_text(252) == "4 mnt 12 dtk"
    assert duration_text(120) == "2 mnt"
    assert duration_text(3720) == "1 jam 2 mnt"


def test_summaries_in_bahasa_indonesia() -> None:
    """Answered, abandoned, transferred, unanswered and outbound calls read naturally."""
    recs = {r.call_id: r for r in queue_records()}
    assert summary(recs["1772417700.101"]) == (
        "Panggilan masuk dijawab oleh agen SIP/agent101, antre 35 dtk, bicara 4 mnt 12 dtk"
    )
    assert summary(recs["1772417710.102"]) == (
        "Panggilan tidak terjawab (ditinggalkan setelah 2 mnt)"
    )
    assert summary(recs["1772417800.103"]).endswith("dialihkan ke 300@pengawasan")
    a, _, c = (JsonlParser().parse_line(x) for x in lines("calls.jsonl"))
    assert summary(a) == (
        "Panggilan masuk dijawab oleh agen Siti, antre 30 dtk, bicara 5 mnt. Kode penyelesaian: "
        "INFO-PHK. Catatan agen: Menanyakan pesangon PHK, dirujuk ke disnaker"
    )
    assert summary(c) == "Panggilan keluar tidak dijawab"


def test_outside_words_in_the_summary_are_isolated() -> None:
    """A right-to-left override in the log's words (agent, transfer target, wrap-up code,
    notes) comes back wrapped in FSI … PDI: the hub's words after it stay outside the isolate
    and in order. Words without direction controls are inserted as they are."""
    rlo, fsi, pdi = "\u202e", "\u2068", "\u2069"
    rec = CallRecord(
        call_id="1772417900.201", direction="in", caller="081234567890", callee="1500630",
        disposition="ANSWERED", agent=f"Siti{rlo}fdp.exe", wait_s=30, talk_s=300,
        wrapup_code=f"INFO{rlo}-PHK", notes=f"{rlo}catatan",
        extra={"transferred_to": f"300{rlo}@x"},
    )  # fmt: skip
    text = summary(rec)
    assert text == (
        f"Panggilan masuk dijawab oleh agen {fsi}Siti{rlo}fdp.exe{pdi}, antre 30 dtk, bicara "
        f"5 mnt, dialihkan ke {fsi}300{rlo}@x{pdi}. Kode penyelesaian: {fsi}INFO{rlo}-PHK{pdi}"
        f". Catatan agen: {fsi}{rlo}catatan{pdi}"
    )
    # Every override sits inside an isolate that closes before the hub's next words.
    depth = 0
    for ch in text:
        depth += {fsi: 1, pdi: -1}.get(ch, 0)
        assert ch != rlo or depth == 1
    assert depth == 0
    assert to_message(rec, "hotline", received_at=T0).text == text
    plain = CallRecord(
        call_id="1772417900.202", direction="in", caller="081234567890", callee="1500630",
        disposition="ANSWERED", agent="Siti", talk_s=60, wrapup_code="INFO-PHK",
    )  # fmt: skip
    assert fsi not in summary(plain)


def test_to_message_inbound_identity_and_meta() -> None:
    """0812… becomes phone:+62812…; meta carries every field; thread hints name the call."""
    rec = CdrParser().parse_line(lines("Master_newcdr.csv")[0])
    msg = to_message(rec, "hotline", received_at=T0 + 300)
    assert (msg.kind, msg.channel, msg.account) == ("call", "call", "hotline")
    assert msg.sender == "phone:+6281234567890"
    assert msg.reply_address == "+6281234567890"
    assert msg.provider_id == "1772417700.101:cdr:7"
    assert msg.display_name == "Budi Santoso"
    assert msg.thread_hints == ("call-id:1772417700.101", "call-linkedid:1772417700.100")
    assert msg.provider_ts == T0
    assert msg.meta["talk_s"] == "252"
    assert msg.meta["answered_at"] == str(int(T0 + 35))
    assert msg.meta["abandoned"] == "0"
    assert "callback" not in msg.meta
    assert msg.text.startswith("Panggilan masuk dijawab")


def test_to_message_outbound_uses_callee() -> None:
    """An outbound call belongs to the number called."""
    c = JsonlParser().parse_line(lines("calls.jsonl")[2])
    assert to_message(c, "hotline", T0).sender == "phone:+6281234567890"


def test_to_message_withheld_never_merges() -> None:
    """Withheld, anonymous, empty and invalid numbers get a per-call sender, no reply address."""
    recs = {r.call_id: r for r in queue_records()}
    timed_out = to_message(recs["1772417900.104"], "hotline", T0)
    assert timed_out.sender == "call:withheld:1772417900.104"
    assert timed_out.reply_address == ""
    assert timed_out.meta["abandoned"] == "1"
    assert timed_out.meta["callback"] == "1"
    b = JsonlParser().parse_line(lines("calls.jsonl")[1])
    assert to_message(b, "hotline", T0).sender == "call:withheld:1772418200.121"
    cdr = CdrParser().parse_line(lines("Master_base.csv")[1])
    withheld = to_message(cdr, "hotline", T0)
    assert withheld.sender == f"call:withheld:{cdr.call_id}"
    assert withheld.thread_hints == ()  # a digest id is no thread
    invalid = CallRecord("x1", "in", "081234", "1500630", "NO ANSWER")
    assert to_message(invalid, "hotline", T0).sender == "call:withheld:x1"
    assert timed_out.sender != to_message(b, "hotline", T0).sender


def test_to_message_landline_and_plus_forms() -> None:
    """(021) landlines and +62 forms normalize like WhatsApp numbers."""
    b = CdrParser().parse_line(lines("Master_uniqueid.csv")[1])
    assert to_message(b, "hotline", T0).sender == "phone:+62215551234"
    tr = {r.call_id: r for r in queue_records()}["1772417800.103"]
    assert to_message(tr, "hotline", T0).sender == "phone:+6281377778888"
