"""No silent wrong answers: shapes and dtypes of the Pyro bridge, degenerate inputs, float32 precision,
fit's checkpoints, data sets and readable diagnostics. Each test pins one behaviour that used to be silent
or a torch-internal error; numbers are checked against float64 or closed forms."""

import math
import os

import matplotlib

matplotlib.use("Agg")

import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from pyro.infer import MCMC, NUTS, TraceEnum_ELBO  # noqa: E402

import pyro_ebm  # noqa: E402
from pyro_ebm import (  # noqa: E402
    DiscreteGibbs,
    GibbsBoltzmann,
    argmin_candidates,
    argmin_energy,
    as_energy,
    datasets,
    energy_factor,
    free_energy,
    latent_energy_model,
    latent_posterior,
    losses,
)
from pyro_ebm import _arviz  # noqa: E402
from pyro_ebm.diagnostics import check_negatives, plot_rank, plot_trace, summary, to_arviz  # noqa: E402
from pyro_ebm.train import fit  # noqa: E402


def double_well(y):
    return ((y**2 - 1) ** 2).sum(-1)


# ------------------------------------------------------------------------------ the Pyro bridge's shapes


def test_gibbs_boltzmann_tensor_beta_is_in_batch_shape():
    beta = torch.tensor([1.0, 2.0, 3.0])
    d = GibbsBoltzmann(double_well, beta=beta, event_shape=(2,))
    assert d.batch_shape == (3,)
    y = torch.tensor([[0.5, 0.0], [0.0, 2.0], [1.5, -0.5]])
    assert torch.allclose(d.log_prob(y), -beta * double_well(y))
    # a Pyro trace sees one site per temperature, not a sum
    tr = pyro.poutine.trace(pyro.poutine.condition(lambda: pyro.sample("y", d), {"y": y})).get_trace()
    tr.compute_log_prob()
    assert tr.nodes["y"]["log_prob"].shape == (3,)
    with pytest.raises(ValueError, match="beta"):
        GibbsBoltzmann(double_well, beta=beta, event_shape=(2,), batch_shape=(4,))


def test_gibbs_boltzmann_x_batch_from_the_energy_not_from_x_dim():
    x = torch.randn(4, 3)  # batch 4, x has its own event dim 3; y is scalar

    def F(y, x):
        return (y - x.sum(-1)) ** 2

    d = GibbsBoltzmann(F, x=x)
    assert d.batch_shape == (4,)
    assert torch.allclose(d.log_prob(torch.zeros(4)), -(x.sum(-1) ** 2))
    with pytest.raises(ValueError, match="value"):
        d.log_prob(torch.zeros(5))
    with pytest.raises(TypeError, match="value"):
        d.log_prob(torch.zeros(4, dtype=torch.long))


def test_discrete_gibbs_tensor_beta_in_batch_shape_and_checked():
    values = torch.arange(3.0)
    beta = torch.tensor([1.0, 2.0])
    d = DiscreteGibbs(lambda y: (y - 1.0) ** 2, values, beta=beta)
    assert d.batch_shape == (2,) and d.probs.shape == (2, 3)
    for b in range(2):
        assert torch.allclose(d.probs[b], torch.softmax(-beta[b] * (values - 1.0) ** 2, -1))
    x = torch.zeros(3, 1)
    with pytest.raises(ValueError, match="beta"):
        DiscreteGibbs(lambda y, x: (y - x.squeeze(-1)) ** 2, values, beta=beta, x=x)


def test_discrete_gibbs_batch_rank_when_x_has_event_dims():
    x = torch.randn(4, 3)
    F = lambda y, x: (y - x.sum(-1)) ** 2  # noqa: E731
    values = torch.arange(-3.0, 4.0)
    d = DiscreteGibbs(F, values, x=x)
    assert d.batch_shape == (4,) and d.probs.shape == (4, 7)
    v, e, i, all_e = argmin_candidates(F, values, x=x)
    brute = torch.stack([(values - s) ** 2 for s in x.sum(-1)])  # [4, 7]
    assert v.shape == (4,) and torch.equal(i, brute.argmin(-1)) and torch.allclose(all_e, brute)
    with pytest.raises(ValueError, match="batch_ndims"):
        DiscreteGibbs(F, values, x=x, batch_ndims=-1)


