import math

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro.distributions import constraints
from pyro.infer import TraceEnum_ELBO
from scipy.special import logsumexp

from pyro_ebm import (
    LatentEnergy,
    argmin_candidates,
    argmin_energy,
    argmin_latent,
    as_energy,
    free_energy,
    free_energy_importance,
    free_energy_min,
    latent_energy_model,
    latent_posterior,
)


class MixtureEnergy(LatentEnergy):
    """E(y, z) = 0.5 |y - mu_z|^2 / s_z^2 + c_z: a Gaussian-mixture-like latent energy, z in {0..K-1}."""

    def __init__(self, k=4, dim=2):
        super().__init__(event_shape=(dim,), latent_shape=())
        g = torch.Generator().manual_seed(0)
        self.mu = torch.nn.Parameter(torch.randn(k, dim, generator=g, dtype=torch.float64))
        self.log_s = torch.nn.Parameter(0.3 * torch.randn(k, generator=g, dtype=torch.float64))
        self.c = torch.nn.Parameter(torch.randn(k, generator=g, dtype=torch.float64))

    def forward(self, y, z, x=None):
        z = z.long()
        d = ((y - self.mu[z]) ** 2).sum(-1)
        return 0.5 * d / torch.exp(2 * self.log_s[z]) + self.c[z]


Z = torch.arange(4, dtype=torch.float64)


def brute_free_energy(E, y, beta):
    with torch.no_grad():
        e = np.stack([E(y, torch.full(y.shape[:-1], float(k), dtype=y.dtype)).numpy() for k in range(4)], -1)
    if math.isinf(beta):
        return e.min(-1), e
    return -logsumexp(-beta * e, axis=-1) / beta, e


@pytest.mark.parametrize("beta", [0.1, 1.0, 7.0, 1e6, math.inf])
def test_free_energy_matches_brute_force(beta):
    E = MixtureEnergy()
    y = torch.randn(5, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    F = free_energy(E, y, Z, beta=beta)
    ref, e = brute_free_energy(E, y, beta)
    assert F.shape == (5, 3)
    assert np.all(np.isfinite(F.detach().numpy()))
    assert np.allclose(F.detach().numpy(), ref, rtol=1e-10, atol=1e-10)
    if beta >= 1e6:
        assert np.allclose(F.detach().numpy(), e.min(-1), atol=1e-5)  # tends to the min


def test_free_energy_large_energies_do_not_overflow():
    E = as_energy(lambda y, z: 1e4 * (y - z) ** 2, latent_shape=())
    y = torch.tensor([0.0, 0.3])
    z = torch.tensor([-1.0, 1.0])
    for beta in [1.0, 1e3, 1e6]:
        F = free_energy(E, y, z, beta=beta)
        ref = -logsumexp(-beta * 1e4 * (y.numpy()[:, None] - z.numpy()) ** 2, axis=-1) / beta
        assert np.allclose(F.numpy(), ref, rtol=1e-6)


def test_free_energy_gradients_match_finite_differences():
    E = MixtureEnergy()
    y = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    for beta in [0.5, 3.0]:
        assert torch.autograd.gradcheck(lambda y: free_energy(E, y, Z, beta=beta), (y,))
        params = list(E.parameters())

        def as_fn(*ps):
            saved = [p.data.clone() for p in params]
            for p, v in zip(params, ps):
                p.data = v
            try:
                return free_energy(E, y.detach(), Z, beta=beta)
            finally:
                for p, v in zip(params, saved):
                    p.data = v

        # finite differences w.r.t. each parameter tensor
        out = free_energy(E, y.detach(), Z, beta=beta).sum()
        grads = torch.autograd.grad(out, params)
        eps = 1e-6
        for i, p in enumerate(params):
            flat = p.detach().reshape(-1)
            for j in range(flat.numel()):
                plus = [q.detach().clone() for q in params]
                minus = [q.detach().clone() for q in params]
                plus[i].view(-1)[j] += eps
                minus[i].view(-1)[j] -= eps
                fd = (as_fn(*plus).sum() - as_fn(*minus).sum()) / (2 * eps)
                assert abs(fd.item() - grads[i].view(-1)[j].item()) < 1e-6


def test_pyro_enumeration_gives_the_same_free_energy():
    E = MixtureEnergy()
    y = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for beta in [0.4, 2.0]:
        model = latent_energy_model(E, y, Z, beta=beta)
        loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, lambda: None)
        ours = free_energy(E, y, Z, beta=beta).sum()
        assert torch.allclose(loss / beta, ours, rtol=1e-10)
        g1 = torch.autograd.grad(loss / beta, E.mu)[0]
        g2 = torch.autograd.grad(ours, E.mu)[0]
        assert torch.allclose(g1, g2, rtol=1e-8)


