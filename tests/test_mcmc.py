"""Statistical and contract tests of pyro_ebm.mcmc (fixed seeds, tolerances derived from the ESS)."""

import math

import numpy as np
import pytest
import torch

import pyro
import pyro.distributions as dist
from pyro_ebm import Energy, as_energy
from pyro_ebm.mcmc import KERNELS, PersistentChains, Samples, sample
from pyro_ebm.mcmc.adaptation import (
    chees_gradient,
    chees_init,
    chees_update,
    moments_init,
    moments_update,
    moments_variance,
)
from pyro_ebm.mcmc.tempering import make_ladder

Z = 5.0  # z-score of every tolerance: with ~100 checks per run a false alarm is ~1e-4


def ess(x: torch.Tensor) -> torch.Tensor:
    """Multi-chain ESS of ``x [chains, draws, ...]`` per trailing coordinate (Geyer's initial positive
    sequence on the chain-averaged autocovariance, as in Stan without rank normalisation)."""
    x = x.double()
    C, S = x.shape[:2]
    flat = x.reshape(C, S, -1)
    xc = flat - flat.mean(1, keepdim=True)
    n = 2 ** math.ceil(math.log2(2 * S))
    f = torch.fft.rfft(xc, n=n, dim=1)
    acov = torch.fft.irfft(f * f.conj(), n=n, dim=1)[:, :S] / S  # [C, S, K]
    w = acov[:, 0].mean(0)  # within-chain variance (biased)
    chain_means = flat.mean(1)
    b = chain_means.var(0) if C > 1 else torch.zeros_like(w)
    var_plus = w * (S - 1) / S + b
    rho = 1 - (w - acov.mean(0)) / var_plus  # [S, K]
    out = []
    for k in range(rho.shape[1]):
        r = rho[:, k]
        tau = -1.0
        for t in range(0, S - 1, 2):
            pair = r[t] + r[t + 1]
            if pair <= 0:
                break
            tau += 2 * pair
        out.append(C * S / max(tau, 1e-12))
    return torch.tensor(out).reshape(x.shape[2:])


def assert_moments(draws, mean, var, z=Z):
    """Mean within z*sd/sqrt(ESS(y)); variance within z*sqrt(var(y^2 estimate)) using ESS(y^2)."""
    d = draws.double()
    m = d.mean((0, 1))
    ess1 = ess(d)
    tol_m = z * var.sqrt() / ess1.sqrt()
    assert ((m - mean).abs() <= tol_m).all(), f"mean {m} vs {mean}, tol {tol_m}, ess {ess1}"
    sq = (d - mean) ** 2
    ess2 = ess(sq)
    v = sq.mean((0, 1))
    # for a Gaussian, sd((y - mu)^2) = sqrt(2) var
    tol_v = z * math.sqrt(2) * var / ess2.sqrt()
    assert ((v - var).abs() <= tol_v).all(), f"var {v} vs {var}, tol {tol_v}, ess {ess2}"
    return ess1, ess2


# ---------------------------------------------------------------------------------------------- HMC


def test_hmc_ill_conditioned_diagonal_gaussian():
    scales = torch.logspace(-1, 1, 8)  # condition number 1e4 in the covariance
    F = lambda y: 0.5 * ((y / scales) ** 2).sum(-1)
    init = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    s = sample(F, init, 300, 300, seed=0, progress=False)
    assert s.draws.shape == (64, 300, 8)
    ess1, _ = assert_moments(s.draws, torch.zeros(8, dtype=torch.double), scales.double() ** 2)
    assert (ess1 > 2000).all(), ess1  # the mass matrix makes every coordinate mix
    # adapted mass matrix ~ covariance; with it the dynamics are whitened (period 2 pi in every
    # coordinate) and the trajectory length is near the optimum of a unit Gaussian (see below)
    ratio = s.info["inv_mass"] / scales**2
    assert ((ratio > 0.7) & (ratio < 1.4)).all(), ratio
    assert 1.0 < float(s.info["trajectory_length"]) < 3.0
    assert int(s.stats["diverging"].sum()) == 0
    acc = float(s.stats["acceptance_rate"].mean())
    assert 0.7 < acc < 0.97
    # before the first metric the trajectory length may grow at most 4-fold: left free, it grew towards
    # the longest scale at the shortest scale's step size (108-189 leapfrog steps a transition, 4,200-4,900
    # gradients for this run, against 1,700-1,900 now)
    assert s.info["grad_evals"] < 2500, s.info["grad_evals"]


