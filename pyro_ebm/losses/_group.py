"""Group losses: InfoNCE, NCE, NCA."""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from .._validation import check_beta, check_beta_batch, check_finite
from ._common import _beta_tensor, _check_energy, _check_pair, _check_reduction, _check_values, _reduce


# ----------------------------------------------------------------------------------------------------------
# group losses
# ----------------------------------------------------------------------------------------------------------


def info_nce(pos: torch.Tensor, neg: torch.Tensor, beta=1.0, *, reduction: str = "mean") -> torch.Tensor:
    r"""InfoNCE loss [Oord 2018, Misra 2019, Chen 2020]: classify the positive among ``p`` negatives.

    .. math::
        L = -\log \frac{e^{-\beta F(x, y)}}{e^{-\beta F(x, y)} + \sum_{i=1}^{p} e^{-\beta F(x, \hat y_i)}}

    This is the cross-entropy of the softmax over the logits :math:`-\beta F` with the positive as the
    class. ``beta`` is an inverse temperature (``1/tau`` in the contrastive-learning literature); unlike
    :func:`nll` the loss is *not* divided by ``beta``. **Margin: infinite (implicit).**

    :param pos: energies :math:`F(x, y)` of the positive pairs, shape ``batch``.
    :param neg: energies :math:`F(x, \hat y_i)` of the negatives, shape ``batch + (p,)`` (or ``batch`` for a
        single negative).
    :param beta: inverse temperature ``> 0``, a float or a tensor broadcastable to ``batch``.
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import info_nce
        >>> loss = info_nce(torch.tensor([0.0]), torch.tensor([[0.0, 0.0, 0.0]]), reduction="none")
        >>> print(round(loss.item(), 4))  # log 4
        1.3863
    """
    reduction = _check_reduction(reduction)
    pos, neg, multi = _check_pair(pos, neg)
    check_beta(beta)
    check_beta_batch(beta, neg.shape[: neg.dim() - int(multi)], what="the batch shape of pos")
    b = _beta_tensor(beta, neg)
    if b.dim() > 0:
        b = b.unsqueeze(-1)
    if not multi:
        pos, neg = pos.unsqueeze(-1), neg.unsqueeze(-1)
    energies = torch.cat([pos, neg], dim=-1)
    # shift by the smallest energy before scaling, so that large energies keep their float precision
    shifted = energies - energies.detach().min(-1, keepdim=True).values
    loss = torch.logsumexp(-b * shifted, dim=-1) + (b * shifted)[..., 0]
    return _reduce(loss, reduction)


