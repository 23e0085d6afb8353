"""Warmup adaptation, batched over chains.

All state here is a small tuple of tensors (or of numbers, one per replica); every update is a handful
of elementwise torch ops, so the driver can call them once per iteration for thousands of chains
without a Python loop over chains.

* :class:`BatchedDualAveraging` is :class:`pyro.ops.dual_averaging.DualAveraging`'s scheme (same
  formulas and defaults) written as three fused tensor updates, so a statistic ``g`` of shape
  ``[replicas, chains]`` gives one scheme per chain for the price of three tensor operations.
* :func:`moments_init` / :func:`moments_update` / :func:`moments_variance` estimate a diagonal variance
  *across chains and iterations* (Pyro's ``WelfordCovariance`` takes one sample per call, which would
  need a loop over chains): shifted sums, three elementwise operations per batch of chains.
* :func:`chees_init` / :func:`chees_gradient` / :func:`chees_update` adapt the HMC trajectory length by
  stochastic gradient ascent on the ChEES criterion (Hoffman, Radul & Sountsov, AISTATS 2021) with a
  cost penalty.
* :func:`warmup_windows` is Stan's windowed schedule for the mass matrix.
"""

from __future__ import annotations

import math
from typing import List, NamedTuple

import torch
from pyro.ops.dual_averaging import DualAveraging

__all__ = [
    "DualAveraging",
    "BatchedDualAveraging",
    "MomentsState",
    "moments_init",
    "moments_update",
    "moments_variance",
    "shrink_variance",
    "CheesState",
    "chees_init",
    "chees_gradient",
    "chees_terms",
    "chees_gradient_from_terms",
    "chees_update",
    "dual_averaging_update",
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

    @property
    def t(self) -> int:
        """The number of steps taken."""
        return self._t

    def weights(self, t: int | None = None) -> tuple:
        """The ``t``-th update's ``(1 / (t + t0), sqrt(t) / gamma, t^-kappa)`` (by default the next one's)."""
        t = self._t + 1 if t is None else t
        return 1.0 / (t + self.t0), t**0.5 / self.gamma, t ** (-self.kappa)

    def weight_table(self, n: int, dtype=None, device=None) -> torch.Tensor:
        """The weights of updates ``1..n`` as a tensor ``[n, 3]``: row ``t`` is the next update's after ``t``
        steps, so a driver indexes it instead of building a tensor at every update."""
        return torch.tensor([self.weights(t) for t in range(1, n + 1)], dtype=dtype, device=device)

    def averages(self):
        """``(g_avg, x_avg)``, the running averages :func:`dual_averaging_update` takes."""
        return self._g_avg, self._x_avg

    def step(self, g: torch.Tensor) -> None:
        self.set(*dual_averaging_update(self._g_avg, self._x_avg, self.prox_center, g, *self.weights()))

    def set(self, g_avg: torch.Tensor, x_t: torch.Tensor, x_avg: torch.Tensor) -> None:
        """Store the result of :func:`dual_averaging_update` with :meth:`weights` (one more step)."""
        self._t += 1
        self._g_avg, self._x_t, self._x_avg = g_avg, x_t, x_avg

    def get_state(self):
        """``(x_t, x_avg)``: the latest iterate and the weighted average of the iterates."""
        return self._x_t, self._x_avg


def dual_averaging_update(g_avg, x_avg, prox_center, g, w_g, c, w_x):
    """One step of the scheme with :meth:`BatchedDualAveraging.weights` ``(w_g, c, w_x)`` (floats or 0-d
    tensors): ``g_avg = lerp(g_avg, g, w_g)``, ``x_t = prox_center - c g_avg``, ``x_avg = lerp(x_avg, x_t,
    w_x)``. Returns ``(g_avg, x_t, x_avg)``."""
    g_avg = torch.lerp(g_avg, g, w_g)
    x_t = prox_center - c * g_avg
    return g_avg, x_t, torch.lerp(x_avg, x_t, w_x)


class MomentsState(NamedTuple):
    """Sums for a diagonal variance across chains and iterations: the number of draws merged,
    a per-dimension ``shift`` ``[R, 1, D]`` (the first batch's mean) and per-chain sums of ``q - shift``
    and of its square, both ``[R, C, D]``."""

    count: int
    shift: torch.Tensor
    s1: torch.Tensor
    s2: torch.Tensor


def moments_init(q: torch.Tensor) -> MomentsState:
    """Empty accumulator for chain batches shaped like ``q`` ``[replicas, chains, D]``; the shift is
    ``q``'s mean over chains, which keeps the sums free of cancellation when ``|mean| >> std``."""
    z = torch.zeros_like(q)
    return MomentsState(0, q.mean(1, keepdim=True), z, z.clone())


def moments_update(state: MomentsState, q: torch.Tensor) -> MomentsState:
    """Add a batch of chains ``q`` ``[replicas, chains, D]`` (three elementwise operations, in place)."""
    if q.shape != state.s1.shape:
        raise ValueError(f"q must have the accumulator's shape {tuple(state.s1.shape)}, got {tuple(q.shape)}")
    d = q - state.shift
    state.s1.add_(d)
    state.s2.addcmul_(d, d)
    return MomentsState(state.count + 1, state.shift, state.s1, state.s2)


def shrink_variance(var: torch.Tensor, n: int) -> torch.Tensor:
    """Stan's regularisation of a variance estimated from ``n`` draws: ``(n var + 5e-3) / (n + 5)``, i.e.
    shrunk towards ``1e-3`` with the weight of 5 draws.

    >>> shrink_variance(torch.tensor([2.0]), 5)
    tensor([1.0005])
    """
    return (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0))


