r"""A1 of the lecture: architectures whose volume of low energy is bounded by construction.

Each model is a :class:`~pyro_ebm.LatentEnergy` ``E(y, z)``; pushing down on the energy of the data is
enough to train it, because the architecture itself keeps most of the space at high energy.

* :class:`PCA` -- ``E(y, z) = ||y - mean - z W||^2``, ``z`` in ``k < d`` dimensions: low energy only on a
  ``k``-dimensional affine subspace.
* :class:`KMeans` -- ``E(y, z) = ||y - z C||^2`` with ``z`` one-hot: low energy only near ``K`` points.
  Its free energy at ``beta = inf`` is the K-means energy, at finite ``beta`` soft K-means.
* :class:`GaussianMixture` -- ``E(y, z) = -log pi_z - log N(y; mu_z, Sigma_z)``: at ``beta = 1`` the free
  energy is ``-log p(y)``; an isotropic mixture of variance ``1 / (2 beta)`` is soft K-means at ``beta``,
  hence K-means at zero temperature (:meth:`GaussianMixture.from_kmeans`).
"""

from __future__ import annotations

import math
import torch
from torch import nn

from .._rng import check_seed, make_generator
from .._validation import check_finite, check_positive_int
from ..energy import LatentEnergy
from ..inference import argmin_latent, free_energy
from ._common import check_parameters, check_state, check_units, checked, joint_batch
from ._data import as_beta, check_data, check_input, check_matrix, gaussian_volume

__all__ = ["PCA", "KMeans", "GaussianMixture"]


class _Fitted(LatentEnergy):
    """A latent energy whose parameters are set by ``fit``/``from_sklearn`` (the event shape comes with them)."""

    def _require_fit(self):
        if len(self.event_shape) == 0:
            raise ValueError(f"{type(self).__name__} is not fitted yet: call .fit(Y) (or build it from_sklearn)")

    def _check_y(self, y, name="y"):
        self._require_fit()
        return check_input(y, self.event_shape, name)

    def _check_yz(self, y, z):
        """``y`` ``[*batch, d]`` and ``z`` ``[*batch', *latent_shape]`` for ``forward`` (finiteness is checked on
        the energy)."""
        self._require_fit()
        y = check_state(y, "y", self.event_shape)
        z = check_state(z, "z", self.latent_shape)
        joint_batch(y, z, self.event_shape, self.latent_shape)
        return y, z


class _OneHot(_Fitted):
    """A fitted latent energy whose latent is one-hot over ``K`` values (K-means' prototypes, a mixture's
    components), so free energy and inference are exact enumerations over the ``K`` codes. Subclasses
    name their count (``_count``) and the parameter holding one row per value (``_rows``)."""

    _count = _rows = ""

    def codes(self) -> torch.Tensor:
        """The ``K`` one-hot latent values ``[K, K]``."""
        rows = getattr(self, self._rows)
        return torch.eye(getattr(self, self._count), dtype=rows.dtype, device=rows.device)

    def free_energy(self, y: torch.Tensor, beta=1.0) -> torch.Tensor:
        """``F_beta(y) = -1/beta log sum_k exp(-beta E(y, e_k))`` ``[*batch]``, enumerated over the codes: for
        :class:`KMeans` ``beta = inf`` is the K-means energy, for :class:`GaussianMixture` ``beta = 1`` is
        ``-log p(y)``."""
        y = self._check_y(y)
        return free_energy(self, y, self.codes(), beta=beta)

    def infer(self, y: torch.Tensor) -> torch.Tensor:
        """The one-hot code of least energy (the nearest centre, the most responsible component),
        ``[*batch, K]``."""
        y = self._check_y(y)
        return argmin_latent(self, y, self.codes())[0]


