"""The training recipe of ml_fit: jumps between modes, the adapted step size, the learning-rate schedule,
the exact log densities of the embedded data, and the verdict at the end of ml_fit."""

import math

import pytest
import torch

from pyro_ebm import as_energy, losses
from pyro_ebm.datasets import TOY_2D, eight_gaussians, eight_gaussians_log_prob
from pyro_ebm.mcmc import DataProposal, PersistentChains, independence_jump
from pyro_ebm.ml import FitWarning, ML_DEFAULTS, make_negatives, ml_fit
from pyro_ebm.negatives import PersistentNegatives
from pyro_ebm.train import fit


def _grid(L, n, dtype=torch.float64):
    g = torch.linspace(-L, L, n + 1, dtype=dtype)
    m = (g[1:] + g[:-1]) / 2
    return torch.stack(torch.meshgrid(m, m, indexing="xy"), -1).reshape(-1, 2), (2 * L / n) ** 2


# ----------------------------------------------------------------------------------------------------
# exact log densities of the embedded 2-D data


@pytest.mark.parametrize("name", sorted(TOY_2D))
def test_toy_log_densities_integrate_to_one_and_match_their_samples(name):
    sampler, log_prob = TOY_2D[name]
    n = 300 if name == "two_moons" else 800
    grid, area = _grid(4.5, n)
    lg = log_prob(grid)  # once: the two moons' density is a quadrature of its own (90,000 points here)
    mass = float(lg.exp().sum() * area)
    # midpoint rule: the checkerboard's edges fall inside cells, so a cell straddling one counts wholly
    assert mass == pytest.approx(1.0, abs=0.01 if name == "checkerboard" else 2e-3)
    # the samples have the density's entropy: mean -log p over draws vs the grid's entropy
    y = sampler(20000, seed=3).double()
    lp = log_prob(y)
    assert bool(torch.isfinite(lp).all())
    p = lg.exp() * area
    entropy = float(-(p * torch.where(p > 0, lg, torch.zeros_like(p))).sum())
    se = float(lp.std()) / math.sqrt(y.shape[0])
    assert float(-lp.mean()) == pytest.approx(entropy, abs=5 * se + 0.01)


