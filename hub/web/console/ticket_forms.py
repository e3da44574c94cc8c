"""The ticket page's forms: each resolves and checks the ticket, acts as the signed-in
person and redirects back with the outcome in the flash (post/redirect/get)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from hub.errors import Refusal
from hub.queue import PRIORITY_RANK
from hub.web.console.fmt import form_text, ref, ticket_path
from hub.web.console.merge_forms import merge_contact, merge_ticket, unmerge_contact
from hub.web.console.view import Refused, View

MAX_REPLY = 4096
MAX_NOTE = 8000

Action = Callable[[View, str, dict[str, str], MultiDictProxy[Any]], Awaitable[str]]
Handler = Callable[[web.Request], Awaitable[web.Response]]


async def _landing(view: View, tid: str, done: str, back: str) -> str:
    """Where to go after a form worked: the merge target, the queue when the ticket left
    this person's units, else back to the ticket."""
    after = await view.hub.store.get_ticket_fields(tid)
    into = after.get("merged_into", "")
    if done == "ticket_merged" and into:
        return ticket_path(await view.hub.store.get_ticket_fields(into), into)
    if not view.me.can_see(after.get("unit", "")):
        return "/console"  # transferred out of this person's units
    return back


def ticket_action(action: Action) -> Handler:
    """A ticket form: resolve and check the ticket, act, redirect back with the outcome."""

    async def handler(request: web.Request) -> web.Response:
        view = await View.of(request)
        found = await view.visible_ticket()
        if found is None:
            return view.not_found()
        tid, fields = found
        back = ticket_path(fields, tid)
        form = await request.post()
        try:
            done = await action(view, tid, fields, form)
        except Refused as exc:
            return view.redirect(back, str(exc), "error", exc.code)
        except Refusal as exc:
            return view.redirect(back, view.error_text(exc.code, str(exc)), "error", exc.code)
        flash = view.t(f"flash.{done}", number=ref(fields, tid))
        return view.redirect(await _landing(view, tid, done, back), flash, "ok", done)

    return handler


async def _reply(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    template = form_text(form, "template").strip()
    text = form_text(form, "text")
    if len(text) > MAX_REPLY:
        raise Refused(view.t("err.too_long"))
    variables = {
        str(k)[4:]: str(v).strip()[:500] for k, v in form.items() if str(k).startswith("var.")
    }
    if template:
        await view.hub.actions.reply(view.me, tid, template=template, variables=variables)
    else:
        if not text.strip():
            raise Refused(view.t("err.empty_reply"))
        files = await _store_files(view, form)
        via = form_text(form, "via").strip()[:20]
        await view.hub.actions.reply(view.me, tid, text=text, attachments=files, via=via)
    return "reply_sent"


async def _store_files(view: View, form: MultiDictProxy[Any]) -> list[dict[str, Any]]:
    """Files chosen in the composer, put in the blob store, as reply attachments."""
    out: list[dict[str, Any]] = []
    for f in form.getall("files", []):
        if not isinstance(f, FileField) or not f.filename:
            continue
        data = f.file.read(view.hub.blobs.max_bytes + 1)
        if len(data) > view.hub.blobs.max_bytes:
            raise Refused(view.t("err.file_too_large", name=f.filename))
        ref = await view.hub.blobs.put(data)
        name = f.filename.replace("/", "_").replace("\\", "_")[:200]
        out.append({"ref": ref, "name": name, "content_type": f.content_type})
    return out


async def _note(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    text = form_text(form, "text")
    if not text.strip():
        raise Refused(view.t("err.empty_note"))
    if len(text) > MAX_NOTE:
        raise Refused(view.t("err.too_long"))
    await view.hub.actions.note(view.me, tid, text)
    return "note_saved"


async def _status(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    status = form_text(form, "status")
    if status not in ("open", "resolved", "closed"):
        raise Refused(view.t("err.bad_request"))
    await view.hub.actions.set_status(view.me, tid, status)
    return f"status_{status}"


async def _claim(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    await view.hub.queue.claim(view.me, tid, fields.get("unit", "general"))
    return "claimed"


async def _release(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    await view.hub.queue.release(view.me, tid)
    return "released"


async def _transfer(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    unit = form_text(form, "unit").strip()[:40] or None
    agent = form_text(form, "agent").strip()[:64] or None
    if not unit and not agent:
        raise Refused(view.t("err.transfer_target"))
    await view.hub.queue.transfer(view.me, tid, unit, agent)
    return "transferred"


async def _priority(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    priority = form_text(form, "priority")
    if priority not in PRIORITY_RANK:
        raise Refused(view.t("err.bad_request"))
    await view.hub.actions.set_priority(view.me, tid, priority)
    return "priority_set"


async def _category(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    category = " ".join(form_text(form, "category").split())
    if len(category) > 80:
        raise Refused(view.t("err.too_long"))
    await view.hub.actions.set_category(view.me, tid, category)
    return "category_set"


TICKET_ACTIONS: dict[str, Action] = {
    "reply": _reply, "note": _note, "status": _status, "claim": _claim, "release": _release,
    "transfer": _transfer, "priority": _priority, "category": _category,
    "merge": merge_ticket, "merge-contact": merge_contact, "unmerge-contact": unmerge_contact,
}  # fmt: skip
