"""The one summary of importance weights, shared by importance-sampled free energies
(:func:`pyro_ebm.free_energy_importance`) and every estimator of ``log Z`` (AIS, reverse AIS, and the
replicas of tempered SMC in :mod:`pyro_ebm.partition`)."""

from __future__ import annotations

import math

import torch

__all__ = ["importance_summary"]


def importance_summary(log_w: torch.Tensor, dim: int = 0):
    r"""``(log mean w, relative standard error, ESS)`` of log-weights along ``dim``.

    ``log mean w`` keeps the autograd graph; the delta method error
    :math:`\mathrm{sd}(w) / (\sqrt{n}\,\mathrm{mean}(w))` (the standard error of :math:`\log` of the mean)
    and the effective sample size :math:`(\sum w)^2 / \sum w^2` do not. Where every weight is zero the
    error is NaN and the ESS 0.

    >>> lm, se, ess = importance_summary(torch.zeros(4))
    >>> float(lm), float(se), float(ess)
    (0.0, 0.0, 4.0)
    """
    n = log_w.shape[dim]
    lse = torch.logsumexp(log_w, dim)
    log_mean = lse - math.log(n)
    with torch.no_grad():
        finite = torch.isfinite(lse)
        w = torch.exp(log_w.detach() - torch.where(finite, lse, 0.0).detach().unsqueeze(dim))  # normalized
        ess = torch.where(finite, 1.0 / (w**2).sum(dim), 0.0)
        stderr = torch.where(finite, (w * n).std(dim, unbiased=True) / math.sqrt(n), math.nan)
    return log_mean, stderr, ess
