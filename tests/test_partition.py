"""Tests of pyro_ebm.partition against independent references.

References: brute-force numpy/scipy log-sum-exp (finite sets), closed forms (Gaussian energies:
log Z(beta) = D/2 log(2 pi / beta) + sum_i log s_i, see ``Gaussian.log_z``), and Gauss-Legendre quadrature,
checked against those closed forms before it serves as the reference for a multimodal energy.

Tolerances. Quadrature: the energies are smooth and the boxes reach 10 standard deviations, so the
truncated mass is below e^-40 and composite Gauss-Legendre with 2n nodes is accurate to ~1e-10; we ask for
1e-6 and for the reported refinement error to cover the actual error. AIS: the estimator is unbiased for Z,
so log Zhat is approximately normal with the delta-method standard error; 3 standard errors is the usual
99.7% band, and the 0.1-nat requirement is met by sizing N and T so that the standard error is <= 0.03.
"""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy.special import logsumexp

from pyro_ebm import Energy, as_energy
from pyro_ebm.partition import (
    Bracket,
    LogPartition,
    NormalizedGibbs,
    ais_bracket,
    energy_from_model,
    log_likelihood,
    log_partition,
    normalized_distribution,
)

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # AIS moves a few hundred particles at a time: tiny tensors, for which intra-op threads only add
    # contention; one thread keeps the timings stable on a loaded machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Gaussian(Energy):
    """F(y) = 0.5 sum ((y - mu) / s)^2, log Z(beta) = D/2 log(2 pi / beta) + sum log s."""

    def __init__(self, mu, s):
        super().__init__(event_shape=(mu.numel(),))
        self.register_buffer("mu", mu)
        self.register_buffer("s", s)

    def forward(self, y, x=None):
        return 0.5 * (((y - self.mu) / self.s) ** 2).sum(-1)

    def log_z(self, beta=1.0):
        d = self.mu.numel()
        return 0.5 * d * math.log(2 * math.pi / beta) + self.s.log().sum().item()


