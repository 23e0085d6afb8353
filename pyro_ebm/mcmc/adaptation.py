"""Warmup adaptation, batched over chains.

All state here is a small tuple of tensors; every update is a handful of elementwise torch ops, so the
driver can call them once per iteration for thousands of chains without a Python loop over chains.

* :class:`BatchedDualAveraging` is :class:`pyro.ops.dual_averaging.DualAveraging`'s scheme (same
  formulas and defaults) written as three fused tensor updates, so a statistic ``g`` of shape
  ``[replicas, chains]`` gives one scheme per chain for the price of three tensor operations.
* :func:`welford_init` / :func:`welford_update` estimate a diagonal variance *across chains and
  iterations* (Pyro's ``WelfordCovariance`` takes one sample per call, which would need a loop over
  chains; this is Chan's parallel merge of a whole chain batch at once).
* :func:`chees_init` / :func:`chees_update` adapt the HMC trajectory length by stochastic gradient
  ascent on the ChEES criterion (Hoffman, Radul & Sountsov, AISTATS 2021).
* :func:`warmup_windows` is Stan's windowed schedule for the mass matrix.
"""

from __future__ import annotations

from typing import List, NamedTuple

import torch
from pyro.ops.dual_averaging import DualAveraging

__all__ = [
    "DualAveraging",
    "BatchedDualAveraging",
    "WelfordState",
    "welford_init",
    "welford_update",
    "welford_variance",
    "CheesState",
    "chees_init",
    "chees_update",
    "warmup_windows",
]


class BatchedDualAveraging:
    """Nesterov's dual averaging, the same scheme and parameters as
    :class:`pyro.ops.dual_averaging.DualAveraging`, for a batch of schemes held in tensors.

    Each update is three tensor operations (Pyro's does about ten, most with a Python-scalar operand):
    ``g_avg`` and ``x_avg`` are updated as linear interpolations with Pyro's weights and ``x_t`` as one
    scaled addition. Unlike Pyro's, ``get_state`` before the first step returns ``(prox_center, 0)``.
    """

    def __init__(self, prox_center: torch.Tensor, t0: float = 10, kappa: float = 0.75, gamma: float = 0.05):
        self.prox_center = prox_center
        self.t0 = t0
        self.kappa = kappa
        self.gamma = gamma
        self._t = 0
        self._g_avg = torch.zeros_like(prox_center)
        self._x_avg = torch.zeros_like(prox_center)
        self._x_t = prox_center

    def step(self, g: torch.Tensor) -> None:
        self._t += 1
        t = self._t
        # g_avg = (1 - 1 / (t + t0)) g_avg + g / (t + t0)
        self._g_avg = torch.lerp(self._g_avg, g, 1.0 / (t + self.t0))
        self._x_t = torch.add(self.prox_center, self._g_avg, alpha=-(t**0.5) / self.gamma)
        self._x_avg = torch.lerp(self._x_avg, self._x_t, t ** (-self.kappa))

    def get_state(self):
        """``(x_t, x_avg)``: the latest iterate and the weighted average of the iterates."""
        return self._x_t, self._x_avg


class WelfordState(NamedTuple):
    """Running count, mean ``[replicas, 1, D]`` and sum of squared deviations ``[replicas, 1, D]``."""

    count: float
    mean: torch.Tensor
    m2: torch.Tensor


def welford_init(q: torch.Tensor) -> WelfordState:
    """Empty accumulator shaped like one chain batch ``q`` of shape ``[replicas, chains, D]``."""
    z = torch.zeros_like(q[:, :1])
    return WelfordState(0.0, z, z.clone())


def welford_update(state: WelfordState, q: torch.Tensor) -> WelfordState:
    """Merge a batch of chains ``q`` ``[replicas, chains, D]`` into the accumulator (Chan et al. 1979)."""
    nb = q.shape[1]
    mean_b = q.mean(1, keepdim=True)
    m2_b = (q - mean_b).pow_(2).sum(1, keepdim=True)
    n = state.count + nb
    delta = mean_b - state.mean
    mean = torch.add(state.mean, delta, alpha=nb / n)
    m2 = torch.addcmul(state.m2 + m2_b, delta, delta, value=state.count * nb / n)
    return WelfordState(n, mean, m2)


def welford_variance(state: WelfordState, regularize: bool = True) -> torch.Tensor:
    """Sample variance ``[replicas, 1, D]``, shrunk towards ``1e-3`` like Stan when ``regularize``."""
    n = max(state.count, 2.0)
    var = state.m2 / (n - 1)
    if regularize:
        var = (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0))
    return var


class CheesState(NamedTuple):
    """Log trajectory length ``[replicas]``, its running average, Adam's second moment, iteration count."""

    log_T: torch.Tensor
    log_T_avg: torch.Tensor
    v: torch.Tensor
    t: int


