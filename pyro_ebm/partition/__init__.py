r"""The log partition function :math:`\log Z_\beta = \log \int e^{-\beta F(y)}\,dy` and what it buys.

An energy defines the Gibbs-Boltzmann density :math:`p(y) = e^{-\beta F(y)} / Z_\beta` only up to its
normalizer. Knowing :math:`\log Z` turns an EBM into a normalized model: held-out log-likelihoods become
comparable with those of probabilistic models, and the EBM can be scored as a proper ``pyro.sample`` site.

Four estimators, chosen by ``method`` in :func:`log_partition`:

* ``"exact"`` -- a finite output set ``values`` ``[K, *event_shape]`` (sums, with counting measure),
  evaluated in chunks so memory stays bounded; no error.
* ``"quadrature"`` -- composite Gauss-Legendre on a box ``[low, high]`` for ``y`` with 1 to 3 scalar
  entries; the error is the change from ``n`` to ``2n`` points per dimension.
* ``"smc"`` (default) -- adaptive tempered sequential Monte Carlo (:mod:`pyro_ebm.partition.smc`): the
  schedule, the resampling and the HMC moves tune themselves, and the error bar comes from independent
  replicas, so it covers the truth about as often as it says.
* ``"ais"`` -- annealed importance sampling along the inverse temperature, from a normalized base
  distribution to ``exp(-beta F)``; ``"reverse_ais"`` runs it backwards from samples of the target.
  Forward AIS is unbiased for :math:`Z`, so :math:`E[\log\hat Z] \le \log Z` (a stochastic lower bound);
  reverse AIS from exact target samples is unbiased for :math:`1/Z` and gives a stochastic upper bound.
  :func:`ais_bracket` runs both.

Bridges between the EBM and the probabilistic world:

* :func:`log_likelihood` -- :math:`-\beta F(y) - \log Z` per example;
* :func:`normalized_distribution` -- a :class:`NormalizedGibbs` Pyro distribution with that ``log_prob``;
* :func:`energy_from_model` -- the energy :math:`F(y) = -\log p(y)` of a Pyro model, with the model's
  discrete latents summed out by Pyro's enumeration machinery.

All estimates are returned as :class:`LogPartition` (``value`` and ``stderr`` in nats, float64), are
computed without gradients, and are reproducible given ``seed``.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Callable, Dict

import torch

from .._validation import check_beta, check_finite
from ..energy import Energy, batch_shape_of, call_energy, check_energy_output
from ._common import Bracket, EstimateWarning, LogPartition, _resolve_energy
from .annealing import _ais, _reverse_ais
from .bridges import NormalizedGibbs, energy_from_model, log_likelihood, normalized_distribution
from .exact import _exact
from .quadrature import _quadrature
from .smc import smc as _smc

__all__ = [
    "LogPartition",
    "Bracket",
    "EstimateWarning",
    "log_partition",
    "ais_bracket",
    "log_likelihood",
    "NormalizedGibbs",
    "normalized_distribution",
    "energy_from_model",
]

_METHODS: Dict[str, Callable] = {
    "exact": _exact,
    "quadrature": _quadrature,
    "smc": _smc,
    "ais": _ais,
    "reverse_ais": _reverse_ais,
}


def log_partition(energy, beta=1.0, method: str = "smc", **options) -> LogPartition:
    r"""Estimate :math:`\log Z_\beta = \log \int e^{-\beta F(y)}\,dy` (a sum for a finite set) with an error.

    :param energy: an :class:`~pyro_ebm.Energy` or a callable ``F(y)`` mapping ``[N, *event_shape]`` to
        ``[N]``. (For a conditional energy ``F(y, x)``, pass ``lambda y: F(y, x)`` with ``event_shape``.)
    :param beta: inverse temperature ``> 0`` (a finite float).
    :param method: ``"exact"``, ``"quadrature"``, ``"smc"`` (default), ``"ais"`` or ``"reverse_ais"``.
    :param options: the method's options, below. ``event_shape`` (the shape of one ``y``) is accepted by
        every method and needed for a plain callable unless it follows from the other options.
    :returns: :class:`LogPartition` (``value``, ``stderr``; for AIS also ``ess``, ``log_weights``,
        ``samples``, ``betas``, ``step_sizes``, ``accept_rate``). Computed without gradients.

    **exact** (``Z = sum_k exp(-beta F(values[k]))``, counting measure):

    * ``values`` -- ``[K, *event_shape]`` candidates;
    * ``chunk_size`` -- candidates per energy call (default 65536), so memory stays bounded; the
      log-sum-exp is accumulated across chunks in float64;
    * ``max_candidates`` -- refuse larger sets (default ``MAX_ENUMERATION``).

    **quadrature** (``y`` with 1 to 3 entries, Lebesgue measure on the box only):

    * ``low``, ``high`` -- the box, one bound per entry of ``y`` (a number for one dimension);
    * ``num_points`` -- nodes per dimension of the coarse rule (default 512, 128, 48 in 1, 2, 3
      dimensions), rounded up to whole panels; the reported value uses twice as many per dimension and
      ``stderr = |log Z(2n) - log Z(n)|``;
    * ``order`` -- Gauss-Legendre nodes per panel (default 8);
    * ``chunk_size`` -- nodes per energy call (default 65536).

    * ``dtype`` -- of the nodes the energy sees (default: the energy's parameters', else torch's default).

    Energies are evaluated in that dtype and accumulated in float64. ``stderr`` is the larger of the
    refinement change and the rounding of the energies themselves, ``beta * ulp(|F_min|) / 2``: a float32
    energy of size 1000 at ``beta = 1e6`` cannot give ``log Z`` to better than about 30 nats, and says so
    (pass ``dtype=torch.float64`` with an energy that computes in it). A NaN or ``-inf`` energy at a
    node is a ``ValueError`` giving the node; ``+inf`` is zero density. Mass outside the box is not counted.

    **smc** (adaptive tempered SMC; the path, the base options and ``dtype``/``seed`` as for AIS below):

    * ``num_particles`` (default 2048), split into ``num_replicas`` (default 16) samplers, the first a
      pilot that tunes the others (see :mod:`pyro_ebm.partition.smc`);
    * ``ess_fraction`` (0.9): each next temperature keeps this fraction of the conditional ESS;
    * ``num_mcmc_steps`` (3) HMC moves per temperature with about ``num_leapfrog`` (5, jittered) steps,
      a mass matrix from the particle cloud and a step size steered to ``target_accept`` (0.75);
    * ``max_temperatures`` (5000): an error beyond this many.

    ``value`` is the log of the mean of the non-pilot replicas' unbiased estimates of ``Z``; ``stderr`` its delta
    method error from their spread, times ``t_{0.975, K-1} / 1.96`` so that ``value +- 2 stderr`` is about a
    95% interval; ``ess`` the ESS of their pooled final particles (``samples`` with ``log_weights``);
    ``betas`` the first replica's schedule; ``step_sizes`` and ``accept_rate`` the mean over replicas at
    each temperature. :class:`EstimateWarning` when fewer than half the replicas carry the estimate.

    **ais** (annealed importance sampling, Neal 2001):

    * ``base`` -- a normalized, continuous distribution with the energy's ``event_shape`` and batch shape
      ``()``; by default ``Normal(loc, scale)`` over the event (``loc=0``, ``scale=1``, broadcast);
    * ``num_particles`` ``N`` (default 512), all moved at once;
    * ``num_temperatures`` ``T`` (default 500) and ``schedule``: ``"sigmoid"`` (default, Grosse et al.
      2013), ``"geometric"`` (``b = 10^-4 .. 1`` log-spaced), ``"linear"`` or an increasing tensor from 0
      to 1. The intermediate densities are
      :math:`\log q_b = (1 - b)\log \text{base} + b\,(-\beta F)`;
    * ``transition`` -- ``"mala"`` (default) or ``"hmc"`` (``num_leapfrog`` steps, default 5), with
      ``num_mcmc_steps`` Metropolis-adjusted transitions per temperature (default 2), preconditioned by the
      base's standard deviation;
    * ``step_size`` -- ``None`` (adapted: the step at each temperature moves the previous temperature's
      mean acceptance toward ``target_accept``, 0.6 for MALA and 0.7 for HMC), a float, or a tensor of
      ``T - 1`` steps (one per interior temperature, e.g. ``result.step_sizes`` of an earlier run);
    * ``dtype`` (default: the energy's) and ``seed`` (int or ``torch.Generator``).

    The weights are :math:`w = \prod_t q_{b_t}(x_{t-1}) / q_{b_{t-1}}(x_{t-1})`; ``value = log mean(w)``,
    ``stderr = std(w) / (sqrt(N) mean(w))`` (delta method) and ``ess = (sum w)^2 / sum w^2``. With a fixed
    step schedule every transition leaves its :math:`q_b` invariant whatever the particles do, so
    :math:`E[\hat Z] = Z` exactly and :math:`E[\log \hat Z] \le \log Z`. The adaptive default couples the
    particles only through one average acceptance per temperature (an :math:`O(1/N)` effect); for a
    strictly unbiased run pass ``step_size=pilot.step_sizes`` from a pilot run. Trust the error bar only
    when ``ess`` is a sizeable fraction of ``N``: a small ESS means the weights are dominated by a few
    particles and the variance is itself poorly estimated (use more temperatures).

    **reverse_ais**: the same options (no ``num_particles``) plus ``samples`` ``[N, *event_shape]``, draws
    from :math:`e^{-\beta F}/Z` (exact, or e.g. long MCMC runs). The chains are annealed from the target
    back to the base; the mean weight estimates :math:`1/Z`, and ``value = -log mean(w)``. With exact draws
    :math:`E[\text{value}] \ge \log Z` (a stochastic upper bound); with approximate draws the bound is only
    approximate.

    Example::

        >>> import math, torch
        >>> from pyro_ebm import as_energy
        >>> from pyro_ebm.partition import log_partition
        >>> F = as_energy(lambda y: 0.5 * (y ** 2).sum(-1), event_shape=(2,))
        >>> round(math.log(2 * math.pi), 4)
        1.8379
        >>> round(float(log_partition(F, method="quadrature", low=[-9, -9], high=[9, 9]).value), 4)
        1.8379
        >>> est = log_partition(F, method="ais", scale=2.0, num_particles=128, num_temperatures=30, seed=0)
        >>> abs(est.value.item() - math.log(2 * math.pi)) < 3 * est.stderr.item() + 0.02
        True
        >>> est = log_partition(F, seed=0)                       # tempered SMC, nothing to tune
        >>> abs(est.value.item() - math.log(2 * math.pi)) < 3 * est.stderr.item() + 0.02
        True
        >>> values = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> round(float(log_partition(F, method="exact", values=values).value), 4)  # log(1 + 2 e^-0.5)
        0.7944
    """
    beta = check_beta(beta)
    if isinstance(beta, torch.Tensor):
        if beta.numel() != 1:
            raise ValueError(f"beta must be a single inverse temperature here, got shape {tuple(beta.shape)}")
        beta = float(beta)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
    fn = _METHODS[method]
    allowed = [p for p in inspect.signature(fn).parameters if p not in ("energy", "beta")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for method={method!r}; expected some of {allowed}")
    required = [
        p.name for p in inspect.signature(fn).parameters.values()
        if p.kind == p.KEYWORD_ONLY and p.default is p.empty and p.name not in options
    ]
    if required:
        raise TypeError(f"method={method!r} needs the option(s) {required}")
    return fn(energy, beta, **options)


def ais_bracket(energy, samples: torch.Tensor, beta=1.0, **options) -> Bracket:
    r"""Sandwich :math:`\log Z` between forward AIS (stochastic lower bound) and reverse AIS (upper bound).

    Runs forward AIS from the base, then reverse AIS from ``samples`` (exact draws of :math:`e^{-\beta F}/Z`)
    with the forward run's step-size schedule held fixed, so the reverse run is not adapted to the particles
    it moves. The gap ``upper.value - lower.value`` shrinks to zero as the number of temperatures grows; a
    large gap says the chains do not mix between the base and the target (with exact samples, the truth
    lies in between up to the two error bars).

    :param energy: an :class:`~pyro_ebm.Energy` or callable ``F(y)``.
    :param samples: ``[N, *event_shape]`` draws from the target.
    :param beta: inverse temperature ``> 0``.
    :param options: options of ``method="ais"`` (see :func:`log_partition`); ``num_particles`` defaults to
        ``N``. ``seed`` seeds the forward run and, offset by one, the reverse run.
    :returns: :class:`Bracket` ``(lower, upper)`` of :class:`LogPartition`.
    """
    if not isinstance(samples, torch.Tensor) or not samples.is_floating_point():
        got = samples.dtype if isinstance(samples, torch.Tensor) else type(samples).__name__
        raise TypeError(f"samples must be a floating-point tensor [N, *event_shape], got {got}")
    if samples.dim() < 1 or samples.shape[0] < 2:
        raise ValueError(f"samples must have shape [N, *event_shape] with N >= 2 draws, got {tuple(samples.shape)}")
    check_finite(samples, "samples")
    fwd_opts = dict(options)
    fwd_opts.setdefault("num_particles", samples.shape[0])
    if "event_shape" not in fwd_opts and not isinstance(energy, Energy) and not isinstance(
        options.get("base"), torch.distributions.Distribution
    ):
        fwd_opts["event_shape"] = samples.shape[1:]
    resolved = _resolve_energy(energy, fwd_opts.get("event_shape"))
    if resolved is not None:  # the energy at the samples: their shape (and the event shape read off them) fits
        batch_shape_of(samples, resolved.event_shape, "samples")
        with torch.no_grad():
            f = call_energy(resolved, samples)
        check_energy_output(f, samples.shape[:1], name=resolved._label(), inputs=(("samples", samples),),
                            event_shape=resolved.event_shape)
    seed = options.get("seed")
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        rev_seed = seed + 1
    else:
        rev_seed = seed  # a generator simply continues its stream
    lower = log_partition(energy, beta, "ais", **fwd_opts)
    rev_opts = {k: v for k, v in fwd_opts.items() if k != "num_particles"}
    rev_opts["seed"] = rev_seed
    if rev_opts.get("step_size") is None or not isinstance(rev_opts.get("step_size"), torch.Tensor):
        if lower.step_sizes is not None and lower.step_sizes.numel() > 0:
            rev_opts["step_size"] = lower.step_sizes
    upper = log_partition(energy, beta, "reverse_ais", samples=samples, **rev_opts)
    return Bracket(lower, upper)


# ---------------------------------------------------------------------------------------------------
# normalized EBMs
# ---------------------------------------------------------------------------------------------------