def anisotropic(d, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    s = torch.exp(torch.linspace(-0.7, 0.7, d, dtype=dtype))  # condition number 4 in scale, 16 in variance
    mu = 0.5 * torch.randn(d, generator=g, dtype=dtype)
    return Gaussian(mu, s)


def double_well(y):
    # two modes at y0 = +-1.2 (barrier 4 at beta = 1), tilted so they carry unequal mass, correlated y1
    well = 4.0 * (y[..., 0] ** 2 / 1.44 - 1.0) ** 2 + 0.3 * y[..., 0]
    return well + 0.5 * ((y[..., 1] - 0.8 * y[..., 0]) / 0.6) ** 2


# ----------------------------------------------------------------------------------------------- exact


@pytest.mark.parametrize("chunk_size", [1, 7, 63, 64, 65, 1000])
@pytest.mark.parametrize("beta", [0.3, 1.0, 5.0])
def test_exact_matches_numpy_logsumexp_across_chunk_boundaries(chunk_size, beta):
    g = torch.Generator().manual_seed(3)
    values = torch.randn(64, 3, generator=g, dtype=F64)
    w = torch.randn(3, generator=g, dtype=F64)
    F = as_energy(lambda y: 10 * torch.sin(y @ w) + (y**2).sum(-1), event_shape=(3,))
    est = log_partition(F, beta, method="exact", values=values, chunk_size=chunk_size)
    ref = logsumexp(-beta * F(values).numpy())
    assert est.method == "exact" and est.value.dtype == F64
    assert float(est.stderr) == 0.0 and est.ess is None
    np.testing.assert_allclose(float(est.value), ref, rtol=0, atol=1e-12)


def test_exact_large_energies_do_not_overflow_and_accumulate_in_float64():
    values = torch.arange(1000, dtype=torch.float32).reshape(1000, 1)
    F = as_energy(lambda y: -50.0 * y[..., 0] / 999 * 40, event_shape=(1,))  # energies down to -2000
    est = log_partition(F, method="exact", values=values, chunk_size=33)
    ref = logsumexp(-F(values).double().numpy())
    assert math.isfinite(float(est.value))
    np.testing.assert_allclose(float(est.value), ref, rtol=1e-7)


def test_exact_scalar_event_and_plus_inf():
    values = torch.tensor([0.0, 1.0, 2.0, 3.0])
    F = lambda y: torch.where(y > 2.5, torch.full_like(y, math.inf), (y - 1.0) ** 2)  # noqa: E731
    est = log_partition(F, method="exact", values=values)
    np.testing.assert_allclose(float(est.value), math.log(1 + 2 * math.exp(-1.0)), atol=1e-6)


def test_exact_nan_energy_says_which_row():
    values = torch.arange(10.0)
    F = lambda y: torch.where(y == 7.0, torch.full_like(y, math.nan), y)  # noqa: E731
    with pytest.raises(ValueError, match=r"values\[7\]"):
        log_partition(F, method="exact", values=values, chunk_size=3)


def test_exact_refuses_too_many_candidates():
    with pytest.raises(ValueError, match="max_candidates"):
        log_partition(lambda y: y, method="exact", values=torch.zeros(11), max_candidates=10)


# ------------------------------------------------------------------------------------------ quadrature


@pytest.mark.parametrize("d", [1, 2, 3])
def test_quadrature_matches_closed_form(d):
    F = anisotropic(d, seed=d)
    beta = 0.7
    half = 10 * F.s / math.sqrt(beta)  # 10 standard deviations per dimension
    low = (F.mu - half).tolist()
    high = (F.mu + half).tolist()
    est = log_partition(F, beta, method="quadrature", low=low, high=high)
    true = F.log_z(beta)
    err = abs(float(est.value) - true)
    assert est.value.dtype == F64 and est.method == "quadrature"
    assert err < 1e-6
    assert err <= float(est.stderr) + 1e-9  # the refinement error covers the actual error


def test_quadrature_float32_energy_accumulates_in_float64_and_scalar_box():
    F = as_energy(lambda y: 0.5 * y**2 + 300.0)  # exp(-300) underflows float32, not log-space float64
    est = log_partition(F, method="quadrature", low=-12.0, high=12.0)
    assert est.value.dtype == F64
    np.testing.assert_allclose(float(est.value), 0.5 * math.log(2 * math.pi) - 300.0, atol=1e-5)


def test_quadrature_does_not_depend_on_chunking():
    F = anisotropic(2, seed=5)
    kw = dict(method="quadrature", low=[-6, -6], high=[6, 6], num_points=24)
    ref = log_partition(F, **kw)
    for chunk_size in [1000, 576, 577, 2304]:  # 24^2 = 576 and 48^2 = 2304 nodes
        est = log_partition(F, chunk_size=chunk_size, **kw)
        assert abs(float(est.value) - float(ref.value)) < 1e-13
        assert abs(float(est.stderr) - float(ref.stderr)) < 1e-13


def test_quadrature_coarse_grid_reports_a_larger_error():
    F = anisotropic(2, seed=1)
    rough = log_partition(F, method="quadrature", low=[-8, -8], high=[8, 8], num_points=16, order=4)
    fine = log_partition(F, method="quadrature", low=[-8, -8], high=[8, 8])
    assert float(rough.stderr) > 100 * float(fine.stderr)
    assert abs(float(rough.value) - F.log_z()) <= float(rough.stderr)


def test_quadrature_vs_ais_on_a_multimodal_energy():
    F = as_energy(double_well, event_shape=(2,))
    quad = log_partition(F, method="quadrature", low=[-4, -6], high=[4, 6], num_points=256)
    assert float(quad.stderr) < 1e-6
    ais = log_partition(
        F, method="ais", scale=2.0, num_particles=512, num_temperatures=400, seed=11
    )
    diff = abs(float(ais.value) - float(quad.value))
    assert diff < 3 * float(ais.stderr), (diff, float(ais.stderr))
    # both modes are populated, with the tilted weights the energy implies (the lighter mode at +1.2)
    w = torch.softmax(ais.log_weights, 0)
    right = float((w * (ais.samples[:, 0] > 0).to(F64)).sum())
    assert 0.1 < right < 0.45


def test_quadrature_rejects_more_than_three_dimensions():
    F = anisotropic(4)
    with pytest.raises(ValueError, match=r"quadrature in 4 dimensions.*method='ais'"):
        log_partition(F, method="quadrature", low=[-1] * 4, high=[1] * 4)


def test_quadrature_non_finite_energy_says_where():
    def F(y):
        r = (y**2).sum(-1)
        return torch.where((y[..., 0] > 0.5) & (y[..., 1] < -0.5), torch.full_like(r, math.nan), r)

    with pytest.raises(ValueError, match=r"nan at y = \[.*\].*quadrature node"):
        log_partition(F, method="quadrature", low=[-1, -1], high=[1, 1], event_shape=(2,))
    with pytest.raises(ValueError, match="-inf at y ="):
        log_partition(lambda y: torch.where(y > 0, -math.inf, y**2), method="quadrature", low=-1, high=1)


def test_quadrature_bad_box():
    F = anisotropic(2)
    with pytest.raises(ValueError, match="low must give one bound per dimension"):
        log_partition(F, method="quadrature", low=[-1], high=[1, 1])
    with pytest.raises(ValueError, match="high must be > low"):
        log_partition(F, method="quadrature", low=[-1, 1], high=[1, 1])
    with pytest.raises(ValueError, match="high must be finite"):
        log_partition(F, method="quadrature", low=[-1, -1], high=[1, math.inf])
    with pytest.raises(TypeError, match=r"needs the option\(s\) \['low', 'high'\]"):
        log_partition(F, method="quadrature")


# -------------------------------------------------------------------------------------------------- AIS

AIS_CASES = {  # d: (num_particles, num_temperatures); sized so that the stderr is <= ~0.03 nats
    2: (256, 300),
    10: (512, 500),
    50: (512, 1000),
}


@pytest.mark.parametrize("d", [2, 10, 50])
def test_ais_matches_gaussian_closed_form(d):
    F = anisotropic(d, seed=d)
    n, t = AIS_CASES[d]
    # the base N(0, 1.5^2 I) is wider than the target, off-centre and isotropic: not the target
    est = log_partition(F, 1.0, method="ais", scale=1.5, num_particles=n, num_temperatures=t, seed=0)
    true = F.log_z()
    err = float(est.value) - true
    assert isinstance(est, LogPartition) and est.method == "ais"
    assert est.log_weights.shape == (n,) and est.samples.shape == (n, d)
    assert abs(err) < 3 * float(est.stderr), (err, float(est.stderr))
    assert abs(err) < 0.1
    assert float(est.ess) > 0.3 * n
    assert est.accept_rate.shape == (t - 1,) and 0.4 < float(est.accept_rate[-10:].mean()) < 0.8


def test_ais_weights_summary_and_reproducibility():
    F = anisotropic(3, seed=2)
    a = log_partition(F, method="ais", num_particles=64, num_temperatures=20, seed=5)
    b = log_partition(F, method="ais", num_particles=64, num_temperatures=20, seed=5)
    c = log_partition(F, method="ais", num_particles=64, num_temperatures=20, seed=6)
    assert torch.equal(a.log_weights, b.log_weights) and float(a.value) == float(b.value)
    assert float(a.value) != float(c.value)
    lw = a.log_weights.numpy()
    w = np.exp(lw - lw.max())
    np.testing.assert_allclose(float(a.value), logsumexp(lw) - math.log(64), rtol=1e-12)
    np.testing.assert_allclose(float(a.ess), w.sum() ** 2 / (w**2).sum(), rtol=1e-10)
    np.testing.assert_allclose(float(a.stderr), np.std(w, ddof=1) / math.sqrt(64) / w.mean(), rtol=1e-10)
    est = a.estimate
    assert float(est.value) == float(a.value) and float(est.stderr) == float(a.stderr)


def test_ais_hmc_transition_user_base_and_fixed_steps():
    F = anisotropic(5, seed=3)
    base = dist.StudentT(5.0, torch.zeros(5, dtype=F64), torch.ones(5, dtype=F64)).to_event(1)
    est = log_partition(
        F, 2.0, method="ais", base=base, transition="hmc", num_leapfrog=3, num_particles=256,
        num_temperatures=100, num_mcmc_steps=1, seed=1,
    )
    assert abs(float(est.value) - F.log_z(2.0)) < 3 * float(est.stderr) + 0.02
    # a fixed schedule (strictly unbiased): reuse the adapted steps of the first run
    again = log_partition(
        F, 2.0, method="ais", base=base, transition="hmc", num_leapfrog=3, num_particles=256,
        num_temperatures=100, num_mcmc_steps=1, seed=2, step_size=est.step_sizes,
    )
    assert torch.equal(again.step_sizes, est.step_sizes)
    assert abs(float(again.value) - F.log_z(2.0)) < 3 * float(again.stderr) + 0.02


def test_ais_scalar_event_and_base_support():
    F = as_energy(lambda y: 0.5 * (y - 1.0) ** 2 / 0.25)  # event_shape (): N(1, 0.5^2), log Z = log(0.5 sqrt(2 pi))
    est = log_partition(F, method="ais", num_particles=256, num_temperatures=100, seed=0)
    true = math.log(0.5 * math.sqrt(2 * math.pi))
    assert est.samples.shape == (256,)
    assert abs(float(est.value) - true) < 3 * float(est.stderr) + 0.01
    # a base with bounded support: Z is the integral over that support (here about half of the mass)
    half = dist.Uniform(torch.tensor(1.0), torch.tensor(6.0))
    est = log_partition(F, method="ais", base=half, num_particles=256, num_temperatures=100, seed=0)
    assert abs(float(est.value) - (true - math.log(2))) < 3 * float(est.stderr) + 0.01
    assert bool((est.samples >= 1.0).all())


def test_ais_schedules():
    F = anisotropic(2, seed=4)
    for schedule in ["geometric", "sigmoid", "linear", torch.linspace(0, 1, 51) ** 3]:
        est = log_partition(F, method="ais", num_particles=256, num_temperatures=50, schedule=schedule, seed=0)
        assert est.betas[0] == 0 and est.betas[-1] == 1 and bool((est.betas.diff() > 0).all())
        assert abs(float(est.value) - F.log_z()) < 3 * float(est.stderr) + 0.02
    with pytest.raises(ValueError, match="schedule"):
        log_partition(F, method="ais", schedule=torch.tensor([0.0, 0.7, 0.5, 1.0]))


# -------------------------------------------------------------------------------------- reverse AIS


def test_reverse_ais_brackets_log_z():
    d = 10
    F = anisotropic(d, seed=7)
    g = torch.Generator().manual_seed(0)
    samples = F.mu + F.s * torch.randn(512, d, generator=g, dtype=F64)  # exact draws of the target
    true = F.log_z()
    br = ais_bracket(F, samples, scale=1.5, num_temperatures=300, seed=3)
    assert isinstance(br, Bracket) and br.lower.method == "ais" and br.upper.method == "reverse_ais"
    assert float(br.upper.value) >= float(br.lower.value)
    for est in br:
        assert abs(float(est.value) - true) < 3 * float(est.stderr) + 0.01
        assert abs(float(est.value) - true) < 0.1
    # the reverse run used the forward run's step schedule, held fixed
    assert torch.allclose(br.upper.step_sizes, br.lower.step_sizes)


def test_short_annealing_gives_a_wide_bracket_around_the_truth():
    # with few temperatures both estimators are strongly biased, in opposite directions (Jensen)
    d = 20
    F = anisotropic(d, seed=8)
    g = torch.Generator().manual_seed(1)
    samples = F.mu + F.s * torch.randn(256, d, generator=g, dtype=F64)
    br = ais_bracket(F, samples, scale=3.0, num_temperatures=4, seed=0)
    true = F.log_z()
    assert float(br.lower.value) < true - 0.5
    assert float(br.upper.value) > true + 0.5


# -------------------------------------------------------------------------------------------- errors


def test_bad_inputs_name_the_argument():
    F = anisotropic(2)
    with pytest.raises(ValueError, match="base must have event_shape \\(2,\\)"):
        log_partition(F, method="ais", base=dist.Normal(torch.zeros(3), 1.0).to_event(1))
    with pytest.raises(ValueError, match=r"base must have event_shape.*to_event\(1\)"):
        log_partition(F, method="ais", base=dist.Normal(torch.zeros(2), 1.0))
    with pytest.raises(ValueError, match="base must have event_shape"):
        log_partition(
            F, method="reverse_ais", samples=torch.zeros(4, 2), base=dist.Normal(torch.zeros(()), 1.0)
        )
    for beta in [0.0, -1.0, math.nan]:
        with pytest.raises(ValueError, match="beta must be > 0"):
            log_partition(F, beta, method="ais")
    with pytest.raises(ValueError, match="beta must be > 0"):
        log_partition(F, 0.0, method="exact", values=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="beta = inf"):
        log_partition(F, math.inf, method="quadrature", low=[-1, -1], high=[1, 1])
    with pytest.raises(ValueError, match="method must be one of"):
        log_partition(F, method="mcmc")
    with pytest.raises(TypeError, match="unknown option"):
        log_partition(F, method="ais", particles=10)
    with pytest.raises(ValueError, match="scale must be > 0"):
        log_partition(F, method="ais", scale=0.0)
    with pytest.raises(ValueError, match="loc and scale"):
        log_partition(F, method="ais", scale=2.0, base=dist.Normal(torch.zeros(2), 1.0).to_event(1))
    with pytest.raises(ValueError, match="transition must be"):
        log_partition(F, method="ais", transition="nuts")
    with pytest.raises(ValueError, match="event_shape is needed"):
        log_partition(lambda y: y.sum(-1), method="ais")
    with pytest.raises(ValueError, match="samples must have shape"):
        log_partition(F, method="reverse_ais", samples=torch.zeros(5, 3))
    with pytest.raises(ValueError, match="starting particle"):
        log_partition(lambda y: y.sum(-1) * math.nan, method="ais", event_shape=(2,))


# --------------------------------------------------------------------------- normalized EBMs & models


def test_log_likelihood_is_the_normalized_log_density():
    F = anisotropic(3, seed=9)
    y = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    ll = log_likelihood(F, y, F.log_z(2.0), beta=2.0)
    ref = dist.Normal(F.mu, F.s / math.sqrt(2.0)).to_event(1).log_prob(y)
    assert ll.shape == (4, 5)
    torch.testing.assert_close(ll, ref)
    est = log_partition(F, 2.0, method="quadrature", low=[-9] * 3, high=[9] * 3, num_points=32)
    shift = float(est.value) - F.log_z(2.0)  # a LogPartition is used through its value
    torch.testing.assert_close(log_likelihood(F, y, est, beta=2.0), ref - shift)
    with pytest.raises(ValueError, match="log_z must be finite"):
        log_likelihood(F, y, math.nan)
    with pytest.raises(ValueError, match="beta must be > 0"):
        log_likelihood(F, y, 0.0, beta=-1.0)


def test_normalized_distribution_scores_like_a_pyro_distribution():
    F = anisotropic(2, seed=10)
    p = normalized_distribution(F, F.log_z(), event_shape=(2,))
    assert isinstance(p, NormalizedGibbs)
    ref = dist.Normal(F.mu, F.s).to_event(1)
    y = torch.randn(6, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(p.log_prob(y), ref.log_prob(y))

    # an observed site inside a plate, next to a probabilistic model of the same data
    def model(data):
        with pyro.plate("data", data.shape[0]):
            pyro.sample("ebm", p, obs=data)
            pyro.sample("gauss", ref, obs=data)

    tr = pyro.poutine.trace(model).get_trace(y)
    tr.compute_log_prob()
    torch.testing.assert_close(tr.nodes["ebm"]["log_prob_sum"], tr.nodes["gauss"]["log_prob_sum"])
    assert p.expand((6,)).log_z is p.log_z and isinstance(p.expand((6,)), NormalizedGibbs)
    # sample() is GibbsBoltzmann's: draws of the initial distribution (the origin by default), not of p
    assert torch.equal(p.sample((3,)), torch.zeros(3, 2))
    assert "NormalizedGibbs" in repr(p)


def mixture_model(n=3):
    locs = torch.tensor([[-2.0, 0.0], [2.0, 1.0]], dtype=F64)
    probs = torch.tensor([0.3, 0.7], dtype=F64)

    def model():
        with pyro.plate("points", n):
            z = pyro.sample("z", dist.Categorical(probs))
            return pyro.sample("y", dist.Normal(locs[z], 0.8).to_event(1))

    def log_p(y):  # y [..., n, 2]: the joint of the n points, each a two-component mixture
        comp = dist.Normal(locs, 0.8).to_event(1).log_prob(y.unsqueeze(-2)) + probs.log()
        return torch.logsumexp(comp, -1).sum(-1)

    return model, log_p


def test_energy_from_model_enumerates_local_discrete_latents():
    model, log_p = mixture_model(3)
    F = energy_from_model(model, "y")
    assert tuple(F.event_shape) == (3, 2)
    y = torch.randn(4, 5, 3, 2, dtype=F64, generator=torch.Generator().manual_seed(2)) * 2
    out = F(y)
    assert out.shape == (4, 5)
    torch.testing.assert_close(out, -log_p(y))
    torch.testing.assert_close(F(y[0, 0]), -log_p(y[0, 0]))  # no batch


def test_energy_from_model_global_latent_and_log_z_zero():
    # a global discrete latent shared by a plate: the sum over z is outside the product over points
    locs = torch.tensor([-1.5, 1.5], dtype=F64)

    def model():
        z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.25, dtype=F64)))
        with pyro.plate("pts", 2):
            pyro.sample("y", dist.Normal(locs[z.long()], 0.7))

    F = energy_from_model(model, "y")
    y = torch.randn(7, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    ref = torch.logsumexp(
        torch.stack([math.log(0.75) + dist.Normal(locs[0], 0.7).log_prob(y).sum(-1),
                     math.log(0.25) + dist.Normal(locs[1], 0.7).log_prob(y).sum(-1)]), 0
    )
    torch.testing.assert_close(F(y), -ref)
    # a normalized model has log Z = 0 (its energy is -log p)
    est = log_partition(F, method="quadrature", low=[-8, -8], high=[8, 8], num_points=64)
    assert abs(float(est.value)) < 1e-6


def test_energy_from_model_continuous_latent_needs_conditioning():
    def model():
        mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))
        return pyro.sample("y", dist.Normal(mu, 1.0))

    with pytest.raises(ValueError, match="'mu' is a continuous latent"):
        energy_from_model(model, "y")
    F = energy_from_model(model, "y", data={"mu": torch.tensor(0.5, dtype=F64)})
    y = torch.tensor([0.0, 1.0], dtype=F64)
    mu = torch.tensor(0.5, dtype=F64)
    torch.testing.assert_close(F(y), -dist.Normal(mu, 1.0).log_prob(y) - dist.Normal(0.0, 1.0).log_prob(mu))
    with pytest.raises(ValueError, match="not a sample site"):
        energy_from_model(model, "x")