def test_energy_factor_rejects_trailing_singleton_inside_plate():
    def model(e):
        with pyro.plate("points", 3):
            energy_factor("f", e)

    with pytest.raises(ValueError, match="plate 'points'"):
        pyro.poutine.trace(model).get_trace(torch.zeros(3, 1))
    tr = pyro.poutine.trace(model).get_trace(torch.arange(3.0))
    tr.compute_log_prob()
    assert torch.equal(tr.nodes["f"]["log_prob"], -torch.arange(3.0))
    with pytest.raises(ValueError, match="beta"):
        pyro.poutine.trace(lambda: energy_factor("f", torch.zeros(3), beta=torch.ones(2))).get_trace()


def test_x_y_batch_mismatch_and_mixed_dtypes_named():
    F = lambda y, x: ((y - x) ** 2).sum(-1)  # noqa: E731
    with pytest.raises(ValueError, match="y_init and x"):
        argmin_energy(F, torch.zeros(5, 3, 2), x=torch.zeros(4, 2), event_shape=(2,))
    E = as_energy(lambda y, z: (y - z) ** 2, latent_shape=())
    with pytest.raises(TypeError, match="z_values"):
        latent_energy_model(E, torch.zeros(3), torch.tensor([-1.0, 1.0], dtype=torch.float64))


def test_all_inf_rows_raise_naming_the_row():
    inf = math.inf
    F = lambda y, x: torch.where(x > 0, torch.full_like(y * x, inf), (y - x) ** 2)  # noqa: E731
    with pytest.raises(ValueError, match=r"row \(1,\)"):
        DiscreteGibbs(F, torch.arange(3.0), x=torch.tensor([-1.0, 2.0, -3.0]))
    E = as_energy(lambda y, z: torch.where(y > 0, torch.full_like(y - z, inf), (y - z) ** 2), latent_shape=())
    with pytest.raises(ValueError, match=r"row \(2,\)"):
        latent_posterior(E, torch.tensor([-1.0, -2.0, 1.0]), torch.tensor([0.0, 1.0]))
    energies = torch.tensor([[0.0, 1.0], [inf, inf]])
    target = torch.tensor([0, 1])
    for fn in (losses.nll, losses.mee, losses.general_margin):
        with pytest.raises(ValueError, match=r"row \(1,\)"):
            fn(energies, target)


def test_integer_candidates_and_integer_energies_are_promoted():
    d = DiscreteGibbs(lambda y: (y - 1) ** 2, torch.arange(3))
    assert d.probs.dtype == torch.get_default_dtype()
    e = torch.tensor([1.0, 0.0, 1.0])
    assert torch.allclose(d.probs, torch.softmax(-e, -1))
    v, _, i, _ = argmin_candidates(lambda y: (y - 2) ** 2, torch.arange(5))
    assert int(v) == 2 and int(i) == 2
    tr = pyro.poutine.trace(lambda: energy_factor("f", torch.tensor([1, 2]), beta=2.0)).get_trace()
    tr.compute_log_prob()
    assert torch.equal(tr.nodes["f"]["log_prob"], torch.tensor([-2.0, -4.0]))


def test_latent_energy_model_recipe_without_parameters_and_bad_batches():
    E = as_energy(lambda y, z: (y - z) ** 2, latent_shape=())
    y, zv, beta = torch.tensor([0.0, 0.5, 2.0]), torch.tensor([-1.0, 1.0]), 2.0
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(latent_energy_model(E, y, zv, beta=beta), lambda: None)
    # closed form: -1/beta log sum_z exp(-beta (y - z)^2), summed over the batch
    expected = sum(-math.log(sum(math.exp(-beta * (float(a) - float(b)) ** 2) for b in zv)) / beta for a in y)
    assert abs(loss.item() / beta - expected) < 1e-5
    assert torch.allclose(loss / beta, free_energy(E, y, zv, beta=beta).sum())
    with pytest.raises(ValueError, match="y must have a non-empty batch"):
        latent_energy_model(E, torch.zeros(0), zv)
    with pytest.raises(ValueError, match="beta"):
        latent_energy_model(E, y, zv, beta=torch.ones(2))
    with pytest.raises(ValueError, match="beta"):
        free_energy(E, y, zv, beta=torch.ones(2))


