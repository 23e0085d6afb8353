"""Bad input everywhere: every public name of ``pyro_ebm`` and its subpackages, fed plausible bad inputs,
must raise a ``ValueError``/``TypeError`` whose message names the argument (never a torch-internal error, a
hang or a silent NaN).

``CASES`` is a registry keyed by the public qualified name (``"pyro_ebm.losses.hinge"``). Each entry is a
list of :class:`Case` (a call that must fail, and a regex the message must match: the argument's name), or
an :class:`Exempt` with the reason the name takes no user input (a result type, a warning class).
``test_every_public_name_has_cases`` fails when a new public name has no entry, so coverage cannot rot.
Names that are constants (not callable) need no entry.
"""

from __future__ import annotations

import importlib
import math
from typing import Callable, NamedTuple, Tuple

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import constraints

import pyro_ebm
from walker import public_names

NAN, INF = math.nan, math.inf


class Case(NamedTuple):
    call: Callable[[], object]
    match: str  # regex the message must match (names the argument)
    exc: Tuple[type, ...] = (ValueError, TypeError)
    xfail: str = ""  # reason, for a case today's code fails (strict: it must start passing when fixed)


class Exempt(NamedTuple):
    reason: str


SAMPLER_CORE = "sampler core"


def C(call, match, exc=(ValueError, TypeError)):
    return Case(call, match, exc)


def X(call, match, exc=(ValueError, TypeError)):
    """A case today's sampler core fails: xfail(strict=True) until it is fixed there."""
    return Case(call, match, exc, SAMPLER_CORE)


# ---------------------------------------------------------------------------------------------- fixtures


def F2(y):
    return 0.5 * (y**2).sum(-1)


def _e2():
    return pyro_ebm.as_energy(F2, event_shape=(2,))


def _latent():
    return pyro_ebm.as_energy(lambda y, z: (y - z) ** 2, latent_shape=())


class _Bowl(pyro_ebm.Energy):
    def __init__(self):
        super().__init__(event_shape=(2,))
        self.c = torch.nn.Parameter(torch.zeros(2))

    def forward(self, y, x=None):
        return ((y - self.c) ** 2).sum(-1)


def _argmin_result():
    return pyro_ebm.argmin_energy(F2, torch.randn(4, 2), event_shape=(2,), steps=2)


def _normal_model():
    pyro.sample("y", dist.Normal(torch.zeros(2), 1.0).to_event(1))


def _unrun_mcmc():
    from pyro.infer import MCMC, NUTS

    return MCMC(NUTS(_normal_model), num_samples=5, warmup_steps=5, disable_progbar=True)


def _draws():
    return {"y": torch.randn(4, 20, generator=torch.Generator().manual_seed(0))}


def _m():
    import pyro_ebm.mcmc as m

    return m


def _neg():
    import pyro_ebm.negatives as n

    return n


def _ml():
    import pyro_ebm.ml as ml

    return ml


def _part():
    import pyro_ebm.partition as p

    return p


def _demo():
    return importlib.import_module("pyro_ebm.demo")


def _train():
    import pyro_ebm.train as t

    return t


def _ckpt_objects():
    t = _train()
    e = _Bowl()
    return dict(energy=e, optimizer=torch.optim.SGD(e.parameters(), lr=0.1), negatives=None,
                order=t.DataOrder(4, 2, seed=0), history=t.History())


L = importlib.import_module("pyro_ebm.losses")
CLI = importlib.import_module("pyro_ebm.cli")
D = importlib.import_module("pyro_ebm.datasets")
G = importlib.import_module("pyro_ebm.diagnostics")
P, N1 = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0])
E3, T = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 2.0]]), torch.tensor([0, 1])


def _pairwise(fn, extra=None, neg="neg"):
    """Cases shared by every pairwise loss (pos, neg)."""
    cases = [
        C(lambda: fn(P, N1, reduction="avg"), "reduction"),
        C(lambda: fn(torch.tensor([0, 1]), N1), "pos"),
        C(lambda: fn(P, [1.0, 2.0]), neg),
        C(lambda: fn(P, torch.ones(3)), neg),
    ]
    return cases + (extra or [])


def _set_loss(fn, beta=True):
    cases = [
        C(lambda: fn(E3, T, reduction="avg"), "reduction"),
        C(lambda: fn(E3, T.float()), "target"),
        C(lambda: fn(E3, torch.tensor([0, 3])), "target"),
        C(lambda: fn(torch.tensor([[0.0, NAN, 1.0]]), torch.tensor([0])), "energies"),
        C(lambda: fn(torch.tensor([[INF, INF]]), torch.tensor([0])), r"row \(0,\)"),
    ]
    if beta:
        cases += [C(lambda: fn(E3, T, beta=NAN), "beta"), C(lambda: fn(E3, T, beta=torch.ones(3)), "beta")]
    return cases


def _dataset(fn, **bad_scale):
    cases = [C(lambda: fn(0), r"\bn\b"), C(lambda: fn(10, seed=1.5), "seed"), C(lambda: fn(2.5), r"\bn\b")]
    for k, v in bad_scale.items():
        cases.append(C(lambda k=k, v=v: fn(10, **{k: v}), k))
    return cases


# ---------------------------------------------------------------------------------------------- registry

