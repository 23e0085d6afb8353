"""Losses over a finite set of outputs, maximum likelihood with sampled negatives, and pseudo-likelihood."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._validation import check_beta, check_beta_batch
from ._common import (
    _beta_tensor,
    _check_candidates,
    _check_energy,
    _check_nonneg,
    _check_pair,
    _check_reduction,
    _gather,
    _reduce,
)


# ----------------------------------------------------------------------------------------------------------
# losses over a finite set of outputs
# ----------------------------------------------------------------------------------------------------------


def _shifted_logsumexp(energies: torch.Tensor, beta) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(b, emin, soft)`` with ``soft = (1/b) log sum exp(-b (E - emin)) >= 0`` (0 where b = inf)."""
    b = _beta_tensor(beta, energies)
    if b.dim() > 0:
        b = b.unsqueeze(-1)
    emin = energies.min(-1, keepdim=True).values
    inf_b = torch.isinf(b)
    b_safe = torch.where(inf_b, torch.ones_like(b), b)
    soft = torch.logsumexp(-b_safe * (energies - emin), dim=-1, keepdim=True) / b_safe
    soft = torch.where(inf_b, torch.zeros_like(soft), soft)
    return b, emin, soft


def nll(energies: torch.Tensor, target: torch.Tensor, beta=1.0, *, reduction: str = "mean") -> torch.Tensor:
    r"""Negative log-likelihood / maximum mutual information loss over a finite set of outputs.

    .. math::
        L = F(x, y) + \frac{1}{\beta} \log \sum_{y' \in \mathcal{Y}} e^{-\beta F(x, y')}
          = -\frac{1}{\beta} \log P_\beta(y \mid x)

    with the Gibbs-Boltzmann distribution :math:`P_\beta(y \mid x) \propto e^{-\beta F(x, y)}` over the
    ``K`` candidates. **Margin: infinite.** The gradient pushes down on :math:`F(x, y)` and up on every
    candidate in proportion to its probability. As ``beta -> inf`` the loss tends to the perceptron loss
    :math:`F(x, y) - \min_{y'} F(x, y')`; ``beta = inf`` computes that limit exactly.

    Computed as :math:`F(x,y) - F_{\min} + \frac1\beta \log\sum e^{-\beta (F(x,y') - F_{\min})}`, which is
    stable for large energies and large ``beta``. An energy of ``+inf`` excludes a candidate.

    :param energies: energies of all candidate outputs, shape ``batch + (K,)``.
    :param target: integer indices in ``[0, K)`` of the desired outputs, shape ``batch``.
    :param beta: inverse temperature ``> 0``, a float or a tensor broadcastable to ``batch``; ``inf``
        allowed.
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import nll
        >>> E = torch.tensor([[0.0, 1.0, 2.0]])
        >>> print(round(nll(E, torch.tensor([1])).item(), 4))
        1.4076
        >>> nll(E, torch.tensor([1]), beta=float("inf"))
        tensor(1.)
    """
    reduction = _check_reduction(reduction)
    energies, target = _check_candidates(energies, target)
    check_beta(beta, allow_inf=True)
    check_beta_batch(beta, energies.shape[:-1], what="the batch shape of energies")
    _, emin, soft = _shifted_logsumexp(energies, beta)
    loss = _gather(energies, target) - emin.squeeze(-1) + soft.squeeze(-1)
    return _reduce(loss, reduction)


