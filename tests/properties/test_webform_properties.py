"""Properties of the public complaint form's pure parts: field validation and the form token.

``_validate`` turns any posted form into a Submission whose errors name the fields to fix,
or, without errors, into identities the hub can key a contact on. ``_token_age`` reads the
signed timestamp the form carries back: a forged or malformed token is ``None`` (the
submission is refused with the form again), never an exception (a 500).
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.web.i18n import Translator
from hub.web.webform import (
    CATEGORIES,
    MAX_EMAIL,
    MAX_NAME,
    MAX_TEXT,
    _sign,
    _token_age,
    _validate,
)
from tests.properties.strategies import ANY_TEXT, E164, NUMBERISH, PHONES, SENDER, TIMEOUT_S, fuzz

pytestmark = pytest.mark.timeout(TIMEOUT_S)

SECRET = "webform-secret-properties"
NOW = 1_772_000_000.0
FIELDS = ["name", "phone", "email", "category", "message", "consent", "website", "token"]

VALUES: dict[str, st.SearchStrategy[str]] = {
    "name": st.one_of(st.just("Siti Rahayu"), ANY_TEXT, st.just("A" * (MAX_NAME + 5))),
    "phone": st.one_of(PHONES, ANY_TEXT),
    "email": st.one_of(
        st.sampled_from(
            [
                "siti@example.id",
                "Siti@Example.ID",
                "a@b",
                "x@y.z",
                "@@",
                " a@b.id ",
                "a b@c.id",
                "<a@b.id>",
                "a@b.id\n",
                "ä@ö.id",
                "x" * 300 + "@b.id",
            ]
        ),
        ANY_TEXT,
    ),
    "category": st.one_of(st.sampled_from([*CATEGORIES, "UPAH", ""]), ANY_TEXT),
    "message": st.one_of(
        st.just("Gaji saya belum dibayar."),
        ANY_TEXT,
        st.just("https://a.example www.b.example http://c.example " * 3),
        st.just("x" * (MAX_TEXT + 10)),
        st.just("   "),
    ),
    "consent": st.sampled_from(["yes", "no", "", "YES", "on"]),
}
FORMS = st.fixed_dictionaries(
    {},
    optional={k: VALUES.get(k, st.one_of(ANY_TEXT, NUMBERISH)) for k in FIELDS},
)


def _view() -> Any:
    return SimpleNamespace(t=Translator("id"))


@fuzz(200)
@given(form=FORMS, max_links=st.integers(0, 5))
def test_validation_names_fields_or_gives_identities(form: dict[str, str], max_links: int) -> None:
    sub = _validate(_view(), form, "ID", max_links)
    assert set(sub.errors) <= {"name", "phone", "email", "category", "message", "consent"}
    assert all(isinstance(v, str) and v for v in sub.errors.values())
    if sub.errors:
        return
    assert sub.name
    assert len(sub.name) <= MAX_NAME
    assert sub.category in CATEGORIES
    assert sub.message
    assert len(sub.message) <= MAX_TEXT
    assert len(sub.email) <= MAX_EMAIL
    assert sub.consent
    assert sub.identities, "a valid submission names the citizen somehow"
    for identity in sub.identities:
        assert SENDER.fullmatch(identity), identity
        identity.encode("utf-8")
    if sub.e164:
        assert E164.fullmatch(sub.e164), sub.e164


TOKENS = st.one_of(
    ANY_TEXT,
    NUMBERISH,
    st.builds(lambda n, rest: f"{n}.{rest}", st.integers(0, 10**12), ANY_TEXT),
    st.builds(lambda n: _sign(SECRET, n), st.integers(0, 10**12)),
    st.builds(lambda n: _sign("another-secret", n), st.integers(0, 10**12)),
    st.sampled_from(["", ".", "1.", ".abc", "-5.x", "1e3.x"]),
)


@fuzz(200)
@given(token=TOKENS)
def test_token_is_an_age_or_none(token: str) -> None:
    age = _token_age(SECRET, token, NOW)
    assert age is None or (isinstance(age, float | int) and math.isfinite(age))
    if age is not None:
        assert token == _sign(SECRET, int(token.partition(".")[0]))


@pytest.mark.parametrize(
    "token",
    ["².abc", "٣.abc", "9" * 5000 + ".abc", "1.é", "1.\udcff"],
    ids=["superscript", "arabic-indic", "5000-digits", "non-ascii", "surrogate"],
)
def test_token_with_odd_digits_is_none(token: str) -> None:
    """Digits int() refuses, too many of them, non-ASCII after the dot: all None."""
    assert _token_age(SECRET, token, NOW) is None
