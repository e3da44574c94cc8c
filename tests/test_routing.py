"""Routing rules, unit by unit: keywords, categories, channels, and the account's default."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hub.channelset import ChannelSet
from hub.model import Message
from hub.routing import Router
from hub.settings import RoutingRule


def _msg(text: str, channel: str = "whatsapp", **meta: str) -> Message:
    return Message(
        id="m1", channel=channel, account="wa1", provider_id="p1", sender="phone:+6281234567890",
        reply_address="+6281234567890", received_at=0.0, text=text, meta=dict(meta),
    )  # fmt: skip


def _router(*rules: dict) -> Router:
    cs = ChannelSet()
    cs.units[("whatsapp", "wa1")] = "penempatan"
    return Router([RoutingRule.model_validate(r) for r in rules], cs)


def test_first_matching_rule_wins_with_its_category_and_priority() -> None:
    """Rules are tried in order; the first match gives unit, category and priority."""
    r = _router(
        {"keywords": ["kecelakaan kerja"], "unit": "k3", "category": "K3", "priority": "urgent"},
        {"keywords": ["pabrik"], "unit": "hi_upah"},
    )
    route = r.route(_msg("Ada KECELAKAAN KERJA di pabrik kami"))
    assert (route.unit, route.category, route.priority) == ("k3", "K3", "urgent")


def test_keywords_match_whole_words_ignoring_case_and_accents() -> None:
    """'THR' matches 'thr,' but not 'thrift'; accents do not matter."""
    r = _router({"keywords": ["THR", "pesangon"], "unit": "hi_upah"})
    assert r.route(_msg("thr, belum dibayar")).unit == "hi_upah"
    assert r.route(_msg("Pésangon")).unit == "hi_upah"
    assert r.route(_msg("thrift shop")).unit == "penempatan"  # the account's default


def test_categories_from_the_channel_route_too() -> None:
    """A category the channel reports (e.g. a portal form) routes without any keyword."""
    r = _router({"categories": ["Permohonan Informasi"], "unit": "ppid"})
    assert r.route(_msg("Mohon data", category="permohonan informasi")).unit == "ppid"
    assert r.route(_msg("Mohon data")).unit == "penempatan"


def test_rules_can_be_limited_to_channels() -> None:
    """A rule for one channel leaves the others alone."""
    r = _router({"keywords": ["lowongan"], "unit": "penempatan", "channels": ["email"]})
    assert r.route(_msg("info lowongan")).unit == "penempatan"  # default anyway
    r = _router({"keywords": ["lowongan"], "unit": "vokasi", "channels": ["email"]})
    assert r.route(_msg("info lowongan")).unit == "penempatan"
    assert r.route(_msg("info lowongan", channel="email")).unit == "vokasi"


def test_a_rule_needs_something_to_match() -> None:
    """A rule with neither keywords nor categories is a configuration error."""
    with pytest.raises(ValidationError, match="keywords or categories"):
        RoutingRule.model_validate({"unit": "k3"})