def moments_variance(state: MomentsState, regularize: bool = True) -> torch.Tensor:
    """Sample variance ``[replicas, 1, D]`` of every draw merged, shrunk towards ``1e-3`` like Stan
    (:func:`shrink_variance`) when ``regularize``."""
    n = max(state.count * state.s1.shape[1], 2)
    m1 = state.s1.sum(1, keepdim=True) / n
    var = (state.s2.sum(1, keepdim=True) / n - m1 * m1) * (n / (n - 1))
    var = var.clamp_min(0.0)
    return shrink_variance(var, n) if regularize else var


class CheesState(NamedTuple):
    """Per replica (tuples of floats): log trajectory length, its running average and Adam's second
    moment; and the iteration count. The state is a handful of numbers per replica, so the Adam step
    is plain Python arithmetic rather than a dozen tensor operations on one-element tensors."""

    log_T: tuple
    log_T_avg: tuple
    v: tuple
    t: int


def chees_init(T0) -> CheesState:
    """State for initial trajectory lengths ``T0`` (a float, a sequence or a tensor, one per replica)."""
    T0 = torch.as_tensor(T0).flatten().tolist()
    if not T0 or not all(math.isfinite(t) and t > 0 for t in T0):
        raise ValueError(f"T0 must be positive finite trajectory lengths, got {T0}")
    log_T = tuple(math.log(t) for t in T0)
    return CheesState(log_T, log_T, (0.0,) * len(log_T), 0)


def chees_gradient(
    q0: torch.Tensor,
    q_prop: torch.Tensor,
    p_prop: torch.Tensor,
    accept_prob: torch.Tensor,
    traj_len: torch.Tensor,
    metric: torch.Tensor,
    cost_exponent: float = 0.5,
) -> List[float]:
    """Estimate of ``d/d log T [log ChEES - a log T]`` for each replica (``a = cost_exponent``).

    ``ChEES = E[(|q' - E q'|^2 - |q - E q|^2)^2] / 4`` with norms in the metric ``M = diag(metric)``
    (the inverse of the diagonal inverse mass matrix). Its per-chain gradient estimate w.r.t. ``log T``
    is ``t_i (|q'_i - mean'|^2 - |q_i - mean|^2) <q'_i - mean', p'_i>`` with ``t_i`` the chain's
    (jittered) trajectory length; chains are weighted by their acceptance probability, and proposals that
    are not finite (acceptance probability 0) get weight 0. A replica with no usable chain gets 0.

    Shapes: ``q0, q_prop, p_prop`` ``[R, C, D]``, ``accept_prob, traj_len`` ``[R, C]``, ``metric``
    ``[R, 1, D]``. Returns ``R`` floats.
    """
    R, C, D = q0.shape
    for name, t, want in (("q_prop", q_prop, (R, C, D)), ("p_prop", p_prop, (R, C, D)),
                          ("accept_prob", accept_prob, (R, C)), ("traj_len", traj_len, (R, C)),
                          ("metric", metric, (R, 1, D))):
        if tuple(t.shape) != want:
            raise ValueError(f"{name} must have shape {want} (q0 is {tuple(q0.shape)}), got {tuple(t.shape)}")
    return chees_gradient_from_terms(chees_terms(q0, q_prop, p_prop, accept_prob, traj_len, metric).tolist(),
                                     cost_exponent)