def test_chains_started_at_zero_reach_the_long_scales_in_a_short_warmup():
    # what the 4-fold growth of the pre-metric trajectory length is kept for: from zeros, chains must travel
    # out to scale 10 before the first window estimates the metric. With no growth allowed the longest
    # scales' variance came out at 0.69 of the truth after 100 warmup iterations; 0.96-0.97 with it.
    scales = torch.logspace(-1, 1, 50)
    F = lambda y: 0.5 * ((y / scales) ** 2).sum(-1)
    s = sample(F, torch.zeros(128, 50), 100, 300, seed=0, progress=False)
    ratio = s.draws.double().var((0, 1)) / scales.double() ** 2
    assert ((ratio > 0.85) & (ratio < 1.15)).all(), ratio


def test_hmc_correlated_gaussian_covariance():
    # rotated, condition number 25: a diagonal mass matrix cannot fix it, longer trajectories must
    th = torch.tensor(0.6)
    rot = torch.tensor([[th.cos(), -th.sin()], [th.sin(), th.cos()]])
    cov = rot @ torch.diag(torch.tensor([5.0**2, 1.0])) @ rot.T
    prec = torch.linalg.inv(cov)
    mu = torch.tensor([1.0, -2.0])
    F = lambda y: 0.5 * (((y - mu) @ prec) * (y - mu)).sum(-1)
    s = sample(F, torch.zeros(128, 2), 300, 300, seed=1, progress=False)
    d = s.draws.double()
    m = d.mean((0, 1))
    e = ess(d)
    assert ((m - mu).abs() <= Z * cov.diagonal().sqrt() / e.sqrt()).all()
    # each covariance entry: sd of the product estimate for a Gaussian is sqrt(S_ii S_jj + S_ij^2)
    c = d - mu
    for i in range(2):
        for j in range(2):
            prod = c[..., i] * c[..., j]
            e_ij = float(ess(prod.unsqueeze(-1)))
            sd = math.sqrt(cov[i, i] * cov[j, j] + cov[i, j] ** 2)
            assert abs(float(prod.mean()) - float(cov[i, j])) <= Z * sd / math.sqrt(e_ij), (i, j)


def test_hmc_fixed_steps_and_step_size_options():
    F = lambda y: 0.5 * (y**2).sum(-1)
    s = sample(F, torch.zeros(16, 3), 0, 50, n_steps=5, step_size=0.3, seed=0, progress=False)
    assert (s.stats["n_steps"] == 5).all()
    assert torch.allclose(s.stats["step_size"], torch.tensor(0.3))
    assert set(s.stats) == {"energy", "lp", "acceptance_rate", "step_size", "n_steps", "diverging"}
    for v in s.stats.values():
        assert v.shape == (16, 50)
    torch.testing.assert_close(s.stats["lp"], -0.5 * (s.draws**2).sum(-1))


def test_energy_module_with_parameters_and_conditioning():
    class Shifted(Energy):
        def __init__(self):
            super().__init__(event_shape=(2,))
            self.w = torch.nn.Parameter(torch.tensor(1.0))

        def forward(self, y, x=None):
            return 0.5 * (self.w * (y - x) ** 2).sum(-1)

    E = Shifted()
    x = torch.tensor([3.0, -1.0])
    s = sample(E, torch.zeros(64, 2), 150, 150, x=x, seed=0, progress=False)
    assert_moments(s.draws, x.double(), torch.ones(2, dtype=torch.double))
    assert E.w.grad is None  # no parameter gradient is accumulated


def test_dtype_follows_init():
    F = lambda y: 0.5 * (y**2).sum(-1)
    s = sample(F, torch.zeros(8, 2, dtype=torch.float64), 20, 10, seed=0, progress=False)
    assert s.draws.dtype == torch.float64 and s.stats["energy"].dtype == torch.float64


def test_matrix_event_shape():
    F = as_energy(lambda y: 0.5 * (y**2).sum((-1, -2)), event_shape=(2, 3))
    s = sample(F, torch.zeros(32, 2, 3), 100, 100, seed=0, progress=False)
    assert s.draws.shape == (32, 100, 2, 3)
    assert s.flat().shape == (3200, 2, 3)
    assert s.info["inv_mass"].shape == (2, 3)
    assert_moments(s.draws, torch.zeros(2, 3, dtype=torch.double), torch.ones(2, 3, dtype=torch.double))


def test_beta_scales_the_target():
    F = lambda y: 0.5 * (y**2).sum(-1)
    s = sample(F, torch.zeros(64, 2), 150, 200, beta=4.0, seed=2, progress=False)
    assert_moments(s.draws, torch.zeros(2, dtype=torch.double), torch.full((2,), 0.25, dtype=torch.double))


