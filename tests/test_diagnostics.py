"""Tests of ``pyro_ebm.diagnostics``: ArviZ conversion, mixing checks, energy gap and plots."""

import math
import types
import warnings

import matplotlib

matplotlib.use("Agg")

import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from pyro.infer import MCMC, NUTS  # noqa: E402

from pyro_ebm import _arviz  # noqa: E402
from pyro_ebm.diagnostics import (  # noqa: E402
    EnergyGap,
    NegativesReport,
    NegativesWarning,
    check_negatives,
    energy_gap,
    plot_energy,
    plot_negatives,
    plot_rank,
    plot_trace,
    summary,
    to_arviz,
)


def _ordered(chains=12, draws=40, event=2):
    c, d, e = torch.meshgrid(torch.arange(chains), torch.arange(draws), torch.arange(event), indexing="ij")
    return (10000.0 * c + 10.0 * d + e).double()


def _ar1(rng, chains, draws, rho, *, event=()):
    """AR(1) chains with unit stationary variance; ``rho`` scalar or one value per chain."""
    rho = np.broadcast_to(np.asarray(rho, dtype=float), (chains,)).reshape((chains,) + (1,) * len(event))
    eps = rng.normal(size=(chains, draws) + tuple(event))
    x = np.empty_like(eps)
    x[:, 0] = eps[:, 0]
    scale = np.sqrt(1 - rho**2)
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + scale * eps[:, t]
    return x


def _bfmi_numpy(energy):
    # E-BFMI per chain (Betancourt 2016): sum of squared successive differences / sum of squared deviations
    energy = np.asarray(energy, dtype=float)
    return np.sum(np.diff(energy, axis=1) ** 2, axis=1) / np.sum(
        (energy - energy.mean(axis=1, keepdims=True)) ** 2, axis=1
    )


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------------------------ to_arviz


def test_dict_values_dims_and_order_kept_with_twelve_chains():
    y = _ordered()
    z = y[..., 0] * -1.0
    data = to_arviz({"y": y, "z": z})
    assert _arviz.is_arviz_data(data)
    post = data["posterior"]
    assert tuple(post["y"].dims) == ("chain", "draw", "y_dim_0")
    assert tuple(post["z"].dims) == ("chain", "draw")
    assert post["y"].shape == (12, 40, 2)
    np.testing.assert_array_equal(post["y"].values, y.numpy())
    np.testing.assert_array_equal(post["z"].values, z.numpy())
    np.testing.assert_array_equal(post["chain"].values, np.arange(12))
    np.testing.assert_array_equal(post["draw"].values, np.arange(40))
    # chain 10 really is the 11th input chain (ArviZ 0.23's from_pyro gets this wrong)
    np.testing.assert_array_equal(post["y"].sel(chain=10).values, y[10].numpy())
    assert "sample_stats" not in _arviz.group_names(data)


def test_return_type_matches_arviz_line():
    data = to_arviz({"y": torch.zeros(2, 5)})
    if _arviz.IS_ARVIZ_1:  # pragma: no cover - Python >= 3.12 only
        import xarray as xr

        assert isinstance(data, xr.DataTree)
    else:
        assert isinstance(data, az.InferenceData)


def test_tensor_with_grad_and_float32_are_converted():
    y = torch.randn(3, 10, 2, requires_grad=True)
    data = to_arviz({"y": y * 2})
    np.testing.assert_array_equal(data["posterior"]["y"].values, (y * 2).detach().numpy())
    assert data["posterior"]["y"].dtype == np.float32


def test_sample_stats_arviz_names_aliases_and_dtypes():
    rng = np.random.default_rng(0)
    stats = {
        "energy": torch.randn(3, 20, dtype=torch.float64),
        "log_prob": rng.normal(size=(3, 20)),  # alias of lp
        "accept_prob": rng.uniform(size=(3, 20)),  # alias of acceptance_rate
        "step_size": torch.tensor([0.1, 0.2, 0.3]),  # one per chain: broadcast along draws
        "num_steps": torch.full((3, 20), 7.0),  # alias of n_steps, stored as integers
        "diverging": torch.zeros(3, 20, dtype=torch.long),
    }
    data = to_arviz({"y": torch.zeros(3, 20, 2)}, stats)
    ss = data["sample_stats"]
    assert set(ss.data_vars) == {"energy", "lp", "acceptance_rate", "step_size", "n_steps", "diverging"}
    np.testing.assert_array_equal(ss["energy"].values, stats["energy"].numpy())
    np.testing.assert_array_equal(ss["lp"].values, stats["log_prob"])
    step = np.repeat(np.array([[0.1], [0.2], [0.3]], dtype=np.float32), 20, axis=1)
    np.testing.assert_array_equal(ss["step_size"].values, step)
    assert ss["diverging"].dtype == bool
    assert ss["n_steps"].dtype.kind == "i"
    assert tuple(ss["energy"].dims) == ("chain", "draw")
    # ArviZ's own BFMI works on the converted data and agrees with numpy
    np.testing.assert_allclose(az.bfmi(data), _bfmi_numpy(stats["energy"].numpy()), rtol=1e-10)


