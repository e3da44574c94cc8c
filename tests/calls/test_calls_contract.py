"""The shared channel contract for the call center (1500630).

Calls come in through the call logs, not a webhook: the inbound contract points run on a line
of the JSON-lines export (``tests/fixtures/calls/calls.jsonl``) through the parser and
``to_message``, as the log tailer does; garbage goes through the same parser, which refuses a
line with a ``RecordError`` (the tailer counts it as a bad line and moves on).

A reply to a call is a callback request for the dialer: "sending" POSTs it to the dialer's
HTTP API (``tests/calls/test_callbacks.py``'s ``dialer`` on loopback). Accepted: 2xx, with
the callback id as provider id; transient: 5xx; refused: the dialer's 400.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from channels.base import Channel, InboundRequest
from channels.calls.jsonl import JsonlParser
from channels.calls.records import RecordError, to_message
from hub.model import Message
from tests.calls.test_callbacks import dialer  # noqa: F401 - the fixture, used by name
from tests.channel_contract import NOW, ChannelContract, Outcome, Provider

CALLS = Path(__file__).parent.parent / "fixtures" / "calls" / "calls.jsonl"
FIRST_LINE = CALLS.read_text("utf-8").splitlines()[0]  # an answered inbound call
ANSWERS: dict[Outcome, int] = {"ok": 201, "transient": 500, "refused": 400}

Dialer = tuple[str, list[Any], Callable[[int], None]]


class TestCallCenterContract(ChannelContract):
    registry_key = "call:dialer"
    account_name = "hotline"
    # The call-log parsers' refusal: the tailer skips such a line (and one not in UTF-8).
    refusal_errors = (RecordError, UnicodeDecodeError)

    _dialer: Dialer | None = None

    @pytest.fixture(autouse=True)
    def _with_dialer(self, dialer: Dialer) -> None:  # noqa: F811 - the imported fixture
        self._dialer = dialer

    def account_settings(self, provider_url: str) -> dict[str, Any]:
        return {
            "number": "1500630",
            "logs": [{"kind": "jsonl", "path": str(CALLS)}],
            "callback_list": "http",
            "dialer_url": provider_url,
            "dialer_token": "dialer-secret-token",  # what the dialer fixture accepts
            "events_secret": "call-events-secret-0123456789",
        }

    def valid_request(self) -> InboundRequest | None:
        return None  # calls arrive through the call logs, never by webhook

    def parsed_messages(self, channel: Channel) -> list[Message]:
        """The export's answered inbound call."""
        return self.parse_body(channel, FIRST_LINE.encode())

    def parse_body(self, channel: Channel, body: bytes) -> list[Message]:
        """One line of the export, read, parsed and translated as the log tailer does."""
        text = body.decode("utf-8").rstrip("\r")
        return [to_message(JsonlParser().parse_line(text), channel.account, NOW)]

    def absurd_bodies(self) -> list[Any]:
        return [
            pytest.param(
                FIRST_LINE.replace('"wait_s":30', '"wait_s":1e999').encode(),
                id="wait-seconds-1e999",
            ),
            pytest.param(
                FIRST_LINE.replace(
                    '"offered_at":"2026-03-02T09:21:40+07:00"', '"offered_at":1e999'
                ).encode(),
                id="offered-at-1e999",
            ),
        ]

    @asynccontextmanager
    async def provider(self, outcome: Outcome) -> AsyncIterator[Provider]:
        assert self._dialer is not None
        url, seen, answer = self._dialer
        answer(ANSWERS[outcome])
        channel = self.build_channel(url)
        try:
            yield Provider(channel, lambda: len(seen))
        finally:
            await channel.aclose()
