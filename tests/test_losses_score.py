"""Score matching, sliced and denoising score matching: closed forms on Gaussian energies, unbiasedness,
and a denoising-score-matching energy that finds the modes of a 2-D mixture."""

import math

import pytest
import torch

from pyro_ebm import argmin_energy
from pyro_ebm.losses import denoising_score_matching, score_matching, sliced_score_matching


def _gaussian(d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    prec = a @ a.T + d * torch.eye(d, dtype=torch.float64)
    mu = torch.randn(d, generator=g, dtype=torch.float64)

    def energy(y):
        r = y - mu
        return 0.5 * ((r @ prec) * r).sum(-1)

    y = torch.randn(7, d, generator=g, dtype=torch.float64)
    return energy, prec, mu, y


def test_score_matching_closed_form_on_a_gaussian():
    energy, prec, mu, y = _gaussian()
    grad = (y - mu) @ prec
    expected = 0.5 * (grad**2).sum(-1) - torch.trace(prec)
    assert torch.allclose(score_matching(energy, y, reduction="none"), expected)
    assert torch.allclose(score_matching(energy, y), expected.mean())


def test_score_matching_objective_is_minimised_at_the_data_precision():
    # for data ~ N(0, s^2), the expected SM objective of E = p y^2 / 2 is p^2 s^2 / 2 - p, minimised at p = 1/s^2
    g = torch.Generator().manual_seed(0)
    y = 2.0 * torch.randn(20000, 1, generator=g, dtype=torch.float64)
    p = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.2)
    for _ in range(200):
        loss = score_matching(lambda v: 0.5 * p * (v**2).sum(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(float(p.detach()) - 1.0 / float((y**2).mean())) < 1e-3


def test_sliced_score_matching_is_unbiased_for_exact_score_matching():
    energy, prec, mu, y = _gaussian(d=4, seed=1)
    exact = score_matching(energy, y, reduction="none")
    for projection in ("gaussian", "rademacher"):
        draws = torch.stack([
            sliced_score_matching(energy, y, 1, projection=projection, seed=s, reduction="none") for s in range(300)
        ])
        mean, se = draws.mean(0), draws.std(0) / math.sqrt(draws.shape[0])
        z = (mean - exact) / se
        assert float(z.detach().abs().max()) < 4.0, (projection, z)
    # many projections in one call: the average, with a standard error shrinking like 1/sqrt(P)
    many = sliced_score_matching(energy, y, 2000, seed=0, reduction="none")
    assert torch.allclose(many, exact, rtol=0.1, atol=1.0)


def test_denoising_score_matching_closed_form():
    energy, prec, mu, y = _gaussian()
    sigma = 0.3
    g = torch.Generator().manual_seed(2)
    eps = torch.randn(y.shape, generator=g, dtype=torch.float64)
    got = denoising_score_matching(energy, y, sigma, noise=eps, reduction="none")
    expected = 0.5 * (((y + sigma * eps - mu) @ prec - eps / sigma) ** 2).sum(-1)
    assert torch.allclose(got, expected)
    # the expectation over the noise: 1/2 |P(y - mu)|^2 + 1/2 tr((sigma P - I / sigma)^2)
    draws = torch.stack([denoising_score_matching(energy, y, sigma, seed=s, reduction="none") for s in range(400)])
    m = sigma * prec - torch.eye(3, dtype=torch.float64) / sigma
    closed = 0.5 * (((y - mu) @ prec) ** 2).sum(-1) + 0.5 * torch.trace(m @ m)
    z = (draws.mean(0) - closed) / (draws.std(0) / math.sqrt(400))
    assert float(z.detach().abs().max()) < 4.0


@pytest.mark.slow
def test_denoising_score_matching_energy_recovers_the_modes_of_a_mixture():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    modes = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    data = modes[torch.randint(0, 3, (1500,), generator=g)] + 0.2 * torch.randn(1500, 2, generator=g)
    net = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.Softplus(), torch.nn.Linear(64, 64),
                              torch.nn.Softplus(), torch.nn.Linear(64, 1))

    def energy(y):
        return net(y).squeeze(-1)

    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step in range(600):
        idx = torch.randint(0, 1500, (256,), generator=g)
        loss = denoising_score_matching(energy, data[idx], 0.3, seed=step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    starts = torch.cartesian_prod(torch.linspace(-3, 3, 7), torch.linspace(-1.5, 3, 7)).unsqueeze(1)
    res = argmin_energy(energy, starts, event_shape=(2,), steps=400, lr=0.05)
    minima = res.distinct(tol=0.1)[0]
    found = minima.values.detach()
    # every mode has a minimum within 0.3 of it, and every minimum that attracted several starts is a mode
    d = torch.cdist(modes, found)
    assert float(d.min(1).values.max()) < 0.3
    big = found[minima.counts >= 3]
    assert float(torch.cdist(big, modes).min(1).values.max()) < 0.3
