"""Energy sites under ``pyro.infer.Predictive`` (no ancestral draws of an unnormalized density), and the
missing-log-Z warning given once per site per inference, not at every re-trace of the model."""

from __future__ import annotations

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyro_ebm import DoublyIntractableWarning, GibbsBoltzmann, as_energy, energy_factor
from pyro_ebm.inference import latent_energy_model


def well(y):
    return ((y - 1.0) ** 2).sum(-1)


def gibbs_model(obs=None):
    y = pyro.sample("y", GibbsBoltzmann(well, beta=2.0, event_shape=(2,)))
    return pyro.sample("obs", dist.Normal(y.sum(-1), 0.5), obs=obs)


def factor_model():
    y = pyro.sample("y", dist.Normal(0.0, 3.0).expand([2]).to_event(1))
    energy_factor("well", well(y), beta=4.0)
    return y


# ---------------------------------------------------------------------------------------------- Predictive


@pytest.mark.parametrize("parallel", [False, True])
def test_predictive_refuses_to_draw_a_gibbs_site(parallel):
    with pytest.raises(NotImplementedError, match=r"GibbsBoltzmann site 'y'.*ancestral.*posterior_samples"):
        Predictive(gibbs_model, num_samples=5, parallel=parallel)()


def test_predictive_refuses_draws_that_leave_out_an_energy_factor():
    with pytest.raises(NotImplementedError, match=r"\['y'\].*energy_factor 'well'.*MCMC"):
        Predictive(factor_model, num_samples=5)()
    # a latent-variable energy: z drawn uniformly would ignore the energy; infer_discrete is the tool
    energy = as_energy(lambda y, z: (y - z) ** 2, latent_shape=())
    model = latent_energy_model(energy, torch.tensor([0.0, 2.0]), torch.tensor([-1.0, 1.0]))
    with pytest.raises(NotImplementedError, match="infer_discrete"):
        Predictive(model, num_samples=3)()


def test_predictive_on_posterior_samples_observed_sites_and_mcmc_still_work():
    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(gibbs_model), num_samples=40, warmup_steps=40, disable_progbar=True)
    mcmc.run(obs=torch.tensor(2.0))
    samples = mcmc.get_samples()
    assert samples["y"].shape == (40, 2) and samples["y"].abs().sum() > 0
    for parallel in (False, True):
        post = Predictive(gibbs_model, posterior_samples=samples, parallel=parallel)()
        assert post["obs"].shape == (40,)
    # the energy factor, with its latent site conditioned on MCMC draws
    mcmc = MCMC(NUTS(factor_model), num_samples=30, warmup_steps=30, disable_progbar=True)
    mcmc.run()
    got = Predictive(factor_model, posterior_samples=mcmc.get_samples(), return_sites=["well", "_RETURN"])()
    assert got["_RETURN"].shape == (30, 2)

    # an observed Gibbs site needs no draws
    def observed(data):
        m = pyro.sample("m", dist.Normal(0.0, 1.0))
        with pyro.plate("n", len(data)):
            pyro.sample("y", GibbsBoltzmann(lambda y: 0.5 * (y - m) ** 2, constant_log_z=True), obs=data)

    data = torch.randn(10)
    out = Predictive(observed, num_samples=7)(data)
    assert out["m"].numel() == 7 and torch.equal(out["y"][0].flatten(), data)
    # sample() itself, outside Predictive, keeps giving the initial point (what init_to_sample uses)
    assert torch.equal(GibbsBoltzmann(well, event_shape=(2,)).sample((3,)), torch.zeros(3, 2))


# ---------------------------------------------------------------------------------------------- warnings


DATA = torch.randn(30, generator=torch.Generator().manual_seed(3)) * 0.5


def two_dependent_sites(data):
    s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
    with pyro.plate("n", len(data)):
        pyro.sample("y", GibbsBoltzmann(lambda y: 0.5 * s * y**2), obs=data)
        pyro.sample("y4", GibbsBoltzmann(lambda y: 0.25 * s * y**4), obs=data)


def _doubly_intractable(run):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        run()
    return [str(w.message) for w in rec if issubclass(w.category, DoublyIntractableWarning)]


def test_nuts_warns_once_per_site_per_run_under_always():
    def run():
        pyro.set_rng_seed(0)
        MCMC(NUTS(two_dependent_sites), num_samples=25, warmup_steps=25, disable_progbar=True).run(DATA)

    for _ in range(2):  # a new run warns again
        got = _doubly_intractable(run)
        assert len(got) == 2, got
        assert sum("site 'y' " in m for m in got) == 1 and sum("site 'y4' " in m for m in got) == 1
        assert all("latent site 's'" in m for m in got)


def test_svi_warns_once_per_site_per_svi_object():
    def run():
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        svi = SVI(two_dependent_sites, AutoNormal(two_dependent_sites), pyro.optim.Adam({"lr": 0.01}),
                  Trace_ELBO())
        for _ in range(10):
            svi.step(DATA)

    assert len(_doubly_intractable(run)) == 2
    assert len(_doubly_intractable(run)) == 2
