import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, config_enumerate, infer_discrete
from pyro.distributions import constraints
from scipy import stats

from pyro_ebm import DiscreteGibbs, GibbsBoltzmann, as_energy, energy_factor, product_values


def ising(y):
    """A small frustrated Ising-like energy on {0,1}^4 (distinct energies, so no ties)."""
    s = 2 * y - 1
    J = torch.tensor(
        [[0.0, 0.8, -0.5, 0.3], [0.8, 0.0, 0.6, -0.9], [-0.5, 0.6, 0.0, 0.4], [0.3, -0.9, 0.4, 0.0]],
        dtype=y.dtype,
    )
    h = torch.tensor([0.1, -0.2, 0.3, 0.05], dtype=y.dtype)
    return -0.5 * torch.einsum("...i,ij,...j->...", s, J, s) - (h * s).sum(-1)


VALUES = product_values([0.0, 1.0], 4)


def brute_force_probs(beta):
    e = np.array([ising(v.double()).item() for v in VALUES])
    w = np.exp(-beta * (e - e.min()))
    return w / w.sum(), e


@pytest.mark.parametrize("beta", [0.3, 1.0, 2.5])
def test_discrete_gibbs_matches_brute_force(beta):
    d = DiscreteGibbs(ising, VALUES, beta=beta)
    p, e = brute_force_probs(beta)
    assert np.allclose(d.probs.numpy(), p, atol=1e-6)
    assert math.isclose(d.probs.sum().item(), 1.0, rel_tol=1e-6)
    lp = d.log_prob(VALUES)
    assert np.allclose(lp.exp().numpy(), p, atol=1e-6)
    assert math.isclose(d.entropy().item(), float(-(p * np.log(p)).sum()), rel_tol=1e-5)
    assert torch.equal(d.mode, VALUES[int(np.argmin(e))])
    assert np.allclose(d.mean.numpy(), p @ VALUES.numpy(), atol=1e-6)


def test_discrete_gibbs_sampling_frequencies_chi_square():
    torch.manual_seed(0)
    d = DiscreteGibbs(ising, VALUES, beta=1.0)
    n = 20000
    draws = d.sample((n,))
    assert draws.shape == (n, 4)
    idx = d.index_of(draws)
    counts = torch.bincount(idx, minlength=16).numpy()
    p, _ = brute_force_probs(1.0)
    res = stats.chisquare(counts, n * p)
    assert res.pvalue > 1e-3, res


def test_zero_temperature_is_argmin_and_ties_split():
    d = DiscreteGibbs(ising, VALUES, beta=math.inf)
    p, e = brute_force_probs(1.0)
    onehot = np.zeros(16)
    onehot[np.argmin(e)] = 1
    assert np.array_equal(d.probs.numpy(), onehot)
    assert d.entropy().item() == 0.0
    # large finite beta tends to it without overflow
    assert np.allclose(DiscreteGibbs(ising, VALUES, beta=1e6).probs.numpy(), onehot)
    tied = DiscreteGibbs(lambda y: (y**2), torch.tensor([-1.0, 0.5, 1.0]), beta=math.inf)
    assert torch.allclose(tied.probs, torch.tensor([0.0, 1.0, 0.0]))
    tied = DiscreteGibbs(lambda y: (y**2), torch.tensor([-1.0, 2.0, 1.0]), beta=math.inf)
    assert torch.allclose(tied.probs, torch.tensor([0.5, 0.0, 0.5]))


def test_conditioning_gives_batch_shape():
    x = torch.tensor([[0.2], [1.7], [3.1]])  # batch of 3, event ()

    def F(y, x):
        return (y - x.squeeze(-1)) ** 2

    values = torch.arange(5.0)
    d = DiscreteGibbs(F, values, beta=2.0, x=x, batch_ndims=1)
    assert d.batch_shape == (3,) and d.probs.shape == (3, 5)
    for b in range(3):
        e = (values - x[b, 0]) ** 2
        assert torch.allclose(d.probs[b], torch.softmax(-2.0 * e, -1), atol=1e-6)
    assert d.mode.tolist() == [0.0, 2.0, 3.0]
    # per-batch beta (a tensor), inf in one row
    d2 = DiscreteGibbs(F, values, beta=torch.tensor([1.0, math.inf, 3.0]), x=x, batch_ndims=1)
    assert torch.allclose(d2.probs[1], torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]))
    assert torch.allclose(d2.probs[2], torch.softmax(-3.0 * (values - 3.1) ** 2, -1), atol=1e-6)


def test_enumeration_and_infer_discrete_in_pyro():
    """TraceEnum_ELBO sums a DiscreteGibbs site out exactly; infer_discrete draws from the posterior."""
    values = torch.tensor([-1.0, 0.0, 2.0])
    F = lambda y: (y - 0.4) ** 2  # noqa: E731
    data = torch.tensor([0.1, 3.5])

    @config_enumerate
    def model():
        with pyro.plate("data", 2):
            y = pyro.sample("y", DiscreteGibbs(F, values, beta=1.5))
            pyro.sample("obs", dist.Normal(y, 1.0), obs=data)

    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None)
    p = torch.softmax(-1.5 * (values - 0.4) ** 2, -1)
    expected = 0.0
    for obs in data:
        expected -= torch.logsumexp(p.log() + dist.Normal(values, 1.0).log_prob(obs), -1)
    assert math.isclose(loss, expected.item(), rel_tol=1e-5)

    torch.manual_seed(1)
    post = infer_discrete(model, first_available_dim=-2, temperature=0)
    tr = poutine.trace(post).get_trace()
    joint = p.log() + dist.Normal(values, 1.0).log_prob(data.unsqueeze(-1))  # [2, 3]
    map_values = values[joint.argmax(-1)]
    assert map_values.tolist() == [0.0, 2.0]  # the two observations pick different candidates
    assert torch.equal(tr.nodes["y"]["value"], map_values)


