"""Real client shapes thread into their tickets through the hub's correlation."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.email.parse import parse_mail
from hub.model import Message
from tests.helpers import HubHarness

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "email"


def _parse(name: str, at: float) -> Message:
    return parse_mail((FIXTURES / name).read_bytes(), "ppid", at).message


def _first_mail(sender: str, msgid: str, at: float) -> Message:
    """The citizen's first mail, as the channel would normalize it."""
    return Message(
        id="01first00000000000001", channel="email", account="ppid", provider_id=msgid,
        sender=f"email:{sender}", reply_address=sender, received_at=at, text="Pertanyaan",
        thread_hints=(f"email-msgid:{msgid}",),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fixture", "sent_id"),
    [
        ("reply_thunderbird.eml", "<reply-ack-1.KMN@kemnaker.go.id>"),
        ("reply_outlook.eml", "<reply-9.KMN@kemnaker.go.id>"),
        ("reply_gmail.eml", "<reply-1.KMN@kemnaker.go.id>"),  # deep in References
    ],
)
async def test_client_replies_join_the_ticket_of_the_hubs_mail(
    harness: HubHarness, fixture: str, sent_id: str
) -> None:
    """Thunderbird, Outlook and Gmail replies (changed subjects, reference chains) join the
    ticket whose outgoing mail they answer, even when the citizen has other open tickets."""
    now = harness.clock.now()
    reply = _parse(fixture, now + 3600)  # an hour later: inside the reopen window
    d = harness.dispatcher()
    [first] = await d.apply([_first_mail(reply.reply_address, "<first@warga.test>", now)])
    # the hub sent a reply on that ticket with ``sent_id``
    await harness.hub.store.remember_threads([(f"email-msgid:{sent_id}", first.ticket_id)])
    await harness.api("POST", f"/api/v1/tickets/{first.ticket_id}/status",
                      json={"status": "resolved"})  # fmt: skip
    [joined] = await d.apply([reply])
    assert joined.ticket_id == first.ticket_id
    assert joined.outcome == "reopened"


async def test_a_stranger_quoting_a_ticket_number_does_not_join(harness: HubHarness) -> None:
    """A subject naming someone else's ticket, with no thread the hub knows, opens a new one."""
    now = harness.clock.now()
    outlook = _parse("reply_outlook.eml", now + 60)  # subject carries [KMN-2026-000456]
    d = harness.dispatcher()
    [owner] = await d.apply([_first_mail("pemilik@warga.test", "<owner@warga.test>", now)])
    await harness.hub.redis.hset("hub:{tickets}:numbers", "KMN-2026-000456", owner.ticket_id)
    [got] = await d.apply([outlook])
    assert got.ticket_id != owner.ticket_id
    assert got.outcome == "new"
