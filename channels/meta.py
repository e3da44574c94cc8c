"""What Meta's channels share: the webhook handshake, X-Hub-Signature-256, and the Graph API.

WhatsApp's Cloud API and Instagram messaging are both Graph API products of one Meta app: the
app proves a callback URL with a GET (``hub.mode=subscribe``, our ``hub.verify_token``, a
``hub.challenge`` to echo), signs every POST with its app secret over the raw body bytes, and
sends through ``POST /{version}/{id}/messages`` with a bearer token. Graph errors come back as
``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``; ``GraphClient``
turns them into a ``GraphError`` and ``classify`` says whether trying again can help.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from channels.base import PayloadError, SignatureError, TransientSendError
from channels.json_input import without_lone_surrogates

SIGNATURE_HEADER = "X-Hub-Signature-256"

# Graph error codes where a later attempt can succeed: throttling (4 app, 17 user, 32 page,
# 613 custom, 80007 messaging, 130429 Cloud API throughput, 131056 pair rate, 131048 spam
# rate) and the platform's own trouble (1 unknown, 2 service, 131000 generic, 131016 service
# unavailable). Everything else is a refusal: a bad request, an expired token, a citizen
# outside the window or not reachable.
RETRYABLE_CODES = frozenset({1, 2, 4, 17, 32, 613, 80007, 130429, 131000, 131016, 131048, 131056})
THROTTLE_CODES = frozenset({4, 17, 32, 613, 80007, 130429, 131048, 131056})


def sign_body(app_secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value Meta sends with ``body`` (for fakes and tests)."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def check_signature(app_secret: str, body: bytes, header: str) -> None:
    """Raise SignatureError unless ``header`` is the app's HMAC of these exact bytes."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER}")
    algo, _, given = header.partition("=")
    if algo != "sha256" or not given:
        raise SignatureError(f"{SIGNATURE_HEADER} is not sha256=<hex>")
    expected = sign_body(app_secret, body).removeprefix("sha256=")
    # A header byte that is not UTF-8 arrives as a lone surrogate: never equal, never a crash.
    if not hmac.compare_digest(given.strip().lower().encode("utf-8", "replace"), expected.encode()):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match")


def check_subscription(verify_token: str, params: Mapping[str, str]) -> str:
    """The challenge to answer when Meta subscribes the callback URL with our token."""
    mode = params.get("hub.mode", "")
    if mode != "subscribe":
        raise PayloadError("hub.mode must be subscribe")
    challenge = params.get("hub.challenge", "")
    if not challenge or len(challenge) > 256:
        raise PayloadError("hub.challenge is missing or too long")
    given = params.get("hub.verify_token", "")
    if not hmac.compare_digest(given.encode(), verify_token.encode()):
        raise SignatureError("hub.verify_token does not match")
    return challenge


def load_json_object(body: bytes, expected_object: str) -> dict[str, Any]:
    """The webhook body as a dict with ``object`` = ``expected_object`` and a list ``entry``."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise PayloadError("body is not JSON") from None
    except RecursionError:
        raise PayloadError("body is nested too deeply") from None
    if not isinstance(data, dict):
        raise PayloadError("body must be a JSON object")
    without_lone_surrogates(data)  # in place
    if data.get("object") != expected_object:
        got = repr(data.get("object"))
        got = got if len(got) <= 60 else got[:57] + "..."  # a reason, not an echo of the body
        raise PayloadError(f"object must be {expected_object!r}, got {got}")
    if not isinstance(data.get("entry"), list):
        raise PayloadError("entry must be a list")
    return data


@dataclass(frozen=True, slots=True)
class GraphError(Exception):
    """A Graph API refusal, as Meta reported it."""

    status: int
    code: int
    subcode: int
    message: str
    retry_after: float | None = None

    def __str__(self) -> str:
        return f"Graph API {self.status} code {self.code}/{self.subcode}: {self.message}"

    @property
    def retryable(self) -> bool:
        return self.status >= 500 or self.status == 429 or self.code in RETRYABLE_CODES

    @property
    def error_code(self) -> str:
        """The code the hub records on a failed reply: ``131047`` or ``10/2018278``."""
        if self.code and self.subcode:
            return f"{self.code}/{self.subcode}"
        return str(self.code or self.status)


def _retry_after(headers: Mapping[str, str], code: int) -> float | None:
    raw = headers.get("Retry-After", "").strip()
    if raw.isdigit():
        return float(raw)
    if code in THROTTLE_CODES:
        return 60.0  # Meta does not say; its throttles are counted per minute or hour
    return None


class GraphClient:
    """A small Graph API client on one aiohttp session: JSON in, JSON out, GraphError on
    refusals and TransientSendError on timeouts and broken connections. The token goes in
    the Authorization header, never in a URL (URLs end up in logs)."""

    def __init__(self, base_url: str, version: str, token: str, timeout_s: float) -> None:
        self.base = f"{base_url.rstrip('/')}/{version}"
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"GraphClient(base={self.base!r})"

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", f"{self.base}/{path.lstrip('/')}", body)

    async def get(self, path: str) -> dict[str, Any]:
        return await self._call("GET", f"{self.base}/{path.lstrip('/')}", None)

    async def _call(self, method: str, url: str, body: dict[str, Any] | None) -> dict[str, Any]:
        try:
            async with self._http().request(method, url, json=body, headers=self._auth) as resp:
                text = await resp.text()
                status, headers = resp.status, resp.headers
        except TimeoutError:
            raise TransientSendError("provider timed out", code="timeout") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientSendError(
                f"connection failed: {type(exc).__name__}", code="network"
            ) from None
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if status >= 400:
            raw_err = data.get("error")
            err: dict[str, Any] = raw_err if isinstance(raw_err, dict) else {}
            code = _int(err.get("code"))
            raise GraphError(
                status,
                code,
                _int(err.get("error_subcode")),
                str(err.get("message") or f"HTTP {status}")[:500],
                _retry_after(headers, code),
            )
        return data

    async def download(self, url: str, max_bytes: int) -> tuple[bytes, str]:
        """Fetch a media URL Meta handed out (it wants the same bearer token)."""
        try:
            async with self._http().get(url, headers=self._auth) as resp:
                if resp.status >= 500 or resp.status == 429:
                    raise TransientSendError(f"media host answered {resp.status}")
                if resp.status >= 400:
                    raise PayloadError(f"media host answered {resp.status}")
                if (resp.content_length or 0) > max_bytes:
                    raise PayloadError(f"media above {max_bytes} bytes")
                data = await resp.content.read(max_bytes + 1)
                ctype = resp.content_type or "application/octet-stream"
        except TimeoutError:
            raise TransientSendError("media host timed out", code="timeout") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientSendError(f"media fetch failed: {type(exc).__name__}") from None
        if len(data) > max_bytes:
            raise PayloadError(f"media above {max_bytes} bytes")
        return data, ctype

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
