r"""The loss zoo of contrastive energy-based learning, as plain functions of energies.

Every loss here takes *energies* (tensors computed by an energy, never the model itself), returns one loss
per example with ``reduction="none"``, and averages (``"mean"``, the default) or adds (``"sum"``) them
otherwise, in the manner of :mod:`torch.nn.functional`.

Notation: ``pos`` is the energy of the desired answer :math:`F(x, y)`; ``neg`` is the energy of a
contrastive answer :math:`F(x, \hat y)`; ``margin`` is :math:`m(y, \hat y)`.

The functions come in four families.

* **Pairwise losses** :func:`energy_loss`, :func:`perceptron`, :func:`hinge`, :func:`log_loss`,
  :func:`lvq2`, :func:`mce`, :func:`square_square`, :func:`square_exp`, :func:`simple`,
  :func:`min_hinge`, :func:`square_hinge`. ``pos`` has the batch shape; ``neg`` has the same shape (one
  contrastive answer per example) or the batch shape plus one trailing dimension of ``p`` contrastive
  answers per example. With several contrastive answers the per-pair loss
  :math:`H(F(x, y), F(x, \hat y_j), m)` is **summed** over ``j``, which is the lecture's general margin
  loss :math:`\sum_{\hat y} H(F(x,y), F(x,\hat y), m(y,\hat y))` over a chosen set of outputs.
  ``margin`` is a non-negative float or tensor; a tensor broadcasts against the batch shape (one margin
  per example) or, when it has as many dimensions as ``neg``, against ``neg`` (one margin per pair).
* **Losses over a finite set of outputs** :func:`nll`, :func:`mee`, :func:`general_margin` take the
  energies of all candidate outputs ``[*batch, K]`` and the indices ``target`` ``[*batch]`` of the
  desired ones.
* **Group losses** :func:`info_nce`, :func:`nce`, :func:`nca`.
* **Maximum likelihood with sampled negatives** :func:`ml_sampled` (also contrastive divergence).

The "margin" quoted in every docstring is the column of the lecture's table: ``0`` (the loss can be zero
while a wrong answer has the same energy as the right one), ``m`` (the loss is zero only once the wrong
answers are at least ``m`` above the right one) or ``infinite`` (the loss keeps pushing the energies apart
however far apart they are).

Sources: the lecture (LeCun & Canziani, NYU 2023) and, where its slides disagree with each other,
LeCun, Chopra, Hadsell, Ranzato & Huang (2006), "A Tutorial on Energy-Based Learning".
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from ._validation import check_beta, check_beta_batch, check_some_finite

__all__ = [
    "energy_loss",
    "perceptron",
    "hinge",
    "log_loss",
    "lvq2",
    "mce",
    "square_square",
    "square_exp",
    "simple",
    "min_hinge",
    "square_hinge",
    "nll",
    "mee",
    "general_margin",
    "info_nce",
    "nce",
    "nca",
    "ml_sampled",
    "pseudo_likelihood",
]

_REDUCTIONS = ("none", "mean", "sum")


# ----------------------------------------------------------------------------------------------------------
# argument checks and reduction
# ----------------------------------------------------------------------------------------------------------


def _check_reduction(reduction) -> str:
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'none', 'mean' or 'sum', got {reduction!r}")
    return reduction


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_energy(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of energies, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of energies, got dtype {value.dtype}")
    return value


def _check_pair(pos, neg, pos_name: str = "pos", neg_name: str = "neg"):
    """Validate ``pos``/``neg`` and return ``(pos aligned with neg, neg, has_negatives_dim)``."""
    pos = _check_energy(pos, pos_name)
    neg = _check_energy(neg, neg_name)
    if neg.shape == pos.shape:
        return pos, neg, False
    if neg.dim() == pos.dim() + 1 and neg.shape[:-1] == pos.shape:
        return pos.unsqueeze(-1), neg, True
    raise ValueError(
        f"{neg_name} must have the shape of {pos_name} {tuple(pos.shape)} or that shape plus a trailing "
        f"dimension of negatives {tuple(pos.shape) + ('p',)}, got {tuple(neg.shape)}"
    )


def _check_nonneg(value, name: str, like: torch.Tensor, *, allow_inf: bool = False) -> torch.Tensor:
    """A non-negative float or tensor (margin, cap), returned as a tensor on ``like``'s dtype/device."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a non-negative number or tensor, got {type(value).__name__}")
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise TypeError(f"{name} must be a real tensor, got dtype {value.dtype}")
        v = value.detach()
        if torch.isnan(v).any():
            raise ValueError(f"{name} must be >= 0, got NaN")
        if (v < 0).any():
            raise ValueError(f"{name} must be >= 0, got min {v.min().item():g}")
        if not allow_inf and torch.isinf(v).any():
            raise ValueError(f"{name} must be finite, got inf")
        return value.to(dtype=like.dtype, device=like.device)
    value = float(value)
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    if not allow_inf and math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def _align(t: torch.Tensor, multi: bool, batch_dim: int) -> torch.Tensor:
    """Give a per-example tensor (margin, beta) a trailing dimension matching the negatives dimension."""
    if multi and t.dim() > 0 and t.dim() <= batch_dim:
        return t.unsqueeze(-1)
    return t