def mee(energies: torch.Tensor, target: torch.Tensor, beta=1.0, *, reduction: str = "mean") -> torch.Tensor:
    r"""Minimum empirical error loss: one minus the Gibbs-Boltzmann probability of the desired answer.

    .. math::
        L = 1 - \frac{e^{-\beta F(x, y)}}{\sum_{y' \in \mathcal{Y}} e^{-\beta F(x, y')}}

    **Margin: infinite** (in the lecture's table), though the loss saturates: a candidate far above the
    others gets an exponentially small gradient. It is bounded in ``[0, 1]``, so outliers cannot dominate.
    ``beta = inf`` gives the zero-temperature limit: ``1 - 1/n`` if the desired answer is one of ``n``
    tied minimizers, ``1`` otherwise (the 0-1 error, with zero gradient almost everywhere).

    :param energies: energies of all candidate outputs, shape ``batch + (K,)``.
    :param target: integer indices in ``[0, K)`` of the desired outputs, shape ``batch``.
    :param beta: inverse temperature ``> 0``, a float or a tensor broadcastable to ``batch``; ``inf``
        allowed.
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import mee
        >>> E = torch.tensor([[0.0, 0.0], [0.0, 1e4]])
        >>> mee(E, torch.tensor([0, 1]), reduction="none")
        tensor([0.5000, 1.0000])
    """
    reduction = _check_reduction(reduction)
    energies, target = _check_candidates(energies, target, finite_target=False)  # +inf: probability 0, loss 1
    check_beta(beta, allow_inf=True)
    check_beta_batch(beta, energies.shape[:-1], what="the batch shape of energies")
    b, emin, soft = _shifted_logsumexp(energies, beta)
    b = b.squeeze(-1) if b.dim() > 0 else b
    gap = _gather(energies, target) - emin.squeeze(-1)  # >= 0
    inf_b = torch.isinf(b)
    b_safe = torch.where(inf_b, torch.ones_like(b), b)
    log_p = -b_safe * gap - b_safe * soft.squeeze(-1)
    loss_soft = -torch.expm1(log_p)
    n_min = (energies == emin).sum(-1).to(energies.dtype)
    loss_zero_t = 1.0 - (gap == 0).to(energies.dtype) / n_min
    loss = torch.where(inf_b, loss_zero_t, loss_soft)
    return _reduce(loss, reduction)


def general_margin(
    energies: torch.Tensor, target: torch.Tensor, margin=1.0, *, reduction: str = "mean"
) -> torch.Tensor:
    r"""General margin loss: a hinge against every wrong output, with a margin that depends on the pair.

    .. math::
        L = \sum_{\hat y \in \mathcal{Y},\, \hat y \ne y}
            \left[F(x, y) - F(x, \hat y) + m(y, \hat y)\right]^+

    **Margin: m(y, y-hat).** The margin can grow with the distance between the outputs, so that a nearly
    right answer needs to be less far above the right one than a very wrong answer.

    :param energies: energies of all candidate outputs, shape ``batch + (K,)``.
    :param target: integer indices in ``[0, K)`` of the desired outputs, shape ``batch``.
    :param margin: a non-negative float (the same margin for all pairs) or a ``[K, K]`` tensor whose entry
        ``[y, y_hat]`` is :math:`m(y, \hat y)`; its diagonal is not used.
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import general_margin
        >>> E = torch.tensor([[0.0, 0.5, 3.0]])
        >>> M = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
        >>> general_margin(E, torch.tensor([0]), M, reduction="none")
        tensor([0.5000])
    """
    reduction = _check_reduction(reduction)
    energies, target = _check_candidates(energies, target)
    k = energies.shape[-1]
    m = _check_nonneg(margin, "margin", energies)
    if m.dim() == 0:
        m_rows = m.expand(energies.shape)
    elif m.shape == (k, k):
        m_rows = m[target]
    else:
        raise ValueError(f"margin must be a scalar or a [K, K] = [{k}, {k}] matrix, got shape {tuple(m.shape)}")
    pos = _gather(energies, target).unsqueeze(-1)
    terms = F.relu(pos - energies + m_rows)
    not_target = torch.ones_like(terms, dtype=torch.bool).scatter(-1, target.unsqueeze(-1), False)
    loss = torch.where(not_target, terms, torch.zeros_like(terms)).sum(-1)
    return _reduce(loss, reduction)


# ----------------------------------------------------------------------------------------------------------
# maximum likelihood with sampled negatives
# ----------------------------------------------------------------------------------------------------------