CASES = {
    # ------------------------------------------------------------------ energy
    "pyro_ebm.Energy": [C(lambda: pyro_ebm.Energy(event_shape=(-1,)), "event_shape"),
                        C(lambda: pyro_ebm.Energy(event_shape="ab"), "event_shape")],
    "pyro_ebm.LatentEnergy": [C(lambda: pyro_ebm.LatentEnergy(latent_shape=(-2,)), "latent_shape")],
    "pyro_ebm.as_energy": [C(lambda: pyro_ebm.as_energy(3), "fn"),
                           C(lambda: pyro_ebm.as_energy(F2, event_shape=(2.5,)), "event_shape"),
                           C(lambda: pyro_ebm.as_energy(_e2(), event_shape=(3,)), "event_shape")],
    "pyro_ebm.energy.check_energy_output": [
        C(lambda: pyro_ebm.energy.check_energy_output(3.0, (2,)), "energy"),
        C(lambda: pyro_ebm.energy.check_energy_output(torch.zeros(2, 1), (2,)), "energy"),
        C(lambda: pyro_ebm.energy.check_energy_output(torch.tensor([0.0, NAN]), (2,)), "energy"),
    ],
    "pyro_ebm.energy.batch_shape_of": [
        C(lambda: pyro_ebm.energy.batch_shape_of([1.0], (1,)), r"\by\b"),
        C(lambda: pyro_ebm.energy.batch_shape_of(torch.zeros(3, 2), (3,)), r"\by\b"),
    ],
    # ------------------------------------------------------------------ gibbs
    "pyro_ebm.GibbsBoltzmann": [
        C(lambda: pyro_ebm.GibbsBoltzmann(F2, beta=NAN, event_shape=(2,)), "beta"),
        C(lambda: pyro_ebm.GibbsBoltzmann(F2, beta=torch.ones(3), event_shape=(2,), batch_shape=(4,)), "beta"),
        C(lambda: pyro_ebm.GibbsBoltzmann(F2, event_shape=(2,), support="real"), "support"),
        C(lambda: pyro_ebm.GibbsBoltzmann(F2, event_shape=(2,), init="zero"), "init"),
        C(lambda: pyro_ebm.GibbsBoltzmann(F2, event_shape=(2,)).log_prob(torch.zeros(3, 2, dtype=torch.long)),
          "value"),
        C(lambda: pyro_ebm.GibbsBoltzmann(F2, event_shape=(2,)).log_prob(torch.zeros(3)), "value"),
        C(lambda: pyro_ebm.GibbsBoltzmann(F2, event_shape=(2,), constant_log_z=1), "constant_log_z"),
    ],
    "pyro_ebm.DiscreteGibbs": [
        C(lambda: pyro_ebm.DiscreteGibbs(lambda y: y, [0.0, 1.0]), "values"),
        C(lambda: pyro_ebm.DiscreteGibbs(lambda y: y, torch.zeros(0)), "values"),
        C(lambda: pyro_ebm.DiscreteGibbs(lambda y: y, torch.arange(3.0), beta=-1.0), "beta"),
        C(lambda: pyro_ebm.DiscreteGibbs(lambda y, x: y + x, torch.arange(3.0), beta=torch.ones(2),
                                         x=torch.zeros(3), batch_ndims=1), "beta"),
        C(lambda: pyro_ebm.DiscreteGibbs(lambda y, x: y + x, torch.arange(3.0), x=torch.zeros(3), batch_ndims=1.5),
          "batch_ndims"),
        C(lambda: pyro_ebm.DiscreteGibbs(lambda y: y * INF + 1.0, torch.arange(1.0, 3.0)), "row"),
        C(lambda: pyro_ebm.DiscreteGibbs(lambda y: y, torch.arange(11.0), max_candidates=10), "max_candidates"),
    ],
    "pyro_ebm.energy_factor": [
        C(lambda: pyro_ebm.energy_factor(3, torch.zeros(())), "name"),
        C(lambda: pyro_ebm.energy_factor("f", 1.0), "energy"),
        C(lambda: pyro_ebm.energy_factor("f", torch.zeros(()), beta=0.0), "beta"),
        C(lambda: pyro_ebm.energy_factor("f", torch.zeros(3), beta=torch.ones(2)), "beta"),
        C(lambda: pyro_ebm.energy_factor("f", torch.zeros(()), constant_log_z="yes"), "constant_log_z"),
    ],
    "pyro_ebm.product_values": [C(lambda: pyro_ebm.product_values([0.0, 1.0], 0), r"\bn\b"),
                                C(lambda: pyro_ebm.product_values([], 2), "choices"),
                                C(lambda: pyro_ebm.product_values([0.0, 1.0], 40), "max_candidates")],
    # ------------------------------------------------------------------ inference
    "pyro_ebm.argmin_energy": [
        C(lambda: pyro_ebm.argmin_energy(F2, torch.zeros(4, 2), event_shape=(2,), steps=0), "steps"),
        C(lambda: pyro_ebm.argmin_energy(F2, torch.zeros(4, 2), event_shape=(2,), lr=NAN), r"\blr\b"),
        C(lambda: pyro_ebm.argmin_energy(F2, torch.zeros(4, 2), event_shape=(2,), tol=NAN), "tol"),
        C(lambda: pyro_ebm.argmin_energy(F2, torch.zeros(4, 2, dtype=torch.long), event_shape=(2,)), "y_init"),
        C(lambda: pyro_ebm.argmin_energy(F2, torch.full((4, 2), NAN), event_shape=(2,)), "y_init"),
    ],
    "pyro_ebm.argmin_candidates": [
        C(lambda: pyro_ebm.argmin_candidates(lambda y: y, [0.0, 1.0]), "candidates"),
        C(lambda: pyro_ebm.argmin_candidates(lambda y: y, torch.arange(3.0), batch_ndims=-1), "batch_ndims"),
    ],
    "pyro_ebm.free_energy": [
        C(lambda: pyro_ebm.free_energy(_latent(), torch.zeros(2), torch.tensor([0.0, 1.0]), beta=0.0), "beta"),
        C(lambda: pyro_ebm.free_energy(_latent(), torch.zeros(2), torch.zeros(2, 3)), "z_values"),
        C(lambda: pyro_ebm.free_energy(_e2(), torch.zeros(2, 2), torch.zeros(2)), "energy"),
        C(lambda: pyro_ebm.free_energy(_latent(), torch.zeros(3), torch.zeros(2), beta=torch.ones(2)), "beta"),
    ],
    "pyro_ebm.latent_posterior": [
        C(lambda: pyro_ebm.latent_posterior(_latent(), torch.zeros(2), [0.0, 1.0]), "z_values"),
        C(lambda: pyro_ebm.latent_posterior(_latent(), [0.0], torch.zeros(2)), r"\by\b"),
    ],
    "pyro_ebm.argmin_latent": [C(lambda: pyro_ebm.argmin_latent(_latent(), torch.zeros(2), torch.zeros(0)),
                                 "z_values")],
    "pyro_ebm.free_energy_min": [
        C(lambda: pyro_ebm.free_energy_min(_latent(), torch.zeros(2), torch.zeros(())), "z_init"),
        C(lambda: pyro_ebm.free_energy_min(_latent(), torch.zeros(2), torch.zeros(3), steps=-1), "steps"),
    ],
    "pyro_ebm.free_energy_importance": [
        C(lambda: pyro_ebm.free_energy_importance(_latent(), torch.zeros(2), dist.Normal(0.0, 1.0), 1),
          "num_samples"),
        C(lambda: pyro_ebm.free_energy_importance(_latent(), torch.zeros(2), "normal", 10), "proposal"),
        C(lambda: pyro_ebm.free_energy_importance(_latent(), torch.zeros(2), dist.Normal(0.0, 1.0), 10,
                                                  beta=INF), "beta"),
    ],
    "pyro_ebm.latent_energy_model": [
        C(lambda: pyro_ebm.latent_energy_model(_latent(), torch.zeros(0), torch.zeros(2)), r"\by\b"),
        C(lambda: pyro_ebm.latent_energy_model(_latent(), torch.zeros(2), torch.zeros(2), beta=NAN), "beta"),
        C(lambda: pyro_ebm.latent_energy_model(_latent(), torch.zeros(2), torch.zeros(2, dtype=torch.float64)),
          "z_values"),
    ],
    "pyro_ebm.ArgminResult": [C(lambda: _argmin_result().distinct(tol=NAN), "tol"),
                              C(lambda: _argmin_result().distinct(tol=-1.0), "tol")],
    "pyro_ebm.Minima": Exempt("result type, built by ArgminResult.distinct"),
    "pyro_ebm.Estimate": Exempt("result type, built by free_energy_importance"),
    # ------------------------------------------------------------------ datasets
    "pyro_ebm.datasets.double_well_energy": [
        C(lambda: D.double_well_energy([1.0, 0.0]), r"\by\b"),
        C(lambda: D.double_well_energy(torch.zeros(3)), r"\by\b"),
        C(lambda: D.double_well_energy(torch.zeros(3, 2), barrier=NAN), "barrier"),
    ],
    "pyro_ebm.datasets.multimodal_regression": _dataset(D.multimodal_regression, noise=NAN),
    "pyro_ebm.datasets.eight_gaussians": _dataset(D.eight_gaussians, std=NAN, radius=-1.0),
    "pyro_ebm.datasets.eight_gaussians_log_prob": [
        C(lambda: D.eight_gaussians_log_prob(torch.zeros(3, 2), std=0.0), "std"),
        C(lambda: D.eight_gaussians_log_prob(torch.zeros(3, 3)), r"\by\b"),
    ],
    "pyro_ebm.datasets.two_moons": _dataset(D.two_moons, noise=-0.1),
    "pyro_ebm.datasets.uneven_gaussians": [C(lambda: D.uneven_gaussians(0), r"\bn\b"),
                                           C(lambda: D.uneven_gaussians(5, seed=1.5), "seed")],
    "pyro_ebm.datasets.uneven_gaussians_log_prob": [C(lambda: D.uneven_gaussians_log_prob(torch.zeros(3, 3)), r"\by\b")],
    "pyro_ebm.datasets.two_moons_log_prob": [C(lambda: D.two_moons_log_prob(torch.zeros(3, 2), noise=0.0), "noise"),
                                             C(lambda: D.two_moons_log_prob(torch.zeros(3, 2), num_points=0), "num_points"),
                                             C(lambda: D.two_moons_log_prob([[0.0, 0.0]]), r"\by\b")],
    "pyro_ebm.datasets.rings_log_prob": [C(lambda: D.rings_log_prob(torch.zeros(3, 2), noise=NAN), "noise"),
                                         C(lambda: D.rings_log_prob(torch.zeros(3, 1)), r"\by\b")],
    "pyro_ebm.datasets.checkerboard_log_prob": [C(lambda: D.checkerboard_log_prob(torch.zeros(3, 2), cells=1), "cells"),
                                                C(lambda: D.checkerboard_log_prob(torch.zeros(3, 2), size=-1.0), "size")],
    "pyro_ebm.datasets.rings": _dataset(D.rings, noise=NAN, radii=()),
    "pyro_ebm.datasets.checkerboard": _dataset(D.checkerboard, cells=2.5, size=NAN)
    + [C(lambda: D.checkerboard(10, cells=0), "cells")],
    # ------------------------------------------------------------------ diagnostics
    "pyro_ebm.diagnostics.to_arviz": [
        C(lambda: G.to_arviz(np.zeros((2, 3))), "source"),
        C(lambda: G.to_arviz({"y": np.zeros(3)}), "source"),
        C(lambda: G.to_arviz({"y": np.full((2, 5), NAN)}), "source"),
        C(lambda: G.to_arviz(_draws(), {"energy": np.zeros((3, 20))}), "sample_stats"),
        C(lambda: G.to_arviz(_draws(), log_likelihood={"y": np.zeros((4, 19))}), "log_likelihood"),
        C(lambda: G.to_arviz(_draws(), log_likelihood="yes"), "log_likelihood"),
        C(lambda: G.to_arviz(_unrun_mcmc()), "source"),
    ],
    "pyro_ebm.diagnostics.summary": [C(lambda: G.summary(3), "source")],
    "pyro_ebm.diagnostics.check_negatives": [
        C(lambda: G.check_negatives(_draws(), rhat_threshold=NAN), "rhat_threshold"),
        C(lambda: G.check_negatives(_draws(), min_ess=NAN), "min_ess"),
        C(lambda: G.check_negatives(_draws(), max_divergence_fraction=2.0), "max_divergence_fraction"),
        C(lambda: G.check_negatives(_draws(), bfmi_threshold=-1.0), "bfmi_threshold"),
        C(lambda: G.check_negatives(_draws(), var_names=["z"]), "var_names"),
        C(lambda: G.check_negatives({"y": np.zeros((4, 2))}), "samples"),
    ],
    "pyro_ebm.diagnostics.energy_gap": [
        C(lambda: G.energy_gap(np.zeros(1), np.zeros(5)), "data_energies"),
        C(lambda: G.energy_gap(np.zeros(5), np.zeros((2, 2, 2))), "negative_energies"),
        C(lambda: G.energy_gap(np.array([0.0, NAN]), np.zeros(5)), "data_energies"),
    ],
    "pyro_ebm.diagnostics.plot_trace": [C(lambda: G.plot_trace(_draws(), max_chains=0), "max_chains"),
                                        C(lambda: G.plot_trace(np.zeros((2, 3))), "source")],
    "pyro_ebm.diagnostics.plot_rank": [C(lambda: G.plot_rank(_draws(), max_chains=2.5), "max_chains")],
    "pyro_ebm.diagnostics.plot_energy": [C(lambda: G.plot_energy(_draws()), "energy")],
    "pyro_ebm.diagnostics.plot_negatives": [
        C(lambda: G.plot_negatives(np.zeros((5, 3)), np.zeros((5, 2))), "data"),
        C(lambda: G.plot_negatives(np.zeros((5, 2)), np.zeros((5, 3))), "negatives"),
        C(lambda: G.plot_negatives(np.zeros((5, 2)), np.zeros((5, 2)), energy=3), "energy"),
    ],
    "pyro_ebm.diagnostics.NegativesWarning": Exempt("warning class, raised by check_negatives"),
    "pyro_ebm.diagnostics.NegativesReport": Exempt("result type, built by check_negatives"),
    "pyro_ebm.diagnostics.EnergyGap": Exempt("result type, built by energy_gap"),
    # ------------------------------------------------------------------ losses
    "pyro_ebm.losses.energy_loss": [C(lambda: L.energy_loss(torch.tensor([1, 2])), "pos"),
                                    C(lambda: L.energy_loss(P, reduction=None), "reduction")],
    "pyro_ebm.losses.perceptron": _pairwise(L.perceptron, neg="energies"),
    "pyro_ebm.losses.hinge": _pairwise(L.hinge, [C(lambda: L.hinge(P, N1, margin=NAN), "margin"),
                                                 C(lambda: L.hinge(P, N1, margin=-1.0), "margin"),
                                                 C(lambda: L.hinge(P, N1, margin=torch.ones(3)), "margin")]),
    "pyro_ebm.losses.log_loss": _pairwise(L.log_loss),
    "pyro_ebm.losses.lvq2": _pairwise(L.lvq2, [C(lambda: L.lvq2(P, N1, cap=0.0), "cap")]),
    "pyro_ebm.losses.mce": _pairwise(L.mce),
    "pyro_ebm.losses.square_square": _pairwise(L.square_square, [C(lambda: L.square_square(P, N1, NAN), "margin")]),
    "pyro_ebm.losses.square_exp": _pairwise(L.square_exp, [C(lambda: L.square_exp(P, N1, beta=0.0), "beta")]),
    "pyro_ebm.losses.simple": _pairwise(L.simple, [C(lambda: L.simple(P, N1, margin="1"), "margin")]),
    "pyro_ebm.losses.min_hinge": _pairwise(L.min_hinge, [C(lambda: L.min_hinge(P, N1, INF), "margin")]),
    "pyro_ebm.losses.square_hinge": _pairwise(L.square_hinge),
    "pyro_ebm.losses.nll": _set_loss(L.nll),
    "pyro_ebm.losses.mee": _set_loss(L.mee),
    "pyro_ebm.losses.general_margin": _set_loss(L.general_margin, beta=False)
    + [C(lambda: L.general_margin(E3, T, margin=torch.ones(2, 2)), "margin")],
    "pyro_ebm.losses.info_nce": _pairwise(L.info_nce, [C(lambda: L.info_nce(P, N1, beta=NAN), "beta"),
                                                       C(lambda: L.info_nce(P, N1, beta=torch.ones(3)), "beta")]),
    "pyro_ebm.losses.nce": [
        C(lambda: L.nce(P, N1, -P, -N1, log_partition=NAN), "log_partition"),
        C(lambda: L.nce(P, N1, -P, torch.zeros(3), reduction="mean"), "log_noise_neg"),
        C(lambda: L.nce(P, N1, torch.zeros(3), -N1), "log_noise_pos"),
    ],
    "pyro_ebm.losses.nca": [
        C(lambda: L.nca(E3, T), "same"),
        C(lambda: L.nca(E3, torch.zeros(2, 3, dtype=torch.bool)), "same"),
        C(lambda: L.nca(E3, torch.ones(2, 3, dtype=torch.bool), beta=-1.0), "beta"),
        C(lambda: L.nca(E3, torch.ones(2, 3, dtype=torch.bool), beta=torch.ones(3)), "beta"),
    ],
    "pyro_ebm.losses.ml_sampled": _pairwise(L.ml_sampled),
    # ------------------------------------------------------------------ train
    "pyro_ebm.train.fit": [
        C(lambda: _train().fit(_Bowl(), torch.zeros(0, 2), L.log_loss, None, steps=1, progress=False), "data"),
        C(lambda: _train().fit(_Bowl(), torch.zeros(4, 2), L.log_loss, None, steps=-1, progress=False), "steps"),
        C(lambda: _train().fit(_Bowl(), torch.zeros(4, 2), L.log_loss, None, steps=1, batch_size=8,
                               progress=False), "batch_size"),
        C(lambda: _train().fit(_Bowl(), torch.zeros(4, 2), L.log_loss, None, steps=1, batch_size=2,
                               checkpoint="/nonexistent/dir/c.pt", progress=False), "checkpoint"),
        C(lambda: _train().fit(_Bowl(), torch.zeros(4, 2), 3, None, steps=1, progress=False), "loss"),
        C(lambda: _train().fit(_Bowl(), torch.zeros(4, 2), L.log_loss, None, x=torch.zeros(3, 1), steps=1,
                               progress=False), r"\bx\b"),
    ],
    "pyro_ebm.train.History": [C(lambda: _train().History(records=3), "records"),
                               C(lambda: _train().History()["loss"], "loss", exc=(KeyError,))],
    "pyro_ebm.train.set_loss": [C(lambda: _train().set_loss(3), "fn"),
                                C(lambda: _train().set_loss(L.nll, beta=0.0), "beta"),
                                C(lambda: _train().set_loss(L.nll)(P, N1), "neg")],
    "pyro_ebm.train.EnergyL2": [C(lambda: _train().EnergyL2(alpha=-1.0), "alpha"),
                                C(lambda: _train().EnergyL2(alpha=NAN), "alpha")],
    "pyro_ebm.train.GradientPenalty": [C(lambda: _train().GradientPenalty(weight=NAN), "weight")],
    "pyro_ebm.train.spectral_norm": [C(lambda: _train().spectral_norm(3), "module"),
                                     C(lambda: _train().spectral_norm(torch.nn.Linear(2, 2), n_power_iterations=0),
                                       "n_power_iterations")],
    "pyro_ebm.train.DataOrder": [C(lambda: _train().DataOrder(0, 1), r"\bn\b"),
                                 C(lambda: _train().DataOrder(4, 8), "batch_size"),
                                 C(lambda: _train().DataOrder(4, 2, seed=1.5), "seed")],
    "pyro_ebm.train.save_checkpoint": [
        C(lambda: _train().save_checkpoint("/nonexistent/dir/c.pt", step=0, **_ckpt_objects()), "path"),
    ],
    "pyro_ebm.train.load_checkpoint": [
        C(lambda: _train().load_checkpoint("/nonexistent/c.pt", **_ckpt_objects()), "c.pt",
          exc=(FileNotFoundError,)),
        C(lambda: _train().load_checkpoint(__file__, **_ckpt_objects()), "test_bad_inputs.py"),
    ],
    # ------------------------------------------------------------------ cli
    "pyro_ebm.cli.main": [C(lambda: CLI.main(["no-such-command"]), "", exc=(SystemExit,))],
    "pyro_ebm.cli.tour": [C(lambda: CLI.tour(seed=1.5, plots=False), "seed"),
                          C(lambda: CLI.tour(out_dir=3, plots=False), "out_dir")],
    "pyro_ebm.cli.list_examples": [C(lambda: CLI.list_examples("/nonexistent/examples"), "folder")],
    "pyro_ebm.demo.run_demo": [C(lambda: _demo().run_demo(seed=1.5), "seed"),
                               C(lambda: _demo().run_demo(out_dir=3), "out_dir"),
                               C(lambda: _demo().run_demo(steps=0), "steps"),
                               C(lambda: _demo().run_demo(device="tpu"), "device")],
    "pyro_ebm.demo.WallMLP": [C(lambda: _demo().WallMLP(width=0), "width"),
                              C(lambda: _demo().WallMLP(width=2.5), "width")],
    "pyro_ebm.cli.example_parser": [C(lambda: CLI.example_parser(3), "doc"),
                                    C(lambda: CLI.example_parser(""), "doc")],
    "pyro_ebm.cli.run_example": [C(lambda: CLI.run_example(3, CLI.example_parser("x"), []), "run"),
                                 C(lambda: CLI.run_example(print, "parser", []), "parser")],
    # ------------------------------------------------------------------ mcmc (sampler core)
    "pyro_ebm.mcmc.sample": [
        C(lambda: _m().sample(F2, torch.zeros(4, 2), 5, 0, progress=False), "num_samples"),
        C(lambda: _m().sample(F2, torch.zeros(4, 2), 5, 5, kernel="gibbs-nuts", progress=False), "kernel"),
        C(lambda: _m().sample(F2, torch.zeros(4, 2), 5, 5, beta=NAN, progress=False), "beta"),
        C(lambda: _m().sample(F2, torch.full((4, 2), NAN), 5, 5, progress=False), "init"),
        # float64 points for a module with float32 parameters: named, not torch's "mat1 and mat2"
        C(lambda: _m().sample(torch.nn.Linear(2, 1), torch.zeros(4, 2, dtype=torch.float64), 5, 5,
                              progress=False), "init of dtype torch.float64"),
        C(lambda: _m().sample(F2, torch.zeros(4, 2), 5, 5, kernel="mala", step_size=NAN, progress=False),
          "step_size"),
        C(lambda: _m().sample(F2, torch.zeros(4, 2), 5, 5, kernel="ula", step_size=INF, progress=False),
          "step_size"),
        C(lambda: _m().sample(F2, torch.zeros(4, 2), 5, 5, kernel="hmc", max_delta_energy=NAN, progress=False),
          "max_delta_energy"),
        C(lambda: _m().sample(F2, torch.zeros(4, 2), 5, 5, chees_lr=-1.0, progress=False), "chees_lr"),
        C(lambda: _m().sample(F2, torch.zeros(4, 2), 5, 5, kernel="ula", noise=NAN, progress=False), "noise"),
        C(lambda: _m().sample(F2, torch.zeros(4, 2), 5, 5, step_size=INF, progress=False), "step_size"),
    ],
    "pyro_ebm.mcmc.Samples": Exempt("result type, built by sample"),
    "pyro_ebm.mcmc.DataProposal": [C(lambda: _m().DataProposal(torch.tensor([[0.0, NAN], [1.0, 1.0]])), "data"),
                                   C(lambda: _m().DataProposal(torch.randn(9, 2), bandwidth=-1.0), "bandwidth")],
    "pyro_ebm.mcmc.independence_jump": [C(lambda: _m().independence_jump(
        lambda v: v.sum(-1), torch.zeros(3, 2), torch.zeros(3), _m().DataProposal(torch.randn(9, 2)), "1",
        torch.Generator()), "beta")],
    "pyro_ebm.mcmc.PersistentChains": [
        C(lambda: _m().PersistentChains(F2, 0, event_shape=(2,)), "buffer_size"),
        C(lambda: _m().PersistentChains(F2, 16, event_shape=(2,), reinit_prob=1.5), "reinit_prob"),
        C(lambda: _m().PersistentChains(F2, 16, event_shape=(2,), noise_scale=NAN).sample(16, 5), "noise_scale"),
        C(lambda: _m().PersistentChains(F2, 16, init=torch.full((16, 2), NAN)), "init"),
        C(lambda: _m().PersistentChains(F2, 16, event_shape=(2,), compile=True), "compile"),
        C(lambda: _m().PersistentChains(F2, 16, event_shape=(2,), kernel="hmc", compile="yes"), "compile"),
    ],
    "pyro_ebm.mcmc.RecordingNUTS": [C(lambda: _m().RecordingNUTS(_normal_model, step_size=NAN), "step_size")],
    "pyro_ebm.mcmc.RecordingHMC": [C(lambda: _m().RecordingHMC(_normal_model, step_size=-1.0), "step_size")],
    "pyro_ebm.mcmc.from_pyro_mcmc": [C(lambda: _m().from_pyro_mcmc(3), "mcmc"),
                                     C(lambda: _m().from_pyro_mcmc(_unrun_mcmc()), "mcmc")],
    "pyro_ebm.mcmc.TuningWarning": Exempt("warning class"),
    "pyro_ebm.mcmc.CompileWarning": Exempt("warning class"),
    "pyro_ebm.mcmc.make_generator": [C(lambda: _m().make_generator(1.5, "cpu"), "seed"),
                                     C(lambda: _m().make_generator("a", "cpu"), "seed")],
    # ------------------------------------------------------------------ ml (sampler core)
    "pyro_ebm.ml.SamplerDiagnostics": [
        C(lambda: _ml().SamplerDiagnostics(_Bowl(), None, every=0), "every"),
        C(lambda: _ml().SamplerDiagnostics(_Bowl(), None, num_chains=0), "num_chains"),
    ],
    "pyro_ebm.ml.PyroNUTSNegatives": [C(lambda: _ml().PyroNUTSNegatives(n_neg=0), "n_neg"),
                                      C(lambda: _ml().PyroNUTSNegatives(beta=NAN), "beta"),
                                      C(lambda: _ml().PyroNUTSNegatives(init_scale=NAN), "init_scale")],
    "pyro_ebm.ml.make_negatives": [C(lambda: _ml().make_negatives("magic"), "sampler")],
    "pyro_ebm.ml.ml_fit": [C(lambda: _ml().ml_fit(_Bowl(), torch.zeros(0, 2), steps=1, progress=False), "data"),
                           C(lambda: _ml().ml_fit(_Bowl(), torch.zeros(8, 2), sampler=3, steps=1, progress=False),
                             "sampler")],
    "pyro_ebm.ml.MLRun": Exempt("result type, built by ml_fit"),
    "pyro_ebm.ml.FitCheck": Exempt("result type, built by check_fit"),
    "pyro_ebm.ml.FitWarning": Exempt("a warning category"),
    "pyro_ebm.ml.check_fit": [C(lambda: _ml().check_fit(_e2(), torch.zeros(30, 3)), "heldout"),
                              C(lambda: _ml().check_fit(_e2(), torch.randn(30, 2), alpha=1.5), "alpha")],
    "pyro_ebm.fit_check.mmd_test": [C(lambda: __import__("pyro_ebm.fit_check").fit_check.mmd_test(
                                        torch.zeros(5, 2), torch.zeros(5, 3)), r"\by\b|\bx\b"),
                                    C(lambda: __import__("pyro_ebm.fit_check").fit_check.mmd_test(
                                        torch.randn(5, 2), torch.randn(5, 2), num_permutations=0),
                                      "num_permutations")],
    # ------------------------------------------------------------------ negatives (sampler core)
    "pyro_ebm.negatives.Negatives": [C(lambda: _neg().Negatives(seed=1.5), "seed")],
    "pyro_ebm.negatives.negative_energies": [
        C(lambda: _neg().negative_energies(_e2(), [[0.0, 0.0]]), "y_hat"),
        C(lambda: _neg().negative_energies(_e2(), torch.zeros(3, 4, 3)), "y_hat"),
    ],
    "pyro_ebm.negatives.Exhaustive": [C(lambda: _neg().Exhaustive([0.0, 1.0]), "candidates"),
                                      C(lambda: _neg().Exhaustive(torch.zeros(0, 2)), "candidates")],
    "pyro_ebm.negatives.MCMCNegatives": [C(lambda: _neg().MCMCNegatives(n_neg=0), "n_neg"),
                                         C(lambda: _neg().MCMCNegatives(kernel="magic"), "kernel"),
                                         C(lambda: _neg().MCMCNegatives(init_scale=-1.0), "init_scale")],
    "pyro_ebm.negatives.ContrastiveDivergence": [
        C(lambda: _neg().ContrastiveDivergence(k=-1), r"\bk\b"),  # k=0 is CD-0: the data themselves
        C(lambda: _neg().ContrastiveDivergence(step_size=NAN), "step_size"),
        C(lambda: _neg().ContrastiveDivergence(noise=NAN), "noise"),
    ],
    "pyro_ebm.negatives.PersistentNegatives": [
        C(lambda: _neg().PersistentNegatives(buffer_size=0), "buffer_size"),
        C(lambda: _neg().PersistentNegatives(step_size=INF), "step_size"),
        C(lambda: _neg().PersistentNegatives(noise_scale=NAN), "noise_scale"),
    ],
    "pyro_ebm.negatives.MostOffending": [C(lambda: _neg().MostOffending(radius=-1.0), "radius"),
                                         C(lambda: _neg().MostOffending(k=0), r"\bk\b"),
                                         C(lambda: _neg().MostOffending(lr=NAN), r"\blr\b")],
    "pyro_ebm.negatives.Corruption": [C(lambda: _neg().Corruption(sigma=NAN), "sigma"),
                                      C(lambda: _neg().Corruption(sigma=0.1, n_neg=0), "n_neg")],
    "pyro_ebm.negatives.LearnedGenerator": [C(lambda: _neg().LearnedGenerator(3, (2,)), "generator"),
                                            C(lambda: _neg().LearnedGenerator(torch.nn.Linear(2, 2), (2,), lr=NAN),
                                              r"\blr\b")],
    # ------------------------------------------------------------------ partition (sampler core)
    "pyro_ebm.partition.LogPartition": Exempt("result type, built by log_partition"),
    "pyro_ebm.partition.EstimateWarning": Exempt("warning class"),
    "pyro_ebm.partition.Bracket": Exempt("result type, built by ais_bracket"),
    "pyro_ebm.partition.log_partition": [
        C(lambda: _part().log_partition(_e2(), method="magic"), "method"),
        C(lambda: _part().log_partition(_e2(), beta=NAN), "beta"),
        C(lambda: _part().log_partition(_e2(), ess_fraction=1.5), "ess_fraction"),
        C(lambda: _part().log_partition(_e2(), num_replicas=1), "num_replicas"),
        C(lambda: _part().log_partition(_e2(), method="quadrature", low=[-1, -1], high=[1, 1], dtype="x"), "dtype"),
    ],
    "pyro_ebm.partition.ais_bracket": [C(lambda: _part().ais_bracket(_e2(), [[0.0, 0.0]]), "samples")],
    "pyro_ebm.partition.log_likelihood": [
        C(lambda: _part().log_likelihood(_e2(), torch.zeros(3, 2), NAN), "log_z"),
        C(lambda: _part().log_likelihood(_e2(), torch.zeros(3, 3), 0.0), r"\by\b"),
    ],
    "pyro_ebm.partition.NormalizedGibbs": [C(lambda: _part().NormalizedGibbs(_e2(), "zero"), "log_z")],
    "pyro_ebm.partition.normalized_distribution": [
        C(lambda: _part().normalized_distribution(_e2(), 0.0, beta=0.0), "beta"),
    ],
    "pyro_ebm.partition.energy_from_model": [C(lambda: _part().energy_from_model(3), "model"),
                                             C(lambda: _part().energy_from_model(_normal_model, site=3), "site")],
    "pyro_ebm.losses.score_matching": [
        C(lambda: L.score_matching(F2, torch.zeros(3, 2), reduction="avg"), "reduction"),
        C(lambda: L.score_matching(F2, torch.zeros(3, 2, dtype=torch.long)), r"\by\b"),
        C(lambda: L.score_matching(F2, torch.tensor([[NAN, 0.0]])), r"\by\b"),
        C(lambda: L.score_matching(_e2(), torch.zeros(3, 3)), r"\by\b"),
    ],
    "pyro_ebm.losses.sliced_score_matching": [
        C(lambda: L.sliced_score_matching(F2, torch.zeros(3, 2), 0), "num_projections"),
        C(lambda: L.sliced_score_matching(F2, torch.zeros(3, 2), projection="sphere"), "projection"),
        C(lambda: L.sliced_score_matching(F2, torch.zeros(3, 2), seed=1.5), "seed"),
    ],
    "pyro_ebm.losses.denoising_score_matching": [
        C(lambda: L.denoising_score_matching(F2, torch.zeros(3, 2), 0.0), "sigma"),
        C(lambda: L.denoising_score_matching(F2, torch.zeros(3, 2), NAN), "sigma"),
        C(lambda: L.denoising_score_matching(F2, torch.zeros(3, 2), 0.1, noise=torch.zeros(3)), "noise"),
        C(lambda: L.denoising_score_matching(F2, torch.zeros(3, 2), 0.1, noise=torch.full((3, 2), NAN)), "noise"),
    ],
    # ------------------------------------------------------------------ structured
    "pyro_ebm.structured.chain_free_energy": [
        C(lambda: _st().chain_free_energy(_U(), _P(), beta=0.0), "beta"),
        C(lambda: _st().chain_free_energy(torch.full((2, 3, 4), NAN), _P()), "unary"),
    ],
    "pyro_ebm.structured.chain_energy": [
        C(lambda: _st().chain_energy(torch.zeros(2, 3, dtype=torch.long), _U(), torch.zeros(4, 5)), "pairwise")],
    "pyro_ebm.structured.viterbi": [C(lambda: _st().viterbi(_U(), torch.zeros(3, 3)), "pairwise")],
    "pyro_ebm.structured.chain_marginals": [C(lambda: _st().chain_marginals(_U(), _P(), beta=-1.0), "beta")],
    "pyro_ebm.structured.sample_chain": [C(lambda: _st().sample_chain(_U(), _P(), beta=NAN), "beta")],
    "pyro_ebm.structured.kbest": [C(lambda: _st().kbest(_U(), _P(), k=0), r"\bk\b")],
    "pyro_ebm.structured.pad_sequences": [C(lambda: _st().pad_sequences([]), "sequences")],
    "pyro_ebm.structured.LinearChainGibbs": [C(lambda: _st().LinearChainGibbs(_U(), _P(), beta=0.0), "beta")],
    "pyro_ebm.structured.Semiring": [C(lambda: _st().Semiring(0.0), "beta")],
    "pyro_ebm.structured.soft_dtw": [C(lambda: _st().soft_dtw(torch.zeros(2, 3, 3), beta=0.0), "beta"),
                                     C(lambda: _st().soft_dtw(torch.full((2, 3, 3), NAN)), "cost")],
    "pyro_ebm.structured.dtw": [C(lambda: _st().dtw(torch.zeros(2, 0, 3)), "cost")],
    "pyro_ebm.structured.squared_distances": [
        C(lambda: _st().squared_distances(torch.zeros(2, 3), torch.zeros(2, 4)), r"\bx\b|\by\b")],
    "pyro_ebm.structured.Graph": [C(lambda: _g1().add_arc(0, 5, 0), "dst"),
                                  C(lambda: _g1().add_arc(0, 1, 0, energy=NAN), "energy"),
                                  C(lambda: _g1().with_energy(torch.zeros(4)), "energy")],
    "pyro_ebm.structured.compose": [C(lambda: _st().compose(_g1(), None), "second")],
    "pyro_ebm.structured.intersect": [C(lambda: _st().intersect(_g1(olabel=2), _g1()), "first")],
    "pyro_ebm.structured.forward_score": [C(lambda: _st().forward_score(_g1(), beta=-1.0), "beta"),
                                          C(lambda: _st().forward_score(_g1(start=False)), "start"),
                                          C(lambda: _st().forward_score(_g1(cycle=True)), "acyclic")],
    "pyro_ebm.structured.viterbi_score": [C(lambda: _st().viterbi_score(_g1(accept=False)), "accept")],
    "pyro_ebm.structured.viterbi_path": [C(lambda: _st().viterbi_path("g"), "graphs")],
    "pyro_ebm.structured.graph_nll": [C(lambda: _st().graph_nll(_g1(), _g1(), beta=0.0), "beta"),
                                      C(lambda: _st().graph_nll(_g1(), 3), "full")],
    "pyro_ebm.structured.graph_perceptron": [C(lambda: _st().graph_perceptron(_g1(), _g1(), reduction="x"),
                                               "reduction")],
    "pyro_ebm.structured.graph_hinge": [C(lambda: _st().graph_hinge(_g1(), _g1(), margin=-1.0), "margin")],
    "pyro_ebm.structured.hamming_distance": [C(lambda: _st().hamming_distance(3, [1]), r"\ba\b")],
    # ------------------------------------------------------------------ models
    "pyro_ebm.models.Hopfield": [
        C(lambda: _mod().Hopfield(0), r"\bn\b"),
        C(lambda: _mod().Hopfield(4).store(torch.tensor([[1.0, 0.5, -1.0, 1.0]])), "patterns"),
        C(lambda: _mod().Hopfield(3).set_weight(torch.randn(3, 3, generator=torch.Generator().manual_seed(0))),
          "weight"),
        C(lambda: _mod().Hopfield(3).recall(torch.ones(2, 3), mode="magic"), "mode"),
    ],
    "pyro_ebm.models.Recall": Exempt("result type, built by Hopfield.recall"),
    "pyro_ebm.models.BoltzmannMachine": [
        C(lambda: _mod().BoltzmannMachine(0, 2), "n_visible"),
        C(lambda: _mod().BoltzmannMachine(3, 2, beta=0.0), "beta"),
        C(lambda: _mod().BoltzmannMachine(3, 2).fit(torch.full((4, 3), 0.5)), "data"),
    ],
    "pyro_ebm.models.RBM": [
        C(lambda: _mod().RBM(4, 3, beta=NAN), "beta"),
        C(lambda: _mod().RBM(4, 3).fit(torch.full((4, 4), 0.5)), "data"),
        C(lambda: _mod().RBM(4, 3).log_partition(method="magic"), "method"),
    ],
    "pyro_ebm.models.PCA": [
        C(lambda: _mod().PCA(0), "n_components"),
        C(lambda: _mod().PCA(3).fit(torch.randn(10, 2)), "n_components"),
        C(lambda: _mod().PCA(1).fit(torch.tensor([[0.0, NAN], [1.0, 2.0]])), r"\bY\b"),
        C(lambda: _mod().PCA(1).fit(torch.randn(10, 2)).free_energy(torch.zeros(4, 3)), r"\by\b"),
        C(lambda: _mod().PCA(1).fit(torch.randn(10, 2)).free_energy(torch.zeros(4, 2), beta=0.0), "beta"),
        C(lambda: _mod().PCA(1).infer(torch.zeros(4, 2)), "fit"),
    ],
    "pyro_ebm.models.KMeans": [
        C(lambda: _mod().KMeans(0), "n_clusters"),
        C(lambda: _mod().KMeans(2, seed=1.5), "seed"),
        C(lambda: _mod().KMeans(5).fit(torch.randn(3, 2)), "n_clusters"),
        C(lambda: _mod().KMeans(2).fit(torch.tensor([[NAN, 0.0], [1.0, 1.0], [2.0, 2.0]])), r"\bY\b"),
        C(lambda: _mod().KMeans.from_sklearn(3), r"\bsk\b"),
        C(lambda: _mod().KMeans(2).fit(torch.randn(5, 2)).free_energy(torch.zeros(3)), r"\by\b"),
    ],
    "pyro_ebm.models.GaussianMixture": [
        C(lambda: _mod().GaussianMixture(torch.tensor([0.5, 0.6]), torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2)),
          "weights"),
        C(lambda: _mod().GaussianMixture(torch.ones(1), torch.zeros(1, 2), -torch.eye(2).unsqueeze(0)), "covariances"),
        C(lambda: _mod().GaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.eye(3).unsqueeze(0)), "covariances"),
        C(lambda: _mod().GaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.eye(2).unsqueeze(0))
          .free_energy(torch.tensor([[NAN, 0.0]])), r"\by\b"),
        C(lambda: _mod().GaussianMixture.from_sklearn(3), r"\bsk\b"),
        C(lambda: _mod().GaussianMixture.from_kmeans("km", 1.0), "kmeans"),
    ],
    "pyro_ebm.models.SparseCoding": [
        C(lambda: _mod().SparseCoding(torch.eye(2), lam=-0.1), "lam"),
        C(lambda: _mod().SparseCoding(torch.zeros(3), lam=0.1), "dictionary"),
        C(lambda: _mod().SparseCoding(torch.eye(2)).infer(torch.zeros(3, 3)), r"\by\b"),
        C(lambda: _mod().SparseCoding(torch.eye(2)).infer(torch.tensor([[NAN, 0.0]])), r"\by\b"),
        C(lambda: _mod().SparseCoding(torch.eye(2)).infer(torch.zeros(3, 2), method="lars"), "method"),
        C(lambda: _mod().SparseCoding(torch.eye(2)).fit(torch.zeros(3, 3)), r"\bY\b"),
        C(lambda: _mod().SparseCoding(torch.ones(3, 2)).free_energy(torch.zeros(1, 2), beta=1.0), "full row rank"),
    ],
    "pyro_ebm.models.SparseAutoEncoder": [
        C(lambda: _mod().SparseAutoEncoder(torch.eye(2), torch.nn.Identity(), lam=-0.1), "lam"),
        C(lambda: _mod().SparseAutoEncoder(torch.eye(2), torch.nn.Identity(), alpha=NAN), "alpha"),
        C(lambda: _mod().SparseAutoEncoder(torch.eye(2), torch.nn.Identity(), alpha=-1.0), "alpha"),
        C(lambda: _mod().SparseAutoEncoder(torch.eye(2), lambda y: y), "encoder"),
        C(lambda: _mod().SparseAutoEncoder(torch.zeros(3), torch.nn.Identity()), "dictionary"),
        C(lambda: _mod().SparseAutoEncoder(torch.eye(2), torch.nn.Identity()).infer(torch.zeros(3, 3)), r"\by\b"),
        C(lambda: _mod().SparseAutoEncoder(torch.eye(2), torch.nn.Identity()).infer(torch.tensor([[NAN, 0.0]])),
          r"\by\b"),
        C(lambda: _mod().SparseAutoEncoder(torch.eye(2), torch.nn.Linear(2, 3)).infer(torch.zeros(3, 2)), "encoder"),
        C(lambda: _mod().SparseAutoEncoder(torch.eye(2), torch.nn.Identity()).infer(torch.zeros(3, 2), method="lars"),
          "method"),
        C(lambda: _mod().SparseAutoEncoder(torch.eye(2), torch.nn.Identity()).fit(torch.zeros(3, 3)), r"\bY\b"),
        C(lambda: _mod().SparseAutoEncoder(torch.eye(2), torch.nn.Identity()).fit(torch.zeros(3, 2), learn_dictionary=False),
          "parameters"),
        C(lambda: _mod().SparseAutoEncoder(torch.eye(2), torch.nn.Linear(2, 2)).fit(torch.zeros(3, 2), lr=0.0),
          r"\blr\b"),
        C(lambda: _mod().SparseAutoEncoder(torch.eye(2), torch.nn.Identity()).free_energy(torch.zeros(1, 2), beta=0.0),
          "beta"),
    ],
    "pyro_ebm.models.VectorQuantizer": [
        C(lambda: _mod().VectorQuantizer(torch.zeros(3)), "codebook"),
        C(lambda: _mod().VectorQuantizer(torch.tensor([[NAN, 0.0]])), "codebook"),
        C(lambda: _mod().VectorQuantizer(torch.eye(2), encoder=lambda y: y), "encoder"),
        C(lambda: _mod().VectorQuantizer(torch.eye(2), decoder=torch.nn.Linear(2, 3)), r"\bdim\b"),
        C(lambda: _mod().VectorQuantizer(torch.eye(2), dim=3), r"\bdim\b"),
        C(lambda: _mod().VectorQuantizer(torch.eye(2)).free_energy(torch.zeros(3, 3)), r"\by\b"),
        C(lambda: _mod().VectorQuantizer(torch.eye(2)).free_energy(torch.zeros(3, 2), beta=-1.0), "beta"),
        C(lambda: _mod().VectorQuantizer(torch.eye(2)).infer(torch.full((3, 2), NAN)), r"\by\b"),
        C(lambda: _mod().VectorQuantizer(torch.eye(2), encoder=torch.nn.Linear(2, 3)).encode(torch.zeros(3, 2)),
          "encoder"),
        C(lambda: _mod().VectorQuantizer(torch.eye(2)).loss(torch.zeros(3, 2), commitment=-1.0), "commitment"),
        C(lambda: _mod().VectorQuantizer(torch.eye(2)).kmeans_step(torch.zeros(3, 3)), r"\bY\b"),
    ],
    "pyro_ebm.models.LISTA": [
        C(lambda: _mod().LISTA(torch.eye(2)), "sparse_coding"),
        C(lambda: _mod().LISTA(_mod().SparseCoding(torch.eye(2)), n_layers=0), "n_layers"),
        C(lambda: _mod().LISTA(_mod().SparseCoding(torch.eye(2)))(torch.zeros(3, 4)), r"\by\b"),
        C(lambda: _mod().LISTA(_mod().SparseCoding(torch.eye(2))).fit(torch.zeros(3, 2), lr=0.0), r"\blr\b"),
    ],
    "pyro_ebm.models.soft_threshold": [C(lambda: _mod().soft_threshold(torch.ones(2), -1.0), "threshold"),
                                       C(lambda: _mod().soft_threshold([1.0], 1.0), r"\bu\b")],
    "pyro_ebm.models.LatentGenerativeEBM": [
        C(lambda: _mod().LatentGenerativeEBM(3, event_shape=(2,), latent_shape=(1,)), "decoder"),
        C(lambda: _mod().LatentGenerativeEBM(lambda h, z: z, event_shape=(2,), latent_shape=(2,),
                                             z_values=torch.zeros(4, 3)), "z_values"),
        C(lambda: _mod().LatentGenerativeEBM(lambda h, z: z, event_shape=(2,), latent_shape=(2,),
                                             z_measure=0.0), "z_measure"),
        C(lambda: _mod().LatentGenerativeEBM(lambda h, z: z, event_shape=(2,), latent_shape=(2,))
          .free_energy(torch.zeros(3, 2), beta=1.0), "z_values"),
        C(lambda: _mod().LatentGenerativeEBM(lambda h, z: z, event_shape=(2,), latent_shape=(2,),
                                             z_values=torch.zeros(4, 2)).free_energy(torch.zeros(3, 2), beta=NAN),
          "beta"),
    ],
    "pyro_ebm.models.low_energy_volume": [
        C(lambda: _mod().low_energy_volume(F2, torch.zeros(3, 2), 1.0, -1.0), "high"),
        C(lambda: _mod().low_energy_volume(F2, torch.full((3, 2), NAN), -1.0, 1.0), "data"),
        C(lambda: _mod().low_energy_volume(F2, torch.zeros(3, 2), -1.0, 1.0, num_points=0), "num_points"),
        C(lambda: _mod().low_energy_volume(3, torch.zeros(3, 2), -1.0, 1.0), "energy"),
    ],
    "pyro_ebm.models.DenoisingAutoEncoder": [
        C(lambda: _mod().DenoisingAutoEncoder(lambda y: y, 2), r"\bg\b"),
        C(lambda: _mod().DenoisingAutoEncoder(torch.nn.Identity(), 0), r"\bdim\b"),
        C(lambda: _mod().DenoisingAutoEncoder(torch.nn.Identity(), 2).loss(torch.zeros(3, 2), 0.0), "sigma"),
        C(lambda: _mod().DenoisingAutoEncoder(torch.nn.Identity(), 2).loss(torch.full((3, 2), NAN), 0.1), r"\by\b"),
    ],
    "pyro_ebm.models.contracting_penalty": [
        C(lambda: _mod().contracting_penalty(3, torch.zeros(2, 2)), "encoder"),
        C(lambda: _mod().contracting_penalty(lambda y: y.sum(), torch.zeros(2, 2)), "encoder"),
        C(lambda: _mod().contracting_penalty(lambda y: y, [0.0]), r"\by\b"),
    ],
    "pyro_ebm.models.saturating_penalty": [
        C(lambda: _mod().saturating_penalty(torch.zeros(2, 2), "tanh"), "activation"),
        C(lambda: _mod().saturating_penalty(torch.zeros(2, 2), "shrink", threshold=-1.0), "threshold"),
        C(lambda: _mod().saturating_penalty([0.0], "relu"), "preactivation"),
    ],
    "pyro_ebm.models.CouplingFlow": [
        C(lambda: _mod().CouplingFlow(1), r"\bdim\b"),
        C(lambda: _mod().CouplingFlow(2, n_layers=0), "n_layers"),
        C(lambda: _mod().CouplingFlow(2).energy(torch.zeros(3, 3)), r"\by\b"),
    ],
    "pyro_ebm.models.VAEEnergy": [
        C(lambda: _mod().VAEEnergy(lambda z: z, torch.nn.Linear(2, 2), dim=2, latent_dim=1), "decoder"),
        C(lambda: _mod().VAEEnergy(torch.nn.Linear(1, 2), torch.nn.Linear(2, 2), dim=2, latent_dim=1, sigma=0.0),
          "sigma"),
        C(lambda: _mod().VAEEnergy(torch.nn.Linear(1, 2), torch.nn.Linear(2, 2), dim=2, latent_dim=1)
          .free_energy(torch.zeros(3, 3)), r"\by\b"),
        C(lambda: _mod().VAEEnergy(torch.nn.Linear(1, 2), torch.nn.Linear(2, 2), dim=2, latent_dim=1)
          .variational_free_energy(torch.zeros(3, 2), num_samples=0), "num_samples"),
    ],
    "pyro_ebm.models.rbm_ais": [
        C(lambda: _mod().rbm_ais(torch.zeros(4, 3), torch.zeros(4), torch.zeros(3), num_particles=0), "num_particles"),
        C(lambda: _mod().rbm_ais(torch.zeros(4, 3), torch.zeros(5), torch.zeros(3)), "visible_bias"),
    ],
    # ------------------------------------------------------------------ likelihood (an energy as a likelihood)
    "pyro_ebm.DoublyIntractableWarning": Exempt("warning class"),
    "pyro_ebm.losses.pseudo_likelihood": [
        C(lambda: L.pseudo_likelihood(torch.zeros(3), torch.tensor([0, 1, 0])), "energies"),
        C(lambda: L.pseudo_likelihood(torch.zeros(1, 2, 2), torch.tensor([[0.0, 1.0]])), "target"),
        C(lambda: L.pseudo_likelihood(torch.zeros(1, 2, 2), torch.tensor([[0, 2]])), "target"),
        C(lambda: L.pseudo_likelihood(torch.zeros(1, 2, 2), torch.tensor([[0, 1]]), beta=NAN), "beta"),
        C(lambda: L.pseudo_likelihood(torch.zeros(1, 2, 2), torch.tensor([[0, 1]]), reduction="avg"), "reduction"),
    ],
    "pyro_ebm.likelihood.exchange": [
        C(lambda: _lik().exchange(3, torch.zeros(4), _gamma()), "energy"),
        C(lambda: _lik().exchange(_Ftau, torch.zeros(4, dtype=torch.long), _gamma()), "data"),
        C(lambda: _lik().exchange(_Ftau, torch.tensor([0.0, NAN]), _gamma()), "data"),
        C(lambda: _lik().exchange(_Ftau, torch.zeros(4), "gamma"), "prior"),
        C(lambda: _lik().exchange(_Ftau, torch.zeros(4), dist.Gamma(torch.ones(2), 1.0)), "prior"),
        C(lambda: _lik().exchange(_Ftau, torch.zeros(4), _gamma(), num_chains=0), "num_chains"),
        C(lambda: _lik().exchange(_Ftau, torch.zeros(4), _gamma(), aux="magic"), "aux"),
        C(lambda: _lik().exchange(_Ftau, torch.zeros(4), _gamma(), aux="exact"), "values"),
        C(lambda: _lik().exchange(_Ftau, torch.zeros(4), _gamma(), aux="mcmc", aux_kernel="magic"), "aux_kernel"),
        C(lambda: _lik().exchange(_Ftau, torch.zeros(4), _gamma(), proposal_scale=NAN), "proposal_scale"),
        C(lambda: _lik().exchange(_Ftau, torch.zeros(4), _gamma(), target_accept=1.5), "target_accept"),
        C(lambda: _lik().exchange(_Ftau, torch.zeros(4), _gamma(), init=torch.ones(3)), "init"),
        C(lambda: _lik().exchange(lambda y, t: y.sum(), torch.zeros(4), _gamma(), aux="exact",
                                  values=torch.zeros(2)), r"energy\(y, theta\)"),
        C(lambda: _lik().exchange(_Ftau, torch.zeros(4), _gamma(), aux=lambda t, n, g: torch.zeros(3)), "aux"),
    ],
    "pyro_ebm.likelihood.site_conditionals": [
        C(lambda: _lik().site_conditionals(torch.zeros(2, 3, dtype=torch.long), [0.0, 1.0]), r"\by\b"),
        C(lambda: _lik().site_conditionals(torch.zeros(2, 3), [0.0]), "choices"),
        C(lambda: _lik().site_conditionals(torch.full((2, 3), 0.5), [0.0, 1.0]), "choices"),
        C(lambda: _lik().site_conditionals(torch.zeros(2, 3), [0.0, 1.0], event_ndim=3), "event_ndim"),
    ],
    "pyro_ebm.likelihood.pseudo_likelihood_fit": [
        C(lambda: _lik().pseudo_likelihood_fit(_Fbin, torch.zeros(4, 3), [0.0, 1.0], 0.0), "theta0"),
        C(lambda: _lik().pseudo_likelihood_fit(_Fbin, torch.zeros(4, 3), [0.0, 1.0], torch.zeros(()),
                                               max_iter=0), "max_iter"),
        C(lambda: _lik().pseudo_likelihood_fit(_Fbin, torch.zeros(0, 3), [0.0, 1.0], torch.zeros(())), "data"),
    ],
    "pyro_ebm.likelihood.PseudoLikelihoodFit": Exempt("result type, built by pseudo_likelihood_fit"),
    "pyro_ebm.likelihood.fisher_information": [
        C(lambda: _lik().fisher_information(_Fbin, torch.zeros(()), torch.zeros(4, 3), torch.zeros(5, 2)), "samples"),
        C(lambda: _lik().fisher_information(_Fbin, 0.0, torch.zeros(4, 3), torch.zeros(5, 3)), "theta"),
        C(lambda: _lik().fisher_information(_Fbin, torch.zeros(()), torch.zeros(4, 3), torch.zeros(5, 3),
                                            beta=0.0), "beta"),
    ],
}


