"""Properties of the call center's parsers: Master.csv lines, queue_log streams, JSON-lines
exports, and the live call events webhook.

A call log line the parser cannot read must be refused with a ``RecordError`` (the tailer
counts it and moves on); any other exception would stop the tailer on that line for good.
A record it does read must become a message the hub can publish: ``to_message`` runs in the
tailer's delivery callback, where a failure is retried forever on the same records. So for
each generated line: a RecordError whose reason shows no phone number from the line, or a
record whose message keeps every invariant.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.base import SignatureError
from channels.calls import events as call_events
from channels.calls.callbacks import callback_status
from channels.calls.cdr_csv import BASE_COLUMNS, BY_COUNT, CdrFormat, CdrParser
from channels.calls.jsonl import JsonlParser
from channels.calls.queue_log import QueueLogParser
from channels.calls.records import CallRecord, RecordError, to_message
from hub.model import StatusUpdate
from tests.properties.strategies import (
    ANY_TEXT,
    HEADER_TEXT,
    NUMBERISH,
    PHONES,
    SAFE_TEXT,
    TIMEOUT_S,
    check_message,
    check_reason,
    check_refusal,
    dump,
    flip_byte,
    fuzz,
    outcome,
    variants,
    vocabulary,
)

pytestmark = pytest.mark.timeout(TIMEOUT_S)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "calls"
NOW = 1_772_420_000.125
ACCOUNT = "hotline"
EVENTS_SECRET = "call-events-secret-0123456789"

# -- the record → message step every parser's output takes ---------------------------------


def check_record(record: CallRecord) -> None:
    assert isinstance(record, CallRecord)
    for name in ("offered_at", "answered_at", "ended_at"):
        value = getattr(record, name)
        assert value is None or math.isfinite(value), (name, value)
    message = to_message(record, ACCOUNT, NOW)
    check_message(message, channel="call", account=ACCOUNT, received_at=NOW, phone_reply=True)
    assert message.kind == "call"
    assert message.text.strip()
    if not message.sender.startswith("phone:"):
        assert message.reply_address == ""  # withheld: nobody to call back
    update = callback_status(record, ACCOUNT)
    assert update is None or isinstance(update, StatusUpdate)


def check_record_error(
    exc: BaseException | None, phones: list[str], others: list[str] | None = None
) -> None:
    """The tailer's refusal: a short reason, never the line's phone numbers (a reason may
    quote a short piece of another field, the disposition say, so a phone that is also in
    one of ``others`` proves nothing)."""
    assert isinstance(exc, RecordError), exc
    check_reason(str(exc))
    for phone in phones:
        digits = "".join(ch for ch in phone if ch.isdigit())
        if len(digits) >= 8 and not any(digits in o for o in others or ()):
            assert digits not in str(exc), phone


# -- Master.csv ---------------------------------------------------------------------------

DATES = st.one_of(
    st.sampled_from(
        [
            "2026-03-02 09:15:00",
            "2026-03-02 09:15:35",
            "2026-03-02 09:19:47",
            "",
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:59",
            "2026-02-30 10:00:00",
            "2026-03-02T09:15:00",
            "1772417700",
            "２０２６-０３-０２ ０９:１５:００",
            " 2026-03-02 09:15:00 ",
            "2026-3-2 9:15:0",
            "1970-01-01 00:00:00",
        ]
    ),
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
    ANY_TEXT,
)
SECONDS = st.one_of(
    st.integers(-5, 10**6).map(str),
    NUMBERISH,
    st.sampled_from(["9" * 4300, "9" * 5000, "1e3", "3.5", "٣٥", ""]),
)
CLIDS = st.one_of(
    st.sampled_from(
        [
            '"Budi Santoso" <081234567890>',
            '"Anonymous" <anonymous>',
            "<>",
            '"" <>',
            '"Agen 101" <101>',
            "Budi <0812",
            '"unterminated <0812>',
            "081234567890",
        ]
    ),
    st.builds(lambda n, p: f'"{n}" <{p}>', SAFE_TEXT, PHONES),
    SAFE_TEXT,
)
CHANNELS = st.one_of(
    st.sampled_from(
        [
            "SIP/trunk-00000001",
            "SIP/agent101-0000002a",
            "PJSIP/ani-0000a1b2;2",
            "Local/101@from-queue-0000abcd;1",
            "",
        ]
    ),
    SAFE_TEXT,
)
FIELD = {
    "accountcode": st.one_of(st.just(""), SAFE_TEXT),
    "src": st.one_of(PHONES, st.sampled_from(["101", "anonymous", "", "s", " "])),
    "dst": st.one_of(PHONES, st.sampled_from(["1500630", "s", ""])),
    "dcontext": st.sampled_from(["from-pstn", "from-internal", "pengawasan", "", "callback"]),
    "clid": CLIDS,
    "channel": CHANNELS,
    "dstchannel": CHANNELS,
    "lastapp": st.sampled_from(["Queue", "queue", "Dial", "Hangup", ""]),
    "lastdata": st.one_of(st.sampled_from(["layanan,t", ",", "", "SIP/trunk/0812,30"]), SAFE_TEXT),
    "start": DATES,
    "answer": DATES,
    "end": DATES,
    "duration": SECONDS,
    "billsec": SECONDS,
    "disposition": st.one_of(
        st.sampled_from(
            [
                "ANSWERED",
                "NO ANSWER",
                "BUSY",
                "FAILED",
                "CONGESTION",
                "answered",
                " BUSY ",
                "ABANDONED",
                "UNKNOWN",
                "",
            ]
        ),
        SAFE_TEXT,
    ),
    "amaflags": st.sampled_from(["DOCUMENTATION", "BILLING", "", "3"]),
    "uniqueid": st.one_of(
        st.sampled_from(["1772417700.101", "", " ", "17724 17700", "id\twith\ttabs"]), SAFE_TEXT
    ),
    "userfield": st.one_of(st.sampled_from(["", "cb-r1", "cb-", "wrapup=INFO"]), SAFE_TEXT),
    "peeraccount": st.just(""),
    "linkedid": st.one_of(st.sampled_from(["1772417700.100", "", "a b"]), SAFE_TEXT),
    "sequence": st.one_of(st.sampled_from(["7", "", "-1"]), SAFE_TEXT),
}
ALL_COLUMNS = BY_COUNT[21]


@st.composite
def cdr_lines(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    """A Master.csv line (and the phones in it): 16 to 21 fields (or a few more or less),
    written by the csv module with one quoting or another, or joined raw."""
    count = draw(st.sampled_from([16, 18, 19, 21, 16, 21, 15, 17, 20, 22, 0, 1]))
    names = list(BY_COUNT.get(count, ALL_COLUMNS[:count] or ("src",)))
    values = [draw(FIELD.get(n, SAFE_TEXT), label=n) for n in names][:count]
    how = draw(st.sampled_from(["all", "minimal", "nonnumeric", "raw", "raw-semicolon"]))
    if how.startswith("raw"):
        line = (";" if how == "raw-semicolon" else ",").join(values)
    else:
        out = io.StringIO()
        quoting = {
            "all": csv.QUOTE_ALL,
            "minimal": csv.QUOTE_MINIMAL,
            "nonnumeric": csv.QUOTE_NONNUMERIC,
        }[how]
        csv.writer(out, quoting=quoting, lineterminator="").writerow(values)
        line = out.getvalue()
    if draw(st.integers(0, 9)) == 0:
        line = line + "\r"
    phones = [v for n, v in zip(names, values, strict=False) if n in ("src", "dst", "clid")]
    others = [v for n, v in zip(names, values, strict=False) if n not in ("src", "dst", "clid")]
    return line, phones, others


CDR_FORMATS = [
    CdrFormat(),
    CdrFormat(usegmtime=True, outbound_contexts=frozenset({"callback"})),
    CdrFormat(columns=(*BASE_COLUMNS, "uniqueid")),
]


@fuzz(300)
@given(line=cdr_lines(), fmt=st.sampled_from(CDR_FORMATS))
def test_cdr_line_is_a_record_or_a_record_error(
    line: tuple[str, list[str], list[str]], fmt: CdrFormat
) -> None:
    text, phones, others = line
    record, refusal = outcome(lambda: CdrParser(fmt).parse_line(text), (RecordError,))
    if refusal is not None:
        check_record_error(refusal, phones, others)
    else:
        check_record(record)


# -- queue_log ------------------------------------------------------------------------------

QUEUE_EVENTS = [
    "DID",
    "ENTERQUEUE",
    "RINGNOANSWER",
    "CONNECT",
    "COMPLETEAGENT",
    "COMPLETECALLER",
    "TRANSFER",
    "ABANDON",
    "EXITWITHTIMEOUT",
    "EXITEMPTY",
    "EXITWITHKEY",
    "PAUSE",
    "QUEUESTART",
    "AGENTLOGIN",
    "connect",
    "",
]
EPOCHS = st.one_of(
    st.integers(1772417700, 1772427700).map(str),
    st.sampled_from(
        [
            "nan",
            "NaN",
            "inf",
            "-inf",
            "1e400",
            "-1",
            "0",
            "1772417700.5",
            "",
            " 1772417700 ",
            "1_772_417_700",
            "１７７２４１７７００",
            "1e18",
        ]
    ),
)
QUEUE_DATA = st.one_of(
    st.integers(-3, 400).map(str),
    PHONES,
    NUMBERISH,
    st.sampled_from(["", "1772417735.105", "pengawasan", "300", "9" * 4300, "99999999999"]),
)
QUEUE_LINES = st.builds(
    lambda epoch, uid, queue, agent, event, data, sep: sep.join(
        [epoch, uid, queue, agent, event, *data]
    ),
    EPOCHS,
    st.sampled_from(["1772417700.101", "1772417710.102", "1772417800.103", "NONE", "", "x y"]),
    st.sampled_from(["layanan", "pengaduan", "NONE", ""]),
    st.sampled_from(["SIP/agent101", "Agent/2001", "NONE", ""]),
    st.sampled_from(QUEUE_EVENTS),
    st.lists(QUEUE_DATA, max_size=5),
    st.sampled_from(["|", "|", "|", "|", ",", " | "]),
)
FIXTURE_QUEUE = (FIXTURES / "queue_log").read_text("utf-8").splitlines()


@fuzz(200)
@given(
    lines=st.lists(st.one_of(QUEUE_LINES, st.sampled_from(FIXTURE_QUEUE)), max_size=30),
    max_calls=st.sampled_from([3, 10_000]),
)
def test_queue_log_stream_gives_records_or_record_errors(lines: list[str], max_calls: int) -> None:
    parser = QueueLogParser(max_calls=max_calls)
    offset = 0
    for line in lines:
        record, refusal = outcome(
            lambda line=line, at=offset: parser.feed(line, at), (RecordError,)
        )
        if refusal is not None:
            check_record_error(refusal, [])
        elif record is not None:
            check_record(record)
        offset += len(line.encode()) + 1
        assert parser.open_calls <= max_calls
        hold = parser.hold_from()
        assert hold is None or 0 <= hold < offset


# -- JSON-lines export ------------------------------------------------------------------------

JSONL_TEMPLATES = [json.loads(line) for line in (FIXTURES / "calls.jsonl").read_text().splitlines()]
JSONL_LINES = variants(JSONL_TEMPLATES, vocabulary(JSONL_TEMPLATES)).map(dump)


@fuzz(300)
@given(body=JSONL_LINES)
def test_jsonl_line_is_a_record_or_a_record_error(body: bytes) -> None:
    text = body.decode("utf-8")  # the tailer decodes each line as UTF-8 (strict)
    assert "\n" not in text
    record, refusal = outcome(lambda: JsonlParser().parse_line(text), (RecordError,))
    if refusal is not None:
        check_record_error(refusal, [])
    else:
        check_record(record)


# -- live call events (webhook) ------------------------------------------------------------

EVENT_TEMPLATES = [
    {
        "event": "ringing",
        "call_id": "1732260000.42",
        "caller": "081234567890",
        "queue": "pengaduan",
        "agent": "",
        "at": 1732260000,
    },
    {
        "event": "answered",
        "call_id": "1732260000.42",
        "caller": "+6281234567890",
        "queue": "pengaduan",
        "agent": "SIP/ani-0000002a",
        "at": 1732260012.5,
    },
    {"event": "hangup", "call_id": "c-1@pbx", "caller": "", "agent": "PJSIP/agent101"},
]
EVENT_BODIES = variants(EVENT_TEMPLATES, vocabulary(EVENT_TEMPLATES)).map(dump)


@fuzz(200)
@given(body=EVENT_BODIES)
def test_call_event_is_parsed_or_refused(body: bytes) -> None:
    event, refusal = outcome(lambda: call_events.parse_event(body))
    if refusal is not None:
        check_refusal(refusal, [EVENTS_SECRET])
        return
    assert event.event in call_events.EVENTS
    assert call_events.CALL_ID.match(event.call_id)
    for text in (event.event, event.call_id, event.caller, event.queue, event.agent):
        assert isinstance(text, str)
        text.encode("utf-8")  # published on the live feed through Redis
    assert len(event.agent) <= 64
    assert len(event.caller) <= 64
    assert event.at is None or (math.isfinite(event.at) and event.at >= 0), event.at


@fuzz(100)
@given(body=EVENT_BODIES, index=st.integers(0, 10**6), xor=st.integers(1, 255))
def test_a_changed_byte_in_a_call_event_is_a_signature_error(
    body: bytes, index: int, xor: int
) -> None:
    ts = str(int(NOW))
    signature = call_events.sign(EVENTS_SECRET, ts, body)
    call_events.check_signature(EVENTS_SECRET, ts, signature, body, NOW, 300)
    with pytest.raises(SignatureError) as info:
        call_events.check_signature(
            EVENTS_SECRET, ts, signature, flip_byte(body, index, xor), NOW, 300
        )
    check_reason(str(info.value), [EVENTS_SECRET])


@fuzz(100)
@given(timestamp=HEADER_TEXT, signature=HEADER_TEXT, body=st.binary(max_size=100))
def test_any_call_event_signature_headers_are_checked_not_crashed_on(
    timestamp: str, signature: str, body: bytes
) -> None:
    with pytest.raises(SignatureError) as info:
        call_events.check_signature(EVENTS_SECRET, timestamp, signature, body, NOW, 300)
    check_reason(str(info.value), [EVENTS_SECRET])