class PCA(_Fitted):
    r"""Principal component analysis as a latent-variable energy (A1: a bounded low-energy volume).

    .. math:: E(y, z) = \lVert y - \mu - z W \rVert^2, \quad z \in \mathbb{R}^k,

    with ``W`` ``[k, d]`` (``components_``, rows orthonormal after :meth:`fit`) and ``mu`` (``mean_``).
    The zero-temperature free energy is the squared reconstruction error, zero exactly on a
    ``k``-dimensional affine subspace; with the latent integrated over :math:`\mathbb{R}^k` (Lebesgue measure)

    .. math:: F_\beta(y) = \min_z E(y, z) - \frac{k}{2\beta}\log\frac{\pi}{\beta} + \frac{1}{2\beta}\log\det(W W^\top).

    :param n_components: ``k``, the dimension of the latent.

    Example::

        >>> import torch
        >>> from pyro_ebm.models import PCA
        >>> Y = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.1]])
        >>> pca = PCA(1).fit(Y)
        >>> pca.components_.detach().abs().round(decimals=2)
        tensor([[0.7000, 0.7200]])
        >>> pca.free_energy(torch.tensor([[0.0, 1.0]]), beta=float("inf")).detach().round(decimals=2)
        tensor([0.5100])
    """

    def __init__(self, n_components: int):
        super().__init__(event_shape=(), latent_shape=(check_units(n_components, "n_components"),))
        self.n_components = int(n_components)
        self.components_ = nn.Parameter(torch.empty(0))
        self.mean_ = nn.Parameter(torch.empty(0))

    def set_params(self, components: torch.Tensor, mean: torch.Tensor) -> "PCA":
        """Set ``components_`` ``[k, d]`` (linearly independent rows) and ``mean_`` ``[d]``; returns self."""
        components = check_matrix(components, "components", f"[n_components={self.n_components}, d]",
                                   rows=self.n_components)
        d = components.shape[1]
        if not isinstance(mean, torch.Tensor) or mean.shape != (d,):
            raise ValueError(f"mean must be a tensor of shape ({d},), got {getattr(mean, 'shape', type(mean))}")
        if mean.is_complex() or mean.dtype == torch.bool:
            raise TypeError(f"mean must be a real tensor, got dtype {mean.dtype}")
        check_finite(mean.detach(), "mean")
        if self.n_components > d:
            raise ValueError(f"n_components = {self.n_components} is larger than the dimension d = {d}")
        self.components_ = nn.Parameter(components.detach().clone())
        self.mean_ = nn.Parameter(mean.detach().to(components).clone())
        self.event_shape = torch.Size([d])
        return self

    def fit(self, Y) -> "PCA":
        """Fit by SVD of the centred data ``Y`` ``[N, d]``; sets ``components_``, ``mean_`` and
        ``explained_variance_`` (scikit-learn's names); returns self."""
        Y = check_data(Y, "Y", min_rows=2)
        if self.n_components > Y.shape[1]:
            raise ValueError(
                f"n_components = {self.n_components} is larger than the dimension of Y ({Y.shape[1]})"
            )
        mean = Y.mean(0)
        _, s, vt = torch.linalg.svd(Y - mean, full_matrices=False)
        k = self.n_components
        self.set_params(vt[:k], mean)
        self.explained_variance_ = (s[:k] ** 2 / (Y.shape[0] - 1)).detach()
        return self

    def forward(self, y, z, x=None):
        if x is not None:
            raise TypeError("PCA takes no conditioning x")
        y, z = self._check_yz(y, z)
        return checked(((y - self.mean_ - z @ self.components_) ** 2).sum(-1), "the PCA energy", [("y", y), ("z", z)], self)

    def infer(self, y: torch.Tensor) -> torch.Tensor:
        """The minimising code ``z* = (y - mean) W^T (W W^T)^{-1}``, ``[*batch, k]``."""
        y = self._check_y(y)
        w = self.components_
        return torch.linalg.solve(w @ w.T, ((y - self.mean_) @ w.T).unsqueeze(-1)).squeeze(-1)

    def free_energy(self, y: torch.Tensor, beta=1.0) -> torch.Tensor:
        """``F_beta(y)`` ``[*batch]`` (closed form above); ``beta = inf`` is the squared reconstruction error."""
        z = self.infer(y)
        e = self(y, z)
        w = self.components_
        return gaussian_volume(e, as_beta(beta, e), self.n_components, torch.logdet(w @ w.T))

    def reconstruct(self, y: torch.Tensor) -> torch.Tensor:
        """The projection ``mean + z* W`` of ``y`` on the subspace, ``[*batch, d]``."""
        return self.mean_ + self.infer(y) @ self.components_