# ---------------------------------------------------------------------------------------- Langevin


def test_mala_gaussian():
    scales = torch.tensor([0.5, 1.0, 2.0])
    F = lambda y: 0.5 * ((y / scales) ** 2).sum(-1)
    s = sample(F, torch.zeros(128, 3), 300, 400, kernel="mala", seed=3, progress=False)
    assert (s.stats["n_steps"] == 1).all()
    assert_moments(s.draws, torch.zeros(3, dtype=torch.double), scales.double() ** 2)
    assert 0.4 < float(s.stats["acceptance_rate"].mean()) < 0.8


def test_ula_stationary_variance_matches_its_bias_formula():
    # y' = y - step * y + noise * xi on F = y^2 / 2 has stationary variance noise^2 / (2 step - step^2):
    # the decoupled noise samples the effective inverse temperature 2 step / noise^2, not beta.
    F = lambda y: 0.5 * (y**2).sum(-1)
    step, noise = 0.1, 0.2
    s = sample(F, torch.zeros(256, 2), 100, 400, kernel="ula", step_size=step, noise=noise, seed=4, progress=False)
    var = noise**2 / (2 * step - step**2)
    assert_moments(s.draws, torch.zeros(2, dtype=torch.double), torch.full((2,), var, dtype=torch.double))
    # the default noise sqrt(2 step / beta) targets beta (up to an O(step) bias: 1 / (1 - step / 2))
    s2 = sample(F, torch.zeros(256, 2), 100, 400, kernel="ula", step_size=step, beta=2.0, seed=4, progress=False)
    var2 = (2 * step / 2.0) / (2 * step - step**2)
    assert_moments(s2.draws, torch.zeros(2, dtype=torch.double), torch.full((2,), var2, dtype=torch.double))


# ------------------------------------------------------------------------------------------- Gibbs


def _enumerate_bits(n):
    idx = torch.arange(2**n)
    return ((idx.unsqueeze(-1) >> torch.arange(n - 1, -1, -1)) & 1).double()


def _chi_square_ok(draws, F, beta, n, ess_ratio):
    """Chi-square of state counts vs exact probabilities, with counts deflated by ESS/N."""
    from scipy.stats import chi2

    states = _enumerate_bits(n)
    p = torch.softmax(-beta * F(states), 0)
    codes = (draws.reshape(-1, n).long() * (2 ** torch.arange(n - 1, -1, -1))).sum(-1)
    counts = torch.bincount(codes, minlength=2**n).double()
    N = counts.sum()
    n_eff = N * ess_ratio
    stat = float((((counts / N - p) ** 2) / p).sum() * n_eff)
    return stat, chi2.ppf(1 - 1e-4, 2**n - 1)


def test_gibbs_binary_single_site_matches_enumeration():
    n = 5
    g = torch.Generator().manual_seed(0)
    W = torch.randn(n, n, generator=g).double()
    W = 0.5 * (W + W.T)
    W.fill_diagonal_(0)
    b = torch.randn(n, generator=g).double()
    F = lambda y: -0.5 * torch.einsum("...i,ij,...j->...", y, W, y) - (y * b).sum(-1)
    init = torch.zeros(200, n, dtype=torch.double)
    s = sample(F, init, 20, 200, kernel="gibbs", beta=0.7, seed=0, progress=False)
    assert ((s.draws == 0) | (s.draws == 1)).all()
    ratio = float(ess(s.draws).min()) / (200 * 200)
    stat, crit = _chi_square_ok(s.draws, F, 0.7, n, min(ratio, 1.0))
    assert stat < crit, (stat, crit)


class _BipartiteEnergy(Energy):
    """An RBM-like energy over (v, h) with conditional logits for the two layers."""

    def __init__(self, nv, nh, seed=0):
        super().__init__(event_shape=(nv + nh,))
        g = torch.Generator().manual_seed(seed)
        self.nv = nv
        self.W = torch.randn(nv, nh, generator=g).double()
        self.a = torch.randn(nv, generator=g).double() * 0.5
        self.b = torch.randn(nh, generator=g).double() * 0.5
        self.gibbs_blocks = [torch.arange(nv), torch.arange(nv, nv + nh)]
        self.calls = 0

    def forward(self, y, x=None):
        v, h = y[..., : self.nv], y[..., self.nv :]
        return -(v @ self.W * h).sum(-1) - (v * self.a).sum(-1) - (h * self.b).sum(-1)

    def conditional_logits(self, y, block):
        self.calls += 1
        v, h = y[..., : self.nv], y[..., self.nv :]
        if int(block[0]) == 0:
            return h @ self.W.T + self.a
        return v @ self.W + self.b