energies_strategy = st.lists(
    st.floats(min_value=-50, max_value=50, allow_nan=False), min_size=1, max_size=8
)
betas = st.floats(min_value=1e-3, max_value=1e4)


def _flat_energy():
    return as_energy(lambda y, z: z, latent_shape=())  # E(y, z_k) = z_k: the energies themselves


@settings(max_examples=60, deadline=None)
@given(energies_strategy, betas)
def test_free_energy_bounds(es, beta):
    e = torch.tensor(es, dtype=torch.float64)
    F = free_energy(_flat_energy(), torch.zeros(()), e, beta=beta).item()
    k = len(es)
    lo = e.min().item() - math.log(k) / beta
    hi = e.min().item()
    tol = 1e-9 * (1 + abs(hi))
    assert lo - tol <= F <= hi + tol


@settings(max_examples=60, deadline=None)
@given(energies_strategy, betas, betas)
def test_free_energy_non_decreasing_in_beta(es, b1, b2):
    e = torch.tensor(es, dtype=torch.float64)
    lo, hi = sorted([b1, b2])
    f_lo = free_energy(_flat_energy(), torch.zeros(()), e, beta=lo).item()
    f_hi = free_energy(_flat_energy(), torch.zeros(()), e, beta=hi).item()
    assert f_lo <= f_hi + 1e-9 * (1 + abs(f_hi))


@settings(max_examples=60, deadline=None)
@given(energies_strategy, betas)
def test_free_energy_gradient_is_gibbs_posterior(es, beta):
    e = torch.tensor(es, dtype=torch.float64, requires_grad=True)
    F = free_energy(_flat_energy(), torch.zeros(()), e, beta=beta)
    (g,) = torch.autograd.grad(F, e)
    post = latent_posterior(_flat_energy(), torch.zeros(()), e.detach(), beta=beta).probs
    ref = np.exp(-beta * np.array(es) - logsumexp(-beta * np.array(es)))
    assert np.allclose(g.numpy(), ref, atol=1e-9)
    assert np.allclose(post.numpy(), ref, atol=1e-9)


def test_argmin_latent_and_posterior_shapes():
    E = MixtureEnergy()
    y = torch.randn(5, 2, dtype=torch.float64)
    z, e = argmin_latent(E, y, Z)
    ref_f, ref_e = brute_free_energy(E, y, math.inf)
    assert z.shape == (5,) and np.array_equal(z.numpy(), ref_e.argmin(-1).astype(float))
    assert np.allclose(e.detach().numpy(), ref_f)
    post = latent_posterior(E, y, Z, beta=2.0)
    assert post.batch_shape == (5,) and post.probs.shape == (5, 4)


def double_well_1d(y):
    return ((y**2 - 1) ** 2).sum(-1) + 0.3 * y[..., 0]


def test_argmin_energy_finds_every_minimum():
    y0 = torch.linspace(-2.0, 2.0, 9).reshape(9, 1)
    res = argmin_energy(double_well_1d, y0, event_shape=(1,), steps=800)
    minima = res.distinct(tol=1e-2)
    # independent reference: dense grid search for the two local minima
    grid = torch.linspace(-2, 2, 400001, dtype=torch.float64).reshape(-1, 1)
    f = double_well_1d(grid)
    is_min = (f[1:-1] < f[:-2]) & (f[1:-1] < f[2:])
    ref = grid[1:-1][is_min]
    ref = ref[double_well_1d(ref).argsort()].squeeze(-1)  # lowest energy first
    assert len(minima.values) == 2
    assert torch.allclose(minima.values.squeeze(-1).double(), ref, atol=1e-3)
    assert minima.energies[0] < minima.energies[1]
    assert minima.counts.sum() == 9
    assert torch.allclose(res.best, minima.values[0])


def test_argmin_energy_conditional_batch_and_support():
    # F(y, x) = (y - x)^2 on a positive y: minimiser max(x, 0+) — x batch of 3, 4 restarts
    F = lambda y, x: ((y - x) ** 2).sum(-1)  # noqa: E731
    x = torch.tensor([[0.5], [2.0], [3.0]])
    y0 = torch.rand(4, 3, 1) + 0.1
    res = argmin_energy(F, y0, x, event_shape=(1,), support=constraints.positive, steps=1500, lr=0.05)
    assert res.y.shape == (4, 3, 1) and res.energy.shape == (4, 3)
    assert (res.y > 0).all()
    assert torch.allclose(res.best, x, atol=1e-3)
    per_batch = res.distinct(tol=1e-2)
    assert isinstance(per_batch, list) and len(per_batch) == 3 and all(len(m.values) == 1 for m in per_batch)


