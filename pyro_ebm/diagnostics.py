"""Diagnostics of MCMC contrastive samples ("negatives") and conversion to ArviZ.

Negatives drawn by MCMC are only as good as the chains that produced them: chains that have not mixed give
a biased contrastive term and a misleading loss.  This module turns any set of draws into ArviZ data and
checks it the way one checks a posterior sample:

* :func:`to_arviz` converts a dict of ``[chains, draws, *event]`` arrays, a finished
  :class:`pyro.infer.MCMC` run, or the library's ``Samples`` result (anything with ``draws`` and ``stats``)
  into ArviZ data, filling ``sample_stats`` with ArviZ's names (``energy``, ``lp``, ``acceptance_rate``,
  ``step_size``, ``n_steps``, ``diverging``) so that ArviZ's energy/BFMI and divergence tools work.
* :func:`summary` and :func:`check_negatives` report R-hat, bulk/tail ESS, ESS per chain, BFMI per chain,
  divergences and acceptance, and warn (:class:`NegativesWarning`) when the chains have not mixed.
* :func:`energy_gap` is the mean energy of the negatives minus the mean energy of the data (the sign of the
  ``gap`` in :func:`pyro_ebm.train.fit`'s history), with a standard error that accounts for
  autocorrelation along the chains.
* :func:`plot_trace`, :func:`plot_rank`, :func:`plot_energy` and :func:`plot_negatives` draw the usual
  pictures with matplotlib.

Everything that depends on the installed ArviZ line (0.x returns ``InferenceData``, 1.x returns
``xarray.DataTree``) lives in :mod:`pyro_ebm._arviz`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from . import _arviz
from .mcmc.pyro_recording import STATS_SITE, from_pyro_mcmc
from ._pointwise import pointwise_log_likelihood
from ._validation import MAX_ENUMERATION, check_positive_int, check_real

__all__ = [
    "STAT_ALIASES",
    "NegativesWarning",
    "NegativesReport",
    "EnergyGap",
    "to_arviz",
    "summary",
    "check_negatives",
    "energy_gap",
    "plot_trace",
    "plot_rank",
    "plot_energy",
    "plot_negatives",
]

#: ArviZ's names for per-draw sampler statistics, and the other spellings accepted for them on input.
STAT_ALIASES = {
    "energy": ("hamiltonian", "total_energy"),
    "lp": ("log_prob", "log_density", "logp"),
    "acceptance_rate": (
        "accept_prob",
        "acceptance_prob",
        "accept_rate",
        "acceptance rate",
        "mean_accept_prob",
    ),
    "step_size": ("stepsize", "step size"),
    "n_steps": ("num_steps", "num_leapfrog", "n_leapfrog"),
    "diverging": ("divergent", "divergence", "divergences"),
}
_ALIAS_TO_NAME = {alias: name for name, aliases in STAT_ALIASES.items() for alias in aliases}


class NegativesWarning(UserWarning):
    """Warning raised by :func:`check_negatives` when MCMC negatives show signs of poor mixing."""


# ------------------------------------------------------------------------------------------ conversion


def _to_numpy(value, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16 or value.dtype == torch.float16:
            value = value.float()
        return value.numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} must be an array or tensor, got {type(value).__name__}") from exc
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array or tensor, got {type(value).__name__} of objects")
    return arr


def _first_nonfinite(arr: np.ndarray):
    bad = ~np.isfinite(arr)
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    return int(bad.sum()), idx, arr[idx]


def _check_finite(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        count, idx, value = _first_nonfinite(arr)
        raise ValueError(
            f"{name} must be finite, but {count} of {arr.size} entries are not "
            f"(first at index {idx}: {value})"
        )


def _is_mcmc(obj) -> bool:
    return callable(getattr(obj, "get_samples", None)) and hasattr(obj, "num_chains")


def _is_samples(obj) -> bool:
    return hasattr(obj, "draws") and hasattr(obj, "stats")


def _mcmc_parts(mcmc):
    """Draws, per-draw stats and per-chain attributes of a finished ``pyro.infer.MCMC`` run."""
    if getattr(mcmc, "_samples", True) is None:
        raise ValueError("source is a pyro.infer.MCMC that has not been run; call mcmc.run(...) first")
    try:
        raw = mcmc.get_samples(group_by_chain=True)
    except TypeError as exc:
        raise TypeError(
            "source looks like an MCMC runner but get_samples(group_by_chain=True) failed; "
            "StreamingMCMC keeps no draws and cannot be converted"
        ) from exc
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError("source is an MCMC run without draws; call mcmc.run(...) first")
    stats = {}
    if STATS_SITE in raw:
        # RecordingNUTS / RecordingHMC carry per-draw statistics in an extra site
        recorded = from_pyro_mcmc(mcmc)
        raw, stats = recorded.draws, dict(recorded.stats)
    draws = {str(k): _to_numpy(v, f"source samples[{k!r}]") for k, v in raw.items()}
    first = next(iter(draws.values()))
    if first.ndim < 2:  # pragma: no cover - pyro always keeps the chain dim
        raise ValueError(f"source samples must be grouped by chain, got shape {first.shape}")
    chains, n_draws = first.shape[:2]

    attrs, per_chain = {}, {}
    if getattr(mcmc, "_diagnostics", [None])[0] is not None:
        diag = mcmc.diagnostics()
        for key, by_chain in diag.items():
            if isinstance(by_chain, Mapping) and all(str(k).startswith("chain ") for k in by_chain):
                per_chain[key] = [by_chain[f"chain {c}"] for c in range(chains)]
    if "divergences" in per_chain and "diverging" not in stats:
        # pyro keeps the post-warmup indices of divergent transitions, per chain
        diverging = np.zeros((chains, n_draws), dtype=bool)
        for c, idx in enumerate(per_chain["divergences"]):
            idx = np.asarray(list(idx), dtype=int)
            idx = idx[(idx >= 0) & (idx < n_draws)]
            diverging[c, idx] = True
        stats["diverging"] = diverging
    if "acceptance rate" in per_chain:
        # pyro records one rate per chain, not one per draw: keep it as a group attribute. For HMC it is the
        # fraction of accepted Metropolis proposals (its expectation is the mean accept_prob); for NUTS it
        # is the fraction of transitions that moved, not an acceptance statistic, and a finished run keeps
        # no accept_prob (the kernel resets it after each chain)
        rates = [float(a) for a in per_chain["acceptance rate"]]
        attrs["move_rate_per_chain" if _is_nuts(mcmc) else "acceptance_rate_per_chain"] = rates
    return draws, stats, attrs


def _is_nuts(mcmc) -> bool:
    try:
        from pyro.infer.mcmc import NUTS
    except ImportError:  # pragma: no cover - pyro is a dependency
        return False
    return isinstance(getattr(mcmc, "kernel", None), NUTS)


def _split_source(source, sample_stats):
    """Split any supported source into draws (numpy), raw stats, stat labels for error messages,
    per-chain attributes and the name of the draws' argument."""
    attrs = {}
    if _is_mcmc(source):
        draws, stats, attrs = _mcmc_parts(source)
        src_name = "source"
    elif _is_samples(source):
        if isinstance(source.draws, Mapping):  # a Pyro model's sites
            draws = {str(k): _to_numpy(v, f"source.draws[{k!r}]") for k, v in source.draws.items()}
        else:
            name = getattr(source, "name", None) or "y"
            draws = {str(name): _to_numpy(source.draws, "source.draws")}
        stats = dict(source.stats or {})
        src_name = "source.draws"
    elif isinstance(source, Mapping):
        if not source:
            raise ValueError("source must hold at least one variable, got an empty dict")
        draws = {str(k): _to_numpy(v, f"source[{k!r}]") for k, v in source.items()}
        stats = {}
        src_name = "source"
    elif isinstance(source, (torch.Tensor, np.ndarray)):
        raise TypeError(
            "source must be a dict name -> [chains, draws, *event] array, a pyro.infer.MCMC run or a "
            "Samples object; wrap a bare array as {'y': array}"
        )
    else:
        raise TypeError(
            "source must be a dict name -> [chains, draws, *event] array, a pyro.infer.MCMC run or a "
            f"Samples object, got {type(source).__name__}"
        )
    labels = {str(k): f"{src_name.split('.')[0]}.stats[{str(k)!r}]" for k in stats}
    if sample_stats is not None:
        if not isinstance(sample_stats, Mapping):
            raise TypeError(
                "sample_stats must be a dict name -> [chains, draws] array, "
                f"got {type(sample_stats).__name__}"
            )
        stats.update(sample_stats)
        labels.update({str(k): f"sample_stats[{str(k)!r}]" for k in sample_stats})
    stats = {str(k): v for k, v in stats.items()}
    return draws, stats, labels, attrs, src_name