def _sq_dist(y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return ((y.unsqueeze(-2) - c) ** 2).sum(-1)


class KMeans(_OneHot):
    r"""K-means as a latent-variable energy (A1): ``z`` is one-hot over ``K`` prototypes.

    .. math:: E(y, z) = \lVert y - z C \rVert^2, \qquad z \in \{e_1, \dots, e_K\},

    with ``C`` ``[K, d]`` (``cluster_centers_``). The free energy comes from :func:`pyro_ebm.free_energy`
    over the ``K`` one-hot codes: at ``beta = inf`` it is the K-means energy :math:`\min_k \lVert y - c_k
    \rVert^2` (its sum over the data is scikit-learn's ``inertia_``), at finite ``beta`` the soft-K-means
    free energy :math:`-\frac1\beta \log\sum_k e^{-\beta \lVert y - c_k\rVert^2}`.

    :param n_clusters: ``K``.
    :param n_init: restarts of :meth:`fit` (k-means++ seeding each); the lowest energy wins.
    :param max_iter: Lloyd iterations per restart.
    :param seed: seed or ``torch.Generator`` of the seeding.

    Example::

        >>> import torch
        >>> from pyro_ebm.models import KMeans
        >>> Y = torch.tensor([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0]])
        >>> km = KMeans(2, seed=0).fit(Y)
        >>> km.free_energy(Y, beta=float("inf")).sum().item()  # the inertia
        1.0
        >>> km.predict(torch.tensor([[4.0, 4.0]])) == km.predict(Y[2:3])
        tensor([True])
    """

    _count, _rows = "n_clusters", "cluster_centers_"

    def __init__(self, n_clusters: int, *, n_init: int = 4, max_iter: int = 300, seed=0):
        k = check_units(n_clusters, "n_clusters")
        super().__init__(event_shape=(), latent_shape=(k,))
        self.n_clusters = k
        self.n_init = check_positive_int(n_init, "n_init")
        self.max_iter = check_positive_int(max_iter, "max_iter")
        self.seed = seed
        check_seed(seed)
        self.cluster_centers_ = nn.Parameter(torch.empty(0))

    def set_centers(self, centers: torch.Tensor) -> "KMeans":
        """Set ``cluster_centers_`` ``[K, d]``; returns self."""
        centers = check_matrix(centers, "centers", f"[n_clusters={self.n_clusters}, d]", rows=self.n_clusters)
        self.cluster_centers_ = nn.Parameter(centers.detach().clone())
        self.event_shape = torch.Size([centers.shape[1]])
        return self

    @classmethod
    def from_sklearn(cls, sk) -> "KMeans":
        """The energy of a fitted ``sklearn.cluster.KMeans`` (same centres)."""
        centers = getattr(sk, "cluster_centers_", None)
        if centers is None:
            raise TypeError(f"sk must be a fitted sklearn.cluster.KMeans, got {type(sk).__name__}")
        c = torch.as_tensor(centers)
        return cls(c.shape[0]).set_centers(c.to(torch.float64) if c.dtype == torch.float64 else c.float())

    def fit(self, Y) -> "KMeans":
        """Lloyd's algorithm from ``n_init`` k-means++ seedings (block coordinate descent on the energy:
        ``z`` by the zero-temperature inference, ``C`` by the mean of each cluster); returns self and sets
        ``inertia_``."""
        Y = check_data(Y, "Y")
        k = self.n_clusters
        if Y.shape[0] < k:
            raise ValueError(f"Y has {Y.shape[0]} rows, fewer than n_clusters = {k}")
        gen = make_generator(self.seed)
        best, best_e = None, math.inf
        for _ in range(self.n_init):
            c = self._plus_plus(Y, k, gen)
            for _ in range(self.max_iter):
                lab = _sq_dist(Y, c).argmin(-1)
                onehot = torch.nn.functional.one_hot(lab, k).to(Y.dtype)
                count = onehot.sum(0)
                new = torch.where(count[:, None] > 0, (onehot.T @ Y) / count.clamp(min=1)[:, None], c)
                if torch.equal(new, c):
                    break
                c = new
            e = float(_sq_dist(Y, c).min(-1).values.sum())
            if e < best_e:
                best, best_e = c, e
        self.set_centers(best)
        self.inertia_ = best_e
        return self

    @staticmethod
    def _plus_plus(Y, k, gen):
        n = Y.shape[0]
        idx = [int(torch.randint(n, (1,), generator=gen))]
        d2 = _sq_dist(Y, Y[idx]).min(-1).values
        for _ in range(1, k):
            p = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / n)
            idx.append(int(torch.multinomial(p.cpu(), 1, generator=gen)))
            d2 = torch.minimum(d2, _sq_dist(Y, Y[idx[-1:]]).squeeze(-1))
        return Y[idx].clone()

    def forward(self, y, z, x=None):
        if x is not None:
            raise TypeError("KMeans takes no conditioning x")
        y, z = self._check_yz(y, z)
        return checked(((y - z @ self.cluster_centers_) ** 2).sum(-1), "the KMeans energy", [("y", y), ("z", z)], self)

    def predict(self, y: torch.Tensor) -> torch.Tensor:
        """The index of the nearest centre, ``[*batch]`` (scikit-learn's ``predict``)."""
        return self.infer(y).argmax(-1)


