"""Strategies for near-valid provider payloads, and the invariants every parser outcome keeps.

The contract's fuzzers (``tests.channel_contract``) throw fixed garbage and single absurd
values at each parser. These strategies go further: they take the real payload shapes
(recorded fixtures, the demo fakes' payloads) as templates and make a few structural edits
at random places of each, so that most examples get deep into the parser before something
is off: any field missing, of the wrong JSON type, empty, huge (bounded), unicode (lone
surrogates too: JSON carries them as ``\\ud800`` escapes), numbers such as 1e308, 1e999, -0,
NaN and 5000-digit integers written as JSON tokens or as strings, objects nested where
strings belong and the other way round, lists emptied or repeated.

``check_message`` and ``check_refusal`` are the two outcomes a parser may have.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from adapters.redis_bus import shard_of
from channels.base import PayloadError
from hub.model import Attachment, DeliveryState, Location, Message, StatusUpdate

PROFILE = os.environ.get("HUB_FUZZ_PROFILE", "hub-ci")
_ENV_EXAMPLES = os.environ.get("HUB_FUZZ_EXAMPLES", "")

SENDER = re.compile(r"[a-z][a-z0-9_]*:\S+")  # the contract's identity key: "<kind>:<value>"
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
MAX_REASON = 1000  # a refusal's reason is a sentence, never an echo of the payload


# -- settings ------------------------------------------------------------------------------


def register_profiles() -> None:
    common: dict[str, Any] = {
        "database": None,
        "print_blob": True,
        "deadline": None,
        "suppress_health_check": [
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    }
    settings.register_profile("hub-ci", derandomize=True, **common)
    settings.register_profile("hub-chaos", derandomize=False, **common)


register_profiles()


def examples(default: int, *, http: bool = False) -> int:
    """The examples for one property: ``default``, or ``HUB_FUZZ_EXAMPLES`` (a tenth for
    HTTP properties, which cost a request each)."""
    if not _ENV_EXAMPLES:
        return default
    n = int(_ENV_EXAMPLES)
    return max(default, n // 10) if http else n


# pytest-timeout's 60 s per test holds for the default counts; a long run gets more.
TIMEOUT_S = 60 if not _ENV_EXAMPLES else 60 + int(_ENV_EXAMPLES) // 5


def fuzz(default: int, *, http: bool = False) -> settings:
    """``@fuzz(300)``: the profile's settings with this property's example count."""
    return settings(settings.get_profile(PROFILE), max_examples=examples(default, http=http))


# -- JSON with tokens json.dumps cannot write ------------------------------------------------


class Raw:
    """A JSON token written as is: ``1e999``, ``-0``, ``NaN``, a 5000-digit integer."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"Raw({self.token[:40]!r})"


