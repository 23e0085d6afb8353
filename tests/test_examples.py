"""Smoke tests of the example scripts: each runs with ``--quick`` and shows the lecture's qualitative claim."""

import importlib.util
import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stochastic_world_ebm_finds_both_branches(tmp_path):
    r = load("stochastic_world").main(["--quick", "--out", str(tmp_path)])
    assert os.path.getsize(tmp_path / "stochastic_world.png") > 0
    # the regressor predicts the average (~0), which is on neither branch
    assert r["mse_within_eps"] < 0.2
    assert r["mse_mean_abs_prediction"] < 0.2
    # the energy's minima lie on the branches, and most x get one minimum on each
    assert r["ebm_within_eps"] > 0.7
    assert r["ebm_within_eps"] > r["mse_within_eps"] + 0.5
    assert r["ebm_both_branches"] > 0.6


def test_collapse_energy_loss_collapses_and_hinge_does_not(tmp_path):
    r = load("collapse").main(["--quick", "--out", str(tmp_path)])
    assert os.path.getsize(tmp_path / "collapse.png") > 0
    collapsed, contrastive = r["energy_loss"], r["hinge"]
    # embedding variance: ~0 against O(1)
    assert collapsed["embedding_std"] < 1e-2
    assert contrastive["embedding_std"] > 0.3
    assert collapsed["embedding_std"] < 1e-2 * contrastive["embedding_std"]
    # flat energy: negative pairs no higher than positive pairs in absolute terms
    assert collapsed["energy_gap"] < 1e-3
    assert contrastive["energy_gap"] > 1.0
    assert contrastive["energy_neg"] > 10 * contrastive["energy_pos"]


def test_energy_landscape_training_improves_the_density(tmp_path):
    r = load("energy_landscape").main(["--quick", "--out", str(tmp_path)])
    assert os.path.getsize(tmp_path / "energy_landscape.png") > 0
    before, after = r["before"], r["after"]
    assert after["heldout_loglik"] > before["heldout_loglik"] + 0.5
    assert after["heldout_loglik"] < r["true_loglik"] + 0.1  # the truth bounds it (up to quadrature error)
    assert after["energy_gap"] > 1.0  # data below the rest of the box
    assert after["negatives_near_mode"] > before["negatives_near_mode"] + 0.1


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["stochastic_world", "collapse", "energy_landscape", "diagnose_negatives", "elastic_templates",
             "check_reader", "ellipse_latent", "regularized_volume"]
)
def test_example_runs_as_a_script(name, tmp_path):
    out = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, f"{name}.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert os.path.exists(tmp_path / f"{name}.png")


def test_elastic_templates_beat_nearest_raw_template(tmp_path):
    """Trained features + elastic templates (LVQ2 and NLL) classify warped words far better than DTW on raw
    signals against training exemplars (4 classes: chance is 0.25)."""
    r = load("elastic_templates").main(["--quick", "--out", str(tmp_path)])
    assert os.path.getsize(tmp_path / "elastic_templates.png") > 0
    assert r["accuracy_baseline"] < 0.55
    assert r["accuracy_lvq2"] > max(0.6, r["accuracy_baseline"] + 0.15)
    assert r["accuracy_nll"] > max(0.6, r["accuracy_baseline"] + 0.15)


def test_check_reader_global_training_reads_strings_and_rejects_doubtful_ones(tmp_path):
    """The graph NLL (global) reads most held-out digit strings after a short training, better than the
    locally normalized model with the same network and graphs; rejecting small energy gaps cuts errors."""
    r = load("check_reader").main(["--quick", "--out", str(tmp_path)])
    assert os.path.getsize(tmp_path / "check_reader.png") > 0
    g, loc = r["global"], r["local"]
    assert g["digit_accuracy"] > 0.75 and g["string_accuracy"] > 0.3
    assert g["string_accuracy"] > loc["string_accuracy"] + 0.2
    errors = [p["error"] for p in g["curve"]]
    assert abs(errors[0] - (1 - g["string_accuracy"])) < 1e-9
    assert errors[5] < 0.6 * errors[0]  # rejecting half the strings removes far more than half the errors
    assert all(a >= b for a, b in zip(errors, errors[1:]))


def test_diagnose_negatives_flags_plain_hmc_and_passes_tempering_rhat(tmp_path):
    """Plain HMC on the beta = 8 double well: chains disagree (R-hat flagged); tempering mixes."""
    res = load("diagnose_negatives").main(["--quick", "--out", str(tmp_path)])
    assert res["plain"]["warned"] and res["plain"]["max_rhat"] > 1.05
    assert res["tempered"]["max_rhat"] < 1.05
    assert res["tempered"]["stuck_fraction"] < res["plain"]["stuck_fraction"]
    # tempering's mode weight within a generous binomial tolerance of quadrature (ESS >> 100)
    assert abs(res["tempered"]["frac_right"] - res["exact_right"]) < 0.05


