"""The base of every configuration section, apart from hub.settings so that feature modules
(SLA, alerts) can define their own sections and hub.settings can include them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
