"""A2 models: vector quantization and the sparse auto-encoder (predictive sparse decomposition), checked against
K-means, brute-force enumeration, scikit-learn (KMeans, Lasso), optimality conditions and quadrature."""

import math

import numpy as np
import pytest
import torch

from pyro_ebm.models import KMeans, SparseAutoEncoder, SparseCoding, VectorQuantizer

INF = float("inf")


@pytest.fixture
def blobs():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]], dtype=torch.float64)
    return centers[torch.arange(120) % 4] + torch.randn(120, 2, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------------------------------ vector quantization


def test_identity_vq_is_kmeans(blobs):
    g = torch.Generator().manual_seed(1)
    c = torch.randn(4, 2, generator=g, dtype=torch.float64) * 3
    vq, km = VectorQuantizer(c), KMeans(4).set_centers(c)
    y = blobs[:30]
    for beta in (0.05, 0.5, 1.0, 10.0, 1e4, INF):
        assert torch.allclose(vq.free_energy(y, beta=beta), km.free_energy(y, beta=beta), rtol=1e-12, atol=1e-12)
    assert torch.equal(vq.infer(y), km.infer(y))
    assert torch.equal(vq.encode(y), km.infer(y))


def test_vq_free_energy_is_brute_force_enumeration():
    torch.manual_seed(0)
    dec = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    enc = torch.nn.Linear(3, 2).double()
    g = torch.Generator().manual_seed(2)
    codebook = torch.randn(5, 2, generator=g, dtype=torch.float64)
    vq = VectorQuantizer(codebook, encoder=enc, decoder=dec, dim=3)
    y = torch.randn(7, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        e = torch.stack([((y - dec(codebook[k])) ** 2).sum(-1) for k in range(5)], -1)  # [7, 5], one code at a time
        for beta in (0.3, 2.0):
            assert torch.allclose(vq.free_energy(y, beta=beta), -torch.logsumexp(-beta * e, -1) / beta, atol=1e-12)
        assert torch.allclose(vq.free_energy(y, beta=INF), e.min(-1).values, atol=1e-12)
        assert torch.equal(vq.infer(y).argmax(-1), e.argmin(-1))
        # the encoder's code is an upper bound of the zero-temperature free energy
        assert bool((vq(y, vq.encode(y)) >= vq.free_energy(y, beta=INF) - 1e-12).all())
    f = vq.free_energy(y, beta=1.0).sum()
    f.backward()
    assert vq.codebook.grad is not None and float(vq.codebook.grad.abs().sum()) > 0


def test_kmeans_steps_are_sklearn_lloyd(blobs):
    from sklearn.cluster import KMeans as SkKMeans

    init = blobs[[0, 1, 2, 5]].clone()
    vq = VectorQuantizer(init)
    errors = []
    for _ in range(100):
        before = vq.codebook.detach().clone()
        errors.append(vq.kmeans_step(blobs))
        if torch.equal(before, vq.codebook.detach()):
            break
    sk = SkKMeans(4, init=init.numpy(), n_init=1, algorithm="lloyd", max_iter=100, tol=0.0).fit(blobs.numpy())
    assert np.allclose(vq.codebook.detach().numpy(), sk.cluster_centers_, atol=1e-10)
    assert math.isclose(float(vq.free_energy(blobs, beta=INF).detach().sum()), sk.inertia_, rel_tol=1e-10)
    assert all(b <= a + 1e-9 for a, b in zip(errors, errors[1:]))


def test_vq_vae_loss_value_and_gradients(blobs):
    c = torch.tensor([[0.5, 0.5], [3.0, 0.5], [0.5, 3.0], [3.0, 3.0]], dtype=torch.float64)
    vq = VectorQuantizer(c)
    y = blobs[:40]
    gamma = 0.25
    loss = vq.loss(y, commitment=gamma)
    # identity encoder/decoder: every term is the quantisation error
    assert torch.allclose(loss, (2 + gamma) * vq.free_energy(y, beta=INF).mean(), rtol=1e-12)
    loss.backward()
    q = vq.infer(y).detach()
    expected = 2 * (q.T @ (q @ c) - q.T @ y) / y.shape[0]  # codebook term only: d/dq ||sg[h] - q||^2
    assert torch.allclose(vq.codebook.grad, expected, atol=1e-12)


def test_vq_vae_training_reaches_the_kmeans_energy(blobs):
    from sklearn.cluster import KMeans as SkKMeans

    torch.manual_seed(0)
    lift = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]], dtype=torch.float64)
    Y = blobs @ lift  # 3-D data on a plane
    enc, dec = torch.nn.Linear(3, 2).double(), torch.nn.Linear(2, 3).double()
    with torch.no_grad():
        vq = VectorQuantizer(enc(Y[:4]), encoder=enc, decoder=dec, dim=3)
    vq.kmeans_step(Y)
    opt = torch.optim.Adam(vq.parameters(), lr=0.02)
    start = float(vq.free_energy(Y, beta=INF).detach().mean())
    losses = []
    for _ in range(300):
        loss = vq.loss(Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    end = float(vq.free_energy(Y, beta=INF).detach().mean())
    # K codes decoded to K points: the best possible is the K-means energy of Y
    best = SkKMeans(4, n_init=4, random_state=0).fit(Y.numpy()).inertia_ / Y.shape[0]
    assert np.mean(losses[-20:]) < 0.75 * np.mean(losses[:20])
    assert end < 0.25 * start
    assert best - 1e-9 <= end < 1.05 * best
    assert bool((vq.infer(Y).sum(0) > 0).all())  # no dead code


# --------------------------------------------------------------------------------------- sparse auto-encoder


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    dictionary = torch.randn(4, 5, generator=g, dtype=torch.float64)
    enc = torch.nn.Linear(5, 4).double()
    with torch.no_grad():
        enc.weight.copy_(0.3 * torch.randn(4, 5, generator=g, dtype=torch.float64))
        enc.bias.copy_(0.1 * torch.randn(4, generator=g, dtype=torch.float64))
    return dictionary, enc, torch.randn(8, 5, generator=g, dtype=torch.float64)


def test_sae_with_alpha_zero_is_sparse_coding(problem):
    dictionary, enc, y = problem
    sae, sc = SparseAutoEncoder(dictionary, enc, lam=0.3, alpha=0.0), SparseCoding(dictionary, lam=0.3)
    z = torch.randn(8, 4, dtype=torch.float64)
    assert torch.allclose(sae(y, z), sc(y, z), atol=0, rtol=0)
    for method in ("ista", "fista"):
        assert torch.allclose(sae.infer(y, method, steps=200), sc.infer(y, method, steps=200), atol=1e-13)
    assert torch.allclose(sae.free_energy(y, beta=INF), sc.free_energy(y, beta=INF), atol=1e-12)
    sq = SparseAutoEncoder(dictionary[:, :4], torch.nn.Linear(4, 4).double(), lam=0.3, alpha=0.0)
    sq_sc = SparseCoding(dictionary[:, :4], lam=0.3)  # square: full row rank, finite beta defined
    f1 = sq.free_energy(y[:, :4], beta=2.0, num_samples=500, seed=3)
    f2 = sq_sc.free_energy(y[:, :4], beta=2.0, num_samples=500, seed=3)
    assert torch.allclose(f1, f2, atol=1e-10)


def _lasso(x, target, lam):
    from sklearn.linear_model import Lasso

    n = x.shape[0]  # scikit-learn: (1 / (2 n)) ||t - X w||^2 + alpha |w|_1
    fit = Lasso(alpha=lam / (2 * n), fit_intercept=False, tol=1e-12, max_iter=50000)
    return torch.tensor(np.stack([fit.fit(x.numpy(), row).coef_ for row in target.numpy()]))


@pytest.mark.parametrize("method", ["ista", "fista"])
def test_sae_inference_reaches_the_shifted_lasso_optimum(problem, method):
    dictionary, enc, y = problem
    lam, alpha = 0.3, 0.7
    sae = SparseAutoEncoder(dictionary, enc, lam=lam, alpha=alpha)
    with torch.no_grad():
        h = enc(y)
        # ||y - zD||^2 + alpha ||z - h||^2 = ||[y, sqrt(a) h] - z [D, sqrt(a) I]||^2: a Lasso in k unknowns
        x = torch.cat([dictionary.T, math.sqrt(alpha) * torch.eye(4, dtype=torch.float64)], 0)
        z_lasso = _lasso(x, torch.cat([y, math.sqrt(alpha) * h], -1), lam)
        z = sae.infer(y, method, steps=5000, tol=1e-14)
        assert float((z - z_lasso).abs().max()) < 1e-4
        f = sae.free_energy(y, beta=INF, method=method, steps=5000, tol=1e-14)
        assert float((f - sae(y, z_lasso)).abs().max()) < 1e-4
        # optimality of the energy as written (not through the augmentation): 0 in the subdifferential
        grad = -2 * (y - z @ dictionary) @ dictionary.T + 2 * alpha * (z - h)
        nz = z.abs() > 1e-8
        assert float((grad + lam * torch.sign(z))[nz].abs().max()) < 1e-6
        assert float(grad[~nz].abs().max()) <= lam + 1e-6


def test_sae_finite_beta_against_quadrature():
    enc = torch.nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        enc.weight.copy_(torch.tensor([[0.4, -0.3]], dtype=torch.float64))
    sae = SparseAutoEncoder(torch.tensor([[1.0, 0.5]], dtype=torch.float64), enc, lam=0.4, alpha=0.5)
    y = torch.tensor([[0.3, -0.2], [1.0, 1.0]], dtype=torch.float64)
    z = torch.linspace(-12, 12, 120001, dtype=torch.float64)
    with torch.no_grad():
        e = sae(y.unsqueeze(-2), z.view(-1, 1))
        for beta in (0.5, 3.0):
            quad = -(torch.logsumexp(-beta * e, -1) + math.log(z[1] - z[0])) / beta
            est = sae.free_energy(y, beta=beta, num_samples=20000, seed=1)
            assert torch.allclose(est, quad, atol=5e-3)
        assert torch.allclose(sae.free_energy(y, beta=INF), e.min(-1).values, atol=1e-6)


def test_sae_training_teaches_the_encoder_the_codes():
    g = torch.Generator().manual_seed(4)
    atoms = torch.randn(4, 6, generator=g, dtype=torch.float64)
    atoms = atoms / atoms.norm(dim=1, keepdim=True)
    codes = torch.randn(300, 4, generator=g, dtype=torch.float64) * (torch.rand(300, 4, generator=g) < 0.4)
    Y = codes @ atoms + 0.01 * torch.randn(300, 6, generator=g, dtype=torch.float64)
    train, test = Y[:200], Y[200:]
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).double()
    sae = SparseAutoEncoder(atoms, enc, lam=0.05, alpha=0.5)

    def held_out():
        with torch.no_grad():
            err = float(((sae.infer(test, steps=300) - sae.predict(test)) ** 2).sum(-1).mean())
            return err, float(sae.free_energy(test, beta=INF).mean())

    before_err, before_f = held_out()
    sae.fit(train, epochs=10, lr=2e-2, batch_size=50, infer_steps=60, seed=0)
    after_err, after_f = held_out()
    assert sae.prediction_error_[-1] < 0.2 * sae.prediction_error_[0]
    assert after_err < 0.2 * before_err
    assert after_f < before_f
    assert torch.allclose(sae.dictionary.detach().norm(dim=1), torch.ones(4, dtype=torch.float64))


def test_sparse_coding_finite_beta_in_two_latent_dimensions_against_quadrature():
    """The importance proposal of the shared Lasso free energy is a full 2-D Gaussian (k > 1)."""
    sc = SparseCoding(torch.tensor([[1.0, 0.3], [0.2, 0.8]], dtype=torch.float64), lam=0.5)
    y = torch.tensor([[0.6, -0.4], [1.0, 1.5]], dtype=torch.float64)
    grid = torch.linspace(-6, 6, 601, dtype=torch.float64)
    z = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        e = sc(y.unsqueeze(-2), z)
        beta = 1.5
        quad = -(torch.logsumexp(-beta * e, -1) + 2 * math.log(grid[1] - grid[0])) / beta
        est = sc.free_energy(y, beta=beta, num_samples=20000, seed=0)
    assert torch.allclose(est, quad, atol=5e-3)
