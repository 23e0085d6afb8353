"""An energy as a likelihood: the missing-log-Z warning, the exchange algorithm, pseudo-likelihood, ML.

Reference numbers are independent: the conjugate Gamma posterior of a Gaussian precision in closed form,
and for a 3 x 3 Ising model log Z by enumeration of its 512 states and the posterior by quadrature on a
grid over theta.
"""

import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDelta, AutoNormal

from pyro_ebm import DoublyIntractableWarning, GibbsBoltzmann, energy_factor, losses, product_values
from pyro_ebm.likelihood import exchange, fisher_information, pseudo_likelihood_fit, site_conditionals
from pyro_ebm.partition import NormalizedGibbs

@pytest.fixture(autouse=True)
def _one_thread():
    """Small batched energies: one torch thread is much faster than several on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


DATA = torch.randn(30, generator=torch.Generator().manual_seed(3)) * 0.5


def _dependent(data):
    s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
    with pyro.plate("n", len(data)):
        pyro.sample("y", GibbsBoltzmann(lambda y: 0.5 * s * y**2), obs=data)


def _optout(data):
    m = pyro.sample("m", dist.Normal(0.0, 1.0))
    with pyro.plate("n", len(data)):  # location family: log Z does not depend on m
        pyro.sample("y", GibbsBoltzmann(lambda y: 0.5 * (y - m) ** 2, constant_log_z=True), obs=data)


def _free(data):
    m = pyro.sample("m", dist.Normal(0.0, 1.0))
    with pyro.plate("n", len(data)):
        pyro.sample("y", GibbsBoltzmann(lambda y: 0.5 * y**2), obs=data)
    pyro.sample("z", dist.Normal(m, 1.0), obs=torch.tensor(0.3))


def _param(data):
    s = pyro.param("prec", torch.tensor(1.0), constraint=dist.constraints.positive)
    with pyro.plate("n", len(data)):
        pyro.sample("y", GibbsBoltzmann(lambda y: 0.5 * s * y**2), obs=data)


def _factor(data):
    s = pyro.param("prec", torch.tensor(1.0), constraint=dist.constraints.positive)
    energy_factor("lik", (0.5 * s * data**2).sum())


def _latent_potential(data):
    """The way energies enter Pyro programs: a factor over a latent, an unnormalized joint; never flagged."""
    y = pyro.sample("y", dist.Normal(0.0, 3.0))
    s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
    energy_factor("well", s * (y**2 - 1) ** 2, beta=4.0)


def _normalized(data):
    s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
    log_z = 0.5 * torch.log(2 * math.pi / s)  # the exact normalizer, a function of s
    with pyro.plate("n", len(data)):
        pyro.sample("y", NormalizedGibbs(lambda y: 0.5 * s * y**2, log_z), obs=data)


def _warnings_of(run):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        run()
    return [w for w in rec if issubclass(w.category, DoublyIntractableWarning)]


def _nuts(model):
    def run():
        pyro.set_rng_seed(0)
        MCMC(NUTS(model), num_samples=5, warmup_steps=5, disable_progbar=True).run(DATA)

    return run


def _svi(model, guide=AutoNormal):
    def run():
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        svi = SVI(model, guide(model), pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
        for _ in range(3):
            svi.step(DATA)

    return run


@pytest.mark.parametrize("how", ["nuts", "svi"])
def test_theta_dependent_energy_always_warns_naming_the_sites(how):
    run = _nuts(_dependent) if how == "nuts" else _svi(_dependent)
    for _ in range(2):  # every run, not only the first one in the process
        got = _warnings_of(run)
        assert got, "no DoublyIntractableWarning"
        msg = str(got[0].message)
        assert "'y'" in msg and "latent site 's'" in msg and "constant_log_z" in msg and "exchange" in msg


def test_parameters_and_factors_are_checked_too():
    got = _warnings_of(_svi(_param, guide=lambda m: (lambda data: None)))
    assert got and "parameter 'prec'" in str(got[0].message)
    got = _warnings_of(_svi(_factor, guide=lambda m: (lambda data: None)))
    assert got and "energy_factor 'lik'" in str(got[0].message) and "parameter 'prec'" in str(got[0].message)


@pytest.mark.parametrize("how", ["nuts", "svi"])
def test_a_factor_over_latent_sites_is_a_potential_and_never_warns(how):
    run = _nuts(_latent_potential) if how == "nuts" else _svi(_latent_potential)
    assert not _warnings_of(run)


@pytest.mark.parametrize("model", [_free, _optout, _normalized], ids=["theta-free", "opt-out", "normalized"])
@pytest.mark.parametrize("how", ["nuts", "svi", "svi-delta"])
def test_theta_free_opted_out_or_normalized_never_warn(model, how):
    run = {"nuts": _nuts(model), "svi": _svi(model), "svi-delta": _svi(model, AutoDelta)}[how]
    assert not _warnings_of(run)


def test_factor_opt_out_and_predictive_are_silent():
    def model(data):
        s = pyro.param("prec", torch.tensor(1.0), constraint=dist.constraints.positive)
        energy_factor("lik", (0.5 * s * data**2).sum(), constant_log_z=True)

    assert not _warnings_of(_svi(model, guide=lambda m: (lambda data: None)))
    # Predictive runs without gradients: nothing to check, and nothing is evaluated as a likelihood
    samples = {"s": torch.ones(4)}
    assert not _warnings_of(lambda: pyro.infer.Predictive(_dependent, samples)(DATA))


# ---------------------------------------------------------------------------------------------- Gaussian


A0, B0 = 2.0, 1.0  # Gamma(shape, rate) prior on the precision


def _gaussian_exact(y):
    a, b = A0 + len(y) / 2, B0 + float((y**2).sum()) / 2
    return a / b, math.sqrt(a) / b  # mean, sd of Gamma(a, b)


def _normal_aux(tau, n, g):
    return torch.randn((n,) + tuple(tau.shape), generator=g, dtype=tau.dtype) / tau.sqrt()


def _check_against(samples, name, exact_mean, exact_sd, k=4.0):
    summ = samples.summary(name)
    ess = float(np.min(np.asarray(summ["ess_bulk"], dtype=float)))
    rhat = float(np.max(np.asarray(summ["r_hat"], dtype=float)))
    draws = samples.draws.reshape(-1)
    mean, sd = float(draws.mean()), float(draws.std())
    assert abs(mean - exact_mean) < k * exact_sd / math.sqrt(ess), (mean, exact_mean, ess)
    assert abs(sd - exact_sd) < k * exact_sd / math.sqrt(2 * ess), (sd, exact_sd, ess)
    return rhat, ess


@pytest.mark.slow
def test_exchange_gaussian_precision_matches_the_conjugate_posterior():
    y = torch.randn(50, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.5
    torch.manual_seed(0)
    s = exchange(lambda y, tau: 0.5 * tau * y**2, y, dist.Gamma(torch.tensor(A0, dtype=torch.float64), B0),
                 aux=_normal_aux, num_chains=16, num_warmup=300, num_samples=2000, seed=1)
    mean, sd = _gaussian_exact(y)
    rhat, ess = _check_against(s, "tau", mean, sd)
    assert rhat < 1.01 and ess > 300
    acc = float(s.stats["acceptance_rate"].mean())
    assert 0.1 < acc < 0.6


def test_naive_unnormalized_posterior_is_wrong_and_flagged():
    """NUTS on exp(-sum F(y; tau)) without Z(tau): warned, and its mean is nowhere near the exact one."""
    y = torch.randn(50, generator=torch.Generator().manual_seed(0)) * 0.5

    def naive(y):
        tau = pyro.sample("tau", dist.Gamma(A0, B0))
        with pyro.plate("n", len(y)):
            pyro.sample("y", GibbsBoltzmann(lambda v: 0.5 * tau * v**2), obs=y)

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        pyro.set_rng_seed(0)
        mcmc = MCMC(NUTS(naive), num_samples=100, warmup_steps=60, disable_progbar=True)
        mcmc.run(y)
    assert any(issubclass(w.category, DoublyIntractableWarning) for w in rec)
    mean, sd = _gaussian_exact(y)
    naive_mean = float(mcmc.get_samples()["tau"].mean())
    assert abs(naive_mean - mean) > 4 * sd  # (A0 - 1) / (B0 + sum y^2 / 2) ~ 0.1 against ~ 4


@pytest.mark.slow
def test_exchange_gaussian_with_persistent_hmc_auxiliary_chains():
    """Approximate auxiliary draws (the library's HMC with one leapfrog step, 50 transitions per exchange
    step, persistent states): within Monte-Carlo error of the exact posterior."""
    y = torch.randn(50, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.5
    torch.manual_seed(0)
    s = exchange(lambda y, tau: 0.5 * tau * y**2, y, dist.Gamma(torch.tensor(A0, dtype=torch.float64), B0),
                 aux="mcmc", aux_kernel="hmc", aux_steps=50, aux_options={"step_size": 0.2, "n_steps": 1},
                 num_chains=8, num_warmup=300, num_samples=1500, seed=1)
    mean, sd = _gaussian_exact(y)
    rhat, _ = _check_against(s, "tau", mean, sd)
    assert rhat < 1.01


# ---------------------------------------------------------------------------------------------- Ising

SIDE = 3
_EDGES = [(r * SIDE + c, r * SIDE + c + 1) for r in range(SIDE) for c in range(SIDE - 1)] + [
    (r * SIDE + c, (r + 1) * SIDE + c) for r in range(SIDE - 1) for c in range(SIDE)
]
_I, _J = torch.tensor([e[0] for e in _EDGES]), torch.tensor([e[1] for e in _EDGES])
_ADJ = torch.zeros(SIDE * SIDE, SIDE * SIDE, dtype=torch.float64)
_ADJ[_I, _J] = 1.0


def ising(y, theta):
    """F(y; J, h) = -J sum_<ij> s_i s_j - h sum_i s_i, spins s = 2y - 1 from y in {0, 1}^9."""
    s = 2 * y - 1
    pair = ((s @ _ADJ.to(s.dtype)) * s).sum(-1)
    return -theta[..., 0] * pair - theta[..., 1] * s.sum(-1)


STATES = product_values([0.0, 1.0], SIDE * SIDE).double()
TRUE = torch.tensor([0.3, 0.2], dtype=torch.float64)


def _exact_log_z(theta):  # theta [..., 2] -> [...]
    return torch.logsumexp(-ising(STATES, theta.unsqueeze(-2)), -1)


def _ising_data(n, seed):
    p = torch.softmax(-ising(STATES, TRUE), 0)
    idx = torch.multinomial(p, n, replacement=True, generator=torch.Generator().manual_seed(seed))
    return STATES[idx]


def _grid_posterior(data, prior_sd):
    g = torch.linspace(-1.0, 1.5, 251, dtype=torch.float64)
    th = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1)  # [G, G, 2]
    stat_pair = ((2 * data - 1)[:, _I] * (2 * data - 1)[:, _J]).sum(-1).sum()
    stat_field = (2 * data - 1).sum()
    log_post = th[..., 0] * stat_pair + th[..., 1] * stat_field - len(data) * _exact_log_z(th)
    log_post = log_post - 0.5 * (th**2).sum(-1) / prior_sd**2
    w = torch.softmax(log_post.reshape(-1), 0).reshape(log_post.shape)
    mean = (w.unsqueeze(-1) * th).sum((0, 1))
    sd = ((w.unsqueeze(-1) * (th - mean) ** 2).sum((0, 1))).sqrt()
    return mean, sd


@pytest.mark.slow
def test_exchange_ising_matches_the_posterior_by_quadrature():
    data = _ising_data(200, seed=0)
    prior = dist.Normal(torch.zeros(2, dtype=torch.float64), 1.0).to_event(1)
    torch.manual_seed(0)
    init = 0.3 * torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    s = exchange(ising, data, prior, aux="exact", values=STATES, num_chains=16, num_warmup=300,
                 num_samples=2500, init=init, seed=2)
    mean, sd = _grid_posterior(data, 1.0)
    summ = s.summary("theta")
    ess = np.asarray(summ["ess_bulk"], dtype=float)
    assert float(np.max(np.asarray(summ["r_hat"], dtype=float))) < 1.01
    draws = s.draws.reshape(-1, 2)
    for k in range(2):
        assert abs(float(draws[:, k].mean()) - float(mean[k])) < 4 * float(sd[k]) / math.sqrt(ess[k])
        assert abs(float(draws[:, k].std()) - float(sd[k])) < 4 * float(sd[k]) / math.sqrt(2 * ess[k])


@pytest.mark.slow
def test_pseudo_likelihood_and_ml_estimates_within_their_standard_errors():
    data = _ising_data(2000, seed=1)
    pl = pseudo_likelihood_fit(ising, data, [0.0, 1.0], torch.zeros(2, dtype=torch.float64))
    assert torch.all((pl.theta - TRUE).abs() < 3 * pl.stderr), (pl.theta, pl.stderr)
    # exact maximum likelihood (log Z by enumeration), and its standard errors from fisher_information
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ising(data, theta).mean() + _exact_log_z(theta)
        loss.backward()
        return loss

    opt.step(closure)
    mle = theta.detach()
    p = torch.softmax(-ising(STATES, mle), 0)
    samples = STATES[torch.multinomial(p, 50000, replacement=True, generator=torch.Generator().manual_seed(5))]
    info = fisher_information(ising, mle, data, samples)
    # against the exact information by enumeration: N Cov_theta(grad F)
    grads = torch.stack([-((2 * STATES - 1)[:, _I] * (2 * STATES - 1)[:, _J]).sum(-1), -(2 * STATES - 1).sum(-1)], -1)
    mu = (p.unsqueeze(-1) * grads).sum(0)
    exact_info = len(data) * ((p.unsqueeze(-1) * (grads - mu)).T @ (grads - mu))
    assert torch.allclose(info, exact_info, rtol=0.05)
    se = exact_info.inverse().diagonal().sqrt()
    assert torch.all((mle - TRUE).abs() < 3 * se), (mle, se)
    # pseudo-likelihood is consistent but less efficient than ML
    assert torch.all(pl.stderr > 0.95 * se)


def test_pseudo_likelihood_loss_matches_brute_force_conditionals():
    y = _ising_data(5, seed=3)
    theta = torch.tensor([0.4, -0.3], dtype=torch.float64)
    configs, target = site_conditionals(y, [0.0, 1.0])
    got = losses.pseudo_likelihood(ising(configs, theta), target, reduction="none")
    want = torch.zeros(5, dtype=torch.float64)
    for n in range(5):
        for d in range(9):  # p(y_d | rest) from the joint over the two values of site d
            lp = []
            for v in (0.0, 1.0):
                z = y[n].clone()
                z[d] = v
                lp.append(-ising(z, theta))
            lp = torch.stack(lp)
            want[n] -= lp[int(y[n, d])] - torch.logsumexp(lp, 0)
    assert torch.allclose(got, want)


@pytest.mark.slow
def test_exchange_ising_with_persistent_gibbs_auxiliary_chains():
    """Auxiliary data from the library's binary Gibbs kernel (10 sweeps per step, persistent chains started
    at the data) instead of enumeration: the approximate posterior is still within Monte-Carlo error of
    quadrature."""
    data = _ising_data(200, seed=0)
    prior = dist.Normal(torch.zeros(2, dtype=torch.float64), 1.0).to_event(1)
    init = 0.3 * torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    s = exchange(ising, data, prior, aux="mcmc", aux_kernel="gibbs", aux_steps=10, num_chains=16,
                 num_warmup=300, num_samples=1000, init=init, seed=4)
    mean, sd = _grid_posterior(data, 1.0)
    ess = np.asarray(s.summary("theta")["ess_bulk"], dtype=float)
    draws = s.draws.reshape(-1, 2)
    for k in range(2):
        assert abs(float(draws[:, k].mean()) - float(mean[k])) < 4 * float(sd[k]) / math.sqrt(ess[k])
        assert abs(float(draws[:, k].std()) / float(sd[k]) - 1) < 0.15
