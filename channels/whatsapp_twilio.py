"""WhatsApp through Twilio: inbound webhooks, status callbacks, and sends with the twilio SDK.

Webhook paths (per configured account ``{account}``):
  POST /webhooks/whatsapp/{account}          incoming messages (form-encoded)
  POST /webhooks/whatsapp/{account}/status   status callbacks for the hub's replies

Features: X-Twilio-Signature checked against the public URL from configuration (all parameters,
never a whitelist, since Twilio adds fields without notice); text, media (MediaUrlN), location,
quick-reply and list buttons, profile name, replied-to message; sender normalized to E.164.
Sending uses the SDK's async client pointed at ``api_base_url``; free text inside the 24-hour
window, an approved template (ContentSid) outside it.

Settings: ``channels.whatsapp.accounts.<name>``: number, account_sid, auth_token,
api_base_url, templates.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlparse

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator, add_port, remove_port
from twilio.rest import Client

from channels.base import (
    InboundRequest,
    ParsedInbound,
    PayloadError,
    SignatureError,
    TransientSendError,
    WindowRule,
)
from hub.identity import InvalidIdentity, normalize_phone, phone_identity
from hub.ids import new_id
from hub.model import (
    Attachment,
    DeliveryResult,
    DeliveryState,
    Location,
    Message,
    OutboundReply,
    StatusUpdate,
)
from hub.settings import TwilioWhatsAppAccount

_STATUS_MAP = {
    "accepted": DeliveryState.QUEUED,
    "scheduled": DeliveryState.QUEUED,
    "queued": DeliveryState.QUEUED,
    "sending": DeliveryState.SENDING,
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.READ,
    "undelivered": DeliveryState.UNDELIVERED,
    "failed": DeliveryState.FAILED,
    "canceled": DeliveryState.FAILED,
}
MAX_MEDIA = 10


def _form_dict(form: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Twilio's validator wants repeated keys as lists; single keys as strings."""
    flat = dict(form)
    if len(flat) == len(form):  # no key repeated (every webhook Twilio sends)
        return flat
    grouped: dict[str, list[str]] = defaultdict(list)
    for k, v in form:
        grouped[k].append(v)
    return {k: (v[0] if len(v) == 1 else v) for k, v in grouped.items()}


@functools.lru_cache(maxsize=256)
def _url_variants(url: str) -> tuple[str, ...]:
    """The URL as Twilio may have signed it: without its port, and with the default port
    (``remove_port`` and ``add_port`` of ``twilio.request_validator``); the one that is the
    configured URL first (a signature is over it when Twilio calls the URL it was given), and
    once when both are the same."""
    parsed = urlparse(url)
    without, with_port = remove_port(parsed), add_port(parsed)
    if without == with_port:
        return (without,)
    return (with_port, without) if with_port == url else (without, with_port)


@functools.lru_cache(maxsize=8192)
def _phone(raw: str, region: str) -> str:
    """``normalize_phone`` (libphonenumber: the parse's most expensive step), remembered for
    the senders seen lately: a citizen usually writes more than once."""
    try:
        return normalize_phone(raw, region)
    except InvalidIdentity as exc:
        raise PayloadError(f"From is not a usable phone number: {exc}") from None


