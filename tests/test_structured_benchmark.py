"""Smoke test of ``benchmarks/structured.py``: it runs end to end on small sizes, checks that the
competitors compute the same numbers, and prints its table (slow: tslearn compiles its kernels first)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_structured_benchmark_runs_and_prints_every_row():
    pytest.importorskip("torchcrf")
    pytest.importorskip("tslearn")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "structured.py"), "--quick", "--repeats", "1"],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout
    assert "Viterbi paths equal: True" in out, out
    for task in ("chain NLL + backward", "chain Viterbi", "soft-DTW loss from sequences", "soft-DTW on a cost matrix"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {task}"))
        assert row.count("|") == 6 and " x |" in row, row
