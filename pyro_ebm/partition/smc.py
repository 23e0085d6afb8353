r"""``method="smc"``: adaptive tempered sequential Monte Carlo, the default estimator of :math:`\log Z`.

Particles start from the normalized base and walk the path :math:`\log q_b = (1-b)\log\text{base} +
b\,(-\beta F)` of :mod:`pyro_ebm.partition.annealing` with

* an **adaptive schedule**: the next ``b`` is the one at which the conditional ESS of the incremental
  weights (Zhou, Johansen and Aston 2016) is ``ess_fraction`` of the particles, found by bisection, so
  hard stretches of the path get many temperatures and easy ones few. A *pilot* replica chooses the
  temperatures, the mass matrix and the step sizes for all replicas and is then discarded, so the other
  replicas' kernels and schedule do not depend on their own particles and their estimates of ``Z`` are
  exactly unbiased (adapting on the same particles biased ``log Z`` by about one standard error);
* **resampling** (systematic) when a replica's ESS falls below half its particles; the running product
  of the mean incremental weights is the unbiased SMC estimate of :math:`Z` (Del Moral, Doucet and
  Jasra 2006);
* **HMC moves** through the library's one transition (:func:`pyro_ebm.mcmc.hmc.step`), with a diagonal
  mass matrix taken from the pilot's weighted particle cloud at each temperature and a step size steered
  to ``target_accept`` from the pilot's acceptance at the previous temperature. (A mass matrix from each
  replica's own particles lets every particle steer its own kernel: with 64 particles in 50 dimensions
  that broke invariance enough to inflate the variances by 7% and ``log Z`` by 1-3 nats.) Each move
  draws its number of leapfrog steps and each particle its step size: a fixed trajectory near half a
  period maps ``x`` to about ``-x`` on a Gaussian and leaves the weights unmixed;
* an **error bar from independent replicas**: the particles form ``num_replicas`` SMC samplers run side
  by side in one batch; :math:`\hat Z` is the mean of the ``num_replicas - 1`` non-pilot estimates and
  its delta method standard error comes from their spread, scaled by the Student-t quantile for
  ``num_replicas - 2`` degrees of freedom, so that ``value +- 2 stderr`` covers the truth about 95% of the time (a test checks
  this over 100 seeds). When a few replicas dominate the mean the error bar is not trustworthy and
  :class:`~pyro_ebm.partition.EstimateWarning` says so.
"""

from __future__ import annotations

import math
import warnings
import torch

from .._rng import make_generator
from .._validation import check_positive_int
from ..mcmc.adaptation import shrink_variance
from ._common import _F64, EstimateWarning, LogPartition, _check_some_mass, _check_values, _weights_summary
from .annealing import PathPotential, _ais_common, _Path, _sample_base, log_target_ratio, move

__all__ = ["smc"]


_Z975 = 1.959963984540054  # the standard normal's 97.5% quantile


def _t_quantile_975(dof: int) -> float:
    """The 97.5% quantile of Student's t with ``dof`` degrees of freedom (Cornish-Fisher expansion around
    the normal quantile; within 0.001 of the exact value from 5 degrees of freedom on).

    >>> round(_t_quantile_975(15), 3), round(_t_quantile_975(1000), 3)   # tables: 2.131, 1.962
    (2.131, 1.962)
    """
    z = _Z975
    v = float(dof)
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3))


def _next_increment(log_w: torch.Tensor, g: torch.Tensor, room: torch.Tensor, fraction: float, iters: int = 50):
    """Per replica, the largest ``delta`` in ``[0, room]`` whose conditional ESS
    ``(sum W e^{delta g})^2 / sum W e^{2 delta g}`` is at least ``fraction`` (bisection, all replicas at
    once). ``log_w`` ``[K, M]`` are normalized log-weights, ``g`` ``[K, M]`` the log-weight slopes."""
    log_frac = math.log(fraction)

    def log_cess(delta):
        inc = torch.where(delta.unsqueeze(-1) > 0, delta.unsqueeze(-1) * g, torch.zeros_like(g))
        return 2 * torch.logsumexp(log_w + inc, -1) - torch.logsumexp(log_w + 2 * inc, -1)

    ok_full = log_cess(room) >= log_frac
    lo, hi = torch.zeros_like(room), room.clone()
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        good = log_cess(mid) >= log_frac
        lo = torch.where(good, mid, lo)
        hi = torch.where(good, hi, mid)
    # never stall: at least a tiny step (1e-12 of the way) even where the first particle dominates
    return torch.where(ok_full, room, lo.clamp_min(1e-12).minimum(room))


