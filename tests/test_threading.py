"""Thread hints: a reply joins its thread's ticket; a quoted ticket number only from its owner."""

from __future__ import annotations

import itertools

from hub.model import Message
from tests.helpers import HubHarness

_ids = itertools.count(1)


def mail(sender: str, text: str, *hints: str, msgid: str = "") -> Message:
    """An e-mail as the e-mail channel normalizes it (own Message-ID is a hint too)."""
    n = next(_ids)
    msgid = msgid or f"<m{n}@mail.test>"
    return Message(
        id=f"01test{n:014d}", channel="email", account="ppid", provider_id=msgid,
        sender=f"email:{sender}", reply_address=sender, received_at=1.8e9 + n, text=text,
        thread_hints=(f"email-msgid:{msgid}", *hints),
    )  # fmt: skip


async def _apply(h: HubHarness, *msgs: Message) -> list:
    return await h.dispatcher().apply(list(msgs))


async def test_a_reply_joins_its_thread_even_from_another_address(harness: HubHarness) -> None:
    """In-Reply-To naming a stored message puts the reply on that ticket, whoever sends it,
    without making the other address part of the contact."""
    [first] = await _apply(harness, mail("siti@mail.test", "Gaji belum dibayar", msgid="<a@x>"))
    [reply] = await _apply(
        harness,
        mail("siti.kantor@mail.test", "Subjek diganti", "email-msgid:<a@x>", msgid="<b@x>"),
    )
    assert reply.ticket_id == first.ticket_id
    assert reply.outcome == "appended"
    _, contact = await harness.api("GET", f"/api/v1/contacts/{first.contact_id}")
    assert [i["value"] for i in contact["identities"]] == ["siti@mail.test"]
    # the reply's own Message-ID now names the thread too: a third address quoting it joins
    [again] = await _apply(harness, mail("hrd@pabrik.test", "Tanggapan", "email-msgid:<b@x>"))
    assert again.ticket_id == first.ticket_id


async def test_quoted_ticket_number_counts_only_from_its_contact(harness: HubHarness) -> None:
    """A ticket number in the subject joins the ticket only when its own citizen writes."""
    [first] = await _apply(harness, mail("siti@mail.test", "Pengaduan"))
    await harness.drain_inbound()
    number = (await harness.ticket(first.ticket_id))["number"]
    [own] = await _apply(harness, mail("siti@mail.test", "Susulan", f"ticket-number:{number}"))
    assert own.ticket_id == first.ticket_id
    [stranger] = await _apply(
        harness, mail("orang.lain@mail.test", "Ikut tiket orang", f"ticket-number:{number}")
    )
    assert stranger.ticket_id != first.ticket_id
    assert stranger.outcome == "new"


async def test_same_subject_from_another_person_is_another_ticket(harness: HubHarness) -> None:
    """Two citizens writing 'THR belum dibayar' get two tickets: a subject is not a thread."""
    [a] = await _apply(harness, mail("a@mail.test", "THR belum dibayar"))
    [b] = await _apply(harness, mail("b@mail.test", "THR belum dibayar"))
    assert a.ticket_id != b.ticket_id


async def test_the_same_mail_twice_is_stored_once(harness: HubHarness) -> None:
    """A mail fetched twice (IMAP resync, SMTP retry) is one message on one ticket."""
    m = mail("siti@mail.test", "Sekali saja", msgid="<once@x>")
    [first] = await _apply(harness, m)
    [second] = await _apply(harness, m)
    assert second.duplicate
    assert second.ticket_id == first.ticket_id
    full = await harness.ticket(first.ticket_id)
    assert [x["text"] for x in full["messages"] if x["direction"] == "in"] == ["Sekali saja"]