# ------------------------------------------------------------------------------ float32 precision


@pytest.mark.parametrize("scale", [1e6, -1e6])
def test_nca_and_info_nce_float32_match_float64_at_large_energies(scale):
    g = torch.Generator().manual_seed(0)
    E = (scale + 3.0 * torch.randn(6, 9, generator=g)).float()
    same = torch.rand(6, 9, generator=g) < 0.4
    same[:, 0] = True
    for beta in (1.0, 0.3):
        got = losses.nca(E, same, beta=beta, reduction="none").double()
        want = losses.nca(E.double(), same, beta=beta, reduction="none")
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
        got = losses.info_nce(E[:, 0], E[:, 1:], beta=beta, reduction="none").double()
        want = losses.info_nce(E[:, 0].double(), E[:, 1:].double(), beta=beta, reduction="none")
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    # and the gradients too (they are probabilities)
    Eg = E.clone().requires_grad_(True)
    losses.info_nce(Eg[:, 0], Eg[:, 1:]).backward()
    E64 = E.double().requires_grad_(True)
    losses.info_nce(E64[:, 0], E64[:, 1:]).backward()
    assert torch.allclose(Eg.grad.double(), E64.grad, atol=1e-6)


# ------------------------------------------------------------------------------ fit


def _bowl():
    class Bowl(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Parameter(torch.zeros(2))

        def forward(self, y, x=None):
            return ((y - self.c) ** 2).sum(-1)

    return Bowl()


def test_fit_names_empty_data_bad_checkpoint_and_garbage_resume(tmp_path):
    from pyro_ebm.negatives import Corruption

    with pytest.raises(ValueError, match="data"):
        fit(_bowl(), torch.zeros(0, 2), losses.log_loss, Corruption(0.5, seed=0), steps=2, progress=False)
    calls = []
    with pytest.raises(ValueError, match="checkpoint.*does not exist"):
        fit(_bowl(), torch.randn(8, 2), losses.log_loss, Corruption(0.5, seed=0), steps=2, batch_size=4,
            checkpoint=str(tmp_path / "missing" / "c.pt"), callbacks=[lambda s, h: calls.append(s)],
            progress=False)
    assert calls == []  # failed before the first step
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="garbage.pt"):
        fit(_bowl(), torch.randn(8, 2), losses.log_loss, Corruption(0.5, seed=0), steps=2, batch_size=4,
            resume=str(garbage), progress=False)
    # a checkpoint in an existing directory is still written
    ok = tmp_path / "c.pt"
    fit(_bowl(), torch.randn(8, 2), losses.log_loss, Corruption(0.5, seed=0), steps=2, batch_size=4,
        checkpoint=str(ok), progress=False)
    assert os.path.exists(ok)


# ------------------------------------------------------------------------------ data sets


def test_datasets_reject_nan_scales_bad_cells_and_seeds():
    with pytest.raises(ValueError, match="std"):
        datasets.eight_gaussians(10, std=math.nan)
    for cells in (2.5, 0, 3):
        with pytest.raises((TypeError, ValueError), match="cells"):
            datasets.checkerboard(10, cells=cells)
    with pytest.raises(TypeError, match="seed"):
        datasets.two_moons(10, seed=1.5)
    with pytest.raises(ValueError, match="noise"):
        datasets.rings(10, noise=-1.0)
    # an even board is still uniform over its dark squares: every dark cell is hit, no light one
    pts = datasets.checkerboard(4000, size=4.0, cells=4, seed=0)
    ij = torch.floor(pts + 2.0).long()
    assert bool(((ij[:, 0] + ij[:, 1]) % 2 == 0).all())
    assert len({tuple(c) for c in ij.tolist()}) == 8


# ------------------------------------------------------------------------------ diagnostics


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"rhat_threshold": math.nan}, "rhat_threshold"),
        ({"min_ess": math.nan}, "min_ess"),
        ({"max_divergence_fraction": 2.0}, "max_divergence_fraction"),
        ({"max_divergence_fraction": -0.1}, "max_divergence_fraction"),
        ({"bfmi_threshold": math.nan}, "bfmi_threshold"),
    ],
)
def test_check_negatives_rejects_nan_thresholds(kwargs, name):
    draws = {"y": torch.randn(4, 50, generator=torch.Generator().manual_seed(0))}
    with pytest.raises(ValueError, match=name):
        check_negatives(draws, **kwargs)