def ml_sampled(pos: torch.Tensor, neg: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    r"""Maximum likelihood with sampled negatives (MC/MCMC), and contrastive divergence.

    .. math:: L = F(x, y) - \frac{1}{p} \sum_{j=1}^{p} F(x, \hat y_j)

    Rows 3 and 4 of the lecture's loss zoo. The gradient of the negative log-likelihood
    :math:`F(x, y) + \frac1\beta \log \int e^{-\beta F(x, y')} dy'` is
    :math:`\partial F(x, y) - \mathbb{E}_{y' \sim P_\beta(y'|x)}[\partial F(x, y')]`. With negatives
    :math:`\hat y_j` **drawn from** :math:`P_\beta(\cdot \mid x)` (exact sampling, MC or MCMC run to
    equilibrium) the gradient of this function is an unbiased Monte-Carlo estimate of that gradient. Its
    **value is not the negative log-likelihood** and is not even bounded below (it can be made arbitrarily
    negative by lowering every energy); do not monitor it as a likelihood, and treat the negatives as
    constants (sample them without gradient, e.g. under ``torch.no_grad()``).

    **Contrastive divergence** uses the very same formula, with negatives from a *truncated* MCMC chain
    (``k`` steps, CD-k) started at the data, or from persistent chains (PCD). Its gradient is then a biased
    estimate of the NLL gradient that follows the local shape of the energy around the data. There is one
    function because the two methods differ only in how ``neg`` was produced (see the negative generators
    of the library).

    **Margin:** that of maximum likelihood (infinite): nothing bounds how far apart the energies are pushed,
    which is why the energy must be regularized.

    :param pos: energies :math:`F(x, y)` of the data, shape ``batch``.
    :param neg: energies of the sampled negatives (finite), shape ``batch`` (one sample) or ``batch + (p,)``
        (averaged over ``p``). For an unconditional model with a shared pool of ``M`` negatives, pass
        ``neg.expand(*pos.shape, M)``.
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import ml_sampled
        >>> ml_sampled(torch.tensor([1.0]), torch.tensor([[2.0, 4.0]]), reduction="none")
        tensor([-2.])
    """
    reduction = _check_reduction(reduction)
    pos, neg, multi = _check_pair(pos, neg, neg_pos_inf=False)  # a sampled negative has a finite energy
    loss = (pos - neg).mean(-1) if multi else pos - neg
    return _reduce(loss, reduction)


# ----------------------------------------------------------------------------------------------------------
# pseudo-likelihood
# ----------------------------------------------------------------------------------------------------------


def pseudo_likelihood(energies: torch.Tensor, target: torch.Tensor, beta=1.0, *, reduction: str = "mean") -> torch.Tensor:
    r"""Negative log pseudo-likelihood [Besag 1975] of discrete configurations.

    .. math:: L = -\frac{1}{\beta} \sum_{d=1}^{D} \log p_\beta(y_d \mid y_{\setminus d})
              = \sum_{d} \Big[F(y) + \frac{1}{\beta} \log \sum_{k=1}^{K} e^{-\beta F(y^{(d \to k)})}\Big],

    where :math:`y^{(d \to k)}` is ``y`` with site ``d`` set to its ``k``-th value. Each conditional is a
    softmax over one site's ``K`` values, so no partition function is needed; the minimiser over the
    energy's parameters is a consistent estimator (the :func:`nll` of each site, summed over sites).
    :func:`pyro_ebm.likelihood.site_conditionals` builds the configurations :math:`y^{(d \to k)}` and
    ``target``. **Margin: infinite (implicit)**, like :func:`nll`.

    :param energies: :math:`F(y^{(d \to k)})`, shape ``batch + (D, K)``.
    :param target: index of ``y``'s own value at each site, shape ``batch + (D,)`` (so
        ``energies[..., d, target[..., d]]`` is :math:`F(y)`).
    :param beta: inverse temperature ``> 0``, a float or a tensor broadcastable to ``batch + (D,)``; ``inf``
        allowed (each site's :func:`nll` at its zero-temperature limit, the perceptron loss).
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"`` over ``batch``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import pseudo_likelihood
        >>> # two independent sites; energies of (site value 0, site value 1); y = (1, 0)
        >>> E = torch.tensor([[[0.0, -1.0], [0.0, 2.0]]])
        >>> loss = pseudo_likelihood(E, torch.tensor([[1, 0]]), reduction="none")
        >>> print(round(loss.item(), 4))  # -log sigmoid(1) - log sigmoid(2)
        0.4402
    """
    reduction = _check_reduction(reduction)
    energies = _check_energy(energies, "energies")
    if energies.dim() < 2:
        raise ValueError(f"energies must have shape [*batch, D, K], got {tuple(energies.shape)}")
    loss = nll(energies, target, beta, reduction="none")
    return _reduce(loss.sum(-1), reduction)