class GaussianMixture(_OneHot):
    r"""A Gaussian mixture as a latent-variable energy (A1) with full covariances.

    .. math:: E(y, z) = -\log \pi_z - \log \mathcal N(y; \mu_z, \Sigma_z), \qquad z \in \{e_1, \dots, e_K\}.

    The free energy over ``z`` from :func:`pyro_ebm.free_energy` at ``beta = 1`` is ``-log p(y)`` (minus
    scikit-learn's ``score_samples``); at ``beta = inf`` it is the energy of the most responsible component.

    :param weights: ``[K]`` mixing weights (positive, summing to 1).
    :param means: ``[K, d]``.
    :param covariances: ``[K, d, d]`` symmetric positive definite.

    Example::

        >>> import torch
        >>> from pyro_ebm.models import GaussianMixture
        >>> g = GaussianMixture(torch.tensor([1.0]), torch.zeros(1, 2), torch.eye(2).unsqueeze(0))
        >>> g.free_energy(torch.zeros(1, 2), beta=1.0).detach()  # log(2 pi)
        tensor([1.8379])
    """

    _count, _rows = "n_components", "means_"

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor):
        means = check_matrix(means, "means", "[K, d]")
        k, d = means.shape
        super().__init__(event_shape=(d,), latent_shape=(k,))
        if not isinstance(weights, torch.Tensor) or weights.shape != (k,):
            raise ValueError(f"weights must be a tensor of shape ({k},), got {getattr(weights, 'shape', weights)}")
        weights = weights.to(means)
        if not bool(torch.isfinite(weights).all()) or bool((weights <= 0).any()) or abs(float(weights.sum()) - 1) > 1e-5:
            raise ValueError(f"weights must be positive and sum to 1, got {weights.tolist()}")
        if not isinstance(covariances, torch.Tensor) or covariances.shape != (k, d, d):
            raise ValueError(
                f"covariances must be a tensor of shape ({k}, {d}, {d}), got {getattr(covariances, 'shape', covariances)}"
            )
        covariances = covariances.to(means)
        chol, info = torch.linalg.cholesky_ex(covariances)
        if bool((info != 0).any()) or not bool(torch.allclose(covariances, covariances.mT, atol=1e-6)):
            raise ValueError("covariances must be symmetric positive definite [K, d, d]")
        self.n_components = k
        self.weights_ = nn.Parameter(weights.detach().clone())
        self.means_ = nn.Parameter(means.detach().clone())
        self.covariances_ = nn.Parameter(covariances.detach().clone())

    @classmethod
    def from_sklearn(cls, sk) -> "GaussianMixture":
        """The energy of a fitted ``sklearn.mixture.GaussianMixture`` (any ``covariance_type``, expanded to
        full covariances)."""
        if not hasattr(sk, "means_") or not hasattr(sk, "covariance_type"):
            raise TypeError(f"sk must be a fitted sklearn.mixture.GaussianMixture, got {type(sk).__name__}")
        means = torch.as_tensor(sk.means_, dtype=torch.float64)
        k, d = means.shape
        cov = torch.as_tensor(sk.covariances_, dtype=torch.float64)
        kind = sk.covariance_type
        if kind == "tied":
            cov = cov.expand(k, d, d)
        elif kind == "diag":
            cov = torch.diag_embed(cov)
        elif kind == "spherical":
            cov = cov[:, None, None] * torch.eye(d, dtype=torch.float64)
        return cls(torch.as_tensor(sk.weights_, dtype=torch.float64), means, cov.contiguous())

    @classmethod
    def from_kmeans(cls, kmeans: KMeans, beta) -> "GaussianMixture":
        r"""The isotropic, equally weighted mixture on ``kmeans``'s centres with variance ``1 / (2 beta)``:

        .. math:: -\log p(y) = \beta F^{\mathrm{KM}}_\beta(y) + \log K + \frac d2 \log\frac{\pi}{\beta},

        so K-means is this mixture at zero temperature (``beta -> inf``)."""
        if not isinstance(kmeans, KMeans):
            raise TypeError(f"kmeans must be a fitted KMeans, got {type(kmeans).__name__}")
        kmeans._require_fit()
        b = float(as_beta(beta, kmeans.cluster_centers_))
        if math.isinf(b):
            raise ValueError("beta must be finite here (the mixture of variance 1/(2 beta) degenerates at inf)")
        c = kmeans.cluster_centers_.detach()
        k, d = c.shape
        cov = torch.eye(d, dtype=c.dtype).expand(k, d, d) / (2 * b)
        return cls(torch.full((k,), 1.0 / k, dtype=c.dtype), c, cov.contiguous())

    def log_joint(self, y: torch.Tensor) -> torch.Tensor:
        """``log pi_k + log N(y; mu_k, Sigma_k)`` for every component of ``y`` ``[*batch, d]``, ``[*batch, K]``."""
        y = check_state(y, "y", self.event_shape)
        check_parameters(self, "GaussianMixture")
        chol = torch.linalg.cholesky(self.covariances_)
        diff = (y.unsqueeze(-2) - self.means_).unsqueeze(-1)  # [*batch, K, d, 1]
        sol = torch.linalg.solve_triangular(chol, diff, upper=False).squeeze(-1)
        d = self.means_.shape[1]
        half_logdet = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        out = torch.log(self.weights_) - 0.5 * (sol**2).sum(-1) - half_logdet - 0.5 * d * math.log(2 * math.pi)
        return checked(out, "the mixture's log density", [("y", y)], self)

    def forward(self, y, z, x=None):
        if x is not None:
            raise TypeError("GaussianMixture takes no conditioning x")
        y, z = self._check_yz(y, z)
        return checked(-(z * self.log_joint(y)).sum(-1), "the mixture's energy", [("z", z)], self)

