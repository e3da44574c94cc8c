"""The ticket page's merge forms: merge this ticket into another, merge another ticket's
contact into this one's, and undo a contact merge. A merge needs its confirmation box
ticked (the second step); every refusal is explained in the page's language."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multidict import MultiDictProxy

from hub.ports import split_ticket_id
from hub.ticket_actions import ActionError
from hub.web.console.fmt import form_text
from hub.web.console.view import Refused, View

MAX_REF = 64


def _refused(view: View, scope: str, exc: ActionError, number: str = "") -> Refused:
    """``err.merge_ticket.<code>`` / ``err.merge_contact.<code>``, else the generic text."""
    for key in (f"err.{scope}.{exc.code}", f"err.merge.{exc.code}"):
        if view.t.has(key):
            return Refused(view.t(key, number=number), exc.code)
    return Refused(view.error_text(exc.code, str(exc)), exc.code)


async def _other_ticket(view: View, form: Mapping[str, Any], scope: str) -> tuple[str, str]:
    """The ticket the form names (a number such as KMN-2026-000123, any case), if this
    person may see it, after the confirmation box was ticked: (id, number as typed)."""
    number = "".join(form_text(form, "number").split())[:MAX_REF]
    if not number:
        raise Refused(view.t("err.merge.number"), "number")
    if form_text(form, "confirm") != "1":
        raise Refused(view.t("err.merge.confirm"), "confirm")
    store = view.hub.store
    other = await store.resolve_ticket_ref(number) or await store.resolve_ticket_ref(number.upper())
    if other is None:
        raise Refused(view.t("err.merge.not_found", number=number), "not_found")
    try:
        await view.hub.actions.visible(view.me, other)
    except ActionError as exc:
        raise _refused(view, scope, exc, number) from None
    return other, number


async def merge_ticket(
    view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]
) -> str:
    """This ticket closes into the one named; that one shows both timelines."""
    other, number = await _other_ticket(view, form, "merge_ticket")
    try:
        await view.hub.actions.merge_tickets(view.me, tid, other)
    except ActionError as exc:
        raise _refused(view, "merge_ticket", exc, number) from None
    return "ticket_merged"


async def merge_contact(
    view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]
) -> str:
    """The citizen of the ticket named becomes this ticket's citizen (identities move)."""
    other, number = await _other_ticket(view, form, "merge_contact")
    into, absorbed = split_ticket_id(tid)[0], split_ticket_id(other)[0]
    try:
        await view.hub.actions.merge_contacts(view.me, into, absorbed)
    except ActionError as exc:
        raise _refused(view, "merge_contact", exc, number) from None
    return "contact_merged"


async def unmerge_contact(
    view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]
) -> str:
    """A contact merged into this ticket's citizen gets its identities back."""
    other = form_text(form, "contact").strip()[:MAX_REF]
    if not other:
        raise Refused(view.t("err.bad_request"), "bad_request")
    try:
        await view.hub.actions.unmerge_contacts(view.me, split_ticket_id(tid)[0], other)
    except ActionError as exc:
        raise _refused(view, "merge_contact", exc) from None
    return "contact_unmerged"
