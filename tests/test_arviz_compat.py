"""Tests of the ArviZ version shim ``pyro_ebm/_arviz.py``.

The module is loaded by file path so that this file runs without torch and pyro, both with ArviZ 0.x
(Python 3.10/3.11) and with ArviZ 1.x (Python >= 3.12, where ``arviz`` is a meta-package over
``arviz_base``/``arviz_stats``/``arviz_plots``).
"""

import importlib.util
import pathlib

import numpy as np
import pytest

az = pytest.importorskip("arviz")

_PATH = pathlib.Path(__file__).resolve().parents[1] / "pyro_ebm" / "_arviz.py"
_spec = importlib.util.spec_from_file_location("pyro_ebm_arviz_shim", _PATH)
shim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shim)


def _bfmi_numpy(energy):
    # Betancourt's E-BFMI: sum of squared successive differences over the sum of squared deviations,
    # i.e. (N-1)/N times "mean squared difference / variance"
    energy = np.asarray(energy, dtype=float)
    num = np.sum(np.diff(energy, axis=1) ** 2, axis=1)
    den = np.sum((energy - energy.mean(axis=1, keepdims=True)) ** 2, axis=1)
    return num / den


def _ordered(chains=12, draws=30, event=2):
    # every entry encodes its own (chain, draw, coordinate) so any reordering is visible
    c, d, e = np.meshgrid(np.arange(chains), np.arange(draws), np.arange(event), indexing="ij")
    return 10000.0 * c + 10.0 * d + e


def test_version_detection():
    assert shim.ARVIZ_VERSION == az.__version__
    assert shim.IS_ARVIZ_1 == (int(az.__version__.split(".")[0]) >= 1)


def test_from_dict_type_groups_and_order_with_twelve_chains():
    y = _ordered()
    energy = y[..., 0] / 7.0
    data = shim.from_dict(
        {"y": y},
        {"energy": energy, "diverging": np.zeros((12, 30), bool)},
        {"y": np.ones((5, 2))},
        attrs={"sample_stats": {"note": "per-chain"}},
    )
    assert shim.is_arviz_data(data)
    if shim.IS_ARVIZ_1:
        import xarray as xr

        assert isinstance(data, xr.DataTree)
    else:
        assert isinstance(data, az.InferenceData)
    assert set(shim.group_names(data)) == {"posterior", "sample_stats", "observed_data"}
    post = shim.group_arrays(data, "posterior")
    np.testing.assert_array_equal(post["y"], y)
    stats = shim.group_arrays(data, "sample_stats")
    np.testing.assert_array_equal(stats["energy"], energy)
    assert stats["diverging"].dtype == bool
    np.testing.assert_array_equal(shim.group_arrays(data, "observed_data")["y"], np.ones((5, 2)))
    assert shim.group_attrs(data, "sample_stats")["note"] == "per-chain"
    assert shim.group_arrays(data, "prior") is None
    assert shim.group_attrs(data, "prior") == {}
    # ArviZ's own view keeps chain coordinates 0..11 in order
    chain_coord = np.asarray(data["posterior"]["chain"].values)
    np.testing.assert_array_equal(chain_coord, np.arange(12))
    assert tuple(data["posterior"]["y"].dims[:2]) == ("chain", "draw")


def test_more_chains_than_draws_is_quiet(recwarn):
    shim.from_dict({"y": np.zeros((50, 3))})
    assert not [w for w in recwarn if "chains" in str(w.message).lower()]


def test_coords_and_dims_pass_through():
    data = shim.from_dict({"y": np.zeros((2, 5, 2))}, coords={"xy": ["a", "b"]}, dims={"y": ["xy"]})
    assert list(data["posterior"]["y"].dims) == ["chain", "draw", "xy"]
    assert list(np.asarray(data["posterior"]["xy"].values)) == ["a", "b"]


def test_ess_rhat_on_iid_and_on_offset_chains():
    rng = np.random.default_rng(1)
    iid = rng.normal(size=(4, 500, 3))
    ess_bulk = shim.ess(iid, "bulk")
    assert ess_bulk.shape == (3,)
    # iid draws: ESS close to the number of draws (2000)
    assert np.all((ess_bulk > 1500) & (ess_bulk < 2600))
    assert shim.ess(iid, "tail").shape == (3,)
    assert np.all(np.abs(shim.rhat(iid) - 1) < 0.01)
    offset = iid + 3.0 * np.arange(4)[:, None, None]
    assert np.all(shim.rhat(offset) > 1.5)
    assert np.all(shim.ess(offset, "bulk") < 50)
    assert np.ndim(shim.rhat(iid[..., 0])) == 0