def test_samples_like_object_and_default_name():
    draws = torch.randn(2, 15, 3)
    obj = types.SimpleNamespace(draws=draws, stats={"energy": torch.randn(2, 15)})
    data = to_arviz(obj)
    np.testing.assert_array_equal(data["posterior"]["y"].values, draws.numpy())
    assert "energy" in data["sample_stats"]
    named = types.SimpleNamespace(draws=draws, stats={}, name="negatives")
    assert list(to_arviz(named)["posterior"].data_vars) == ["negatives"]


def test_observed_coords_dims_and_passthrough():
    obs = torch.randn(7, 2)
    data = to_arviz(
        {"y": torch.randn(2, 10, 2)},
        observed=obs,
        coords={"coord": ["u", "v"]},
        dims={"y": ["coord"]},
    )
    assert tuple(data["posterior"]["y"].dims) == ("chain", "draw", "coord")
    np.testing.assert_array_equal(data["observed_data"]["y"].values, obs.numpy())
    assert tuple(data["observed_data"]["y"].dims) == ("y_obs", "coord")
    assert to_arviz(data) is data
    with pytest.raises(TypeError, match="already ArviZ data"):
        to_arviz(data, {"energy": np.zeros((2, 10))})


@pytest.mark.parametrize(
    "source, stats, exc, match",
    [
        ({"y": torch.zeros(100)}, None, ValueError, r"source\['y'\] must have shape \[chains, draws"),
        ({"y": torch.zeros(2, 10), "z": torch.zeros(3, 10)}, None, ValueError, r"source\['z'\]"),
        ({"y": torch.zeros(2, 10)}, {"energy": torch.zeros(2, 11)}, ValueError, r"sample_stats\['energy'\]"),
        ({"y": torch.zeros(2, 10)}, {"energy": torch.zeros(10, 2)}, ValueError, r"sample_stats\['energy'\]"),
        (
            {"y": torch.zeros(2, 10)},
            {"lp": torch.tensor([[0.0] * 9 + [math.nan]] * 2)},
            ValueError,
            r"sample_stats\['lp'\] must be finite.*index \(0, 9\)",
        ),
        ({"y": torch.zeros(2, 10)}, {"energy": torch.full((2, 10), math.inf)}, ValueError, "finite"),
        ({"y": torch.zeros(2, 10)}, {"diverging": torch.full((2, 10), 2.0)}, ValueError, "boolean"),
        (
            {"y": torch.zeros(2, 10)},
            {"lp": torch.zeros(2, 10), "logp": torch.zeros(2, 10)},
            ValueError,
            "alias",
        ),
        ({"y": torch.tensor([[1.0, math.nan]])}, None, ValueError, r"source\['y'\] must be finite"),
        (types.SimpleNamespace(draws=torch.zeros(10), stats={}), None, ValueError, r"source\.draws"),
        (
            types.SimpleNamespace(draws=torch.zeros(2, 10), stats={"energy": torch.zeros(2, 11)}),
            None,
            ValueError,
            r"source\.stats\['energy'\] must have shape \[chains, draws\] = \[2, 10\]",
        ),
        (torch.zeros(2, 10), None, TypeError, "dict"),
        ([1, 2, 3], None, TypeError, "source must be"),
        ({}, None, ValueError, "empty"),
        ({"y": torch.zeros(2, 10)}, [1, 2], TypeError, "sample_stats"),
    ],
)
def test_bad_input_names_the_argument(source, stats, exc, match):
    with pytest.raises(exc, match=match):
        to_arviz(source, stats)


# ------------------------------------------------------------------------------------------ pyro MCMC


def _normal_model():
    pyro.sample("mu", dist.Normal(1.0, 2.0))
    pyro.sample("v", dist.Normal(torch.zeros(2), 1.0).to_event(1))