def test_argmin_candidates_exhaustive():
    F = lambda y: ((y - torch.tensor([0.3, 0.8])) ** 2).sum(-1)  # noqa: E731
    from pyro_ebm import product_values

    cands = product_values([0.0, 1.0], 2)
    v, e, i, all_e = argmin_candidates(F, cands)
    assert v.tolist() == [0.0, 1.0] and i.item() == 1
    assert torch.allclose(all_e, F(cands))


def test_free_energy_min_continuous_latent_against_grid():
    E = as_energy(
        lambda y, z: ((y - torch.sin(z).unsqueeze(-1)) ** 2).sum(-1) + 0.05 * z**2, event_shape=(1,), latent_shape=()
    )
    y = torch.tensor([[0.2], [0.9], [-0.5]], dtype=torch.float64, requires_grad=True)
    F, z_star = free_energy_min(E, y, torch.linspace(-3, 3, 7, dtype=torch.float64), steps=1500)
    grid = torch.linspace(-6, 6, 600001, dtype=torch.float64)
    with torch.no_grad():
        ref = E(y.unsqueeze(0), grid.reshape(-1, 1)).min(0).values
    assert torch.allclose(F.detach(), ref, atol=1e-7)
    # envelope theorem: dF/dy = dE/dy at z*
    (g,) = torch.autograd.grad(F.sum(), y)
    assert torch.allclose(g.squeeze(-1), 2 * (y.detach().squeeze(-1) - torch.sin(z_star)), atol=1e-8)


def test_free_energy_importance_closed_form():
    # E(y, z) = 0.5 (y - z)^2 / s^2 + 0.5 z^2 over z in R: int exp(-beta E) dz in closed form
    s = 0.7
    E = as_energy(lambda y, z: 0.5 * (y - z) ** 2 / s**2 + 0.5 * z**2, latent_shape=())
    y = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64)
    beta = 1.5
    prec = beta * (1 / s**2 + 1)
    mean = beta * y / s**2 / prec
    log_int = 0.5 * math.log(2 * math.pi / prec) - 0.5 * beta * y**2 / s**2 + 0.5 * prec * mean**2
    ref = -log_int / beta
    g = torch.Generator().manual_seed(0)
    est = free_energy_importance(
        E, y, dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.5), 40000, beta=beta, generator=g
    )
    z_scores = (est.value - ref) / est.stderr
    assert (z_scores.abs() < 3.5).all(), z_scores
    assert (est.stderr < 0.02).all() and (est.ess > 5000).all()
    again = free_energy_importance(
        E, y, dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.5), 40000, beta=beta,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(again.value, est.value)


def test_inference_bad_input():
    E = MixtureEnergy()
    y = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="beta must be > 0"):
        free_energy(E, y, Z, beta=0.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        free_energy(E, y, Z, beta=-2.0)
    with pytest.raises(ValueError, match="beta must be > 0, got NaN"):
        free_energy(E, y, Z, beta=torch.tensor(math.nan))
    with pytest.raises(TypeError, match="LatentEnergy"):
        free_energy(lambda y, z: y, y, Z)
    with pytest.raises(ValueError, match="y must have shape"):
        free_energy(E, torch.zeros(3, 5), Z)
    with pytest.raises(ValueError, match="more than max_candidates"):
        argmin_candidates(lambda y: y, torch.arange(100.0), max_candidates=50)
    with pytest.raises(ValueError, match="leading restarts dimension"):
        argmin_energy(lambda y: (y**2).sum(-1), torch.zeros(2), event_shape=(2,))
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        argmin_energy(lambda y: (y**2).sum(-1), torch.zeros(1, 2), steps=0)
    with pytest.raises(ValueError, match="y_init"):
        argmin_energy(lambda y: (y**2).sum(-1), torch.tensor([[math.nan, 0.0]]))
    with pytest.raises(ValueError, match="proposal must have event_shape"):
        free_energy_importance(
            as_energy(lambda y, z: y + z.sum(-1), latent_shape=(2,)), torch.zeros(1), dist.Normal(0.0, 1.0), 10
        )
    with pytest.raises(ValueError, match="num_samples must be an integer >= 2"):
        free_energy_importance(as_energy(lambda y, z: y + z, latent_shape=()), torch.zeros(1), dist.Normal(0.0, 1.0), 1)
