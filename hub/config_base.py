"""The base of every configuration section, apart from hub.settings so that feature modules
(SLA, alerts) can define their own sections and hub.settings can include them."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _bot_token_shape(v: SecretStr) -> SecretStr:
    if not re.fullmatch(r"[0-9]+:[A-Za-z0-9_-]+", v.get_secret_value()):
        raise ValueError("bot_token must look like <digits>:<token>")
    return v


BotToken = Annotated[SecretStr, AfterValidator(_bot_token_shape)]
"""A Telegram bot token from @BotFather (``123456:ABC-...``), checked without echoing it."""
