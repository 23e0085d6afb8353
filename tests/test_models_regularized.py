"""A1/A2 models as latent-variable energies, checked against scikit-learn and closed forms."""

import math

import numpy as np
import pytest
import torch

from pyro_ebm import free_energy_min
from pyro_ebm.models import LISTA, PCA, GaussianMixture, KMeans, SparseCoding, soft_threshold

INF = float("inf")


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(200, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 5, generator=g, dtype=torch.float64)


def test_pca_recovers_sklearn_subspace(data):
    from sklearn.decomposition import PCA as SkPCA

    pca = PCA(2).fit(data)
    sk = SkPCA(2).fit(data.numpy())
    cosines = torch.linalg.svdvals(pca.components_.detach() @ torch.tensor(sk.components_).T)
    assert torch.allclose(cosines, torch.ones(2, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(pca.mean_.detach(), torch.tensor(sk.mean_))
    assert np.allclose(pca.explained_variance_.numpy(), sk.explained_variance_)
    recon = sk.inverse_transform(sk.transform(data.numpy()))
    f = pca.free_energy(data, beta=INF).detach().numpy()
    assert np.allclose(f, ((data.numpy() - recon) ** 2).sum(-1))


def test_pca_zero_temperature_equals_gradient_minimisation(data):
    pca = PCA(2).fit(data)
    y = data[:6]
    f_min, z_star = free_energy_min(pca, y, torch.zeros(1, 2, dtype=torch.float64), steps=600, lr=0.1, tol=1e-9)
    assert torch.allclose(f_min, pca.free_energy(y, beta=INF), atol=1e-5)
    assert torch.allclose(z_star, pca.infer(y), atol=1e-3)


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_pca_finite_beta_is_the_gaussian_integral(beta):
    pca = PCA(1).set_params(torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    y = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]], dtype=torch.float64)
    z = torch.linspace(-20, 20, 200001, dtype=torch.float64)
    e = pca(y.unsqueeze(-2), z.view(-1, 1))
    quad = -(torch.logsumexp(-beta * e, -1) + math.log(z[1] - z[0])) / beta
    assert torch.allclose(pca.free_energy(y, beta=beta), quad, atol=1e-8)


def test_kmeans_zero_temperature_free_energy_is_sklearn_inertia(data):
    from sklearn.cluster import KMeans as SkKMeans

    sk = SkKMeans(3, n_init=3, random_state=0).fit(data.numpy())
    km = KMeans.from_sklearn(sk)
    assert math.isclose(float(km.free_energy(data, beta=INF).detach().sum()), sk.inertia_, rel_tol=1e-10)
    assert np.array_equal(km.predict(data).numpy(), sk.predict(data.numpy()))
    ours = KMeans(3, seed=0).fit(data)
    assert ours.inertia_ <= sk.inertia_ * (1 + 1e-3)
    assert math.isclose(float(ours.free_energy(data, beta=INF).detach().sum()), ours.inertia_, rel_tol=1e-10)


def test_kmeans_soft_free_energy_and_bounds(data):
    km = KMeans(4, seed=1).fit(data)
    y = data[:10]
    d2 = ((y[:, None] - km.cluster_centers_.detach()) ** 2).sum(-1)
    for beta in (0.1, 1.0, 10.0):
        f = km.free_energy(y, beta=beta)
        assert torch.allclose(f, -torch.logsumexp(-beta * d2, -1) / beta)
        assert bool((f <= d2.min(-1).values + 1e-12).all())
        assert bool((f >= d2.min(-1).values - math.log(4) / beta - 1e-12).all())
    onehot = km.infer(y)
    assert torch.equal(onehot.argmax(-1), d2.argmin(-1))
    assert torch.allclose(onehot.sum(-1), torch.ones(10, dtype=y.dtype))


@pytest.mark.parametrize("kind", ["full", "diag", "tied", "spherical"])
def test_gmm_free_energy_is_minus_sklearn_score_samples(data, kind):
    from sklearn.mixture import GaussianMixture as SkGMM

    sk = SkGMM(3, covariance_type=kind, random_state=0).fit(data.numpy())
    gm = GaussianMixture.from_sklearn(sk)
    f = gm.free_energy(data, beta=1.0).detach().numpy()
    assert np.allclose(f, -sk.score_samples(data.numpy()), atol=1e-9)
    assert np.array_equal(gm.infer(data).argmax(-1).numpy(), sk.predict(data.numpy()))


def test_kmeans_is_gmm_at_zero_temperature(data):
    """-log p(y) of the isotropic mixture of variance 1/(2 beta) equals beta F^KM_beta + log K + d/2 log(pi/beta)
    exactly, and F^KM_beta -> the K-means energy (the inertia) as beta -> inf."""
    from sklearn.cluster import KMeans as SkKMeans

    sk = SkKMeans(3, n_init=3, random_state=0).fit(data.numpy())
    km = KMeans.from_sklearn(sk)
    gaps = []
    for beta in (0.01, 0.1, 1.0, 10.0, 1e3):
        nll = GaussianMixture.from_kmeans(km, beta).free_energy(data, beta=1.0)
        f_km = km.free_energy(data, beta=beta)
        assert torch.allclose(nll, beta * f_km + math.log(3) + 2.5 * math.log(math.pi / beta), rtol=1e-10, atol=1e-8)
        gaps.append(sk.inertia_ - float(f_km.detach().sum()))
    assert all(g >= 0 for g in gaps) and all(a > b for a, b in zip(gaps, gaps[1:]))
    assert gaps[-1] < 1e-6


