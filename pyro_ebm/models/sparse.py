r"""A2 of the lecture: a regularizer on the latent limits the volume of low energy.

* :class:`SparseCoding` -- ``E(y, z) = ||y - z D||^2 + lam |z|_1`` with ISTA/FISTA inference, the
  zero-temperature free energy as the Lasso optimum, and dictionary learning.
* :class:`SparseAutoEncoder` -- predictive sparse decomposition (Kavukcuoglu et al. 2008): sparse coding
  plus a penalty tying the code to an encoder's prediction, which is trained to predict the codes.
* :class:`LISTA` -- a learned encoder with the unrolled structure of ISTA (Gregor & LeCun 2010) that
  approximates the sparse code in a fixed number of layers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._rng import make_generator
from .._validation import check_finite, check_positive_int, check_real
from ..energy import LatentEnergy
from ..inference import free_energy_importance
from ._common import check_fit_finite, check_module, check_parameters, check_state, checked, joint_batch
from ._data import as_beta, check_data, check_input, check_matrix

__all__ = ["SparseCoding", "SparseAutoEncoder", "LISTA", "soft_threshold"]


def soft_threshold(u: torch.Tensor, threshold) -> torch.Tensor:
    """The proximal map of ``threshold * |.|_1``: ``sign(u) max(|u| - threshold, 0)`` (elementwise).

    Example::

        >>> import torch
        >>> soft_threshold(torch.tensor([-2.0, 0.5, 3.0]), 1.0)
        tensor([-1.,  0.,  2.])
    """
    if not isinstance(u, torch.Tensor) or not u.is_floating_point():
        raise TypeError(f"u must be a floating-point tensor, got "
                        f"{u.dtype if isinstance(u, torch.Tensor) else type(u).__name__}")
    check_finite(u.detach(), "u")
    if isinstance(threshold, torch.Tensor):
        if not threshold.is_floating_point():
            raise TypeError(f"threshold must be a number or a floating-point tensor, got dtype {threshold.dtype}")
        check_finite(threshold.detach(), "threshold")
        if bool((threshold < 0).any()):
            raise ValueError("threshold must be >= 0")
    else:
        threshold = check_real(threshold, "threshold", minimum=0.0)
    return _soft(u, threshold)


def _soft(u: torch.Tensor, threshold) -> torch.Tensor:
    """:func:`soft_threshold` without the checks (the solvers' inner loop)."""
    return torch.sign(u) * torch.relu(u.abs() - threshold)


def _lasso(y: torch.Tensor, d: torch.Tensor, lam: float, method: str, steps, tol, z_init=None) -> torch.Tensor:
    """``argmin_z ||y - z d||^2 + lam |z|_1`` ``[*batch, k]`` by ISTA or FISTA with step ``1/L``,
    ``L = 2 sigma_max(d)^2``, from ``z_init`` (default 0), stopping when no code moves by more than ``tol``.
    The one proximal-gradient solver of the sparse models; detached."""
    if method not in ("ista", "fista"):
        raise ValueError(f"method must be 'ista' or 'fista', got {method!r}")
    steps = check_positive_int(steps, "steps")
    tol = check_real(tol, "tol", minimum=0.0)
    y, d = y.detach(), d.detach()
    step = 1.0 / max(2.0 * float(torch.linalg.matrix_norm(d, ord=2)) ** 2, 1e-30)
    z = torch.zeros(y.shape[:-1] + (d.shape[0],), dtype=y.dtype, device=y.device)
    if z_init is not None:
        z = z + z_init.detach()
    v, t = z, 1.0
    for _ in range(steps):
        grad = -2.0 * (y - v @ d) @ d.T
        z_new = _soft(v - step * grad, lam * step)
        if method == "fista":
            t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            v = z_new + ((t - 1.0) / t_new) * (z_new - z)
            t = t_new
        else:
            v = z_new
        done = bool(((z_new - z).abs() <= tol).all())
        z = z_new
        if done:
            break
    return z


def _lasso_free_energy(energy, y, beta, quadratic, num_samples, seed, infer_kwargs) -> torch.Tensor:
    """``F_beta(y)`` of ``energy(y, z)`` (checked ``y``, scalar ``beta``): at ``beta = inf`` the minimum
    ``E(y, energy.infer(y))``; at finite ``beta`` importance sampling from the Gaussian that is exact for
    the energy's quadratic part in ``z``, ``||y_quad - z d||^2`` with ``(y_quad, d) = quadratic()`` (``d`` of
    full row rank)."""
    b = as_beta(beta, y)
    if b.dim() > 0:
        raise ValueError("beta must be a scalar here")
    if torch.isinf(b):
        return energy(y, energy.infer(y, **infer_kwargs))
    beta = float(b)
    if y.numel() == 0:  # an empty batch
        return y.new_zeros(y.shape[:-1])
    y_quad, d = quadratic()
    gram = 2.0 * beta * (d @ d.T)
    _, info = torch.linalg.cholesky_ex(gram.detach())
    if int(info) != 0:
        raise ValueError("free_energy at finite beta needs a dictionary of full row rank (k <= d)")
    z_ls = torch.linalg.solve(d @ d.T, (y_quad @ d.T).unsqueeze(-1)).squeeze(-1).detach()
    proposal = torch.distributions.MultivariateNormal(z_ls, precision_matrix=gram.detach())
    gen = make_generator(seed)
    return free_energy_importance(energy, y, proposal, num_samples, beta=beta, generator=gen).value


def _check_yz(energy, y, z):
    """``y`` ``[*batch, d]`` and ``z`` ``[*batch', k]`` for ``forward`` (finiteness is checked on the energy)."""
    y = check_state(y, "y", energy.event_shape)
    z = check_state(z, "z", energy.latent_shape)
    joint_batch(y, z, energy.event_shape, energy.latent_shape)
    return y, z


def _check_z_init(energy, y: torch.Tensor, z_init):
    """``z_init`` ``[*batch, k]`` broadcasting to the batch of ``y`` (or ``None``)."""
    if z_init is None:
        return None
    z_init = check_input(z_init, energy.latent_shape, "z_init")
    batch = y.shape[: y.dim() - len(energy.event_shape)]
    zb = z_init.shape[: z_init.dim() - len(energy.latent_shape)]
    try:
        ok = torch.broadcast_shapes(batch, zb) == batch
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"z_init must have y's batch shape {tuple(batch)} (or broadcast to it) + "
                         f"{tuple(energy.latent_shape)}, got {tuple(z_init.shape)}")
    return z_init


