"""Valid calls of ``pyro_ebm`` (top level), ``energy``, ``gibbs``, ``inference``, ``likelihood``,
``partition``, ``datasets``, ``cli``, ``demo``, ``diagnostics`` and ``fit_check`` for the walker."""

from __future__ import annotations

import math
import os
import tempfile

import pyro
import pyro.distributions as dist
import torch

import pyro_ebm as E
import pyro_ebm.energy as energy_mod
import pyro_ebm.cli as cli
import pyro_ebm.datasets as D
import pyro_ebm.demo as demo
import pyro_ebm.diagnostics as diag
import pyro_ebm.likelihood as LK
import pyro_ebm.partition as P
from pyro_ebm.fit_check import mmd_test

from . import Exempt, call, spec  # noqa: F401

INF = math.inf

# ------------------------------------------------------------------------------------------------ energies


def _quad(y):
    """``F(y) = |y|^2 / 2`` for ``y`` of event shape ``(2,)``."""
    return 0.5 * (y**2).sum(-1)


def _quad_x(y, x):
    """``F(y, x) = |y - x|^2 / 2`` for ``y`` and ``x`` of event shape ``(2,)``."""
    return 0.5 * ((y - x) ** 2).sum(-1)


def _wall(y):
    """``|y|^2 / 2`` inside the box ``|y_i| <= 5``, ``+inf`` (zero density) outside; event shape ``(2,)``."""
    f = 0.5 * (y**2).sum(-1)
    return torch.where(y.abs().amax(-1) > 5, torch.full_like(f, INF), f)


def _scalar(y):
    """``F(y) = (y - 1)^2`` for scalar ``y``, ``+inf`` beyond ``y > 5``."""
    f = (y - 1.0) ** 2
    return torch.where(y > 5, torch.full_like(f, INF), f)


def _scalar_x(y, x):
    """``F(y, x) = (y - x)^2`` for scalar ``y`` and ``x``, ``+inf`` beyond ``y > 5``."""
    f = (y - x) ** 2
    return torch.where(y > 5, torch.full_like(f, INF), f)


class _Quad(E.Energy):
    """``|y - c|^2 / 2`` with a learnable centre ``c``, event shape ``(2,)``."""

    def __init__(self):
        super().__init__(event_shape=(2,))
        self.center = torch.nn.Parameter(torch.zeros(2))

    def forward(self, y, x=None):
        out = 0.5 * ((y - self.center) ** 2).sum(-1)
        return out if x is None else out + x


class _Lat(E.LatentEnergy):
    """``E(y, z[, x]) = s |y - z|^2 (+ x z)`` for ``y`` of event shape ``(2,)`` and a scalar ``z`` (``+inf``
    beyond ``z > 5``), a learnable scale ``s``."""

    def __init__(self):
        super().__init__(event_shape=(2,), latent_shape=())
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, y, z, x=None):
        out = self.scale * ((y - z.unsqueeze(-1)) ** 2).sum(-1)
        out = out if x is None else out + x * z
        return torch.where(z > 5, torch.full_like(out, INF), out)


def _bernoulli(y, theta):
    """``F(y; theta) = -theta sum_i y_i``: independent binary units with logit ``theta``."""
    return -theta * y.sum(-1)


def _bernoulli1(y, theta):
    """``F(y; theta) = -theta y`` for a scalar binary ``y``."""
    return -theta * y


def _mixture():
    z = pyro.sample("z", dist.Categorical(torch.tensor([0.3, 0.7])))
    return pyro.sample("y", dist.Normal(torch.tensor([-2.0, 2.0])[z], 1.0))


def _t(*values):
    return torch.tensor(values)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _close_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")


def _plot(fn, *args, **kwargs):
    _close_figures()
    return call(fn, *args, **kwargs)


def _draws():
    """Draws of 2 chains x 20 draws of a 2-D ``y``, with the Hamiltonian per draw."""
    return diag.to_arviz({"y": _randn(2, 20, 2)}, {"energy": _randn(2, 20, seed=1)})


_TMPDIR = tempfile.TemporaryDirectory(prefix="pyro_ebm_walker_")  # removed at exit
_TMP = _TMPDIR.name
_EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")