def test_gibbs_block_fast_path_matches_enumeration():
    E = _BipartiteEnergy(3, 3)
    s = sample(E, torch.zeros(200, 6, dtype=torch.double), 20, 200, kernel="gibbs", seed=1, progress=False)
    assert E.calls == 2 * 220  # two block updates per sweep, no single-site loop
    assert (s.stats["n_steps"] == 2).all()
    ratio = float(ess(s.draws).min()) / (200 * 200)
    stat, crit = _chi_square_ok(s.draws, E, 1.0, 6, min(ratio, 1.0))
    assert stat < crit, (stat, crit)


def test_gibbs_rejects_non_binary_init():
    with pytest.raises(ValueError, match="0s and 1s"):
        sample(lambda y: y.sum(-1), torch.full((4, 3), 0.5), 1, 1, kernel="gibbs", progress=False)


# ---------------------------------------------------------------------------------------- tempering


def _two_wells(w_left=0.3, sd=0.3, mu=3.0):
    log_w = torch.tensor([math.log(w_left), math.log(1 - w_left)])
    mus = torch.tensor([-mu, mu])

    def F(y):
        comp = -0.5 * ((y - mus) / sd) ** 2 + log_w  # y: [..., 1] broadcasts against the 2 wells
        return -torch.logsumexp(comp, -1)

    return F


def test_parallel_tempering_recovers_mode_weights_plain_hmc_does_not():
    F = _two_wells()
    init = torch.full((64, 1), -3.0)  # every chain starts in the light (0.3) well
    plain = sample(F, init, 200, 200, seed=0, progress=False)
    # the barrier (~50 nats) is crossed only by the odd long leap of an early warmup step size
    assert float((plain.draws > 0).double().mean()) < 0.3
    # the ladder carries mass to the heavy well over ~1000 iterations (after 200 warmup iterations the
    # right well still holds only ~0.52 of 400 draws, rising quarter by quarter), so warm up long enough
    # that the draws are at equilibrium: the ESS-based tolerance below does not cover a burn-in bias
    pt = sample(F, init, 1000, 400, tempering=8, seed=0, progress=False)
    assert pt.draws.shape == (64, 400, 1)
    assert pt.info["betas"].shape == (8,) and pt.info["swap_rates"].shape == (7,)
    assert (pt.info["swap_rates"] > 0.05).all(), pt.info["swap_rates"]
    right = (pt.draws > 0).double()
    p = float(right.mean())
    e = float(ess(right))
    tol = Z * math.sqrt(0.21 / e)
    assert abs(p - 0.7) < tol, (p, e, tol)
    # within a well the draws are the well's Gaussian
    left = pt.draws[pt.draws < 0]
    assert abs(float(left.mean()) + 3) < 0.05