class SparseCoding(LatentEnergy):
    r"""Sparse coding (A2): a reconstruction cost plus an L1 regularizer on the code.

    .. math:: E(y, z) = \lVert y - z D \rVert^2 + \lambda \lVert z \rVert_1,

    ``D`` ``[k, d]`` (rows are atoms, scikit-learn's convention), ``z`` ``[k]``. The L1 term keeps most codes
    from reconstructing well, so only a union of low-dimensional subspaces spanned by few atoms gets low
    energy. Zero-temperature inference is the Lasso, solved by ISTA or FISTA; the finite-``beta`` free
    energy integrates ``z`` over :math:`\mathbb{R}^k` (:meth:`free_energy`).

    :param dictionary: ``[k, d]``.
    :param lam: ``lambda >= 0``.

    Example::

        >>> import torch
        >>> from pyro_ebm.models import SparseCoding
        >>> sc = SparseCoding(torch.eye(2), lam=0.5)
        >>> sc.infer(torch.tensor([[1.0, 0.1]]))  # soft threshold at lam / 2
        tensor([[0.7500, 0.0000]])
        >>> sc.free_energy(torch.tensor([[1.0, 0.1]]), beta=float("inf")).detach()  # 0.25^2 + 0.1^2 + 0.5 * 0.75
        tensor([0.4475])
    """

    def __init__(self, dictionary: torch.Tensor, lam: float = 0.1):
        dictionary = check_matrix(dictionary, "dictionary", "[k, d] (rows are atoms)")
        super().__init__(event_shape=(dictionary.shape[1],), latent_shape=(dictionary.shape[0],))
        self.lam = check_real(lam, "lam", minimum=0.0)
        self.dictionary = nn.Parameter(dictionary.detach().clone())

    def forward(self, y, z, x=None):
        if x is not None:
            raise TypeError("SparseCoding takes no conditioning x")
        y, z = _check_yz(self, y, z)
        e = ((y - z @ self.dictionary) ** 2).sum(-1) + self.lam * z.abs().sum(-1)
        return checked(e, "the sparse coding energy", [("y", y), ("z", z)], self)

    def lipschitz(self) -> float:
        """``L = 2 sigma_max(D)^2``, the Lipschitz constant of the reconstruction gradient in ``z``."""
        d = self.dictionary.detach()
        return 2.0 * float(torch.linalg.matrix_norm(d, ord=2)) ** 2

    def infer(self, y: torch.Tensor, method: str = "fista", *, steps: int = 1000, tol: float = 1e-10,
              z_init=None) -> torch.Tensor:
        """The sparse code ``argmin_z E(y, z)`` ``[*batch, k]`` by ISTA or FISTA (step ``1/L``), stopping when
        no code moves by more than ``tol``. Detached."""
        y = check_input(y, self.event_shape, "y")
        z_init = _check_z_init(self, y, z_init)
        return _lasso(y, self.dictionary, self.lam, method, steps, tol, z_init)

    def free_energy(self, y: torch.Tensor, beta=float("inf"), *, num_samples: int = 4096, seed=0,
                    **infer_kwargs) -> torch.Tensor:
        r"""``F_beta(y)`` ``[*batch]``. At ``beta = inf``: ``E(y, z*)`` with the FISTA code (differentiable in
        ``y`` and ``D`` by the envelope theorem). At finite ``beta``, :math:`-\frac1\beta\log\int
        e^{-\beta E(y,z)}dz` by importance sampling (:func:`pyro_ebm.free_energy_importance`) from the
        Gaussian that is exact for the reconstruction term (needs ``D`` of full row rank)."""
        y = check_input(y, self.event_shape, "y")
        return _lasso_free_energy(self, y, beta, lambda: (y, self.dictionary), num_samples, seed, infer_kwargs)

    def fit(self, Y, *, n_iter: int = 30, infer_steps: int = 300) -> "SparseCoding":
        """Dictionary learning by block coordinate descent on the summed energy: codes by FISTA, then the
        dictionary by least squares, atoms rescaled to unit norm (the L1 term would otherwise shrink the
        codes and grow the atoms). Records ``objective_`` (the summed energy after each round); returns self."""
        Y = check_data(Y, "Y", self.event_shape[0]).to(self.dictionary)
        n_iter = check_positive_int(n_iter, "n_iter")
        infer_steps = check_positive_int(infer_steps, "infer_steps")
        history = []
        with torch.no_grad():
            for _ in range(n_iter):
                z = self.infer(Y, steps=infer_steps)
                gram = z.T @ z + 1e-9 * torch.eye(z.shape[1], dtype=z.dtype)
                new = torch.linalg.solve(gram, z.T @ Y)
                norm = torch.linalg.vector_norm(new, dim=1, keepdim=True)
                dead = norm.squeeze(1) < 1e-12
                new = torch.where(dead[:, None], self.dictionary, new / norm.clamp(min=1e-12))
                self.dictionary.copy_(new)
                history.append(float(self(Y, self.infer(Y, steps=infer_steps)).sum()))
        self.objective_ = history
        return self