def _run_example_args(args):
    return {"seed": args.seed}


def _binary():
    return _t([1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0])


def _samples2():
    return torch.randn(8, 2, generator=torch.Generator().manual_seed(0))


def _y3():
    return _t([0.5, -0.2], [1.0, 2.0], [-1.5, 0.3])


def _discrete():
    return E.DiscreteGibbs(_scalar, _t(0.0, 1.0, 2.0, 7.0))


def _discrete2():
    return E.DiscreteGibbs(_quad, E.product_values([0.0, 1.0], 2))


def _gibbs():
    return E.GibbsBoltzmann(_wall, event_shape=(2,))


def _argmin_result():
    return E.ArgminResult(_t([1.0], [1.0005], [-1.0]), _t(0.0, 0.0, 0.0), _t(0.0, 0.0, 0.0), 10)


# ------------------------------------------------------------------------------------------------ accepts

EMPTY_BATCH = "an empty batch gives an empty result"
INT_PROMOTED = "integer entries are promoted to floating point by the energy's arithmetic; the result is right"
SCALAR_EVENT = "() is a legal shape: a scalar event"
NAME_TEXT = "any text is a legal name (it is only used in messages)"
LIMIT_HUGE = "max_candidates is an upper limit: a huge one only turns the size guard off"
OUT_DIR = "a folder path: any name is legal, and mutating it would create folders"
SEED_HUGE = "any seed in [0, 2**64) is legal"
BETA_INF = "beta = inf is the documented zero-temperature limit"
X_BROADCAST = "x [3, 1] broadcasts with y's batch (3,) to the batch (3, 3), as documented"

