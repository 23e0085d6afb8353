"""The sampler core: one integrator, one warmup, one run loop.

* the leapfrog integrator is reversible and conserves the Hamiltonian to second order;
* warmup tunes every gradient kernel to its target acceptance at any budget from 20 iterations, on the
  benchmark energies, and warns when it could not;
* ``PersistentChains`` runs the loop of ``sample``: the same generator state gives the same draws.
"""

import math
import warnings

import numpy as np
import pytest
import torch

from pyro_ebm import as_energy
from pyro_ebm.mcmc import PersistentChains, TuningWarning, sample
from pyro_ebm.mcmc.integrator import leapfrog
from pyro_ebm.mcmc.potential import EnergyPotential
from pyro_ebm.mcmc.warmup import warmup_schedule

torch.set_default_dtype(torch.float32)

# --------------------------------------------------------------------------------------------------
# the integrator


def _anisotropic_potential(D, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(D, D, generator=g, dtype=torch.float64)
    prec = A @ A.T / D + 0.5 * torch.eye(D, dtype=torch.float64)
    F = as_energy(lambda y: 0.5 * torch.einsum("...i,ij,...j->...", y, prec, y) + 0.1 * (y ** 4).sum(-1),
                  event_shape=(D,))
    return EnergyPotential(F, (D,))


def _hamiltonian(pot, q, p, beta, inv_mass):
    F, _ = pot.value_and_grad(q)
    return beta * F + 0.5 * (p * p * inv_mass).sum(-1)


def _run(pot, q, p, eps, beta, inv_mass, n_steps=None, n_max=10):
    F, g = pot.value_and_grad(q)
    step = eps.unsqueeze(-1)
    half = 0.5 * step * beta
    return leapfrog(pot, q, p.clone(), g, F, half, 2 * half, step * inv_mass, n_steps, n_max)


def test_leapfrog_is_reversible_with_masked_steps():
    D, C = 5, 6
    pot = _anisotropic_potential(D)
    g = torch.Generator().manual_seed(1)
    q0 = torch.randn(1, C, D, generator=g, dtype=torch.float64)
    p0 = torch.randn(1, C, D, generator=g, dtype=torch.float64)
    eps = torch.linspace(0.05, 0.2, C, dtype=torch.float64).unsqueeze(0)
    beta = torch.full((1, 1, 1), 1.5, dtype=torch.float64)
    inv_mass = torch.rand(1, 1, D, generator=g, dtype=torch.float64) + 0.5
    n_steps = torch.tensor([[1, 3, 7, 10, 10, 2]])
    q1, p1, _, _ = _run(pot, q0, p0, eps, beta, inv_mass, n_steps)
    q2, p2, _, _ = _run(pot, q1, -p1, eps, beta, inv_mass, n_steps)
    assert torch.allclose(q2, q0, atol=1e-10) and torch.allclose(-p2, p0, atol=1e-10)
    # a chain with k steps ends where a run of exactly k steps ends
    for c, k in enumerate(n_steps[0].tolist()):
        qk, pk, _, _ = _run(pot, q0[:, c:c + 1], p0[:, c:c + 1], eps[:, c:c + 1], beta, inv_mass, None, k)
        assert torch.allclose(qk, q1[:, c:c + 1], atol=1e-12) and torch.allclose(pk, p1[:, c:c + 1], atol=1e-12)


def test_leapfrog_energy_error_is_second_order():
    """Over a fixed time, halving the step divides the Hamiltonian's error by about 4."""
    D, C = 4, 8
    pot = _anisotropic_potential(D, seed=2)
    g = torch.Generator().manual_seed(3)
    q0 = torch.randn(1, C, D, generator=g, dtype=torch.float64)
    p0 = torch.randn(1, C, D, generator=g, dtype=torch.float64)
    beta = torch.ones(1, 1, 1, dtype=torch.float64)
    inv_mass = torch.ones(1, 1, D, dtype=torch.float64)
    H0 = _hamiltonian(pot, q0, p0, beta[..., 0], inv_mass)
    errors = []
    for eps, n in ((0.04, 25), (0.02, 50), (0.01, 100)):
        q1, p1, _, _ = _run(pot, q0, p0, torch.full((1, C), eps, dtype=torch.float64), beta, inv_mass, None, n)
        errors.append((_hamiltonian(pot, q1, p1, beta[..., 0], inv_mass) - H0).abs().max().item())
    assert errors[0] < 0.05
    for a, b in zip(errors, errors[1:]):
        assert 3.0 < a / b < 5.0, errors


# --------------------------------------------------------------------------------------------------
# warmup


def test_schedule_always_ends_with_a_step_size_window():
    for n in list(range(0, 160)) + [200, 300, 500, 1000, 5000]:
        s = warmup_schedule(n)
        ends = [0] + [e for _, e in s.windows]
        for (start, end), prev in zip(s.windows, ends):
            assert prev <= start < end
        final = n - s.final_start
        assert final >= (n if n < 20 else min(50, n // 2)), (n, s)
        assert warmup_schedule(n, adapt_mass=False).windows == ()


_SCALES = torch.logspace(-1, 1, 50)
_ENERGIES = {  # the benchmark energies (benchmarks/sampler.py): beta, dimension, energy
    "gauss50": (1.0, 50, lambda y: 0.5 * (y * y / _SCALES ** 2).sum(-1)),
    "double_well": (4.0, 2, lambda y: (y[..., 0] ** 2 - 1.0) ** 2 + 0.5 * y[..., 1] ** 2),
}


def _mlp():
    g = torch.Generator().manual_seed(0)
    W1, b1 = torch.randn(2, 32, generator=g) * 1.5, torch.randn(32, generator=g)
    W2, b2 = torch.randn(32, 32, generator=g) / 32 ** 0.5, torch.randn(32, generator=g) * 0.5
    w3 = torch.randn(32, generator=g) / 32 ** 0.5

    def F(y):
        h = torch.tanh(torch.tanh(y @ W1 + b1) @ W2 + b2)
        return h @ w3 + 0.125 * (y * y).sum(-1)

    return F


_ENERGIES["mlp2d"] = (1.0, 2, _mlp())


@pytest.mark.parametrize("num_warmup", [20, 50, 100])
@pytest.mark.parametrize("kernel", ["hmc", "mala"])
@pytest.mark.parametrize("name", sorted(_ENERGIES))
def test_tuned_at_any_budget(name, kernel, num_warmup):
    beta, D, F = _ENERGIES[name]
    target = 0.8 if kernel == "hmc" else 0.574
    init = torch.randn(64, D, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TuningWarning)
        s = sample(F, init, num_warmup=num_warmup, num_samples=100, kernel=kernel, beta=beta, seed=0,
                   progress=False)
    acc = float(s.stats["acceptance_rate"].mean())
    # the warmup raises the target where transitions diverged too often (see the double-well test below)
    adapted = s.info["target_accept"]
    assert adapted >= target
    assert abs(acc - adapted) < 0.1, (acc, adapted)
    assert float(s.stats["diverging"].float().mean()) < 0.01


def test_double_well_divergences_are_rare_the_benchmark_case():
    """The benchmark's double well (256 chains, 500 + 500): with the target acceptance of 0.8 that the
    step size was tuned to, 310-684 of 128,000 transitions diverged (trajectories reaching the stiff
    walls). The warmup now raises the target where it sees divergences: below 0.1%, and the draws are
    still right (the mean of y1^2 is 1 / beta = 0.25; its ESS-based standard error is ~0.005)."""
    beta, D, F = _ENERGIES["double_well"]
    init = torch.randn(256, D, generator=torch.Generator().manual_seed(0))
    s = sample(F, init, num_warmup=500, num_samples=500, beta=beta, seed=1, progress=False)
    assert int(s.stats["diverging"].sum()) < 0.001 * 256 * 500
    assert s.info["target_accept"] > 0.8
    assert abs(float((s.draws[..., 1] ** 2).mean()) - 1 / beta) < 0.02


def test_no_divergences_means_the_target_stays():
    beta, D, F = _ENERGIES["gauss50"]
    init = torch.randn(64, D, generator=torch.Generator().manual_seed(0)) * _SCALES
    s = sample(F, init, num_warmup=200, num_samples=50, beta=beta, seed=0, progress=False)
    assert int(s.stats["diverging"].sum()) == 0 and s.info["target_accept"] == 0.8


def test_standard_normal_short_budget_matches_the_issue_case():
    """2-D standard normal, 64 chains, 200 draws: at 50 warmup the acceptance was 0.05, now on target."""
    F = lambda y: 0.5 * (y ** 2).sum(-1)
    for seed in range(3):
        s = sample(F, torch.zeros(64, 2), num_warmup=50, num_samples=200, seed=seed, progress=False)
        assert abs(float(s.stats["acceptance_rate"].mean()) - 0.8) < 0.1
        # and the draws are right: the variance of a standard normal, within a few of its standard errors
        var = s.draws.reshape(-1, 2).var(0)
        assert bool(((var - 1).abs() < 0.15).all()), var


def test_warns_when_warmup_cannot_tune():
    F = lambda y: 0.5 * (y ** 2).sum(-1)
    with pytest.warns(TuningWarning, match="num_warmup, now 4"):
        sample(F, torch.zeros(16, 2), num_warmup=4, num_samples=5, step_size=50.0, seed=0, progress=False)


def test_grad_evals_count_every_gradient():
    """info['grad_evals'] equals the number of batched gradient calls the potential received."""
    calls = []

    def F(y):
        if y.requires_grad:
            calls.append(1)
        return 0.5 * (y ** 2).sum(-1)

    s = sample(F, torch.zeros(8, 3), num_warmup=60, num_samples=20, seed=0, progress=False)
    assert s.info["grad_evals"] == len(calls)


# --------------------------------------------------------------------------------------------------
# one loop: PersistentChains and sample


@pytest.mark.parametrize("kernel", ["ula", "mala", "hmc", "gibbs"])
def test_persistent_chains_run_the_loop_of_sample(kernel):
    n, D, steps = 12, 3, 7
    if kernel == "gibbs":
        F = lambda y: -(y[..., :-1] * y[..., 1:]).sum(-1) + 0.3 * y.sum(-1)
        init = (torch.rand(n, D, generator=torch.Generator().manual_seed(5)) < 0.5).float()
        opts = {}
    else:
        F = lambda y: 0.5 * (y ** 2).sum(-1) + 0.1 * (y ** 4).sum(-1)
        init = torch.randn(n, D, generator=torch.Generator().manual_seed(5))
        opts = {"ula": dict(step_size=0.05), "mala": dict(step_size=0.3, adapt_step_size=False, adapt_mass=False),
                "hmc": dict(step_size=0.2, n_steps=4, adapt_step_size=False, adapt_mass=False)}[kernel]
    pc = PersistentChains(F, n, init=init.clone(), kernel=kernel, reinit_prob=0.0, step_size=opts.get("step_size", 0.1),
                          n_leapfrog=4, seed=11)
    # replay the buffer's own random choices on a copy of its generator, then run sample() from there
    gen = torch.Generator().manual_seed(11)
    idx = torch.randint(0, n, (n,), generator=gen)
    torch.rand((n,), generator=gen)  # which entries restart ...
    torch.rand((n, D), generator=gen)  # ... and the noise they would restart from
    out = pc.sample(n, steps)
    ref = sample(F, init[idx], num_warmup=0, num_samples=steps, kernel=kernel, seed=gen, progress=False, **opts)
    assert torch.equal(out, ref.draws[:, -1])


def test_poisson_tail_against_scipy():
    from scipy.stats import poisson

    from pyro_ebm.mcmc.warmup import poisson_tail

    for mean in (0.0, 0.064, 0.64, 5.0, 51.2, 128.0):
        for k in (0, 1, 2, 3, 10, 60, 150):
            want = 1.0 if k <= 0 else float(poisson.sf(k - 1, mean))
            assert poisson_tail(k, mean) == pytest.approx(want, rel=1e-9, abs=1e-12), (k, mean)


def test_noise_blocks_are_the_generators_draws_in_order():
    # a run's momenta and uniforms come in blocks of `block` transitions, the last capped at what is left
    from pyro_ebm.mcmc.hmc import Noise, draw_noise

    q = torch.zeros(2, 3, 4)
    noise = Noise(torch.Generator().manual_seed(5), q, total=10, block=4)
    got = [noise.next() for _ in range(10)]
    g = torch.Generator().manual_seed(5)
    blocks = [draw_noise(g, q, n) for n in (4, 4, 2)]
    want = [(xi[i], u[i]) for xi, u in blocks for i in range(xi.shape[0])]
    for (a, b), (c, d) in zip(got, want):
        assert torch.equal(a, c) and torch.equal(b, d)
    assert got[0][0].shape == (2, 3, 4) and got[0][1].shape == (2, 3)
    assert torch.equal(torch.randn(1, generator=noise.generator), torch.randn(1, generator=g))  # nothing extra drawn
