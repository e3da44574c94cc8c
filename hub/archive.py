"""Archiving of closed tickets: which ones leave Redis, the files they go to, and the saved
monthly reports that keep a report of an archived month whole.

Why: nothing else ever deletes a ticket, so Redis grows with every ticket ever opened
(docs/performance.md). With ``retention.archive_closed_after_days`` set, the observer (under
its own lease) or ``python -m hub archive`` moves finished tickets out of Redis:

- which: closed tickets, and resolved ones past the reopen window (final: the citizen's next
  message opens a new ticket), whose last activity is older than the cut and whose creation
  month is over; never one waiting in a queue or held by an agent. A ticket merged into
  another goes with it (and waits for it); a ticket others were merged into goes only with
  all of them.
- write first: each ticket's export document (``hub.reports.export_document``, as
  ``GET /api/v1/tickets/{id}/export`` gives it, plus ``archived_at``) is one JSON line of
  ``<archive dir>/<YYYY-MM>.jsonl.gz`` (the month of its creation, Asia/Jakarta). A batch's
  lines for one file are one gzip member, appended, flushed and fsynced.
- commit: the file's new size and the tickets' plans are recorded in Redis in one step. Bytes
  past the committed size are a write that crashed before its commit: the next append cuts
  them off, and those tickets, still whole in Redis, are written again. So no ticket is ever
  lost or written twice (a ticket that changed while it was archived is the one exception:
  it stays in Redis, and a later run writes its newer document; readers take the record's).
- delete after: the ticket's own keys go in one script on its contact (only if the ticket is
  still what the file holds), then its search terms, thread hints, provider ids, its number
  and its list-index entries, and last its record (``number → file``). A crash in between
  leaves the plan pending; every run finishes pending plans first.
- reports: before the first ticket of a month is archived, that month's report is saved; a
  report asked for a period with archived months is served from the saved one when it is
  exactly that month, and refused (``PeriodError("archived")``) otherwise, never undercounted.

Attachments (``<data_dir>/blobs``) are not touched. Logs carry ids and counts only.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from hub.clock import Clock
from hub.intake import Lease
from hub.metrics import HubMetrics
from hub.ports import ArchiveStore, TicketStore
from hub.reports import (
    Period,
    PeriodError,
    Report,
    export_document,
    load_report,
    report_from_dict,
)
from hub.search import MAX_NAME_TOKENS, tokenize
from hub.sla import SlaEngine

log = structlog.get_logger("hub.archive")
JAKARTA = ZoneInfo("Asia/Jakarta")
DAY_MS = 86_400_000
LEASE_TTL_MS = 180_000  # renewed between batches and every tick; another process takes over after
TICK_S = 60.0  # how often a process checks the lease (and the holder renews it)


class ArchiveFileError(RuntimeError):
    """An archive file is shorter than Redis says was committed: it was truncated or replaced
    outside the hub. Archiving stops rather than write past a hole."""


def month_of(ms: float) -> str:
    """``YYYY-MM`` of an epoch-ms time in Asia/Jakarta."""
    return datetime.fromtimestamp(ms / 1000, JAKARTA).strftime("%Y-%m")


def file_name(month: str) -> str:
    return f"{month}.jsonl.gz"


def month_period(month: str) -> Period:
    first = date.fromisoformat(f"{month}-01")
    nxt = (first + timedelta(days=32)).replace(day=1)
    return Period(first, nxt - timedelta(days=1))


def months_of(period: Period) -> list[str]:
    out: list[str] = []
    d = period.first.replace(day=1)
    while d <= period.last:
        out.append(d.strftime("%Y-%m"))
        d = (d + timedelta(days=32)).replace(day=1)
    return out


# -- what an archived ticket leaves behind to clean up ---------------------------------------


def plan_of(ticket: dict[str, Any], name: str, offset: int, archived_at: float) -> dict[str, Any]:
    """Everything needed to remove the ticket's keys once it is written, from the ticket as
    ``TicketStore.get_ticket`` gives it: its search terms (recomputed the way the indexer
    does, from its own inbound messages), its thread hints, its replies' provider ids, its
    inbound messages' dedupe marks, its list-index values, and what its record will say."""
    own = [e for e in ticket["messages"] if not e.get("from_ticket")]
    words: dict[str, None] = {}
    names: dict[str, None] = {}
    identities: dict[str, None] = {}
    hints: dict[str, None] = {}
    provider_ids: list[list[str]] = []
    dedupe: list[list[str]] = []
    for e in own:
        if e.get("direction") == "in":
            words.update(dict.fromkeys(tokenize(str(e.get("text") or ""))))
            names.update(dict.fromkeys(tokenize(str(e.get("display_name") or ""), MAX_NAME_TOKENS)))
            if e.get("sender"):
                identities.setdefault(str(e["sender"]))
            for h in e.get("thread_hints") or ():
                if not str(h).startswith("ticket-number:"):
                    hints.setdefault(str(h))
            if e.get("provider_id"):
                key = f"{e.get('channel')}:{e.get('account')}:{e['provider_id']}"
                dedupe.append([key, e["id"]])
        elif e.get("direction") == "out" and e.get("provider_id"):
            pid = str(e["provider_id"])
            provider_ids.append([str(e.get("channel", "")), pid, e["id"]])
            hints.setdefault(f"email-msgid:{pid}")  # an e-mail reply's Message-ID
    record = {
        "id": ticket["id"],
        "number": ticket.get("number", ""),
        "unit": ticket.get("unit", "general"),
        "file": name,
        "offset": offset,
        "archived_at": datetime.fromtimestamp(archived_at, UTC).isoformat(),
    }
    return {
        "number": ticket.get("number", ""),
        "record": record,
        "fingerprint": {
            "updated_at": ticket.get("updated_at", ""),
            "status": ticket.get("status", ""),
            "log_len": len(own),
        },
        "terms": {"words": list(words), "names": list(names), "identities": list(identities)},
        "hints": list(hints),
        "provider_ids": provider_ids,
        "dedupe": dedupe,
        "ix": {f: ticket.get(f, "") for f in ("status", "channel", "unit", "assignee")},
    }