def _systematic_resample(log_w: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Indices ``[K, M]`` drawn by systematic resampling from each row's normalized log-weights."""
    K, M = log_w.shape
    cdf = torch.cumsum(torch.exp(log_w - torch.logsumexp(log_w, -1, keepdim=True)), -1)
    cdf[:, -1] = 1.0
    u = (torch.rand((K, 1), generator=gen, dtype=log_w.dtype, device=log_w.device)
         + torch.arange(M, dtype=log_w.dtype, device=log_w.device)) / M
    return torch.searchsorted(cdf, u).clamp_max(M - 1)


def _gather(t: torch.Tensor, idx: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``t`` ``[K, M, ...]`` with the rows ``rows`` (bool ``[K]``) re-indexed by ``idx`` ``[K, M]``."""
    full = torch.where(rows.unsqueeze(-1), idx, torch.arange(t.shape[1], device=t.device).expand_as(idx))
    return torch.gather(t, 1, full.reshape(full.shape + (1,) * (t.dim() - 2)).expand(t.shape))


def _cloud_variance(x: torch.Tensor, log_w: torch.Tensor) -> torch.Tensor:
    """Weighted diagonal variance ``[K, 1, D]`` of each row of particles ``x`` ``[K, M, D]``, shrunk
    slightly towards 1e-3 (:func:`~pyro_ebm.mcmc.adaptation.shrink_variance`, as the warmup of
    :mod:`pyro_ebm.mcmc` does)."""
    w = torch.exp(log_w - torch.logsumexp(log_w, -1, keepdim=True)).to(x.dtype).unsqueeze(-1)
    mean = (w * x).sum(1, keepdim=True)
    var = shrink_variance((w * (x - mean) ** 2).sum(1, keepdim=True), x.shape[1])
    return torch.where(torch.isfinite(var) & (var > 0), var, torch.ones_like(var))


def smc(
    energy,
    beta,
    *,
    event_shape=None,
    base=None,
    loc=None,
    scale=None,
    num_particles: int = 2048,
    num_replicas: int = 16,
    ess_fraction: float = 0.9,
    num_mcmc_steps: int = 3,
    num_leapfrog: int = 5,
    target_accept: float = 0.75,
    max_temperatures: int = 5000,
    dtype=None,
    seed=None,
) -> LogPartition:
    """Adaptive tempered SMC (see the module docstring); called through
    :func:`pyro_ebm.partition.log_partition` with ``method="smc"``."""
    (energy, base, is_gauss, _, n_mcmc, n_leapfrog, target_accept, d, precond, dtype, device) = _ais_common(
        energy, event_shape, base, loc, scale, dtype, "linear", 1, num_mcmc_steps, "hmc", num_leapfrog, None,
        target_accept,
    )
    K = check_positive_int(num_replicas, "num_replicas", minimum=3)
    N = check_positive_int(num_particles, "num_particles", minimum=2 * K)
    M = N // K
    if not 0.0 < float(ess_fraction) < 1.0:
        raise ValueError(f"ess_fraction must be in (0, 1), got {ess_fraction}")
    max_t = check_positive_int(max_temperatures, "max_temperatures")
    gen = make_generator(seed, device)
    path = _Path(energy, base, is_gauss, beta, energy._label())
    with torch.no_grad():
        x0 = _sample_base(base, K * M, gen, is_gauss).to(dtype).reshape(K * M, d)
        if path.gauss is None:
            first = x0[:1].reshape((1,) + path.event_shape)
            if bool(path.base.support.check(first).all()):
                path.safe = first[0].detach()
        x = x0.reshape(K, M, d)
        pot = PathPotential(path, torch.zeros((K, 1), dtype=dtype, device=device))
        pot.value_and_grad(x)
        comps = pot.last[1]
        _check_values(comps[0].reshape(-1), x0.reshape((K * M,) + path.event_shape), "a starting particle",
                      path.label)
        _check_some_mass(comps[0][0], path.label, "starting particles of the pilot replica (drawn from the base)",
                         "move the base (loc, scale, or base=) over the region where the energy is finite")
        log_w = torch.full((K, M), -math.log(M), dtype=_F64, device=device)
        log_z = torch.zeros(K, dtype=_F64, device=device)
        b = torch.zeros(K, dtype=_F64, device=device)
        eps = torch.full((K, 1), 1.2 * d ** (-0.25), dtype=dtype, device=device)
        schedule, steps, rates = [0.0], [], []
        while bool((b < 1).any()):
            if len(steps) >= max_t:
                raise ValueError(
                    f"SMC needed more than max_temperatures={max_t} temperatures (reached b = "
                    f"{float(b.min()):.3g} of 1): raise max_temperatures, or lower ess_fraction"
                )
            g = log_target_ratio(path, comps)
            # the pilot (replica 0) chooses the next temperature for every replica
            delta = _next_increment(log_w[:1], g[:1], 1.0 - b[:1], ess_fraction).expand(K)
            inc = torch.where(delta.unsqueeze(-1) > 0, delta.unsqueeze(-1) * g, torch.zeros_like(g))
            step_log_z = torch.logsumexp(log_w + inc, -1)
            log_z = log_z + step_log_z
            log_w = log_w + inc - step_log_z.unsqueeze(-1)
            b = torch.where(delta >= 1.0 - b, torch.ones_like(b), b + delta)
            schedule.append(float(b[0]))
            ess = torch.exp(-torch.logsumexp(2 * log_w, -1))
            low = ess < 0.5 * M
            if bool(low.any()):
                idx = _systematic_resample(log_w, gen)
                x = _gather(x, idx, low)
                comps = tuple(_gather(c, idx, low) for c in comps)
                log_w = torch.where(low.unsqueeze(-1), torch.full_like(log_w, -math.log(M)), log_w)
            pot.b = b.unsqueeze(-1).to(dtype)
            # the mass matrix comes from the pilot's cloud, so no particle steers its own kernel
            inv_mass = _cloud_variance(x[:1], log_w[:1]).expand(K, 1, d)
            acc = torch.zeros(K, dtype=dtype, device=device)
            for _ in range(n_mcmc):
                # jitter: a fixed trajectory length can sit near half a period of the target, where HMC
                # maps x to about -x and leaves |x| (and the weights) unmixed; each move draws its number
                # of steps and each particle its step size
                L = int(torch.randint(1, 2 * n_leapfrog + 1, (1,), generator=gen))
                eps_t = eps * (0.5 + torch.rand((K, M), generator=gen, dtype=dtype, device=device))
                x, comps, a = move(pot, x, comps, eps_t, inv_mass, L, gen)
                acc = acc + a.mean(-1) / max(n_mcmc, 1)
            steps.append(float(eps.mean()))
            rates.append(float(acc.mean()))
            if n_mcmc:
                # the next temperature's step follows the pilot's acceptance at this one
                eps = (eps * math.exp(2.0 * (float(acc[0]) - target_accept))).clamp(1e-6, 1e3)
    # the pilot's estimate is biased by its own adaptation: the K - 1 others are independent given it
    log_z, log_w, x = log_z[1:], log_w[1:], x[1:]
    n_rep = K - 1
    # the replicas' estimates of Z are importance weights of the same kind as AIS's: one summary for both
    value, stderr, replica_ess = _weights_summary(log_z)
    stderr = stderr * (_t_quantile_975(n_rep - 1) / _Z975)
    replica_ess = float(replica_ess)
    if replica_ess < n_rep / 2:
        warnings.warn(
            f"SMC: {replica_ess:.1f} of the {n_rep} replicas carry the estimate of log Z, so its error bar is "
            f"not meaningful; raise num_particles (now {N}) or ess_fraction (now {ess_fraction})",
            EstimateWarning,
            stacklevel=3,
        )
    pooled = (log_z.unsqueeze(-1) + log_w).reshape(-1)
    ess_total = _weights_summary(pooled)[2]
    return LogPartition(
        value, stderr, ess_total, "smc", pooled, x.reshape((n_rep * M,) + tuple(energy.event_shape)),
        torch.tensor(schedule, dtype=_F64), torch.tensor(steps, dtype=_F64), torch.tensor(rates, dtype=_F64),
        path.evals,
    )