def _dump(value: Any, out: list[str]) -> None:
    if isinstance(value, Raw):
        out.append(value.token)
    elif isinstance(value, dict):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(k), ensure_ascii=False))
            out.append(":")
            _dump(v, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _dump(v, out)
        out.append("]")
    else:  # str, int, float (NaN and Infinity as Python writes them), bool, None
        out.append(json.dumps(value, ensure_ascii=False))


class Body(bytes):
    """A generated body; its repr stays short (hypothesis prints failing examples, and a
    body of 70 kB is no help there: the printed blob replays it)."""

    def __repr__(self) -> str:
        if len(self) <= 600:
            return bytes.__repr__(self)
        return f"{bytes(self[:400])!r} ... {bytes(self[-150:])!r} ({len(self)} bytes)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def dump(value: Any) -> Body:
    """``value`` as a JSON body in UTF-8; a lone surrogate becomes its ``\\udXXX`` escape."""
    out: list[str] = []
    _dump(value, out)
    return Body("".join(out).encode("utf-8", "backslashreplace"))


# -- leaves ----------------------------------------------------------------------------------

SAFE_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
# Lone surrogates included (hypothesis leaves them out of text() unless asked).
ANY_TEXT = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=30)
NUMBERISH = st.sampled_from(
    [
        "",
        " ",
        "0",
        "-0",
        "-0.0",
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        "1e308",
        "1e999",
        "-1",
        "9" * 40,
        "1" + "0" * 5000,
        "0x1A",
        "1_000",
        "٣٤٥",
        "²³",
        "１２３",
        "𝟏𝟐𝟑",
        "4.9e-324",
        " 12 ",
        "+62",
        "null",
        "true",
    ]
)
RAW_NUMBERS = st.sampled_from(
    [
        Raw("1e999"),
        Raw("-1e999"),
        Raw("-0"),
        Raw("-0.0"),
        Raw("NaN"),
        Raw("Infinity"),
        Raw("-Infinity"),
        Raw("1e308"),
        Raw("4.9e-324"),
        Raw("1" + "0" * 400),
        Raw("1" + "0" * 5000),
        Raw("-" + "9" * 40),
    ]
)
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(),
    RAW_NUMBERS,
    st.sampled_from([0, -1, 2**31, 2**63, 10**15, 10**20, -0.0, 1e308, 0.5]),
)
HUGE_TEXT = st.builds(
    lambda c, n: c * n, st.sampled_from(["A", "9", "é", "😀", " "]), st.integers(500, 20_000)
)
PHONES = st.one_of(
    st.sampled_from(
        [
            "+6281234567890",
            "6281234567890",
            "081234567890",
            "0812-3456-7890",
            "+62 812 3456 7890",
            "(021) 5255733",
            "+12025550143",
            "+4915112345678",
            "anonymous",
            "+",
            "0",
            "+0000000000",
            "tel:+6281234567890",
            "whatsapp:+6281234567890",
            "whatsapp:",
            "+62812345678901234567",
            "٠٨١٢٣٤٥٦٧٨٩٠",
            "０８１２３４５６７８９０",
            "+62812²³⁴⁵⁶⁷⁸⁹",
            "+6281234567890;ext=1",
        ]
    ),
    st.from_regex(r"\+?[0-9 ().-]{0,22}", fullmatch=True),
    st.text(st.characters(categories=("Nd", "No")), max_size=16),
)
URLS = st.one_of(
    st.sampled_from(
        [
            "https://example.id/a.jpg",
            "http://x",
            "https://",
            "ftp://x/y",
            "javascript:alert(1)",
            "//host/path",
            "https://h/" + "a" * 3000,
            "https://bantuan.kemnaker.go.id/f/ä b.pdf",
        ]
    ),
    st.builds(lambda s: "https://example.id/" + s, ANY_TEXT),
)
# Header values as aiohttp hands them over: UTF-8 decoded with surrogateescape, so a byte
# that is not UTF-8 arrives as a lone surrogate U+DC80..U+DCFF.
_HEADER_CHARS = st.text(
    st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF),
        st.characters(min_codepoint=0xA0, max_codepoint=0x2FF),
    ),
    max_size=80,
)
HEADER_TEXT = st.one_of(_HEADER_CHARS, st.builds(lambda s: "sha256=" + s, _HEADER_CHARS))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, ANY_TEXT, NUMBERISH)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SAFE_TEXT, inner, max_size=3),
    max_leaves=6,
)