def _check_margin(margin, neg, multi: bool, name: str = "margin", allow_inf: bool = False):
    m = _align(_check_nonneg(margin, name, neg, allow_inf=allow_inf), multi, neg.dim() - int(multi))
    try:
        torch.broadcast_shapes(m.shape, neg.shape)
    except RuntimeError:
        raise ValueError(
            f"{name} must broadcast to the batch shape {tuple(neg.shape[: neg.dim() - int(multi)])} or to the "
            f"shape of the negatives {tuple(neg.shape)}, got {tuple(m.shape)}"
        ) from None
    return m


def _beta_tensor(beta, like: torch.Tensor) -> torch.Tensor:
    if isinstance(beta, torch.Tensor):
        return beta.to(dtype=like.dtype, device=like.device)
    return torch.tensor(beta, dtype=like.dtype, device=like.device)


def _check_candidates(energies, target, name: str = "energies"):
    """Validate ``energies`` ``[*batch, K]`` and integer ``target`` ``[*batch]`` with values in ``[0, K)``."""
    energies = _check_energy(energies, name)
    if energies.dim() < 1 or energies.shape[-1] < 1:
        raise ValueError(f"{name} must have shape [*batch, K] with K >= 1 candidates, got {tuple(energies.shape)}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor of integer indices, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target must be a tensor of integer indices, got dtype {target.dtype}")
    if target.shape != energies.shape[:-1]:
        raise ValueError(
            f"target must have the batch shape of {name} {tuple(energies.shape[:-1])}, got {tuple(target.shape)}"
        )
    k = energies.shape[-1]
    if target.numel() and (target.min() < 0 or target.max() >= k):
        bad = target[(target < 0) | (target >= k)].flatten()[0].item()
        raise ValueError(f"target indices must be in [0, {k}) (K = {name}.shape[-1]), got {bad}")
    if torch.isnan(energies.detach()).any() or torch.isneginf(energies.detach()).any():
        from ._validation import check_finite

        check_finite(energies.detach(), name, allow_pos_inf=True)
    check_some_finite(energies, name)
    return energies, target.to(device=energies.device, dtype=torch.long)