@pytest.fixture(scope="module")
def nuts_run():
    pyro.set_rng_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "chains will be drawn sequentially" on small hosts
        mcmc = MCMC(NUTS(_normal_model), num_samples=50, warmup_steps=50, num_chains=2, disable_progbar=True)
        mcmc.run()
    return mcmc


def test_pyro_mcmc_conversion(nuts_run):
    data = to_arviz(nuts_run)
    samples = nuts_run.get_samples(group_by_chain=True)
    post = data["posterior"]
    assert post["mu"].shape == (2, 50)
    assert post["v"].shape == (2, 50, 2)
    np.testing.assert_array_equal(post["mu"].values, samples["mu"].numpy())
    np.testing.assert_array_equal(post["v"].values, samples["v"].numpy())
    ss = data["sample_stats"]
    assert ss["diverging"].dtype == bool and ss["diverging"].shape == (2, 50)
    n_div = sum(len(v) for v in nuts_run.diagnostics()["divergences"].values())
    assert int(ss["diverging"].values.sum()) == n_div
    moved = _arviz.group_attrs(data, "sample_stats")["move_rate_per_chain"]  # NUTS: not an acceptance
    assert moved == [nuts_run.diagnostics()["acceptance rate"][f"chain {c}"] for c in range(2)]
    report = check_negatives(nuts_run, warn=False, min_ess=10)
    assert report.n_chains == 2 and report.n_draws == 50
    assert report.mean_acceptance is None and "RecordingNUTS" in str(report)
    assert report.n_divergent == n_div


def test_mcmc_like_object_keeps_chain_order_and_divergence_positions():
    chains, draws = 12, 8
    y = _ordered(chains, draws, 1)[..., 0]
    divergences = {f"chain {c}": ([1, 5] if c == 11 else []) for c in range(chains)}
    fake = types.SimpleNamespace(
        num_chains=chains,
        get_samples=lambda group_by_chain=False: {"y": y},
        _diagnostics=[{} for _ in range(chains)],
        diagnostics=lambda: {"y": {"r_hat": 1.0}, "divergences": divergences},
    )
    data = to_arviz(fake)
    np.testing.assert_array_equal(data["posterior"]["y"].values, y.numpy())
    div = data["sample_stats"]["diverging"].values
    assert div.sum() == 2 and div[11, 1] and div[11, 5]


def test_recording_nuts_stats_are_unpacked():
    from pyro_ebm.mcmc import pyro_recording as recording
    pyro.set_rng_seed(1)
    mcmc = MCMC(recording.RecordingNUTS(_normal_model), num_samples=20, warmup_steps=20, disable_progbar=True)
    mcmc.run()
    data = to_arviz(mcmc)
    assert set(data["posterior"].data_vars) == {"mu", "v"}
    ss = data["sample_stats"]
    for name in ("energy", "lp", "acceptance_rate", "step_size", "n_steps", "diverging"):
        assert ss[name].shape == (1, 20)
    packed = mcmc.get_samples(group_by_chain=True)[recording.STATS_SITE].numpy()
    np.testing.assert_allclose(ss["energy"].values, packed[..., 0])
    np.testing.assert_allclose(az.bfmi(data), _bfmi_numpy(packed[..., 0]), rtol=1e-5)  # float32 stats
    samples = recording.from_pyro_mcmc(mcmc)  # the library's Samples, draws keyed by site
    via_samples = to_arviz(samples)
    np.testing.assert_array_equal(via_samples["posterior"]["v"].values, data["posterior"]["v"].values)
    np.testing.assert_array_equal(via_samples["sample_stats"]["n_steps"].values, ss["n_steps"].values)


# ------------------------------------------------------------------------------------------ diagnostics


