"""Smoke tests of the maximum-likelihood examples: each runs with ``--quick`` and shows its claim."""

import importlib.util
import math
import os
import warnings

import pytest

from pyro_ebm.diagnostics import NegativesWarning

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name, argv):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NegativesWarning)  # short quick runs: the probe may complain
        return load(name).main(argv)


def test_densities_2d_quick_learns_and_records_diagnostics(tmp_path):
    r = run("densities_2d", ["--quick", "--out", str(tmp_path), "--datasets", "eight_gaussians"])
    assert os.path.getsize(tmp_path / "densities_2d.png") > 0
    for name in ("eight_gaussians",):
        res = r["results"][name]
        # better than the uniform density on the quadrature box, log(64) = 4.16 nats
        assert res["nll"] < math.log(64) - 0.3
        assert res["kde_nll"] < res["nll"]
        diag = res["diagnostics"]
        assert [d["step"] for d in diag] == [30, 60]
        for d in diag:
            assert d["diag_rhat"] >= 0.99 and d["diag_ess_bulk"] > 0 and 0 < d["diag_acceptance"] <= 1
    assert r["results"]["eight_gaussians"]["true_nll"] < r["results"]["eight_gaussians"]["nll"] + 0.05


def test_ml_canyons_quick_gap_grows_without_regularization(tmp_path):
    r = run("ml_canyons", ["--quick", "--out", str(tmp_path)])
    assert os.path.getsize(tmp_path / "ml_canyons.png") > 0
    free = [t["gap"] for t in r["unregularized"]]
    reg = [t["gap"] for t in r["EnergyL2(1.0)"]]
    # unregularized: after a noisy start the canyon keeps deepening from checkpoint to checkpoint
    assert free[-3] < free[-2] < free[-1]
    # regularized: bounded and small, far below the unregularized depth
    assert max(reg) < 2.0
    assert free[-1] > 50 * reg[-1]
    # the walls get steeper without the regularizer
    assert r["unregularized"][-1]["steepness"] > r["EnergyL2(1.0)"][-1]["steepness"]


@pytest.mark.slow
def test_ebm_vs_probabilistic_quick(tmp_path):
    r = run("ebm_vs_probabilistic", ["--quick", "--out", str(tmp_path)])
    assert os.path.getsize(tmp_path / "ebm_vs_probabilistic.png") > 0
    rows = r["rows"]
    margin, gmm = rows["margin (hinge + noise)"], rows["Pyro GMM (SVI)"]
    assert gmm["nll"] < r["true_nll"] + 0.1
    assert gmm["argmin_acc"] > 0.9
    # the margin energy is useful for inference but not a calibrated density
    assert margin["argmin_acc"] > 0.3  # 600 hinge steps in the quick run; 0.97 at full settings
    assert margin["nll"] > gmm["nll"] + 0.2


@pytest.mark.slow
def test_densities_2d_full_eight_gaussians_within_015_nats(tmp_path):
    r = run("densities_2d", ["--out", str(tmp_path), "--datasets", "eight_gaussians"])
    g8 = r["results"]["eight_gaussians"]
    assert g8["nll"] - g8["true_nll"] < 0.15, (g8["nll"], g8["true_nll"])


@pytest.mark.slow
def test_ebm_vs_probabilistic_full_claims(tmp_path):
    r = run("ebm_vs_probabilistic", ["--out", str(tmp_path)])
    rows = r["rows"]
    margin, ml, gmm = rows["margin (hinge + noise)"], rows["max likelihood (HMC)"], rows["Pyro GMM (SVI)"]
    # NLL: the margin energy is much worse than both density models
    assert margin["nll"] > ml["nll"] + 0.15 and margin["nll"] > gmm["nll"] + 0.15
    assert ml["nll"] < r["true_nll"] + 0.15
    # inference: comparable argmin accuracy
    assert margin["argmin_acc"] > 0.9 and ml["argmin_acc"] > 0.9
    assert abs(margin["argmin_acc"] - ml["argmin_acc"]) < 0.1
    # samples: the ML energy's samples are closer to the data than the margin energy's
    assert ml["mmd"] < margin["mmd"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["densities_2d", "ebm_vs_probabilistic", "ml_canyons"])
def test_ml_example_runs_as_a_script(name, tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, f"{name}.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert os.listdir(tmp_path)