def nce(
    pos: torch.Tensor,
    neg: torch.Tensor,
    log_noise_pos: torch.Tensor,
    log_noise_neg: torch.Tensor,
    log_partition=0.0,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Noise-contrastive estimation [Gutmann & Hyvarinen 2010]: logistic regression of data against noise.

    The model density is :math:`p_m(u) = e^{-F(u) - c}` with :math:`c` an estimate of :math:`\log Z`
    (``log_partition``, typically a learnable tensor). With :math:`\nu` noise samples per data point drawn
    from a noise density :math:`p_n`, let :math:`G(u) = \log p_m(u) - \log p_n(u)` and
    :math:`h(u) = \sigma(G(u) - \log \nu)`, the posterior probability that :math:`u` is data. The loss of
    one data point :math:`x` with its noise samples :math:`\hat y_1 \dots \hat y_\nu` is

    .. math::
        L = -\log h(x) - \sum_{j=1}^{\nu} \log\left(1 - h(\hat y_j)\right)
          = \operatorname{softplus}(\log\nu - G(x)) + \sum_{j} \operatorname{softplus}(G(\hat y_j) - \log\nu),

    whose mean over the batch is the negative of Gutmann & Hyvarinen's objective :math:`J_T`. Its minimum
    in :math:`(F, c)` is at the data density with :math:`c = \log Z`, so, unlike maximum likelihood, the
    log-partition is *learned* (the gradient with respect to ``log_partition`` vanishes in expectation at
    the true :math:`\log Z`). **Margin: infinite (implicit).**

    :param pos: energies :math:`F(x)` of the data points, shape ``batch``.
    :param neg: energies of the noise samples, shape ``batch + (nu,)`` (or ``batch`` for ``nu = 1``). A
        pool of ``nu * N`` noise samples for ``N`` data points can be reshaped to ``[N, nu]``: the mean
        loss does not depend on how noise samples are grouped.
    :param log_noise_pos: :math:`\log p_n(x)` at the data points, shape of ``pos``; finite (the noise
        density must be positive wherever the data are).
    :param log_noise_neg: :math:`\log p_n(\hat y)` at the noise samples, shape of ``neg``; finite.
    :param log_partition: :math:`c`, a float or a tensor broadcastable to ``batch`` (may require grad).
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import nce
        >>> # energy equal to the noise's negative log density and c = 0: h = 1/(1 + nu) for every point
        >>> pos, neg = torch.tensor([1.0]), torch.tensor([[2.0, 3.0]])
        >>> loss = nce(pos, neg, -pos, -neg, reduction="none")
        >>> print(round(loss.item(), 4))  # log 3 + 2 log(3/2)
        1.9095
    """
    reduction = _check_reduction(reduction)
    pos, neg, multi = _check_pair(pos, neg)
    lp = _check_energy(log_noise_pos, "log_noise_pos")
    ln = _check_energy(log_noise_neg, "log_noise_neg")
    pos_shape = pos.shape[:-1] if multi else pos.shape
    if lp.shape != pos_shape:
        raise ValueError(f"log_noise_pos must have the shape of pos {tuple(pos_shape)}, got {tuple(lp.shape)}")
    if ln.shape != neg.shape:
        raise ValueError(f"log_noise_neg must have the shape of neg {tuple(neg.shape)}, got {tuple(ln.shape)}")
    # the noise density is positive and finite at the data (NCE needs it) and at its own samples
    _check_values(lp, ln, "log_noise_pos", "log_noise_neg", neg_pos_inf=False)
    if isinstance(log_partition, bool) or not isinstance(log_partition, (numbers.Real, torch.Tensor)):
        raise TypeError(f"log_partition must be a float or a tensor, got {type(log_partition).__name__}")
    c = log_partition if isinstance(log_partition, torch.Tensor) else torch.tensor(float(log_partition))
    c = c.to(dtype=pos.dtype, device=pos.device)
    if not torch.isfinite(c.detach()).all():
        raise ValueError("log_partition must be finite")
    try:
        torch.broadcast_shapes(c.shape, pos_shape)
    except RuntimeError:
        raise ValueError(
            f"log_partition must broadcast to the batch shape {tuple(pos_shape)}, got {tuple(c.shape)}"
        ) from None
    nu = neg.shape[-1] if multi else 1
    log_nu = math.log(nu)
    pos_ = pos.squeeze(-1) if multi else pos
    g_pos = -pos_ - c - lp
    g_neg = -neg - (c.unsqueeze(-1) if (multi and c.dim() > 0) else c) - ln
    loss = F.softplus(log_nu - g_pos)
    neg_terms = F.softplus(g_neg - log_nu)
    loss = loss + (neg_terms.sum(-1) if multi else neg_terms)
    return _reduce(loss, reduction)


def nca(energies: torch.Tensor, same: torch.Tensor, beta=1.0, *, reduction: str = "mean") -> torch.Tensor:
    r"""Neighbourhood component analysis [Goldberger et al. 2005] in energy form.

    For an anchor :math:`i` with energies :math:`E_{ij}` to the other points :math:`j` (e.g. squared
    distances between embeddings) and :math:`C_i` the points of its class,

    .. math::
        L_i = -\log \sum_{j \in C_i} \frac{e^{-\beta E_{ij}}}{\sum_{k} e^{-\beta E_{ik}}}
            = \log \sum_{k} e^{-\beta E_{ik}} - \log \sum_{j \in C_i} e^{-\beta E_{ij}},

    the negative log-probability that a stochastic nearest neighbour of :math:`i` has its class.
    Same-class energies are pushed down and other-class energies up. **Margin: infinite (implicit).**

    :param energies: energies from each anchor to the candidate neighbours, shape ``batch + (N,)``. The
        anchor itself must not be a candidate: drop it or give it energy ``+inf`` (no NaN or ``-inf``).
    :param same: boolean mask of the same shape, ``True`` where the candidate has the anchor's class.
        Every anchor needs at least one same-class candidate of finite energy (otherwise the loss would
        be infinite): drop anchors that are alone in their class from the batch.
    :param beta: inverse temperature ``> 0``, a float or a tensor broadcastable to ``batch``.
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import nca
        >>> E = torch.tensor([[0.0, 0.0, 1e4], [0.0, 0.0, 0.0]])
        >>> same = torch.tensor([[True, False, False], [True, False, False]])
        >>> loss = nca(E, same, reduction="none")
        >>> print([round(v, 4) for v in loss.tolist()])  # log 2, log 3
        [0.6931, 1.0986]
    """
    reduction = _check_reduction(reduction)
    energies = _check_energy(energies, "energies")
    if energies.dim() < 1:
        raise ValueError(f"energies must have shape [*batch, N], got {tuple(energies.shape)}")
    if not isinstance(same, torch.Tensor) or same.dtype != torch.bool:
        got = same.dtype if isinstance(same, torch.Tensor) else type(same).__name__
        raise TypeError(f"same must be a boolean tensor (same-class mask), got {got}")
    if same.shape != energies.shape:
        raise ValueError(f"same must have the shape of energies {tuple(energies.shape)}, got {tuple(same.shape)}")
    e = energies.detach()
    if bool((torch.isnan(e) | torch.isneginf(e)).any()):
        check_finite(e, "energies", allow_pos_inf=True)  # +inf excludes a candidate (the anchor itself)
    alone = ~(same & ~torch.isposinf(e)).any(-1)
    if alone.any():
        idx = tuple(int(i) for i in alone.nonzero()[0].tolist())
        raise ValueError(
            f"same must mark at least one same-class candidate with a finite energy for every anchor; "
            f"anchor {idx} has none ({int(alone.sum())} anchors in total)"
        )
    check_beta(beta)
    check_beta_batch(beta, energies.shape[:-1], what="the batch shape of energies")
    b = _beta_tensor(beta, energies)
    if b.dim() > 0:
        b = b.unsqueeze(-1)
    # shift by the smallest energy before scaling, so that large energies keep their float precision
    logits = -b * (energies - energies.detach().min(-1, keepdim=True).values)
    masked = logits.masked_fill(~same, float("-inf"))
    loss = torch.logsumexp(logits, dim=-1) - torch.logsumexp(masked, dim=-1)
    return _reduce(loss, reduction)
