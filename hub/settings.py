"""Hub configuration: one TOML file plus ``HUB__SECTION__KEY`` environment overrides.

Validated once at start-up so that a typo or a missing secret stops the hub with a message
that names the key, instead of failing at 3 a.m. on the first message of that channel.
Secrets are ``SecretStr``: they never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    IPvAnyNetwork,
    SecretStr,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from hub.alerts import AlertsSection
from hub.config_base import BotToken, _Section
from hub.sla import SlaSection

ENV_PREFIX = "HUB__"

AccountName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]


class ConfigError(Exception):
    """The configuration cannot start a hub; the message names every offending key."""


class HubSection(_Section):
    public_url: str = Field(
        description="Base URL the providers call (scheme, host, port); signed URLs are built "
        "from it, never from the request's Host header."
    )
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(8080, ge=0, le=65535)
    ops_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="A process without the web role serves /healthz, /readyz and /metrics on "
        "this port (probes and Prometheus for dispatchers, senders, pollers); 0 = none",
    )
    data_dir: Path = Path("var")
    ticket_prefix: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2,6}$")] = "KMN"
    reopen_window_hours: float = Field(72.0, ge=0)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Reverse proxies whose X-Forwarded-For names the client (IPs or CIDRs); "
        "from anyone else the header is ignored",
    )
    forged_webhooks_per_ip_per_minute: int = Field(
        60,
        ge=1,
        description="Webhook calls with a bad signature one client may make per minute; "
        "beyond it its calls get 429 before any work (providers never sign wrongly)",
    )
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    default_region: str = Field("ID", description="Region for phone numbers written without +CC")

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class RedisSection(_Section):
    url: str = Field("", description="redis:// URL; empty means start an embedded redis-server")
    server_binary: str = "redis-server"
    embedded_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    appendfsync: Literal["always", "everysec", "no"] = "everysec"
    inbound_shards: int = Field(4, ge=1, le=1024)
    stream_retention_hours: float = Field(
        24.0,
        ge=0,
        description="Processed stream entries are trimmed after this; unprocessed ones never "
        "(the messages themselves live on their tickets; dead letters are never trimmed)",
    )
    cluster: bool = Field(
        False,
        description="url names one node of a Redis Cluster; the hub discovers the others "
        "(keys carry hash tags, so the same code runs on both)",
    )

    @model_validator(mode="after")
    def _cluster_needs_url(self) -> RedisSection:
        if self.cluster and not self.url:
            raise ValueError(
                "redis.cluster = true needs redis.url (a node of the cluster); "
                "the embedded server is single-node"
            )
        return self


class DispatcherSection(_Section):
    batch_size: int = Field(100, ge=1, le=10_000)
    block_ms: int = Field(1000, ge=1)
    claim_idle_ms: int = Field(30_000, ge=10)
    lease_ms: int = Field(10_000, ge=50)
    max_deliveries: int = Field(5, ge=1)


class OutboxSection(_Section):
    max_attempts: int = Field(6, ge=1)
    backoff_base_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(300.0, gt=0)
    send_timeout_s: float = Field(15.0, gt=0)
    claim_idle_ms: int = Field(60_000, ge=10)
    block_ms: int = Field(1000, ge=1)
    concurrency: int = Field(32, ge=1)


Role = Literal["agent", "supervisor", "admin"]
Priority = Literal["urgent", "high", "normal", "low"]


class ApiToken(_Section):
    """A machine client's token (a CRM, a script). People use accounts and their own tokens."""

    name: str
    token: SecretStr = Field(min_length=16)
    role: Role = "supervisor"
    units: list[str] = Field(default_factory=list, description="for role agent: its units")


class ApiSection(_Section):
    tokens: list[ApiToken] = Field(default_factory=list)