def test_tempering_ladders():
    assert torch.allclose(make_ladder(4, 2.0), 2.0 * torch.logspace(0, math.log10(0.05), 4))
    assert torch.allclose(make_ladder([1.0, 0.5, 0.1], 1.0), torch.tensor([1.0, 0.5, 0.1]))
    with pytest.raises(ValueError, match="tempering"):
        make_ladder([1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="tempering"):
        make_ladder(1, 1.0)
    with pytest.raises(ValueError, match="start at the target beta"):
        make_ladder([0.5, 0.1], 1.0)


@pytest.mark.parametrize("kernel", ["hmc", "mala", "ula"])
def test_tempered_statistics_are_the_target_replicas(kernel):
    # every replica's statistics are recorded and the target's kept: lp = -beta F at the recorded draws,
    # at the target's beta (a hotter replica's F or beta would break the equality)
    F = _two_wells()
    s = sample(F, torch.full((16, 1), -1.0), 10, 20, kernel=kernel, beta=2.0, tempering=[2.0, 0.3, 0.05],
               seed=0, progress=False, **({"step_size": 0.01} if kernel == "ula" else {}))
    torch.testing.assert_close(s.stats["lp"], -2.0 * F(s.draws))
    assert all(v.shape == (16, 20) for v in s.stats.values())
    if kernel != "ula":
        assert torch.equal(s.stats["step_size"][:, -1], s.info["step_size"])


def test_tempering_with_ula_and_gibbs_runs():
    F = _two_wells()
    s = sample(F, torch.full((16, 1), -3.0), 10, 20, kernel="ula", step_size=0.01, tempering=[1.0, 0.3, 0.05],
               seed=0, progress=False)
    assert s.draws.shape == (16, 20, 1) and s.info["swap_rates"].shape == (2,)
    G = lambda y: -(y[..., 0] * y[..., 1]) + y.sum(-1)
    s = sample(G, torch.zeros(16, 3), 5, 10, kernel="gibbs", tempering=3, seed=0, progress=False)
    assert s.draws.shape == (16, 10, 3)
    torch.testing.assert_close(s.stats["lp"], -G(s.draws))  # the target replica's, at beta = 1


# -------------------------------------------------------------------------------------- Pyro models


def test_model_with_constrained_support_and_factor():
    def model():
        pyro.sample("s", dist.Gamma(3.0, 2.0))  # positive support: sampled in log space
        y = pyro.sample("y", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.factor("f", -0.5 * ((y - 1.0) ** 2).sum(-1))  # N(0,1) x N(1,1) = N(0.5, 0.5)

    s = sample(model, 64, 200, 300, seed=0, progress=False)
    assert set(s.draws) == {"s", "y"}
    assert s.draws["s"].shape == (64, 300) and s.draws["y"].shape == (64, 300, 2)
    assert (s.draws["s"] > 0).all()
    ds = s.draws["s"].double()
    e = float(ess(ds.unsqueeze(-1)))
    assert abs(float(ds.mean()) - 1.5) < Z * math.sqrt(0.75 / e)
    assert_moments(s.draws["y"], torch.full((2,), 0.5, dtype=torch.double), torch.full((2,), 0.5, dtype=torch.double))


def test_model_with_plate_and_observations_and_dict_init():
    data = torch.tensor([0.5, 1.5, 1.0, 2.0])

    def model(data):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("groups", 3):
            sd = pyro.sample("sd", dist.HalfNormal(1.0))
        with pyro.plate("obs", len(data)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=data)
        return sd

    init = {"mu": torch.zeros(32), "sd": torch.ones(32, 3)}
    s = sample(model, init, 150, 200, x=data, seed=0, progress=False)
    assert s.draws["sd"].shape == (32, 200, 3) and (s.draws["sd"] > 0).all()
    # conjugate posterior of mu: precision 1/100 + 4, mean sum(data) / precision
    prec = 0.01 + 4
    m = data.sum() / prec
    e = float(ess(s.draws["mu"].double().unsqueeze(-1)))
    assert abs(float(s.draws["mu"].mean()) - float(m)) < Z * math.sqrt(1 / prec / e)


# ------------------------------------------------------------------------------------- NaN handling


def test_nan_region_is_rejected_and_counted():
    # NaN energy for y_0 > 1.5: chains there are divergent, restart from their last finite state
    def F(y):
        base = 0.5 * (y**2).sum(-1)
        return torch.where(y[..., 0] > 1.5, torch.full_like(base, float("nan")), base)

    s = sample(F, torch.zeros(64, 2), 100, 200, seed=0, progress=False)
    assert torch.isfinite(s.draws).all()
    assert (s.draws[..., 0] <= 1.5).all()
    assert int(s.stats["diverging"].sum() + s.info["num_divergent_warmup"].sum()) > 0
    assert torch.isfinite(s.stats["energy"]).all() and torch.isfinite(s.info["step_size"]).all()
    # second coordinate unaffected: still standard normal
    assert_moments(s.draws[..., 1:], torch.zeros(1, dtype=torch.double), torch.ones(1, dtype=torch.double))


def test_one_bad_chain_does_not_poison_the_others():
    # energy infinite-gradient blow-up only in chain 0's region (y_0 < -5)
    def F(y):
        base = 0.5 * (y**2).sum(-1)
        return torch.where(y[..., 0] < -5, torch.full_like(base, float("inf")), base)

    init = torch.zeros(16, 2)
    init[0] = torch.tensor([-4.9, 0.0])
    for kernel in ("hmc", "mala", "ula"):
        opts = {"step_size": 0.5} if kernel == "ula" else {}
        s = sample(F, init, 20, 50, kernel=kernel, seed=0, progress=False, **opts)
        assert torch.isfinite(s.draws).all(), kernel


def test_nonfinite_energy_at_init_is_an_error():
    F = lambda y: torch.log(y).sum(-1)
    with pytest.raises(ValueError, match="init"):
        sample(F, -torch.ones(4, 2), 1, 1, progress=False)


# ------------------------------------------------------------------------------------ reproducibility


@pytest.mark.parametrize("kernel", ["hmc", "mala", "ula"])
def test_same_seed_same_numbers(kernel):
    F = lambda y: 0.5 * (y**2).sum(-1)
    a = sample(F, torch.zeros(8, 2), 30, 20, kernel=kernel, seed=7, progress=False)
    b = sample(F, torch.zeros(8, 2), 30, 20, kernel=kernel, seed=7, progress=False)
    c = sample(F, torch.zeros(8, 2), 30, 20, kernel=kernel, seed=torch.Generator().manual_seed(7), progress=False)
    d = sample(F, torch.zeros(8, 2), 30, 20, kernel=kernel, seed=8, progress=False)
    assert torch.equal(a.draws, b.draws) and torch.equal(a.draws, c.draws)
    for k in a.stats:
        assert torch.equal(a.stats[k], b.stats[k])
    assert not torch.equal(a.draws, d.draws)


def test_seed_none_follows_torch_manual_seed():
    F = lambda y: 0.5 * (y**2).sum(-1)
    torch.manual_seed(3)
    a = sample(F, torch.zeros(4, 2), 5, 5, progress=False)
    torch.manual_seed(3)
    b = sample(F, torch.zeros(4, 2), 5, 5, progress=False)
    assert torch.equal(a.draws, b.draws)


# ------------------------------------------------------------------------------------------ bad input


def test_bad_input_messages():
    F = as_energy(lambda y: 0.5 * (y**2).sum(-1), event_shape=(2,))
    init = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="init"):
        sample(F, torch.zeros(4, 3), 1, 1, progress=False)
    with pytest.raises(ValueError, match="init"):
        sample(lambda y: y.sum(), torch.zeros(4, 2), 1, 1, progress=False)  # summed over the batch
    with pytest.raises(TypeError, match="init"):
        sample(F, [[0.0, 0.0]], 1, 1, progress=False)
    with pytest.raises(ValueError, match="num_samples"):
        sample(F, init, 1, 0, progress=False)
    with pytest.raises(TypeError, match="num_warmup"):
        sample(F, init, 1.5, 1, progress=False)
    with pytest.raises(ValueError, match="beta"):
        sample(F, init, 1, 1, beta=0.0, progress=False)
    with pytest.raises(ValueError, match="beta"):
        sample(F, init, 1, 1, beta=-1.0, progress=False)
    with pytest.raises(ValueError, match="kernel must be one of 'hmc', 'mala', 'ula', 'gibbs'"):
        sample(F, init, 1, 1, kernel="nuts", progress=False)
    with pytest.raises(TypeError, match="unknown option"):
        sample(F, init, 1, 1, kernel="hmc", noise=0.1, progress=False)
    with pytest.raises(TypeError, match="seed"):
        sample(F, init, 1, 1, seed="abc", progress=False)
    with pytest.raises(ValueError, match="step_size"):
        sample(F, init, 1, 1, step_size=-1.0, progress=False)
    with pytest.raises(ValueError, match="target_accept"):
        sample(F, init, 1, 1, target_accept=1.5, progress=False)
    for bad in (0.0, -2.0, float("nan")):
        with pytest.raises(ValueError, match="trajectory_length must be"):
            sample(F, init, 1, 1, trajectory_length=bad, progress=False)
    with pytest.raises(TypeError, match="energy_or_model"):
        sample(3, init, 1, 1, progress=False)
    assert KERNELS == ("hmc", "mala", "ula", "gibbs")


def test_progress_bar_runs(capsys):
    F = lambda y: 0.5 * (y**2).sum(-1)
    s = sample(F, torch.zeros(4, 2), 3, 3, seed=0, progress=True)
    assert isinstance(s, Samples) and "Samples(kernel='hmc'" in repr(s)
    err = capsys.readouterr().err
    assert "hmc warmup" in err and "hmc sample" in err, err


# ----------------------------------------------------------------------------------------- pieces


def test_moments_match_pooled_variance_without_cancellation():
    g = torch.Generator().manual_seed(0)
    # float32 draws with |mean| = 1e4 >> sd: raw sums of squares would lose every digit of the variance
    sd = torch.tensor([1.0, 2.0, 3.0])
    xs = [1e4 + torch.randn(2, 7, 3, generator=g) * sd for _ in range(5)]
    st = moments_init(xs[0])
    for x in xs:
        st = moments_update(st, x)
    pooled = torch.cat(xs, 1).double()
    torch.testing.assert_close(moments_variance(st, regularize=False).squeeze(1).double(), pooled.var(1),
                               rtol=1e-4, atol=1e-4)
    n = 5 * 7
    reg = moments_variance(st).squeeze(1).double()
    torch.testing.assert_close(reg, n / (n + 5) * pooled.var(1) + 1e-3 * 5 / (n + 5), rtol=1e-4, atol=1e-4)


def test_adaptation_pieces_reject_mismatched_shapes():
    st = moments_init(torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match=r"q must have the accumulator's shape \(1, 4, 3\), got \(1, 1, 3\)"):
        moments_update(st, torch.zeros(1, 1, 3))  # would broadcast silently into every chain
    q = torch.zeros(1, 4, 3)
    acc, traj, metric = torch.ones(1, 4), torch.ones(1, 4), torch.ones(1, 1, 3)
    with pytest.raises(ValueError, match="metric must have shape"):
        chees_gradient(q, q, q, acc, traj, torch.ones(1, 3))
    with pytest.raises(ValueError, match="accept_prob must have shape"):
        chees_gradient(q, q, q, torch.ones(4), traj, metric)


def test_moments_equal_pyro_welford_fed_one_draw_at_a_time():
    from pyro.ops.welford import WelfordCovariance

    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(1, 6, 4, generator=g, dtype=torch.double) * 2 + 5 for _ in range(7)]
    st = moments_init(xs[0])
    ref = WelfordCovariance(diagonal=True)
    for x in xs:
        st = moments_update(st, x)
        for c in range(x.shape[1]):
            ref.update(x[0, c])
    for reg in (False, True):
        torch.testing.assert_close(moments_variance(st, regularize=reg)[0, 0], ref.get_covariance(regularize=reg))