def test_hopfield_recalls_below_capacity_and_fails_above(tmp_path):
    r = load("hopfield").main(["--quick", "--out", str(tmp_path)])
    assert os.path.getsize(tmp_path / "hopfield.png") > 0
    assert r["digits"]["01"]["recalled_exactly"] == 1.0  # two prototypes: recalled from 10% corruption
    assert r["digits"]["0123456789"]["recalled_exactly"] < 0.1  # ten correlated prototypes: no
    overlaps = dict(zip(r["capacity_alphas"], r["capacity_overlaps"]))
    assert overlaps[0.05] == 1.0 and overlaps[0.25] < 0.7
    assert 0.12 <= r["alpha_c"] <= 0.22  # N = 100 in the quick run; 0.138 as N -> infinity
    s = r["spurious"]
    assert s["spurious"] > 0.05 and s["mixture_is_fixed_point"]  # minima nobody stored
    assert s["energy_mixture"] > s["energy_stored"]


def test_rbm_digits_beats_the_base_rate_and_matches_sklearn(tmp_path):
    r = load("rbm_digits").main(["--quick", "--out", str(tmp_path)])
    assert os.path.getsize(tmp_path / "rbm_digits.png") > 0
    ours, theirs = r["pyro_ebm"], r["sklearn"]
    assert ours["heldout_loglik"] > r["base_rate_loglik"] + 1.0
    assert abs(ours["heldout_loglik"] - theirs["heldout_loglik"]) < 2.0
    assert ours["ais_stderr"] < 0.05 and theirs["ais_stderr"] < 0.05
    assert r["reconstruction_error"] < 0.2


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hopfield", "rbm_digits", "energy_likelihood"])
def test_model_example_runs_as_a_script(name, tmp_path):
    out = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, f"{name}.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert os.path.exists(tmp_path / f"{name}.png")


def test_ellipse_latent_pushing_down_shapes_the_energy(tmp_path):
    """The latent-variable generative EBM trained on the data's free energy alone learns the radii, its
    minima over y lie on the ellipse, and its low-energy volume is far below that of a collapsed model."""
    r = load("ellipse_latent").main(["--quick", "--out", str(tmp_path)])
    assert os.path.getsize(tmp_path / "ellipse_latent.png") > 0
    assert r["radius_error"] < 0.05
    assert min(r["on_ellipse"].values()) > 0.9
    assert r["volume"] < 0.05 and r["volume_collapsed"] > 0.3
    assert abs(r["ray_argmin"]["inf"] - 1.5) < 0.05
    assert r["ray_barrier"]["1.0"] < r["ray_barrier"]["inf"]  # beta smooths the well


def test_regularized_volume_bounded_models_and_collapse(tmp_path):
    """Architecture or a latent regularizer keeps the low-energy volume small; a latent as large as the data
    (PCA(2) in 2-D, sparse coding with lam = 0) reconstructs everything: the energy is flat, volume 1."""
    r = load("regularized_volume").main(["--quick", "--out", str(tmp_path)])
    assert os.path.getsize(tmp_path / "regularized_volume.png") > 0
    v = r["volumes"]
    assert v["PCA(2), collapsed"] > 0.99 and v["sparse coding, lam = 0"] > 0.99
    assert v["PCA(1)"] < 0.4 and v["KMeans(12)"] < 0.1 and v["GMM(12), beta = 1"] < 0.1
    assert v["sparse coding, lam = 0.5"] < 0.3


def test_energy_likelihood_four_fits_agree_with_the_exact_answers(tmp_path):
    """One Ising model fitted four ways against log Z by enumeration, and a Gaussian precision whose naive
    unnormalized posterior is flagged and wrong while the exchange posterior matches the conjugate one."""
    r = load("energy_likelihood").main(["--quick", "--out", str(tmp_path)])
    assert os.path.getsize(tmp_path / "energy_likelihood.png") > 0
    truth, m = r["true"], r["methods"]
    for name in ("ML (ml_fit)", "pseudo-likelihood"):
        for k in range(2):
            assert abs(m[name]["theta"][k] - truth[k]) < 3 * m[name]["se"][k], name
    for k in range(2):
        assert abs(m["NCE"]["theta"][k] - truth[k]) < 0.08
        ex = m["exchange (posterior)"]
        # the quick run is short: 5 posterior sds of the quadrature posterior over sqrt(ESS)
        assert abs(ex["theta"][k] - r["exact_posterior_mean"][k]) < 5 * r["exact_posterior_sd"][k] / ex["ess_bulk"][k] ** 0.5
        assert abs(ex["se"][k] / r["exact_posterior_sd"][k] - 1) < 0.25
    g = r["gaussian"]
    assert g["naive"]["warned"] and abs(g["naive"]["mean"] - g["exact"]["mean"]) > 4 * g["exact"]["sd"]
    assert abs(g["exchange"]["mean"] - g["exact"]["mean"]) < 5 * g["exact"]["sd"] / g["exchange"]["ess_bulk"] ** 0.5