def chees_terms(q0, q_prop, p_prop, accept_prob, traj_len, metric) -> torch.Tensor:
    """The tensor part of :func:`chees_gradient`: ``[dChEES/dlogT per replica, 4 ChEES per replica]``
    (``[2 R]``). A proposal that is not finite has acceptance probability 0 and weight 0; it is replaced by
    its chain's start so that ``0 * inf`` cannot make a NaN."""
    valid = (accept_prob > 0).unsqueeze(-1)
    q_prop = torch.where(valid, q_prop, q0)
    p_prop = torch.where(valid, p_prop, torch.zeros_like(p_prop))
    wn = accept_prob / accept_prob.sum(1, keepdim=True)
    return _chees_terms(q0, q_prop, p_prop, wn, traj_len, metric)


def chees_gradient_from_terms(terms: List[float], cost_exponent: float = 0.5) -> List[float]:
    """The per-replica gradients of :func:`chees_gradient` from :func:`chees_terms` (as floats); a
    replica with no usable chain gets 0."""
    R = len(terms) // 2
    grads = []
    for g, chees_4 in zip(terms[:R], terms[R:]):
        if not (math.isfinite(g) and math.isfinite(chees_4)):
            g = 0.0
        elif cost_exponent:
            g = 4.0 * g / chees_4 - cost_exponent if chees_4 > 0 else 0.0
        grads.append(g)
    return grads


def _chees_terms(q0, qp, pp, wn, traj_len, metric):
    """``[dChEES/dlogT for each replica] + [4 ChEES for each replica]`` as one tensor ``[2 R]``."""
    d0 = q0 - q0.mean(1, keepdim=True)
    d1 = qp - torch.matmul(wn.unsqueeze(1), qp)  # q' minus the weighted mean of the proposals
    # |d1|^2_M - |d0|^2_M
    diff = torch.matmul(torch.addcmul(d1 * d1, d0, d0, value=-1), metric.transpose(-1, -2)).squeeze(-1)
    wdiff = wn * diff
    g = torch.linalg.vecdot(wdiff, traj_len * torch.linalg.vecdot(d1, pp))
    return torch.cat((g, torch.linalg.vecdot(wdiff, diff)))


def chees_update(
    state: CheesState,
    grads: List[float],
    *,
    lr: float = 0.025,
    beta2: float = 0.5,
    kappa: float = 0.75,
    max_log_T: List[float] | None = None,
) -> CheesState:
    """One Adam step (no first moment) on each replica's ``log T`` along ``grads`` (from
    :func:`chees_gradient`), capped at ``max_log_T``; the running average uses weights ``t^-kappa``.

    The objective is ``log ChEES - a log T``. Plain ChEES (``a = 0``, the criterion of Hoffman, Radul &
    Sountsov, 2021) is flat in ``T`` once trajectories decorrelate (on a Gaussian its jittered value
    tends to a constant beyond about one period), and Adam's normalised steps then random-walk ``log T``:
    the adapted length, hence the cost per draw, varied ten-fold between seeds while the ESS did not.
    ``a = 1/2`` charges the trajectory's cost like the ``1/sqrt(L)`` penalty of Wang, Mohamed &
    de Freitas (2013) for the expected squared jump: ``log T`` settles where ChEES grows like ``sqrt(T)``.

    >>> st = chees_update(chees_init(1.0), [1.0], lr=0.1)
    >>> round(math.exp(st.log_T[0]), 4)   # one normalised step of 0.1 in log T
    1.1052
    """
    t = state.t + 1
    bias = (1 - beta2**t) ** -0.5
    w_avg = t ** (-kappa)
    log_T, log_T_avg, v = [], [], []
    for r, g in enumerate(grads):
        v_r = beta2 * state.v[r] + (1 - beta2) * g * g
        lt = state.log_T[r] + lr * g / (math.sqrt(v_r) * bias + 1e-10)
        if max_log_T is not None:
            lt = min(lt, max_log_T[r])
        log_T.append(lt)
        log_T_avg.append(state.log_T_avg[r] + w_avg * (lt - state.log_T_avg[r]))
        v.append(v_r)
    return CheesState(tuple(log_T), tuple(log_T_avg), tuple(v), t)


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