def test_batched_dual_averaging_equals_pyro_per_element():
    from pyro.ops.dual_averaging import DualAveraging

    from pyro_ebm.mcmc.adaptation import BatchedDualAveraging

    g = torch.Generator().manual_seed(4)
    center = torch.randn(2, 3, generator=g, dtype=torch.double)
    batched = BatchedDualAveraging(center, gamma=0.2)
    refs = [DualAveraging(prox_center=float(c), gamma=0.2) for c in center.flatten()]
    for _ in range(30):
        stat = torch.rand(2, 3, generator=g, dtype=torch.double) - 0.5
        batched.step(stat)
        for r, v in zip(refs, stat.flatten().tolist()):
            r.step(v)
        x_t, x_avg = batched.get_state()
        want = torch.tensor([r.get_state() for r in refs], dtype=torch.double)
        torch.testing.assert_close(x_t.flatten(), want[:, 0])
        torch.testing.assert_close(x_avg.flatten(), want[:, 1])


def test_chees_gradient_matches_a_loop_over_chains():
    g = torch.Generator().manual_seed(1)
    R, C, D = 2, 9, 3
    q0, qp, pp = (torch.randn(R, C, D, generator=g, dtype=torch.double) for _ in range(3))
    acc = torch.rand(R, C, generator=g, dtype=torch.double)
    acc[1, 4] = 0.0
    qp[1, 4] = float("inf")  # a non-finite proposal: weight 0, it must not poison its replica
    traj = torch.rand(R, C, generator=g, dtype=torch.double) + 0.5
    metric = torch.rand(R, 1, D, generator=g, dtype=torch.double) + 0.5
    for a in (0.0, 0.5):
        got = chees_gradient(q0, qp, pp, acc, traj, metric, cost_exponent=a)
        for r in range(R):
            w = acc[r] / acc[r].sum()
            ok = [i for i in range(C) if acc[r, i] > 0]
            m0 = q0[r].mean(0)
            m1 = sum(w[i] * qp[r, i] for i in ok)
            dg, c4 = 0.0, 0.0
            for i in ok:
                d0, d1 = q0[r, i] - m0, qp[r, i] - m1
                diff = float(((d1**2 - d0**2) * metric[r, 0]).sum())
                dg += float(w[i]) * float(traj[r, i]) * diff * float((d1 * pp[r, i]).sum())
                c4 += float(w[i]) * diff**2
            want = dg if a == 0 else 4 * dg / c4 - a
            assert got[r] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_chees_update_is_adam_without_first_moment_capped():
    st = chees_init([1.0, 2.0])
    st = chees_update(st, [3.0, -2.0], lr=0.1, beta2=0.5, kappa=0.75, max_log_T=[10.0, 0.5])
    # first step: v = (1 - beta2) g^2, bias-corrected sqrt(v) = |g|, so log T moves by lr sign(g)
    assert st.log_T[0] == pytest.approx(0.1, abs=1e-9)
    assert st.log_T[1] == pytest.approx(min(math.log(2.0) - 0.1, 0.5), abs=1e-9)
    assert st.log_T_avg == st.log_T  # weight 1^-kappa = 1
    with pytest.raises(ValueError, match="T0"):
        chees_init([0.0])