class AckSection(_Section):
    enabled: bool = True
    default_language: Literal["id", "en"] = "id"
    templates: dict[str, str] = Field(
        default_factory=lambda: {
            "id": "Terima kasih telah menghubungi Kementerian Ketenagakerjaan. "
            "Pengaduan Anda telah kami terima dengan nomor tiket {ticket_number}. "
            "Petugas kami akan segera menindaklanjuti.",
            "en": "Thank you for contacting the Ministry of Manpower. "
            "We have received your message as ticket {ticket_number}. "
            "An officer will follow up shortly.",
        }
    )

    @model_validator(mode="after")
    def _both_languages(self) -> AckSection:
        for lang in ("id", "en"):
            text = self.templates.get(lang)
            if not text:
                raise ValueError(f"templates.{lang} is required")
            if "{ticket_number}" not in text:
                raise ValueError(f"templates.{lang} must contain {{ticket_number}}")
        unknown = set(self.templates) - {"id", "en"}
        if unknown:
            raise ValueError(f"templates: unknown language(s) {sorted(unknown)}; use id, en")
        return self


class ContentTemplate(_Section):
    """An approved WhatsApp template (Twilio Content API) agents may send outside 24 h."""

    content_sid: Annotated[str, StringConstraints(pattern=r"^HX[0-9a-fA-F]{32}$")]
    description: str = ""
    language: Literal["id", "en"] = "id"
    variables: list[str] = Field(default_factory=list)


class TwilioWhatsAppAccount(_Section):
    provider: Literal["twilio"] = "twilio"
    number: str = Field(description="The WhatsApp sender in E.164, e.g. +628119521150")
    account_sid: Annotated[str, StringConstraints(pattern=r"^AC[0-9a-fA-F]{32}$")]
    auth_token: SecretStr = Field(min_length=8)
    api_base_url: str = "https://api.twilio.com"
    ack_language: Literal["id", "en"] | None = None
    unit: str = "general"
    templates: dict[str, ContentTemplate] = Field(default_factory=dict)


class MetaApp(_Section):
    """What every Meta (Graph API) channel account needs: the app that receives the webhooks
    and the token that sends."""

    access_token: SecretStr = Field(min_length=8, description="System-user access token")
    app_secret: SecretStr = Field(
        min_length=8, description="The app's secret: signs X-Hub-Signature-256"
    )
    verify_token: SecretStr = Field(
        min_length=8, description="Chosen by us, typed into the app's webhook settings"
    )
    api_base_url: str = Field("https://graph.facebook.com", pattern=r"^https?://")
    api_version: Annotated[str, StringConstraints(pattern=r"^v[0-9]+\.[0-9]+$")] = "v21.0"
    max_media_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    unit: str = "general"
    ack_language: Literal["id", "en"] | None = None


class CloudTemplate(_Section):
    """An approved WhatsApp message template at Meta, sent by name and language."""

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,512}$")]
    language: str = Field("id", pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")
    description: str = ""
    variables: list[str] = Field(default_factory=list, description="body parameters, in order")


class CloudWhatsAppAccount(MetaApp):
    """A WhatsApp number on Meta's Cloud API (the second provider beside Twilio)."""

    provider: Literal["cloud"]
    number: str = Field(description="The WhatsApp number in E.164, for display and matching")
    phone_number_id: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,30}$")]
    templates: dict[str, CloudTemplate] = Field(default_factory=dict)


def _whatsapp_provider(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("provider", "twilio"))
    return str(getattr(value, "provider", "twilio"))


UNION_TAGS = frozenset({"twilio", "cloud"})
WhatsAppAccount = Annotated[
    Annotated[TwilioWhatsAppAccount, Tag("twilio")] | Annotated[CloudWhatsAppAccount, Tag("cloud")],
    Discriminator(_whatsapp_provider),
]


class WhatsAppChannel(_Section):
    enabled: bool = True
    window_hours: float = Field(24.0, gt=0)
    accounts: dict[AccountName, WhatsAppAccount] = Field(default_factory=dict)


class InstagramAccount(MetaApp):
    """An Instagram professional account (@ppid.kemnaker) through the Messenger Platform."""

    ig_account_id: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,30}$")] = Field(
        description="The account's Instagram id: entry.id and recipient.id in webhooks"
    )
    username: str = ""
    window_hours: float = Field(24.0, gt=0)
    human_agent_hours: float = Field(
        168.0,
        ge=0,
        description="Agents may answer until this long after the citizen's last message with "
        "the HUMAN_AGENT tag (the app needs that permission); 0 turns it off",
    )


