"""The warmup of the gradient-based kernels (HMC, MALA): one schedule (data), one state, one update.

:func:`warmup_schedule` lays out the iterations: mass-matrix windows ``[start, end)`` and, after the last
one, a final window that adapts only the step size. :class:`Warmup` holds everything that warmup adapts
-- per-chain step sizes (dual averaging, :class:`~pyro_ebm.mcmc.adaptation.BatchedDualAveraging`), the
diagonal inverse mass matrix (variance across chains and iterations), the ChEES trajectory length -- and
:meth:`Warmup.update` is the one place where they change. The run loop (:mod:`pyro_ebm.mcmc.loop`) only
asks for the step sizes and trajectory length of the next transition and hands back its statistics.

When a window closes, the mass matrix changes and the step size tuned for the old one is no longer right:
as Stan does, the step size is searched again (one-step doubling/halving from the current one, a few
batched gradients) before dual averaging restarts. Every schedule ends with a step-size-only window long
enough for dual averaging to settle, which is what keeps short budgets (``num_warmup=50``) on target.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple, Tuple

import torch

from .adaptation import (
    BatchedDualAveraging,
    chees_gradient_from_terms,
    chees_init,
    chees_terms,
    chees_update,
    moments_init,
    moments_update,
    moments_variance,
    dual_averaging_update,
    warmup_windows,
)

__all__ = ["WarmupSchedule", "warmup_schedule", "Warmup", "TuningWarning", "update_tensors"]

#: dual-averaging ``gamma`` of the per-chain step-size schemes. Stan's 0.05 is tuned for one chain
#: averaging many iterations; per chain, with one noisy acceptance per iteration, it makes ``log eps``
#: jitter so much that the averaged step size overshoots the target acceptance (0.8 -> ~0.9, by Jensen's
#: inequality on the concave acceptance curve). 0.2 lands on the target.
DA_GAMMA = 0.2

#: cost exponent ``a`` of the trajectory-length objective ``log ChEES - a log T`` (see
#: :func:`pyro_ebm.mcmc.adaptation.chees_update`)
CHEES_COST = 0.5

#: until the first metric is estimated, the trajectory length may grow to at most this many times its
#: start (16 step sizes). With the identity metric on a badly scaled target ChEES drives it towards the
#: longest scale at a step size set by the shortest -- ~50 leapfrog steps a transition on the benchmark's
#: 50-d Gaussian (scales 0.1 to 10), half of a 500 + 500 run's gradients -- and the first metric changes
#: its units and restarts it anyway. Some growth is kept because it carries chains started far from the
#: typical set (all at zero) out to the long scales before the first window estimates them: with no
#: growth at all (a factor of 1), 100 warmup iterations from zeros left the longest scale's variance at
#: 0.69 of the truth, against 0.96-0.97 with the factor of 4 or no cap.
PRE_METRIC_GROWTH = 4.0

#: the final window's acceptance may miss the target by this much before :class:`TuningWarning` is raised
TUNING_TOLERANCE = 0.1

#: dual averaging shrinks ``log eps`` towards ``log(PROX_FACTOR * eps0)``, ``eps0`` the searched step size.
#: Stan uses 10, which long windows walk back from; a 10-iteration window cannot (acceptance 0.1-0.5
#: instead of 0.57-0.8 on Gaussians and a double well at 20 warmup iterations). With 1 (the search's
#: one-step acceptance already sits at the target) every benchmark energy lands within 0.06 of the
#: target at every budget from 20 to 500 iterations.
PROX_FACTOR = 1.0


#: a checkpoint (the end of the last mass-matrix window, the middle of the final window) whose count of
#: divergent transitions (target replica) shows a rate above this fraction -- more than a Poisson count
#: at that rate exceeds with probability ``DIVERGENCE_LEVEL`` -- raises the target acceptance, halving its
#: distance to 1 (0.8 -> 0.9 -> 0.95), up to ``MAX_TARGET``: Stan's advice for divergences ("raise
#: adapt_delta"), applied by the warmup itself. Divergences come from trajectories that reach regions
#: stiffer than where the step size was tuned (a quartic well's walls), which the average acceptance
#: hardly sees. The test keeps one stray divergence among a short window's few hundred transitions (a
#: standard normal right after a metric update) from raising the target; a checkpoint that leaves fewer
#: than ``MIN_RETUNE`` iterations, too few for dual averaging to reach a new target, is skipped.
DIVERGENCE_RATE = 1e-3
DIVERGENCE_LEVEL = 0.05
MAX_TARGET = 0.99
MIN_RETUNE = 10


def poisson_tail(k: int, mean: float) -> float:
    """``P(X >= k)`` for ``X ~ Poisson(mean)``.

    >>> round(poisson_tail(1, 0.64), 3), round(poisson_tail(3, 0.64), 3)
    (0.473, 0.027)
    """
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    below = sum(math.exp(j * math.log(mean) - mean - math.lgamma(j + 1)) for j in range(k))
    return max(0.0, 1.0 - below)


class TuningWarning(UserWarning):
    """Warmup ended with an acceptance rate far from its target: the step size is not tuned (give more
    ``num_warmup``, or check the energy for regions where its gradient explodes)."""


class WarmupSchedule(NamedTuple):
    """The warmup as data: ``num_warmup`` iterations, mass-matrix ``windows`` (``(start, end)`` pairs,
    0-based, end exclusive) and, from ``final_start`` on, a window that adapts only the step size."""

    num_warmup: int
    windows: Tuple[Tuple[int, int], ...]

    @property
    def final_start(self) -> int:
        return self.windows[-1][1] if self.windows else 0


def warmup_schedule(num_warmup: int, adapt_mass: bool = True) -> WarmupSchedule:
    """Lay out ``num_warmup`` iterations.

    * ``num_warmup >= 150``: Stan's schedule (:func:`~pyro_ebm.mcmc.adaptation.warmup_windows`): 75
      iterations of step size only, doubling mass-matrix windows from 25 iterations, and a final 50.
    * ``20 <= num_warmup < 150``: one mass-matrix window over ``[0.2 n, 0.5 n)`` -- all chains pool
      their draws, so a short window already holds many -- and a final step-size window of ``0.5 n``
      (Stan's schedule would leave 5 to 15 iterations for the step size after its last window).
    * fewer iterations, or ``adapt_mass=False``: no mass-matrix window.

    >>> warmup_schedule(500).windows
    ((75, 100), (100, 150), (150, 250), (250, 450))
    >>> s = warmup_schedule(50); s.windows, s.final_start
    (((10, 25),), 25)
    >>> warmup_schedule(19).windows
    ()
    """
    if not adapt_mass or num_warmup < 20:
        return WarmupSchedule(num_warmup, ())
    if num_warmup >= 150:
        ends = warmup_windows(num_warmup)
        starts = [75] + ends[:-1]
        return WarmupSchedule(num_warmup, tuple(zip(starts, ends)))
    return WarmupSchedule(num_warmup, ((round(0.2 * num_warmup), round(0.5 * num_warmup)),))


def update_tensors(accept_prob, diverging, *rest, adapt_step: bool, chees: bool):
    """The tensor work of one :meth:`Warmup.update`, as one function (the compiled path compiles it whole).

    ``rest`` is ``(q_prev, q_prop, p_prop, step_size, n_steps, metric)`` with ``chees`` (each chain's
    trajectory length is ``step_size * n_steps``, ``n_steps`` a long tensor ``[R, C]``), then ``(g_avg,
    x_avg, prox_center, weights, target)`` with ``adapt_step``: one dual-averaging step
    (:func:`~pyro_ebm.mcmc.adaptation.dual_averaging_update` on ``target - accept_prob``) and the ChEES
    terms (:func:`~pyro_ebm.mcmc.adaptation.chees_terms`). Returns ``(g_avg, x_t, x_avg, exp(x_t),
    summary)`` (``(summary,)`` without ``adapt_step``), ``summary`` one tensor read back at once: the median of
    ``x_t`` (the log step size) over chains per replica, the ChEES terms, the number of divergent
    transitions and the mean acceptance of the target replica.
    """
    parts, out = [], ()
    if chees:
        q_prev, q_prop, p_prop, step_size, n_steps, metric = rest[:6]
        traj_len = step_size * n_steps.to(step_size.dtype)
        rest = rest[6:]
    if adapt_step:
        g_avg, x_avg, prox, weights, target = rest
        out = dual_averaging_update(g_avg, x_avg, prox, target - accept_prob, weights[0], weights[1], weights[2])
        parts.append(out[1].median(dim=1).values)
        out += (out[1].exp(),)
    if chees:
        parts.append(chees_terms(q_prev, q_prop, p_prop, accept_prob, traj_len, metric))
    parts.append(diverging[0].sum().to(accept_prob.dtype).reshape(1))
    parts.append(accept_prob[0].mean().reshape(1))
    return tuple(out) + (torch.cat(parts),)


class Warmup:
    """Everything warmup adapts, for ``R`` replicas of ``C`` chains in ``D`` dimensions.

    :param schedule: a :class:`WarmupSchedule`.
    :param step_size: ``[R, C]`` initial per-chain step sizes (from a search or the user).
    :param inv_mass: ``[R, 1, D]`` initial diagonal inverse mass matrix.
    :param target: target acceptance probability.
    :param adapt_step: adapt the step sizes by dual averaging.
    :param trajectory_length: ``None`` (the number of leapfrog steps is fixed) or the initial trajectory
        length of each replica (floats), adapted by ChEES.
    :param chees_lr: ChEES' Adam learning rate.
    :param max_steps: cap on leapfrog steps per transition (bounds the trajectory length).
    :param ops: the transition's pieces (:class:`~pyro_ebm.mcmc.hmc.EagerOps` or compiled ones): the
        tensor work of each update (:func:`update_tensors`) runs through ``ops.call``, compiled with them.

    The run loop reads ``step_size``, ``log_median_step``, ``inv_mass`` and :attr:`log_trajectory_length`
    before each warmup transition, calls :meth:`update` after it (which returns ``True`` when the mass
    matrix just changed: the loop then searches a new step size and hands it to
    :meth:`restart_step_size`), and :meth:`finish` once warmup is over.
    """

    def __init__(self, schedule: WarmupSchedule, step_size: torch.Tensor, inv_mass: torch.Tensor, *,
                 target: float, adapt_step: bool, trajectory_length=None, chees_lr: float = 0.05,
                 max_steps: int = 256, ops=None):
        self.schedule = schedule
        self.ops = ops
        self.target = target
        self.adapt_step = adapt_step
        self.inv_mass = inv_mass
        self.metric = 1.0 / inv_mass
        self._target_t = torch.tensor(target, dtype=step_size.dtype, device=step_size.device)
        self._log_max_steps = math.log(max_steps)
        self.chees_lr = chees_lr
        self.moments = None
        self._restarted_chees = False
        self._final_accept = []  # mean acceptance of each iteration of the final window's second half
        self._div = [0, 0]  # divergent transitions and transitions (target replica) since the last checkpoint
        final = schedule.final_start
        #: first iteration of the final window's second half (its acceptance is checked by finish)
        self._final_half = final + (schedule.num_warmup - final) // 2
        # counted over the last mass-matrix window and the first half of the final one (earlier windows see
        # the chains come in from their initial states: transients)
        self._checkpoints = {c for c in (final, self._final_half) if schedule.num_warmup - c >= MIN_RETUNE}
        self._count_from = schedule.windows[-1][0] if schedule.windows else 0
        self.restart_step_size(step_size)
        #: dual averaging's weights by step count (an input of the compiled update, not a constant)
        self._da_weights = self.da.weight_table(schedule.num_warmup + 1, step_size.dtype, step_size.device)
        self.chees = None if trajectory_length is None else chees_init(trajectory_length)
        #: each replica's cap on log T until the first metric is estimated (see PRE_METRIC_GROWTH)
        self._pre_metric_cap = None if self.chees is None else [
            lt + math.log(PRE_METRIC_GROWTH) for lt in self.chees.log_T]
        self._window_ends = {end for _, end in schedule.windows}
        self._in_window = {i for start, end in schedule.windows for i in range(start, end)}

    # -- what the next transition uses -----------------------------------------------------------
    def restart_step_size(self, step_size: torch.Tensor) -> None:
        """(Re)start dual averaging from ``step_size`` ``[R, C]``, shrinking towards ``PROX_FACTOR`` times it."""
        self.step_size = step_size
        self.log_median_step = step_size.log().median(dim=1).values.tolist()
        self.da = BatchedDualAveraging(prox_center=torch.log(PROX_FACTOR * step_size), gamma=DA_GAMMA)

    @property
    def log_trajectory_length(self):
        """Each replica's log trajectory length (floats), or ``None`` when it is not adapted."""
        return None if self.chees is None else self.chees.log_T

    # -- the update --------------------------------------------------------------------------------
    def update(self, i: int, q_prev: torch.Tensor, q: torch.Tensor, info, step_size, n_steps) -> bool:
        """Adapt after warmup iteration ``i``: ``q_prev`` and ``q`` are the states before and after the
        transition ``[R, C, D]``, ``info`` its :class:`~pyro_ebm.mcmc.hmc.HMCInfo`, ``step_size`` ``[R, C]``
        the step sizes it used and ``n_steps`` its numbers of leapfrog steps (a long tensor ``[R, C]``;
        ``None`` when the trajectory length is not adapted). Returns ``True`` when a mass-matrix
        window closed (the caller then searches a step size for the new metric)."""
        with_chees = self.chees is not None
        args = (info.accept_prob, info.diverging)
        if with_chees:
            args += (q_prev, info.q_prop, info.p_prop, step_size, n_steps, self.metric)
        if self.adapt_step:
            args += (*self.da.averages(), self.da.prox_center, self._da_weights[self.da.t], self._target_t)
        fn = functools.partial(update_tensors, adapt_step=self.adapt_step, chees=with_chees)
        out = fn(*args) if self.ops is None else self.ops.call(("warmup", self.adapt_step, with_chees), fn, args)
        summary = out[-1].tolist()  # the one synchronisation of the update
        R = q.shape[0]
        if self.adapt_step:
            self.da.set(*out[:3])
            step_size = out[3]
            self.log_median_step, summary = summary[:R], summary[R:]
        if with_chees:
            terms, summary = summary[: 2 * R], summary[2 * R:]
        divergent, mean_accept = int(summary[0]), summary[1]
        if self.adapt_step:
            if i >= self._count_from:
                self._div[0] += divergent
                self._div[1] += info.diverging.shape[1]
            if i + 1 in self._checkpoints and self._raise_target() and i + 1 not in self._window_ends:
                self.restart_step_size(step_size)
            self.step_size = step_size
        if with_chees:
            grads = chees_gradient_from_terms(terms, CHEES_COST)
            cap = [m + self._log_max_steps for m in self.log_median_step]
            if self.schedule.windows and not self._restarted_chees:  # no metric yet
                cap = [min(c, c0) for c, c0 in zip(cap, self._pre_metric_cap)]
            self.chees = chees_update(self.chees, grads, lr=self.chees_lr, max_log_T=cap)
        if i >= self._final_half:
            self._final_accept.append(mean_accept)
        if i in self._in_window:
            if self.moments is None:
                self.moments = moments_init(q)
            self.moments = moments_update(self.moments, q)
        if i + 1 not in self._window_ends:
            return False
        self.inv_mass = moments_variance(self.moments)
        self.metric = 1.0 / self.inv_mass
        self.moments = None
        if self.adapt_step:
            self.step_size = torch.exp(self.da.get_state()[1])  # the window's averaged step size
        if self.chees is not None and not self._restarted_chees:
            # the first metric replaces the identity, so T's units changed: restart the adaptation from
            # below (at most 4 step sizes), where the first optimum met is the shortest good trajectory
            # (from above, T can stop at a later, worse local optimum)
            self._restarted_chees = True
            med = self.step_size.log().median(dim=1).values.tolist()
            self.chees = chees_init([min(math.exp(lt), 4 * math.exp(m))
                                     for lt, m in zip(self.chees.log_T, med)])
        return True

    def _raise_target(self) -> bool:
        """Raise the target acceptance if the transitions since the last checkpoint diverged too often
        (dual averaging then restarts: at a window's end the run loop does it after a step-size search)."""
        divergent, total = self._div
        self._div = [0, 0]
        significant = total and poisson_tail(divergent, DIVERGENCE_RATE * total) < DIVERGENCE_LEVEL
        if not (significant and self.target < MAX_TARGET):
            return False
        self.target = min(MAX_TARGET, 1 - (1 - self.target) / 2)
        self._target_t = torch.full_like(self._target_t, self.target)
        return True

    def finish(self):
        """The adapted ``(step_size [R, C], log trajectory lengths or None, inv_mass [R, 1, D])``; warns
        with :class:`TuningWarning` when the second half of the final window's mean acceptance (target
        replica) is more than ``TUNING_TOLERANCE`` from the target."""
        if self.adapt_step and self.da.t > 0:
            self.step_size = torch.exp(self.da.get_state()[1])
            self.log_median_step = self.step_size.log().median(dim=1).values.tolist()
        if self.adapt_step and self._final_accept:
            acc = sum(self._final_accept) / len(self._final_accept)
            if abs(acc - self.target) > TUNING_TOLERANCE:
                warnings.warn(
                    f"warmup ended with mean acceptance {acc:.2f} in its final window, target "
                    f"{self.target:.2f}: the step size is not tuned (raise num_warmup, now "
                    f"{self.schedule.num_warmup}, or look for regions where the energy's gradient explodes)",
                    TuningWarning,
                    stacklevel=5,  # finish <- end_warmup <- run <- sample <- the caller
                )
        log_T = None if self.chees is None else self.chees.log_T_avg
        return self.step_size, log_T, self.inv_mass