def test_trajectory_length_lands_on_the_closed_form_optimum_for_every_seed():
    """On N(0, I) with u ~ U(0, 1) jitter, E[ChEES(uT)] is proportional to 1/2 - sin(2T)/(4T); the
    adapted T maximises log of that minus log(T)/2, at T* = 1.928 (scipy). Plain ChEES (no cost term)
    random-walked to anything between 2 and 30 depending on the seed."""
    T_star = 1.928
    F = lambda y: 0.5 * (y**2).sum(-1)
    init = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
    for seed in range(3):
        # a small step (target 0.99) so the leapfrog is close to the exact flow the optimum assumes
        s = sample(F, init, 400, 10, seed=seed, progress=False, target_accept=0.99, adapt_mass=False)
        T = float(s.info["trajectory_length"])
        assert T_star / 1.3 < T < T_star * 1.3, (seed, T)


# ------------------------------------------------------------------------------------- persistent


def test_persistent_chains_buffer_and_reinit():
    F = lambda y: 0.5 * (y**2).sum(-1)
    pcd = PersistentChains(F, 512, event_shape=(2,), step_size=0.05, reinit_prob=0.0, seed=0)
    before = pcd.buffer.clone()
    out = pcd.sample(64, steps=5)
    assert out.shape == (64, 2) and not out.requires_grad
    assert (pcd.buffer != before).any(dim=-1).sum() <= 64
    for _ in range(60):
        pcd.sample(256, steps=20)
    # ULA with step 0.05: stationary variance 1 / (1 - step / 2)
    v = float(pcd.buffer.var())
    assert abs(v - 1 / (1 - 0.025)) < 0.15
    # reinit_prob = 1: every returned state is fresh noise moved by 0 steps
    fresh = PersistentChains(F, 16, event_shape=(2,), reinit_prob=1.0, seed=0)
    y = fresh.sample(1000, steps=0)
    assert (y.abs() <= 1).all() and abs(float(y.mean())) < 0.1


