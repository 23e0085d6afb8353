"""Tests of the training loop: bit-for-bit resume, learning on problems with a known answer, regularizers
against closed forms, callbacks, history, and the error messages."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from pyro_ebm import Energy, argmin_candidates, losses
from pyro_ebm.datasets import eight_gaussians
from pyro_ebm.negatives import (
    ContrastiveDivergence,
    Corruption,
    Exhaustive,
    LearnedGenerator,
    MCMCNegatives,
    MostOffending,
    PersistentNegatives,
)
from pyro_ebm.train import EnergyL2, GradientPenalty, History, fit, set_loss, spectral_norm


class MLPEnergy(Energy):
    def __init__(self, dim=2, hidden=16, dropout=0.0):
        super().__init__(event_shape=(dim,))
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim, hidden), torch.nn.SiLU(), torch.nn.Dropout(dropout), torch.nn.Linear(hidden, 1)
        )

    def forward(self, y, x=None):
        return self.net(y).squeeze(-1)


class GaussianMean(Energy):
    """F(y) = 0.5 ||y - mu||^2 with a learnable mean."""

    def __init__(self, dim=2):
        super().__init__(event_shape=(dim,))
        self.mu = torch.nn.Parameter(torch.zeros(dim))

    def forward(self, y, x=None):
        return 0.5 * ((y - self.mu) ** 2).sum(-1)


class LinearClassifier(Energy):
    """F(y, x) = -<y, W x + b> for one-hot y: the energy of class k is minus its logit."""

    def __init__(self, n_in=2, n_classes=3):
        super().__init__(event_shape=(n_classes,))
        self.lin = torch.nn.Linear(n_in, n_classes)

    def forward(self, y, x=None):
        return -(y * self.lin(x)).sum(-1)


# ------------------------------------------------------------------------------------------------------
# checkpoint / resume


def _resume_setup():
    torch.manual_seed(0)
    energy = spectral_norm(MLPEnergy(dropout=0.1))  # dropout: uses torch's global RNG inside the loop
    negatives = PersistentNegatives(buffer_size=64, steps=4, step_size=0.05, reinit_prob=0.2, seed=1)
    return energy, negatives


def _state(energy, negatives):
    return list(energy.state_dict().values()) + [negatives.buffer]


def test_resume_is_bit_for_bit(tmp_path):
    data = eight_gaussians(256, seed=0)
    kw = dict(loss=losses.ml_sampled, steps=8, batch_size=24, lr=1e-2, seed=3, progress=False,
              regularizers=[EnergyL2(0.1), GradientPenalty(0.01)])
    # uninterrupted run (data: 256 points, batch 24 -> an epoch boundary inside the run)
    e1, n1 = _resume_setup()
    h1 = fit(e1, data, negatives=n1, **kw)
    # half, checkpoint, fresh objects, resume
    path = tmp_path / "run.pt"
    e2, n2 = _resume_setup()
    fit(e2, data, negatives=n2, checkpoint=path, **{**kw, "steps": 4})
    torch.manual_seed(1234)  # whatever happens in between must not matter
    e3, n3 = _resume_setup()
    h3 = fit(e3, data, negatives=n3, resume=path, **kw)
    for a, b in zip(_state(e1, n1), _state(e3, n3)):
        assert torch.equal(a, b)
    assert h1.records == h3.records
    assert len(h3) == 8


def test_checkpoint_every_and_resume_with_a_generator_network(tmp_path):
    data = eight_gaussians(128, seed=1)

    def setup():
        torch.manual_seed(0)
        return MLPEnergy(), LearnedGenerator(torch.nn.Linear(3, 2), latent_shape=(3,), lr=1e-2, seed=2)

    kw = dict(loss=losses.log_loss, steps=6, batch_size=32, optimizer=None, lr=1e-2, progress=False)
    e1, n1 = setup()
    fit(e1, data, negatives=n1, **kw)
    path = tmp_path / "ckpt.pt"
    e2, n2 = setup()
    stop_at_4 = lambda step, history: step == 4  # noqa: E731
    h2 = fit(e2, data, negatives=n2, checkpoint=path, checkpoint_every=2, callbacks=[stop_at_4], **kw)
    assert len(h2) == 4
    e3, n3 = setup()
    fit(e3, data, negatives=n3, resume=path, **kw)
    for a, b in zip(e1.state_dict().values(), e3.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(n1.net.parameters(), n3.net.parameters()):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------------------
# it learns


def test_ml_with_mcmc_negatives_recovers_the_mean():
    # d/dmu [F(y) - F(y_hat)] = mean(y_hat) - mean(y): with exact negatives the fixed point of SGD is the
    # data mean. ULA on this Gaussian has the exact mean (only its variance is biased), and 60 steps of
    # step 0.1 from N(0, I) leave a start bias of 0.9^60 * |mu| < 0.01. Per coordinate the gradient noise
    # has variance ~ 1.05/256 (negatives) + 1/256 (minibatch), so SGD with lr 0.1 fluctuates around the
    # data mean with sd sqrt(lr * var / (2 - lr)) ~ 0.02; averaging the last 30 steps and a tolerance of
    # 0.1 leaves a wide margin.
    torch.manual_seed(0)
    target = torch.tensor([1.5, -1.0])
    data = target + torch.randn(2000, 2)
    energy = GaussianMean()
    negatives = MCMCNegatives(kernel="ula", num_warmup=60, step_size=0.1, seed=0)
    mus = []
    h = fit(energy, data, losses.ml_sampled, negatives, steps=150, batch_size=256,
            optimizer=torch.optim.SGD(energy.parameters(), lr=0.1), progress=False,
            callbacks=[lambda step, hist: mus.append(energy.mu.detach().clone())])
    mu = torch.stack(mus[-30:]).mean(0)
    assert torch.allclose(mu, data.mean(0), atol=0.1)
    assert len(h) == 150 and "acceptance_rate" in h.keys() and "step_size" in h.keys()


def test_nll_with_exhaustive_negatives_classifies():
    g = torch.Generator().manual_seed(0)
    angles = torch.tensor([0.0, 2.1, 4.2])
    centers = 2.0 * torch.stack([angles.cos(), angles.sin()], -1)
    labels = torch.randint(0, 3, (600,), generator=g)
    x = centers[labels] + 0.4 * torch.randn(600, 2, generator=g)
    y = torch.eye(3)[labels]
    energy = LinearClassifier()
    h = fit(energy, y, set_loss(losses.nll), Exhaustive(torch.eye(3)), x=x, steps=100, batch_size=64,
            lr=0.1, progress=False)
    with torch.no_grad():
        _, _, pred, _ = argmin_candidates(energy, torch.eye(3), x=x)
    accuracy = (pred == labels).float().mean().item()
    assert accuracy > 0.97
    assert h["loss"][-1] < h["loss"][0]
    assert h.last["gap"] > 0


@pytest.mark.parametrize(
    "loss, negatives",
    [
        (functools.partial(losses.hinge, margin=1.0), MostOffending(radius=0.5, restarts=2, steps=5, seed=0)),
        (losses.ml_sampled, ContrastiveDivergence(k=2, step_size=0.05, seed=0)),
        (losses.log_loss, Corruption(sigma=0.3, n_neg=3, seed=0)),
        (functools.partial(losses.square_exp, beta=1.0), MCMCNegatives(kernel="mala", num_warmup=5, seed=0)),
    ],
)
def test_every_generator_runs_in_the_loop(loss, negatives):
    torch.manual_seed(0)
    h = fit(MLPEnergy(), eight_gaussians(64, seed=0), loss, negatives, steps=3, batch_size=16, progress=False)
    assert len(h) == 3
    assert all(math.isfinite(v) for v in h["loss"])


# ------------------------------------------------------------------------------------------------------
# regularizers, spectral norm, history, callbacks


def test_regularizers_match_closed_forms():
    energy = GaussianMean()
    with torch.no_grad():
        energy.mu.copy_(torch.tensor([1.0, -2.0]))
    y = torch.randn(10, 2)
    pos, neg = energy(y), torch.randn(10, 3)
    # dF/dy = y - mu
    want_gp = ((y - energy.mu) ** 2).sum(-1).mean()
    assert torch.allclose(GradientPenalty(0.5)(energy, y, None, pos, neg), 0.5 * want_gp)
    assert torch.allclose(EnergyL2(0.2)(energy, y, None, pos, neg), 0.2 * ((pos**2).mean() + (neg**2).mean()))
    # the gradient penalty is differentiable in the parameters
    GradientPenalty(1.0)(energy, y, None, pos, neg).backward()
    assert energy.mu.grad is not None


def test_regularizers_are_recorded():
    torch.manual_seed(0)
    h = fit(MLPEnergy(), eight_gaussians(64), losses.log_loss, Corruption(0.3, seed=0), steps=2, batch_size=16,
            regularizers=[EnergyL2(0.1), GradientPenalty(0.1)], progress=False)
    assert {"l2_energy", "gradient_penalty", "loss", "energy_pos", "energy_neg", "gap"} <= set(h.keys())
    r = h.last
    assert r["gap"] == pytest.approx(r["energy_neg"] - r["energy_pos"])


def test_spectral_norm_bounds_the_weights():
    torch.manual_seed(0)
    energy = spectral_norm(MLPEnergy(hidden=32))
    for _ in range(20):  # power iterations run in training-mode forward passes
        energy(torch.randn(4, 2))
    w = energy.net[0].weight
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_callbacks_see_every_step_and_can_stop():
    seen = []

    def cb(step, history):
        seen.append((step, len(history)))
        return step == 3

    torch.manual_seed(0)
    h = fit(MLPEnergy(), eight_gaussians(64), losses.log_loss, Corruption(0.3, seed=0), steps=10, batch_size=16,
            callbacks=[cb], progress=False)
    assert seen == [(1, 1), (2, 2), (3, 3)]
    assert len(h) == 3 and h["step"] == [1, 2, 3]


def test_history_basics():
    h = History()
    h.append({"step": 1, "loss": 1.0})
    h.append({"step": 2, "loss": 0.5, "acceptance_rate": 0.8})
    assert math.isnan(h["acceptance_rate"][0]) and h["acceptance_rate"][1] == 0.8
    with pytest.raises(KeyError, match="nope"):
        h["nope"]
    h2 = History()
    h2.load_state_dict(h.state_dict())
    assert h2.records == h.records


def test_same_seed_same_run():
    def run():
        torch.manual_seed(0)
        e = MLPEnergy()
        fit(e, eight_gaussians(64), losses.log_loss, Corruption(0.3, seed=0), steps=4, batch_size=16, seed=5,
            progress=False)
        return e

    for a, b in zip(run().parameters(), run().parameters()):
        assert torch.equal(a, b)


def test_progress_bar_runs():
    torch.manual_seed(0)
    h = fit(MLPEnergy(), eight_gaussians(32), losses.log_loss, Corruption(0.3, seed=0), steps=2, batch_size=16,
            progress=True)
    assert len(h) == 2


# ------------------------------------------------------------------------------------------------------
# bad input


def _fit(**overrides):
    torch.manual_seed(0)
    kw = dict(energy=MLPEnergy(), data=eight_gaussians(32), loss=losses.log_loss,
              negatives=Corruption(0.3, seed=0), steps=1, batch_size=8, progress=False)
    kw.update(overrides)
    return fit(**kw)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(data=torch.zeros(32, 3)), "data must have shape"),
        (dict(data=torch.zeros(2)), "data must have shape"),
        (dict(x=torch.zeros(31, 2)), "x must be a tensor"),
        (dict(batch_size=64), "batch_size"),
        (dict(steps=-1), "steps"),
        (dict(loss=functools.partial(losses.hinge, margin=-1.0)), "margin"),
        (dict(loss=lambda pos, neg: losses.hinge(pos, neg[:3])), "neg must have the shape of pos"),
        (dict(negatives=lambda energy, y, x: y), r"negatives must return y_hat of shape \[n_neg"),
        (dict(loss=functools.partial(losses.log_loss, reduction="none")), "scalar"),
        (dict(regularizers=[3]), "regularizers"),
        (dict(callbacks=["x"]), "callbacks"),
        (dict(energy=lambda y: y.sum(-1)), "energy must be an Energy"),
        (dict(data=torch.zeros(32, 2, dtype=torch.long)), "data must be a floating-point"),
    ],
)
def test_bad_input_raises(overrides, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _fit(**overrides)


def test_set_loss_rejects_bad_beta():
    with pytest.raises(ValueError, match="beta"):
        set_loss(losses.nll, beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        set_loss(losses.nll, beta=-1.0)


def test_resume_from_a_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="resume"):
        _fit(resume=tmp_path / "missing.pt")


def test_fit_without_negatives_for_non_contrastive_losses():
    """negatives=None: the loss sees only the data's energies (regularized / architectural methods)."""
    from pyro_ebm import Energy, losses
    from pyro_ebm.train import EnergyL2, fit

    class Bowl(Energy):
        def __init__(self):
            super().__init__(event_shape=(2,))
            self.center = torch.nn.Parameter(torch.zeros(2))

        def forward(self, y, x=None):
            return ((y - self.center) ** 2).sum(-1)

    data = torch.randn(200, 2, generator=torch.Generator().manual_seed(0)) * 0.1 + torch.tensor([1.0, -2.0])
    F = Bowl()
    h = fit(F, data, losses.energy_loss, None, steps=300, batch_size=50, lr=0.05, progress=False,
            regularizers=[EnergyL2(0.1)])
    # pushing down on the data alone moves the bowl's centre onto the data mean (closed form: the mean)
    assert torch.allclose(F.center.detach(), data.mean(0), atol=0.05)
    assert "gap" not in h.last and "energy_neg" not in h.last and "l2_energy" in h.last
