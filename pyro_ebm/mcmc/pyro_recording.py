"""Stock Pyro ``HMC``/``NUTS`` that record per-draw statistics, for users who stay on ``pyro.infer.MCMC``.

Pyro's kernels keep only running summaries (a mean acceptance probability, a list of divergent
iterations). :class:`RecordingNUTS` and :class:`RecordingHMC` behave exactly like ``NUTS`` and ``HMC``
(same random numbers, same draws) and additionally return one extra site, ``"_ebm_stats"``, holding
``(energy, lp, acceptance_rate, step_size, n_steps, diverging)`` for every draw. Because the statistics
travel with the draws, they survive ``num_chains > 1`` with multiprocessing. :func:`from_pyro_mcmc`
turns a finished ``MCMC`` run into a :class:`~pyro_ebm.mcmc.Samples` with ArviZ's stat names.

Definitions: ``energy`` is the Hamiltonian at the start of the transition (potential of the previous
state plus the kinetic energy of the fresh momentum); ``acceptance_rate`` is Pyro's per-transition
acceptance statistic (the mean over the tree for NUTS); ``n_steps`` counts the potential-gradient
evaluations of the transition (leapfrog steps, the tree size for NUTS); ``diverging`` is recorded
after warmup (Pyro does not track warmup divergences).
"""

from __future__ import annotations

import inspect
import math
from typing import Dict

import torch
from pyro.infer.mcmc import HMC, NUTS

from .._validation import check_positive_int, check_real
from .samples import STAT_NAMES, Samples

__all__ = ["RecordingHMC", "RecordingNUTS", "from_pyro_mcmc", "STATS_SITE"]

#: name of the extra site carrying the statistics
STATS_SITE = "_ebm_stats"


class _StatsView(dict):
    """The kernel's initial params; ``[STATS_SITE]`` resolves to a placeholder but is not iterated."""

    def __init__(self, params, placeholder):
        super().__init__(params)
        self._placeholder = placeholder

    def __getitem__(self, key):
        if key == STATS_SITE:
            return self._placeholder
        return super().__getitem__(key)


class _RecordingMixin:
    def __init__(self, *args, **kwargs):
        # Pyro's HMC/NUTS take their numeric options as they come; check the ones a typo can break
        pyro_kernel = next(c for c in type(self).__mro__ if c in (NUTS, HMC))
        given = inspect.signature(pyro_kernel).bind(*args, **kwargs).arguments
        step_size = given.get("step_size", 1)
        if isinstance(step_size, bool) or not isinstance(step_size, (int, float, torch.Tensor)):
            raise TypeError(f"step_size must be a number, got {type(step_size).__name__}")
        if not (float(step_size) > 0 and math.isfinite(float(step_size))):
            raise ValueError(f"step_size must be a finite number > 0, got {step_size}")
        for name in ("num_steps", "max_tree_depth"):
            if given.get(name) is not None:
                check_positive_int(given[name], name)
        if given.get("trajectory_length") is not None:
            check_real(given["trajectory_length"], "trajectory_length", minimum=0, strict=True)
        if "target_accept_prob" in given:
            p = check_real(given["target_accept_prob"], "target_accept_prob")
            if not 0 < p < 1:
                raise ValueError(f"target_accept_prob must be in (0, 1), got {p}")
        super().__init__(*args, **kwargs)

    _user_save_params = None

    @property
    def initial_params(self):
        params = self._initial_params
        if params is None:
            return None
        ref = next(iter(params.values()), None)
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        device = ref.device if ref is not None else None
        return _StatsView(params, torch.zeros(len(STAT_NAMES), dtype=dtype, device=device))

    @initial_params.setter
    def initial_params(self, params):
        if params is not None:
            params = {k: v for k, v in params.items() if k != STATS_SITE}
        self._initial_params = params

    @property
    def save_params(self):
        names = self._user_save_params
        if names is None:
            names = list(self._initial_params or ())
        return sorted(set(names) | {STATS_SITE})

    @save_params.setter
    def save_params(self, names):
        self._user_save_params = None if names is None else list(names)

    def setup(self, warmup_steps, *args, **kwargs):
        super().setup(warmup_steps, *args, **kwargs)
        base = self.potential_fn
        self._ebm_base_potential = base
        self._ebm_calls = 0

        def counting_potential(z):
            self._ebm_calls += 1
            return base(z)

        self.potential_fn = counting_potential

    def _sample_r(self, name):
        r, r_unscaled = super()._sample_r(name)
        self._ebm_r = r_unscaled
        return r, r_unscaled

    def sample(self, params):
        params = {k: v for k, v in params.items() if k != STATS_SITE}
        z_old, pe_old, _ = self._fetch_from_cache()
        if pe_old is None:
            pe_old = self._ebm_base_potential(params) if params else torch.zeros(())
        step_size = float(self.step_size)
        mean_old = self._mean_accept_prob
        ndiv_old = len(self._divergences)
        calls_old = self._ebm_calls
        self._ebm_r = None
        out = super().sample(params)
        t = self._t
        n = t - self._warmup_steps if t > self._warmup_steps else t
        accept = self._mean_accept_prob * n - mean_old * (n - 1)
        n_steps = self._ebm_calls - calls_old - (1 if z_old is None else 0)
        if self._ebm_r is not None:
            energy = float(self._kinetic_energy(self._ebm_r)) + float(pe_old)
        else:
            energy = float(pe_old)
        pe_new = self._fetch_from_cache()[1]
        lp = -float(pe_new) if pe_new is not None else float("nan")
        diverging = float(len(self._divergences) > ndiv_old)
        ref = next(iter(out.values()), None)
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        stats = torch.tensor([energy, lp, min(max(accept, 0.0), 1.0), step_size, float(n_steps), diverging], dtype=dtype)
        out = dict(out)
        out[STATS_SITE] = stats
        return out