def test_check_negatives_passes_well_mixed_iid():
    rng = np.random.default_rng(0)
    samples = {"y": rng.normal(size=(4, 500, 2))}
    stats = {
        "energy": rng.normal(size=(4, 500)),
        "diverging": np.zeros((4, 500), bool),
        "acceptance_rate": np.full((4, 500), 0.8),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error", NegativesWarning)
        report = check_negatives(to_arviz(samples, stats))
    assert isinstance(report, NegativesReport)
    assert report.ok and report.problems == []
    assert report.max_rhat < 1.01
    assert report.min_ess_bulk > 1500 and report.min_ess_tail > 1000
    assert report.ess_per_chain.shape == (4,) and np.all(report.ess_per_chain > 300)
    assert report.n_divergent == 0 and report.divergence_fraction == 0.0
    assert report.mean_acceptance == pytest.approx(0.8)
    np.testing.assert_allclose(report.bfmi, _bfmi_numpy(stats["energy"]), rtol=1e-10)
    assert "OK" in str(report)


def test_check_negatives_flags_chains_at_different_offsets():
    rng = np.random.default_rng(1)
    draws = rng.normal(size=(4, 500, 2)) + 2.0 * np.arange(4)[:, None, None]
    with pytest.warns(NegativesWarning, match="R-hat"):
        report = check_negatives({"y": torch.as_tensor(draws)})
    assert not report.ok
    assert report.max_rhat > 1.5
    assert report.min_ess_bulk < 400
    assert any("R-hat" in p for p in report.problems)
    assert any("bulk ESS" in p for p in report.problems)
    # each chain alone is fine: the problem is between chains
    assert np.all(report.ess_per_chain > 300)


def test_ess_per_chain_finds_the_sticky_chain():
    rng = np.random.default_rng(2)
    draws = _ar1(rng, 4, 1000, [0.0, 0.0, 0.0, 0.97], event=(2,))
    report = check_negatives({"y": draws}, warn=False)
    assert int(np.argmin(report.ess_per_chain)) == 3
    assert report.ess_per_chain[3] < 0.1 * report.ess_per_chain[:3].min()
    # a single chain's ESS equals ArviZ's ESS of that chain on its own
    alone = min(_arviz.ess(draws[3:4], "bulk"))
    assert report.ess_per_chain[3] == pytest.approx(alone, rel=1e-10)


def test_check_negatives_flags_low_bfmi_and_divergences():
    rng = np.random.default_rng(3)
    energy = _ar1(rng, 3, 600, [0.0, 0.0, 0.95])
    diverging = np.zeros((3, 600), bool)
    diverging[1, [5, 50, 500]] = True
    with pytest.warns(NegativesWarning) as record:
        report = check_negatives(
            to_arviz({"y": rng.normal(size=(3, 600))}, {"energy": energy, "diverging": diverging}), min_ess=10
        )
    message = str(record[0].message)
    assert "BFMI" in message and "chains [2]" in message and "3 divergent" in message
    np.testing.assert_allclose(report.bfmi, _bfmi_numpy(energy), rtol=1e-10)
    np.testing.assert_allclose(report.bfmi, az.bfmi(energy), rtol=1e-12)
    assert report.bfmi[2] < 0.3 < report.bfmi[0]
    assert report.n_divergent == 3
    assert report.divergence_fraction == pytest.approx(3 / 1800)
    assert "BFMI" in str(report)


def test_check_negatives_single_chain_uses_split_rhat():
    rng = np.random.default_rng(10)
    good = check_negatives({"y": rng.normal(size=(1, 2000))}, warn=False)
    assert good.ok and abs(good.max_rhat - 1) < 0.02
    drifting = np.linspace(0.0, 10.0, 400)[None] + rng.normal(size=(1, 400))
    with pytest.warns(NegativesWarning, match="R-hat"):
        bad = check_negatives({"y": drifting})
    assert bad.max_rhat > 1.5


def test_check_negatives_var_names_and_errors():
    rng = np.random.default_rng(4)
    src = {"good": rng.normal(size=(4, 300)), "bad": rng.normal(size=(4, 300)) + np.arange(4)[:, None]}
    assert check_negatives(src, var_names="good", warn=False).ok
    assert not check_negatives(src, warn=False).ok
    with pytest.raises(ValueError, match="var_names"):
        check_negatives(src, var_names=["nope"])
    with pytest.raises(ValueError, match="at least 4 draws"):
        check_negatives({"y": np.zeros((5, 3))})


def test_summary_dataframe():
    rng = np.random.default_rng(5)
    y = rng.normal(size=(4, 200, 3)) + np.array([0.0, 5.0, -5.0])
    table = summary({"y": torch.as_tensor(y)})
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]
    assert len(table) == 3
    np.testing.assert_allclose(table["mean"].to_numpy(), y.reshape(-1, 3).mean(0), rtol=1e-12)
    np.testing.assert_allclose(table["r_hat"].to_numpy(), _arviz.rhat(y), rtol=1e-12)


# ------------------------------------------------------------------------------------------ energy gap


def test_energy_gap_iid_closed_form():
    rng = np.random.default_rng(6)
    data, neg = rng.normal(-1.0, 0.5, size=400), rng.normal(2.0, 1.5, size=900)
    result = energy_gap(torch.as_tensor(data), torch.as_tensor(neg))
    assert isinstance(result, EnergyGap)
    gap, se = result
    assert gap == pytest.approx(neg.mean() - data.mean(), rel=1e-12)
    expected = math.sqrt(data.var(ddof=1) / 400 + neg.var(ddof=1) / 900)
    assert se == pytest.approx(expected, rel=1e-12)
    assert result.negative_ess == 900


