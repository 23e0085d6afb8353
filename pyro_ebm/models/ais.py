r"""Annealed importance sampling for the partition function of an RBM (Salakhutdinov & Murray 2008).

The generic :func:`pyro_ebm.partition.log_partition` anneals continuous states with MALA/HMC from a
Gaussian base; an RBM's visible units are binary, and the good base is the *base-rate model*: independent
visible units with the data's marginal probabilities, :math:`p_A(v) = \prod_i \sigma(a_i)^{v_i}
(1 - \sigma(a_i))^{1 - v_i}`. This module is that estimator, self-contained.

With the RBM's inverse temperature :math:`\beta` folded into its parameters (:math:`W, b, c` below are
:math:`\beta W, \beta b, \beta c`), the path of unnormalized marginals over ``v`` is

.. math::
    \log f_k(v) = (1 - t_k)\, a^\top v + t_k\, b^\top v
                  + \sum_j \operatorname{softplus}\big(t_k (c_j + v^\top W_{:j})\big),
    \qquad 0 = t_0 < t_1 < \dots < t_K = 1,

that is, the base-rate RBM (weights 0, hidden biases 0) and the target RBM with the *same* hidden units,
mixed in energy with weights :math:`1 - t_k` and :math:`t_k`. At :math:`t_0 = 0`, :math:`f_0(v) = 2^{n_h}
e^{a^\top v}` and :math:`\log Z_0 = n_h \log 2 + \sum_i \operatorname{softplus}(a_i)`. Each transition is one
sweep of block Gibbs on the intermediate RBM at :math:`t_k`:

.. math::
    h \sim \sigma\big(t_k (c + v^\top W)\big), \qquad
    v \sim \sigma\big((1 - t_k)\, a + t_k (b + W h)\big),

which leaves :math:`f_k` invariant. The importance weight of a run is :math:`\log w = \sum_{k=1}^{K}
[\log f_k(v_{k-1}) - \log f_{k-1}(v_{k-1})]` (the state :math:`v_{k-1}` is the one after the transition at
:math:`t_{k-1}`; :math:`v_0 \sim p_A` exactly), :math:`\hat Z = Z_0 \operatorname{mean}(w)` is unbiased, and
:math:`E[\log \hat Z] \le \log Z`.

The default schedule follows Salakhutdinov & Murray: a fraction ``500/14500`` of the temperatures on
:math:`[0, 0.5]`, ``4000/14500`` on :math:`[0.5, 0.9]` and the rest on :math:`[0.9, 1]`, equally spaced in
each piece; all arithmetic is in float64.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as tf

from .._weights import importance_summary
from .._validation import check_finite, check_positive_int
from ..partition import LogPartition
from ..mcmc import make_generator

__all__ = ["rbm_ais", "default_schedule"]

_F64 = torch.float64


def default_schedule(num_temperatures: int) -> torch.Tensor:
    """``t_0 = 0 < ... < t_K = 1`` with ``K = num_temperatures``, Salakhutdinov & Murray's proportions.

    Example::

        >>> t = default_schedule(145)
        >>> t.shape, float(t[0]), float(t[-1]), int((t <= 0.5).sum()) - 1
        (torch.Size([146]), 0.0, 1.0, 5)
    """
    K = check_positive_int(num_temperatures, "num_temperatures", minimum=3)
    k1 = max(1, round(K * 500 / 14500))
    k2 = max(1, round(K * 4000 / 14500))
    k3 = max(1, K - k1 - k2)
    pieces = [
        torch.linspace(0.0, 0.5, k1 + 1, dtype=_F64),
        torch.linspace(0.5, 0.9, k2 + 1, dtype=_F64)[1:],
        torch.linspace(0.9, 1.0, k3 + 1, dtype=_F64)[1:],
    ]
    return torch.cat(pieces)


def rbm_ais(
    weight: torch.Tensor,
    visible_bias: torch.Tensor,
    hidden_bias: torch.Tensor,
    *,
    base_logits: Optional[torch.Tensor] = None,
    num_particles: int = 100,
    num_temperatures: int = 14500,
    schedule: Optional[torch.Tensor] = None,
    seed=None,
) -> LogPartition:
    r"""AIS estimate of :math:`\log Z = \log \sum_{v,h} e^{v^\top W h + b^\top v + c^\top h}`.

    :param weight: ``[n_visible, n_hidden]`` (with the inverse temperature already multiplied in).
    :param visible_bias: ``[n_visible]``.
    :param hidden_bias: ``[n_hidden]``.
    :param base_logits: ``[n_visible]`` logits ``a`` of the base-rate model (e.g. the logits of the
        training data's smoothed marginals); default ``visible_bias`` (the RBM with its weights removed).
    :param num_particles: independent AIS runs ``N`` (all moved at once), ``>= 2``.
    :param num_temperatures: ``K`` of :func:`default_schedule`; ignored when ``schedule`` is given.
    :param schedule: an increasing tensor from 0 to 1.
    :param seed: int or ``torch.Generator``.
    :returns: :class:`~pyro_ebm.partition.LogPartition` with ``method="ais"``, ``value = log Z_0 +
        log mean(w)``, ``stderr = std(w) / (sqrt(N) mean(w))``, ``ess``, ``log_weights`` (of ``Z / Z_0``),
        the final visible states as ``samples`` ``[N, n_visible]`` and the schedule as ``betas``.

    Example::

        >>> import torch
        >>> W, b, c = torch.zeros(3, 2), torch.zeros(3), torch.zeros(2)
        >>> round(float(rbm_ais(W, b, c, num_temperatures=30, seed=0).value), 4)  # 5 log 2: Z counts 2^5 states
        3.4657
    """
    for name, t_, dim in (("weight", weight, 2), ("visible_bias", visible_bias, 1), ("hidden_bias", hidden_bias, 1)):
        if not isinstance(t_, torch.Tensor) or t_.dim() != dim:
            raise TypeError(f"{name} must be a {dim}-d tensor, got {type(t_).__name__ if not isinstance(t_, torch.Tensor) else tuple(t_.shape)}")
    if tuple(visible_bias.shape) != (weight.shape[0],) or tuple(hidden_bias.shape) != (weight.shape[1],):
        raise ValueError(
            f"visible_bias and hidden_bias must have shapes ({weight.shape[0]},) and ({weight.shape[1]},) for "
            f"weight {tuple(weight.shape)} [n_visible, n_hidden], got {tuple(visible_bias.shape)} and "
            f"{tuple(hidden_bias.shape)}"
        )
    for name, t_ in (("weight", weight), ("visible_bias", visible_bias), ("hidden_bias", hidden_bias)):
        if t_.is_complex() or t_.dtype == torch.bool:
            raise TypeError(f"{name} must be a real tensor, got dtype {t_.dtype}")
        check_finite(t_.detach(), name)
    W = weight.detach().to(_F64)
    b = visible_bias.detach().to(_F64)
    c = hidden_bias.detach().to(_F64)
    a = b.clone() if base_logits is None else base_logits.detach().to(_F64)
    if a.shape != b.shape:
        raise ValueError(f"base_logits must have shape ({b.numel()},) like the visible units, got {tuple(a.shape)}")
    if not bool(torch.isfinite(a).all()):
        raise ValueError("base_logits must be finite (smooth the base rates away from 0 and 1)")
    n = check_positive_int(num_particles, "num_particles", minimum=2)
    if schedule is None:
        t = default_schedule(num_temperatures)
    else:
        t = torch.as_tensor(schedule, dtype=_F64)
        if t.dim() != 1:
            raise ValueError(f"schedule must be a 1-d tensor [K + 1], got shape {tuple(t.shape)}")
        if t.numel() < 2 or float(t[0]) != 0.0 or float(t[-1]) != 1.0 or not bool((t[1:] > t[:-1]).all()):
            raise ValueError("schedule must be an increasing sequence from 0 to 1")
    device = W.device
    gen = make_generator(seed, device)
    nv, nh = W.shape
    ts = t.tolist()
    with torch.no_grad():
        pa = torch.sigmoid(a).expand(n, nv)
        v = torch.bernoulli(pa, generator=gen)
        log_w = torch.zeros(n, dtype=_F64, device=device)
        av, bv = v @ a, v @ b
        x = torch.addmm(c, v, W)  # [n, nh]: c + v W
        f_prev = av + nh * math.log(2.0)  # log f_0(v)
        for k in range(1, len(ts)):
            tk = ts[k]
            f_k = (1.0 - tk) * av + tk * bv + tf.softplus(tk * x).sum(-1)
            log_w += f_k - f_prev
            if k == len(ts) - 1:
                break
            # one block-Gibbs sweep leaving f_k invariant
            h = torch.rand(x.shape, generator=gen, dtype=_F64, device=device).lt_(torch.sigmoid(tk * x))
            logits_v = torch.addmm(b, h.to(_F64), W.t()).mul_(tk).add_(a, alpha=1.0 - tk)
            v = torch.rand(logits_v.shape, generator=gen, dtype=_F64, device=device).lt_(logits_v.sigmoid_())
            av, bv = v @ a, v @ b
            x = torch.addmm(c, v, W)
            f_prev = (1.0 - tk) * av + tk * bv + tf.softplus(tk * x).sum(-1)
    log_z0 = nh * math.log(2.0) + float(tf.softplus(a).sum())
    log_mean, stderr, ess = importance_summary(log_w, 0)
    value = log_mean + log_z0
    return LogPartition(
        value=value.cpu(), stderr=stderr.cpu(), ess=ess.cpu(), method="ais", log_weights=log_w, samples=v,
        betas=t, num_evaluations=n * (len(ts) - 1),
    )
