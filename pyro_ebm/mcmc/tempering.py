r"""Parallel tempering (replica exchange) over a ladder of inverse temperatures.

Replicas are an extra leading batch dimension ``R`` of the state ``[R, C, D]``: replica ``r`` targets
:math:`\exp(-\beta_r F)`, with ``betas[0]`` the target ``beta`` and the ladder decreasing. After every
kernel step neighbours ``(r, r+1)`` propose to exchange states, with Metropolis acceptance

.. math:: \min\{1, \exp[(\beta_r - \beta_{r+1})(F(q_r) - F(q_{r+1}))]\},

alternating the even pairs and the odd pairs (the deterministic even-odd scheme), independently in every
chain.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch

from .._validation import check_beta, check_positive_int

__all__ = ["make_ladder", "swap"]


def make_ladder(tempering: Union[int, Sequence[float], torch.Tensor], beta: float, *, min_ratio: float = 0.05, dtype=None, device=None) -> torch.Tensor:
    """The ladder ``[R]`` of inverse temperatures, ``ladder[0] == beta``, decreasing.

    :param tempering: a number of replicas ``R >= 2`` (geometric ladder from ``beta`` down to
        ``min_ratio * beta``) or an explicit ladder of positive numbers whose first entry (the largest)
        is the target ``beta``.

    >>> make_ladder(3, 2.0, min_ratio=0.25)
    tensor([2.0000, 1.0000, 0.5000])
    """
    if isinstance(tempering, bool):
        raise TypeError("tempering must be a number of replicas (int >= 2) or a sequence of inverse temperatures")
    if isinstance(tempering, int):
        R = check_positive_int(tempering, "tempering", minimum=2)
        if not (0 < min_ratio < 1):
            raise ValueError(f"min_ratio must be in (0, 1), got {min_ratio}")
        return beta * torch.logspace(0.0, math.log10(min_ratio), R, dtype=dtype or torch.get_default_dtype(), device=device)
    try:
        ladder = torch.as_tensor(tempering, dtype=dtype or torch.get_default_dtype(), device=device).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError("tempering must be a number of replicas (int >= 2) or a sequence of inverse temperatures") from None
    check_beta(ladder, name="tempering")
    if ladder.numel() < 2:
        raise ValueError("tempering ladder needs at least 2 inverse temperatures")
    if not bool((ladder[1:] < ladder[:-1]).all()):
        raise ValueError("tempering ladder must be strictly decreasing, starting with the target beta")
    if not math.isclose(float(ladder[0]), float(beta), rel_tol=1e-6):
        raise ValueError(f"tempering ladder must start at the target beta={beta}, got {float(ladder[0])}")
    return ladder


def swap(tensors, F: torch.Tensor, betas: torch.Tensor, parity: int, generator):
    """Propose exchanges between replicas ``(r, r+1)`` for ``r % 2 == parity``, in every chain.

    :param tensors: tuple of state tensors with leading dims ``[R, C]`` (``None`` entries pass through).
    :param F: energies ``[R, C]`` of the replicas' states.
    :param betas: ``[R]`` ladder.
    :returns: ``(swapped tensors, swap acceptance probabilities [R-1, C] (NaN for pairs not tried))``.
    """
    R, C = F.shape
    lo = torch.arange(parity, R - 1, 2, device=F.device)
    probs = torch.full((R - 1, C), float("nan"), dtype=F.dtype, device=F.device)
    if lo.numel() == 0:
        return tensors, probs
    hi = lo + 1
    log_a = (betas[lo] - betas[hi]).unsqueeze(-1) * (F[lo] - F[hi])
    log_a = torch.where(torch.isnan(log_a), torch.full_like(log_a, -float("inf")), log_a)
    a = torch.exp(log_a.clamp(max=0.0))
    u = torch.rand(a.shape, generator=generator, dtype=F.dtype, device=F.device)
    acc = u < a
    probs[lo] = a
    perm = torch.arange(R, device=F.device).unsqueeze(-1).expand(R, C).clone()
    perm[lo] = torch.where(acc, hi.unsqueeze(-1), lo.unsqueeze(-1))
    perm[hi] = torch.where(acc, lo.unsqueeze(-1), hi.unsqueeze(-1))
    out = []
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        idx = perm.reshape((R, C) + (1,) * (t.dim() - 2)).expand(t.shape)
        out.append(torch.gather(t, 0, idx))
    return tuple(out), probs
