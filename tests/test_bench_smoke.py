"""The benchmarks still run and their checks still pass, with tiny sizes (no figures asserted:
these are not timed tests; ``bench/run`` is how they are measured)."""

from __future__ import annotations

import pytest

from tests.bench_process import run_bench

# name → (module, tiny options)
BENCHES = {
    "dispatcher": (
        "bench.dispatcher",
        ["--n", "400", "--citizens", "40", "--evalsha-n", "2000", "--limit-s", "60"],
    ),
    "outbox": ("bench.outbox", ["--n", "300", "--tickets", "30", "--limit-s", "60"]),
}


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", sorted(BENCHES))
def test_bench_runs_and_its_checks_pass(name: str) -> None:
    """Each benchmark starts its processes, measures, verifies what it did and stops them."""
    module, options = BENCHES[name]
    proc = run_bench(module, *options)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "check:" in out, out[-4000:]
    assert "FAILED" not in out, out[-4000:]
    assert "| ratio" in out, out[-4000:]  # the figures table was printed