def test_persistent_chains_other_kernels_and_errors():
    F = lambda y: 0.5 * (y**2).sum(-1)
    for k in ("mala", "hmc"):
        p = PersistentChains(F, 32, torch.zeros(32, 2), kernel=k, step_size=0.3, seed=0)
        assert p.sample(8, 3).shape == (8, 2)
    G = lambda y: y.sum(-1)
    p = PersistentChains(G, 32, event_shape=(4,), kernel="gibbs", seed=0)
    out = p.sample(8, 2)
    assert ((out == 0) | (out == 1)).all()
    with pytest.raises(ValueError, match="reinit_prob"):
        PersistentChains(F, 8, event_shape=(2,), reinit_prob=2.0)
    with pytest.raises(ValueError, match="kernel"):
        PersistentChains(F, 8, event_shape=(2,), kernel="nuts")
    with pytest.raises(ValueError, match="event_shape"):
        PersistentChains(F, 8)


# --------------------------------------------------------------------------------------- ArviZ


def test_to_arviz_and_summary():
    F = lambda y: 0.5 * (y**2).sum(-1)
    s = sample(F, torch.zeros(4, 2), 20, 30, seed=0, progress=False)
    idata = s.to_arviz()
    stats = idata["sample_stats"] if not hasattr(idata, "sample_stats") else idata.sample_stats
    for name in ("energy", "lp", "acceptance_rate", "step_size", "n_steps", "diverging"):
        assert name in stats
    table = s.summary()
    assert len(table) == 2 and {"mean", "ess_bulk", "r_hat"} <= set(table.columns)
    means = s.draws.reshape(-1, 2).mean(0).double().numpy()
    assert np.allclose(table["mean"].to_numpy(), means, atol=1e-6)


def test_an_energy_that_refuses_non_finite_points_does_not_stop_the_sampler():
    """A diverging trajectory (a quartic well, a step far too large) reaches inf/NaN positions. An energy
    that raises a ValueError there, as the library's own energies do, gets energy +inf there: the proposal
    is rejected as a divergence, with the same draws as for an energy that returns NaN."""
    from pyro_ebm.mcmc import sample

    seen = []

    def strict(y):
        seen.append(bool(torch.isfinite(y).all()))
        if not seen[-1]:
            raise ValueError("y must be finite")
        return (y**4).sum(-1)

    def lax(y):
        return (y**4).sum(-1)

    init = torch.full((4, 2), 3.0)
    kw = dict(num_warmup=0, num_samples=20, step_size=2.0, n_steps=4, seed=0, progress=False)
    a = sample(strict, init, adapt_step_size=False, adapt_mass=False, **kw)
    b = sample(lax, init, adapt_step_size=False, adapt_mass=False, **kw)
    assert not all(seen)  # the trajectories did reach non-finite points
    assert bool(a.stats["diverging"].any())
    assert torch.equal(a.draws, b.draws)
