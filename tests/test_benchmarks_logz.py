"""Smoke test of ``benchmarks/log_z.py``: with ``--quick --skip-blackjax`` it runs its self-checks (the
closed-form log Z of the RBM against quadrature and importance sampling, the mixture's quadrature against its
closed form), estimates every target with this library's SMC and prints its table, without needing JAX."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("gauss20", "gauss50", "mixture2d", "rbm20")


def test_log_z_benchmark_quick_runs_without_blackjax():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "log_z.py"), "--quick", "--skip-blackjax", "--particles", "256"],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout
    assert "BlackJAX skipped: --skip-blackjax" in out, out
    assert out.count("self-check:") >= 3, out
    for name in TARGETS:
        line = next(x for x in out.splitlines() if x.startswith(f"[{name}] pyro_ebm seed 0:"))
        err = float(re.search(r"error ([-+][0-9.]+)", line).group(1))
        # 256 particles (16 replicas of 16): a loose sanity bound (the truths are 1.6 to 29 nats)
        assert abs(err) < 1.5, line
        row = next(x for x in out.splitlines() if x.startswith(f"| {name} |"))
        assert "pyro_ebm smc" in row and row.count("|") == 12, row
        assert "BlackJAX" not in row
    assert "time pyro_ebm / BlackJAX" not in out