def _lik():
    return importlib.import_module("pyro_ebm.likelihood")


def _gamma():
    return dist.Gamma(2.0, 1.0)


def _Ftau(y, tau):
    return 0.5 * tau * y**2


def _Fbin(y, theta):
    return -theta * y.sum(-1)


def _mod():
    return importlib.import_module("pyro_ebm.models")


def _st():
    return importlib.import_module("pyro_ebm.structured")


def _g1(start=True, accept=True, cycle=False, olabel=None):
    """A two-node graph with one arc (and optionally a cycle, no start or no accept node)."""
    g = _st().Graph()
    a, b = g.add_node(start=start), g.add_node(accept=accept)
    g.add_arc(a, b, 0, olabel, energy=1.0)
    if cycle:
        g.add_arc(b, a, 0)
    return g


def _U():
    return torch.zeros(2, 3, 4)


def _P():
    return torch.zeros(4, 4)


# ---------------------------------------------------------------------------------------------- walking


def _aliases(names):
    """Group the public paths of one object: ``{id(obj): [paths]}`` (a re-export is one name)."""
    groups = {}
    for path, obj in names.items():
        groups.setdefault(id(obj), (obj, []))[1].append(path)
    return groups.values()


def test_every_public_name_has_cases():
    missing = []
    for obj, paths in _aliases(public_names()):
        if not callable(obj):
            continue  # constants (__version__, KERNELS, STAT_NAMES, ...) take no input
        if not any(p in CASES for p in paths):
            missing.append(min(paths, key=len))
    assert not missing, f"public names without bad-input cases in tests/test_bad_inputs.py: {sorted(missing)}"


def test_registry_has_no_stale_entries():
    names = public_names()
    stale = sorted(k for k in CASES if k not in names)
    assert not stale, f"CASES has entries for names that are not public: {stale}"


def _params():
    for key, cases in CASES.items():
        if isinstance(cases, Exempt):
            continue
        for i, case in enumerate(cases):
            marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
            yield pytest.param(key, case, id=f"{key}[{i}]", marks=marks)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("key, case", list(_params()))
def test_bad_input_names_the_argument(key, case):
    with pytest.raises(case.exc) as info:
        result = case.call()
        # a call that returns must not hand back a silent NaN either
        if isinstance(result, torch.Tensor) and result.is_floating_point():
            assert not torch.isnan(result).any(), f"{key} returned NaN"
    if case.exc == (ValueError, TypeError):
        assert type(info.value).__module__ == "builtins", f"{key}: raised {type(info.value)}"
    message = str(info.value)
    import re

    assert re.search(case.match, message), f"{key}: the message does not name {case.match!r}: {message!r}"
