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


def _figure_of(result):
    """A matplotlib Figure out of whatever an ArviZ plotting function returned."""
    import matplotlib.figure

    if isinstance(result, matplotlib.figure.Figure):
        return result
    viz = getattr(result, "viz", None)  # ArviZ 1.x PlotCollection
    if viz is not None:
        for key in ("figure", "chart"):
            try:
                node = viz[key]
            except KeyError:
                continue
            fig = np.asarray(getattr(node, "values", node), dtype=object).ravel()[0]
            if isinstance(fig, matplotlib.figure.Figure):
                return fig
    axes = np.asarray(result, dtype=object).ravel()
    if axes.size and hasattr(axes[0], "figure"):
        return axes[0].figure
    raise TypeError(f"cannot find a matplotlib figure in {type(result).__name__}")  # pragma: no cover


def plot_trace(data, var_names=None, **kwargs):
    """Trace plot (per-chain marginal and trace) drawn with matplotlib; returns the Figure."""
    if IS_ARVIZ_1:
        result = az.plot_trace_dist(data, var_names=var_names, backend="matplotlib", **kwargs)
    else:
        result = az.plot_trace(data, var_names=var_names, backend="matplotlib", **kwargs)
    return _figure_of(result)


def plot_rank(data, var_names=None, **kwargs):
    """Rank plot of each chain drawn with matplotlib; returns the Figure."""
    # same name on both lines; 0.x draws bars, 1.x draws fractional-rank ECDFs
    result = az.plot_rank(data, var_names=var_names, backend="matplotlib", **kwargs)
    return _figure_of(result)


def plot_energy(data, **kwargs):
    """Marginal vs transition energy plot with BFMI, drawn with matplotlib; returns the Figure."""
    result = az.plot_energy(data, backend="matplotlib", **kwargs)
    return _figure_of(result)