def _lasso(dictionary, y, lam):
    from sklearn.linear_model import Lasso

    d = dictionary.shape[1]  # scikit-learn: (1 / (2 n)) ||y - X w||^2 + alpha |w|_1 with X = D^T, n = d
    fit = Lasso(alpha=lam / (2 * d), fit_intercept=False, tol=1e-10, max_iter=20000)
    return torch.tensor(np.stack([fit.fit(dictionary.T.numpy(), row).coef_ for row in y.numpy()]))


@pytest.fixture
def coding():
    g = torch.Generator().manual_seed(0)
    dictionary = torch.randn(6, 5, generator=g, dtype=torch.float64)
    dictionary = dictionary / dictionary.norm(dim=1, keepdim=True)
    return SparseCoding(dictionary, lam=0.3), torch.randn(20, 5, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("method", ["ista", "fista"])
def test_ista_fista_reach_the_lasso_optimum(method):
    g = torch.Generator().manual_seed(0)
    sc = SparseCoding(torch.randn(4, 5, generator=g, dtype=torch.float64), lam=0.3)
    y = torch.randn(8, 5, generator=g, dtype=torch.float64)
    z_lasso = _lasso(sc.dictionary.detach(), y, sc.lam)
    z = sc.infer(y, method, steps=3000, tol=1e-13)
    e_lasso = sc(y, z_lasso).detach()
    assert float((sc(y, z).detach() - e_lasso).abs().max()) < 1e-4
    assert float((z - z_lasso).abs().max()) < 1e-4
    f = sc.free_energy(y, beta=INF, method=method, steps=3000, tol=1e-13).detach()
    assert torch.allclose(f, e_lasso, atol=1e-4)


def test_fista_converges_faster_than_ista(coding):
    sc, y = coding
    best = sc(y, sc.infer(y, steps=500, tol=1e-13)).detach()
    gap = {m: float((sc(y, sc.infer(y, m, steps=50, tol=0.0)).detach() - best).max()) for m in ("ista", "fista")}
    assert gap["fista"] < gap["ista"]


def test_sparse_coding_finite_beta_against_quadrature():
    sc = SparseCoding(torch.tensor([[1.0, 0.5]], dtype=torch.float64), lam=0.4)
    y = torch.tensor([[0.3, -0.2], [1.0, 1.0]], dtype=torch.float64)
    z = torch.linspace(-12, 12, 120001, dtype=torch.float64)
    e = sc(y.unsqueeze(-2), z.view(-1, 1)).detach()
    for beta in (0.5, 3.0):
        quad = -(torch.logsumexp(-beta * e, -1) + math.log(z[1] - z[0])) / beta
        est = sc.free_energy(y, beta=beta, num_samples=20000, seed=1).detach()
        assert torch.allclose(est, quad, atol=5e-3)
    assert torch.allclose(sc.free_energy(y, beta=INF).detach(), e.min(-1).values, atol=1e-6)


def test_soft_threshold():
    u = torch.tensor([-3.0, -0.2, 0.0, 0.5, 2.0])
    assert torch.equal(soft_threshold(u, 0.5), torch.tensor([-2.5, 0.0, 0.0, 0.0, 1.5]))


@pytest.mark.slow
def test_dictionary_learning_decreases_the_energy_and_finds_planted_atoms():
    g = torch.Generator().manual_seed(3)
    atoms = torch.randn(4, 6, generator=g, dtype=torch.float64)
    atoms = atoms / atoms.norm(dim=1, keepdim=True)
    codes = torch.randn(300, 4, generator=g, dtype=torch.float64) * (torch.rand(300, 4, generator=g) < 0.3)
    Y = codes @ atoms + 0.01 * torch.randn(300, 6, generator=g, dtype=torch.float64)
    init = atoms + 0.2 * torch.randn(4, 6, generator=g, dtype=torch.float64)
    init = init / init.norm(dim=1, keepdim=True)
    sc = SparseCoding(init, lam=0.05).fit(Y, n_iter=10, infer_steps=200)
    obj = sc.objective_
    assert all(b <= a * (1 + 1e-6) for a, b in zip(obj, obj[1:]))
    before = (init @ atoms.T).abs().max(0).values
    after = (sc.dictionary.detach() @ atoms.T).abs().max(0).values
    assert bool((after > before).all()) and float(after.min()) > 0.9 and float(after.mean()) > 0.97


def test_lista_initialisation_is_ista(coding):
    sc, y = coding
    for t in (1, 4):
        assert torch.allclose(LISTA(sc, t)(y), sc.infer(y, "ista", steps=t, tol=0.0), atol=1e-12)


def test_lista_beats_the_same_number_of_ista_steps(coding):
    sc, _ = coding
    g = torch.Generator().manual_seed(1)
    y_train = torch.randn(600, 5, generator=g, dtype=torch.float64)
    y_test = torch.randn(300, 5, generator=g, dtype=torch.float64)
    z_opt = sc.infer(y_test, steps=500)
    lista = LISTA(sc, n_layers=3)
    err_ista = float(((sc.infer(y_test, "ista", steps=3, tol=0.0) - z_opt) ** 2).sum(-1).mean())
    lista.fit(y_train, epochs=15, lr=1e-2, batch_size=100)
    with torch.no_grad():
        err_lista = float(((lista(y_test) - z_opt) ** 2).sum(-1).mean())
        e_gap = (sc(y_test, lista(y_test)) - sc(y_test, z_opt)).min()
    assert err_lista < 0.5 * err_ista
    assert float(e_gap) >= -1e-9  # the optimum is the minimum: LISTA's code is an upper bound
