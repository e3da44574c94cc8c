"""Print the figures of the last fault runs (var/faults/*.json) as Markdown tables, for
docs/reliability.md: ``.venv/bin/python -m tests.faults.figures``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.faults.processes import ROOT

FIGURES = ROOT / "var" / "faults"

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


def table(rows: list[dict[str, Any]]) -> str:
    head = "| test | " + " | ".join(c for c, _ in COLUMNS) + " |"
    sep = "|---" * (len(COLUMNS) + 1) + "|"
    lines = [head, sep]
    for d in rows:
        cells = []
        for _, get in COLUMNS:
            try:
                cells.append(str(get(d)))
            except (KeyError, TypeError):
                cells.append("-")
        lines.append(f"| {d['test']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    rows = [json.loads(p.read_text()) for p in sorted(FIGURES.glob("*.json"))]
    rows = [r for r in rows if "check" in r]
    for scale in ("quick", "chaos"):
        picked = [r for r in rows if r["test"].endswith(scale)]
        if picked:
            print(f"\n### {scale}\n")
            print(table(picked))
    extras = {
        r["test"]: {k: v for k, v in r.items() if k not in ("check", "load", "test")} for r in rows
    }
    print("\n### other figures\n")
    for name, rest in extras.items():
        print(f"- {name}: {json.dumps(rest)}")


if __name__ == "__main__":
    main()
