"""The acceptance that diagnostics report for stock ``pyro.infer.MCMC`` runs, checked against the per-draw
acceptance probabilities that the recording kernels take from the very same transitions (same seed, same
draws)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, HMC, NUTS

from pyro_ebm import _arviz
from pyro_ebm.diagnostics import check_negatives, to_arviz
from pyro_ebm.mcmc import RecordingHMC, RecordingNUTS, from_pyro_mcmc


def _model():
    pyro.sample("y", dist.Normal(torch.zeros(2), 1.0).to_event(1))


def _run(kernel, warmup, n, seed=0):
    pyro.set_rng_seed(seed)
    mcmc = MCMC(kernel, num_samples=n, warmup_steps=warmup, disable_progbar=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mcmc.run()
    return mcmc


def test_stock_hmc_reports_its_accepted_fraction_a_consistent_acceptance_estimate():
    """For HMC, Pyro's per-chain 'acceptance rate' counts accepted Metropolis proposals; its expectation is
    the mean accept_prob, so it agrees with RecordingHMC's per-draw accept_prob of the same transitions
    within 4 binomial standard errors."""
    stock = _run(HMC(_model, step_size=1.6, num_steps=3, adapt_step_size=False), 10, 300)
    rec = _run(RecordingHMC(_model, step_size=1.6, num_steps=3, adapt_step_size=False), 10, 300)
    assert torch.equal(stock.get_samples()["y"], rec.get_samples()["y"])  # the same transitions
    p = float(from_pyro_mcmc(rec).stats["acceptance_rate"].double().mean())
    assert 0.3 < p < 0.95  # a step size where rejections happen
    reported = check_negatives(stock, warn=False, min_ess=1).mean_acceptance
    assert abs(reported - p) < 4 * math.sqrt(p * (1 - p) / 300)


def test_stock_nuts_does_not_pass_its_move_fraction_off_as_acceptance():
    """For NUTS, Pyro's per-chain 'acceptance rate' is the fraction of transitions whose sampled state
    differs from the start (close to 1), not the mean acceptance statistic (RecordingNUTS records it from
    accept_prob: lower for the same seed and the same draws). A finished stock run keeps no accept_prob
    (the kernel resets it after each chain), so its acceptance is reported as unknown, with the move
    fraction kept under its own name."""
    stock = _run(NUTS(_model), 50, 100)
    rec = _run(RecordingNUTS(_model), 50, 100)
    assert torch.equal(stock.get_samples()["y"], rec.get_samples()["y"])
    moved = stock.diagnostics()["acceptance rate"]["chain 0"]
    accept_prob = float(from_pyro_mcmc(rec).stats["acceptance_rate"].double().mean())
    assert moved - accept_prob > 0.03  # what used to be reported vs the acceptance statistic
    assert check_negatives(rec, warn=False, min_ess=1).mean_acceptance == pytest.approx(accept_prob, rel=1e-6)
    report = check_negatives(stock, warn=False, min_ess=1)
    assert report.mean_acceptance is None
    assert "RecordingNUTS" in str(report)
    attrs = _arviz.group_attrs(to_arviz(stock), "sample_stats")
    assert "acceptance_rate_per_chain" not in attrs
    np.testing.assert_allclose(attrs["move_rate_per_chain"], [moved])
