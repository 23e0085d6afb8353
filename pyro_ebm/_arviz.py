"""The only place that knows which ArviZ is installed.

ArviZ 0.x (Python 3.10/3.11) returns :class:`arviz.InferenceData` objects and keeps its statistics and
matplotlib plots in one package; ArviZ 1.x (Python >= 3.12) returns :class:`xarray.DataTree` objects, moved
the statistics into ``arviz_stats`` and the plots into ``arviz_plots`` (re-exported by the ``arviz``
meta-package, with different signatures and return types).  Every function here hides one of those
differences behind a numpy-in / numpy-out interface.

This module imports only numpy and arviz (matplotlib lazily, inside the plotting helpers), never torch or
pyro, so it can be tested on its own in an environment that has ArviZ 1.x but no torch.

Arrays follow the library's sampler layout: ``[chains, draws, *event]`` for draws and ``[chains, draws]``
for per-draw statistics.
"""

from __future__ import annotations

import contextlib
import warnings

import arviz as az
import numpy as np

__all__ = [
    "ARVIZ_VERSION",
    "IS_ARVIZ_1",
    "is_arviz_data",
    "from_dict",
    "select_chains",
    "group_names",
    "group_arrays",
    "group_attrs",
    "ess",
    "rhat",
    "bfmi",
    "summary",
    "plot_trace",
    "plot_rank",
    "plot_energy",
]


def _major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:  # pragma: no cover - exotic version strings
        return 0


#: Installed ArviZ version string.
ARVIZ_VERSION: str = getattr(az, "__version__", "0")
#: ``True`` on ArviZ 1.x (DataTree based), ``False`` on ArviZ 0.x (InferenceData based).
IS_ARVIZ_1: bool = _major(ARVIZ_VERSION) >= 1

#: Columns of :func:`summary`, the same on both ArviZ lines.
SUMMARY_COLUMNS = ("mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat")


def is_arviz_data(obj) -> bool:
    """``True`` for an ``InferenceData`` (ArviZ 0.x) or an ``xarray.DataTree`` (ArviZ 1.x)."""
    if IS_ARVIZ_1:
        import xarray as xr

        return isinstance(obj, xr.DataTree)
    return isinstance(obj, az.InferenceData)


