"""Score matching (A4 of the lecture) and denoising score matching (C3): losses of the energy *function*."""

from __future__ import annotations

import math
import numbers

import torch

from ._common import _check_reduction, _reduce


# ----------------------------------------------------------------------------------------------------------
# score matching (A4 of the lecture) and denoising score matching (C3): losses of the energy *function*
# ----------------------------------------------------------------------------------------------------------


def _score_setup(energy, y, event_shape):
    """The energy as an :class:`~pyro_ebm.Energy`, ``y`` as a leaf that requires grad, and the event dims."""
    from .._validation import check_finite
    from ..energy import Energy, as_energy, batch_shape_of

    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        raise TypeError(f"y must be a floating-point tensor [*batch, *event_shape], got "
                        f"{type(y).__name__ if not isinstance(y, torch.Tensor) else y.dtype}")
    if event_shape is None and not isinstance(energy, Energy):
        event_shape = y.shape[-1:]
    energy = as_energy(energy, event_shape=event_shape)
    if energy.has_latent:
        raise TypeError("energy must be an energy of y alone (for a LatentEnergy, pass its free energy)")
    batch = batch_shape_of(y, energy.event_shape, "y")
    if batch.numel() == 0:
        raise ValueError(f"y must hold at least one point [*batch, *event_shape], got shape {tuple(y.shape)}")
    check_finite(y, "y")
    dims = tuple(range(len(batch), y.dim()))
    return energy, y.detach().requires_grad_(True), dims


def _energy_grad(energy, y):
    with torch.enable_grad():
        e = energy.energy(y)
        (g,) = torch.autograd.grad(e.sum(), y, create_graph=True)
    return g


def _hvp(g, y, v, dims):
    """``v^T (d g / d y) v`` per batch element (``0`` where ``g`` does not depend on ``y``)."""
    with torch.enable_grad():
        if not g.requires_grad:
            return torch.zeros(g.shape[: g.dim() - len(dims)], dtype=g.dtype, device=g.device)
        (h,) = torch.autograd.grad((g * v).sum(), y, create_graph=True, allow_unused=True)
    if h is None:
        return torch.zeros(g.shape[: g.dim() - len(dims)], dtype=g.dtype, device=g.device)
    return (h * v).sum(dims)


def score_matching(energy, y: torch.Tensor, *, event_shape=None, reduction: str = "mean") -> torch.Tensor:
    r"""Hyvarinen's score matching objective for an energy (A4: minimize the gradient and maximize the
    curvature at the data).

    .. math:: L(y) = \tfrac12 \lVert \nabla_y F(y) \rVert^2 - \Delta_y F(y)

    per sample, with the exact Laplacian (one backward pass per dimension of ``y``: for low dimension; use
    :func:`sliced_score_matching` otherwise). With the model density :math:`p \propto e^{-F}` its expectation
    under the data equals the Fisher divergence :math:`\frac12 \mathbb E\lVert \nabla \log p - \nabla\log
    p_{\text{data}}\rVert^2` up to a constant, and does not involve the partition function. Differentiable
    with respect to the energy's parameters.

    :param energy: an :class:`~pyro_ebm.Energy` or callable ``F(y)``.
    :param y: data ``[*batch, *event_shape]``.
    :param event_shape: shape of one ``y`` for a callable (default ``y.shape[-1:]``).
    :param reduction: ``"none"`` (shape ``batch``), ``"mean"`` or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import score_matching
        >>> F = lambda y: 0.5 * 2.0 * (y ** 2).sum(-1)  # precision 2 in 3-D
        >>> score_matching(F, torch.tensor([[1.0, 0.0, 0.0]]), reduction="none")  # 0.5 * 4 - 6
        tensor([-4.], grad_fn=<SubBackward0>)
    """
    reduction = _check_reduction(reduction)
    energy, y, dims = _score_setup(energy, y, event_shape)
    g = _energy_grad(energy, y)
    lap = torch.zeros(g.shape[: y.dim() - len(dims)], dtype=g.dtype, device=g.device)
    flat = g.reshape(g.shape[: y.dim() - len(dims)] + (-1,))
    for i in range(flat.shape[-1]):
        basis = torch.zeros(flat.shape[-1], dtype=g.dtype, device=g.device)
        basis[i] = 1.0
        lap = lap + _hvp(g, y, basis.reshape(g.shape[y.dim() - len(dims):]), dims)
    loss = 0.5 * (g**2).sum(dims) - lap
    return _reduce(loss, reduction)


