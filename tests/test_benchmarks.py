"""Smoke tests of the benchmark scripts: each runs end to end on tiny settings and prints its table."""

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


def test_training_truth_quick_run_prints_every_cell_and_writes_finite_numbers(tmp_path):
    import json
    import math

    path = tmp_path / "truth.json"
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "training_truth.py"), "--quick", "--jobs", "1", "--json", str(path),
         "--rst", str(tmp_path / "truth.rst")],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout
    record = json.loads(path.read_text())
    assert "   * - eight_gaussians" in (tmp_path / "truth.rst").read_text()
    names = record["settings"]["datasets"]
    assert len(names) == 2 and record["settings"]["seeds"] == [0], record["settings"]
    assert [(c["dataset"], c["seed"]) for c in record["cells"]] == [(n, 0) for n in names]
    for name in names:
        row = next(line for line in out.splitlines() if line.startswith(f"| {name} | 0 |"))
        assert row.count("|") == 11, row
        assert f"| {name} | 1 |" in out, out  # its line in the per-dataset summary
    for cell in record["cells"]:
        assert cell["errors"] == {}, cell["errors"]
        for key in ("ebm_nll", "truth_nll", "gap_to_truth", "flow_nll", "mixture_nll", "best_baseline_nll",
                    "gap_to_best_baseline", "log_z", "train_s"):
            assert isinstance(cell[key], float) and math.isfinite(cell[key]), (key, cell[key])
        assert cell["best_baseline_nll"] == min(cell["flow_nll"], cell["mixture_nll"])
        assert abs(cell["gap_to_truth"] - (cell["ebm_nll"] - cell["truth_nll"])) < 1e-9
        assert cell["mixture_k"] in (4, 8, 16)
        assert cell["check_fit"] in ("ok", "problems")
    for name in names:
        summary = record["summary"][name]
        assert math.isfinite(summary["median_gap_to_truth"]) and math.isfinite(summary["max_gap_to_truth"])


def test_the_docs_training_truth_tables_are_the_committed_results():
    """docs/_generated/training_truth.rst is rst_tables() of benchmarks/results/training_truth.json: the
    docs' table cannot drift from the results file that the full benchmark wrote."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("training_truth", ROOT / "benchmarks" / "training_truth.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    record = json.loads((ROOT / "benchmarks" / "results" / "training_truth.json").read_text())
    assert (ROOT / "docs" / "_generated" / "training_truth.rst").read_text() == module.rst_tables(record)