class InstagramChannelSection(_Section):
    enabled: bool = True
    accounts: dict[AccountName, InstagramAccount] = Field(default_factory=dict)


class EmailAccount(_Section):
    """One mailbox (ppid@kemnaker.go.id): IMAP in, SMTP out."""

    address: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    display_name: str = "Kemnaker"
    unit: str = "general"
    ack_language: Literal["id", "en"] | None = None
    intake: Literal["imap", "smtp"] = "imap"
    imap_host: str = ""
    imap_port: int = Field(993, ge=1, le=65535)
    imap_security: Literal["tls", "plain"] = "tls"
    imap_username: str = ""
    imap_password: SecretStr = SecretStr("")
    imap_mailbox: str = "INBOX"
    imap_idle: bool = True
    imap_idle_renew_seconds: float = Field(1200.0, gt=0, lt=29 * 60)
    imap_poll_seconds: float = Field(60.0, gt=0)
    imap_import_existing: bool = True
    smtp_host: str
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_timeout_seconds: float = Field(30.0, gt=0)
    max_attachment_bytes: int = Field(10 * 1024 * 1024, ge=0)

    @model_validator(mode="after")
    def _imap_complete(self) -> EmailAccount:
        if self.intake == "imap" and not (self.imap_host and self.imap_username):
            raise ValueError("intake = imap needs imap_host and imap_username")
        return self


class SmtpIntakeSection(_Section):
    """Direct intake: the ministry's MTA forwards mail for the accounts' addresses here,
    instead of the hub polling IMAP. Bind it to the relay's network only (no AUTH)."""

    enabled: bool = False
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(2525, ge=0, le=65535)
    max_message_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    server_hostname: str = ""
    rate_per_sender_per_window: int = Field(
        30,
        ge=0,
        description="mails one envelope sender may relay per window; past it MAIL FROM gets "
        "451 4.7.1 (the relay retries later); 0 = no limit",
    )
    rate_per_ip_per_window: int = Field(
        120,
        ge=0,
        description="mails one client IP (an IPv6 client: its /64) may relay per window; past "
        "it MAIL FROM gets 451 4.7.1; 0 = no limit",
    )
    rate_window_seconds: int = Field(60, ge=1, le=86_400)
    rate_ip_exempt: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="networks with no IP quota (the site's own MTA, which relays every "
        "citizen's mail: the sender quota still applies to what it relays)",
    )


class EmailChannel(_Section):
    enabled: bool = True
    accounts: dict[AccountName, EmailAccount] = Field(default_factory=dict)
    smtp_intake: SmtpIntakeSection = Field(default_factory=SmtpIntakeSection)  # type: ignore[arg-type]


class PortalAccount(_Section):
    """bantuan.kemnaker.go.id: signed webhooks in (plus a polling fallback), its API out."""

    api_base_url: str = Field(pattern=r"^https?://")
    api_token: SecretStr = Field(min_length=8)
    webhook_secret: SecretStr = Field(min_length=16)
    nik_hash_key: SecretStr = SecretStr("")  # hub-wide key for NIK matching; "" → webhook_secret
    replay_window_s: float = Field(300.0, gt=0)
    poll: bool = Field(False, description="also poll the portal's event list (fallback)")
    poll_interval_s: float = Field(30.0, gt=0)
    poll_limit: int = Field(100, ge=1, le=1000)
    send_timeout_s: float = Field(15.0, gt=0)
    reply_window_hours: float = Field(720.0, gt=0)
    unit: str = "general"
    ack_language: Literal["id", "en"] | None = None


class PortalChannelSection(_Section):
    enabled: bool = True
    accounts: dict[AccountName, PortalAccount] = Field(default_factory=dict)