def _validate_draws(draws, src_name):
    shape = None
    for key, arr in draws.items():
        label = src_name if len(draws) == 1 and src_name == "source.draws" else f"{src_name}[{key!r}]"
        if arr.ndim < 2:
            raise ValueError(
                f"{label} must have shape [chains, draws, *event], got shape {arr.shape}; "
                "add a chain dimension (e.g. x[None] for a single chain)"
            )
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{label} must be real-valued, got dtype {arr.dtype}")
        if shape is None:
            shape = arr.shape[:2]
        elif arr.shape[:2] != shape:
            raise ValueError(
                f"all variables in source must share [chains, draws] = {list(shape)}, "
                f"but {label} has {list(arr.shape[:2])}"
            )
        _check_finite(arr, label)
    return shape


def _validate_stats(stats, labels, shape):
    chains, n_draws = shape
    out = {}
    for key, value in stats.items():
        name = _ALIAS_TO_NAME.get(key, key)
        label = labels.get(key, f"sample_stats[{key!r}]")
        if name in out:
            raise ValueError(f"{label}: the stats hold both {name!r} and its alias {key!r}; keep one")
        arr = _to_numpy(value, label)
        if arr.ndim == 0:
            arr = np.broadcast_to(arr, (chains, n_draws))
        elif arr.shape == (chains,):  # one value per chain, e.g. an adapted step size
            arr = np.broadcast_to(arr[:, None], (chains, n_draws))
        if arr.shape != (chains, n_draws):
            raise ValueError(
                f"{label} must have shape [chains, draws] = {[chains, n_draws]} to match the draws "
                f"(or [chains] for one value per chain), got shape {list(arr.shape)}"
            )
        if name == "diverging":
            if arr.dtype != bool:
                if not np.all(np.isin(arr, (0, 1))):
                    raise ValueError(f"{label} must be boolean (or 0/1), got other values")
                arr = arr.astype(bool)
        else:
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{label} must be real-valued, got dtype {arr.dtype}")
            _check_finite(arr, label)
            if name == "n_steps":
                arr = arr.astype(np.int64)
        out[name] = np.ascontiguousarray(arr)
    return out