def chees_init(T0: torch.Tensor) -> CheesState:
    log_T = T0.log()
    return CheesState(log_T, log_T.clone(), torch.zeros_like(log_T), 0)


def chees_update(
    state: CheesState,
    q0: torch.Tensor,
    q_prop: torch.Tensor,
    p_prop: torch.Tensor,
    accept_prob: torch.Tensor,
    traj_len: torch.Tensor,
    inv_mass: torch.Tensor,
    *,
    lr: float = 0.025,
    beta2: float = 0.5,
    kappa: float = 0.75,
    max_T: torch.Tensor | None = None,
    max_log_T: torch.Tensor | None = None,
    metric: torch.Tensor | None = None,
) -> CheesState:
    """One Adam step (no first moment) on ``log T`` along the ChEES gradient estimate.

    ``ChEES = E[(|q' - E q'|^2 - |q - E q|^2)^2] / 4`` (norms in the metric whitened by the mass
    matrix); its per-chain gradient estimate w.r.t. ``log T`` is
    ``t_i (|q'_i - mean'|^2 - |q_i - mean|^2) <q'_i - mean', p'_i>`` with ``t_i`` the chain's
    (jittered) trajectory length; chains are weighted by their acceptance probability, and proposals
    that are not finite have acceptance probability 0 and so get weight 0.

    Shapes: ``q0, q_prop, p_prop`` ``[R, C, D]``, ``accept_prob, traj_len`` ``[R, C]``,
    ``inv_mass`` ``[R, 1, D]``; the state holds ``[R]`` tensors. ``max_T`` (or its log, ``max_log_T``)
    caps the trajectory length; ``metric`` is ``1 / inv_mass`` when the caller already has it.
    """
    # the acceptance probability is 0 for every proposal that is not finite (see hmc.step)
    w = accept_prob
    wsum = w.sum(1, keepdim=True)
    wn = w / wsum.clamp_min(1e-12)
    if bool((w > 0).all()):  # the usual case: no proposal to mask out
        qp, pp = q_prop, p_prop
    else:
        valid = (w > 0).unsqueeze(-1)
        qp = torch.where(valid, q_prop, q0)
        pp = torch.where(valid, p_prop, 0.0)
    if metric is None:
        metric = 1.0 / inv_mass
    mean0 = q0.mean(1, keepdim=True)
    mean1 = torch.matmul(wn.unsqueeze(1), qp)  # sum_i wn_i qp_i: [R, 1, D]
    d0 = q0 - mean0
    d1 = qp - mean1
    # |d1|^2_M - |d0|^2_M, M = diag(metric)
    diff = torch.matmul(torch.addcmul(d1 * d1, d0, d0, value=-1), metric.transpose(-1, -2)).squeeze(-1)
    g_i = (traj_len * diff).mul_(torch.linalg.vecdot(d1, pp))
    g = torch.linalg.vecdot(wn, g_i)
    g = torch.where(torch.isfinite(g) & (wsum > 1e-12).squeeze(1), g, 0.0)
    t = state.t + 1
    v = torch.lerp(state.v, g * g, 1 - beta2)  # beta2 v + (1 - beta2) g^2
    # log T += lr g / (sqrt(v_hat) + 1e-10), v_hat = v / (1 - beta2^t)
    denom = v.sqrt().mul_((1 - beta2**t) ** -0.5).add_(1e-10)
    log_T = torch.addcdiv(state.log_T, g, denom, value=lr)
    if max_log_T is None and max_T is not None:
        max_log_T = max_T.log()
    if max_log_T is not None:
        log_T = torch.minimum(log_T, max_log_T)
    log_T_avg = torch.lerp(state.log_T_avg, log_T, t ** (-kappa))  # (1 - w) avg + w log_T
    return CheesState(log_T, log_T_avg, v, t)


def warmup_windows(num_warmup: int, init_buffer: int = 75, term_buffer: int = 50, base_window: int = 25) -> List[int]:
    """Iterations (0-based, exclusive ends) at which a mass-matrix window closes, Stan's schedule.

    >>> warmup_windows(500)
    [100, 150, 250, 450]
    >>> warmup_windows(100)
    [25, 45, 90]
    """
    if num_warmup < 20:
        return []
    if init_buffer + base_window + term_buffer > num_warmup:
        init_buffer = int(0.15 * num_warmup)
        term_buffer = int(0.1 * num_warmup)
        base_window = num_warmup - init_buffer - term_buffer
        base_window = max(1, base_window // 7) if base_window >= 7 else base_window
    ends = []
    start = init_buffer
    size = base_window
    last = num_warmup - term_buffer
    while start < last:
        end = start + size
        # the last window absorbs what would not fit another doubled window
        if end + 2 * size > last:
            end = last
        ends.append(end)
        start = end
        size *= 2
    return ends