class CallLog(_Section):
    """One log file of the telephony platform to tail."""

    kind: Literal["cdr_csv", "queue_log", "jsonl"]
    path: Path
    poll_interval: float = Field(1.0, gt=0)
    max_lines: int = Field(500, ge=1)
    columns: list[str] = Field(default_factory=list, description="cdr_csv: [] detects")
    timezone: str = "Asia/Jakarta"
    usegmtime: bool = False
    inbound_contexts: list[str] = Field(default_factory=list)
    outbound_contexts: list[str] = Field(default_factory=list)


class CallAccount(_Section):
    """The call center (1500630): its call logs; abandoned calls become callback tickets."""

    number: str = "1500630"
    unit: str = "general"
    logs: list[CallLog] = Field(default_factory=list)
    # Replies to call tickets become callback requests the dialer reads: appended to a
    # JSON-lines file, or POSTed to the dialer's URL with a bearer token.
    callback_list: Literal["file", "http"] = "file"
    callback_file: Path = Path("var/callbacks.jsonl")
    dialer_url: str = ""
    dialer_token: SecretStr = SecretStr("")
    # Live call events (POST /webhooks/call/<account>), signed like the portal's webhooks;
    # an empty secret turns the endpoint off for this account (404).
    events_secret: SecretStr = SecretStr("")
    events_replay_window_s: float = Field(300, gt=0)

    @model_validator(mode="after")
    def _dialer_complete(self) -> CallAccount:
        if self.callback_list == "http" and not self.dialer_url:
            raise ValueError("callback_list = http needs dialer_url")
        return self


class CallChannel(_Section):
    enabled: bool = True
    accounts: dict[AccountName, CallAccount] = Field(default_factory=dict)


class WebChannel(_Section):
    """The hub's own public complaint form (``/lapor``) and ticket-status page."""

    enabled: bool = True
    form_secret: SecretStr = Field(min_length=16, description="signs the form's timestamp")
    unit: str = "general"
    min_fill_seconds: float = Field(3.0, ge=0, description="faster submissions are bots")
    max_links: int = Field(2, ge=0, description="more links in a message: spam")
    rate_per_ip_per_hour: int = Field(20, ge=1)
    rate_per_contact_per_hour: int = Field(5, ge=1)


class TelegramAccount(_Section):
    """One Telegram bot (one configured account)."""

    bot_token: BotToken = Field(description="From @BotFather, e.g. 123456:ABC-...")
    webhook_secret: SecretStr = Field(
        description="Sent back by Telegram in X-Telegram-Bot-Api-Secret-Token"
    )
    api_base_url: str = "https://api.telegram.org"
    unit: str = "general"
    ack_language: Literal["id", "en"] | None = None

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, v: SecretStr) -> SecretStr:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", v.get_secret_value()):
            raise ValueError("webhook_secret must be 1-256 characters of A-Za-z0-9_-")
        return v


class TelegramChannelSection(_Section):
    enabled: bool = True
    accounts: dict[AccountName, TelegramAccount] = Field(default_factory=dict)


class ChannelsSection(_Section):
    whatsapp: WhatsAppChannel = Field(default_factory=WhatsAppChannel)  # type: ignore[arg-type]
    email: EmailChannel = Field(default_factory=EmailChannel)
    portal: PortalChannelSection = Field(default_factory=PortalChannelSection)
    call: CallChannel = Field(default_factory=CallChannel)
    telegram: TelegramChannelSection = Field(default_factory=TelegramChannelSection)
    instagram: InstagramChannelSection = Field(default_factory=InstagramChannelSection)
    web: WebChannel | None = None  # the form is served only when [channels.web] is configured


class DemoUser(_Section):
    username: str
    password: SecretStr
    role: Role = "agent"
    units: list[str] = Field(default_factory=list)
    display_name: str = ""


class DemoSection(_Section):
    fake_twilio_port: int = Field(8090, ge=0, le=65535)
    fake_portal_port: int = Field(8091, ge=0, le=65535)
    fake_graph_port: int = Field(8092, ge=0, le=65535, description="WhatsApp Cloud, Instagram")
    fake_telegram_port: int = Field(8093, ge=0, le=65535)
    citizens: int = Field(5, ge=0, le=1000)
    users: list[DemoUser] = Field(default_factory=list)


