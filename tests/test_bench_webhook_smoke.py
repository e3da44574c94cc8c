"""The webhook benchmark's phases (ingest, split, single) still run and their checks still pass,
with tiny sizes. No figure is asserted: these are not timed tests (``bench/run ingest webhook``
is how they are measured)."""

from __future__ import annotations

import pytest

from tests.bench_process import run_bench

TINY = [
    *("--ingest-n", "300", "--ingest-s", "3", "--ingest-rounds", "1"),
    *("--burst-n", "300", "--burst-s", "3", "--citizens", "40"),
    *("--steady-s", "1", "--split-rate", "100", "--rate", "50", "--concurrency", "8"),
    *("--xadd-n", "1000", "--drain-s", "30", "--poll-ms", "5"),
]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_webhook_bench_phases_run_and_their_checks_pass() -> None:
    """Every phase starts its processes (bare, ideal, the hub's roles, the load generator),
    measures, verifies what it did (accepted = on the streams = on tickets, acknowledgements
    sent) and stops them; the figures table is printed."""
    proc = run_bench("bench.webhook_to_ticket", "--phases", "ingest,split,single", *TINY)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for phase in ("ingest", "split", "single"):
        assert f"{phase} check:" in out, out[-4000:]
    assert "PROBLEMS" not in out, out[-4000:]
    assert "| ratio" in out, out[-4000:]
    assert "hub ÷ bare" in out, out[-4000:]
