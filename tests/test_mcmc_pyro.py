"""Recording wrappers around stock Pyro NUTS/HMC."""

import pytest
import torch

import pyro
import pyro.distributions as dist
from pyro.infer import HMC, MCMC, NUTS
from pyro_ebm.mcmc import RecordingHMC, RecordingNUTS, from_pyro_mcmc
from pyro_ebm.mcmc.pyro_recording import STATS_SITE


def model(data):
    loc = pyro.sample("loc", dist.Normal(0.0, 5.0))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))  # positive support
    with pyro.plate("data", len(data)):
        pyro.sample("obs", dist.Normal(loc, scale), obs=data)


DATA = torch.tensor([0.3, -0.5, 1.2, 0.8, 2.0, 0.1])


def _run(kernel_cls, seed=0, num_chains=1, **kw):
    pyro.set_rng_seed(seed)
    mcmc = MCMC(kernel_cls(model, **kw), num_samples=30, warmup_steps=30, num_chains=num_chains,
                disable_progbar=True)
    mcmc.run(DATA)
    return mcmc


@pytest.mark.parametrize("plain, recording, kw", [
    (NUTS, RecordingNUTS, {}),
    (HMC, RecordingHMC, {"num_steps": 4}),
])
def test_recording_kernel_gives_the_same_draws_plus_stats(plain, recording, kw):
    a = _run(plain, **kw).get_samples(group_by_chain=True)
    m = _run(recording, **kw)
    b = m.get_samples(group_by_chain=True)
    assert set(b) == set(a) | {STATS_SITE}
    for k in a:
        assert torch.equal(a[k], b[k]), k
    s = from_pyro_mcmc(m)
    assert set(s.draws) == set(a)
    for name, v in s.stats.items():
        assert v.shape == (1, 30), name
    acc = s.stats["acceptance_rate"]
    assert ((acc >= 0) & (acc <= 1)).all()
    assert (s.stats["n_steps"] >= 1).all()
    assert torch.isfinite(s.stats["energy"]).all() and torch.isfinite(s.stats["lp"]).all()
    assert s.stats["diverging"].dtype == torch.bool
    if plain is HMC:
        # Pyro's HMC keeps the trajectory length fixed: steps = trajectory_length / adapted step size
        assert (s.stats["n_steps"] == m.kernel.num_steps).all()
    else:
        # NUTS trees have 2^depth - 1 .. 2^depth leaves
        assert (s.stats["n_steps"] <= 2 ** 10).all()
    # the step size is the adapted one, constant after warmup
    assert torch.allclose(s.stats["step_size"], s.stats["step_size"][0, 0])


def test_recording_lp_is_the_log_density_of_the_draw():
    m = _run(RecordingNUTS)
    s = from_pyro_mcmc(m)
    loc, scale = s.draws["loc"][0], s.draws["scale"][0]
    # potential in unconstrained space: -log p(loc, scale, data) - log|d scale / d log scale|
    lp = (dist.Normal(0.0, 5.0).log_prob(loc) + dist.LogNormal(0.0, 1.0).log_prob(scale)
          + dist.Normal(loc.unsqueeze(-1), scale.unsqueeze(-1)).log_prob(DATA).sum(-1) + scale.log())
    torch.testing.assert_close(s.stats["lp"][0], lp, rtol=1e-4, atol=1e-4)


def test_from_pyro_mcmc_needs_a_recording_kernel():
    with pytest.raises(ValueError, match="RecordingNUTS"):
        from_pyro_mcmc(_run(NUTS))


def test_recording_survives_multiprocessing_chains(monkeypatch):
    import pyro.infer.mcmc.api as mcmc_api

    # Pyro falls back to sequential chains when it sees fewer spare cores than chains; force the
    # multiprocessing sampler so the statistics really come back from worker processes
    monkeypatch.setattr(mcmc_api.mp, "cpu_count", lambda: 8)
    pyro.set_rng_seed(0)
    mcmc = MCMC(RecordingNUTS(model), num_samples=20, warmup_steps=20, num_chains=2, disable_progbar=True)
    assert type(mcmc.sampler).__name__ == "_MultiSampler"
    mcmc.run(DATA)
    s = from_pyro_mcmc(mcmc)
    assert s.draws["loc"].shape == (2, 20)
    assert s.stats["n_steps"].shape == (2, 20) and (s.stats["n_steps"] >= 1).all()