def near_str(value: str, vocab: Sequence[str]) -> st.SearchStrategy[Any]:
    choices: list[st.SearchStrategy[Any]] = [
        st.just(""),
        ANY_TEXT,
        NUMBERISH,
        HUGE_TEXT,
        PHONES,
        URLS,
        st.just(f"  {value}\n"),
        st.just(value[: len(value) // 2]),
        st.just(value.upper()),
    ]
    if vocab:
        choices.append(st.sampled_from(vocab))
    return st.one_of(choices)


def unicode_tail(value: str) -> st.SearchStrategy[str]:
    """``value`` with odd unicode added: lone surrogates, NUL, RTL marks, emoji, CRLF."""
    odd = st.lists(
        st.one_of(
            st.characters(categories=["Cs"]),
            st.sampled_from(["\x00", "\u202e", "\u200b", "\ufeff", "\U0001f64f", "\r\n", "\\"]),
            st.characters(),
        ),
        min_size=1,
        max_size=8,
    ).map("".join)
    return st.one_of(
        st.builds(lambda s: value + s, odd),
        st.builds(lambda s: s + value, odd),
        odd,
    )


def near_number(value: float) -> st.SearchStrategy[Any]:
    return st.one_of(
        NUMBERS,
        st.just(str(value)),
        st.just(-value),
        st.just(value + 0.5),
        st.just(float(value)),
        NUMBERISH,
        st.booleans(),
    )


def near(value: Any, vocab: Sequence[str]) -> st.SearchStrategy[Any]:
    """A value of about the same kind as ``value``, or junk of any kind."""
    if isinstance(value, str):
        return st.one_of(near_str(value, vocab), unicode_tail(value), JUNK)
    if isinstance(value, bool):
        return st.one_of(st.just(not value), st.sampled_from(["true", 1, 0, None]), JUNK)
    if isinstance(value, int | float):
        return st.one_of(near_number(value), JUNK)
    return JUNK


# -- mutations of a template -----------------------------------------------------------------
#
# A mutation is a handful of edits at random places of a template (a dict key or a list item,
# anywhere in the tree): drop it, replace it by a near value or by junk of any type, empty or
# repeat a list, add a key. Few edits per example keep most of the payload valid, so the
# parser gets deep before it meets the odd value; hypothesis shrinks towards fewer edits.

Path = tuple[Any, ...]
DROP: Any = object()


def _paths(value: Any, prefix: Path = ()) -> list[Path]:
    out: list[Path] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


def _at(value: Any, path: Path) -> Any:
    for step in path:
        value = value[step]
    return value


def _edits(value: Any, vocab: Sequence[str]) -> st.SearchStrategy[Any]:
    """What may become of one node: dropped, or replaced by a near or a wrong value."""
    options: list[st.SearchStrategy[Any]] = [st.just(DROP), near(value, vocab)]
    if isinstance(value, list):
        options += [st.just([]), st.just(value * 2), st.just(value * 40), st.just(value[:1])]
    if isinstance(value, dict):
        options += [
            st.just({}),
            st.just([value]),
            st.builds(lambda k, v: {**value, k: v}, st.sampled_from([*vocab, "x"]), JUNK),
        ]
    return st.one_of(options)


def _apply(template: Any, edits: list[tuple[Path, Any]]) -> Any:
    doc = copy.deepcopy(template)
    for path, new in edits:
        try:
            parent = _at(doc, path[:-1])
            key = path[-1]
            if (isinstance(parent, dict) and key in parent) or (
                isinstance(parent, list) and isinstance(key, int) and key < len(parent)
            ):
                if new is DROP:
                    del parent[key]
                else:
                    parent[key] = copy.deepcopy(new)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced this node's parent
    return doc


def mutated(template: Any, vocab: Sequence[str] = (), max_edits: int = 6) -> st.SearchStrategy[Any]:
    """``template`` with 0 to ``max_edits`` edits at random nodes."""
    # Deepest first: hypothesis favours small indexes, and an edit near the root mostly gets
    # the whole payload refused at its first check.
    paths = sorted(_paths(template), key=len, reverse=True)
    if not paths:
        return st.one_of(st.just(template), JUNK)
    sites = [st.tuples(st.just(p), _edits(_at(template, p), vocab)) for p in paths]
    site = st.integers(0, len(sites) - 1).flatmap(lambda i: sites[i])
    whole = st.one_of(JUNK, st.just([template]), st.just({"x": template}))
    many = st.lists(site, max_size=max_edits).map(lambda edits: _apply(template, edits))
    few = st.lists(site, min_size=1, max_size=2).map(lambda edits: _apply(template, edits))
    return st.one_of(many, many, few, few, few, whole)  # mostly edits, now and then junk


def variants(templates: Sequence[Any], vocab: Sequence[str] = ()) -> st.SearchStrategy[Any]:
    """Mutations of one of ``templates``."""
    return st.one_of([mutated(t, vocab) for t in templates])


def vocabulary(templates: Iterable[Any]) -> list[str]:
    """Every key and short string value in the templates (a payload's own words: field
    names, types, ids), so a mutation can put a valid word in the wrong place."""
    found: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                found.add(k)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and len(v) <= 60:
            found.add(v)

    for t in templates:
        walk(t)
    return sorted(found)


def flip_byte(body: bytes, index: int, xor: int) -> bytes:
    """``body`` with one byte changed (``xor`` in 1..255), at ``index`` modulo its length."""
    i = index % len(body)
    return body[:i] + bytes([body[i] ^ xor]) + body[i + 1 :]


# -- outcomes --------------------------------------------------------------------------------


def _not_json(constant: str) -> Any:
    raise AssertionError(f"{constant} is not JSON")


def _finite(value: float | None, what: str) -> None:
    if value is None:
        return
    assert isinstance(value, float | int), (what, value)
    assert not isinstance(value, bool), (what, value)
    assert math.isfinite(value), f"{what} is {value!r}"


def _utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AssertionError(
            f"{what} cannot be written as UTF-8 (Redis, the console): {exc}"
        ) from None


def check_message(
    m: Message,
    *,
    channel: str,
    account: str,
    received_at: float,
    phone_reply: bool = False,
) -> None:
    """What the hub relies on in every parsed message, and that it survives the stream.

    ``phone_reply``: the reply address is the sender's phone (WhatsApp)."""
    assert isinstance(m, Message), type(m)
    assert (m.channel, m.account) == (channel, account)
    for name in (
        "id",
        "provider_id",
        "sender",
        "reply_address",
        "kind",
        "text",
        "display_name",
        "raw",
    ):
        assert isinstance(getattr(m, name), str), (name, type(getattr(m, name)))
    assert m.id.strip(), "empty id"
    assert m.provider_id.strip(), "empty provider_id"
    assert m.kind.strip(), "empty kind"
    assert SENDER.fullmatch(m.sender), f"sender {m.sender[:80]!r} is not <kind>:<value>"
    if m.sender.startswith("phone:"):
        phone = m.sender.removeprefix("phone:")
        assert E164.fullmatch(phone), f"phone sender {phone!r} is not E.164"
        if phone_reply:
            assert m.reply_address == phone
    assert m.received_at == received_at
    _finite(m.received_at, "received_at")
    _finite(m.provider_ts, "provider_ts")
    assert isinstance(m.meta, dict)
    for k, v in m.meta.items():
        assert isinstance(k, str), ("meta", k)
        assert isinstance(v, str), ("meta", k, type(v))
    assert isinstance(m.attachments, tuple)
    for a in m.attachments:
        assert isinstance(a, Attachment)
        assert isinstance(a.url, str), a
        assert a.url.strip(), a
        assert isinstance(a.content_type, str), a
        assert a.content_type.strip(), a
        assert isinstance(a.name, str)
        assert a.size is None or (
            isinstance(a.size, int) and not isinstance(a.size, bool) and a.size >= 0
        ), a.size
    if m.location is not None:
        assert isinstance(m.location, Location)
        _finite(m.location.latitude, "latitude")
        _finite(m.location.longitude, "longitude")
        assert -90 <= m.location.latitude <= 90
        assert -180 <= m.location.longitude <= 180
        assert isinstance(m.location.address, str)
        assert isinstance(m.location.label, str)
    assert isinstance(m.thread_hints, tuple)
    assert all(isinstance(h, str) and h for h in m.thread_hints), m.thread_hints
    # What the publisher does with it: Message.to_json, then Redis (UTF-8), sharded by sender.
    text = m.to_json()
    _utf8(text, "the message's JSON")
    json.loads(text, parse_constant=_not_json)
    shard_of(m.sender, 4)
    assert Message.from_json(text.encode("utf-8")) == m


def check_status(s: StatusUpdate, channel: str, account: str) -> None:
    """A delivery status the status service can apply (and write to Redis)."""
    assert isinstance(s, StatusUpdate)
    assert (s.channel, s.account) == (channel, account)
    assert isinstance(s.provider_id, str)
    assert s.provider_id.strip()
    assert isinstance(s.state, DeliveryState)
    for text in (s.provider_id, s.error_code, s.error_message):
        assert isinstance(text, str)
        _utf8(text, "a status field")
    assert len(s.error_message) <= 500


def check_refusal(exc: BaseException, secrets: Iterable[str] = ()) -> None:
    """The parser's refusal: a PayloadError with a short reason that shows no secret."""
    assert isinstance(exc, PayloadError), f"{type(exc).__name__}: {exc!s:.300}"
    check_reason(str(exc), secrets)


def check_reason(reason: str, secrets: Iterable[str] = ()) -> None:
    assert reason.strip(), "a refusal without a reason"
    assert len(reason) <= MAX_REASON, f"reason of {len(reason)} characters: {reason[:120]!r}…"
    _utf8(reason, "the reason")
    for secret in secrets:
        assert secret not in reason, "a configured secret is in the reason"


def outcome(
    parse: Callable[[], Any], refusals: tuple[type[BaseException], ...] = (PayloadError,)
) -> tuple[Any, BaseException | None]:
    """(result, None) or (None, the refusal); any other exception propagates (a failure)."""
    try:
        return parse(), None
    except refusals as exc:
        return None, exc
