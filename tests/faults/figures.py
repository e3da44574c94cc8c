"""Print the figures of the last fault runs (var/faults/*.json) as Markdown tables, for
docs/reliability.md: ``.venv/bin/python -m tests.faults.figures``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.faults.processes import ROOT

FIGURES = ROOT / "var" / "faults"
SOURCE_TESTS = ("imap_dropped_", "call_log_rotated_")

Column = tuple[str, Callable[[dict[str, Any]], object]]
COLUMNS: list[Column] = [
    ("sent (2xx)", lambda d: d["check"]["sent"]),
    ("found", lambda d: d["check"]["found"]),
    ("lost", lambda d: d["check"]["lost"]),
    ("dup.", lambda d: d["check"]["duplicated"]),
    ("out of order", lambda d: d["check"]["out_of_order"]),
    ("wrong ticket", lambda d: d["check"]["wrong_ticket"]),
    ("requests", lambda d: d["load"]["requests"]),
    ("5xx", lambda d: d["load"]["5xx"]),
    ("conn. refused/reset", lambda d: d["load"]["conn_errors"]),
    ("> 15 s", lambda d: d["load"]["timeouts"]),
    ("max answer s", lambda d: d["load"]["max_latency_s"]),
    ("replies", lambda d: d["check"]["replies"]),
    ("not final", lambda d: d["check"]["replies_not_final"]),
    ("sent twice", lambda d: d["check"]["replies_resent"]),
    ("over attempts", lambda d: d["check"]["replies_oversent"]),
    ("recovered s", lambda d: _recovered(d)),
]


def _recovered(d: dict[str, Any]) -> str:
    """From the fault's end (restart, resume) to the first 2xx, else to drained."""
    fault = d.get("fault") or {}
    first = fault.get("first_2xx_after_recovery_s")
    phases = d.get("phases_s") or {}
    drained = d.get("drain_s_after_load", phases.get("drained_and_checked"))
    parts = []
    if first is not None:
        parts.append(f"2xx {first}")
    if drained is not None:
        parts.append(f"drained {drained}")
    return ", ".join(parts) or "-"


# Fault 5 (tests/faults/test_source_faults.py): the pulled sources, their own figures.
SOURCE_COLUMNS: list[Column] = [
    ("written", lambda d: d["load"]["acked"]),
    ("found", lambda d: d["check"]["found"]),
    ("lost", lambda d: d["check"]["lost"]),
    ("of which in copytruncate windows", lambda d: d.get("lost_in_copytruncate_windows", 0)),
    ("dup.", lambda d: d["check"]["duplicated"]),
    ("out of order", lambda d: d["check"]["out_of_order"]),
    ("wrong ticket", lambda d: d["check"]["wrong_ticket"]),
    ("faults", lambda d: _source_faults(d)),
    ("re-read (dedupe hits)", lambda d: d.get("handed_over_twice_deduplicated",
                                              d.get("reread_deduplicated", "-"))),
    ("acks (sent once)", lambda d: d["check"]["replies"] - d["check"]["replies_resent"]),
    ("drained s after load", lambda d: d.get("drain_s_after_load", "-")),
]  # fmt: skip


def _source_faults(d: dict[str, Any]) -> str:
    """What was broken: IMAP cuts and kicks by mode, call-log rotations by kind."""
    counts: dict[str, int] = {}
    for c in d.get("cuts", []):
        counts[c["mode"]] = counts.get(c["mode"], 0) + 1
    if d.get("kicks"):
        counts["kick"] = d["kicks"]
    for f in d.get("faults", []):
        counts[f["kind"]] = counts.get(f["kind"], 0) + 1
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def table(rows: list[dict[str, Any]], columns: list[Column] | None = None) -> str:
    columns = columns if columns is not None else COLUMNS
    head = "| test | " + " | ".join(c for c, _ in columns) + " |"
    sep = "|---" * (len(columns) + 1) + "|"
    lines = [head, sep]
    for d in rows:
        cells = []
        for _, get in columns:
            try:
                cells.append(str(get(d)))
            except (KeyError, TypeError):
                cells.append("-")
        lines.append(f"| {d['test']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    rows = [json.loads(p.read_text()) for p in sorted(FIGURES.glob("*.json"))]
    rows = [r for r in rows if "check" in r]
    sources = [r for r in rows if r["test"].startswith(SOURCE_TESTS)]
    rows = [r for r in rows if not r["test"].startswith(SOURCE_TESTS)]
    for scale in ("quick", "chaos"):
        picked = [r for r in rows if r["test"].endswith(scale)]
        if picked:
            print(f"\n### {scale}\n")
            print(table(picked))
    if sources:
        print("\n### fault 5: the pulled sources\n")
        print(table(sources, SOURCE_COLUMNS))
    extras = {
        r["test"]: {k: v for k, v in r.items() if k not in ("check", "load", "test")} for r in rows
    }
    print("\n### other figures\n")
    for name, rest in extras.items():
        print(f"- {name}: {json.dumps(rest)}")


if __name__ == "__main__":
    main()