class UnitConfig(_Section):
    """A unit kerja: a queue of its own, with its own assignment policy."""

    name_id: str
    name_en: str
    policy: Literal["manual", "round_robin", "least_loaded"] = "manual"


DEFAULT_UNITS: dict[str, dict[str, str]] = {
    "vokasi": {
        "name_id": "Bina Penyelenggaraan Pelatihan Vokasi dan Pemagangan",
        "name_en": "Vocational training and apprenticeship",
    },
    "penempatan": {
        "name_id": "Bina Penempatan Tenaga Kerja Dalam Negeri",
        "name_en": "Domestic job placement",
    },
    "k3": {"name_id": "Bina Pengujian K3", "name_en": "Occupational safety and health testing"},
    "kelembagaan": {
        "name_id": "Bina Kelembagaan Pelatihan Vokasi",
        "name_en": "Vocational training institutions",
    },
    "hi_upah": {
        "name_id": "Hubungan Kerja dan Pengupahan",
        "name_en": "Industrial relations and wages",
    },
    "ppid": {"name_id": "PPID (permohonan informasi)", "name_en": "PPID information requests"},
    "general": {"name_id": "Umum (call center / PTSA)", "name_en": "General queue"},
}


class RoutingRule(_Section):
    """Keywords (whole words, any case) in a new ticket's first message, or a category the
    channel reports (a portal form's category, say), send the ticket to a unit."""

    keywords: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    unit: str
    category: str = ""
    priority: Priority | None = None
    channels: list[str] = Field(default_factory=list, description="empty: every channel")

    @model_validator(mode="after")
    def _something_to_match(self) -> RoutingRule:
        if not self.keywords and not self.categories:
            raise ValueError("a rule needs keywords or categories")
        return self


class ConsoleSection(_Section):
    session_hours: float = Field(12.0, gt=0)
    lockout_failures: int = Field(5, ge=1)
    lockout_minutes: float = Field(15.0, gt=0)
    claim_lease_minutes: float = Field(15.0, gt=0, description="an untouched claim returns")
    agent_capacity: int = Field(6, ge=1, description="load an agent carries at most")
    channel_weights: dict[str, int] = Field(
        default_factory=lambda: {
            "whatsapp": 1,
            "email": 1,
            "telegram": 1,
            "instagram": 1,
            "portal": 1,
            "call": 3,
        },
        description="load a ticket adds to its agent, by channel (a call counts more)",
    )
    default_language: Literal["id", "en"] = "id"


class RetentionSection(_Section):
    """How long closed tickets stay in Redis (docs/performance.md, "Archiving closed
    tickets"). Off by default: nothing is ever deleted unless an operator chooses a cut."""

    archive_closed_after_days: int = Field(
        0,
        ge=0,
        description="closed tickets (and resolved ones past the reopen window) whose last "
        "activity is older than this many days move from Redis to the archive files; 0 = off",
    )
    archive_dir: Path | None = Field(
        None, description="where the archive files go; default <hub.data_dir>/archive"
    )
    every_minutes: float = Field(60.0, gt=0, description="how often the observer archives")
    batch_size: int = Field(200, ge=1, le=5000, description="tickets read per step")
    max_per_run: int = Field(20_000, ge=1, description="tickets archived per run at most")


class CannedResponse(_Section):
    """A ready answer; {name}, {ticket_number} and {agent} are filled in."""

    title_id: str
    title_en: str
    text_id: str
    text_en: str