def _n_lines(fig):
    return sum(len(ax.get_lines()) for ax in fig.axes)


def test_plots_draw_a_subset_of_chains_summary_uses_all():
    g = torch.Generator().manual_seed(0)
    draws = {"y": torch.randn(64, 40, generator=g)}
    data = to_arviz(draws)
    sub = _arviz.select_chains(data, [0, 9, 18, 27, 36, 45, 54, 63])
    assert _arviz.group_arrays(sub, "posterior")["y"].shape == (8, 40)
    assert np.array_equal(_arviz.group_arrays(sub, "posterior")["y"][1], draws["y"][9].numpy())
    few = _n_lines(plot_trace(draws))
    plt.close("all")
    all_ = _n_lines(plot_trace(draws, max_chains=None))
    plt.close("all")
    four = _n_lines(plot_trace(draws, max_chains=4))
    plt.close("all")
    assert four < few < all_
    fig = plot_rank(draws, max_chains=4)
    assert fig is not None
    plt.close("all")
    with pytest.raises(TypeError, match="max_chains"):
        plot_trace(draws, max_chains=2.5)
    # summaries keep every chain: R-hat over 64 chains equals ArviZ's own on the full array
    table = summary(draws)
    assert abs(float(table["r_hat"].iloc[0]) - float(_arviz.rhat(draws["y"].numpy()))) < 1e-12


def _normal_model(data):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("obs", data.shape[0]):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=data)


def _factor_model(data):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("points", data.shape[0]):
        # the normalized Gaussian written as an energy: -log N(y; mu, 1)
        energy_factor("fit", 0.5 * (data - mu) ** 2 + 0.5 * math.log(2 * math.pi))


def test_to_arviz_log_likelihood_and_plate_dims_from_pyro_mcmc():
    data = torch.randn(15, generator=torch.Generator().manual_seed(1)) + 1.0
    pyro.set_rng_seed(0)
    runs = {}
    for name, model in (("obs", _normal_model), ("factor", _factor_model)):
        mcmc = MCMC(NUTS(model), num_samples=60, warmup_steps=60, disable_progbar=True)
        mcmc.run(data)
        runs[name] = (mcmc, to_arviz(mcmc))
    mcmc, idata = runs["obs"]
    ll = _arviz.group_arrays(idata, "log_likelihood")["y"]
    mu = mcmc.get_samples(group_by_chain=True)["mu"]
    want = dist.Normal(mu.unsqueeze(-1), 1.0).log_prob(data).numpy()
    assert ll.shape == (1, 60, 15) and np.allclose(ll, want, atol=1e-6)
    assert "obs" in idata["log_likelihood"]["y"].dims
    assert np.allclose(_arviz.group_arrays(idata, "observed_data")["y"], data.numpy())
    # the factor site's log-likelihood is its log-factor -beta F, here the same Gaussian log density
    mcmc_f, idata_f = runs["factor"]
    llf = _arviz.group_arrays(idata_f, "log_likelihood")["fit"]
    muf = mcmc_f.get_samples(group_by_chain=True)["mu"]
    assert np.allclose(llf, dist.Normal(muf.unsqueeze(-1), 1.0).log_prob(data).numpy(), atol=1e-5)
    assert "points" in idata_f["log_likelihood"]["fit"].dims
    # loo and waic run, and agree with a direct computation of WAIC from the pointwise matrix
    assert np.isfinite(float(az.loo(idata).elpd_loo))
    w = az.waic(idata_f)
    flat = llf.reshape(-1, 15).astype(np.float64)
    lppd = np.log(np.exp(flat).mean(0)).sum()
    p_waic = flat.var(0).sum()  # ArviZ: the plain (ddof=0) variance over draws
    assert abs(float(w.elpd_waic) - (lppd - p_waic)) < 1e-4
    no = to_arviz(mcmc, log_likelihood=False)
    assert "log_likelihood" not in _arviz.group_names(no)