SPECS = {
    # ---------------------------------------------------------------------------------- energy
    "pyro_ebm.Energy": spec(lambda: call(E.Energy, (2,)), accepts={"event_shape:empty": SCALAR_EVENT}),
    "pyro_ebm.Energy.energy": spec(
        lambda: call(_Quad().energy, _y3(), _t(0.0, 1.0, 2.0)),
        accepts={"y:int-dtype": INT_PROMOTED, "x:int-dtype": INT_PROMOTED},
    ),
    "pyro_ebm.Energy.forward": Exempt("abstract: raises NotImplementedError, a subclass defines forward"),
    "pyro_ebm.LatentEnergy": spec(
        lambda: call(E.LatentEnergy, (2,), (3,)),
        accepts={"event_shape:empty": SCALAR_EVENT, "latent_shape:empty": SCALAR_EVENT},
    ),
    "pyro_ebm.LatentEnergy.energy": spec(
        lambda: call(_Lat().energy, _y3(), _t(1.0, -1.0, 1.0), _t(0.1, 0.2, 0.3)),
        accepts={"y:int-dtype": INT_PROMOTED, "z:int-dtype": INT_PROMOTED, "x:int-dtype": INT_PROMOTED,
                 "z:trailing-dim": "z [3, 1] is a batch (3, 1) that broadcasts with y's (3,), as documented"},
    ),
    "pyro_ebm.LatentEnergy.forward": Exempt("abstract: raises NotImplementedError, a subclass defines forward"),
    "pyro_ebm.as_energy": spec(
        lambda: call(E.as_energy, _quad, (2,), (2,)),
        accepts={"event_shape:empty": SCALAR_EVENT, "latent_shape:empty": SCALAR_EVENT},
        skip={"fn": "as_energy only wraps fn; it is first evaluated when the energy is called "
                    "(Energy.energy's spec mutates the outputs)"},
    ),
    "pyro_ebm.energy.batch_shape_of": spec(
        lambda: call(energy_mod.batch_shape_of, _y3(), (2,), "value"),
        accepts={"value:nan": "only the shape of value is read", "value:inf": "only the shape of value is read",
                 "value:int-dtype": "only the shape of value is read", "value:empty": EMPTY_BATCH,
                 "event_shape:empty": "() is a legal event shape: every dimension is a batch dimension",
                 "name:unknown-option": NAME_TEXT},
    ),
    "pyro_ebm.energy.check_energy_output": spec(
        lambda: call(energy_mod.check_energy_output, _t(0.0, 1.0, INF), (3,), name="energy"),
        names={"value": r"\benergy\b"},
        accepts={"value:inf": "+inf is a legal energy (zero probability); the valid value holds one",
                 "value:int-dtype": "an integer energy is legal (the library's callers promote it)",
                 "name:unknown-option": NAME_TEXT},
    ),
    # ---------------------------------------------------------------------------------- gibbs
    "pyro_ebm.GibbsBoltzmann": spec(
        lambda: call(E.GibbsBoltzmann, _quad_x, 1.0, torch.zeros(2), (2,), init=torch.zeros(2), batch_shape=(3,)),
        accepts={"x:int-dtype": INT_PROMOTED, "batch_shape:empty": "() is the default batch shape",
                 "event_shape:empty": "with a scalar y, F(y, x) = sum_i (y - x_i)^2 / 2 is a legal energy"},
    ),
    "pyro_ebm.GibbsBoltzmann.expand": spec(lambda: call(_gibbs().expand, (3,)),
                                           accepts={"batch_shape:empty": "() is the distribution's own batch shape"}),
    "pyro_ebm.GibbsBoltzmann.log_prob": spec(
        lambda: call(_gibbs().log_prob, _t([0.0, 0.0], [1.0, 2.0], [9.0, 0.0])),
        accepts={"value:inf": "a point at infinity lies outside the energy's finite region: log_prob -inf, "
                              "like the valid call's third point",
                 "value:empty": EMPTY_BATCH},
    ),
    "pyro_ebm.GibbsBoltzmann.sample": spec(lambda: call(_gibbs().sample, (3,)),
                                           accepts={"sample_shape:empty": "() draws one sample"}),
    "pyro_ebm.DiscreteGibbs": spec(
        lambda: call(E.DiscreteGibbs, _scalar_x, _t(0.0, 1.0, 2.0, 7.0), 1.0, _t(0.5, 1.5), batch_ndims=1,
                     max_candidates=100),
        accepts={"values:int-dtype": "integer candidates are documented as legal",
                 "x:int-dtype": INT_PROMOTED,
                 "x:empty": EMPTY_BATCH, "max_candidates:huge": LIMIT_HUGE, "beta:inf": BETA_INF},
    ),
    "pyro_ebm.DiscreteGibbs.entropy": spec(lambda: call(_discrete().entropy)),
    "pyro_ebm.DiscreteGibbs.enumerate_support": spec(lambda: call(_discrete().enumerate_support, True)),
    "pyro_ebm.DiscreteGibbs.expand": spec(lambda: call(_discrete().expand, (3,)),
                                          accepts={"batch_shape:empty": "() is the distribution's own batch shape"}),
    "pyro_ebm.DiscreteGibbs.index_of": spec(
        lambda: call(_discrete2().index_of, _t([0.0, 1.0], [1.0, 1.0])),
        accepts={"value:nan": "a value that is not a candidate gets index -1, as documented",
                 "value:inf": "a value that is not a candidate gets index -1, as documented",
                 "value:int-dtype": "integer values compare equal to the candidates they match",
                 "value:empty": EMPTY_BATCH},
    ),
    "pyro_ebm.DiscreteGibbs.log_prob": spec(
        lambda: call(_discrete2().log_prob, _t([0.0, 1.0], [1.0, 1.0])),
        accepts={"value:int-dtype": "integer values compare equal to the candidates they match",
                 "value:empty": EMPTY_BATCH},
    ),
    "pyro_ebm.DiscreteGibbs.sample": spec(lambda: call(_discrete().sample, (3,)),
                                          accepts={"sample_shape:empty": "() draws one sample"}),
    "pyro_ebm.DoublyIntractableWarning": Exempt("warning class"),
    "pyro_ebm.energy_factor": spec(
        lambda: call(E.energy_factor, "f", _t(0.0, 1.0, INF), 2.0),
        accepts={"name:unknown-option": "any text is a legal site name",
                 "energy:inf": "+inf is a legal energy (a zero factor); the valid energy holds one",
                 "energy:int-dtype": "integer energies are promoted (documented)",
                 "energy:trailing-dim": "outside plates any shape is a batch shape",
                 "energy:empty": EMPTY_BATCH},
    ),
    "pyro_ebm.product_values": spec(lambda: call(E.product_values, [0.0, 1.0], 2, max_candidates=100),
                                    accepts={"max_candidates:huge": LIMIT_HUGE}),
    # ---------------------------------------------------------------------------------- inference
    "pyro_ebm.ArgminResult": Exempt("result type"),
    "pyro_ebm.ArgminResult.distinct": spec(lambda: call(_argmin_result().distinct, 1e-2)),
    "pyro_ebm.Minima": Exempt("result type"),
    "pyro_ebm.Estimate": Exempt("result type"),
    "pyro_ebm.argmin_energy": spec(
        lambda: call(E.argmin_energy, _quad_x, _y3(), _t(0.5, 0.5), event_shape=(2,), steps=5, lr=0.1, tol=1e-5),
        accepts={"x:int-dtype": INT_PROMOTED},
    ),
    "pyro_ebm.argmin_candidates": spec(
        lambda: call(E.argmin_candidates, _scalar_x, torch.arange(5.0), _t(0.9, 3.2), max_candidates=100),
        accepts={"candidates:int-dtype": "integer candidates are documented as legal",
                 "x:int-dtype": INT_PROMOTED, "x:empty": EMPTY_BATCH,
                 "x:trailing-dim": "x [2, 1] is a batch of shape (2, 1) of scalar conditionings",
                 "max_candidates:huge": LIMIT_HUGE},
    ),
    "pyro_ebm.free_energy": spec(
        lambda: call(E.free_energy, _Lat(), _y3(), _t(-1.0, 1.0, 7.0), _t(0.1, 0.2, 0.3), 2.0),
        accepts={"z_values:int-dtype": "integer latent values are legal", "y:int-dtype": INT_PROMOTED,
                 "x:int-dtype": INT_PROMOTED, "x:trailing-dim": X_BROADCAST, "beta:inf": BETA_INF},
    ),
    "pyro_ebm.latent_posterior": spec(
        lambda: call(E.latent_posterior, _Lat(), _y3(), _t(-1.0, 1.0, 7.0), _t(0.1, 0.2, 0.3), 2.0),
        accepts={"z_values:int-dtype": "integer latent values are legal", "y:int-dtype": INT_PROMOTED,
                 "x:int-dtype": INT_PROMOTED, "x:trailing-dim": X_BROADCAST, "beta:inf": BETA_INF},
    ),
    "pyro_ebm.argmin_latent": spec(
        lambda: call(E.argmin_latent, _Lat(), _y3(), _t(-1.0, 1.0, 7.0), _t(0.1, 0.2, 0.3)),
        accepts={"z_values:int-dtype": "integer latent values are legal", "y:int-dtype": INT_PROMOTED,
                 "x:int-dtype": INT_PROMOTED, "x:trailing-dim": X_BROADCAST},
    ),
    "pyro_ebm.free_energy_min": spec(
        lambda: call(E.free_energy_min, _Lat(), _y3(), _t(-1.0, 1.0), _t(0.1, 0.2, 0.3), steps=5,
                     lr=0.1, tol=1e-5),
        accepts={"y:int-dtype": INT_PROMOTED, "x:int-dtype": INT_PROMOTED,
                 "z_init:trailing-dim": "z_init [R, 1] is R restarts whose batch of 1 broadcasts with y's"},
    ),
    "pyro_ebm.free_energy_importance": spec(
        lambda: call(E.free_energy_importance, _Lat(), _y3(), dist.Normal(0.0, 2.0), 20,
                     _t(0.1, 0.2, 0.3), 2.0, generator=torch.Generator().manual_seed(0)),
        accepts={"y:int-dtype": INT_PROMOTED, "x:int-dtype": INT_PROMOTED},
    ),
    "pyro_ebm.latent_energy_model": spec(
        lambda: call(E.latent_energy_model, _Lat(), _y3(), _t(-1.0, 1.0, 7.0), _t(0.1, 0.2, 0.3), 2.0),
        accepts={"x:int-dtype": INT_PROMOTED, "x:trailing-dim": X_BROADCAST,
                 "z_values:int-dtype": "integer latent values are legal"},
    ),
    # ---------------------------------------------------------------------------------- likelihood
    "pyro_ebm.likelihood.exchange": spec(
        lambda: call(LK.exchange, _bernoulli1, _t(1.0, 0.0, 1.0, 1.0), dist.Normal(0.0, 1.0), num_chains=2,
                     num_warmup=3, num_samples=4, aux="exact", values=_t(0.0, 1.0), aux_kernel="gibbs", aux_steps=2,
                     beta=1.0, init=_t(0.1, -0.1), proposal_scale=0.1, target_accept=0.3, seed=0),
        accepts={"init:int-dtype": "integer init is converted to the data's dtype",
                 "values:int-dtype": "integer candidates are converted to the data's dtype",
                 "seed:huge": "any seed >= 0 is legal"},
    ),
    "pyro_ebm.likelihood.pseudo_likelihood_fit": spec(
        lambda: call(LK.pseudo_likelihood_fit, _bernoulli, _binary(), [0.0, 1.0], torch.zeros(()), beta=1.0,
                     max_iter=5),
    ),
    "pyro_ebm.likelihood.site_conditionals": spec(
        lambda: call(LK.site_conditionals, _binary(), [0.0, 1.0], 1),
        accepts={"y:trailing-dim": "y [4, 3, 1] with event_ndim=1 is a batch (4, 3) of one-site configurations",
                 "y:empty": EMPTY_BATCH},
    ),
    "pyro_ebm.likelihood.fisher_information": spec(
        lambda: call(LK.fisher_information, _bernoulli, torch.tensor(0.5), _binary(), _binary().flip(0), beta=1.0),
        accepts={"samples:int-dtype": "integer samples are converted to the data's dtype"},
    ),
    "pyro_ebm.likelihood.PseudoLikelihoodFit": Exempt("result type"),
    # ---------------------------------------------------------------------------------- partition
    "pyro_ebm.partition.LogPartition": Exempt("result type"),
    "pyro_ebm.partition.Bracket": Exempt("result type"),
    "pyro_ebm.partition.EstimateWarning": Exempt("warning class"),
    "pyro_ebm.partition.log_partition": spec(
        lambda: call(P.log_partition, _wall, 1.0, "quadrature", low=[-6.0, -6.0], high=[6.0, 6.0], num_points=16),
    ),
    "pyro_ebm.partition.ais_bracket": spec(
        lambda: call(P.ais_bracket, _quad, _samples2(), 1.0, num_temperatures=4, seed=0),
    ),
    "pyro_ebm.partition.log_likelihood": spec(
        lambda: call(P.log_likelihood, _Quad(), _y3(), 1.8, 1.0, _t(0.0, 1.0, 2.0)),
        accepts={"log_z:negative": "log Z can be negative", "y:int-dtype": INT_PROMOTED,
                 "x:int-dtype": INT_PROMOTED},
    ),
    "pyro_ebm.partition.NormalizedGibbs": spec(
        lambda: call(P.NormalizedGibbs, _quad_x, 1.8, 1.0, torch.zeros(2), (2,), init=torch.zeros(2), batch_shape=(3,)),
        accepts={"log_z:negative": "log Z can be negative", "x:int-dtype": INT_PROMOTED,
                 "batch_shape:empty": "() is the default batch shape",
                 "event_shape:empty": "with a scalar y, F(y, x) = sum_i (y - x_i)^2 / 2 is a legal energy"},
    ),
    "pyro_ebm.partition.NormalizedGibbs.expand": spec(
        lambda: call(P.NormalizedGibbs(_wall, 1.8, event_shape=(2,)).expand, (3,)),
        accepts={"batch_shape:empty": "() is the distribution's own batch shape"},
    ),
    "pyro_ebm.partition.NormalizedGibbs.log_prob": spec(
        lambda: call(P.NormalizedGibbs(_wall, 1.8, event_shape=(2,)).log_prob, _t([0.0, 0.0], [1.0, 2.0], [9.0, 0.0])),
        accepts={"value:inf": "a point at infinity lies outside the energy's finite region: log_prob -inf, "
                              "like the valid call's third point",
                 "value:empty": EMPTY_BATCH},
    ),
    "pyro_ebm.partition.normalized_distribution": spec(
        lambda: call(P.normalized_distribution, _quad_x, 1.8, 1.0, (2,), x=torch.zeros(2)),
        accepts={"log_z:negative": "log Z can be negative",
                 "event_shape:empty": "with a scalar y, F(y, x) = sum_i (y - x_i)^2 / 2 is a legal energy"},
    ),
    "pyro_ebm.partition.energy_from_model": spec(
        lambda: call(P.energy_from_model, _mixture, "y", max_plate_nesting=1),
        skip={"model": "a Pyro model: its return value is not used, the energy is read off its trace"},
    ),
    # ---------------------------------------------------------------------------------- datasets
    "pyro_ebm.datasets.double_well_energy": spec(lambda: call(D.double_well_energy, _y3(), 1.0, 0.25),
                                                 accepts={"barrier:negative": "a negative barrier is a legal energy "
                                                          "(an inverted well)",
                                                          "tilt:negative": "a negative tilt deepens the other well",
                                                          "y:empty": EMPTY_BATCH,
                                                          "y:inf": "a point at infinity has energy +inf (zero "
                                                          "probability): an HMC proposal that overflowed is "
                                                          "rejected"}),
    "pyro_ebm.datasets.multimodal_regression": spec(lambda: call(D.multimodal_regression, 10, 0.05, 0),
                                                    accepts={"seed:huge": SEED_HUGE}),
    "pyro_ebm.datasets.eight_gaussians": spec(lambda: call(D.eight_gaussians, 10, 2.0, 0.2, 0),
                                              accepts={"seed:huge": SEED_HUGE}),
    "pyro_ebm.datasets.eight_gaussians_log_prob": spec(lambda: call(D.eight_gaussians_log_prob, _y3(), 2.0, 0.2),
                                                       accepts={"y:empty": EMPTY_BATCH}),
    "pyro_ebm.datasets.uneven_gaussians": spec(lambda: call(D.uneven_gaussians, 10, 0), accepts={"seed:huge": SEED_HUGE}),
    "pyro_ebm.datasets.uneven_gaussians_log_prob": spec(lambda: call(D.uneven_gaussians_log_prob, _y3()),
                                                        accepts={"y:empty": EMPTY_BATCH}),
    "pyro_ebm.datasets.two_moons": spec(lambda: call(D.two_moons, 10, 0.1, 0), accepts={"seed:huge": SEED_HUGE}),
    "pyro_ebm.datasets.two_moons_log_prob": spec(lambda: call(D.two_moons_log_prob, _y3(), 0.1, 64),
                                                 accepts={"y:empty": EMPTY_BATCH}),
    "pyro_ebm.datasets.rings": spec(lambda: call(D.rings, 10, (0.8, 1.6), 0.08, 0), accepts={"seed:huge": SEED_HUGE}),
    "pyro_ebm.datasets.rings_log_prob": spec(lambda: call(D.rings_log_prob, _y3(), (0.8, 1.6), 0.08),
                                             accepts={"y:empty": EMPTY_BATCH}),
    "pyro_ebm.datasets.checkerboard": spec(lambda: call(D.checkerboard, 10, 4.0, 4, 0), accepts={"seed:huge": SEED_HUGE}),
    "pyro_ebm.datasets.checkerboard_log_prob": spec(
        lambda: call(D.checkerboard_log_prob, _t([0.5, 0.5], [1.5, 0.5], [9.0, 0.0]), 4.0, 4),
        accepts={"y:empty": EMPTY_BATCH}),
    # ---------------------------------------------------------------------------------- fit_check
    "pyro_ebm.fit_check.mmd_test": spec(
        lambda: call(mmd_test, _randn(12, 2), _randn(10, 2, seed=1), 20, 0, max_points=50, scales=(1.0, 0.5)),
        accepts={"seed:huge": SEED_HUGE},
    ),
    # ---------------------------------------------------------------------------------- diagnostics
    "pyro_ebm.diagnostics.NegativesReport": Exempt("result type"),
    "pyro_ebm.diagnostics.EnergyGap": Exempt("result type"),
    "pyro_ebm.diagnostics.NegativesWarning": Exempt("warning class"),
    "pyro_ebm.diagnostics.to_arviz": spec(
        lambda: call(diag.to_arviz, {"y": _randn(2, 20, 2)}, {"energy": _randn(2, 20, seed=1)}, observed=_randn(5, 2)),
        accepts={"observed:int-dtype": "integer observations are legal data",
                 "observed:trailing-dim": "observed data of any shape are stored as they are",
                 "observed:empty": "an empty data set is stored as it is"},
    ),
    "pyro_ebm.diagnostics.summary": spec(lambda: call(diag.summary, {"y": _randn(2, 20, 2)})),
    "pyro_ebm.diagnostics.check_negatives": spec(
        lambda: call(diag.check_negatives, _draws(), rhat_threshold=1.05, min_ess=10.0, bfmi_threshold=0.3,
                     max_divergence_fraction=0.1, warn=False),
    ),
    "pyro_ebm.diagnostics.energy_gap": spec(
        lambda: call(diag.energy_gap, _randn(10), _randn(2, 20, seed=1) + 1.0),
        accepts={"data_energies:int-dtype": "integer energies are legal numbers",
                 "negative_energies:int-dtype": "integer energies are legal numbers",
                 "data_energies:trailing-dim": "data_energies of any shape are flattened (documented)"},
    ),
    "pyro_ebm.diagnostics.plot_trace": spec(lambda: _plot(diag.plot_trace, _draws(), max_chains=2)),
    "pyro_ebm.diagnostics.plot_rank": spec(lambda: _plot(diag.plot_rank, _draws(), max_chains=2)),
    "pyro_ebm.diagnostics.plot_energy": spec(lambda: _plot(diag.plot_energy, _draws())),
    "pyro_ebm.diagnostics.plot_negatives": spec(
        lambda: _plot(diag.plot_negatives, _randn(10, 2), _randn(2, 5, 2, seed=1), _quad, grid_size=8, margin=0.1,
                      levels=5),
        accepts={"data:int-dtype": "integer points are legal coordinates",
                 "negatives:int-dtype": "integer points are legal coordinates",
                 "data:empty": "no data points: only the negatives are drawn",
                 "negatives:empty": "no negatives: only the data are drawn"},
    ),
    # ---------------------------------------------------------------------------------- cli, demo
    "pyro_ebm.cli.main": spec(lambda: call(cli.main, ["examples"])),
    "pyro_ebm.cli.tour": spec(lambda: call(cli.tour, _TMP, 0, quick=True, plots=False),
                              accepts={"seed:huge": SEED_HUGE}, skip={"out_dir": OUT_DIR}),
    "pyro_ebm.cli.list_examples": spec(lambda: call(cli.list_examples, _EXAMPLES)),
    "pyro_ebm.cli.example_parser": spec(lambda: call(cli.example_parser, "An example."),
                                        accepts={"doc:unknown-option": "any non-empty text is a docstring"}),
    "pyro_ebm.cli.run_example": spec(
        lambda: call(cli.run_example, _run_example_args, cli.example_parser("An example."), ["--seed", "3"]),
        skip={"run": "the example's body, a callback run(args) -> dict, not an energy"},
    ),
    "pyro_ebm.demo.WallMLP": spec(lambda: call(demo.WallMLP, 8)),
    "pyro_ebm.demo.WallMLP.forward": spec(lambda: call(demo.WallMLP(8).forward, _y3()),
                                          accepts={"y:empty": EMPTY_BATCH}),
    "pyro_ebm.demo.run_demo": spec(
        lambda: call(demo.run_demo, _TMP, 0, 1, "cpu", quick=True, progress=False, plots=False),
        accepts={"seed:huge": SEED_HUGE}, skip={"out_dir": OUT_DIR},
    ),
}