class RecordingHMC(_RecordingMixin, HMC):
    """:class:`pyro.infer.mcmc.HMC` that also returns per-draw statistics in the ``"_ebm_stats"`` site.

    Takes exactly ``HMC``'s arguments. Use :func:`from_pyro_mcmc` on the finished ``MCMC``.
    """

    __signature__ = inspect.signature(HMC)  # HMC's arguments, for help() and argument checks


class RecordingNUTS(_RecordingMixin, NUTS):
    """:class:`pyro.infer.mcmc.NUTS` that also returns per-draw statistics in the ``"_ebm_stats"`` site.

    Same arguments and the same draws as ``NUTS`` for the same seed. Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro.infer import MCMC
        >>> from pyro_ebm.mcmc import RecordingNUTS, from_pyro_mcmc
        >>> def model():
        ...     pyro.sample("y", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        >>> pyro.set_rng_seed(0)
        >>> mcmc = MCMC(RecordingNUTS(model), num_samples=20, warmup_steps=20, disable_progbar=True)
        >>> mcmc.run()
        >>> s = from_pyro_mcmc(mcmc)
        >>> s.draws["y"].shape, s.stats["n_steps"].shape
        (torch.Size([1, 20, 2]), torch.Size([1, 20]))
    """

    __signature__ = inspect.signature(NUTS)


def from_pyro_mcmc(mcmc) -> Samples:
    """A :class:`~pyro_ebm.mcmc.Samples` from a finished ``pyro.infer.MCMC`` run of a recording kernel.

    ``draws`` is ``{site: [chains, draws, *site_shape]}`` (constrained, as ``mcmc.get_samples``), and
    ``stats`` the per-draw statistics ``[chains, draws]``.
    """
    if not callable(getattr(mcmc, "get_samples", None)):
        raise TypeError(f"mcmc must be a finished pyro.infer.MCMC run, got {type(mcmc).__name__}")
    if getattr(mcmc, "_samples", True) is None:
        raise ValueError("mcmc is a pyro.infer.MCMC that has not been run; call mcmc.run(...) first")
    samples = mcmc.get_samples(group_by_chain=True)
    if STATS_SITE not in samples:
        raise ValueError("this MCMC run did not use RecordingNUTS/RecordingHMC: no per-draw statistics")
    packed = samples[STATS_SITE]
    stats: Dict[str, torch.Tensor] = {}
    for k, name in enumerate(STAT_NAMES):
        v = packed[..., k]
        if name == "n_steps":
            v = v.round().long()
        elif name == "diverging":
            v = v > 0.5
        stats[name] = v
    draws = {k: v for k, v in samples.items() if k != STATS_SITE}
    return Samples(draws=draws, stats=stats, kernel=type(mcmc.kernel).__name__)