# -- the files ---------------------------------------------------------------------------------


class ArchiveFiles:
    """``<root>/<YYYY-MM>.jsonl.gz``: JSON lines, one gzip member per appended batch (any
    gzip reader reads the file whole: ``zcat 2026-09.jsonl.gz | jq``), and
    ``<root>/reports/<YYYY-MM>.json``. Blocking: the archiver calls these in a thread."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def size(self, name: str) -> int:
        path = self.root / name
        return path.stat().st_size if path.exists() else 0

    def append(self, name: str, lines: Sequence[bytes], committed: int) -> tuple[int, int]:
        """Append ``lines`` as one gzip member after the ``committed`` bytes (what is past
        them is a batch that crashed before its commit: cut off); flushed and fsynced before
        it returns (offset of the member, the file's new size)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / name
        new = not path.exists()
        data = gzip.compress(b"".join(lines), mtime=0)
        with open(path, "r+b" if not new else "wb") as f:
            size = f.seek(0, os.SEEK_END)
            if size < committed:
                raise ArchiveFileError(f"{path}: {size} bytes, {committed} committed")
            if size > committed:
                f.truncate(committed)
                size = committed
            f.seek(size)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if new:
            _fsync_dir(self.root)
        return size, size + len(data)

    def read(self, name: str, offset: int, tid: str) -> dict[str, Any] | None:
        """The document of ``tid`` in the gzip member starting at ``offset`` (one batch)."""
        path = self.root / name
        d = zlib.decompressobj(wbits=31)
        out = bytearray()
        with open(path, "rb") as f:
            f.seek(offset)
            while not d.eof and (chunk := f.read(65536)):
                out += d.decompress(chunk)
        found = None
        for line in bytes(out).splitlines():
            doc = json.loads(line)
            if doc.get("ticket", {}).get("id") == tid:
                found = doc
        return found

    def save_report(self, month: str, text: str) -> None:
        folder = self.root / "reports"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{month}.json.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(folder / f"{month}.json")
        _fsync_dir(folder)


def _fsync_dir(path: Path) -> None:
    """A new file's name is durable only once its directory is synced."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- reports ---------------------------------------------------------------------------------


async def period_report(
    store: TicketStore,
    archive: ArchiveStore,
    sla: SlaEngine,
    period: Period,
    now: float,
    units: Sequence[str] = (),
) -> Report:
    """The report of ``period``, never undercounted: computed from the tickets while none of
    its months is archived; the saved report when the period is exactly one archived month;
    else ``PeriodError("archived")`` naming the archived months (a month's figures cannot be
    combined with others' or cut to days: medians and p90s do not add up)."""
    months = months_of(period)
    saved = await archive.saved_reports(months)
    if not saved:
        return await load_report(store, sla, period, now, units)
    if len(months) == 1 and period == month_period(months[0]):
        return report_from_dict(json.loads(saved[months[0]]))
    names = ", ".join(sorted(saved))
    raise PeriodError(
        "archived",
        f"tickets created in {names} are archived: the saved report of each of those months "
        "is served for that whole month alone (from its 1st to its last day); ask for the "
        "other days separately",
        months=names,
    )


# -- the job ---------------------------------------------------------------------------------


@dataclass
class ArchiveResult:
    archived: list[tuple[str, str]] = field(default_factory=list)  # (ticket id, number)
    skipped: Counter[str] = field(default_factory=Counter)
    conflicts: int = 0
    resumed: int = 0
    files: set[str] = field(default_factory=set)
    reports_saved: list[str] = field(default_factory=list)
    dry_run: bool = False
    stopped: bool = False


@dataclass(frozen=True, slots=True)
class ArchivePolicy:
    after_days: int
    reopen_window_ms: int

    def refuse(self, f: dict[str, str], now_ms: int) -> str:
        """Why this ticket may not be archived now ('' when it may)."""
        if not f:
            return "gone"
        status = f.get("status", "open")
        last = int(f.get("updated_at") or f.get("created_at") or 0)
        if status == "open":
            return "open"
        if last > now_ms - self.after_days * DAY_MS:
            return "recent"
        resolved_ms = int(f.get("resolved_at") or 0)
        if status == "resolved" and now_ms - resolved_ms <= self.reopen_window_ms:
            return "reopenable"
        if month_of(int(f.get("created_at") or 0)) >= month_of(now_ms):
            return "month_running"  # its month's report is not final yet
        return ""


class Archiver:
    def __init__(
        self,
        store: TicketStore,
        archive: ArchiveStore,
        files: ArchiveFiles,
        policy: ArchivePolicy,
        sla: SlaEngine,
        clock: Clock,
        metrics: HubMetrics | None = None,
        units: Sequence[str] = (),
        batch_size: int = 200,
        max_per_run: int = 20_000,
        every_s: float = 3600.0,
    ) -> None:
        self.store, self.archive, self.files, self.policy = store, archive, files, policy
        self.sla, self.clock, self.metrics, self.units = sla, clock, metrics, list(units)
        self.batch_size, self.max_per_run, self.every_s = batch_size, max_per_run, every_s
        self._stop = asyncio.Event()
        self.runs = 0

    def stop(self) -> None:
        self._stop.set()

    async def run(self, lease: Lease, owner: str) -> None:
        """At start and every ``every_s``, by whichever process holds the ``archive`` lease
        (checked every minute, so a stand-by takes over within minutes of its holder's death
        and runs at once)."""
        next_run = 0.0
        while not self._stop.is_set():
            try:
                if await lease.hold(owner, LEASE_TTL_MS):
                    if self.clock.now() >= next_run:
                        await self.run_once(keep=lambda: lease.hold(owner, LEASE_TTL_MS))
                        next_run = self.clock.now() + self.every_s
                else:
                    next_run = 0.0  # another holds it; if we get it later, run then
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away, a full disk: log, try again next tick
                log.warning("archive.run_failed", error=repr(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), min(TICK_S, self.every_s))
        with contextlib.suppress(Exception):
            await lease.release(owner)

    async def run_once(
        self, dry_run: bool = False, keep: Callable[[], Awaitable[bool]] | None = None
    ) -> ArchiveResult:
        """One pass: finish pending plans, then archive eligible tickets in bounded batches,
        yielding to the loop between them. ``keep`` renews the lease; when it fails (another
        process took over) the pass stops after its current batch."""
        result = ArchiveResult(dry_run=dry_run)
        if not dry_run:
            for tid, plan in (await self.archive.pending()).items():
                result.resumed += 1
                await self._complete(tid, plan, result)
        now_ms = int(self.clock.now() * 1000)
        cut_ms = now_ms - self.policy.after_days * DAY_MS
        for status in ("closed", "resolved"):
            offset = 0
            passed: set[str] = set()  # read from this index so far (all at positions < offset)
            while len(result.archived) < self.max_per_run and not self._stop.is_set():
                tids = await self.archive.candidates(status, cut_ms, offset, self.batch_size)
                if not tids:
                    break
                passed.update(tids)
                gone = await self._batch(tids, now_ms, dry_run, result)
                # archived ones left the index; refused ones (and a dry run's) are still there.
                # A ticket merged into one of this batch went with it: if an earlier batch
                # had passed it (skipped, waiting for its target), the index shrank before
                # the offset too, and the next batch must start that much earlier.
                offset += len(tids) - sum(1 for t in gone if t in passed)
                if keep is not None and not await keep():
                    result.stopped = True
                    return result
                await asyncio.sleep(0)
        self.runs += 1
        return result

    async def _batch(
        self, tids: list[str], now_ms: int, dry_run: bool, result: ArchiveResult
    ) -> list[str]:
        """Archive what may be of these candidates (and the tickets merged into them);
        returns the ids that left the index."""
        fields = await self.archive.ticket_fields(tids)
        related = {
            r
            for f in fields.values()
            for r in [*json.loads(f.get("merged_from") or "[]"), f.get("merged_into", "")]
            if r and r not in fields
        }
        fields |= await self.archive.ticket_fields(sorted(related))
        queued = await self.archive.queued(list(fields))
        known = await self.archive.known(list(fields))
        groups: list[list[str]] = []
        skipped: Counter[str] = Counter()
        for tid in tids:
            f = fields[tid]
            reason = self.policy.refuse(f, now_ms)
            if not reason and tid in known:
                reason = "already_archived"
            if not reason and fields.get(f.get("merged_into", ""), {}):
                reason = "merged_into"  # goes with the ticket it was merged into
            group = [tid]
            for src in json.loads(f.get("merged_from") or "[]") if not reason else []:
                if fields.get(src):  # one archived already is simply not there any more
                    if self.policy.refuse(fields[src], now_ms) or src in known:
                        reason = "merge_partner"
                    group.append(src)
            if not reason and any(t in queued for t in group):
                reason = "queued"
            if reason:
                skipped[reason] += 1
            else:
                groups.append(group)
        result.skipped.update(skipped)
        if dry_run:
            for group in groups:
                result.archived += [(t, fields[t].get("number", "")) for t in group]
            log.info("archive.batch", dry_run=True, candidates=len(tids),
                     eligible=sum(len(g) for g in groups), skipped=dict(skipped))  # fmt: skip
            return []
        archived = await self._write_and_delete([t for g in groups for t in g], result)
        log.info(
            "archive.batch", candidates=len(tids), archived=len(archived),
            skipped=dict(skipped), conflicts=result.conflicts, ticket_ids=archived,
        )  # fmt: skip
        return archived

    async def _write_and_delete(self, tids: list[str], result: ArchiveResult) -> list[str]:
        now = self.clock.now()
        archived_at = datetime.fromtimestamp(now, UTC).isoformat()
        by_file: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for tid in tids:
            ticket = await self.store.get_ticket(tid)
            if ticket is None:
                continue
            month = month_of(int(ticket.get("created_at") or 0))
            by_file.setdefault(month, []).append((tid, ticket))
        for month in sorted(by_file):
            await self._save_month_report(month, result)
        done: list[str] = []
        for month, items in sorted(by_file.items()):
            name = file_name(month)
            lines = []
            for _, ticket in items:
                doc = export_document(ticket, now, "archive") | {"archived_at": archived_at}
                lines.append(json.dumps(doc, ensure_ascii=False).encode() + b"\n")
            committed = await self.archive.committed_size(name)
            if committed is None:  # a new file: its commit point exists before its first byte
                if self.files.size(name):
                    raise ArchiveFileError(
                        f"{self.files.root / name} exists but Redis has no record of it: "
                        "move it away (or restore the Redis it was written with)"
                    )
                await self.archive.start_file(name)
                committed = 0
            offset, size = await asyncio.to_thread(self.files.append, name, lines, committed)
            plans = {tid: plan_of(ticket, name, offset, now) for tid, ticket in items}
            await self.archive.begin(name, size, plans)
            result.files.add(name)
            for tid, plan in plans.items():
                if await self._complete(tid, plan, result):
                    done.append(tid)
        return done

    async def _complete(self, tid: str, plan: dict[str, Any], result: ArchiveResult) -> bool:
        outcome = await self.archive.delete_ticket(tid, plan)
        if outcome == "changed":
            await self.archive.abandon(tid)
            result.conflicts += 1
            self._count("conflict")
            log.warning("archive.ticket_changed", ticket_id=tid)
            return False
        await self.archive.finish(tid, plan)
        result.archived.append((tid, plan["number"]))
        self._count("archived")
        return True

    async def _save_month_report(self, month: str, result: ArchiveResult) -> None:
        """Before the first ticket of ``month`` leaves Redis: its report, while it is whole."""
        if await self.archive.saved_reports([month]):
            return
        report = await load_report(
            self.store, self.sla, month_period(month), self.clock.now(), self.units
        )
        text = json.dumps(report.as_dict(), ensure_ascii=False)
        if await self.archive.save_report(month, text):
            await asyncio.to_thread(self.files.save_report, month, text)
            result.reports_saved.append(month)
            log.info("archive.report_saved", month=month)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.archived.labels(outcome).inc()
