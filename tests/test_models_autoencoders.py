"""Auto-encoder energies and penalties, the coupling flow, the latent-variable generative EBM."""

import math

import pytest
import torch

from pyro_ebm import free_energy_min
from pyro_ebm.models import (CouplingFlow, DenoisingAutoEncoder, LatentGenerativeEBM, contracting_penalty,
                             low_energy_volume, saturating_penalty)
from pyro_ebm.partition import log_partition


def test_contracting_penalty_closed_forms():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    y = torch.randn(5, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(contracting_penalty(lambda v: v @ a, y), (a**2).sum().expand(5))
    # sigmoid layer: sum_j (h_j (1 - h_j))^2 ||A_{:j}||^2
    h = torch.sigmoid(y @ a + b)
    expected = ((h * (1 - h)) ** 2 * (a**2).sum(0)).sum(-1)
    assert torch.allclose(contracting_penalty(lambda v: torch.sigmoid(v @ a + b), y), expected)


def test_contracting_penalty_is_differentiable_in_the_parameters():
    a = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    contracting_penalty(lambda v: v @ a, torch.zeros(1, 2)).sum().backward()
    assert torch.allclose(a.grad, 2 * a.detach())


def test_saturating_penalty():
    a = torch.tensor([[-2.0, -0.5, 0.5, 3.0]])
    assert torch.equal(saturating_penalty(a, "relu"), torch.tensor([3.5]))
    assert torch.equal(saturating_penalty(a, "shrink", 1.0), torch.tensor([3.0]))
    assert torch.equal(saturating_penalty(a, "hardtanh", 1.0), torch.tensor([1.0]))


def test_denoising_loss_expectation_for_a_linear_denoiser():
    # E ||y - W (y + sigma eps)||^2 = ||(I - W) y||^2 + sigma^2 ||W||_F^2
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(3, 3, bias=False).double()
    dae = DenoisingAutoEncoder(lin, 3)
    y = torch.randn(4, 3, generator=g, dtype=torch.float64)
    w = lin.weight.detach()
    sigma = 0.5
    closed = (((y - y @ w.T) ** 2).sum(-1)).mean() + sigma**2 * (w**2).sum()
    with torch.no_grad():
        draws = torch.stack([dae.loss(y, sigma, seed=s) for s in range(2000)])
    z = (draws.mean() - closed) / (draws.std() / math.sqrt(2000))
    assert abs(float(z)) < 4
    assert torch.allclose(dae(y), ((y - y @ w.T) ** 2).sum(-1))


@pytest.mark.slow
def test_denoising_auto_encoder_energy_is_low_on_the_circle():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    t = 2 * math.pi * torch.rand(1000, generator=g)
    data = torch.stack([torch.cos(t), torch.sin(t)], -1)
    net = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.Tanh(), torch.nn.Linear(64, 2))
    dae = DenoisingAutoEncoder(net, 2)
    opt = torch.optim.Adam(dae.parameters(), lr=1e-2)
    for step in range(400):
        idx = torch.randint(0, 1000, (128,), generator=g)
        loss = dae.loss(data[idx], 0.3, seed=step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        on = dae(data).mean()
        off = dae(torch.tensor([[0.5, 0.0], [2.0, 0.0], [0.0, -2.0]]))
    assert bool((off > 5 * on).all())
    # the centre is a fixed point of the denoiser by symmetry: ||y - g(y)||^2 is ~0 there too (a known
    # weakness of the reconstruction energy, documented)
    assert float(dae(torch.zeros(1, 2)).detach()) < float(off.min())
    assert low_energy_volume(lambda y: dae(y).detach(), data, -2.0, 2.0, num_points=4000) < 0.2


def test_coupling_flow_has_unit_partition_function():
    torch.manual_seed(0)
    flow = CouplingFlow(2, n_layers=4, hidden=16).double()
    for p in flow.parameters():  # away from the identity initialisation
        p.data.normal_(0, 0.3)
    lz = log_partition(flow, method="quadrature", low=[-12.0, -12.0], high=[12.0, 12.0], event_shape=(2,),
                       num_points=256)
    assert abs(float(lz.value)) < max(1e-3, 4 * float(lz.stderr))


def test_latent_generative_ebm_grid_refinement_and_beta():
    dec = lambda h, z: h * torch.cat([torch.cos(z), torch.sin(z)], -1)  # noqa: E731
    n = 64
    grid = torch.linspace(0, 2 * math.pi, n + 1, dtype=torch.float64)[:-1].unsqueeze(-1)
    m = LatentGenerativeEBM(dec, event_shape=(2,), latent_shape=(1,), z_values=grid, z_measure=2 * math.pi / n,
                            regularizer=lambda z: 0.0 * z.squeeze(-1), refine_steps=300)
    y = torch.tensor([[0.3, 2.5], [-1.0, -1.0]], dtype=torch.float64)
    x = torch.tensor([[2.0], [1.0]], dtype=torch.float64)
    # a circle of radius x: F_inf = (|y| - x)^2
    f_inf = m.free_energy(y, x, beta=float("inf")).detach()
    assert torch.allclose(f_inf, (y.norm(dim=-1) - x.squeeze(-1)) ** 2, atol=1e-6)
    z = m.infer(y, x)
    assert torch.allclose(m.generate(z, x) / x, y / y.norm(dim=-1, keepdim=True), atol=1e-3)
    # finite beta: the grid sum approximates the integral over the angle (quadrature on a fine grid)
    fine = torch.linspace(0, 2 * math.pi, 20001, dtype=torch.float64)[:-1]
    e = ((dec(x.unsqueeze(-2), fine.view(-1, 1)) - y.unsqueeze(-2)) ** 2).sum(-1)
    for beta in (0.5, 2.0):
        quad = -(torch.logsumexp(-beta * e, -1) + math.log(fine[1] - fine[0])) / beta
        assert torch.allclose(m.free_energy(y, x, beta=beta), quad, atol=1e-6)
    # without a grid, zero temperature goes through free_energy_min from the restarts
    m2 = LatentGenerativeEBM(dec, event_shape=(2,), latent_shape=(1,),
                             z_init=torch.linspace(0, 6, 7, dtype=torch.float64).unsqueeze(-1))
    assert torch.allclose(m2.free_energy(y, x, beta=float("inf")).detach(), f_inf, atol=1e-6)
    with pytest.raises(ValueError, match="z_values"):
        m2.free_energy(y, x, beta=1.0)
    f_direct, _ = free_energy_min(m, y, torch.zeros(1, 1, dtype=torch.float64), x, steps=2000, lr=0.05)
    assert bool((f_inf <= f_direct.detach() + 1e-6).all())


def _linear_vae(perturb=0.0):
    from pyro_ebm.models import VAEEnergy

    g = torch.Generator().manual_seed(0)
    d, k, s = 3, 1, 0.5
    w = torch.randn(k, d, generator=g, dtype=torch.float64)
    b = torch.randn(d, generator=g, dtype=torch.float64)
    dec = torch.nn.Linear(k, d).double()
    dec.weight.data, dec.bias.data = w.T.clone(), b.clone()
    cov_post = torch.linalg.inv(torch.eye(k, dtype=torch.float64) + w @ w.T / s**2)  # exact posterior (k = 1)
    gain = cov_post @ w / s**2
    enc = torch.nn.Linear(d, 2 * k).double()
    enc.weight.data = torch.cat([gain + perturb, torch.zeros(k, d, dtype=torch.float64)], 0)
    enc.bias.data = torch.cat([-gain @ b, torch.log(torch.diagonal(cov_post))])
    y = torch.randn(4, d, generator=g, dtype=torch.float64)
    exact = -torch.distributions.MultivariateNormal(b, w.T @ w + s**2 * torch.eye(d, dtype=torch.float64)).log_prob(y)
    return VAEEnergy(dec, enc, dim=d, latent_dim=k, sigma=s), y, exact


def test_vae_energy_free_energy_is_minus_log_likelihood():
    vae, y, exact = _linear_vae()
    # exact posterior: log p(y, z) - log q(z) is constant, so importance sampling is exact with any sample
    assert torch.allclose(vae.free_energy(y, beta=1.0, num_samples=10, seed=0).detach(), exact, atol=1e-10)
    # and the VAE loss (reconstruction + KL) is tight: its Monte Carlo estimate has mean -log p(y)
    draws = torch.stack([vae.variational_free_energy(y, num_samples=50, seed=s).detach() for s in range(200)])
    z = (draws.mean(0) - exact) / (draws.std(0) / math.sqrt(200))
    assert float(z.abs().max()) < 4
    # zero temperature: min_z -log p(y, z), at the posterior mean (Gaussian: the mode)
    z_map = vae.infer(y).detach()
    assert torch.allclose(vae.free_energy(y, beta=float("inf")).detach(), vae(y, z_map).detach(), atol=1e-8)
    # a wrong encoder: the variational free energy is an upper bound (by the KL to the posterior)
    bad, y, exact = _linear_vae(perturb=1.0)
    draws = torch.stack([bad.variational_free_energy(y, num_samples=50, seed=s).detach() for s in range(200)])
    z = (draws.mean(0) - exact) / (draws.std(0) / math.sqrt(200))
    assert float(z.min()) > -4 and float((draws.mean(0) - exact).mean()) > 0.1