class _HubTwilioHttpClient(AsyncHttpClient):  # type: ignore[misc]
    """The SDK's transport, owned by the hub: one aiohttp session, basic auth as a header
    (aiohttp's BasicAuth is deprecated), and 429/5xx turned into TransientSendError with the
    provider's Retry-After before the SDK wraps them into a generic exception."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("twilio.hub_http_client"), is_async=True)
        self.session = aiohttp.ClientSession()

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's signature; the channel bounds the call
        allow_redirects: bool = False,
    ) -> Response:
        hdrs = dict(headers or {})
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            hdrs["Authorization"] = f"Basic {token}"
        try:
            async with self.session.request(
                method.upper(),
                url,
                params=cast(Any, params),
                data=data,
                headers=hdrs,
                allow_redirects=allow_redirects,
            ) as resp:
                text = await resp.text()
                status, resp_headers = resp.status, dict(resp.headers)
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientSendError(f"connection failed: {type(exc).__name__}") from None
        if status == 429 or status >= 500:
            retry_after: float | None = None
            raw = resp_headers.get("Retry-After", "").strip()
            if raw.isdigit():
                retry_after = float(raw)
            raise TransientSendError(f"provider answered {status}", retry_after, str(status))
        return Response(status, text, resp_headers)

    async def close(self) -> None:
        await self.session.close()


class TwilioWhatsApp:
    """One Twilio WhatsApp sender number (one configured account)."""

    name = "whatsapp"
    provider = "twilio"

    def __init__(
        self,
        account: str,
        settings: TwilioWhatsAppAccount,
        window_hours: float = 24.0,
        default_region: str = "ID",
        send_timeout_s: float = 15.0,
    ) -> None:
        self.account = account
        self.window = WindowRule(free_text_hours=window_hours)
        self._settings = settings
        self._region = default_region
        self._timeout = send_timeout_s
        self._validator = RequestValidator(settings.auth_token.get_secret_value())
        self._hmac = hmac.new(settings.auth_token.get_secret_value().encode(), None, hashlib.sha1)
        self._client: Client | None = None
        self._http: _HubTwilioHttpClient | None = None

    def __repr__(self) -> str:  # never the token
        return f"TwilioWhatsApp(account={self.account!r}, number={self._settings.number!r})"

    # -- inbound -----------------------------------------------------------------------

    def verify(self, request: InboundRequest) -> None:
        signature = request.header("X-Twilio-Signature")
        if not signature:
            raise SignatureError("missing X-Twilio-Signature")
        if "bodySHA256" in request.url:  # Twilio's JSON webhooks: the SDK checks the body hash
            body = request.body.decode("utf-8", "replace")
            if not self._validator.validate(request.url, body, signature):
                raise SignatureError("X-Twilio-Signature does not match")
        elif not self._form_signed(request.url, request.form, signature):
            raise SignatureError("X-Twilio-Signature does not match")

    def _form_signed(self, url: str, form: Sequence[tuple[str, str]], signature: str) -> bool:
        """``RequestValidator.validate(url, MultiDict(form), signature)``, decision for
        decision, at a fraction of the cost: the parameters are concatenated once (sorted
        keys, each key's distinct values sorted, as ``compute_signature`` does), and the URL
        without and with its default port (Twilio signs either) come from a cache."""
        flat = dict(form)
        if len(flat) == len(form):  # no key repeated: one value each
            params = "".join([k + flat[k] for k in sorted(flat)])
        else:
            values: dict[str, set[str]] = {}
            for k, v in form:
                values.setdefault(k, set()).add(v)
            params = "".join(k + v for k in sorted(values) for v in sorted(values[k]))
        given = signature.encode("utf-8", "surrogatepass")
        for variant in _url_variants(url):
            mac = self._hmac.copy()
            mac.update((variant + params).encode("utf-8"))
            if hmac.compare_digest(base64.b64encode(mac.digest()), given):
                return True
        return False

    def parse(self, request: InboundRequest, received_at: float) -> ParsedInbound:
        if not request.content_type.startswith("application/x-www-form-urlencoded"):
            raise PayloadError("expected application/x-www-form-urlencoded")
        f = _form_dict(request.form)
        if len(f) != len(request.form):
            for key, value in f.items():
                if isinstance(value, list):
                    raise PayloadError(f"parameter {key} given more than once")
        if "MessageStatus" in f and "Body" not in f and "NumMedia" not in f:
            return ParsedInbound(statuses=[self._status(f)])
        return ParsedInbound(messages=[self._message(f, request, received_at)])

    def parse_status(self, request: InboundRequest) -> StatusUpdate:
        f = _form_dict(request.form)
        if any(isinstance(v, list) for v in f.values()):
            raise PayloadError("repeated parameter in status callback")
        return self._status(f)

    def _status(self, f: dict[str, str]) -> StatusUpdate:
        sid = f.get("MessageSid") or f.get("SmsSid") or ""
        if not sid.strip():
            raise PayloadError("MessageSid is missing")
        raw_status = (f.get("MessageStatus") or f.get("SmsStatus") or "").lower()
        state = _STATUS_MAP.get(raw_status)
        if state is None:
            raise PayloadError(f"unknown MessageStatus {raw_status[:40]!r}")
        return StatusUpdate(
            channel=self.name,
            account=self.account,
            provider_id=sid,
            state=state,
            error_code=f.get("ErrorCode", ""),
            error_message=f.get("ErrorMessage", "")[:500],
        )

    def _message(self, f: dict[str, str], request: InboundRequest, received_at: float) -> Message:
        sid = f.get("MessageSid") or f.get("SmsMessageSid") or f.get("SmsSid") or ""
        if not sid.strip():
            raise PayloadError("MessageSid is missing")
        raw_from = f.get("From", "")
        if not raw_from:
            raise PayloadError("From is missing")
        phone = _phone(f.get("WaId") or raw_from, self._region)
        attachments = self._attachments(f)
        kind = (f.get("MessageType") or "").strip().lower()
        location: Location | None = None
        if f.get("Latitude") or f.get("Longitude"):
            try:
                lat, lon = float(f["Latitude"]), float(f["Longitude"])
            except (KeyError, ValueError):
                raise PayloadError("Latitude and Longitude must both be numbers") from None
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):  # also false for NaN
                raise PayloadError("Latitude or Longitude is out of range")
            location = Location(lat, lon, address=f.get("Address", ""), label=f.get("Label", ""))
            kind = "location"
        text = f.get("Body", "")
        meta: dict[str, str] = {"to": f.get("To", "")}
        if f.get("ButtonPayload") or f.get("ButtonText"):
            kind = "button"
            meta["button_payload"] = f.get("ButtonPayload", "")
            text = text or f.get("ButtonText", "")
        if f.get("ListId"):
            meta["list_id"] = f["ListId"]
            text = text or f.get("ListTitle", "")
        if f.get("OriginalRepliedMessageSid"):
            meta["replied_to"] = f["OriginalRepliedMessageSid"]
        if f.get("ReferralSourceUrl"):
            meta["referral_url"] = f["ReferralSourceUrl"]
        if not kind or kind not in {"text", "location", "button", "interactive"}:
            kind = "media" if attachments else (kind or "text")
        if kind == "text" and attachments:
            kind = "media"
        return Message(
            id=new_id(int(received_at * 1000)),
            channel=self.name,
            account=self.account,
            provider_id=sid,
            sender=phone_identity(phone),
            reply_address=phone,
            received_at=received_at,
            kind=kind,
            text=text,
            display_name=f.get("ProfileName", "")[:200],
            attachments=attachments,
            location=location,
            meta=meta,
            raw=request.body.decode("utf-8", "replace"),
        )

    @staticmethod
    def _attachments(f: dict[str, str]) -> tuple[Attachment, ...]:
        raw_n = f.get("NumMedia", "0") or "0"
        if not (raw_n.isascii() and raw_n.isdigit() and len(raw_n) <= 3):
            raise PayloadError("NumMedia is not a number (or far too large)")
        n = int(raw_n)
        if n > MAX_MEDIA:
            raise PayloadError(f"NumMedia {n} is above {MAX_MEDIA}")
        out = []
        for i in range(n):
            url = f.get(f"MediaUrl{i}", "")
            if not url.strip():
                raise PayloadError(f"MediaUrl{i} is missing (NumMedia={n})")
            out.append(
                Attachment(
                    url=url, content_type=f.get(f"MediaContentType{i}", "").strip() or "unknown"
                )
            )
        return tuple(out)

    # -- outbound ----------------------------------------------------------------------

    def _twilio(self) -> Client:
        if self._client is None:
            self._http = _HubTwilioHttpClient()
            self._client = Client(
                self._settings.account_sid,
                self._settings.auth_token.get_secret_value(),
                http_client=self._http,
            )
            self._client.api.base_url = self._settings.api_base_url.rstrip("/")
        return self._client

    async def send(self, reply: OutboundReply) -> DeliveryResult:
        kwargs: dict[str, Any] = {
            "to": f"whatsapp:{reply.to}",
            "from_": f"whatsapp:{self._settings.number}",
        }
        if reply.status_callback_url:
            kwargs["status_callback"] = reply.status_callback_url
        if reply.template is not None:
            kwargs["content_sid"] = reply.template.provider_ref
            if reply.template.variables:
                kwargs["content_variables"] = json.dumps(reply.template.variables)
        else:
            kwargs["body"] = reply.text
        try:
            async with asyncio.timeout(self._timeout):
                msg = await self._twilio().messages.create_async(**kwargs)
        except TimeoutError:
            raise TransientSendError("provider timed out") from None
        except TwilioRestException as exc:
            if exc.status == 429 or exc.status >= 500:
                raise TransientSendError(f"provider answered {exc.status}") from None
            return DeliveryResult(
                accepted=False,
                state=DeliveryState.FAILED,
                error_code=str(exc.code or exc.status),
                error_message=str(exc.msg)[:500],
            )
        except TwilioException as exc:
            code = str(getattr(exc, "code", "") or getattr(exc, "status", ""))
            return DeliveryResult(
                accepted=False,
                state=DeliveryState.FAILED,
                error_code=code,
                error_message=type(exc).__name__,
            )
        state = _STATUS_MAP.get(str(msg.status or "").lower(), DeliveryState.SENT)
        if state.rank < DeliveryState.SENT.rank:
            state = DeliveryState.SENT  # accepted by the provider is "sent" from our side
        return DeliveryResult(accepted=True, provider_id=str(msg.sid), state=state)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
            self._client = None