def test_to_arviz_given_log_likelihood_checked():
    draws = {"y": np.zeros((2, 10))}
    with pytest.raises(ValueError, match="log_likelihood"):
        to_arviz(draws, log_likelihood={"y": np.zeros((2, 9, 3))})
    data = to_arviz(draws, log_likelihood={"y": np.zeros((2, 10, 3))})
    assert _arviz.group_arrays(data, "log_likelihood")["y"].shape == (2, 10, 3)


def test_tensor_beta_checked_against_the_batch_everywhere():
    E = as_energy(lambda y, z: (y - z) ** 2, latent_shape=())
    three = torch.ones(3)
    calls = {
        "square_exp": lambda: losses.square_exp(torch.zeros(2), torch.zeros(2), beta=three),
        "info_nce": lambda: losses.info_nce(torch.zeros(2), torch.zeros(2, 4), beta=three),
        "nca": lambda: losses.nca(torch.zeros(2, 4), torch.ones(2, 4, dtype=torch.bool), beta=three),
        "nll": lambda: losses.nll(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), beta=three),
        "mee": lambda: losses.mee(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), beta=three),
        "free_energy_importance": lambda: pyro_ebm.free_energy_importance(
            E, torch.zeros(2), dist.Normal(0.0, 1.0), 10, beta=three),
        "latent_posterior": lambda: latent_posterior(E, torch.zeros(2), torch.zeros(2), beta=three),
        "free_energy": lambda: free_energy(E, torch.zeros(2), torch.zeros(2), beta=three),
        "DiscreteGibbs": lambda: DiscreteGibbs(lambda y, x: y - x, torch.zeros(2), x=torch.zeros(2), beta=three),
        "GibbsBoltzmann": lambda: GibbsBoltzmann(lambda y, x: y - x, x=torch.zeros(2), beta=three),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match="beta of shape \\(3,\\)"):
            call()


def test_mixed_dtypes_name_the_arguments():
    F = lambda y, x: (y @ x).sum(-1)  # noqa: E731
    x64 = torch.eye(2, dtype=torch.float64)
    with pytest.raises(TypeError, match="y_init .*float32.* x .*float64"):
        argmin_energy(F, torch.zeros(3, 2), x=x64, event_shape=(2,))
    with pytest.raises(TypeError, match="value .*float32.* x .*float64"):
        GibbsBoltzmann(F, x=x64, event_shape=(2,)).log_prob(torch.zeros(2, 2))
    # consistent promotion where torch promotes: float32 y against float64 x gives float64 log-densities
    lp = GibbsBoltzmann(lambda y, x: ((y - x) ** 2).sum(-1), x=torch.zeros(2, dtype=torch.float64),
                        event_shape=(2,)).log_prob(torch.ones(2))
    assert lp.dtype == torch.float64 and float(lp) == -2.0


def test_sample_with_float64_energy_and_float32_init_names_or_promotes():
    from pyro_ebm.mcmc import sample

    class Bowl64(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))

        def forward(self, y):
            return ((y - self.c) ** 2).sum(-1)

    # consistent promotion: the chains run in the promoted dtype, and the draws are finite
    s = sample(as_energy(Bowl64(), event_shape=(2,)), torch.zeros(4, 2), 20, 5, seed=0, progress=False)
    assert s.draws.dtype == torch.float64 and bool(torch.isfinite(s.draws).all())


def test_persistent_ula_reports_nan_proposals_as_divergent():
    """ULA has no accept step: a proposal into a NaN region is rejected, the chain keeps its state, and
    last_stats counts it (it used to report nothing)."""
    from pyro_ebm.mcmc import PersistentChains

    F = lambda y: torch.where(y[..., 0] > 0.5, torch.full_like(y[..., 0], float("nan")), 0.5 * (y ** 2).sum(-1))
    pc = PersistentChains(F, 64, init=torch.zeros(64, 2), kernel="ula", step_size=0.5, reinit_prob=0.0, seed=0)
    out = pc.sample(64, 20)
    assert pc.last_stats["diverging"] > 0
    assert bool(torch.isfinite(out).all()) and bool((out[:, 0] <= 0.5).all())
