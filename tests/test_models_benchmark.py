"""Smoke test of ``benchmarks/rbm.py``: it runs end to end on tiny settings and prints its ratios."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_rbm_benchmark_runs_and_prints_the_ratio_and_loglik():
    pytest.importorskip("sklearn")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rbm.py"), "--epochs", "1", "--repeats", "2",
         "--ais-temperatures", "30"],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout
    assert "RATIO pyro_ebm(float32) / scikit-learn time per epoch = " in out, out
    assert "| pyro_ebm held-out log p(v) | scikit-learn held-out log p(v) |" in out, out
    line = next(x for x in out.splitlines() if x.startswith("LOGLIK pyro_ebm - scikit-learn = "))
    assert "nan" not in line, line
