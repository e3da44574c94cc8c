"""Alert transitions to the supervisors' Telegram group.

Uses python-telegram-bot's ``Bot`` as a plain HTTP client pointed at ``api_base_url``, built
exactly as the Telegram channel builds it (``channels/telegram.py``), so the demo's fake Bot API
serves both. Messages are plain text (no parse_mode): a unit name or an IMAP error with ``_`` or
``<`` in it can never break the markup and lose the alert.

``send`` never raises on a Telegram or network failure, it returns False: the evaluation loop
must keep running (and keep the dashboard right) while Telegram is down. It does not retry
either; the caller decides whether a lost message is worth another try.
"""

from __future__ import annotations

import asyncio

import structlog
from telegram import Bot
from telegram.error import TelegramError

from channels.telegram import plain_bot
from hub.alerts import AlertTransition, TelegramAlerts

MAX_TEXT = 4096  # Telegram's limit for one message's text
SEVERITY_EMOJI = {"critical": "\U0001f534", "warning": "\U0001f7e0", "info": "\U0001f535"}
RESOLVED_EMOJI = "\u2705"
PREFIX = {
    ("id", "fired"): "AKTIF",
    ("id", "cleared"): "PULIH",
    ("en", "fired"): "FIRING",
    ("en", "cleared"): "RESOLVED",
}

log = structlog.get_logger("hub.alerts.telegram")


class TelegramAlertNotifier:
    """Sends one message per alert transition to ``settings.chat_id``."""

    def __init__(self, settings: TelegramAlerts, timeout_s: float = 10) -> None:
        self.settings = settings
        self._timeout = timeout_s
        self._base = settings.api_base_url.rstrip("/")
        self._bot: Bot | None = None

    def __repr__(self) -> str:  # never the token
        return (
            f"TelegramAlertNotifier(chat_id={self.settings.chat_id!r}, api_base_url={self._base!r})"
        )

    def text(self, transition: AlertTransition) -> str:
        """The message as the group reads it, e.g. "🔴 AKTIF [backlog] Antrean unit ..."."""
        lang = self.settings.language
        emoji = (
            RESOLVED_EMOJI
            if transition.kind == "cleared"
            else SEVERITY_EMOJI.get(transition.severity, "")
        )
        prefix = PREFIX[(lang, transition.kind)]
        body = transition.message(lang)
        return f"{emoji} {prefix} [{transition.rule}] {body}"[:MAX_TEXT]

    def _client(self) -> Bot:
        if self._bot is None:
            self._bot = plain_bot(
                self.settings.bot_token.get_secret_value(), self._base, self._timeout
            )
        return self._bot

    def _scrub(self, text: str) -> str:
        """Errors may quote the request URL, and Bot API URLs contain the token."""
        return text.replace(self.settings.bot_token.get_secret_value(), "<token>")[:300]

    async def send(self, transition: AlertTransition) -> bool:
        """True when Telegram accepted the message; False (logged, never raised) otherwise,
        and when the notifier is disabled."""
        if not self.settings.enabled:
            return False
        text = self.text(transition)
        try:
            async with asyncio.timeout(self._timeout * 2 + 1):
                bot = self._client()
                await bot.initialize()  # getMe, once; a no-op afterwards
                chat_id = int(self.settings.chat_id)
                await bot.send_message(chat_id=chat_id, text=text)
        except TimeoutError:
            log.warning("alert_telegram_failed", key=transition.key, error="timeout")
            return False
        except TelegramError as exc:
            log.warning(
                "alert_telegram_failed",
                key=transition.key,
                error=type(exc).__name__,
                detail=self._scrub(str(exc.message)),
            )
            return False
        except Exception as exc:  # a bug below us must not stop alert evaluation either
            log.warning(
                "alert_telegram_failed",
                key=transition.key,
                error=type(exc).__name__,
                detail=self._scrub(str(exc)),
            )
            return False
        return True

    async def aclose(self) -> None:
        if self._bot is not None:
            bot, self._bot = self._bot, None
            try:
                await bot.shutdown()
            except Exception as exc:  # closing a broken client is not worth an error
                log.warning("alert_telegram_close_failed", error=type(exc).__name__)