def test_energy_gap_chains_iid_matches_closed_form():
    rng = np.random.default_rng(7)
    data, neg = rng.normal(0.0, 1.0, size=2000), rng.normal(3.0, 2.0, size=(8, 500))
    result = energy_gap(data, neg)
    assert result.gap == pytest.approx(neg.mean() - data.mean(), rel=1e-12)
    # iid draws: the ESS is about the number of draws, so the error is the closed form sqrt(s1²/n1 + s2²/n2)
    closed = math.sqrt(1.0 / 2000 + 4.0 / 4000)
    assert result.stderr == pytest.approx(closed, rel=0.1)
    assert 3000 < result.negative_ess < 5000


def test_energy_gap_autocorrelated_chains_widen_the_error():
    rng = np.random.default_rng(8)
    rho = 0.8
    neg = _ar1(rng, 8, 2000, rho)
    result = energy_gap(np.zeros(10), neg)
    # the variance of the mean of AR(1) draws is inflated by (1 + rho) / (1 - rho) = 9
    iid_se = neg.std(ddof=1) / math.sqrt(neg.size)
    assert result.negative_stderr / iid_se == pytest.approx(3.0, rel=0.15)


@pytest.mark.parametrize(
    "data, neg, match",
    [
        (np.zeros(1), np.zeros(5), "data_energies"),
        (np.zeros(5), np.zeros((2, 3, 4)), "negative_energies"),
        (np.array([0.0, math.nan]), np.zeros(5), "data_energies must be finite"),
        (np.zeros(5), np.array([[0.0, math.inf]]), "negative_energies must be finite"),
    ],
)
def test_energy_gap_bad_input(data, neg, match):
    with pytest.raises(ValueError, match=match):
        energy_gap(data, neg)


# ------------------------------------------------------------------------------------------ plots


def _lines_with_n_points(fig, n):
    return [line for ax in fig.axes for line in ax.get_lines() if len(line.get_xdata()) == n]


def test_plot_trace_rank_energy():
    rng = np.random.default_rng(9)
    data = to_arviz(
        {"y": rng.normal(size=(3, 60))},
        {"energy": rng.normal(size=(3, 60)), "diverging": np.zeros((3, 60), bool)},
    )
    fig = plot_trace(data)
    assert isinstance(fig, Figure)
    # one trace line of 60 draws per chain
    assert len(_lines_with_n_points(fig, 60)) == 3
    assert isinstance(plot_rank(data), Figure)
    fig = plot_energy(data)
    assert isinstance(fig, Figure) and len(fig.axes) >= 1
    with pytest.raises(ValueError, match="energy"):
        plot_energy({"y": rng.normal(size=(3, 60))})


def test_plot_negatives_points_and_contours():
    data = torch.randn(50, 2)
    negatives = torch.randn(3, 20, 2)
    ax = plot_negatives(data, negatives)
    assert [len(c.get_offsets()) for c in ax.collections] == [50, 60]
    np.testing.assert_allclose(ax.collections[1].get_offsets(), negatives.reshape(-1, 2).numpy(), rtol=1e-6)

    fig, ax0 = plt.subplots()
    calls = []

    def energy(y):
        calls.append(y.shape)
        return 0.5 * (y**2).sum(-1)

    ax = plot_negatives(data, negatives, energy=energy, ax=ax0, grid_size=30)
    assert ax is ax0
    assert calls == [torch.Size([900, 2])]
    from matplotlib.contour import ContourSet

    assert any(isinstance(c, ContourSet) for c in ax.collections)
    assert len(ax.collections[-2].get_offsets()) == 50
    assert len(ax.collections[-1].get_offsets()) == 60


def test_plot_negatives_bad_input():
    with pytest.raises(ValueError, match="data must have shape"):
        plot_negatives(torch.randn(5, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="negatives must have shape"):
        plot_negatives(torch.randn(5, 2), torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"energy must map a \[m, 2\] grid"):
        plot_negatives(torch.randn(5, 2), torch.randn(4, 2), energy=lambda y: y, grid_size=5)
    with pytest.raises(ValueError, match=r"energy\(grid\) must be finite"):
        plot_negatives(torch.randn(5, 2), torch.randn(4, 2), energy=lambda y: y.sum(-1) / 0.0, grid_size=5)