def test_energy_from_model_with_ais():
    model, _ = mixture_model(1)
    F = energy_from_model(model, "y")
    est = log_partition(F, method="ais", scale=3.0, num_particles=256, num_temperatures=50, seed=4)
    assert abs(float(est.value)) < 3 * float(est.stderr) + 0.02


# ------------------------------------------------------------------------------------------------ slow


@pytest.mark.slow
def test_ais_is_unbiased_for_z_with_a_fixed_step_schedule():
    # E[Z_hat] = Z: averaging Z_hat / Z over many short runs (few temperatures: large variance of log w but
    # unbiased Z_hat) must be 1 within 3 standard errors of the mean; and E[log Z_hat] < log Z (Jensen).
    F = anisotropic(4, seed=12)
    true = F.log_z()
    ratios, logs = [], []
    for seed in range(200):
        est = log_partition(F, method="ais", scale=1.2, num_particles=16, num_temperatures=5, step_size=0.5,
                            seed=seed)
        ratios.append(math.exp(float(est.value) - true))
        logs.append(float(est.value) - true)
    ratios = np.array(ratios)
    assert abs(ratios.mean() - 1) < 3 * ratios.std(ddof=1) / math.sqrt(len(ratios))
    assert np.mean(logs) < 0


def test_quadrature_dtype_and_an_honest_rounding_error():
    """float32 energies of size 1000 at beta = 1e6: the reported error covers the rounding of F itself
    (it used to report 0.006 while 3-4 nats off); in float64 the same rule is exact."""
    F = as_energy(lambda y: 1000.0 + 0.5 * (y ** 2).sum(-1), event_shape=(1,))
    truth = -1e6 * 1000 + 0.5 * math.log(2 * math.pi / 1e6)
    est32 = log_partition(F, beta=1e6, method="quadrature", low=-0.01, high=0.01)
    assert abs(float(est32.value) - truth) <= float(est32.stderr)
    assert float(est32.stderr) > 1.0
    est64 = log_partition(F, beta=1e6, method="quadrature", low=-0.01, high=0.01, dtype=torch.float64)
    assert abs(float(est64.value) - truth) < 1e-6 and float(est64.stderr) < 1e-5
    with pytest.raises(TypeError, match="dtype"):
        log_partition(F, method="quadrature", low=-1.0, high=1.0, dtype="float64")