def _observed_dict(observed, draws):
    if observed is None:
        return None
    if isinstance(observed, Mapping):
        out = {str(k): _to_numpy(v, f"observed[{k!r}]") for k, v in observed.items()}
        for k, arr in out.items():
            _check_finite(arr, f"observed[{k!r}]")
        return out
    name = next(iter(draws)) if len(draws) == 1 else "y"
    arr = _to_numpy(observed, "observed")
    _check_finite(arr, "observed")
    return {name: arr}


def _observed_dims(observed, dims):
    """Dims of observed variables: an observed ``y`` has one more (data point) dim than a draw of ``y``."""
    if not observed or not dims:
        return None
    out = {}
    for name, arr in observed.items():
        event_dims = dims.get(name)
        if event_dims is None:
            continue
        event_dims = list(event_dims)
        if arr.ndim == len(event_dims):
            out[name] = event_dims
        elif arr.ndim == len(event_dims) + 1:
            out[name] = [f"{name}_obs", *event_dims]
    return out or None


def to_arviz(source, sample_stats=None, *, observed=None, coords=None, dims=None, log_likelihood=None):
    """Convert MCMC draws (negatives) to ArviZ data, keeping chain and draw order.

    :param source: one of

        * a dict name -> array/tensor of shape ``[chains, draws, *event]``;
        * a finished :class:`pyro.infer.MCMC` run: draws come from ``get_samples(group_by_chain=True)``;
          with the recording kernels of :mod:`pyro_ebm.mcmc` (``RecordingNUTS``/``RecordingHMC``) every
          per-draw statistic is kept, otherwise ``diverging`` is rebuilt from ``diagnostics()``.  Pyro's
          per-chain acceptance rates of HMC go to the group attribute ``acceptance_rate_per_chain``; those
          of NUTS, which count the transitions that moved (not an acceptance statistic), go to
          ``move_rate_per_chain``.  The model is never re-run;
        * an object with ``draws`` (``[chains, draws, *event]``, or a dict of those keyed by site name),
          ``stats`` (dict) and an optional ``name`` (default ``"y"``), such as the library's ``Samples``;
        * ArviZ data (returned unchanged when no other argument is given).
    :param sample_stats: dict name -> ``[chains, draws]`` array/tensor (``[chains]`` or a scalar is
        broadcast along draws).  Use ArviZ's names ``energy`` (the Hamiltonian, for BFMI), ``lp``,
        ``acceptance_rate``, ``step_size``, ``n_steps``, ``diverging``; the spellings in
        :data:`STAT_ALIASES` are renamed to them.  Merged over the stats found in ``source``.
    :param observed: the data the negatives are contrasted with: an array (stored under the name of the
        single variable in ``source``) or a dict name -> array; goes to the ``observed_data`` group.  When
        ``dims`` names the event dims of ``y``, an observed ``y`` of shape ``[n, *event]`` gets the dims
        ``["y_obs", *dims["y"]]``.
    :param coords: ArviZ coordinates, e.g. ``{"coord": ["x", "y"]}``.
    :param dims: ArviZ dimension names per variable, e.g. ``{"y": ["coord"]}``. For a ``pyro.infer.MCMC``
        run the dims of every site inside a ``pyro.plate`` default to the plate names.
    :param log_likelihood: pointwise log-likelihood for ``az.loo``/``az.waic``: a dict name ->
        ``[chains, draws, *obs]`` array, or for a ``pyro.infer.MCMC`` run ``None`` (the default: computed
        for every observed site and every factor site, e.g. :func:`~pyro_ebm.energy_factor`, by running
        the model once, vectorized over all draws with ``pyro.infer.Predictive``; a model that cannot be
        vectorized gets a warning and no group), ``True`` (the same, but an error if it fails) or ``False``
        (skip). A factor's "log-likelihood" is its log-factor ``-beta F``, so ``loo``/``waic`` make sense
        only when the factors are normalized per observation.
    :return: ``arviz.InferenceData`` on ArviZ 0.x, ``xarray.DataTree`` on ArviZ 1.x, with a ``posterior``
        group (dims ``chain, draw, *event``), a ``sample_stats`` group when there are stats, an
        ``observed_data`` group when ``observed`` is given (or the run has observed sites) and a
        ``log_likelihood`` group as described above.
    :raises ValueError: draws without a ``[chains, draws]`` prefix, variables or stats whose
        ``[chains, draws]`` disagree, non-finite draws or stats; the message names the argument.

    Example::

        >>> import torch
        >>> from pyro_ebm.diagnostics import to_arviz
        >>> draws = torch.randn(4, 100, 2, generator=torch.Generator().manual_seed(0))
        >>> data = to_arviz({"y": draws}, {"energy": torch.randn(4, 100), "diverging": torch.zeros(4, 100)})
        >>> data["posterior"]["y"].shape
        (4, 100, 2)
        >>> str(data["sample_stats"]["diverging"].dtype)
        'bool'
    """
    if _arviz.is_arviz_data(source):
        if any(a is not None for a in (sample_stats, observed, coords, dims, log_likelihood)):
            raise TypeError(
                "source is already ArviZ data; sample_stats, observed, coords, dims and log_likelihood "
                "cannot be added to it"
            )
        return source
    if log_likelihood is not None and not isinstance(log_likelihood, (bool, Mapping)):
        raise TypeError(
            f"log_likelihood must be a dict name -> [chains, draws, *obs] array, True, False or None, "
            f"got {type(log_likelihood).__name__}"
        )
    if isinstance(log_likelihood, bool) and log_likelihood and not _is_mcmc(source):
        raise ValueError("log_likelihood=True needs a pyro.infer.MCMC source (the model is re-run on the draws)")
    draws, stats, labels, attrs, src_name = _split_source(source, sample_stats)
    shape = _validate_draws(draws, src_name)
    stats = _validate_stats(stats, labels, shape)
    observed_data = _observed_dict(observed, draws)
    log_lik, obs_dims = None, None
    if _is_mcmc(source) and log_likelihood is not False and not isinstance(log_likelihood, Mapping):
        try:
            skip = {STATS_SITE}
            log_lik, pyro_obs, post_dims, obs_dims = pointwise_log_likelihood(source, skip_sites=skip)
        except Exception as exc:  # a model that cannot be vectorized over draws
            if log_likelihood is True:
                raise
            warnings.warn(
                f"to_arviz: no log_likelihood group; running the model vectorized over the draws failed "
                f"({type(exc).__name__}: {exc}); pass log_likelihood=False to skip",
                stacklevel=2,
            )
        else:
            dims = {**post_dims, **(dims or {})} or None
            if observed_data is None and pyro_obs:
                observed_data = pyro_obs
    elif isinstance(log_likelihood, Mapping):
        log_lik = {str(k): _to_numpy(v, f"log_likelihood[{k!r}]") for k, v in log_likelihood.items()}
        for key, arr in log_lik.items():
            if arr.ndim < 2 or arr.shape[:2] != tuple(shape):
                raise ValueError(
                    f"log_likelihood[{key!r}] must have shape [chains, draws, *obs] with [chains, draws] = "
                    f"{list(shape)}, got {list(arr.shape)}"
                )
            if arr.dtype.kind not in "biuf" or np.isnan(arr).any():
                raise ValueError(f"log_likelihood[{key!r}] must be real without NaN")
    # per-chain attributes (pyro's acceptance rates) sit on sample_stats, or on posterior without stats
    group = "sample_stats" if stats else "posterior"
    return _arviz.from_dict(
        {k: np.ascontiguousarray(v) for k, v in draws.items()},
        stats or None,
        observed_data,
        coords=coords,
        dims=dims,
        observed_dims={**(obs_dims or {}), **(_observed_dims(observed_data, dims) or {})} or None,
        attrs={group: attrs} if attrs else None,
        log_likelihood=log_lik or None,
    )


