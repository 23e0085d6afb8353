"""Sampler diagnostics during maximum-likelihood training (pyro_ebm.ml)."""

import math
import warnings

import arviz as az
import numpy as np
import pytest
import torch

from pyro_ebm import Energy, losses
from pyro_ebm.diagnostics import NegativesWarning
from pyro_ebm.ml import DIAGNOSTIC_KEYS, PyroNUTSNegatives, SamplerDiagnostics, make_negatives, ml_fit
from pyro_ebm.negatives import ContrastiveDivergence, MCMCNegatives, Negatives, PersistentNegatives
from pyro_ebm.train import fit


class Bowl(Energy):
    """``F(y) = 0.5 exp(s) |y - c|^2``: a Gaussian with trainable precision and centre."""

    def __init__(self):
        super().__init__(event_shape=(2,))
        self.log_prec = torch.nn.Parameter(torch.zeros(()))
        self.center = torch.nn.Parameter(torch.zeros(2))

    def forward(self, y, x=None):
        return 0.5 * self.log_prec.exp() * ((y - self.center) ** 2).sum(-1)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return 0.5 * torch.randn(1024, 2, generator=g) + torch.tensor([1.0, -1.0])


def _train(energy, data, negatives, diag, steps=60):
    return fit(energy, data, losses.ml_sampled, negatives, steps=steps, batch_size=64, lr=0.05,
               callbacks=[diag], progress=False, seed=0)


def _arviz_dataset(x):
    if int(az.__version__.split(".")[0]) >= 1:  # pragma: no cover - ArviZ 1.x
        return az.from_dict({"posterior": {"v": x}})["posterior"].to_dataset()
    return az.convert_to_dataset({"v": x})


def _az_rhat(x):
    return np.asarray(az.rhat(_arviz_dataset(x))["v"].values, dtype=float)


def _az_ess(x):
    return np.asarray(az.ess(_arviz_dataset(x), method="bulk")["v"].values, dtype=float)


def test_warning_fires_on_a_bad_sampler(data):
    energy = Bowl()
    bad = PersistentNegatives(512, kernel="hmc", steps=1, step_size=1e-4, n_leapfrog=1, seed=0,
                              noise=lambda n, g: 4 * torch.rand(n, 2, generator=g) - 2)
    diag = SamplerDiagnostics(energy, bad, data, every=30, num_chains=6, num_draws=60, seed=0)
    with pytest.warns(NegativesWarning, match="R-hat"):
        _train(energy, data, bad, diag)
    last = diag.reports[-1]
    assert last["diag_rhat"] > 1.5 and last["diag_ess_bulk"] < 20
    assert last["problems"]


def test_warning_does_not_fire_on_a_good_sampler(data):
    energy = Bowl()
    good = PersistentNegatives(512, kernel="hmc", steps=4, step_size=0.25, n_leapfrog=5, seed=0)
    diag = SamplerDiagnostics(energy, good, data, every=30, num_chains=6, num_draws=100, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NegativesWarning)
        h = _train(energy, data, good, diag)
    assert [r["step"] for r in diag.reports] == [30, 60]
    assert all(not r["problems"] for r in diag.reports)
    # the values are in the history at the probed steps only
    rhat = h["diag_rhat"]
    assert math.isnan(rhat[0]) and rhat[29] < 1.05 and rhat[59] < 1.05
    for k in DIAGNOSTIC_KEYS:
        assert k in h.records[59]
    assert 0.5 < h.records[59]["diag_acceptance"] <= 1.0
    assert h.records[59]["diag_divergences"] == 0


