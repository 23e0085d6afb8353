"""The ML defaults train at a sound acceptance: every sampler of ``make_negatives`` keeps its negatives'
acceptance near its target and its divergences rare while ``ml_fit`` trains (before the sampler-core
fix, ``sampler="hmc"`` trained the Bowl at acceptance 0.05 with a third of its transitions divergent)."""

import pytest
import torch

from pyro_ebm import as_energy
from pyro_ebm.datasets import two_moons
from pyro_ebm.ml import ml_fit


class Bowl(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.log_prec = torch.nn.Parameter(torch.zeros(()))

    def forward(self, y):
        return 0.5 * self.log_prec.exp() * (y ** 2).sum(-1)


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.SiLU(), torch.nn.Linear(32, 32),
                                       torch.nn.SiLU(), torch.nn.Linear(32, 1))

    def forward(self, y):
        return self.net(y).squeeze(-1) + 0.05 * (y ** 2).sum(-1)


def _train(sampler, problem, steps):
    if problem == "bowl":
        module = Bowl()
        data = torch.randn(1024, 2, generator=torch.Generator().manual_seed(0)) * 0.5
    else:
        module = MLP()
        data = two_moons(1024, seed=0)
    batch = 128
    run = ml_fit(as_energy(module, event_shape=(2,)), data, sampler=sampler, steps=steps, lr=0.02 if problem == "moons" else 0.05,
                 batch_size=batch, diagnose_every=None, progress=False, lr_schedule=None)
    h = run.history
    acc = torch.as_tensor(h["acceptance_rate"], dtype=torch.float64)
    div = torch.as_tensor(h["diverging"], dtype=torch.float64)
    return module, float(acc.mean()), float(div.sum()) / (steps * batch)


def test_hmc_negatives_train_the_bowl_on_target():
    module, acc, div_rate = _train("hmc", "bowl", steps=40)
    assert abs(acc - 0.8) < 0.1, acc
    assert div_rate < 0.01, div_rate
    assert 3.0 < float(module.log_prec.detach().exp()) < 5.0  # the data's precision is 4 (from 1 in 40 steps)


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["bowl", "moons"])
@pytest.mark.parametrize("sampler, target", [("persistent", None), ("hmc", 0.8), ("tempering", 0.8), ("nuts", 0.8)])
def test_every_ml_sampler_trains_on_target(sampler, target, problem):
    steps = 20 if sampler == "nuts" else 100
    _, acc, div_rate = _train(sampler, problem, steps)
    if target is None:  # fixed-step persistent HMC: no tuning, but it must accept most proposals
        assert acc > 0.6, acc
    else:
        assert abs(acc - target) < 0.1, acc
    assert div_rate < 0.01, div_rate