def test_discrete_bad_input():
    with pytest.raises(ValueError, match="values has 11 candidates, more than max_candidates=10"):
        DiscreteGibbs(lambda y: y, torch.arange(11.0), max_candidates=10)
    with pytest.raises(ValueError, match="too large to enumerate.*MCMC"):
        product_values([0.0, 1.0], 40)
    with pytest.raises(TypeError, match="values must be a tensor"):
        DiscreteGibbs(lambda y: y, [0.0, 1.0])
    with pytest.raises(ValueError, match="beta must be > 0"):
        DiscreteGibbs(lambda y: y, torch.arange(3.0), beta=0.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        DiscreteGibbs(lambda y: y, torch.arange(3.0), beta=math.nan)
    with pytest.raises(ValueError, match="shape"):
        DiscreteGibbs(lambda y: y.sum(), torch.arange(3.0))
    d = DiscreteGibbs(lambda y: y, torch.arange(3.0), validate_args=True)
    with pytest.raises(ValueError, match="not one of the candidate values"):
        d.log_prob(torch.tensor(7.0))
    assert DiscreteGibbs(lambda y: y, torch.arange(3.0), validate_args=False).log_prob(torch.tensor(7.0)) == -math.inf
    with pytest.raises(ValueError, match="NaN"):
        DiscreteGibbs(lambda y: y * math.nan, torch.arange(3.0))


def double_well(y):
    return ((y**2 - 1) ** 2).sum(-1) + 0.5 * y[..., 1] ** 2


def test_gibbs_boltzmann_log_prob_and_plates():
    d = GibbsBoltzmann(double_well, beta=3.0, event_shape=(2,))
    y = torch.randn(7, 2)
    assert torch.allclose(d.log_prob(y), -3.0 * double_well(y))
    assert d.batch_shape == () and d.event_shape == (2,)

    def model():
        with pyro.plate("p", 5):
            return pyro.sample("y", GibbsBoltzmann(double_well, beta=3.0, event_shape=(2,)))

    tr = poutine.trace(model).get_trace()
    tr.compute_log_prob()
    node = tr.nodes["y"]
    assert node["value"].shape == (5, 2) and node["log_prob"].shape == (5,)
    assert isinstance(node["fn"], GibbsBoltzmann) and node["fn"].batch_shape == (5,)
    # temperature ladder as a per-batch beta
    ladder = torch.tensor([1.0, 0.5, 0.25])
    d3 = GibbsBoltzmann(double_well, beta=ladder, event_shape=(2,), batch_shape=(3,))
    assert torch.allclose(d3.log_prob(y[:3]), -ladder * double_well(y[:3]))


def test_gibbs_boltzmann_sample_semantics():
    # default: the image of 0 under biject_to(support)
    assert torch.equal(GibbsBoltzmann(double_well, event_shape=(2,)).sample((3,)), torch.zeros(3, 2))
    pos = GibbsBoltzmann(lambda y: y.sum(-1), event_shape=(2,), support=constraints.positive)
    assert torch.equal(pos.sample(), torch.ones(2))
    # a point
    pt = torch.tensor([1.0, -1.0])
    assert torch.equal(GibbsBoltzmann(double_well, event_shape=(2,), init=pt).sample((4,)), pt.expand(4, 2))
    # a distribution: fresh draws
    d = GibbsBoltzmann(double_well, event_shape=(2,), init=dist.Normal(torch.zeros(2), 1.0).to_event(1))
    s = d.expand((5,)).sample((3,))
    assert s.shape == (3, 5, 2) and s.std() > 0.1
    with pytest.raises(NotImplementedError, match="needs MCMC"):
        d.mean


def test_gibbs_boltzmann_bad_input():
    with pytest.raises(ValueError, match="beta must be > 0"):
        GibbsBoltzmann(double_well, beta=-1.0, event_shape=(2,))
    with pytest.raises(ValueError, match="zero temperature"):
        GibbsBoltzmann(double_well, beta=math.inf, event_shape=(2,))
    with pytest.raises(ValueError, match="init distribution must have event_shape"):
        GibbsBoltzmann(double_well, event_shape=(2,), init=dist.Normal(0.0, 1.0))
    with pytest.raises(TypeError, match="support must be"):
        GibbsBoltzmann(double_well, event_shape=(2,), support="real")
    with pytest.raises(TypeError, match="latent"):
        GibbsBoltzmann(as_energy(lambda y, z: y + z, latent_shape=()))
    d = GibbsBoltzmann(lambda y: y.sum(), event_shape=(2,))
    with pytest.raises(ValueError, match="did it sum over the batch"):
        d.log_prob(torch.zeros(3, 2))
    nan = GibbsBoltzmann(lambda y: y.sum(-1) * math.nan, event_shape=(2,), validate_args=True)
    with pytest.raises(ValueError, match="NaN"):
        nan.log_prob(torch.zeros(3, 2))


def test_energy_factor_puts_beta_inside():
    def model():
        y = pyro.sample("y", dist.Normal(0.0, 1.0))
        energy_factor("e", (y - 1.0) ** 2, beta=torch.tensor(2.5))

    tr = poutine.trace(poutine.condition(model, {"y": torch.tensor(3.0)})).get_trace()
    tr.compute_log_prob()
    assert torch.allclose(tr.nodes["e"]["log_prob"], torch.tensor(-10.0))
    with pytest.raises(ValueError, match="beta must be > 0"):
        energy_factor("e", torch.tensor(1.0), beta=0.0)
    with pytest.raises(TypeError, match="energy must be a tensor"):
        energy_factor("e", 1.0)
