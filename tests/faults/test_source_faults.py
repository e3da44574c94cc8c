"""Fault 5 (issue 8): the pulled sources break while they are being read, under load.

- IMAP: the connection between the hub's poller and a real Dovecot is dropped mid-IDLE and
  mid-FETCH (``tests/faults/imap_proxy.py`` cuts it at a chosen byte of the conversation)
  while citizens' mails keep arriving in the mailbox.
- Call log: the JSON-lines log the call tailer reads is rotated (rename + a new file, the
  platform reopening it only a few lines later) and truncated in place (copytruncate) while
  the tailer is in the middle of it and the platform keeps appending.

The hub runs every role in one process (``python -m hub run``) against the fault rig's own
redis-server; the checker (``tests/faults/checker.py``) reads every ticket back through the
API: every mail and every call on its citizen's one ticket, once, in order, none lost. The
only exception is copytruncate's own window: lines the platform wrote between logrotate's
copy and its truncate are in neither file, so nobody can read them; the test makes that
window explicit and asserts that nothing outside it is lost (docs/reliability.md, fault 5).

Quick variants run in the normal suite; ``chaos`` ones with ``make chaos`` (HUB_CHAOS=1).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.redis_log_position import RedisLogPosition
from tests.email.conftest import PASSWORD, USER, Dovecot
from tests.faults.checker import ProviderSend, Report, check, read_tickets
from tests.faults.conftest import TOKEN, Rig, record
from tests.faults.imap_proxy import CuttingProxy
from tests.faults.loadgen import Outcome, Planned, steady
from tests.faults.processes import HubProc
from tests.faults.sources import CallLogWriter, MailLoad, SmtpSink, plan_calls, plan_mails
from tests.helpers import eventually

MAIL_ACCOUNT = "ppid"
CALL_ACCOUNT = "hotline"
TAILER = f"call:{CALL_ACCOUNT}:0:jsonl"  # hub.call_intake names the account's first log so


@dataclass(frozen=True)
class Scale:
    name: str
    mails: int
    mail_contacts: int
    mail_rate: float
    cuts: tuple[str, ...]  # CuttingProxy modes or "kick" (doveadm kick), in order
    calls: int
    call_contacts: int
    call_rate: float
    log_faults: tuple[str, ...]  # "rotate" | "copytruncate" | "copytruncate_regrow"
    window: int  # lines the platform writes in a rotation's or copytruncate's window
    limit_s: float


QUICK = Scale(
    "quick", mails=300, mail_contacts=30, mail_rate=60.0,
    cuts=("idle_exists", "fetch", "fetch_head", "kick", "idle"),
    calls=400, call_contacts=40, call_rate=100.0,
    log_faults=("rotate", "copytruncate", "copytruncate_regrow", "rotate"), window=8,
    limit_s=60.0,
)  # fmt: skip
CHAOS = Scale(
    "chaos", mails=3000, mail_contacts=300, mail_rate=50.0,
    cuts=("idle_exists", "fetch", "fetch_head", "kick", "idle") * 4,
    calls=6000, call_contacts=600, call_rate=250.0,
    log_faults=("rotate", "copytruncate", "copytruncate_regrow") * 8, window=20,
    limit_s=600.0,
)  # fmt: skip
SCALES = [
    pytest.param(QUICK, id="quick", marks=[pytest.mark.timeout(240)]),
    pytest.param(CHAOS, id="chaos", marks=[pytest.mark.chaos, pytest.mark.timeout(900)]),
]


def trigger_points(n: int, faults: int, spread: float = 0.7) -> list[int]:
    """After how many acknowledged messages each fault is armed: spread over the first
    ``spread`` of the load, so that the load still runs when the last one happens."""
    return [max(1, int(n * spread * (i + 1) / faults)) for i in range(faults)]


async def source_report(
    rig: Rig,
    plan: Sequence[Planned],
    outcomes: Mapping[str, Outcome],
    sends: Callable[[], list[ProviderSend]],
    kinds: Collection[str],
    outboxes: Iterable[str],
    limit_s: float,
    retry: bool = True,
) -> Report:
    """Drain (inbound and the given outboxes), then check; re-checks (bounded) while
    messages or replies are still on their way, like ``Rig.report`` (``retry=False``: once,
    when the source is known to be read to its end)."""
    deadline = time.monotonic() + limit_s
    await rig.drained(limit_s, outboxes=outboxes)
    while True:
        tickets = await read_tickets(rig.base, TOKEN)
        rep = check(plan, outcomes, tickets, sends(), kinds=kinds)
        complete = rep.found + rep.lost == rep.planned and rep.replies_not_final == 0
        if not retry or (complete and rep.lost == 0) or time.monotonic() > deadline:
            return rep
        await asyncio.sleep(0.25)


# -- IMAP dropped mid-IDLE and mid-FETCH -----------------------------------------------------


async def cut_with_mail_arriving(
    proxy: CuttingProxy, gen: MailLoad, mode: str, limit_s: float
) -> None:
    """One cut, at a moment that surely comes: the load is held until the poller has read
    every mail and waits in IDLE (``idle``: cut right there); then the next mails arrive
    and wake it (``idle_exists``: cut after the EXISTS push; ``fetch``, ``fetch_head``: cut
    in the answer to the first UID FETCH)."""
    before = len(proxy.cuts)
    assert mode == "idle" or gen.acked < len(gen.plan), "the load ended before this cut"
    gen.hold()
    try:
        proxy.arm(mode)
        if mode != "idle":
            await proxy.wait_idle(limit_s)
            gen.release()
        await proxy.wait_cut(before, limit_s)
    finally:
        gen.release()


@pytest.mark.parametrize("scale", SCALES)
async def test_imap_dropped_mid_idle_and_mid_fetch(
    rig: Rig, dovecot: Dovecot, scale: Scale
) -> None:
    """Mails keep arriving in the mailbox while the poller's connection is dropped: in IDLE
    (while it waits, and right after an ``EXISTS`` push), in a ``UID FETCH`` answer (after
    its first line, and half-way through the mail), and by Dovecot itself (``doveadm kick``:
    every session of the user ends, the appenders' too, wherever they are). The poller
    reconnects with backoff and resumes from its position (the last UID handed over): every
    mail ends on its citizen's one ticket, once and in order; every acknowledgement is sent
    once. A mail appended twice (an APPEND whose answer the kick cut off, retried) has one
    Message-ID: the hub keeps it once."""
    mailbox = f"f{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(dovecot.doveadm, "mailbox", "create", "-u", USER, mailbox)
    # Dovecot limits connections per user and IP (mail_max_userip_connections = 10): the
    # poller comes from 127.0.0.2 so that dropped sessions Dovecot has not reaped yet never
    # count against the appenders.
    proxy = CuttingProxy(dovecot.port, source="127.0.0.2")
    await proxy.up()
    smtp = SmtpSink()
    smtp.start()
    kicks: list[int] = []  # the proxy's connection count at each kick
    try:
        rig.config(channels__email={"accounts": {MAIL_ACCOUNT: {
            "address": "ppid@kemnaker.go.id", "display_name": "PPID Kemnaker",
            "imap_host": "127.0.0.1", "imap_port": proxy.port, "imap_security": "plain",
            "imap_username": USER, "imap_password": PASSWORD, "imap_mailbox": mailbox,
            "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_security": "none",
        }}})  # fmt: skip
        hub = rig.hub("hub")
        await rig.start(hub)
        rig.lap("start")
        plan = plan_mails(scale.mails, scale.mail_contacts, MAIL_ACCOUNT)
        gen = MailLoad(
            dovecot.port, USER, PASSWORD, mailbox, plan,
            steady(scale.mails, scale.mail_rate),
        )  # fmt: skip
        task = asyncio.create_task(gen.run())

        async def poller_in_session(sessions: int) -> None:
            """Until the poller has logged in and selected the mailbox ``sessions`` times."""

            async def enough() -> bool:
                return len(hub.events("mailbox.connected")) >= sessions

            await eventually(enough, scale.limit_s, every_s=0.05)

        for i, (mode, at) in enumerate(
            zip(scale.cuts, trigger_points(scale.mails, len(scale.cuts)), strict=True)
        ):
            await gen.wait_acked(at, scale.limit_s)
            await poller_in_session(i + 1)  # back from the previous drop
            if mode == "kick":
                kicks.append(proxy.connections)
                await asyncio.to_thread(dovecot.doveadm, "kick", USER)
            else:
                await cut_with_mail_arriving(proxy, gen, mode, scale.limit_s)
        await poller_in_session(len(scale.cuts) + 1)  # ... and from the last one
        rig.lap("cuts")
        await asyncio.wait_for(task, scale.limit_s)
        rig.lap("load_done")
        rep = await source_report(
            rig, plan, gen.outcomes, smtp.sends, ("text",), ("email",), scale.limit_s
        )
        rig.lap("drained_and_checked")
        dropped = hub.events("mailbox.unreachable")
        connected = hub.events("mailbox.connected")
        in_mailbox = (await asyncio.to_thread(dovecot.status, mailbox))["messages"]
    finally:
        await proxy.close()
        smtp.stop()
        await asyncio.to_thread(dovecot.doveadm, "mailbox", "delete", "-u", USER, mailbox)
    figures = {
        "load": gen.summary(), "check": rep.figures(),
        "cuts": [{"mode": c.mode, "relayed_bytes": c.relayed, "mail_bytes": c.size}
                 for c in proxy.cuts],
        "kicks": len(kicks), "imap_connections": proxy.connections,
        "drops_logged": len(dropped), "connects_logged": len(connected),
        "mails_in_mailbox": in_mailbox,
        "handed_over_twice_deduplicated": rig.count("message.duplicate"),
        "drain_s_after_load": round(time.monotonic() - gen.finished_at, 2),
    }  # fmt: skip
    record(f"imap_dropped_{scale.name}", figures, rig)
    assert rep.inbound_ok, f"{rep}\n{rig.logs()[-6000:]}"
    assert rep.replies_ok, f"{rep}\n{rig.logs()[-6000:]}"
    assert rep.replies == scale.mail_contacts  # one acknowledgement per citizen's ticket ...
    assert rep.replies_resent == 0, str(rep)  # ... sent once
    cuts = [m for m in scale.cuts if m != "kick"]
    assert [c.mode for c in proxy.cuts] == cuts
    assert all(0 < c.relayed < c.size for c in proxy.cuts if c.mode == "fetch")  # mid-mail
    # Each drop hit a session of its own, the poller saw it, and it came back every time.
    assert len({c.connection for c in proxy.cuts}) == len(cuts), figures
    assert len(dropped) == len(scale.cuts), figures
    assert len(connected) == len(scale.cuts) + 1, figures
    # An APPEND retried after a kick cut off its answer may put a mail in the mailbox twice
    # (one Message-ID, two UIDs); the poller hands each UID over once (a drop mid-FETCH
    # re-reads the mail before handing it over), so the hub's dedupe drops exactly those.
    assert rig.count("message.duplicate") == in_mailbox - scale.mails, figures


# -- call log rotated and truncated mid-read -------------------------------------------------


async def tailer_mid_read(rig: Rig, path: Path, limit_s: float) -> tuple[int, int]:
    """Until the tailer has committed part of the file now at ``path`` and lines after it
    are still unread; returns (offset, size) at that moment."""
    r = rig.redis_client()
    try:
        async with asyncio.timeout(limit_s):
            while True:
                pos = await RedisLogPosition(r).get(TAILER)
                st = os.stat(path)
                if pos is not None and pos[0] == st.st_ino and 0 < pos[1] < st.st_size:
                    return pos[1], st.st_size
                await asyncio.sleep(0.002)
    finally:
        await r.aclose()


async def rotate_with_a_quiet_moment(
    rig: Rig, hub: HubProc, writer: CallLogWriter, scale: Scale
) -> None:
    """logrotate ``create`` while the platform still writes to the renamed file: half the
    window's lines go there, then the platform is quiet until the tailer has read that file
    to its end and seen the new, empty one at the path; then the other half goes to the
    renamed file too, and only then does the platform reopen the path."""
    waiting = len(hub.events("calllog.rotation_pending"))
    rot = writer.rotate(reopen_after=scale.window)
    new_inode = os.stat(writer.path).st_ino
    await writer.wait_written(rot.lines_before + scale.window // 2, scale.limit_s)
    writer.hold()
    r = rig.redis_client()
    try:
        async with asyncio.timeout(scale.limit_s):
            while True:  # switched to the empty file (it would lose what comes next) or not
                pos = await RedisLogPosition(r).get(TAILER)
                if pos is not None and pos[0] == new_inode:
                    break
                if len(hub.events("calllog.rotation_pending")) > waiting:
                    break
                await asyncio.sleep(0.01)
    finally:
        await r.aclose()
        writer.release()


async def tailer_at_end(rig: Rig, path: Path, limit_s: float) -> None:
    """Until the tailer has committed the whole file now at ``path`` (it read everything)."""
    r = rig.redis_client()
    try:
        async with asyncio.timeout(limit_s):
            while True:
                st = os.stat(path)
                if await RedisLogPosition(r).get(TAILER) == (st.st_ino, st.st_size):
                    return
                await asyncio.sleep(0.01)
    finally:
        await r.aclose()


def found_keys(plan: Sequence[Planned], tickets: Iterable[Mapping[str, Any]]) -> set[str]:
    by_id = {(p.channel, p.account, p.provider_id): p.key for p in plan}
    return {
        by_id[k]
        for t in tickets
        for m in t.get("messages", [])
        if (k := (m.get("channel"), m.get("account"), m.get("provider_id"))) in by_id
    }


@pytest.mark.parametrize("scale", SCALES)
async def test_call_log_rotated_and_truncated_mid_read(rig: Rig, scale: Scale) -> None:
    """The platform appends calls to its log through an open descriptor while logrotate acts
    on it, each time while the tailer is in the middle of the file (lines after its
    position not read yet):

    - ``rotate``: the log is renamed and an empty one created; the platform writes
      ``window`` more lines to the renamed file (with a quiet moment in between, long enough
      for the tailer to see the new, empty file) before it reopens the path;
    - ``copytruncate``: the log is copied, the platform writes ``window`` more lines to it,
      then it is truncated in place;
    - ``copytruncate_regrow``: the same while the hub is frozen (SIGSTOP: a stalled tailer),
      and right after the truncate a burst of calls makes the file longer than it was: its
      size no longer shows the truncation.

    After each fault the tailer is let catch up (the platform is quiet until it has read
    everything), so that faults do not pile up. Every call is on its citizen's ticket once
    and in order, except lines written in a copytruncate window that the tailer had not read
    before the truncate: they are in neither file, and they are the only ones allowed to be
    missing. The tailer never reads a line twice (no dedupe hit) nor from the middle of one."""
    logs = rig.tmp / "calllogs"
    logs.mkdir()
    path = logs / "export.jsonl"
    path.touch()
    rig.config(channels__call={"accounts": {CALL_ACCOUNT: {
        "unit": "general", "logs": [{"kind": "jsonl", "path": str(path),
                                      "poll_interval": 0.05, "max_lines": 20}],
    }}})  # fmt: skip
    hub = rig.hub("hub")
    await rig.start(hub)
    rig.lap("start")
    plan = plan_calls(scale.calls, scale.call_contacts, CALL_ACCOUNT)
    writer = CallLogWriter(path, plan, steady(scale.calls, scale.call_rate))
    task = asyncio.create_task(writer.run())
    mid_read: list[dict[str, int]] = []
    try:
        points = trigger_points(scale.calls, len(scale.log_faults))
        for kind, at in zip(scale.log_faults, points, strict=True):
            await writer.wait_written(at, scale.limit_s)
            offset, size = await tailer_mid_read(rig, path, scale.limit_s)
            mid_read.append({"offset": offset, "size": size})
            if kind == "rotate":
                await rotate_with_a_quiet_moment(rig, hub, writer, scale)
            elif kind == "copytruncate":
                writer.copytruncate(window=scale.window)
            else:
                hub.pause()
                try:
                    writer.copytruncate(window=scale.window, regrow=True)
                    await writer.wait_window_closed(scale.limit_s)
                finally:
                    hub.resume()
            await writer.wait_window_closed(scale.limit_s)
            # A line in the file at the path after the fault, then a quiet moment until the
            # tailer has read everything: the next fault finds it on the current file.
            await writer.wait_written(writer.written + 1, scale.limit_s)
            writer.hold()
            try:
                await tailer_at_end(rig, path, scale.limit_s)
            finally:
                writer.release()
        rig.lap("faults")
        await asyncio.wait_for(task, scale.limit_s)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        writer.close()
    rig.lap("load_done")
    await tailer_at_end(rig, path, scale.limit_s)
    rep = await source_report(
        rig, plan, writer.outcomes, list, ("call",), (), scale.limit_s, retry=False
    )
    rig.lap("drained_and_checked")
    tickets = await read_tickets(rig.base, TOKEN)
    missing = {p.key for p in plan} - found_keys(plan, tickets)
    windows = {k for r in writer.rotations if r.kind == "copytruncate" for k in r.window}
    rotations = sum(r.kind == "rotate" for r in writer.rotations)
    figures: dict[str, Any] = {
        "load": writer.summary(), "check": rep.figures(),
        "faults": [{"kind": k, "lines_before": r.lines_before, "window": len(r.window),
                    "window_lost": len(set(r.window) & missing), "regrown": len(r.regrown)}
                   for k, r in zip(scale.log_faults, writer.rotations, strict=True)],
        "tailer_mid_read": mid_read,
        "copytruncate_window_lines": len(windows),
        "lost_in_copytruncate_windows": len(missing & windows),
        "lost_elsewhere": len(missing - windows),
        "rotate_window_lines": sum(len(r.window) for r in writer.rotations
                                   if r.kind == "rotate"),
        "rotated_logged": len(hub.events("calllog.rotated")),
        "rotation_pending_logged": len(hub.events("calllog.rotation_pending")),
        "truncated_logged": len(hub.events("calllog.truncated")),
        "read_from_copy": len(hub.events("calllog.copy_finished")),
        "bad_lines_logged": len(hub.events("calllog.bad_line")),
        "reread_deduplicated": rig.count("message.duplicate"),
        "drain_s_after_load": round(time.monotonic() - writer.finished_at, 2),
    }  # fmt: skip
    record(f"call_log_rotated_{scale.name}", figures, rig)
    # Nothing outside a copytruncate window is lost; inside one, only what the tailer had
    # not read when the truncate came (the rest of the window is in neither file).
    lost_elsewhere = sorted(missing - windows)
    assert not lost_elsewhere, f"lost outside the windows: {lost_elsewhere}\n{figures}"
    assert rep.lost == len(missing), str(rep)
    assert rep.found == scale.calls - len(missing), str(rep)
    assert rep.duplicated == rep.out_of_order == rep.wrong_ticket == rep.unexpected == 0, str(rep)
    assert figures["reread_deduplicated"] == 0, figures  # no line was read twice ...
    assert figures["bad_lines_logged"] == 0, figures  # ... nor from the middle of a line
    # Every fault was real and seen once: each window had lines in it; the frozen tailer
    # could read none of its window; each rotation and each truncation was noticed.
    assert len(writer.rotations) == len(scale.log_faults)
    assert all(r.window for r in writer.rotations), figures
    for f in figures["faults"]:
        if f["kind"] == "copytruncate_regrow":
            assert f["window_lost"] == f["window"], figures
            assert f["regrown"] > 0, figures
    assert figures["rotated_logged"] == rotations, figures
    assert figures["truncated_logged"] == len(writer.rotations) - rotations, figures