class Settings(_Section):
    hub: HubSection
    redis: RedisSection = Field(default_factory=RedisSection)  # type: ignore[arg-type]
    dispatcher: DispatcherSection = Field(default_factory=DispatcherSection)  # type: ignore[arg-type]
    outbox: OutboxSection = Field(default_factory=OutboxSection)  # type: ignore[arg-type]
    api: ApiSection = Field(default_factory=ApiSection)
    ack: AckSection = Field(default_factory=AckSection)
    channels: ChannelsSection = Field(default_factory=ChannelsSection)
    demo: DemoSection = Field(default_factory=DemoSection)  # type: ignore[arg-type]
    units: dict[AccountName, UnitConfig] = Field(
        default_factory=lambda: {k: UnitConfig.model_validate(v) for k, v in DEFAULT_UNITS.items()}
    )
    routing: list[RoutingRule] = Field(default_factory=list)
    console: ConsoleSection = Field(default_factory=ConsoleSection)  # type: ignore[arg-type]
    canned: dict[AccountName, CannedResponse] = Field(default_factory=dict)
    alerts: AlertsSection = Field(default_factory=AlertsSection)
    sla: SlaSection = Field(default_factory=SlaSection)
    retention: RetentionSection = Field(default_factory=RetentionSection)  # type: ignore[arg-type]

    @property
    def archive_dir(self) -> Path:
        """Where archived tickets and the saved monthly reports are written."""
        return self.retention.archive_dir or self.hub.data_dir / "archive"

    @model_validator(mode="after")
    def _units_exist(self) -> Settings:
        if "general" not in self.units:
            raise ValueError("units.general is required: it is the queue of last resort")
        where = [(f"routing[{i}].unit", r.unit) for i, r in enumerate(self.routing)]
        for name, acct in self.channels.whatsapp.accounts.items():
            where.append((f"channels.whatsapp.accounts.{name}.unit", acct.unit))
        for name, mail in self.channels.email.accounts.items():
            where.append((f"channels.email.accounts.{name}.unit", mail.unit))
        for name, portal in self.channels.portal.accounts.items():
            where.append((f"channels.portal.accounts.{name}.unit", portal.unit))
        for name, call in self.channels.call.accounts.items():
            where.append((f"channels.call.accounts.{name}.unit", call.unit))
        for name, tg in self.channels.telegram.accounts.items():
            where.append((f"channels.telegram.accounts.{name}.unit", tg.unit))
        for name, ig in self.channels.instagram.accounts.items():
            where.append((f"channels.instagram.accounts.{name}.unit", ig.unit))
        if self.channels.web is not None:
            where.append(("channels.web.unit", self.channels.web.unit))
        for i, t in enumerate(self.api.tokens):
            where += [(f"api.tokens[{i}].units", u) for u in t.units]
        where += [
            (f"sla.policies[{i}].unit", p.unit)
            for i, p in enumerate(self.sla.policies)
            if p.unit != "*"
        ]
        for key, unit in where:
            if unit not in self.units:
                raise ValueError(f"{key}: unknown unit {unit!r} (units: {sorted(self.units)})")
        return self


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(path)}: cannot override inside a non-table value")
        node = child
    node[path[-1]] = value


def _parse_env_value(raw: str) -> Any:
    """Environment values are TOML literals when they parse as one, else plain strings."""
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
    if isinstance(value, int | float) and not isinstance(value, bool) and str(value) != raw.strip():
        return raw  # "+628…", "1_000", "0x1f": the operator wrote text, not a number
    return value


def apply_env_overrides(tree: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``HUB__CHANNELS__WHATSAPP__ACCOUNTS__WA1__AUTH_TOKEN=x`` sets that nested key."""
    for key, raw in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX:
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        _set_path(tree, path, _parse_env_value(raw))
    return tree


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        # A tagged union (WhatsApp's providers) puts its tag in the path: the user never
        # wrote it, so leave it out.
        loc = [str(p) for p in e["loc"]]
        parts = [
            p
            for i, p in enumerate(loc)
            if not (p in UNION_TAGS and i >= 2 and loc[i - 2] == "accounts")
        ]
        key = ".".join(parts) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and section)"
        lines.append(f"  {key}: {msg}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, override and validate; raises ConfigError naming each bad key."""
    p = Path(path)
    try:
        tree = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {p}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    apply_env_overrides(tree, os.environ if environ is None else environ)
    try:
        settings = Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    return settings