def test_two_moons_density_agrees_with_finer_quadrature():
    from pyro_ebm.datasets import two_moons_log_prob

    y = TOY_2D["two_moons"][0](50, seed=0).double()
    assert torch.allclose(two_moons_log_prob(y), two_moons_log_prob(y, num_points=32768), atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# the independence jump


def _bimodal():
    # 1-D: 0.8 N(-2, 0.3^2) + 0.2 N(2, 0.3^2), as a 2-D energy with a standard normal second coordinate
    def log_p(y):
        a = torch.distributions.Normal(-2.0, 0.3).log_prob(y[..., 0]) + math.log(0.8)
        b = torch.distributions.Normal(2.0, 0.3).log_prob(y[..., 0]) + math.log(0.2)
        return torch.logaddexp(a, b) - 0.5 * y[..., 1] ** 2
    return log_p


def test_jumps_give_the_right_mode_weights_where_local_chains_cannot():
    log_p = _bimodal()
    F = as_energy(lambda y: -log_p(y), event_shape=(2,))
    g = torch.Generator().manual_seed(0)
    data = torch.stack([torch.where(torch.rand(2000, generator=g) < 0.5, -2.0, 2.0)
                        + 0.3 * torch.randn(2000, generator=g), torch.randn(2000, generator=g)], -1)
    # the proposal is built from data with the wrong weights (1:1): the MH correction must fix them
    q = DataProposal(data, seed=0)
    n = 4000
    init = torch.stack([torch.full((n,), 2.0), torch.zeros(n)], -1)  # every chain in the light mode
    y, Fy = init.double(), F(init.double())
    q.to(torch.float64)
    for _ in range(30):
        y, Fy, _ = independence_jump(F, y, Fy, q, 1.0, g)
    w = float((y[:, 0] < 0).double().mean())
    # 30 jumps at acceptance ~0.5 forget the start; binomial standard error of the weight with n chains
    assert w == pytest.approx(0.8, abs=4 * math.sqrt(0.16 / n))


def test_jump_with_an_exact_proposal_always_accepts_and_a_nan_proposal_never():
    g = torch.Generator().manual_seed(1)
    normal = torch.distributions.Normal(torch.zeros(2), torch.ones(2))

    class Exact:
        def sample(self, n, generator):
            return torch.randn(n, 2, generator=generator)

        def log_prob(self, y):
            return normal.log_prob(y).sum(-1)

    F = lambda y: 0.5 * (y ** 2).sum(-1)  # noqa: E731
    y = torch.randn(100, 2, generator=g)
    _, _, acc = independence_jump(F, y, F(y), Exact(), 1.0, g)
    assert bool(acc.all())
    _, F_new, acc = independence_jump(lambda v: torch.full(v.shape[:1], math.nan), y, F(y), Exact(), 1.0, g)
    assert not bool(acc.any()) and torch.equal(F_new, F(y))


def test_data_proposal_density_is_normalised_and_matches_its_samples():
    data = eight_gaussians(3000, seed=0).double()
    q = DataProposal(data, seed=0)
    grid, area = _grid(6.0, 400)
    pg = q.log_prob(grid).exp() * area  # once: a KDE of 1000 points on 160,000 grid points
    assert float(pg.sum()) == pytest.approx(1.0, abs=2e-3)
    # E_q[1{y0 > 1}] by sampling vs by the grid
    s = q.sample(40000, torch.Generator().manual_seed(2))
    by_samples = float((s[:, 0] > 1).double().mean())
    by_grid = float((pg * (grid[:, 0] > 1)).sum())
    assert by_samples == pytest.approx(by_grid, abs=4 * math.sqrt(0.25 / 40000) + 2e-3)


def test_data_proposal_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="data must be finite"):
        DataProposal(torch.tensor([[0.0, 1.0], [math.nan, 0.0], [1.0, 1.0]]))
    with pytest.raises(TypeError, match="data"):
        DataProposal([[0.0, 1.0]])
    with pytest.raises(ValueError, match="uniform_weight"):
        DataProposal(torch.randn(10, 2), uniform_weight=1.0)
    with pytest.raises(ValueError, match="box_scale"):
        DataProposal(torch.randn(10, 2), box_scale=0.5)
    with pytest.raises(TypeError, match="jump"):
        PersistentChains(lambda y: (y ** 2).sum(-1), 10, event_shape=(2,), kernel="hmc", jump=object())
    with pytest.raises(ValueError, match="target_accept"):
        PersistentChains(lambda y: (y ** 2).sum(-1), 10, event_shape=(2,), kernel="ula", target_accept=0.7)
    with pytest.raises(ValueError, match="target_accept"):
        PersistentNegatives(10, kernel="hmc", target_accept=1.5)


# ----------------------------------------------------------------------------------------------------
# the adapted step size


def test_step_size_follows_the_energy_to_the_target_acceptance():
    F = as_energy(lambda y: 0.5 * (y ** 2).sum(-1) / 0.05 ** 2, event_shape=(2,))  # sd 0.05: tiny steps
    neg = PersistentNegatives(256, kernel="hmc", steps=2, step_size=1.0, target_accept=0.7, seed=0)
    acc = []
    for _ in range(300):
        neg(F, torch.zeros(128, 2))
        acc.append(neg.diagnostics["acceptance_rate"])
    assert sum(acc[-100:]) / 100 == pytest.approx(0.7, abs=0.05)
    assert 0.01 < neg.step_size < 0.2  # the scale is 0.05: steps of the order of it
    # the adapted step size travels in the state dict and is restored
    state = neg.state_dict()
    other = PersistentNegatives(256, kernel="hmc", steps=2, step_size=1.0, target_accept=0.7, seed=0)
    other.load_state_dict(state)
    assert other.step_size == neg.step_size


# ----------------------------------------------------------------------------------------------------
# the learning-rate schedule of fit