@contextlib.contextmanager
def _quiet_conventions():
    """Silence ArviZ's "more chains than draws" guess.

    The caller's layout is explicit (``[chains, draws, ...]``); many short persistent chains are a normal
    way to draw negatives, so that heuristic warning would only be noise here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*[Mm]ore chains.*than draws.*")
        warnings.filterwarnings("ignore", message=r".*chain dimension to be longer than draw.*")
        yield


def from_dict(
    posterior,
    sample_stats=None,
    observed_data=None,
    *,
    coords=None,
    dims=None,
    observed_dims=None,
    attrs=None,
    log_likelihood=None,
):
    """Build ArviZ data from numpy dictionaries.

    Parameters
    ----------
    posterior : dict of str -> ndarray ``[chains, draws, *event]``
    sample_stats : dict of str -> ndarray ``[chains, draws]``, optional
    observed_data : dict of str -> ndarray, optional
    coords : dict, optional
        Coordinates, shared by every group.
    dims : dict of str -> list of str, optional
        Dimension names of the posterior and sample_stats variables (sample dims excluded).
    observed_dims : dict of str -> list of str, optional
        Dimension names of the observed_data variables; kept apart from ``dims`` because an observed
        variable usually has one more (data point) dimension than the draws of the same name.
    attrs : dict of group name -> dict, optional
        Attributes set on individual groups (for example per-chain acceptance rates on ``sample_stats``).
    log_likelihood : dict of str -> ndarray ``[chains, draws, *obs]``, optional
        Pointwise log-likelihood of observed (or factor) sites, for ``loo``/``waic``; its dims come from
        ``observed_dims`` (the observations' dims).

    Returns
    -------
    ``InferenceData`` on ArviZ 0.x, ``xarray.DataTree`` on ArviZ 1.x.
    """
    attrs = {k: dict(v) for k, v in (attrs or {}).items() if v}
    groups = {"posterior": posterior}
    if sample_stats:
        groups["sample_stats"] = sample_stats
    with _quiet_conventions():
        if IS_ARVIZ_1:
            data = az.from_dict(groups, coords=coords, dims=dims, check_conventions=False)
            if log_likelihood:
                ll = az.from_dict({"log_likelihood": log_likelihood}, coords=coords, dims=observed_dims,
                                  check_conventions=False)
                data["log_likelihood"] = ll["log_likelihood"]
            if observed_data:
                obs = az.from_dict({"observed_data": observed_data}, coords=coords, dims=observed_dims)
                data["observed_data"] = obs["observed_data"]
        else:
            data = az.from_dict(
                posterior=posterior, sample_stats=groups.get("sample_stats"), coords=coords, dims=dims
            )
            if log_likelihood:
                data.extend(az.from_dict(log_likelihood=log_likelihood, coords=coords, dims=observed_dims))
            if observed_data:
                obs = az.from_dict(observed_data=observed_data, coords=coords, dims=observed_dims)
                data.extend(obs)
    for group, extra in attrs.items():
        if group in group_names(data):
            if IS_ARVIZ_1:
                data[group].attrs.update(extra)
            else:
                getattr(data, group).attrs.update(extra)
    return data


def select_chains(data, chains):
    """The same data restricted to the given chain indices (groups without a chain dim are kept whole)."""
    chains = [int(c) for c in chains]
    if IS_ARVIZ_1:
        return data.isel(chain=chains, missing_dims="ignore")
    return data.isel(chain=chains)


def group_names(data) -> list:
    """Names of the groups held by ``data`` (``posterior``, ``sample_stats``, ...)."""
    if IS_ARVIZ_1:
        return [str(name) for name in data.children]
    return list(data.groups())


def _dataset(data, group):
    if group not in group_names(data):
        return None
    if IS_ARVIZ_1:
        return data[group].to_dataset()
    return getattr(data, group)


def group_arrays(data, group: str):
    """Variables of one group as a dict name -> ndarray (dims in stored order), or ``None`` if absent."""
    ds = _dataset(data, group)
    if ds is None:
        return None
    out = {}
    for name, var in ds.data_vars.items():
        # draws live as [chain, draw, *event]; put the sample dims first whatever the stored order
        lead = [d for d in ("chain", "draw") if d in var.dims]
        var = var.transpose(*lead, ...)
        out[str(name)] = np.asarray(var.values)
    return out


def group_attrs(data, group: str) -> dict:
    """Attributes of one group (empty dict if the group is absent)."""
    ds = _dataset(data, group)
    return {} if ds is None else dict(ds.attrs)


def _as_dataset(x):
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"expected an array of shape [chains, draws, *event], got shape {x.shape}")
    with _quiet_conventions():
        if IS_ARVIZ_1:
            return az.from_dict({"posterior": {"x": x}}, check_conventions=False)["posterior"].to_dataset()
        return az.convert_to_dataset({"x": x})


def ess(x, method: str = "bulk") -> np.ndarray:
    """Effective sample size of ``x`` (``[chains, draws, *event]``) per event coordinate.

    ``method`` is an ArviZ ESS method: ``"bulk"``, ``"tail"``, ``"mean"``, ... Returns shape ``event``.
    """
    ds = _as_dataset(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = az.ess(ds, method=method)
    return np.asarray(out["x"].values, dtype=float)


def rhat(x) -> np.ndarray:
    """Rank-normalized split R-hat of ``x`` (``[chains, draws, *event]``); returns shape ``event``."""
    ds = _as_dataset(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = az.rhat(ds)
    return np.asarray(out["x"].values, dtype=float)


def bfmi(energy) -> np.ndarray:
    """Bayesian fraction of missing information per chain from a ``[chains, draws]`` energy array."""
    energy = np.asarray(energy, dtype=float)
    if energy.ndim != 2:
        raise ValueError(f"energy must have shape [chains, draws], got shape {energy.shape}")
    return np.asarray(az.bfmi(energy), dtype=float).reshape(energy.shape[0])


def summary(data, var_names=None):
    """Unrounded ArviZ summary (mean, sd, mcse_mean, ess_bulk, ess_tail, r_hat) as a pandas DataFrame."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # both lines spell "no rounding" as round_to="none"
        table = az.summary(data, var_names=var_names, kind="all", round_to="none")
    columns = [c for c in SUMMARY_COLUMNS if c in table.columns]
    return table[columns].astype(float)


# ---------------------------------------------------------------------------------------------- plots
# drawn here with matplotlib from the arrays, so they look the same on both ArviZ lines


#: Size in inches of one panel of the plots below (640 x 420 pixels at matplotlib's default 100 dpi).
PANEL_SIZE = (6.4, 4.2)
#: A trace or rank plot draws at most this many scalar components (the first ones).
MAX_COMPONENTS = 8


def _components(data, var_names):
    """``(label, [chains, draws] array)`` for each scalar component of the posterior, labelled ``y[0]``..."""
    draws = group_arrays(data, "posterior") or {}
    names = list(draws) if var_names is None else [var_names] if isinstance(var_names, str) else list(var_names)
    missing = [name for name in names if name not in draws]
    if missing:
        raise ValueError(f"var_names {missing} are not in the posterior, which has {sorted(draws)}")
    out = []
    for name in names:
        x = np.asarray(draws[name], dtype=float)
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        for i, index in enumerate(np.ndindex(*x.shape[2:])):
            out.append((f"{name}[{', '.join(map(str, index))}]" if index else name, flat[:, :, i]))
    if len(out) > MAX_COMPONENTS:
        warnings.warn(f"plotting the first {MAX_COMPONENTS} of {len(out)} components; pick others with var_names",
                      stacklevel=3)
        out = out[:MAX_COMPONENTS]
    return out


def _chain_ids(data, n):
    """The chains' own numbers (kept when a subset of chains was selected)."""
    ds = _dataset(data, "posterior")
    if ds is not None and "chain" in ds.coords and ds["chain"].size == n:
        return [c.item() for c in np.asarray(ds["chain"].values)]
    return list(range(n))  # pragma: no cover - every posterior built here has chain coordinates


def _figure(rows, cols, **kwargs):
    """A constrained-layout figure of ``rows x cols`` panels of :data:`PANEL_SIZE`, room for a legend on top."""
    import matplotlib.pyplot as plt

    size = (PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows + 0.4)
    return plt.subplots(rows, cols, squeeze=False, layout="constrained", **{"figsize": size, **kwargs})


def _legend_on_top(fig, *axes):
    """One legend above the panels for the labelled artists of ``axes``."""
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    fig.legend(handles, labels, loc="outside upper center", ncol=min(len(labels), 7), frameon=False)


def plot_trace(data, var_names=None, **kwargs):
    """Trace plot drawn with matplotlib; returns the Figure.

    One row per scalar component (``y[0]``, ``y[1]``, ...): on the left a histogram of each chain's draws,
    on the right each chain's draws in order, with divergent transitions (``sample_stats["diverging"]``)
    marked. ``kwargs`` go to ``matplotlib.pyplot.subplots`` (``figsize``, ``dpi``).
    """
    components = _components(data, var_names)
    stats = group_arrays(data, "sample_stats") or {}
    diverging = np.asarray(stats["diverging"], dtype=bool) if "diverging" in stats else None
    fig, axes = _figure(len(components), 2, **kwargs)
    for (label, x), (left, right) in zip(components, axes):
        chains, draws = x.shape
        edges = np.histogram_bin_edges(x, bins=int(np.clip(np.sqrt(draws), 5, 30)))
        for c, chain in enumerate(_chain_ids(data, chains)):
            left.stairs(np.histogram(x[c], edges, density=True)[0], edges, color=f"C{c}", lw=1.2,
                        label=f"chain {chain}")
            right.plot(np.arange(draws), x[c], color=f"C{c}", lw=0.8, alpha=0.8)
        if diverging is not None and diverging.any():
            c, d = np.nonzero(diverging)
            right.scatter(d, x[c, d], marker="x", s=30, color="k", zorder=3, label="divergent transition")
        left.set(title=f"{label}: histogram per chain", xlabel=label, ylabel="density")
        right.set(title=f"{label}: trace", xlabel="draw", ylabel=label)
    _legend_on_top(fig, axes[0, 0], axes[0, 1])
    return fig


def plot_rank(data, var_names=None, **kwargs):
    """Rank plot drawn with matplotlib; returns the Figure.

    All draws of a component are ranked together; each chain's histogram of its ranks, divided by the
    count expected when the chains have mixed, stays near 1 (inside the shaded 95% band) for mixed chains.
    ``kwargs`` go to ``matplotlib.pyplot.subplots``.
    """
    components = _components(data, var_names)
    cols = min(2, len(components))
    rows = -(-len(components) // cols)
    fig, axes = _figure(rows, cols, **kwargs)
    for ax in axes.ravel()[len(components):]:
        ax.set_visible(False)
    for (label, x), ax in zip(components, axes.ravel()):
        chains, draws = x.shape
        ranks = np.argsort(np.argsort(x, axis=None)).reshape(x.shape)
        bins = int(np.ceil(np.log2(draws))) + 1
        edges = np.linspace(0, x.size, bins + 1)
        expected = draws / bins
        half = 1.96 * np.sqrt(draws * (1 / bins) * (1 - 1 / bins)) / expected
        ax.axhspan(1 - half, 1 + half, color="0.85", label="95% band for mixed chains")
        for c, chain in enumerate(_chain_ids(data, chains)):
            ax.stairs(np.histogram(ranks[c], edges)[0] / expected, edges, baseline=None, color=f"C{c}", lw=1.5,
                      label=f"chain {chain}")
        ax.set(title=f"{label}: rank histogram per chain", xlabel="rank of the draw among all chains",
               ylabel="draws per bin / expected", ylim=(0, None))
    _legend_on_top(fig, axes[0, 0])
    return fig


def plot_energy(data, **kwargs):
    """Energy plot drawn with matplotlib (needs ``sample_stats["energy"]``); returns the Figure.

    Left: histograms of the marginal energy (minus its mean) and of the energy transitions between
    successive draws; a transition histogram much narrower than the marginal one means the sampler
    explores the energy slowly. Right: the BFMI of each chain, with ArviZ's warning level 0.3.
    ``kwargs`` go to ``matplotlib.pyplot.subplots``.
    """
    energy = np.asarray(group_arrays(data, "sample_stats")["energy"], dtype=float)
    fig, axes = _figure(1, 2, **kwargs)
    left, right = axes[0]
    marginal = (energy - energy.mean()).ravel()
    transition = np.diff(energy, axis=1).ravel()
    edges = np.histogram_bin_edges(np.concatenate([marginal, transition]), bins=40)
    left.stairs(np.histogram(marginal, edges, density=True)[0], edges, fill=True, alpha=0.5, color="C0",
                label="marginal energy E - mean(E)")
    left.stairs(np.histogram(transition, edges, density=True)[0], edges, fill=True, alpha=0.5, color="C1",
                label="energy transition E(t) - E(t-1)")
    left.set(title="energy of the Hamiltonian", xlabel="energy (nats)", ylabel="density")
    chains = _chain_ids(data, energy.shape[0])
    right.plot(chains, bfmi(energy), "o", color="C2", label="BFMI of a chain")
    right.axhline(0.3, color="k", ls="--", lw=1, label="0.3: warning level")
    right.set(title="BFMI per chain", xlabel="chain", ylabel="BFMI", ylim=(0, None))
    _legend_on_top(fig, left, right)
    return fig
