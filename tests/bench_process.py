"""A benchmark run as ``bench/run`` runs it (its own process, its own Redis and children), for
the smoke tests that keep every benchmark working at a tiny size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_bench(module: str, *args: str, timeout_s: float = 220) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` from the repository's root; its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
