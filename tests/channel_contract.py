"""The contract every channel honours, as one test class each channel's tests subclass.

``ChannelContract`` is not collected itself (its name does not start with ``Test``); a
subclass ``TestXxxContract`` in the channel's own test package runs every contract point
against that channel. The channel under test is built the way the hub builds it: from a
validated ``Settings`` through ``hub.runtime.build_channels`` and the ``channels.REGISTRY``.

What a subclass provides:

- ``registry_key`` (``"whatsapp:twilio"``) and ``account_name`` (the account's name in the
  settings), and ``account_settings(provider_url)``: the account's settings, pointed at a
  provider on ``provider_url`` (the fake provider's base URL, or an address nobody answers);
- ``valid_request()``: a genuine, correctly signed webhook for one plain text message from a
  citizen, or ``None`` when the channel has no inbound webhook (e-mail, calls), which then
  implements ``parsed_messages()`` and ``parse_body()`` with its own intake parser;
- ``forged(request)`` (the same request, wrongly signed), ``unsigned(request)`` (the same
  request without a signature) and ``signed(body)`` (any body, signed the provider's way);
- ``provider(outcome)``: an async context with the channel wired to its fake provider on
  loopback, scripted to accept (``"ok"``), fail for now (``"transient"``: 5xx, 429 or a
  timeout) or refuse (``"refused"``: a 4xx with the provider's code) the next send, and
  counting the sends that reached the provider;
- ``refusal_errors`` only where the channel's intake parser refuses with its own error type
  (the call logs' ``RecordError``); ``PayloadError`` otherwise;
- ``absurd_bodies()``: deliveries in the provider's own format with one absurd value (a number
  out of range, thousands of digits, NaN), as ``pytest.param``s. (These found five bugs
  when the contract landed: overflowing dates and durations, NaN coordinates, a
  5000-digit NumMedia; all fixed.)

The contract points: the channel is what the registry and the settings say (class, name,
account); its repr and the errors it raises show no configured secret; verify accepts the
genuine request and refuses a forged or missing signature (SignatureError, 401 or 403); the
parsed messages are normalized (channel, account, dedupe key, ``<kind>:<value>`` sender,
reply address, text, string meta) and survive the stream's JSON; a redelivery gives the same
provider ids; garbage is only ever the parser's refusal, and an absurd value in a well-formed
delivery is refused or parsed into messages that are still plain JSON; a text reply to the
parsed address is accepted with a provider id; a transient failure (and an unreachable
provider) raises TransientSendError; a refusal is a FAILED result with the provider's code;
the window rule allows free text for some hours; ``aclose`` can be called twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pytest
from pydantic import SecretStr

from adapters.redis_server import free_port
from channels import REGISTRY, load_channel_class
from channels.base import (
    Channel,
    InboundRequest,
    PayloadError,
    SignatureError,
    SubscriptionHandshake,
    TransientSendError,
    WindowRule,
)
from hub.model import DeliveryResult, DeliveryState, Message, OutboundReply
from hub.runtime import build_channels
from hub.settings import Settings

PUBLIC_URL = "https://hub.kemnaker.go.id"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing answers there
NOW = 1_780_000_000.5
SEND_TIMEOUT_S = 5.0

Outcome = Literal["ok", "transient", "refused"]

# Bodies no provider sends: each must be refused by the parser with its own refusal (a
# PayloadError: the webhook answers 400), never crash it with any other exception.
GARBAGE: dict[str, bytes] = {
    "empty": b"",
    "open-brace": b"{",
    "binary": b"\x00\xff",
    "nested-object-50": b'{"a":' * 50 + b"{}" + b"}" * 50,
    "nested-array-50": b"[" * 50 + b"]" * 50,
    "json-array": json.dumps([{"id": 1, "text": "halo"}, "x", None]).encode(),
    "huge-string": b'"' + b"A" * (1 << 20) + b'"',
}
SENDER = re.compile(r"[a-z][a-z0-9_]*:\S+")  # an identity key: "<kind>:<value>"
REPLY_TEXT = "Terima kasih, laporan Anda sudah kami terima dan sedang kami tindak lanjuti."


def _not_json(constant: str) -> Any:
    raise AssertionError(f"{constant} is not JSON")


@dataclass
class Provider:
    """A channel wired to its fake provider, and how many sends reached the provider."""

    channel: Channel
    attempts: Callable[[], int]


class ChannelContract:
    """The shared contract; subclass it as ``Test<Channel>Contract`` and fill in the hooks."""

    registry_key: ClassVar[str]
    account_name: ClassVar[str]
    # What the channel's parser raises for a body it cannot understand.
    refusal_errors: ClassVar[tuple[type[Exception], ...]] = (PayloadError,)

    # -- hooks -------------------------------------------------------------------------

    def account_settings(self, provider_url: str) -> dict[str, Any]:
        raise NotImplementedError

    def valid_request(self) -> InboundRequest | None:
        raise NotImplementedError

    def forged(self, request: InboundRequest) -> InboundRequest:
        raise NotImplementedError

    def unsigned(self, request: InboundRequest) -> InboundRequest:
        raise NotImplementedError

    def signed(self, body: bytes) -> InboundRequest:
        raise NotImplementedError

    def provider(self, outcome: Outcome) -> AbstractAsyncContextManager[Provider]:
        raise NotImplementedError

    def parsed_messages(self, channel: Channel) -> list[Message]:
        """The messages of the valid request, verified and parsed as the webhook does."""
        request = self.valid_request()
        assert request is not None, "a channel without webhook implements parsed_messages"
        channel.verify(request)
        return channel.parse(request, NOW).messages

    def parse_body(self, channel: Channel, body: bytes) -> list[Message]:
        """Hand ``body`` to the channel's parser as its provider would deliver it."""
        request = self.signed(body)
        channel.verify(request)  # signed the provider's way: the body reaches parse
        return channel.parse(request, NOW).messages

    def absurd_bodies(self) -> list[Any]:
        return []

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "absurd_body" in metafunc.fixturenames:
            metafunc.parametrize("absurd_body", self.absurd_bodies())

    # -- helpers -----------------------------------------------------------------------

    @property
    def section(self) -> str:
        """The settings section, which is also the channel's name: the key's first part."""
        return self.registry_key.partition(":")[0]

    def settings(self, provider_url: str = UNREACHABLE) -> Settings:
        return Settings.model_validate(
            {
                "hub": {"public_url": PUBLIC_URL},
                "outbox": {"send_timeout_s": SEND_TIMEOUT_S},
                "channels": {
                    self.section: {
                        "accounts": {self.account_name: self.account_settings(provider_url)}
                    }
                },
            }
        )

    def build_channel(self, provider_url: str = UNREACHABLE) -> Channel:
        """The one channel the hub builds from this account's settings."""
        built = list(build_channels(self.settings(provider_url)))
        assert len(built) == 1, built
        return built[0]

    def secrets(self) -> list[str]:
        """Every secret configured for the account (its SecretStr settings)."""
        section = getattr(self.settings().channels, self.section)
        account = section.accounts[self.account_name]
        values = [getattr(account, name) for name in type(account).model_fields]
        return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]

    def assert_no_secret(self, *texts: str) -> None:
        secrets = [s for s in self.secrets() if s]
        assert secrets, "configure the account's secrets, or this check proves nothing"
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"a configured secret is shown in {text[:200]!r}"

    def text_reply(self, channel: Channel, to: str) -> OutboundReply:
        return OutboundReply(
            reply_id="contract-reply-1",
            ticket_id="c1:1",
            channel=channel.name,
            account=channel.account,
            to=to,
            text=REPLY_TEXT,
            ticket_number="KMN-2026-000123",
        )

    def reply_to_citizen(self, channel: Channel) -> OutboundReply:
        """A text reply to the address the channel parsed from the citizen's message."""
        return self.text_reply(channel, self.parsed_messages(channel)[0].reply_address)

    def webhook_request(self) -> InboundRequest:
        request = self.valid_request()
        if request is None:
            pytest.skip(
                f"{self.registry_key} has no inbound webhook (its messages arrive through its "
                "own intake), so there is no provider signature to check"
            )
        return request

    @pytest.fixture
    async def channel(self) -> AsyncIterator[Channel]:
        ch = self.build_channel()
        yield ch
        await ch.aclose()

    # -- identity and secrets ------------------------------------------------------------

    def test_name_and_account_match_registry_and_settings(self, channel: Channel) -> None:
        """The hub builds this channel from the registry entry and the configured account:
        its class is the registry's, its name the key's channel part (and the settings
        section), its account the configured account's name."""
        assert isinstance(channel, Channel)
        assert self.registry_key in REGISTRY
        assert type(channel) is load_channel_class(self.registry_key)
        assert channel.name == self.section
        assert channel.account == self.account_name
        section = getattr(self.settings().channels, channel.name)
        assert channel.account in section.accounts

    def test_repr_and_errors_show_no_secret(self, channel: Channel) -> None:
        """Neither the channel's repr/str nor any error it raises shows a configured secret."""
        shown = [repr(channel), str(channel)]
        errors: list[Exception] = []
        request = self.valid_request()
        if request is not None:
            for bad in (self.forged(request), self.unsigned(request)):
                with pytest.raises(SignatureError) as info:
                    channel.verify(bad)
                errors.append(info.value)
            try:
                channel.parse_status(request)  # an inbound message is no status callback
            except PayloadError as exc:
                errors.append(exc)
        else:
            stray = InboundRequest(f"{PUBLIC_URL}/webhooks/x", {}, b"{}", (), "application/json")
            for call in (channel.verify, lambda r: channel.parse(r, NOW), channel.parse_status):
                with pytest.raises(PayloadError) as refused:
                    call(stray)
                errors.append(refused.value)
        if isinstance(channel, SubscriptionHandshake):
            wrong = {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}
            with pytest.raises(SignatureError) as refused_token:
                channel.verify_subscription(wrong)
            errors.append(refused_token.value)
        for body in GARBAGE.values():
            try:
                self.parse_body(channel, body)
            except Exception as exc:  # which exceptions is test_garbage_...'s business
                errors.append(exc)
        assert errors
        for error in errors:
            shown += [str(error), repr(error)]
        self.assert_no_secret(*shown)

    # -- signatures ----------------------------------------------------------------------

    def test_verify_accepts_a_genuine_request(self, channel: Channel) -> None:
        channel.verify(self.webhook_request())

    def test_verify_refuses_a_forged_signature(self, channel: Channel) -> None:
        """The same request signed with anything but the account's secret is refused."""
        request = self.webhook_request()
        forged = self.forged(request)
        assert (forged.url, forged.body, list(forged.form)) == (
            request.url,
            request.body,
            list(request.form),
        ), "forged() must change the signature only"
        assert forged.headers != request.headers
        with pytest.raises(SignatureError) as info:
            channel.verify(forged)
        assert info.value.status in (401, 403)

    def test_verify_refuses_an_unsigned_request(self, channel: Channel) -> None:
        request = self.webhook_request()
        unsigned = self.unsigned(request)
        assert (unsigned.url, unsigned.body, list(unsigned.form)) == (
            request.url,
            request.body,
            list(request.form),
        ), "unsigned() must drop the signature only"
        assert set(unsigned.headers) < set(request.headers)
        with pytest.raises(SignatureError) as info:
            channel.verify(unsigned)
        assert info.value.status in (401, 403)

    def test_without_webhook_every_request_is_refused(self, channel: Channel) -> None:
        """A channel whose messages arrive through its own intake refuses anything handed to
        it as a webhook: nothing can reach the inbox by that door."""
        if self.valid_request() is not None:
            pytest.skip(f"{self.registry_key} has an inbound webhook: its signature is checked")
        request = InboundRequest(
            url=f"{PUBLIC_URL}/webhooks/{self.section}/{self.account_name}",
            headers={"content-type": "application/json"},
            body=b'{"text": "halo"}',
            content_type="application/json",
        )
        with pytest.raises(PayloadError):
            channel.verify(request)
        with pytest.raises(PayloadError):
            channel.parse(request, NOW)

    # -- parsing -------------------------------------------------------------------------

    def test_parse_gives_normalized_messages(self, channel: Channel) -> None:
        """Every message names this channel and account, its dedupe key, the citizen as an
        identity key and a reply address, carries the text, and only strings in meta."""
        messages = self.parsed_messages(channel)
        assert len(messages) >= 1
        for m in messages:
            assert (m.channel, m.account) == (channel.name, channel.account)
            assert m.provider_id
            assert SENDER.fullmatch(m.sender), m.sender
            assert m.reply_address
            assert m.text.strip()
            assert m.received_at == NOW
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in m.meta.items())

    def test_parsed_messages_survive_the_stream(self, channel: Channel) -> None:
        """What goes on the inbound stream reads back as the same Message."""
        for m in self.parsed_messages(channel):
            assert Message.from_json(m.to_json()) == m

    def test_parsing_twice_gives_the_same_provider_ids(self, channel: Channel) -> None:
        """A provider's redelivery dedupes: the same request gives the same provider ids."""
        first = [m.provider_id for m in self.parsed_messages(channel)]
        again = [m.provider_id for m in self.parsed_messages(channel)]
        assert first
        assert first == again

    @pytest.mark.parametrize("name", sorted(GARBAGE))
    def test_garbage_is_only_ever_a_payload_error(self, channel: Channel, name: str) -> None:
        """A body no provider sends is refused by the parser (a 400), never another crash."""
        with pytest.raises(self.refusal_errors):
            self.parse_body(channel, GARBAGE[name])

    def test_absurd_values_are_refused_or_plain_json(
        self, channel: Channel, absurd_body: bytes
    ) -> None:
        """One absurd value in a well-formed delivery: the parser refuses it, or its messages
        name this channel and account and are still plain JSON on the stream (no NaN or
        Infinity, which JSON has not and the console's browser cannot read)."""
        try:
            messages = self.parse_body(channel, absurd_body)
        except self.refusal_errors:
            return
        for m in messages:
            assert (m.channel, m.account) == (channel.name, channel.account)
            text = m.to_json()
            json.loads(text, parse_constant=_not_json)
            assert Message.from_json(text) == m

    # -- sending -------------------------------------------------------------------------

    async def test_send_text_is_accepted(self) -> None:
        """A text reply to the citizen's address is accepted with the provider's id."""
        async with self.provider("ok") as p:
            result = await p.channel.send(self.reply_to_citizen(p.channel))
            assert isinstance(result, DeliveryResult)
            assert result.accepted, result
            assert result.provider_id
            assert result.state not in (DeliveryState.FAILED, DeliveryState.UNDELIVERED)
            assert p.attempts() == 1
            self.assert_no_secret(repr(p.channel), str(p.channel))
            await p.channel.aclose()
            await p.channel.aclose()

    async def test_transient_failure_raises(self) -> None:
        """A failure that may pass (5xx, 429, a timeout) raises TransientSendError."""
        async with self.provider("transient") as p:
            with pytest.raises(TransientSendError) as info:
                await p.channel.send(self.reply_to_citizen(p.channel))
            assert p.attempts() >= 1
            self.assert_no_secret(str(info.value), repr(info.value), repr(p.channel))

    async def test_refusal_is_a_failed_result(self) -> None:
        """The provider's refusal is final: a FAILED result with its code, not an exception."""
        async with self.provider("refused") as p:
            result = await p.channel.send(self.reply_to_citizen(p.channel))
            assert result.accepted is False
            assert result.state is DeliveryState.FAILED
            assert result.error_code
            assert p.attempts() == 1  # the provider refused it, not a check before sending
            self.assert_no_secret(result.error_code, result.error_message, repr(p.channel))

    async def test_unreachable_provider_is_transient(self) -> None:
        """A provider nobody answers for (connection refused) may answer later: transient."""
        channel = self.build_channel(f"http://127.0.0.1:{free_port()}")
        try:
            with pytest.raises(TransientSendError) as info:
                await channel.send(self.reply_to_citizen(channel))
            self.assert_no_secret(str(info.value), repr(info.value), repr(channel))
        finally:
            await channel.aclose()

    # -- window and lifecycle ----------------------------------------------------------

    def test_window_rule(self, channel: Channel) -> None:
        assert isinstance(channel.window, WindowRule)
        assert channel.window.free_text_hours > 0

    async def test_aclose_twice(self, channel: Channel) -> None:
        await channel.aclose()
        await channel.aclose()