def test_recorded_numbers_match_arviz_on_the_same_draws(data):
    energy = Bowl()
    neg = PersistentNegatives(512, kernel="hmc", steps=2, step_size=0.2, seed=1)
    diag = SamplerDiagnostics(energy, neg, data, every=20, num_chains=5, num_draws=80, seed=3)
    h = _train(energy, data, neg, diag, steps=20)
    rec = h.last
    s = diag.last_samples
    x = s.draws.double().numpy()
    assert s.draws.shape == (5, 80, 2)
    assert rec["diag_rhat"] == pytest.approx(float(np.max(_az_rhat(x))), rel=1e-10)
    assert rec["diag_ess_bulk"] == pytest.approx(float(np.min(_az_ess(x))), rel=1e-10)
    with torch.no_grad():
        f = energy(s.draws.reshape(-1, 2)).reshape(5, 80).double().numpy()
    assert rec["diag_rhat_energy"] == pytest.approx(float(_az_rhat(f)), rel=1e-8)
    assert rec["diag_ess_bulk_energy"] == pytest.approx(float(_az_ess(f)), rel=1e-8)
    assert rec["diag_acceptance"] == pytest.approx(float(s.stats["acceptance_rate"].double().mean()))
    assert rec["diag_divergences"] == float(s.stats["diverging"].sum())
    # gap: mean energy of the probe's draws minus mean energy of the data (all data: num_data >= N)
    diag2 = SamplerDiagnostics(energy, neg, data, num_data=len(data))
    vals = diag2.measure(s)
    with torch.no_grad():
        expected = float(f.mean()) - float(energy(data).double().mean())
    assert vals["diag_energy_gap"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert vals["diag_energy_gap_se"] > 0


def test_thinning_keeps_one_draw_per_training_call(data):
    energy = Bowl()
    neg = PersistentNegatives(128, kernel="hmc", steps=3, step_size=0.2, seed=0)
    neg(energy, data[:8])
    diag = SamplerDiagnostics(energy, neg, data, num_chains=4, num_draws=10, seed=0)
    s = diag.probe()
    assert s.draws.shape == (4, 10, 2) and s.info["thin"] == 3
    assert s.stats["acceptance_rate"].shape == (4, 10)


@pytest.mark.parametrize("kind", ["mcmc", "tempering", "cd"])
def test_probe_of_other_generators(data, kind):
    energy = Bowl()
    if kind == "mcmc":
        neg = MCMCNegatives(kernel="hmc", num_warmup=30, seed=0)
    elif kind == "tempering":
        neg = make_negatives("tempering", num_warmup=30, seed=0)
    else:
        neg = ContrastiveDivergence(k=2, kernel="mala", step_size=0.1, seed=0)
    diag = SamplerDiagnostics(energy, neg, data, every=1, num_chains=4, num_draws=30, warn=False, seed=0)
    diag(1, None)
    r = diag.reports[0]
    assert diag.last_samples.draws.shape == (4, 30, 2)
    assert np.isfinite(r["diag_rhat"]) and np.isfinite(r["diag_energy_gap"])


def test_pyro_nuts_negatives_feed_the_diagnostics(data):
    energy = Bowl()
    neg = PyroNUTSNegatives(num_warmup=10, num_samples=6, seed=0, max_tree_depth=3)
    y_hat = neg(energy, data[:16])
    assert y_hat.shape == (1, 16, 2)
    assert neg.last_samples.draws.shape == (16, 6, 2)
    diag = SamplerDiagnostics(energy, neg, data, every=1, warn=False)
    assert diag.probe() is neg.last_samples  # used directly, no extra sampling
    diag(1, None)
    assert np.isfinite(diag.reports[0]["diag_rhat"])
    # reproducible
    again = PyroNUTSNegatives(num_warmup=10, num_samples=6, seed=0, max_tree_depth=3)(energy, data[:16])
    assert torch.equal(y_hat, again)
    with pytest.raises(TypeError, match="init must be a callable"):
        PyroNUTSNegatives(init=3)
    with pytest.raises(ValueError, match="init_scale must be > 0"):
        PyroNUTSNegatives(init_scale=0.0)
    with pytest.raises(ValueError, match=r"must return a tensor \[n, \*event_shape\] = \(16, 2\), got \(16, 3\)"):
        PyroNUTSNegatives(init=lambda n, g: torch.zeros(n, 3), num_warmup=1, num_samples=1)(energy, data[:16])


def test_ml_fit_learns_a_gaussian_and_records_diagnostics(data):
    torch.manual_seed(0)
    energy = Bowl()
    run = ml_fit(energy, data, steps=200, lr=0.05, batch_size=128, diagnose_every=100,
                 sampler_options={"buffer_size": 512, "step_size": 0.2},
                 diagnostics_options={"num_chains": 4, "num_draws": 50}, progress=False)
    assert len(run.diagnostics.reports) == 2
    assert torch.allclose(energy.center.detach(), torch.tensor([1.0, -1.0]), atol=0.15)
    assert float(energy.log_prec.detach().exp()) == pytest.approx(4.0, rel=0.3)
    assert not math.isnan(run.history.records[199]["diag_rhat"])


def test_bad_arguments():
    energy = Bowl()
    neg = make_negatives("persistent")
    with pytest.raises(ValueError, match="check"):
        SamplerDiagnostics(energy, neg, check=("z",))
    with pytest.raises(ValueError, match="num_chains"):
        SamplerDiagnostics(energy, neg, num_chains=1)
    with pytest.raises(ValueError, match="rhat_threshold"):
        SamplerDiagnostics(energy, neg, rhat_threshold=0.9)
    with pytest.raises(ValueError, match="sampler must be"):
        make_negatives("gibbs-magic")
    with pytest.raises(TypeError, match="cannot probe"):
        SamplerDiagnostics(energy, lambda e, y, x=None: y[None], every=1)(1, None)


def test_ml_fit_resumes_its_diagnostics_bit_for_bit(data, tmp_path):
    """A run checkpointed at step 10 and resumed to 20 probes exactly as the uninterrupted run: the same
    reports (R-hat, ESS, gap, ...) at every probed step and the same parameters. The callback's random
    state and its reports are in the checkpoint (they used to restart from the seed: other R-hats)."""
    # a constant learning rate: a cosine schedule depends on the run's length, which the resume extends
    opts = dict(lr=0.05, batch_size=64, diagnose_every=5, progress=False, lr_schedule=None,
                sampler_options={"buffer_size": 256, "step_size": 0.2},
                diagnostics_options={"num_chains": 4, "num_draws": 30, "warn": False})
    whole = Bowl()
    ref = ml_fit(whole, data, steps=20, **opts)
    path = tmp_path / "ml.pt"
    first = Bowl()
    ml_fit(first, data, steps=10, checkpoint=path, **opts)
    resumed_energy = Bowl()
    resumed = ml_fit(resumed_energy, data, steps=20, resume=path, **opts)
    for step in (15, 20):  # probed after the resume
        assert resumed.history.records[step - 1]["diag_rhat"] == ref.history.records[step - 1]["diag_rhat"]
    assert [r["step"] for r in resumed.diagnostics.reports] == [5, 10, 15, 20]
    assert resumed.diagnostics.reports == ref.diagnostics.reports
    for p, q in zip(resumed_energy.parameters(), whole.parameters()):
        assert torch.equal(p, q)
    # the probe's state round-trips on its own, too
    diag = SamplerDiagnostics(Bowl(), make_negatives("persistent"), data, seed=5)
    diag.load_state_dict(ref.diagnostics.state_dict())
    assert diag.reports == ref.diagnostics.reports
    assert torch.equal(diag.generator("cpu").get_state(), ref.diagnostics.generator("cpu").get_state())
    with pytest.raises(ValueError, match="state must be a SamplerDiagnostics.state_dict"):
        diag.load_state_dict({"rng": None})


class Fields(Energy):
    """Independent binary units, ``F(y) = -h . y``: ``P(y_i = 1) = sigmoid(h_i)``."""

    def __init__(self):
        super().__init__(event_shape=(4,))
        self.h = torch.nn.Parameter(torch.tensor([-1.5, -0.5, 0.5, 1.5]))

    def forward(self, y, x=None):
        return -(y * self.h).sum(-1)


def test_gibbs_negatives_can_be_probed_before_their_first_call():
    """probe() before the generator's first call used the callback's own uniform noise, which the binary
    Gibbs kernel rejects ("init must hold only 0s and 1s"); the generator's probe starts from its own
    Bernoulli states. On independent units every sweep is an exact draw: R-hat near 1, and the recorded
    gap is the mean energy of the draws minus that of the data."""
    energy = Fields()
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(256, 4, generator=g) < torch.sigmoid(energy.h.detach())).float()
    neg = PersistentNegatives(64, kernel="gibbs", steps=1, seed=0)
    diag = SamplerDiagnostics(energy, neg, data, every=1, num_chains=4, num_draws=100, num_data=256, warn=False)
    diag(1, None)
    r = diag.reports[0]
    s = diag.last_samples
    assert s.draws.shape == (4, 100, 4) and bool(((s.draws == 0) | (s.draws == 1)).all())
    assert r["diag_rhat"] < 1.05 and r["diag_rhat_energy"] < 1.05
    with torch.no_grad():
        gap = float(energy(s.draws.reshape(-1, 4)).double().mean() - energy(data).double().mean())
    assert r["diag_energy_gap"] == pytest.approx(gap, rel=1e-5, abs=1e-6)
    assert neg.buffer is None


def test_a_generator_of_ones_own_is_probed_through_its_last_samples(data):
    """A Negatives subclass without a probe of its own that keeps >= 4 draws of >= 2 chains in last_samples
    is probed through them (no extra sampling), as before generators probed themselves."""
    from pyro_ebm.mcmc import sample

    class Kept(Negatives):
        def __call__(self, energy, y, x=None):
            self.last_samples = sample(energy, y[:4].clone(), 10, 8, seed=0, progress=False)
            return self.last_samples.draws[:, -1][None].expand(1, *y.shape).clone()

    energy = Bowl()
    neg = Kept()
    with pytest.raises(TypeError, match="cannot probe a Kept"):
        SamplerDiagnostics(energy, neg, data, every=1, warn=False)(1, None)
    neg(energy, data[:4])
    diag = SamplerDiagnostics(energy, neg, data, every=1, warn=False)
    assert diag.probe() is neg.last_samples
