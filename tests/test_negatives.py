"""Tests of the negative generators: shapes, seeding, and each generator against an independent computation
(brute force over a finite set, closed forms for Gaussian/quadratic energies, sample moments with
tolerances derived from the number of independent draws)."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_ebm import Energy, as_energy, losses
from pyro_ebm.negatives import (
    ContrastiveDivergence,
    Corruption,
    Exhaustive,
    LearnedGenerator,
    MCMCNegatives,
    MostOffending,
    Negatives,
    PersistentNegatives,
    negative_energies,
)
from pyro_ebm.train import set_loss


def quadratic(center, scale=1.0, event=(2,)):
    """F(y) = 0.5 ||y - center||^2 / scale^2 (a Gaussian N(center, scale^2 / beta) at inverse temperature beta)."""
    c = torch.as_tensor(center, dtype=torch.float32)
    return as_energy(lambda y: 0.5 * ((y - c) ** 2).sum(-1) / scale**2, event_shape=event)


class Shifted(Energy):
    """F(y, x) = 0.5 ||y - x||^2, for conditioning tests (x [M, 2] rows go with y [M, 2])."""

    def __init__(self):
        super().__init__(event_shape=(2,))

    def forward(self, y, x=None):
        return 0.5 * ((y - x) ** 2).sum(-1)


def continuous_generators(seed=0):
    return {
        "mcmc": MCMCNegatives(n_neg=2, kernel="mala", num_warmup=10, seed=seed),
        "cd": ContrastiveDivergence(k=3, n_neg=2, step_size=0.1, seed=seed),
        "pcd": PersistentNegatives(buffer_size=50, n_neg=2, steps=3, step_size=0.1, seed=seed),
        "offending": MostOffending(radius=0.3, restarts=2, steps=5, seed=seed),
        "noise": Corruption(sigma=0.3, n_neg=2, seed=seed),
        "gan": LearnedGenerator(torch.nn.Linear(3, 2), latent_shape=(3,), n_neg=2, seed=seed),
    }


N_NEG = {"mcmc": 2, "cd": 2, "pcd": 2, "offending": 1, "noise": 2, "gan": 2}


# ------------------------------------------------------------------------------------------------------
# shapes and seeding


@pytest.mark.parametrize("name", list(N_NEG))
@pytest.mark.parametrize("batch", [(5,), (2, 3)])
def test_shapes(name, batch):
    torch.manual_seed(0)
    gen = continuous_generators()[name]
    assert isinstance(gen, Negatives)
    y = torch.randn(batch + (2,))
    out = gen(quadratic([0.0, 0.0]), y)
    assert out.shape == (N_NEG[name],) + batch + (2,)
    assert not out.requires_grad
    assert torch.isfinite(out).all()
    neg = negative_energies(quadratic([0.0, 0.0]), out)
    assert neg.shape == batch + (N_NEG[name],)


@pytest.mark.parametrize("name", list(N_NEG))
def test_conditioning_shapes(name):
    gen = continuous_generators()[name]
    if name == "gan":
        gen = LearnedGenerator(_CondNet(), latent_shape=(3,), n_neg=2, seed=0)
    y, x = torch.randn(4, 2), torch.randn(4, 2)
    out = gen(Shifted(), y, x)
    assert out.shape == (N_NEG[name], 4, 2)
    assert negative_energies(Shifted(), out, x).shape == (4, N_NEG[name])


class _CondNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, z, x):
        return self.lin(z) + x


@pytest.mark.parametrize("name", list(N_NEG))
def test_same_seed_same_numbers(name):
    y = torch.randn(6, 2, generator=torch.Generator().manual_seed(3))
    F = quadratic([0.5, -0.5])
    outs = []
    for _ in range(2):
        torch.manual_seed(0)  # the GAN generator's initial weights
        gen = continuous_generators(seed=11)[name]
        outs.append(torch.stack([gen(F, y), gen(F, y)]))
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(0)
    other = continuous_generators(seed=12)[name](F, y)
    assert not torch.equal(outs[0][0], other)


def test_torch_generator_as_seed():
    y = torch.zeros(5, 2)
    a = Corruption(sigma=1.0, seed=torch.Generator().manual_seed(4))(quadratic([0, 0]), y)
    b = Corruption(sigma=1.0, seed=torch.Generator().manual_seed(4))(quadratic([0, 0]), y)
    assert torch.equal(a, b)


def test_negative_energies_layout():
    F = quadratic([0.0, 0.0])
    y_hat = torch.randn(3, 4, 2)
    neg = negative_energies(F, y_hat)
    assert torch.allclose(neg, F(y_hat).T)  # [batch, n_neg]
    x = torch.randn(4, 2)
    assert torch.allclose(negative_energies(Shifted(), y_hat, x), 0.5 * ((y_hat - x) ** 2).sum(-1).T)


# ------------------------------------------------------------------------------------------------------
# exhaustive


def test_exhaustive_is_every_other_candidate():
    K = 5
    cands = torch.eye(K)
    target = torch.tensor([0, 3, 4, 3])
    out = Exhaustive(cands)(as_energy(lambda y: y.sum(-1), event_shape=(K,)), cands[target])
    assert out.shape == (K - 1, 4, K)
    for b, t in enumerate(target.tolist()):
        assert out[:, b].argmax(-1).tolist() == [k for k in range(K) if k != t]


def test_exhaustive_with_set_loss_is_nll_over_all_candidates():
    torch.manual_seed(0)
    K, B = 4, 7
    W = torch.randn(K, 3)
    F = as_energy(lambda y, x: -(y * (x @ W.T)).sum(-1), event_shape=(K,))
    x = torch.randn(B, 3)
    target = torch.randint(0, K, (B,))
    y = torch.eye(K)[target]
    y_hat = Exhaustive(torch.eye(K))(F, y, x)
    got = set_loss(losses.nll, beta=0.7)(F(y, x), negative_energies(F, y_hat, x))
    all_energies = -(x @ W.T)  # [B, K], computed independently
    want = losses.nll(all_energies, target, beta=0.7)
    assert torch.allclose(got, want, atol=1e-6)


def test_exhaustive_with_float_candidates_and_a_large_batch():
    # many examples and candidates with arbitrary float values: matching the data must stay exact
    torch.manual_seed(0)
    cands = torch.randn(50, 7)
    target = torch.randint(0, 50, (100,))
    F = as_energy(lambda y: y.sum(-1), event_shape=(7,))
    out = Exhaustive(cands)(F, cands[target])
    assert out.shape == (49, 100, 7)
    assert not (out == cands[target]).all(-1).any()
    assert not (MostOffending(cands)(F, cands[target])[0] == cands[target]).all(-1).any()


def test_exhaustive_rejects_data_outside_the_set():
    with pytest.raises(ValueError, match="candidates"):
        Exhaustive(torch.eye(3))(as_energy(lambda y: y.sum(-1), event_shape=(3,)), torch.full((2, 3), 0.5))


# ------------------------------------------------------------------------------------------------------
# most offending


def test_most_offending_finite_is_brute_force_argmin_excluding_the_target():
    torch.manual_seed(1)
    K, B = 6, 20
    cands = torch.randn(K, 2)
    W = torch.randn(2, 2)
    F = as_energy(lambda y, x: ((y @ W - x) ** 2).sum(-1), event_shape=(2,))
    x = torch.randn(B, 2)
    target = torch.randint(0, K, (B,))
    out = MostOffending(cands, k=2)(F, cands[target], x)
    assert out.shape == (2, B, 2)
    for b in range(B):
        energies = [(F(cands[k], x[b]).item(), k) for k in range(K) if k != int(target[b])]
        best = [k for _, k in sorted(energies)[:2]]
        assert torch.equal(out[0, b], cands[best[0]]) and torch.equal(out[1, b], cands[best[1]])


def test_most_offending_finite_radius_excludes_neighbours():
    cands = torch.arange(6.0).unsqueeze(-1)  # 0..5
    F = as_energy(lambda y: (y - 2.0).squeeze(-1) ** 2, event_shape=(1,))  # lowest at 2
    out = MostOffending(cands, radius=1.5)(F, torch.tensor([[2.0], [5.0]]))
    # y = 2: candidates 1, 2, 3 are within 1.5 -> best of {0, 4, 5} is 0 or 4 (tie, energy 4); y = 5: 2
    assert out[0, 0].item() in (0.0, 4.0) and out[0, 1].item() == 2.0
    with pytest.raises(ValueError, match="radius"):
        MostOffending(cands, radius=10.0)(F, torch.tensor([[2.0]]))


@pytest.mark.parametrize("dist", [0.5, 3.0])
def test_most_offending_search_matches_closed_form(dist):
    # F = ||y - c||^2 with ||c - y|| = dist. Outside the exclusion ball the minimiser is c itself;
    # inside, it is the point of the sphere of radius r nearest to c: y + r (c - y) / ||c - y||.
    r = 1.0
    direction = torch.tensor([0.6, 0.8])
    y = torch.tensor([[1.0, -2.0]])
    c = y[0] + dist * direction
    F = quadratic(c, scale=math.sqrt(0.5))
    out = MostOffending(radius=r, restarts=4, steps=200, lr=0.1, seed=0)(F, y)
    want = y[0] + (r if dist < r else dist) * direction
    assert torch.allclose(out[0, 0], want, atol=1e-3)


def test_most_offending_search_respects_the_radius():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    F = as_energy(lambda y: net(y).squeeze(-1) + 0.1 * (y**2).sum(-1), event_shape=(3,))
    y = torch.randn(32, 3)
    out = MostOffending(radius=0.7, steps=50, lr=0.2, seed=1)(F, y)
    d = (out[0] - y).norm(dim=-1)
    assert bool((d >= 0.7 - 1e-5).all())


# ------------------------------------------------------------------------------------------------------
# contrastive divergence


def test_cd0_returns_the_data():
    y = torch.randn(5, 2)
    out = ContrastiveDivergence(k=0, n_neg=3)(quadratic([1.0, 1.0]), y)
    assert torch.equal(out, y.expand(3, 5, 2))


def test_cd_without_noise_is_k_gradient_steps():
    # F = 0.5 ||y - c||^2, y <- y - h (y - c)  =>  y_k = c + (1 - h)^k (y_0 - c)
    c = torch.tensor([1.0, -1.0])
    y = torch.randn(8, 2)
    h, k = 0.2, 4
    out = ContrastiveDivergence(k=k, step_size=h, noise=0.0, seed=0)(quadratic(c), y)
    assert torch.allclose(out[0], c + (1 - h) ** k * (y - c), atol=1e-5)


def test_cd_mala_reports_diagnostics():
    cd = ContrastiveDivergence(k=2, kernel="mala", step_size=0.3, seed=0)
    cd(quadratic([0.0, 0.0]), torch.zeros(10, 2))
    assert 0.0 <= cd.diagnostics["acceptance_rate"] <= 1.0


# ------------------------------------------------------------------------------------------------------
# MCMC from noise


def test_mcmc_negatives_have_the_gaussian_moments():
    # exp(-beta * 0.5 (y - m)^2 / s^2) is N(m, s^2 / beta). Every chain starts afresh from the base
    # distribution, so the last draws of the n chains are independent: ESS = n, and the sample mean and
    # variance have standard errors sd / sqrt(n) and var * sqrt(2 / n). Tolerance: 4.5 standard errors.
    m, s, beta = 1.5, 0.8, 2.0
    F = quadratic([m], scale=s, event=(1,))
    gen = MCMCNegatives(n_neg=4, kernel="hmc", num_warmup=150, beta=beta, init_scale=2.0, seed=0)
    out = gen(F, torch.zeros(1000, 1)).flatten()
    n, var = out.numel(), s**2 / beta
    assert abs(out.mean().item() - m) < 4.5 * math.sqrt(var / n)
    assert abs(out.var().item() - var) < 4.5 * var * math.sqrt(2 / n)
    assert gen.last_samples.draws.shape == (4000, 1, 1)
    assert 0.5 < gen.diagnostics["acceptance_rate"] <= 1.0


def test_mcmc_negatives_follow_the_conditioning():
    x = torch.tensor([[-2.0, 0.0], [3.0, 1.0]]).repeat_interleave(500, 0)
    out = MCMCNegatives(kernel="mala", num_warmup=100, init_scale=3.0, seed=0)(Shifted(), torch.zeros(1000, 2), x)
    # N(x, I) per example: the mean of each half is x within 4.5 / sqrt(500)
    for half, center in ((out[0, :500], x[0]), (out[0, 500:], x[-1])):
        assert torch.allclose(half.mean(0), center, atol=4.5 / math.sqrt(500))


def test_mcmc_custom_base_distribution():
    init = lambda n, g: 5.0 + torch.rand(n, 2, generator=g)  # noqa: E731
    gen = MCMCNegatives(kernel="ula", num_warmup=0, init=init, step_size=1e-4, seed=0)
    out = gen(quadratic([0.0, 0.0]), torch.zeros(50, 2))
    assert bool((out > 4.9).all())  # one tiny ULA step from the base distribution
    with pytest.raises(ValueError, match="init"):
        MCMCNegatives(kernel="ula", num_warmup=0, init=lambda n, g: torch.zeros(n, 3), seed=0)(
            quadratic([0.0, 0.0]), torch.zeros(5, 2)
        )


# ------------------------------------------------------------------------------------------------------
# persistent chains


def test_persistent_ula_stationary_law_and_buffer():
    # ULA on a standard normal, y <- (1 - h) y + sqrt(2 h) xi, has the stationary law N(0, 1 / (1 - h/2)):
    # with h = 0.5 the variance is 4/3 (the discretisation bias is large enough to be seen). After 60 steps
    # the start is forgotten (0.5^60), so the n returned states are independent draws: ESS = n.
    F = quadratic([0.0], event=(1,))
    pcd = PersistentNegatives(buffer_size=3000, n_neg=1, steps=60, step_size=0.5, reinit_prob=0.0, seed=0)
    out = pcd(F, torch.zeros(3000, 1)).flatten()
    n, var = out.numel(), 1 / (1 - 0.25)
    assert abs(out.mean().item()) < 4.5 * math.sqrt(var / n)
    assert abs(out.var().item() - var) < 4.5 * var * math.sqrt(2 / n)
    assert pcd.buffer.shape == (3000, 1)
    # the returned states were written back (about 1 - 1/e of the entries were drawn; a position drawn
    # twice keeps one of its two states)
    assert torch.isin(pcd.buffer.flatten(), out).sum() > 0.55 * n


def test_persistent_reinit_draws_fresh_noise():
    pcd = PersistentNegatives(buffer_size=10, steps=0, reinit_prob=1.0, seed=0)
    out = pcd(quadratic([0.0, 0.0]), torch.zeros(4000, 2)).flatten()  # uniform on [-1, 1]: var 1/3
    n = out.numel()
    assert out.abs().max() <= 1.0
    assert abs(out.mean().item()) < 4.5 * math.sqrt(1 / 3 / n)
    assert abs(out.var().item() - 1 / 3) < 4.5 * math.sqrt(4 / 45 / n)  # Var(U^2) = 1/5 - 1/9 = 4/45


def test_persistent_state_dict_continues_exactly():
    F = quadratic([0.5, 0.5])
    y = torch.zeros(8, 2)
    a = PersistentNegatives(buffer_size=32, steps=3, step_size=0.1, reinit_prob=0.3, seed=5)
    a(F, y)
    state = a.state_dict()
    b = PersistentNegatives(buffer_size=32, steps=3, step_size=0.1, reinit_prob=0.3, seed=99)
    b.load_state_dict(state)  # before b's first call
    assert torch.equal(a(F, y), b(F, y))
    assert torch.equal(a.buffer, b.buffer)
    c = PersistentNegatives(buffer_size=32, steps=3, step_size=0.1, reinit_prob=0.3, seed=7)
    c(F, y)
    c.load_state_dict(a.state_dict())  # after c's first call
    assert torch.equal(a(F, y), c(F, y))
    with pytest.raises(ValueError, match="buffer_size"):
        PersistentNegatives(buffer_size=31).load_state_dict(state)


# ------------------------------------------------------------------------------------------------------
# noise / corruption


def test_corruption_has_the_requested_std():
    # n iid N(0, sigma^2) values: the sample sd has standard error about sigma / sqrt(2 n)
    sigma = 0.37
    y = torch.randn(500, 4)
    out = Corruption(sigma=sigma, n_neg=3, seed=0)(quadratic(torch.zeros(4), event=(4,)), y)
    noise = (out - y).flatten()
    n = noise.numel()
    assert abs(noise.std().item() - sigma) < 4.5 * sigma / math.sqrt(2 * n)
    assert abs(noise.mean().item()) < 4.5 * sigma / math.sqrt(n)


def test_corruption_with_a_user_function():
    def mask(y, g):
        keep = torch.rand(y.shape, generator=g) < 0.5
        return y * keep

    y = torch.ones(200, 3)
    out = Corruption(corrupt=mask, seed=0)(quadratic(torch.zeros(3), event=(3,)), y)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="corrupt"):
        Corruption(corrupt=lambda y, g: y[:1], seed=0)(quadratic(torch.zeros(3), event=(3,)), y)


# ------------------------------------------------------------------------------------------------------
# trained generator


def test_learned_generator_moves_to_low_energy():
    # F = ||y - c||^2; g(z) = W z + b minimises E_z F(g(z)) at b = c, W = 0
    torch.manual_seed(0)
    c = torch.tensor([2.0, -1.0])
    F = quadratic(c)
    gen = LearnedGenerator(torch.nn.Linear(2, 2), latent_shape=(2,), lr=0.05, seed=0)
    for _ in range(300):
        out = gen(F, torch.zeros(64, 2))
    assert torch.allclose(gen.net.bias.detach(), c, atol=0.05)
    assert torch.allclose(out[0].mean(0), c, atol=0.1)
    assert gen.diagnostics["generator_energy"] < 0.05


def test_learned_generator_leaves_the_energy_gradients_alone_and_restores():
    torch.manual_seed(0)
    center = torch.nn.Parameter(torch.zeros(2))
    F = as_energy(lambda y: ((y - center) ** 2).sum(-1), event_shape=(2,))
    gen = LearnedGenerator(torch.nn.Linear(2, 2), latent_shape=(2,), lr=0.05, seed=0)
    gen(F, torch.zeros(4, 2))
    assert center.grad is None
    state = gen.state_dict()
    torch.manual_seed(1)
    other = LearnedGenerator(torch.nn.Linear(2, 2), latent_shape=(2,), lr=0.05, seed=3)
    other.load_state_dict(state)
    assert torch.equal(gen(F, torch.zeros(4, 2)), other(F, torch.zeros(4, 2)))


# ------------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MCMCNegatives(beta=0.0), "beta"),
        (lambda: MCMCNegatives(beta=-1.0), "beta"),
        (lambda: ContrastiveDivergence(beta=0.0), "beta"),
        (lambda: PersistentNegatives(beta=-2.0), "beta"),
        (lambda: ContrastiveDivergence(k=-1), "k"),
        (lambda: ContrastiveDivergence(step_size=0.0), "step_size"),
        (lambda: PersistentNegatives(reinit_prob=1.5), "reinit_prob"),
        (lambda: MostOffending(radius=-0.1), "radius"),
        (lambda: Corruption(sigma=0.0), "sigma"),
        (lambda: Corruption(sigma=-1.0), "sigma"),
        (lambda: MCMCNegatives(kernel="nuts"), "kernel"),
        (lambda: MCMCNegatives(n_neg=0), "n_neg"),
        (lambda: Exhaustive(torch.eye(1)), "candidates"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_bad_seed_raises():
    with pytest.raises(TypeError, match="seed"):
        Corruption(seed="zero")


@pytest.mark.parametrize("name", list(N_NEG))
def test_wrong_event_shape_and_x_raise(name):
    gen = continuous_generators()[name]
    F = quadratic([0.0, 0.0])
    with pytest.raises(ValueError, match="y must have shape"):
        gen(F, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="x must have the batch shape"):
        gen(Shifted(), torch.zeros(4, 2), torch.zeros(5, 2))


def test_candidates_of_the_wrong_event_shape_raise():
    F = quadratic([0.0, 0.0])
    with pytest.raises(ValueError, match="candidates must have shape"):
        MostOffending(torch.zeros(4, 3))(F, torch.zeros(2, 2))


def test_persistent_hmc_negatives_report_acceptance():
    """Metropolis-adjusted persistent chains report their acceptance: near 1 for tiny steps on a Gaussian,
    and lower for a step size that is too large (the leapfrog error grows with the step)."""
    from pyro_ebm import as_energy
    from pyro_ebm.negatives import PersistentNegatives

    F = as_energy(lambda y: 0.5 * (y**2).sum(-1), event_shape=(2,))
    y = torch.zeros(64, 2)
    small = PersistentNegatives(256, steps=5, kernel="hmc", step_size=0.01, seed=0)
    small(F, y)
    big = PersistentNegatives(256, steps=5, kernel="hmc", step_size=1.9, n_leapfrog=20, seed=0)
    big(F, y)
    assert small.diagnostics["acceptance_rate"] > 0.99 and small.diagnostics["diverging"] == 0
    assert big.diagnostics["acceptance_rate"] < small.diagnostics["acceptance_rate"] - 0.05
    ula = PersistentNegatives(256, steps=5, kernel="ula", step_size=0.01, seed=0)
    ula(F, y)
    assert ula.diagnostics == {"diverging": 0}


# ------------------------------------------------------------------------------------------------------
# probes: a short multi-chain run of the generator's own sampler


def _az_ess_bulk(x):
    """ArviZ's bulk ESS of ``x`` ``[chains, draws]`` (an independent check of the probe's mixing)."""
    import arviz as az
    import numpy as np

    return float(az.ess(np.asarray(x, dtype=float), method="bulk"))


def probed_generators():
    """Every MCMC-based generator kind, each set up for a quick probe of a 2-D standard normal."""
    from pyro_ebm.negatives import PyroNUTSNegatives

    return {
        "mcmc-hmc": MCMCNegatives(kernel="hmc", num_warmup=40, seed=0),
        "mcmc-mala": MCMCNegatives(kernel="mala", num_warmup=40, seed=0),
        "tempering": MCMCNegatives(kernel="hmc", num_warmup=40, tempering=3, seed=0),
        "cd": ContrastiveDivergence(k=2, kernel="mala", step_size=0.5, seed=0),
        "pcd-hmc": PersistentNegatives(64, kernel="hmc", steps=2, step_size=0.5, n_leapfrog=3, seed=0),
        "pcd-ula": PersistentNegatives(64, kernel="ula", steps=4, step_size=0.1, seed=0),
        "nuts": PyroNUTSNegatives(num_warmup=15, seed=0, max_tree_depth=3),
    }


@pytest.mark.parametrize("name", list(probed_generators()))
def test_probe_before_the_first_call_samples_the_target_and_leaves_the_generator_alone(name):
    """A probe works before the generator's first call, its chains sample exp(-F) (the pooled mean of each
    coordinate of a standard normal is within 5 Monte Carlo standard errors of 0, the errors from ArviZ's
    bulk ESS of the probe), and it never touches the generator's own state: the negatives of the next call
    are those of a generator that was never probed."""
    F = quadratic([0.0, 0.0])
    data = torch.randn(200, 2, generator=torch.Generator().manual_seed(1))
    neg = probed_generators()[name]
    S = 30 if name == "nuts" else 60  # NUTS in Pyro costs a Python call per leapfrog step
    s = neg.probe(F, 6, S, seed=3, data=data)
    assert s.draws.shape == (6, S, 2) and s.stats["acceptance_rate"].shape == (6, S)
    assert bool(torch.isfinite(s.draws).all())
    for d in range(2):
        x = s.draws[..., d].double()
        ess = _az_ess_bulk(x.numpy())
        assert ess > 10
        assert abs(float(x.mean())) < 5 * float(x.std()) / math.sqrt(ess), (name, d, ess)
    again = neg.probe(F, 6, S, seed=3, data=data)  # the same seed gives the same probe
    assert torch.equal(s.draws, again.draws)
    y = data[:5]
    fresh = probed_generators()[name]
    assert torch.equal(neg(F, y), fresh(F, y))


def test_gibbs_probe_before_the_first_call_matches_the_closed_form():
    """kernel="gibbs" probes start from binary states (they used to start from uniform noise, which the
    Gibbs kernel rejects). F(y) = -h.y has independent units with P(y_i = 1) = sigmoid(h_i); one Gibbs
    sweep redraws every unit from that law, so the 16 x 100 draws are independent and the mean of each
    unit is within 4 binomial standard errors of sigmoid(h_i)."""
    h = torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.0, 2.0])
    F = as_energy(lambda y: -(y * h).sum(-1), event_shape=(6,))
    neg = PersistentNegatives(32, kernel="gibbs", steps=2, seed=0)
    s = neg.probe(F, 16, 100, seed=0)
    assert s.draws.shape == (16, 100, 6) and s.info["thin"] == 2
    assert bool(((s.draws == 0) | (s.draws == 1)).all())
    p = torch.sigmoid(h)
    se = (p * (1 - p) / (16 * 100)).sqrt()
    assert bool(((s.draws.mean((0, 1)) - p).abs() < 4 * se).all())
    assert neg.buffer is None  # the probe built no buffer: the first call makes it as usual
    neg(F, torch.zeros(4, 6))
    assert neg.buffer.shape == (32, 6)


def test_persistent_probe_starts_at_buffer_entries():
    """After a call the persistent probe starts its chains at replay-buffer states: with steps=0 the probe's
    draws are buffer entries, num_chains distinct ones."""
    F = quadratic([0.0, 0.0])
    neg = PersistentNegatives(40, kernel="ula", steps=1, step_size=0.1, seed=0)
    neg(F, torch.zeros(8, 2))
    s = neg.probe(F, 5, 4, seed=0, thin=1)
    starts = neg.buffer.clone()
    # each chain's first draw is one ULA step from a buffer entry: within a few noise scales of one
    dist = torch.cdist(s.draws[:, 0] - 0.0, starts).min(-1).values
    assert bool((dist < 5 * math.sqrt(2 * 0.1)).all())
    with pytest.raises(ValueError, match="fewer than num_chains=50"):
        neg.probe(F, 50, 4, seed=0)


def test_probe_arguments_are_checked():
    F = quadratic([0.0, 0.0])
    neg = MCMCNegatives(num_warmup=5, seed=0)
    with pytest.raises(ValueError, match="num_chains"):
        neg.probe(F, 1, 10)
    with pytest.raises(ValueError, match="num_draws"):
        neg.probe(F, 4, 3)
    with pytest.raises(ValueError, match="needs data"):
        ContrastiveDivergence(k=1).probe(F, 4, 10)
    with pytest.raises(ValueError, match="needs data"):
        neg.probe(lambda y: (y ** 2).sum(-1), 4, 10)
    with pytest.raises(TypeError, match="cannot probe a Corruption"):
        Corruption(0.1).probe(F, 4, 10)


# ------------------------------------------------------------------------------------------------------
# stock Pyro NUTS


def test_pyro_nuts_negatives_live_next_to_the_other_generators():
    import pyro_ebm.ml
    import pyro_ebm.negatives

    assert pyro_ebm.ml.PyroNUTSNegatives is pyro_ebm.negatives.PyroNUTSNegatives


def _nan_right_half(y):
    """0.5 |y|^2 where y_0 <= 0, NaN where y_0 > 0 (a region where the energy is undefined)."""
    e = 0.5 * (y ** 2).sum(-1)
    return torch.where(y[..., 0] > 0, torch.full_like(e, math.nan), e)


def test_pyro_nuts_negatives_refuse_to_start_where_the_energy_is_nan():
    """A NaN energy at a starting point used to die inside torch ("Expected p_in >= 0"); now a ValueError
    names the particle and the point."""
    from pyro_ebm.negatives import PyroNUTSNegatives

    F = as_energy(_nan_right_half, event_shape=(2,))
    start = torch.tensor([[-1.0, 0.0], [-1.0, 0.5], [0.7, 0.2], [-0.3, 0.0]])
    neg = PyroNUTSNegatives(num_warmup=5, num_samples=2, seed=0, init=lambda n, g: start[:n])
    with pytest.raises(ValueError, match=r"the energy is nan at 1 of the 4 starting points .* particle 2, "
                                         r"y = \[0\.7, 0\.2\]"):
        neg(F, torch.zeros(4, 2))


def test_pyro_nuts_negatives_count_a_nan_region_as_divergent():
    """Trajectories that run into the NaN region are rejected and counted as divergent: the chain never
    holds a point where the energy is NaN, and the divergences are in the diagnostics."""
    from pyro_ebm.negatives import PyroNUTSNegatives

    F = as_energy(_nan_right_half, event_shape=(2,))
    neg = PyroNUTSNegatives(num_warmup=20, num_samples=10, seed=0, max_tree_depth=4,
                            init=lambda n, g: -1.0 + 0.1 * torch.randn(n, 2, generator=g))
    y_hat = neg(F, torch.zeros(8, 2))
    assert bool((neg.last_samples.draws[..., 0] <= 0).all())
    assert bool(torch.isfinite(F(neg.last_samples.draws.reshape(-1, 2))).all())
    assert bool(torch.isfinite(y_hat).all())
    assert neg.diagnostics["diverging"] > 0
