"""bench/cluster.py at a tiny size (not timed): the roles as separate processes on a 3-master
cluster, the shards spread over two dispatchers, every message counted through."""

from __future__ import annotations

import pytest

from tests.bench_process import run_bench


@pytest.mark.timeout(240)
def test_cluster_bench_runs_and_checks_its_counts() -> None:
    out = run_bench(
        "bench.cluster", "--backends", "cluster", "--dispatchers", "2", "--webs", "1",
        "--messages", "40", "--citizens", "10", "--concurrency", "8",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    [row] = [ln for ln in out.stdout.splitlines() if ln.startswith("cluster (3 masters)")]
    cells = [c.strip() for c in row.split("|")]
    assert cells[1:3] == ["1", "2"]  # 1 web, 2 dispatchers
    assert cells[6] == "4/4"  # 8 shards, 4 per dispatcher
    assert cells[-1] == "ok"
    assert "40 accepted, 40 in streams, 40 on tickets, 0 dead, 10 tickets, 10 acks sent" in (
        out.stderr
    )
