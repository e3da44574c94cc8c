"""deploy/grafana/kemnaker-hub.json only queries metrics the hub exports, with the labels
it exports them with, and its panels do not overlap: a renamed metric breaks this test, not
the supervisors' Grafana on the day it is needed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from hub.metrics import HubMetrics

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "kemnaker-hub.json"
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def _exported() -> dict[str, set[str]]:
    """Sample name → label names, for every metric object HubMetrics holds."""
    out: dict[str, set[str]] = {}
    metrics: list[MetricWrapperBase] = []
    for attr in vars(HubMetrics()).values():
        if isinstance(attr, MetricWrapperBase):
            metrics.append(attr)
        elif isinstance(attr, dict):
            metrics += [m for m in attr.values() if isinstance(m, MetricWrapperBase)]
    for metric in metrics:
        for fam in metric.describe():
            labels = set(metric._labelnames)
            for suffix in SUFFIXES[fam.type]:
                out[fam.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


def _targets(dash: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def test_every_query_names_an_exported_metric_and_label() -> None:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exported = _exported()
    exprs = _targets(dash)
    assert len(exprs) >= 15
    for expr in exprs:
        names = re.findall(r"\bhub_[a-z_]+\b", expr)
        assert names, expr
        for name in names:
            assert name in exported, f"{expr}: {name} is not exported by the hub"
        for group in re.findall(r"by \(([^)]*)\)", expr):
            for label in (x.strip() for x in group.split(",")):
                assert any(label in exported[n] for n in names), f"{expr}: no label {label}"
        for label in re.findall(r"(\w+)=\"", expr):
            assert any(label in exported[n] for n in names), f"{expr}: no label {label}"


def test_panels_are_laid_out_without_overlap_and_use_the_datasource_variable() -> None:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    cells: dict[tuple[int, int], int] = {}
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = p["id"]
        assert p["datasource"]["uid"] == "${datasource}"
        assert p["title"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    assert dash["uid"] == "kemnaker-hub"