def _as_arviz(source):
    return source if _arviz.is_arviz_data(source) else to_arviz(source)


# ------------------------------------------------------------------------------------------ diagnostics


def summary(source, *, var_names=None):
    """Per-coordinate mean, sd, Monte Carlo standard error, bulk/tail ESS and R-hat of the draws.

    :param source: anything :func:`to_arviz` accepts (ArviZ data included).
    :param var_names: variables to summarise (default: all variables of the ``posterior`` group).
    :return: a pandas ``DataFrame`` with one row per coordinate (``"y[0]"``, ...) and columns
        ``mean, sd, mcse_mean, ess_bulk, ess_tail, r_hat`` (unrounded).

    Example::

        >>> import torch
        >>> from pyro_ebm.diagnostics import summary
        >>> table = summary({"y": torch.randn(4, 200, 2, generator=torch.Generator().manual_seed(0))})
        >>> list(table.columns)
        ['mean', 'sd', 'mcse_mean', 'ess_bulk', 'ess_tail', 'r_hat']
        >>> len(table)
        2
    """
    return _arviz.summary(_as_arviz(source), var_names=var_names)


@dataclass
class NegativesReport:
    """Mixing report of MCMC negatives, as returned by :func:`check_negatives`.

    Scalars summarise the worst coordinate over all variables; per-chain arrays have shape ``[chains]``.
    Fields that need a statistic that was not recorded (``energy``, ``diverging``, acceptance) are ``None``.
    """

    n_chains: int
    n_draws: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    ess_per_chain: np.ndarray
    bfmi: np.ndarray | None = None
    n_divergent: int | None = None
    divergence_fraction: float | None = None
    mean_acceptance: float | None = None
    problems: list = field(default_factory=list)
    #: why ``mean_acceptance`` is ``None`` when the reason is worth telling (a stock Pyro NUTS run)
    acceptance_note: str | None = None

    @property
    def ok(self) -> bool:
        """``True`` when no check failed."""
        return not self.problems

    def __str__(self) -> str:
        def fmt(x):
            return "n/a" if x is None else f"{x:.3g}"

        lines = [
            f"MCMC negatives: {self.n_chains} chains x {self.n_draws} draws",
            f"  max R-hat            {self.max_rhat:.3f}",
            f"  min ESS bulk / tail  {fmt(self.min_ess_bulk)} / {fmt(self.min_ess_tail)}",
            f"  ESS per chain (min)  {fmt(float(np.min(self.ess_per_chain)))}",
            f"  BFMI (min)           {fmt(None if self.bfmi is None else float(np.min(self.bfmi)))}",
            f"  divergences          "
            + ("n/a" if self.n_divergent is None else f"{self.n_divergent} ({self.divergence_fraction:.1%})"),
            f"  mean acceptance      {fmt(self.mean_acceptance)}"
            + (f" ({self.acceptance_note})" if self.mean_acceptance is None and self.acceptance_note else ""),
        ]
        lines += ["  OK"] if self.ok else [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


def _max_rhat(x: np.ndarray) -> float:
    """Largest R-hat over the event coordinates of ``x`` (``[chains, draws, *event]``); NaN if undefined."""
    chains, n_draws = x.shape[:2]
    if chains == 1:
        # ArviZ wants two chains; the halves of one chain give the same split R-hat
        half = n_draws // 2
        x = x[0, : 2 * half].reshape((2, half) + x.shape[2:])
    values = _arviz.rhat(x)
    return math.nan if np.all(np.isnan(values)) else float(np.nanmax(values))


def _per_chain_ess(x: np.ndarray) -> np.ndarray:
    """Bulk ESS of each chain on its own (min over event coordinates); returns shape ``[chains]``."""
    chains = x.shape[0]
    # treat the chain axis as an event axis of a single chain: [1, draws, chains, *event]
    as_event = np.moveaxis(x, 0, 1)[None]
    ess = _arviz.ess(as_event, method="bulk").reshape(chains, -1)
    return ess.min(axis=1)


def check_negatives(
    samples,
    *,
    rhat_threshold: float = 1.05,
    min_ess: float = 400.0,
    bfmi_threshold: float = 0.3,
    max_divergence_fraction: float = 0.0,
    var_names=None,
    warn: bool = True,
) -> NegativesReport:
    """Check that MCMC negatives come from chains that have mixed.

    Computes, over every coordinate of every variable: the largest rank-normalized split R-hat, the
    smallest bulk and tail ESS (all chains together), the bulk ESS of each chain on its own, BFMI per chain
    (when an ``energy`` stat is present), the number and fraction of divergent transitions (when
    ``diverging`` is present) and the mean acceptance rate (``acceptance_rate`` stat, or the per-chain
    rates of a stock Pyro HMC run; a stock NUTS run has none).  A :class:`NegativesWarning` lists every failed check.

    :param samples: anything :func:`to_arviz` accepts (ArviZ data included), with draws of shape
        ``[chains, draws, *event]``.
    :param rhat_threshold: largest acceptable R-hat, a number >= 1 (1.01 is the strict modern advice, 1.05
        the classic one).
    :param min_ess: smallest acceptable bulk and tail ESS over all chains together, >= 0 (400 = 100 per
        chain for four chains, Vehtari et al. 2021).
    :param bfmi_threshold: BFMI below this (>= 0) in any chain flags poor momentum resampling (energy stat
        only).
    :param max_divergence_fraction: largest acceptable fraction of divergent transitions, in ``[0, 1]``
        (default: none). A NaN threshold is an error, never a check that silently passes.
    :param var_names: variables to check (default: all in the ``posterior`` group).
    :param warn: emit a :class:`NegativesWarning` when a check fails.
    :return: a :class:`NegativesReport`.

    Example::

        >>> import torch
        >>> from pyro_ebm.diagnostics import check_negatives
        >>> g = torch.Generator().manual_seed(0)
        >>> report = check_negatives({"y": torch.randn(4, 500, 2, generator=g)})
        >>> report.ok, report.n_chains, report.ess_per_chain.shape
        (True, 4, (4,))
    """
    rhat_threshold = check_real(rhat_threshold, "rhat_threshold", minimum=1.0)
    min_ess = check_real(min_ess, "min_ess", minimum=0.0)
    bfmi_threshold = check_real(bfmi_threshold, "bfmi_threshold", minimum=0.0)
    max_divergence_fraction = check_real(max_divergence_fraction, "max_divergence_fraction", minimum=0.0)
    if max_divergence_fraction > 1:
        raise ValueError(f"max_divergence_fraction must be in [0, 1], got {max_divergence_fraction}")
    data = _as_arviz(samples)
    draws = _arviz.group_arrays(data, "posterior")
    if draws is None:
        raise ValueError("samples has no posterior group to check")
    if var_names is not None:
        names = [var_names] if isinstance(var_names, str) else list(var_names)
        missing = [n for n in names if n not in draws]
        if missing:
            raise ValueError(f"var_names {missing} not found in samples; available: {sorted(draws)}")
        draws = {n: draws[n] for n in names}
    first = next(iter(draws.values()))
    chains, n_draws = first.shape[:2]
    needed = 8 if chains == 1 else 4
    if n_draws < needed:
        raise ValueError(
            f"samples must have at least {needed} draws per chain to be diagnosed "
            f"(R-hat splits every chain in halves), got {n_draws}"
        )

    rhats, bulks, tails, per_chain = [], [], [], []
    for x in draws.values():
        x = np.asarray(x, dtype=float)
        rhats.append(_max_rhat(x))
        bulks.append(np.min(_arviz.ess(x, "bulk")))
        tails.append(np.min(_arviz.ess(x, "tail")))
        per_chain.append(_per_chain_ess(x))
    # NaN (a constant coordinate) propagates: it is reported, never silently skipped
    max_rhat = float(np.max(rhats))
    min_bulk, min_tail = float(np.min(bulks)), float(np.min(tails))
    ess_chain = np.min(np.stack(per_chain), axis=0)

    stats = _arviz.group_arrays(data, "sample_stats") or {}
    attrs = {**_arviz.group_attrs(data, "posterior"), **_arviz.group_attrs(data, "sample_stats")}
    bfmi = _arviz.bfmi(stats["energy"]) if "energy" in stats else None
    n_div = frac_div = None
    if "diverging" in stats:
        n_div = int(np.sum(stats["diverging"]))
        frac_div = n_div / stats["diverging"].size
    if "acceptance_rate" in stats:
        mean_acc = float(np.mean(stats["acceptance_rate"]))
    elif "acceptance_rate_per_chain" in attrs:
        mean_acc = float(np.mean(np.asarray(attrs["acceptance_rate_per_chain"], dtype=float)))
    else:
        mean_acc = None
    note = None
    if mean_acc is None and "move_rate_per_chain" in attrs:
        note = "stock Pyro NUTS keeps no accept_prob; RecordingNUTS records it"

    problems = []
    if math.isnan(max_rhat):
        problems.append("R-hat is undefined (a coordinate is constant within every chain)")
    elif max_rhat > rhat_threshold:
        problems.append(f"max R-hat {max_rhat:.3f} > {rhat_threshold} (chains disagree: not mixed)")
    if not min_bulk >= min_ess:
        problems.append(f"min bulk ESS {min_bulk:.1f} < {min_ess}")
    if not min_tail >= min_ess:
        problems.append(f"min tail ESS {min_tail:.1f} < {min_ess}")
    if bfmi is not None and np.any(bfmi < bfmi_threshold):
        bad = [int(c) for c in np.flatnonzero(bfmi < bfmi_threshold)]
        problems.append(f"BFMI < {bfmi_threshold} in chains {bad} (min {float(np.min(bfmi)):.3f})")
    if frac_div is not None and frac_div > max_divergence_fraction:
        problems.append(f"{n_div} divergent transitions ({frac_div:.1%} of draws)")

    report = NegativesReport(
        n_chains=int(chains),
        n_draws=int(n_draws),
        max_rhat=float(max_rhat),
        min_ess_bulk=float(min_bulk),
        min_ess_tail=float(min_tail),
        ess_per_chain=ess_chain,
        bfmi=bfmi,
        n_divergent=n_div,
        divergence_fraction=frac_div,
        mean_acceptance=mean_acc,
        problems=problems,
        acceptance_note=note,
    )
    if warn and problems:
        message = "MCMC negatives look unreliable: " + "; ".join(problems)
        warnings.warn(message, NegativesWarning, stacklevel=2)
    return report


@dataclass(frozen=True)
class EnergyGap:
    """Result of :func:`energy_gap`.

    :ivar gap: ``mean F(negatives) - mean F(data)`` (positive when the data sit lower than the negatives).
    :ivar stderr: its standard error, ``sqrt(data_stderr**2 + negative_stderr**2)``.
    :ivar negative_ess: the ESS used for the negatives' standard error (their count when they are iid).
    """

    gap: float
    stderr: float
    data_mean: float
    data_stderr: float
    negative_mean: float
    negative_stderr: float
    negative_ess: float

    def __iter__(self):
        # unpacks as (gap, stderr)
        return iter((self.gap, self.stderr))


def energy_gap(data_energies, negative_energies) -> EnergyGap:
    """Energy gap between negatives and data, ``mean F(negatives) - mean F(data)``, with a standard error.

    :param data_energies: energies of the data points, any shape (flattened; treated as independent).
    :param negative_energies: energies of the negatives: ``[chains, draws]`` (MCMC output: the standard
        error uses ArviZ's ESS for the mean, so autocorrelated chains get honest error bars) or ``[n]``
        (independent draws: ``sd / sqrt(n)``).
    :return: an :class:`EnergyGap`; unpacks as ``gap, stderr``.
    :raises ValueError: empty or non-finite energies, or ``negative_energies`` with more than two dims.

    Example::

        >>> import torch
        >>> from pyro_ebm.diagnostics import energy_gap
        >>> gap, se = energy_gap(torch.zeros(100), torch.ones(4, 50))
        >>> gap, se
        (1.0, 0.0)
    """
    data = _to_numpy(data_energies, "data_energies").astype(float).ravel()
    neg = _to_numpy(negative_energies, "negative_energies").astype(float)
    if data.size < 2:
        raise ValueError(f"data_energies must hold at least 2 values, got {data.size}")
    if neg.ndim not in (1, 2):
        raise ValueError(
            f"negative_energies must have shape [chains, draws] or [n], got shape {list(neg.shape)}"
        )
    if neg.size < 2:
        raise ValueError(f"negative_energies must hold at least 2 values, got {neg.size}")
    _check_finite(data, "data_energies")
    _check_finite(neg, "negative_energies")

    data_mean = float(data.mean())
    data_se = float(data.std(ddof=1) / math.sqrt(data.size))
    neg_mean = float(neg.mean())
    neg_sd = float(neg.std(ddof=1))
    if neg.ndim == 2 and neg_sd > 0:
        neg_ess = float(_arviz.ess(neg, method="mean"))
    else:
        neg_ess = float(neg.size)
    neg_se = neg_sd / math.sqrt(neg_ess) if neg_ess > 0 else math.inf
    return EnergyGap(
        gap=neg_mean - data_mean,
        stderr=math.sqrt(data_se**2 + neg_se**2),
        data_mean=data_mean,
        data_stderr=data_se,
        negative_mean=neg_mean,
        negative_stderr=neg_se,
        negative_ess=neg_ess,
    )


# ------------------------------------------------------------------------------------------------ plots


def _chain_subset(data, max_chains):
    """At most ``max_chains`` chains, evenly spread over all of them (first and last included)."""
    if max_chains is None:
        return data
    max_chains = check_positive_int(max_chains, "max_chains")
    draws = _arviz.group_arrays(data, "posterior") or {}
    if not draws:
        return data
    chains = next(iter(draws.values())).shape[0]
    if chains <= max_chains:
        return data
    keep = np.unique(np.round(np.linspace(0, chains - 1, max_chains)).astype(int))
    return _arviz.select_chains(data, keep)


def plot_trace(source, *, var_names=None, max_chains=6, **kwargs):
    """Trace plot of the draws, with divergences marked if recorded.

    One row per scalar component (``y[0]``, ``y[1]``, ...): a histogram of each chain's draws and each
    chain's draws in order (one line per chain), with one legend of the chains above the panels.

    :param source: anything :func:`to_arviz` accepts.
    :param var_names: variables to draw (default: all of the ``posterior`` group; at most 8 components).
    :param max_chains: draw at most this many chains, evenly spread over all of them (first and last
        included), so that many chains do not draw a solid block; ``None`` draws every chain.
        Summaries (:func:`summary`, :func:`check_negatives`) always use every chain.
    :param kwargs: passed to ``matplotlib.pyplot.subplots`` (e.g. ``figsize``).
    :return: the matplotlib ``Figure``.
    """
    return _arviz.plot_trace(_chain_subset(_as_arviz(source), max_chains), var_names=var_names, **kwargs)


def plot_rank(source, *, var_names=None, max_chains=6, **kwargs):
    """Rank plot: the per-chain rank histograms are uniform when the chains have mixed.

    Ranks are computed over the drawn chains only; each chain's histogram is divided by the count
    expected for mixed chains, so it stays near 1, inside the shaded 95% band.

    :param source: anything :func:`to_arviz` accepts.
    :param max_chains: draw at most this many chains, evenly spread (``None``: all); see :func:`plot_trace`.
    :param kwargs: passed to ``matplotlib.pyplot.subplots``.
    :return: the matplotlib ``Figure``.
    """
    return _arviz.plot_rank(_chain_subset(_as_arviz(source), max_chains), var_names=var_names, **kwargs)


def plot_energy(source, **kwargs):
    """Energy plot (marginal energy vs energy transitions) and BFMI per chain; needs an ``energy`` stat.

    A transition histogram much narrower than the marginal one (low BFMI, below 0.3) means the sampler
    explores the energy slowly.

    :param source: anything :func:`to_arviz` accepts, with ``sample_stats["energy"]``.
    :param kwargs: passed to ``matplotlib.pyplot.subplots``.
    :return: the matplotlib ``Figure``.
    """
    data = _as_arviz(source)
    stats = _arviz.group_arrays(data, "sample_stats") or {}
    if "energy" not in stats:
        raise ValueError("source has no 'energy' sample stat; plot_energy needs the Hamiltonian per draw")
    return _arviz.plot_energy(data, **kwargs)


def _energy_dtype_device(energy, data):
    if isinstance(energy, torch.nn.Module):
        for p in energy.parameters():
            return p.dtype, p.device
    if isinstance(data, torch.Tensor) and data.is_floating_point():
        return data.dtype, data.device
    return torch.get_default_dtype(), torch.device("cpu")


def plot_negatives(
    data,
    negatives,
    energy=None,
    ax=None,
    *,
    grid_size: int = 100,
    bounds=None,
    margin: float = 0.1,
    levels: int = 20,
    data_kwargs=None,
    negative_kwargs=None,
    contour_kwargs=None,
):
    """Scatter 2-D negatives over 2-D data, optionally over the energy's contours.

    The axes get the labels ``y[0]`` and ``y[1]`` unless they have labels already, the contours a colorbar,
    and the points a legend below the axes, off the data.

    :param data: data points, shape ``[n, 2]`` (array or tensor).
    :param negatives: negatives, shape ``[..., 2]`` (e.g. ``[chains, draws, 2]``; flattened for drawing).
    :param energy: optional callable mapping ``[m, 2]`` tensors to ``[m]`` energies (e.g. an ``Energy``);
        drawn as filled contours on a ``grid_size x grid_size`` grid under the points.
    :param ax: matplotlib axes to draw into (a new figure if ``None``).
    :param bounds: ``((xmin, xmax), (ymin, ymax))`` of the grid; default: the points' range plus ``margin``.
    :param margin: relative padding of the default bounds.
    :param levels: number of contour levels.
    :return: the matplotlib ``Axes``; the data are its first scatter collection, the negatives its second.

    Example::

        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import torch
        >>> from pyro_ebm.diagnostics import plot_negatives
        >>> ax = plot_negatives(torch.randn(50, 2), torch.randn(3, 20, 2), energy=lambda y: (y**2).sum(-1))
        >>> len(ax.collections[-2].get_offsets()), len(ax.collections[-1].get_offsets())
        (50, 60)
    """
    import matplotlib.pyplot as plt

    grid_size = check_positive_int(grid_size, "grid_size", minimum=2, maximum=math.isqrt(MAX_ENUMERATION))
    margin = check_real(margin, "margin", minimum=0.0)
    levels = check_positive_int(levels, "levels")
    pts = _to_numpy(data, "data").astype(float)
    neg = _to_numpy(negatives, "negatives").astype(float)
    if pts.ndim != 2 or pts.shape[-1] != 2:
        raise ValueError(f"data must have shape [n, 2], got shape {list(pts.shape)}")
    if neg.ndim < 1 or neg.shape[-1] != 2:
        raise ValueError(f"negatives must have shape [..., 2], got shape {list(neg.shape)}")
    neg = neg.reshape(-1, 2)
    _check_finite(pts, "data")
    _check_finite(neg, "negatives")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 5.4), layout="constrained")

    if energy is not None:
        if not callable(energy):
            raise TypeError(f"energy must be a callable [m, 2] -> [m], got {type(energy).__name__}")
        if bounds is None:
            both = np.concatenate([pts, neg]) if neg.size else pts
            lo, hi = both.min(axis=0), both.max(axis=0)
            pad = margin * np.maximum(hi - lo, 1e-12)
            bounds = ((lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1]))
        (x0, x1), (y0, y1) = bounds
        gx, gy = np.meshgrid(np.linspace(x0, x1, grid_size), np.linspace(y0, y1, grid_size))
        dtype, device = _energy_dtype_device(energy, data)
        grid = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], -1), dtype=dtype, device=device)
        with torch.no_grad():
            values = energy(grid)
        values = _to_numpy(values, "energy(grid)").astype(float)
        if values.shape != (grid_size * grid_size,):
            raise ValueError(
                f"energy must map a [m, 2] grid to [m] energies, got shape {list(values.shape)} for m="
                f"{grid_size * grid_size}"
            )
        _check_finite(values, "energy(grid)")
        cs = ax.contourf(gx, gy, values.reshape(grid_size, grid_size), levels=levels,
                         **{"cmap": "viridis_r", "alpha": 0.6, **(contour_kwargs or {})})
        ax.figure.colorbar(cs, ax=ax, label="energy (nats)")

    ax.scatter(pts[:, 0], pts[:, 1], **{"s": 8, "c": "k", "label": "data", **(data_kwargs or {})})
    ax.scatter(neg[:, 0], neg[:, 1],
               **{"s": 8, "c": "tab:red", "marker": "x", "label": "negatives", **(negative_kwargs or {})})
    ax.set_xlabel(ax.get_xlabel() or "y[0]")
    ax.set_ylabel(ax.get_ylabel() or "y[1]")
    _legend_below(ax)
    return ax


def _legend_below(ax, ncol=2, **kwargs):
    """The legend of ``ax`` below its x label, off the data (taken into account by tight/constrained layout)."""
    import matplotlib
    from matplotlib.transforms import offset_copy

    # tick labels and the x label take about three font sizes below the axes
    below = offset_copy(ax.transAxes, fig=ax.figure, y=-3 * matplotlib.rcParams["font.size"] - 8, units="points")
    return ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below, ncol=ncol,
                     **kwargs)
