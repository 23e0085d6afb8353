"""A GibbsBoltzmann site must survive everything Pyro does to a site."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer import HMC, MCMC, NUTS, SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoDelta, AutoNormal
from pyro.infer.autoguide.initialization import (
    init_to_feasible,
    init_to_generated,
    init_to_mean,
    init_to_median,
    init_to_sample,
    init_to_uniform,
    init_to_value,
)
from pyro.infer.mcmc.util import initialize_model

from pyro_ebm import GibbsBoltzmann


def double_well(y):
    """2-D double well: minima at (+-1, 0)."""
    return (y[..., 0] ** 2 - 1) ** 2 + 0.5 * y[..., 1] ** 2


def model():
    return pyro.sample("y", GibbsBoltzmann(double_well, beta=2.0, event_shape=(2,)))


INIT_STRATEGIES = {
    "feasible": init_to_feasible,
    "mean": init_to_mean,
    "median": init_to_median,
    "sample": init_to_sample,
    "uniform": init_to_uniform,
    "value": init_to_value(values={"y": torch.tensor([0.5, -0.2])}),
    "generated": init_to_generated(generate=lambda: init_to_value(values={"y": torch.tensor([-0.5, 0.1])})),
}


@pytest.mark.parametrize("name", sorted(INIT_STRATEGIES))
def test_nuts_runs_with_every_init_strategy(name):
    pyro.set_rng_seed(0)
    mcmc = MCMC(
        NUTS(model, init_strategy=INIT_STRATEGIES[name]), num_samples=40, warmup_steps=40, disable_progbar=True
    )
    mcmc.run()
    y = mcmc.get_samples()["y"]
    assert y.shape == (40, 2) and torch.isfinite(y).all()
    assert y[:, 0].std() > 0.05  # it moved


def test_initialize_model_guesses_plate_nesting():
    def plated():
        with pyro.plate("n", 3):
            pyro.sample("y", GibbsBoltzmann(double_well, event_shape=(2,)))

    _, potential_fn, _, _ = initialize_model(plated)
    assert torch.isfinite(potential_fn({"y": torch.zeros(3, 2)}))


def test_nuts_two_chains_and_arviz_chain_dim():
    """The double well with 2 chains; converts to ArviZ with a chain dimension.

    Statistical check of the y[1] marginal, which is exactly N(0, 1/beta) = N(0, 0.5) (the energy is
    separable and 0.5 y1^2 has unit curvature), with tolerances from the effective sample sizes of y1 and y1^2.
    """
    az = pytest.importorskip("arviz")
    from pyro_ebm.diagnostics import to_arviz

    pyro.set_rng_seed(1)
    mcmc = MCMC(NUTS(model), num_samples=300, warmup_steps=200, num_chains=2, mp_context="spawn", disable_progbar=True)
    mcmc.run()
    idata = to_arviz(mcmc)
    post = idata.posterior["y"] if hasattr(idata, "posterior") else idata["posterior"]["y"]
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 300
    draws = mcmc.get_samples(group_by_chain=True)["y"].numpy()
    assert np.allclose(post.values, draws)
    y1 = draws[..., 1]
    ess = float(az.ess(idata, var_names=["y"])["y"].values[1])
    ess_sq = float(az.ess(y1**2))
    assert abs(y1.mean()) < 4 * math.sqrt(0.5 / ess), (y1.mean(), ess)
    # the sample variance of a normal has sd var * sqrt(2 / n)
    assert abs(y1.var() - 0.5) < 4 * 0.5 * math.sqrt(2 / ess_sq), (y1.var(), ess_sq)


def test_hmc_and_constrained_support():
    """A positive y with F(y) = y: the Gibbs distribution is Exponential(beta)."""

    def exp_model():
        return pyro.sample(
            "y", GibbsBoltzmann(lambda y: y, beta=2.0, event_shape=(), support=constraints.positive)
        )

    pyro.set_rng_seed(2)
    mcmc = MCMC(HMC(exp_model, step_size=0.3, num_steps=8), num_samples=1500, warmup_steps=300, disable_progbar=True)
    mcmc.run()
    y = mcmc.get_samples()["y"]
    assert (y > 0).all()
    # conservative: ESS >= 150 of 1500 draws for this 1-D target
    se = 0.5 / math.sqrt(150)
    assert abs(y.mean().item() - 0.5) < 4 * se


def test_predictive_prior_and_posterior():
    def cond_model(obs=None):
        y = pyro.sample("y", GibbsBoltzmann(double_well, beta=2.0, event_shape=(2,)))
        return pyro.sample("obs", dist.Normal(y.sum(-1), 0.5), obs=obs)

    # exp(-beta F)/Z cannot be drawn ancestrally: Predictive without samples says so (it once returned zeros)
    with pytest.raises(NotImplementedError, match="GibbsBoltzmann site 'y'.*posterior_samples"):
        Predictive(cond_model, num_samples=11)()
    post_y = torch.randn(7, 2)
    post = Predictive(cond_model, posterior_samples={"y": post_y})()
    assert post["obs"].shape == (7,)


@pytest.mark.parametrize("guide_cls", [AutoDelta, AutoNormal])
def test_svi_with_autoguides(guide_cls):
    """MAP / variational fit of a tilted quadratic: minimum of F(y) = 0.5|y - c|^2 at c."""
    c = torch.tensor([1.5, -0.5])

    def m():
        pyro.sample("y", GibbsBoltzmann(lambda y: 0.5 * ((y - c) ** 2).sum(-1), beta=4.0, event_shape=(2,)))

    pyro.clear_param_store()
    pyro.set_rng_seed(3)
    guide = guide_cls(m)
    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.995})
    svi = SVI(m, guide, optim, Trace_ELBO(num_particles=16, vectorize_particles=True, max_plate_nesting=0))
    for _ in range(600):
        svi.step()
    if guide_cls is AutoDelta:
        loc = guide.median()["y"]
        assert torch.allclose(loc, c, atol=1e-2)
    else:
        loc = pyro.param("AutoNormal.locs.y").detach()
        scale = pyro.param("AutoNormal.scales.y").detach()
        assert torch.allclose(loc, c, atol=0.1)
        # exact posterior is N(c, 1/beta) = sd 0.5
        assert torch.allclose(scale, torch.full((2,), 0.5), atol=0.1)


def test_plates_trace_and_enumeration_guess():
    def plated(n=4):
        with pyro.plate("items", n):
            y = pyro.sample("y", GibbsBoltzmann(double_well, event_shape=(2,)))
        return y

    tr = poutine.trace(plated).get_trace()
    tr.compute_log_prob()
    assert tr.nodes["y"]["log_prob"].shape == (4,)
    assert torch.allclose(tr.nodes["y"]["log_prob"], -double_well(tr.nodes["y"]["value"]))