def test_ess_rejects_missing_chain_dim():
    with pytest.raises(ValueError, match="chains, draws"):
        shim.ess(np.zeros(10))


def test_bfmi_matches_numpy():
    rng = np.random.default_rng(2)
    # chains with different autocorrelation -> different BFMI
    eps = rng.normal(size=(3, 400))
    energy = np.empty_like(eps)
    energy[:, 0] = eps[:, 0]
    rho = np.array([0.0, 0.5, 0.95])
    for t in range(1, 400):
        energy[:, t] = rho * energy[:, t - 1] + eps[:, t]
    got = shim.bfmi(energy)
    np.testing.assert_allclose(got, _bfmi_numpy(energy), rtol=1e-10)
    assert got[2] < 0.3 < got[0]
    with pytest.raises(ValueError, match="energy"):
        shim.bfmi(energy[0])


def test_summary_columns_and_values():
    rng = np.random.default_rng(3)
    y = rng.normal(size=(4, 300, 2)) + np.array([1.0, -2.0])
    table = shim.summary(shim.from_dict({"y": y}))
    assert list(table.columns) == list(shim.SUMMARY_COLUMNS)
    assert len(table) == 2
    np.testing.assert_allclose(table["mean"].to_numpy(), y.reshape(-1, 2).mean(0), rtol=1e-12)
    np.testing.assert_allclose(table["r_hat"].to_numpy(), shim.rhat(y), rtol=1e-12)
    np.testing.assert_allclose(table["ess_bulk"].to_numpy(), shim.ess(y, "bulk"), rtol=1e-12)


def test_plots_return_figures():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    rng = np.random.default_rng(4)
    data = shim.from_dict(
        {"y": rng.normal(size=(3, 60))},
        {"energy": rng.normal(size=(3, 60)), "diverging": np.zeros((3, 60), bool)},
    )
    for fn in (shim.plot_trace, shim.plot_rank, shim.plot_energy):
        fig = fn(data)
        assert isinstance(fig, Figure)
        assert len(fig.axes) >= 1
        plt.close(fig)


def test_log_likelihood_group_and_loo_waic():
    rng = np.random.default_rng(0)
    ll = rng.normal(-1.0, 0.1, size=(4, 50, 6))
    data = shim.from_dict(
        {"mu": rng.normal(size=(4, 50))},
        observed_data={"y": np.arange(6.0)},
        log_likelihood={"y": ll},
        observed_dims={"y": ["points"]},
    )
    assert "log_likelihood" in shim.group_names(data)
    got = shim.group_arrays(data, "log_likelihood")["y"]
    assert np.array_equal(got, ll)
    dims = data["log_likelihood"]["y"].dims
    assert tuple(dims) == ("chain", "draw", "points")
    # PSIS-LOO runs on both lines; with nearly constant pointwise log-likelihoods it is close to the
    # log pointwise predictive density computed directly (and never above it by more than noise)
    flat = ll.reshape(-1, 6)
    lppd = np.log(np.exp(flat).mean(0)).sum()
    loo = az.loo(data)
    elpd = float(getattr(loo, "elpd_loo", None) if hasattr(loo, "elpd_loo") else loo.elpd)
    assert abs(elpd - lppd) < 6 * flat.var(0).max() + 1e-3
    if not shim.IS_ARVIZ_1:  # ArviZ 1.x dropped waic
        expected = lppd - flat.var(0).sum()
        assert abs(float(az.waic(data).elpd_waic) - expected) < 1e-6


def test_select_chains_keeps_order_and_other_groups():
    y = _ordered(chains=10, draws=5, event=1)
    data = shim.from_dict({"y": y}, {"energy": y[..., 0]}, {"y": np.ones(3)})
    sub = shim.select_chains(data, [0, 4, 9])
    assert np.array_equal(shim.group_arrays(sub, "posterior")["y"], y[[0, 4, 9]])
    assert np.array_equal(shim.group_arrays(sub, "sample_stats")["energy"], y[[0, 4, 9], :, 0])
    assert np.array_equal(shim.group_arrays(sub, "observed_data")["y"], np.ones(3))
