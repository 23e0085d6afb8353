"""Smoke test of ``benchmarks/sampler.py``: it runs end to end on tiny settings and prints its table."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_sampler_benchmark_runs_and_prints_every_energy():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sampler.py"), "--chains", "8", "--pyro-chains", "1",
         "--warmup", "30", "--draws", "20", "--seeds", "2", "--skip-numpyro", "--skip-blackjax", "--skip-compiled"],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout
    for name in ("gauss50", "double_well", "mlp2d", "mlp64"):
        assert f"[{name}] pyro_ebm hmc (eager): ESS" in out, out
        assert f"[{name}] Pyro NUTS (1 chains)" in out, out
        row = next(line for line in out.splitlines() if line.startswith(f"| {name} |"))
        assert row.count("|") == 13, row