def _gather(energies: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return energies.gather(-1, target.unsqueeze(-1)).squeeze(-1)


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
    pos, energies, multi = _check_pair(pos, energies, "pos", "energies")
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
    For a very negative contrastive energy (below about ``-88`` in float32) the true value exceeds the
    floating-point range and the result is ``inf``.

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
    b = _align(_beta_tensor(beta, neg), multi, neg.dim() - int(multi))
    loss = pos.square() + b * torch.exp(-neg)
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
    energies, target = _check_candidates(energies, target)
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
    :param log_noise_pos: :math:`\log p_n(x)` at the data points, shape of ``pos``.
    :param log_noise_neg: :math:`\log p_n(\hat y)` at the noise samples, shape of ``neg``.
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
        anchor itself must not be a candidate: drop it or give it energy ``+inf``.
    :param same: boolean mask of the same shape, ``True`` where the candidate has the anchor's class.
        Every anchor needs at least one same-class candidate (otherwise the loss would be infinite):
        drop anchors that are alone in their class from the batch.
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
    alone = ~same.any(-1)
    if alone.any():
        idx = tuple(int(i) for i in alone.nonzero()[0].tolist())
        raise ValueError(
            f"same must mark at least one same-class candidate for every anchor; anchor {idx} has none "
            f"({int(alone.sum())} anchors in total)"
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
    :param neg: energies of the sampled negatives, shape ``batch`` (one sample) or ``batch + (p,)``
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
    pos, neg, multi = _check_pair(pos, neg)
    loss = (pos - neg).mean(-1) if multi else pos - neg
    return _reduce(loss, reduction)


# ----------------------------------------------------------------------------------------------------------
# score matching (A4 of the lecture) and denoising score matching (C3): losses of the energy *function*
# ----------------------------------------------------------------------------------------------------------

__all__ += ["score_matching", "sliced_score_matching", "denoising_score_matching"]


def _score_setup(energy, y, event_shape):
    """The energy as an :class:`~pyro_ebm.Energy`, ``y`` as a leaf that requires grad, and the event dims."""
    from ._validation import check_finite
    from .energy import Energy, as_energy, batch_shape_of

    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        raise TypeError(f"y must be a floating-point tensor [*batch, *event_shape], got "
                        f"{type(y).__name__ if not isinstance(y, torch.Tensor) else y.dtype}")
    if event_shape is None and not isinstance(energy, Energy):
        event_shape = y.shape[-1:]
    energy = as_energy(energy, event_shape=event_shape)
    if energy.has_latent:
        raise TypeError("energy must be an energy of y alone (for a LatentEnergy, pass its free energy)")
    batch = batch_shape_of(y, energy.event_shape, "y")
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
    from ._rng import make_generator
    from ._validation import check_positive_int

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
    from ._rng import make_generator
    from ._validation import check_finite

    reduction = _check_reduction(reduction)
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a finite number > 0 (the noise scale), got {sigma!r}")
    energy, y0, dims = _score_setup(energy, y, event_shape)
    y0 = y0.detach()
    if noise is None:
        noise = torch.randn(y0.shape, generator=make_generator(seed), dtype=y0.dtype, device="cpu").to(y0.device)
    elif not isinstance(noise, torch.Tensor) or noise.shape != y0.shape:
        raise ValueError(f"noise must be a tensor of y's shape {tuple(y0.shape)}, got "
                         f"{tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__}")
    else:
        check_finite(noise, "noise")
        noise = noise.to(y0)
    y_noisy = (y0 + sigma * noise).requires_grad_(True)
    g = _energy_grad(energy, y_noisy)
    loss = 0.5 * ((g - noise / sigma) ** 2).sum(dims)
    return _reduce(loss, reduction)


# ----------------------------------------------------------------------------------------------------------
# pseudo-likelihood
# ----------------------------------------------------------------------------------------------------------


def pseudo_likelihood(energies: torch.Tensor, target: torch.Tensor, beta=1.0, *, reduction: str = "mean") -> torch.Tensor:
    r"""Negative log pseudo-likelihood [Besag 1975] of discrete configurations.

    .. math:: L = -\sum_{d=1}^{D} \log p(y_d \mid y_{\setminus d})
              = \sum_{d} \Big[\beta F(y) + \log \sum_{k=1}^{K} e^{-\beta F(y^{(d \to k)})}\Big],

    where :math:`y^{(d \to k)}` is ``y`` with site ``d`` set to its ``k``-th value. Each conditional is a
    softmax over one site's ``K`` values, so no partition function is needed; the minimiser over the
    energy's parameters is a consistent estimator (the :func:`nll` of each site, summed over sites).
    :func:`pyro_ebm.likelihood.site_conditionals` builds the configurations :math:`y^{(d \to k)}` and
    ``target``. **Margin: infinite (implicit)**, like :func:`nll`.

    :param energies: :math:`F(y^{(d \to k)})`, shape ``batch + (D, K)``.
    :param target: index of ``y``'s own value at each site, shape ``batch + (D,)`` (so
        ``energies[..., d, target[..., d]]`` is :math:`F(y)`).
    :param beta: inverse temperature ``> 0``, a float or a tensor broadcastable to ``batch + (D,)``.
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