def test_cosine_schedule_is_recorded_and_resumes_bit_for_bit(tmp_path):
    data = torch.randn(256, 2, generator=torch.Generator().manual_seed(0)) + 1.0

    def bowl():
        torch.manual_seed(0)
        return as_energy(_Gauss(), event_shape=(2,))

    def neg():
        return PersistentNegatives(64, kernel="hmc", steps=1, step_size=0.1, seed=0)

    E = bowl()
    h = fit(E, data, losses.ml_sampled, neg(), steps=20, batch_size=32, lr=0.1, lr_schedule="cosine",
            progress=False)
    lrs = h["lr"]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 19 / 20)))
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    E2, ck = bowl(), tmp_path / "ck.pt"
    fit(E2, data, losses.ml_sampled, neg(), steps=10, batch_size=32, lr=0.1, lr_schedule="cosine",
        progress=False, checkpoint=ck)
    # a resumed run is told the whole run's length, and its schedule continues where it was
    E3 = bowl()
    h3 = fit(E3, data, losses.ml_sampled, neg(), steps=20, batch_size=32, lr=0.1, lr_schedule="cosine",
             progress=False, resume=ck)
    assert h3["lr"][10:] == pytest.approx(lrs[10:])
    with pytest.raises(ValueError, match="lr_schedule"):
        fit(bowl(), data, losses.ml_sampled, neg(), steps=2, lr_schedule="linear", progress=False)


# ----------------------------------------------------------------------------------------------------
# ml_fit: defaults, data checks, the verdict


def test_ml_fit_defaults_are_the_documented_recipe():
    neg = make_negatives("persistent", data=torch.randn(100, 2), seed=0)
    assert (neg.buffer_size, neg.steps, neg.n_leapfrog, neg.reinit_prob, neg.target_accept) == (1024, 2, 5, 0.0, 0.7)
    assert isinstance(neg.jump, DataProposal)
    assert ML_DEFAULTS == dict(steps=6000, batch_size=512, lr=1e-2, lr_schedule="cosine")
    assert make_negatives("persistent", seed=0).jump is None  # no data, no jumps
    with pytest.raises(ValueError, match="data is for the jumps"):
        make_negatives("hmc", data=torch.randn(10, 2))


def test_ml_fit_checks_its_data():
    E = as_energy(lambda y: (y ** 2).sum(-1), event_shape=(2,))
    bad = torch.randn(50, 2)
    bad[7, 1] = math.nan
    with pytest.raises(ValueError, match="data must be finite.*row 7"):
        ml_fit(E, bad, steps=1, progress=False)
    with pytest.raises(TypeError, match="data must be a floating-point tensor"):
        ml_fit(E, torch.ones(5, 2, dtype=torch.long), steps=1, progress=False)
    with pytest.raises(ValueError, match="give heldout"):
        ml_fit(E, torch.randn(50, 2), steps=1, progress=False, reference=eight_gaussians_log_prob)
    # the held-out data are checked before training, not after it
    with pytest.raises(ValueError, match="heldout must be a floating-point tensor"):
        ml_fit(E, torch.randn(50, 2), steps=10**9, progress=False, heldout=torch.randn(50, 3))
    with pytest.raises(ValueError, match="heldout must be finite"):
        ml_fit(E, torch.randn(50, 2), steps=10**9, progress=False, heldout=torch.full((50, 2), math.nan))
    with pytest.raises(TypeError, match="reference"):
        ml_fit(E, torch.randn(50, 2), steps=10**9, progress=False, heldout=torch.randn(50, 2), reference=3)


class _Gauss(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mu = torch.nn.Parameter(torch.zeros(2))
        self.log_prec = torch.nn.Parameter(torch.zeros(()))

    def forward(self, y):
        return 0.5 * self.log_prec.exp() * ((y - self.mu) ** 2).sum(-1)


def test_ml_fit_verdict_passes_a_good_fit_and_flags_a_short_one():
    g = torch.Generator().manual_seed(0)
    data, heldout = torch.randn(2048, 2, generator=g) * 0.5 + 1.0, torch.randn(1000, 2, generator=g) * 0.5 + 1.0
    truth = torch.distributions.Independent(torch.distributions.Normal(torch.ones(2), 0.5 * torch.ones(2)), 1)
    good = as_energy(_Gauss(), event_shape=(2,))
    run = ml_fit(good, data, steps=400, heldout=heldout, reference=truth, progress=False, diagnose_every=None)
    assert run.check is not None and run.check.ok, run.check.problems
    assert abs(run.check.nll_gap) < 0.02
    short = as_energy(_Gauss(), event_shape=(2,))
    with pytest.warns(FitWarning, match="does not fit the held-out data"):
        run = ml_fit(short, data, steps=5, heldout=heldout, reference=truth, progress=False, diagnose_every=None)
    assert not run.check.ok and run.check.nll_gap > 0.05
