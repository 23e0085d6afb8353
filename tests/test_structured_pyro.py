"""LinearChainGibbs as a Pyro citizen: exact normalization, Pyro's own enumeration of a chain against
chain_free_energy, an observed CRF site's ELBO equal to its log-likelihood, and a latent enumerated site."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate

from pyro_ebm.structured import LinearChainGibbs, chain_energy, chain_free_energy, viterbi


def potentials(B=2, T=3, K=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, K, generator=g, dtype=torch.float64), torch.randn(K, K, generator=g, dtype=torch.float64),
            torch.randn(K, generator=g, dtype=torch.float64), torch.randn(K, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_log_prob_is_normalized_and_matches_enumeration(beta):
    u, p, a, b = potentials()
    d = LinearChainGibbs(u, p, beta, a, b)
    ys = d.enumerate_support()
    assert ys.shape == (27, 2, 3)
    lp = d.log_prob(ys)
    assert torch.allclose(lp.exp().sum(0), torch.ones(2, dtype=torch.float64))
    for k in (0, 13, 26):
        e = sum(float(u[1, t, ys[k, 1, t]]) for t in range(3)) + float(p[ys[k, 1, 0], ys[k, 1, 1]] + p[ys[k, 1, 1], ys[k, 1, 2]])
        e += float(a[ys[k, 1, 0]] + b[ys[k, 1, 2]])
        z = sum(math.exp(-beta * float(chain_energy(torch.tensor(y), u[1:2], p, a, b))) for y in itertools.product(range(3), repeat=3))
        assert lp[k, 1].item() == pytest.approx(-beta * e - math.log(z), abs=1e-10)
    s = d.sample((4,))
    assert s.shape == (4, 2, 3) and s.dtype == torch.long
    assert torch.equal(d.mode, viterbi(u, p, a, b)[1])
    e = d.expand((5, 2))
    assert e.batch_shape == (5, 2) and torch.allclose(e.log_prob(ys[3]), lp[3].expand(5, 2))


def test_zero_temperature_is_a_point_mass_on_viterbi():
    u, p, a, b = potentials(seed=1)
    d = LinearChainGibbs(u, p, math.inf, a, b)
    lp = d.log_prob(d.enumerate_support())
    assert torch.equal((lp == 0).sum(0), torch.ones(2, dtype=torch.long))
    assert torch.equal(d.sample((3,)), d.mode.expand(3, 2, 3))


def test_pyro_enumeration_of_a_short_chain_equals_chain_free_energy():
    """A Pyro model with one Categorical per step and the factors as pyro.factor: TraceEnum_ELBO's
    loss with an empty guide is -log sum_y prod_t (1/K) e^{-beta E} = T log K - log Z."""
    u, p, a, b = potentials(B=3, T=4, K=3, seed=2)
    beta = 0.7
    B, T, K = u.shape

    @config_enumerate
    def model():
        with pyro.plate("seq", B):
            prev = None
            for t in pyro.markov(range(T)):
                y = pyro.sample(f"y_{t}", dist.Categorical(logits=torch.zeros(K, dtype=torch.float64)))
                e = u[torch.arange(B), t, y]
                e = e + (a[y] if t == 0 else p[prev, y])
                if t == T - 1:
                    e = e + b[y]
                pyro.factor(f"f_{t}", -beta * e)
                prev = y

    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None)
    logz = T * math.log(K) * B - loss
    f = chain_free_energy(u, p, beta, a, b)
    assert -logz / beta == pytest.approx(f.sum().item(), abs=1e-9)


def test_observed_crf_site_trains_by_svi():
    """An observed LinearChainGibbs site: Trace_ELBO's loss is the CRF's negative log-likelihood, and SVI on
    the potentials (pyro.param in the model, empty guide) lowers it."""
    pyro.clear_param_store()
    u, p, a, b = potentials(B=8, T=5, K=3, seed=3)
    y = viterbi(u, p, a, b)[1]  # data: labellings of a "true" chain

    def model(y):
        unary = pyro.param("unary", torch.zeros(8, 5, 3, dtype=torch.float64))
        pairwise = pyro.param("pairwise", torch.zeros(3, 3, dtype=torch.float64))
        with pyro.plate("seq", 8):
            pyro.sample("y", LinearChainGibbs(unary, pairwise), obs=y)

    loss0 = Trace_ELBO().loss(model, lambda y: None, y)
    assert loss0 == pytest.approx(8 * 5 * math.log(3), rel=1e-9)  # uniform over 3^5 labellings
    svi = SVI(model, lambda y: None, pyro.optim.Adam({"lr": 0.1}), Trace_ELBO())
    for _ in range(30):
        svi.step(y)
    un, pw = pyro.param("unary").detach(), pyro.param("pairwise").detach()
    nll = (chain_energy(y, un, pw) - chain_free_energy(un, pw)).sum().item()
    assert Trace_ELBO().loss(model, lambda y: None, y) == pytest.approx(nll, rel=1e-9)
    assert nll < 0.5 * loss0


def test_latent_chain_site_enumerated_by_pyro():
    """y ~ LinearChainGibbs (latent, enumerated in parallel), x ~ Normal(sum_t y_t, 1) observed: the marginal
    likelihood from TraceEnum_ELBO equals the brute-force sum over the 2^4 labellings."""
    u, p, a, b = potentials(B=1, T=4, K=2, seed=4)
    x = torch.tensor(2.5, dtype=torch.float64)

    @config_enumerate
    def model():
        y = pyro.sample("y", LinearChainGibbs(u[0], p, 1.0, a, b))
        pyro.sample("x", dist.Normal(y.sum(-1).double(), 1.0), obs=x)

    loss = TraceEnum_ELBO(max_plate_nesting=0).loss(model, lambda: None)
    d = LinearChainGibbs(u[0], p, 1.0, a, b)
    ys = d.enumerate_support()
    ref = torch.logsumexp(d.log_prob(ys) + dist.Normal(ys.sum(-1).double(), 1.0).log_prob(x), 0)
    assert -loss == pytest.approx(ref.item(), abs=1e-10)


def test_bad_input():
    u, p, a, b = potentials()
    with pytest.raises(ValueError, match="beta must be > 0"):
        LinearChainGibbs(u, p, beta=0.0)
    with pytest.raises(ValueError, match="pairwise must have shape"):
        LinearChainGibbs(u, torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="max_support"):
        LinearChainGibbs(torch.zeros(20, 4), torch.zeros(4, 4)).enumerate_support()
    d = LinearChainGibbs(u, p, validate_args=True)
    with pytest.raises(ValueError):
        d.log_prob(torch.full((2, 3), 7))