class SparseAutoEncoder(LatentEnergy):
    r"""The sparse auto-encoder of predictive sparse decomposition (Kavukcuoglu, Ranzato & LeCun 2008), A2.

    .. math:: E(y, z) = \lVert y - z D \rVert^2 + \lambda \lVert z \rVert_1
              + \alpha \lVert z - \mathrm{enc}(y) \rVert^2,

    sparse coding (:class:`SparseCoding`, ``D`` ``[k, d]``, rows are atoms) plus a term tying the code to an
    encoder's prediction. The smooth part is a reconstruction with the augmented dictionary
    ``[D, sqrt(alpha) I]`` ``[k, d + k]`` of the augmented input ``[y, sqrt(alpha) enc(y)]``, so inference is
    the same Lasso solver as :meth:`SparseCoding.infer` (ISTA/FISTA); with ``alpha = 0`` the model *is*
    sparse coding. :meth:`fit` trains the encoder (and the dictionary) by pushing down on ``E(y, z*)``, which
    regresses ``enc(y)`` onto the inferred codes: after training ``enc(y)`` is a fast approximate code.

    :param dictionary: ``D`` ``[k, d]``.
    :param encoder: module ``[*batch, d] -> [*batch, k]``.
    :param lam: ``lambda >= 0``.
    :param alpha: ``alpha >= 0``, the weight of the prediction term.

    Example::

        >>> import torch
        >>> from pyro_ebm.models import SparseAutoEncoder
        >>> enc = torch.nn.Linear(2, 2, bias=False)
        >>> _ = torch.nn.init.zeros_(enc.weight)  # predicts z = 0
        >>> sae = SparseAutoEncoder(torch.eye(2), enc, lam=0.5, alpha=1.0)
        >>> sae.infer(torch.tensor([[1.0, 0.1]]))  # (y - lam / 2) / (1 + alpha)
        tensor([[0.3750, 0.0000]])
        >>> y = torch.tensor([[1.0, 0.1]])
        >>> sae.free_energy(y, beta=float("inf")).detach()  # 0.625^2 + 0.5 * 0.375 + 0.375^2 + 0.1^2
        tensor([0.7287])
    """

    def __init__(self, dictionary: torch.Tensor, encoder: nn.Module, lam: float = 0.1, alpha: float = 1.0):
        dictionary = check_matrix(dictionary, "dictionary", "[k, d] (rows are atoms)")
        if not isinstance(encoder, nn.Module):
            raise TypeError(
                f"encoder must be a torch.nn.Module [*batch, d] -> [*batch, k], got {type(encoder).__name__}")
        check_module(encoder, "encoder", dictionary.shape[1:], dictionary.shape[:1], dictionary.dtype)
        super().__init__(event_shape=(dictionary.shape[1],), latent_shape=(dictionary.shape[0],))
        self.lam = check_real(lam, "lam", minimum=0.0)
        self.alpha = check_real(alpha, "alpha", minimum=0.0)
        self.dictionary = nn.Parameter(dictionary.detach().clone())
        self.encoder = encoder

    def predict(self, y: torch.Tensor) -> torch.Tensor:
        """The encoder's code ``enc(y)`` ``[*batch, k]`` (amortised inference)."""
        y = check_input(y, self.event_shape, "y")
        h = self.encoder(y)
        if not isinstance(h, torch.Tensor) or tuple(h.shape) != tuple(y.shape[:-1]) + tuple(self.latent_shape):
            raise ValueError(f"encoder must map y {tuple(y.shape)} to [*batch, {self.latent_shape[0]}], got "
                             f"{tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__}")
        return h

    def forward(self, y, z, x=None):
        if x is not None:
            raise TypeError("SparseAutoEncoder takes no conditioning x")
        y, z = _check_yz(self, y, z)
        e = ((y - z @ self.dictionary) ** 2).sum(-1) + self.lam * z.abs().sum(-1)
        e = e + self.alpha * ((z - self.encoder(y)) ** 2).sum(-1)
        return checked(e, "the sparse auto-encoder's energy", [("y", y), ("z", z)], self)

    def augmented_dictionary(self) -> torch.Tensor:
        """``D_aug = [D, sqrt(alpha) I]`` ``[k, d + k]``: ``||[y, sqrt(alpha) enc(y)] - z D_aug||^2`` is the smooth
        part of the energy."""
        d = self.dictionary
        eye = torch.eye(d.shape[0], dtype=d.dtype, device=d.device)
        return torch.cat([d, math.sqrt(self.alpha) * eye], -1)

    def augmented_input(self, y: torch.Tensor) -> torch.Tensor:
        """``[y, sqrt(alpha) enc(y)]`` ``[*batch, d + k]``."""
        return torch.cat([y, math.sqrt(self.alpha) * self.predict(y)], -1)

    def infer(self, y: torch.Tensor, method: str = "fista", *, steps: int = 1000, tol: float = 1e-10,
              z_init=None) -> torch.Tensor:
        """``z* = argmin_z E(y, z)`` ``[*batch, k]`` by ISTA/FISTA on the augmented Lasso (from ``z_init``,
        default 0; ``z_init=self.predict(y)`` warm-starts at the encoder's code). Detached."""
        y = check_input(y, self.event_shape, "y")
        z_init = _check_z_init(self, y, z_init)
        with torch.no_grad():
            y_aug = self.augmented_input(y)
        return _lasso(y_aug, self.augmented_dictionary(), self.lam, method, steps, tol, z_init)

    def free_energy(self, y: torch.Tensor, beta=float("inf"), *, num_samples: int = 4096, seed=0,
                    **infer_kwargs) -> torch.Tensor:
        r"""``F_beta(y)`` ``[*batch]``: at ``beta = inf`` the minimum ``E(y, z*)`` (differentiable in ``y``, ``D``
        and the encoder by the envelope theorem); at finite ``beta`` importance sampling as in
        :meth:`SparseCoding.free_energy`, from the Gaussian exact for the augmented reconstruction."""
        y = check_input(y, self.event_shape, "y")

        def quadratic():  # the augmented reconstruction, its input detached as in infer
            with torch.no_grad():
                y_aug = self.augmented_input(y)
            return y_aug, self.augmented_dictionary()

        return _lasso_free_energy(self, y, beta, quadratic, num_samples, seed, infer_kwargs)

    def fit(self, Y, *, epochs: int = 20, lr: float = 1e-2, batch_size: int = 64, seed=0, infer_steps: int = 200,
            learn_dictionary: bool = True) -> "SparseAutoEncoder":
        """Train by pushing down on ``E(y, z*)`` with Adam over minibatches of ``Y`` ``[N, d]``: codes ``z*`` by
        FISTA (``infer_steps``), then a gradient step on the encoder (which fits ``enc(y)`` to ``z*``) and, with
        ``learn_dictionary``, on the dictionary (atoms renormalised to unit norm). Records per epoch ``loss_``
        (mean energy at the codes) and ``prediction_error_`` (mean ``||z* - enc(y)||^2`` before each step);
        returns self."""
        Y = check_data(Y, "Y", self.event_shape[0]).to(self.dictionary)
        epochs = check_positive_int(epochs, "epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        lr = check_real(lr, "lr", minimum=0.0, strict=True)
        infer_steps = check_positive_int(infer_steps, "infer_steps")
        params = list(self.encoder.parameters()) + ([self.dictionary] if learn_dictionary else [])
        if not params:
            raise ValueError("fit needs parameters to train: an encoder with parameters or learn_dictionary=True")
        opt = torch.optim.Adam(params, lr=lr)
        gen = make_generator(seed)
        self.loss_, self.prediction_error_ = [], []
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(Y.shape[0], generator=gen)
            total, pred = 0.0, 0.0
            for i in range(0, Y.shape[0], batch_size):
                yb = Y[perm[i : i + batch_size]]
                z = self.infer(yb, steps=infer_steps)
                loss = self(yb, z).mean()
                with torch.no_grad():
                    pred += float(((z - self.encoder(yb)) ** 2).sum(-1).sum())
                opt.zero_grad()
                loss.backward()
                opt.step()
                if learn_dictionary:
                    with torch.no_grad():
                        self.dictionary.div_(self.dictionary.norm(dim=1, keepdim=True).clamp(min=1e-12))
                check_fit_finite(self, "SparseAutoEncoder.fit", lr, epoch)
                total += float(loss.detach()) * len(yb)
            self.loss_.append(total / Y.shape[0])
            self.prediction_error_.append(pred / Y.shape[0])
        return self


class LISTA(nn.Module):
    r"""Learned ISTA (Gregor & LeCun 2010): ``T`` layers of ``z <- soft(y W_e + z S, theta)``.

    Initialised so that it *is* ``T`` steps of ISTA on ``sparse_coding`` (``W_e = 2 D^T / L``,
    ``S = I - 2 D D^T / L``, ``theta = lam / L``, from ``z = 0``); :meth:`fit` then trains ``W_e``, ``S`` and
    ``theta`` to predict the optimal codes, so that ``T`` layers approximate the Lasso solution better than
    ``T`` ISTA steps. An amortised inference for the energy: ``sparse_coding(y, lista(y))`` is an upper bound
    of the zero-temperature free energy.

    :param sparse_coding: the :class:`SparseCoding` energy whose inference it learns.
    :param n_layers: ``T``.

    Example::

        >>> import torch
        >>> from pyro_ebm.models import LISTA, SparseCoding
        >>> sc = SparseCoding(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), lam=0.1)
        >>> y = torch.tensor([[1.0, 1.0]])
        >>> torch.allclose(LISTA(sc, n_layers=5)(y), sc.infer(y, "ista", steps=5))
        True
    """

    def __init__(self, sparse_coding: SparseCoding, n_layers: int = 3):
        super().__init__()
        if not isinstance(sparse_coding, SparseCoding):
            raise TypeError(f"sparse_coding must be a SparseCoding energy, got {type(sparse_coding).__name__}")
        self.n_layers = check_positive_int(n_layers, "n_layers")
        check_parameters(sparse_coding, "sparse_coding")
        probe = sparse_coding.dictionary.new_zeros((1,) + tuple(sparse_coding.event_shape))
        e = sparse_coding(probe, sparse_coding.dictionary.new_zeros((1,) + tuple(sparse_coding.latent_shape)))
        if not isinstance(e, torch.Tensor) or e.shape != (1,) or not bool(torch.isfinite(e).all()):
            raise ValueError("sparse_coding must give one finite energy per example (checked at y = 0, z = 0), got "
                             f"{e.detach() if isinstance(e, torch.Tensor) else type(e).__name__}")
        d = sparse_coding.dictionary.detach()
        lip = sparse_coding.lipschitz()
        k = d.shape[0]
        self.event_shape = sparse_coding.event_shape
        self.encoder = nn.Parameter(2.0 * d.T / lip)
        self.lateral = nn.Parameter(torch.eye(k, dtype=d.dtype) - 2.0 * d @ d.T / lip)
        self.threshold = nn.Parameter(torch.full((k,), sparse_coding.lam / lip, dtype=d.dtype))
        object.__setattr__(self, "sparse_coding", sparse_coding)  # a view, not a submodule

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """The code ``[*batch, k]`` after ``T`` layers."""
        y = check_input(y, self.event_shape, "y")
        b = y @ self.encoder
        z = _soft(b, self.threshold.clamp(min=0))
        for _ in range(self.n_layers - 1):
            z = _soft(b + z @ self.lateral, self.threshold.clamp(min=0))
        return checked(z, "the LISTA code", [("y", y)], self)

    def fit(self, Y, *, epochs: int = 300, lr: float = 1e-3, batch_size: int = 128, seed=0,
            target_steps: int = 500) -> "LISTA":
        """Train on ``Y`` ``[N, d]`` to regress the FISTA codes (``target_steps`` iterations; mean squared code
        error, Adam); records ``loss_`` per epoch; returns self."""
        Y = check_data(Y, "Y", self.event_shape[0]).to(self.encoder)
        epochs = check_positive_int(epochs, "epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        lr = check_real(lr, "lr", minimum=0.0, strict=True)
        target = self.sparse_coding.infer(Y, steps=check_positive_int(target_steps, "target_steps"))
        gen = make_generator(seed)
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        self.loss_ = []
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(Y.shape[0], generator=gen)
            total = 0.0
            for i in range(0, Y.shape[0], batch_size):
                idx = perm[i : i + batch_size]
                loss = ((self(Y[idx]) - target[idx]) ** 2).sum(-1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                check_fit_finite(self, "LISTA.fit", lr, epoch)
                total += float(loss.detach()) * len(idx)
            self.loss_.append(total / Y.shape[0])
        return self