def sliced_score_matching(energy, y: torch.Tensor, num_projections: int = 1, *, projection: str = "gaussian",
                          seed=None, event_shape=None, reduction: str = "mean") -> torch.Tensor:
    r"""Sliced score matching (Song, Garg, Shi & Ermon 2019): score matching along random directions.

    .. math:: L(y) = \frac1P \sum_{p=1}^{P} \Big[\tfrac12 (v_p^\top \nabla_y F)^2 - v_p^\top \nabla^2_y F\, v_p\Big]

    with :math:`\mathbb E[v v^\top] = I` (standard Gaussian or Rademacher ``v``): an unbiased estimate of
    :func:`score_matching` that costs one Hessian-vector product per projection, whatever the dimension.

    :param num_projections: ``P`` directions per sample.
    :param projection: ``"gaussian"`` or ``"rademacher"``.
    :param seed: seed or ``torch.Generator`` of the directions.
    :returns: as :func:`score_matching`.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import sliced_score_matching
        >>> F = lambda y: 0.5 * (y ** 2).sum(-1)
        >>> sliced_score_matching(F, torch.zeros(1, 2), 1, projection="rademacher", seed=0, reduction="none")
        tensor([-2.], grad_fn=<MeanBackward1>)
    """
    from .._rng import make_generator
    from .._validation import check_positive_int

    reduction = _check_reduction(reduction)
    num_projections = check_positive_int(num_projections, "num_projections")
    if projection not in ("gaussian", "rademacher"):
        raise ValueError(f"projection must be 'gaussian' or 'rademacher', got {projection!r}")
    gen = make_generator(seed)
    energy, y, dims = _score_setup(energy, y, event_shape)
    g = _energy_grad(energy, y)
    terms = []
    for _ in range(num_projections):
        if projection == "gaussian":
            v = torch.randn(y.shape, generator=gen, dtype=y.dtype, device="cpu").to(y.device)
        else:
            v = torch.randint(0, 2, y.shape, generator=gen, device="cpu").to(y) * 2.0 - 1.0
        terms.append(0.5 * (g * v).sum(dims) ** 2 - _hvp(g, y, v, dims))
    return _reduce(torch.stack(terms).mean(0), reduction)


def denoising_score_matching(energy, y: torch.Tensor, sigma: float, *, noise=None, seed=None, event_shape=None,
                             reduction: str = "mean") -> torch.Tensor:
    r"""Denoising score matching (Vincent 2011; C3: map points off the data manifold back onto it).

    .. math:: L(y) = \tfrac12 \Big\lVert \nabla_y F(\tilde y) - \frac{\tilde y - y}{\sigma^2} \Big\rVert^2,
              \qquad \tilde y = y + \sigma\varepsilon,\ \varepsilon \sim \mathcal N(0, I)

    The model score :math:`-\nabla F(\tilde y)` regresses the score of the corruption kernel, which points
    from the corrupted point back to the clean one. Its expectation equals the score matching objective for
    the data density smoothed by the noise, up to a constant; no second derivatives are needed.

    :param sigma: noise scale ``> 0``.
    :param noise: optional ``epsilon`` of ``y``'s shape (drawn from ``seed`` otherwise).
    :param seed: seed or ``torch.Generator`` of the noise.
    :returns: as :func:`score_matching`.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import denoising_score_matching
        >>> F = lambda y: 0.5 * (y ** 2).sum(-1)
        >>> eps = torch.tensor([[1.0, 0.0]])
        >>> denoising_score_matching(F, torch.zeros(1, 2), 0.5, noise=eps, reduction="none")  # (0.5 - 2)^2 / 2
        tensor([1.1250], grad_fn=<MulBackward0>)
    """
    from .._rng import check_seed, make_generator
    from .._validation import check_finite

    reduction = _check_reduction(reduction)
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a finite number > 0 (the noise scale), got {sigma!r}")
    check_seed(seed)  # checked even when ``noise`` is given and the seed is not used
    energy, y0, dims = _score_setup(energy, y, event_shape)
    y0 = y0.detach()
    if noise is None:
        noise = torch.randn(y0.shape, generator=make_generator(seed), dtype=y0.dtype, device="cpu").to(y0.device)
    elif not isinstance(noise, torch.Tensor) or not noise.is_floating_point():
        raise TypeError(f"noise must be a floating-point tensor of y's shape {tuple(y0.shape)}, got "
                        f"{noise.dtype if isinstance(noise, torch.Tensor) else type(noise).__name__}")
    elif noise.shape != y0.shape:
        raise ValueError(f"noise must be a tensor of y's shape {tuple(y0.shape)}, got "
                         f"{tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__}")
    else:
        check_finite(noise, "noise")
        noise = noise.to(y0)
    y_noisy = (y0 + sigma * noise).requires_grad_(True)
    g = _energy_grad(energy, y_noisy)
    loss = 0.5 * ((g - noise / sigma) ** 2).sum(dims)
    return _reduce(loss, reduction)
