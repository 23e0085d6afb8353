"""Pairwise losses: the energy of the desired answer against one or several contrastive ones."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._validation import check_beta, check_beta_batch, check_some_finite
from ._common import (
    _align,
    _beta_tensor,
    _check_energy,
    _check_margin,
    _check_nonneg,
    _check_pair,
    _check_reduction,
    _reduce,
)


# ----------------------------------------------------------------------------------------------------------
# pairwise losses
# ----------------------------------------------------------------------------------------------------------


def energy_loss(pos: torch.Tensor, neg: torch.Tensor | None = None, *, reduction: str = "mean") -> torch.Tensor:
    r"""Energy loss: push down on the energy of the data and nothing else.

    .. math:: L = F(x, y)

    **Margin: 0.** There is no contrastive term, so this loss works only with architectures whose energy
    cannot collapse (regularized or architectural methods); with a flexible energy it makes the energy flat.

    :param pos: energies :math:`F(x, y)` of the desired answers, shape ``batch``.
    :param neg: optional, ignored apart from a shape check; accepted so that every pairwise loss can be
        called as ``loss(pos, neg)``. It receives no gradient.
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.
    :returns: per-example losses of shape ``batch`` for ``reduction="none"``, else a scalar.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import energy_loss
        >>> energy_loss(torch.tensor([0.5, 2.0]), reduction="none")
        tensor([0.5000, 2.0000])
        >>> energy_loss(torch.tensor([0.5, 2.0]))
        tensor(1.2500)
    """
    reduction = _check_reduction(reduction)
    pos = _check_energy(pos, "pos")
    if neg is not None:
        _check_pair(pos, neg)
    return _reduce(pos, reduction)


def perceptron(pos: torch.Tensor, energies: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    r"""Perceptron loss: energy of the desired answer minus the energy of the best answer.

    .. math:: L = F(x, y) - \min_{\check y \in \mathcal{Y}} F(x, \check y)

    **Margin: 0.** The loss is zero as soon as the desired answer is among the minimizers, so nothing
    prevents a wrong answer from having the same energy (the lecture's "bad" loss; it is the
    ``beta -> inf`` limit of :func:`nll`).

    :param pos: energies :math:`F(x, y)` of the desired answers, shape ``batch``.
    :param energies: energies of all outputs, shape ``batch + (K,)``; the minimum is taken over the last
        dimension. The set normally contains the desired answer, which makes the loss non-negative. A
        tensor of shape ``batch`` is taken to be the already minimized energy
        :math:`\min_{\check y} F(x, \check y)` (for example from a structured argmin).
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import perceptron
        >>> E = torch.tensor([[1.0, 0.2, 3.0], [0.0, 2.0, 1.0]])
        >>> perceptron(E[:, 0], E, reduction="none")
        tensor([0.8000, 0.0000])
    """
    reduction = _check_reduction(reduction)
    pos = _check_energy(pos, "pos")
    energies = _check_energy(energies, "energies")
    # +inf excludes a candidate from the minimum, but an already minimized energy must be finite
    pos, energies, multi = _check_pair(pos, energies, "pos", "energies", neg_pos_inf=energies.dim() > pos.dim())
    if multi:
        check_some_finite(energies, "energies")
    best = energies.min(-1).values if multi else energies
    return _reduce(pos.squeeze(-1) - best if multi else pos - best, reduction)


def hinge(
    pos: torch.Tensor, neg: torch.Tensor, margin=1.0, *, reduction: str = "mean"
) -> torch.Tensor:
    r"""Pairwise hinge loss [Altun 2003], ranking loss [Weston 2010].

    .. math:: L = \left[F(x, y) - F(x, \hat y) + m(y, \hat y)\right]^+

    **Margin: m.** Zero once the contrastive energy is at least ``m`` above the data energy; inside the
    margin the gradient is ``+1`` on ``pos`` and ``-1`` on ``neg``.

    :param pos: energies :math:`F(x, y)`, shape ``batch``.
    :param neg: energies :math:`F(x, \hat y)`, shape ``batch`` or ``batch + (p,)`` (summed over ``p``).
    :param margin: ``m >= 0``, a float or a tensor broadcastable to ``batch`` (or to ``neg``'s shape).
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import hinge
        >>> hinge(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 1.5]), margin=1.0, reduction="none")
        tensor([0.0000, 0.5000])
    """
    reduction = _check_reduction(reduction)
    pos, neg, multi = _check_pair(pos, neg)
    m = _check_margin(margin, neg, multi)
    loss = F.relu(pos - neg + m)
    return _reduce(loss.sum(-1) if multi else loss, reduction)


def log_loss(pos: torch.Tensor, neg: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    r"""Log loss (logistic loss), a soft version of the hinge.

    .. math:: L = \log\left(1 + e^{F(x, y) - F(x, \hat y)}\right)

    **Margin: infinite.** The loss is positive for any energy gap, so it always pushes the energies apart
    (ever more weakly). Computed with ``softplus``: no overflow for large energies.

    :param pos: energies :math:`F(x, y)`, shape ``batch``.
    :param neg: energies :math:`F(x, \hat y)`, shape ``batch`` or ``batch + (p,)`` (summed over ``p``).
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import log_loss
        >>> log_loss(torch.tensor([0.0, 1e4]), torch.tensor([0.0, 0.0]), reduction="none")
        tensor([6.9315e-01, 1.0000e+04])
    """
    reduction = _check_reduction(reduction)
    pos, neg, multi = _check_pair(pos, neg)
    loss = F.softplus(pos - neg)
    return _reduce(loss.sum(-1) if multi else loss, reduction)


def lvq2(pos: torch.Tensor, neg: torch.Tensor, cap=1.0, *, reduction: str = "mean") -> torch.Tensor:
    r"""LVQ2 loss [Kohonen 1990], as used by Driancourt & Bottou (1991): a zero-margin hinge capped at ``M``.

    .. math:: L = \min\left(M, \left[F(x, y) - F(x, \hat y)\right]^+\right)

    **Margin: 0.** The loss vanishes as soon as the desired answer wins, even by an infinitesimal gap.
    The cap also makes it flat (zero gradient) once the wrong answer wins by more than ``M``; the gradient
    is ``+1``/``-1`` only for :math:`0 < F(x, y) - F(x, \hat y) < M`.

    :param pos: energies :math:`F(x, y)`, shape ``batch``.
    :param neg: energies :math:`F(x, \hat y)`, shape ``batch`` or ``batch + (p,)`` (summed over ``p``).
    :param cap: ``M > 0``, a float or a tensor broadcastable like a margin; ``inf`` removes the cap.
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import lvq2
        >>> lvq2(torch.tensor([0.0, 1.5, 9.0]), torch.tensor([1.0, 1.0, 1.0]), cap=2.0, reduction="none")
        tensor([0.0000, 0.5000, 2.0000])
    """
    reduction = _check_reduction(reduction)
    pos, neg, multi = _check_pair(pos, neg)
    cap_t = _check_nonneg(cap, "cap", neg, allow_inf=True)
    if (cap_t.detach() == 0).any():
        raise ValueError("cap must be > 0 (the largest loss of one pair), got 0")
    cap_t = _check_margin(cap_t, neg, multi, name="cap", allow_inf=True)
    loss = torch.minimum(F.relu(pos - neg), cap_t)
    return _reduce(loss.sum(-1) if multi else loss, reduction)


def mce(pos: torch.Tensor, neg: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    r"""Minimum classification error loss [Juang, Chou & Lee 1997]: a sigmoid of the energy gap.

    .. math:: L = \left(1 + e^{-(F(x, y) - F(x, \hat y))}\right)^{-1}

    **Margin: infinite** (the gradient never vanishes exactly, though it decays exponentially with the
    gap, so the loss does little once the gap is a few units). Computed with ``torch.sigmoid``: no
    overflow for large energies.

    :param pos: energies :math:`F(x, y)`, shape ``batch``.
    :param neg: energies :math:`F(x, \hat y)`, shape ``batch`` or ``batch + (p,)`` (summed over ``p``).
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import mce
        >>> mce(torch.tensor([0.0, 1e4]), torch.tensor([0.0, -1e4]), reduction="none")
        tensor([0.5000, 1.0000])
    """
    reduction = _check_reduction(reduction)
    pos, neg, multi = _check_pair(pos, neg)
    loss = torch.sigmoid(pos - neg)
    return _reduce(loss.sum(-1) if multi else loss, reduction)


def _square_margin(pos, neg, margin, reduction):
    reduction = _check_reduction(reduction)
    pos, neg, multi = _check_pair(pos, neg)
    m = _check_margin(margin, neg, multi)
    loss = pos.square() + F.relu(m - neg).square()
    return _reduce(loss.sum(-1) if multi else loss, reduction)


def square_square(pos: torch.Tensor, neg: torch.Tensor, margin=1.0, *, reduction: str = "mean") -> torch.Tensor:
    r"""Square-square loss [Chopra et al. CVPR 2005, Hadsell et al. CVPR 2006].

    .. math:: L = F(x, y)^2 + \left(\left[m(y, \hat y) - F(x, \hat y)\right]^+\right)^2

    **Margin: m.** Meant for non-negative energies (a distance, as in siamese networks): it pulls the data
    energy to 0 and pushes the contrastive energy above ``m``.

    Source: the lecture's table prints a *minus* between the two terms, which would reward a low
    contrastive energy; its other slides and the text of LeCun et al. (2006), "A Tutorial on Energy-Based
    Learning", use the plus sign, which is what is implemented. The pairwise-margin slides write the first
    term as :math:`([F(x, y)]^+)^2`; that equals :math:`F(x, y)^2` for the non-negative energies this loss
    is meant for, and the tutorial's :math:`F(x, y)^2` is used here (for a negative ``pos`` it pulls the
    energy *up* towards 0). The same formula appears as "square-hinge" in the lecture's loss zoo; see
    :func:`square_hinge`.

    :param pos: energies :math:`F(x, y) \ge 0`, shape ``batch``.
    :param neg: energies :math:`F(x, \hat y)`, shape ``batch`` or ``batch + (p,)`` (summed over ``p``).
    :param margin: ``m >= 0``, a float or a tensor broadcastable to ``batch`` (or to ``neg``'s shape).
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import square_square
        >>> square_square(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 3.0]), margin=2.0, reduction="none")
        tensor([3.2500, 0.0000])
    """
    return _square_margin(pos, neg, margin, reduction)


def square_hinge(pos: torch.Tensor, neg: torch.Tensor, margin=1.0, *, reduction: str = "mean") -> torch.Tensor:
    r"""Square-hinge loss, row 6 of the lecture's loss zoo (for energies that are divergences, ``F >= 0``).

    .. math:: L = F(x, y)^2 + \left(\left[m(y, \hat y) - F(x, \hat y)\right]^+\right)^2

    **Margin: m.** This is the same formula as :func:`square_square` (LeCun et al. 2006): the lecture's
    two tables name it differently, and both names are kept so that each table row links to a function.
    The two functions always return the same values.

    :param pos: energies :math:`F(x, y) \ge 0`, shape ``batch``.
    :param neg: energies :math:`F(x, \hat y)`, shape ``batch`` or ``batch + (p,)`` (summed over ``p``).
    :param margin: ``m >= 0``, a float or a tensor broadcastable to ``batch`` (or to ``neg``'s shape).
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import square_hinge
        >>> square_hinge(torch.tensor([1.0]), torch.tensor([[0.5, 3.0]]), margin=2.0, reduction="none")
        tensor([4.2500])
    """
    return _square_margin(pos, neg, margin, reduction)


def square_exp(pos: torch.Tensor, neg: torch.Tensor, beta=1.0, *, reduction: str = "mean") -> torch.Tensor:
    r"""Square-exponential loss.

    .. math:: L = F(x, y)^2 + \beta\, e^{-F(x, \hat y)}

    **Margin: infinite.** Meant for non-negative energies: the data energy is pulled to 0 and the
    contrastive energy is pushed up with a force that decays exponentially but never vanishes.

    Source: LeCun et al. (2006), "A Tutorial on Energy-Based Learning", where the positive constant
    multiplies the exponential (:math:`\gamma` in its text, :math:`\beta` in its table) and the lecture's
    first table agrees; the lecture's loss zoo instead writes :math:`e^{-\beta F(x, \hat y)}`. The
    tutorial's form is implemented; for the zoo's form pass ``beta * neg`` with ``beta=1``.
    The contrastive term is computed as :math:`e^{\log\beta - F(x, \hat y)}`, so it is finite whenever
    its true value is (``beta=1e-10`` and :math:`F(x, \hat y) = -100` give ``2.7e33`` in float32), and a
    large ``beta`` does not multiply an underflowed :math:`e^{-F}`. Only where
    :math:`\beta e^{-F(x, \hat y)}` itself exceeds the floating-point range (:math:`F(x, \hat y) <
    \log\beta - 88` in float32, e.g. ``F = -100`` with ``beta=1``, whose true value ``2.7e43`` no float32
    holds) is the result ``inf``.

    :param pos: energies :math:`F(x, y) \ge 0`, shape ``batch``.
    :param neg: energies :math:`F(x, \hat y)`, shape ``batch`` or ``batch + (p,)`` (summed over ``p``).
    :param beta: positive weight of the contrastive term, a float or a tensor broadcastable to ``batch``.
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import square_exp
        >>> square_exp(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1e4]), beta=0.5, reduction="none")
        tensor([1.5000, 0.0000])
    """
    reduction = _check_reduction(reduction)
    pos, neg, multi = _check_pair(pos, neg)
    beta = check_beta(beta)
    check_beta_batch(beta, neg.shape[: neg.dim() - int(multi)], what="the batch shape of pos")
    # log beta in beta's own precision, before any cast to the dtype of neg (a tiny float beta would
    # round to 0 in float32)
    if isinstance(beta, torch.Tensor):
        log_b = torch.log(beta if beta.is_floating_point() else beta.double())
    else:
        log_b = math.log(beta)
    log_b = _align(_beta_tensor(log_b, neg), multi, neg.dim() - int(multi))
    loss = pos.square() + torch.exp(log_b - neg)
    return _reduce(loss.sum(-1) if multi else loss, reduction)


def simple(pos: torch.Tensor, neg: torch.Tensor, margin=1.0, *, reduction: str = "mean") -> torch.Tensor:
    r"""Simple loss [Bromley et al. 1993]: two separate hinges, one per energy.

    .. math:: L = \left[F(x, y)\right]^+ + \left[m(y, \hat y) - F(x, \hat y)\right]^+

    **Margin: m.** Pushes the data energy down to 0 and the contrastive energy up to ``m``.

    :param pos: energies :math:`F(x, y)`, shape ``batch``.
    :param neg: energies :math:`F(x, \hat y)`, shape ``batch`` or ``batch + (p,)`` (summed over ``p``).
    :param margin: ``m >= 0``, a float or a tensor broadcastable to ``batch`` (or to ``neg``'s shape).
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import simple
        >>> simple(torch.tensor([0.5, -1.0]), torch.tensor([0.25, 3.0]), margin=1.0, reduction="none")
        tensor([1.2500, 0.0000])
    """
    reduction = _check_reduction(reduction)
    pos, neg, multi = _check_pair(pos, neg)
    m = _check_margin(margin, neg, multi)
    loss = F.relu(pos) + F.relu(m - neg)
    return _reduce(loss.sum(-1) if multi else loss, reduction)


def min_hinge(pos: torch.Tensor, neg: torch.Tensor, margin=1.0, *, reduction: str = "mean") -> torch.Tensor:
    r"""Min-hinge loss, row 6 of the lecture's loss zoo (for positive energies).

    .. math:: L = F(x, y) + \left[m(y, \hat y) - F(x, \hat y)\right]^+

    **Margin: m.** Meant for energies bounded below by 0: the data energy is always pushed down, the
    contrastive energy is pushed up until it reaches ``m``.

    :param pos: energies :math:`F(x, y) \ge 0`, shape ``batch``.
    :param neg: energies :math:`F(x, \hat y)`, shape ``batch`` or ``batch + (p,)`` (summed over ``p``).
    :param margin: ``m >= 0``, a float or a tensor broadcastable to ``batch`` (or to ``neg``'s shape).
    :param reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.

    Example::

        >>> import torch
        >>> from pyro_ebm.losses import min_hinge
        >>> min_hinge(torch.tensor([0.5, 0.0]), torch.tensor([0.25, 3.0]), margin=1.0, reduction="none")
        tensor([1.2500, 0.0000])
    """
    reduction = _check_reduction(reduction)
    pos, neg, multi = _check_pair(pos, neg)
    m = _check_margin(margin, neg, multi)
    loss = pos + F.relu(m - neg)
    return _reduce(loss.sum(-1) if multi else loss, reduction)
