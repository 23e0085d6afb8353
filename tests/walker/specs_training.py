"""Valid calls of ``pyro_ebm.losses``, ``negatives``, ``mcmc``, ``ml`` and ``train`` for the walker."""

from __future__ import annotations

import inspect
import pathlib
import tempfile

import pyro
import torch
from torch import nn

import pyro_ebm.losses as L
import pyro_ebm.mcmc as M
import pyro_ebm.ml as ML
import pyro_ebm.negatives as N
import pyro_ebm.train as T
from pyro_ebm import Energy

from . import Exempt, call, spec  # noqa: F401

# ------------------------------------------------------------------------------------------------ losses

# +inf is the energy of an impossible answer: as a contrastive energy it makes that pair's loss 0 (or its
# term of a sum vanish), a legal and finite result
IMPOSSIBLE = "+inf is the energy of an impossible contrastive answer: its term of the loss is 0"
# a trailing dimension of 1 on neg is the documented "p contrastive answers per example" form with p = 1
P_EQUALS_1 = "neg [batch, 1] is the documented form with p = 1 contrastive answer per example"
HUGE_SEED = "any integer in [0, 2**64) seeds a torch.Generator"
# a plain-callable energy takes its event shape from y's last dimension: y [..., 1] is a batch of 1-D points
ONE_D_POINTS = "without event_shape, y [*batch, 1] is a larger batch of 1-D points, which the energy accepts"


def _t(*values):
    return torch.tensor(values)


def _pos():
    return _t(0.0, 1.0, 0.5)


def _neg():
    return _t(1.0, 2.0, 0.0)


def _E():
    return _t([0.0, 1.0, 2.0], [1.0, 0.0, 2.0])


def _pair(fn, accepts=None, *, neg_inf=True, **kwargs):
    acc = {"neg:inf": IMPOSSIBLE, "neg:trailing-dim": P_EQUALS_1} if neg_inf else {"neg:trailing-dim": P_EQUALS_1}
    acc.update(accepts or {})
    return spec(lambda: call(fn, _pos(), _neg(), **kwargs), accepts=acc)


def _quadratic(y):
    return 0.5 * (y**2).sum(-1)


def _y2():
    return _t([0.5, -1.0], [0.0, 0.25], [1.0, 1.0])


SPECS = {
    "pyro_ebm.losses.energy_loss": _pair(L.energy_loss, accepts={
        "neg:inf": "neg is only shape-checked; +inf (an impossible answer) is a legal energy"}),
    "pyro_ebm.losses.perceptron": spec(lambda: call(L.perceptron, _t(0.0, 1.0), _E()),
                                       accepts={"energies:inf": "+inf is the energy of an impossible answer: it "
                                                                "is never the minimum"}),
    "pyro_ebm.losses.hinge": _pair(L.hinge, margin=1.0),
    "pyro_ebm.losses.log_loss": _pair(L.log_loss),
    "pyro_ebm.losses.lvq2": _pair(L.lvq2, cap=1.0, accepts={"cap:inf": "cap = inf is documented: no cap"}),
    "pyro_ebm.losses.mce": _pair(L.mce),
    "pyro_ebm.losses.square_square": _pair(L.square_square, margin=1.0),
    "pyro_ebm.losses.square_exp": _pair(L.square_exp, beta=1.0),
    "pyro_ebm.losses.simple": _pair(L.simple, margin=1.0),
    "pyro_ebm.losses.min_hinge": _pair(L.min_hinge, margin=1.0),
    "pyro_ebm.losses.square_hinge": _pair(L.square_hinge, margin=1.0),
    "pyro_ebm.losses.nll": spec(lambda: call(L.nll, _E(), torch.tensor([0, 1]), beta=1.0),
                                accepts={"beta:inf": "beta = inf is documented: the perceptron limit"}),
    "pyro_ebm.losses.mee": spec(lambda: call(L.mee, _E(), torch.tensor([0, 1]), beta=1.0),
                                accepts={"beta:inf": "beta = inf is documented: the 0-1 error limit",
                                         "energies:inf": "a desired answer with energy +inf has probability 0: "
                                                         "the loss is its maximum, 1"}),
    "pyro_ebm.losses.general_margin": spec(lambda: call(L.general_margin, _E(), torch.tensor([0, 1]))),
    "pyro_ebm.losses.info_nce": spec(lambda: call(L.info_nce, _pos(), _E().T.contiguous(), beta=1.0),
                                     accepts={"neg:inf": IMPOSSIBLE}),
    "pyro_ebm.losses.nce": spec(
        lambda: call(L.nce, _pos(), _E().T.contiguous(), -_pos(), -_E().T.contiguous(), log_partition=0.5),
        accepts={"neg:inf": IMPOSSIBLE, "log_partition:negative": "a log-partition estimate can be negative"}),
    "pyro_ebm.losses.nca": spec(
        lambda: call(L.nca, _E(), torch.tensor([[False, True, False], [True, False, True]]), beta=1.0),
        accepts={"energies:inf": "+inf excludes a candidate (documented for the anchor itself)"}),
    # ml_sampled: +inf in neg would make the loss -inf (a sampled negative has a finite energy): rejected
    "pyro_ebm.losses.ml_sampled": _pair(L.ml_sampled, neg_inf=False),
    "pyro_ebm.losses.pseudo_likelihood": spec(
        lambda: call(L.pseudo_likelihood, _t([[0.0, -1.0], [0.0, 2.0]], [[1.0, 0.5], [0.0, 0.0]]),
                     torch.tensor([[1, 0], [0, 1]]), beta=1.0),
        accepts={"beta:inf": "beta = inf is the zero-temperature limit of each site's nll",
                 "energies:inf": "+inf excludes a candidate value of a site (not y's own value)"}),
    "pyro_ebm.losses.score_matching": spec(lambda: call(L.score_matching, _quadratic, _y2()),
                                           accepts={"y:trailing-dim": ONE_D_POINTS}),
    "pyro_ebm.losses.sliced_score_matching": spec(
        lambda: call(L.sliced_score_matching, _quadratic, _y2(), 2, projection="gaussian", seed=0),
        accepts={"seed:huge": HUGE_SEED, "y:trailing-dim": ONE_D_POINTS}),
    "pyro_ebm.losses.denoising_score_matching": spec(
        lambda: call(L.denoising_score_matching, _quadratic, _y2(), 0.5, noise=_y2().flip(0), seed=0),
        accepts={"seed:huge": HUGE_SEED}),
}


# --------------------------------------------------------------------------------------------- fixtures

WARNING_CLASS = Exempt("a warning category: raised by the library, never called with user input")
EMPTY_BATCH = "an empty batch of examples gives an empty batch of negatives"
_TMP = tempfile.TemporaryDirectory(prefix="pyro_ebm_walker_")  # checkpoints written by the valid calls


class _Bowl(Energy):
    """``F(y) = |y - c|^2 / 2`` on ``y`` of shape ``[*batch, 2]``, with a learnable centre."""

    def __init__(self):
        super().__init__(event_shape=(2,))
        self.center = nn.Parameter(torch.tensor([0.1, -0.1]))

    def forward(self, y, x=None):
        return 0.5 * ((y - self.center) ** 2).sum(-1)


class _Linear3(Energy):
    """A linear energy of one-hot ``y`` ``[*batch, 3]``."""

    def __init__(self):
        super().__init__(event_shape=(3,))
        self.w = nn.Parameter(torch.tensor([0.5, -0.5, 1.0]))

    def forward(self, y, x=None):
        return (y * self.w).sum(-1)


def _data(n=16):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(0)) * 0.5


def _y():
    return _data(4)


def _gen():
    return torch.Generator().manual_seed(1)


def _samples(chains=2, draws=4):
    g = torch.Generator().manual_seed(2)
    stats = {
        "energy": torch.rand(chains, draws, generator=g) + 1.0,
        "lp": -torch.rand(chains, draws, generator=g),
        "acceptance_rate": torch.full((chains, draws), 0.8),
        "step_size": torch.full((chains, draws), 0.1),
        "n_steps": torch.ones(chains, draws, dtype=torch.long),
        "diverging": torch.zeros(chains, draws, dtype=torch.bool),
    }
    return M.Samples(draws=torch.randn(chains, draws, 2, generator=g), stats=stats, kernel="hmc", beta=1.0)


def _then(cls, method, *call_params):
    """``cls(*ctor_args)`` then ``.method(*call_args)``, as one callable whose signature has the parameters of
    both (the call's as keyword-only): a walk of it mutates the constructor's arguments *and* the call's, so
    that a constructor argument used only when the object is called (an energy, a callable) is walked too.
    Returns the call's result."""
    ctor = inspect.signature(cls)
    params = [p for p in ctor.parameters.values() if p.kind is not p.VAR_KEYWORD]
    var_kw = [p for p in ctor.parameters.values() if p.kind is p.VAR_KEYWORD]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
             for name, default in call_params]

    def run(*args, **kwargs):
        call_kw = {name: kwargs.pop(name, default) for name, default in call_params
                   if name in kwargs or default is not _REQ}
        obj = cls(*args, **kwargs)
        return getattr(obj, method)(**call_kw)

    run.__signature__ = ctor.replace(parameters=params + extra + var_kw)
    run.__name__ = f"{cls.__name__}.{method}"
    return run


_REQ = inspect.Parameter.empty
_NEG_CALL = (("energy", _REQ), ("y", _REQ), ("x", None))


def _negatives(cls):
    """A negative generator: constructed, then called on ``(energy, y)``."""
    return _then(cls, "__call__", *_NEG_CALL)


def _model():
    pyro.sample("y", pyro.distributions.Normal(torch.zeros(2), 1.0).to_event(1))


def _pyro_run():
    from pyro.infer import MCMC

    pyro.set_rng_seed(0)
    run = MCMC(M.RecordingNUTS(_model, max_tree_depth=2), num_samples=4, warmup_steps=2, disable_progbar=True)
    run.run()
    return run


def _used(neg):
    """``neg`` after one call (so that its state holds an RNG state, a buffer, ...)."""
    neg(_Bowl(), _y())
    return neg


def _pcd(**kw):
    opts = dict(buffer_size=8, steps=2, kernel="mala", step_size=0.1, seed=0)
    opts.update(kw)
    return N.PersistentNegatives(**opts)


def _diag(**kw):
    energy = _Bowl()
    opts = dict(every=1, num_chains=2, num_draws=4, thin=1, num_data=8, warn=False, seed=0)
    opts.update(kw)
    return ML.SamplerDiagnostics(energy, _pcd(), _data(), **opts)


def _ckpt_objects():
    energy = _Bowl()
    return dict(energy=energy, optimizer=torch.optim.Adam(energy.parameters(), lr=0.01), negatives=_used(_pcd()),
                order=T.DataOrder(16, 4, seed=0), history=T.History([{"step": 1, "loss": 0.5}]))


def _checkpoint_file():
    path = pathlib.Path(_TMP.name) / "load.ckpt"
    if not path.exists():
        T.save_checkpoint(path, step=1, **_ckpt_objects())
    return path


def _set_loss_call(fn, pos, neg, *, beta):
    """``set_loss(fn, beta=beta)`` applied to ``(pos, neg)``."""
    return T.set_loss(fn, beta=beta)(pos, neg)


def _fit_check():
    return ML.FitCheck(ok=True, problems=[], mmd=0.01, p_value=0.5, negatives_mmd=None, negatives_p_value=None,
                       heldout_nll=1.2, log_z=0.9, log_z_stderr=None, reference_nll=1.2, nll_gap=0.0,
                       samples=torch.zeros(4, 1), log_z_method="quadrature", sampler="grid")


def _heldout1d():
    return torch.randn(24, 1, generator=torch.Generator().manual_seed(3))


def _normal1d(y):
    return 0.5 * (y**2).sum(-1)


# --------------------------------------------------------------------------------------------- negatives

SPECS.update({
    "pyro_ebm.negatives.negative_energies": spec(
        lambda: call(N.negative_energies, _Bowl(), torch.randn(2, 4, 2, generator=_gen())),
        accepts={"y_hat:empty": "no contrastive answers give an empty [batch, 0] of energies"}),
    "pyro_ebm.negatives.Negatives": spec(lambda: call(N.Negatives, seed=0), accepts={"seed:huge": HUGE_SEED}),
    "pyro_ebm.negatives.Negatives.probe": spec(
        lambda: (lambda n: (setattr(n, "last_samples", _samples()),
                            call(n.probe, _Bowl(), 2, 4, seed=0, data=_data(), thin=1))[1])(N.Negatives()),
        accepts={"seed:huge": HUGE_SEED},
        skip={"energy": "the base class's probe returns the generator's own last draws: it never evaluates "
                        "the energy"}),
    "pyro_ebm.negatives.Negatives.rng": spec(lambda: call(N.Negatives(seed=0).rng, "cpu")),
    "pyro_ebm.negatives.Negatives.state_dict": spec(lambda: call(N.Negatives(seed=0).state_dict)),
    "pyro_ebm.negatives.Negatives.load_state_dict": spec(
        lambda: call(N.Negatives(seed=0).load_state_dict, (lambda n: (n.rng("cpu"), n.state_dict())[1])(
            N.Negatives(seed=1)))),
    "pyro_ebm.negatives.Exhaustive": spec(
        lambda: call(_negatives(N.Exhaustive), torch.eye(3), energy=_Linear3(), y=torch.eye(3)[[2, 0]]),
        accepts={"y:empty": EMPTY_BATCH,
                 "candidates:int-dtype": "integer candidates (one-hot rows, binary states) are legal outputs; "
                                         "the negatives take y's dtype"},
        skip={"energy": "Exhaustive never evaluates the energy (it reads only its event shape)"}),
    "pyro_ebm.negatives.Exhaustive.target_index": spec(
        lambda: call(N.Exhaustive(torch.eye(3)).target_index, torch.eye(3)[[2, 0]]),
        accepts={"y_flat:empty": "no examples: an empty index"}),
    "pyro_ebm.negatives.MostOffending": spec(
        lambda: call(_negatives(N.MostOffending), radius=0.5, k=1, restarts=2, steps=3, lr=0.05, init_scale=1.0,
                     seed=0, energy=_Bowl(), y=_y()),
        accepts={"seed:huge": HUGE_SEED, "y:empty": EMPTY_BATCH}),
    "pyro_ebm.negatives.MCMCNegatives": spec(
        lambda: call(_negatives(N.MCMCNegatives), 2, kernel="mala", num_warmup=3, beta=1.0, init_scale=1.0,
                     seed=0, energy=_Bowl(), y=_y()),
        accepts={"seed:huge": HUGE_SEED, "y:empty": EMPTY_BATCH}),
    "pyro_ebm.negatives.MCMCNegatives.probe": spec(
        lambda: call(N.MCMCNegatives(kernel="mala", num_warmup=3, seed=0).probe, _Bowl(), 2, 4, seed=0,
                     data=_data()),
        accepts={"seed:huge": HUGE_SEED}),
    "pyro_ebm.negatives.ContrastiveDivergence": spec(
        lambda: call(_negatives(N.ContrastiveDivergence), 2, n_neg=1, kernel="ula", step_size=0.01, noise=0.1,
                     n_leapfrog=2, beta=1.0, seed=0, energy=_Bowl(), y=_y()),
        accepts={"seed:huge": HUGE_SEED, "y:empty": EMPTY_BATCH}),
    "pyro_ebm.negatives.ContrastiveDivergence.probe": spec(
        lambda: call(N.ContrastiveDivergence(2, kernel="mala", step_size=0.1, seed=0).probe, _Bowl(), 2, 4,
                     seed=0, data=_data(), thin=1),
        accepts={"seed:huge": HUGE_SEED}),
    "pyro_ebm.negatives.PersistentNegatives": spec(
        lambda: call(_negatives(N.PersistentNegatives), 8, n_neg=1, steps=2, reinit_prob=0.05, kernel="ula",
                     step_size=0.01, noise_scale=0.1, n_leapfrog=2, beta=1.0, seed=0, energy=_Bowl(), y=_y()),
        accepts={"seed:huge": HUGE_SEED, "y:empty": EMPTY_BATCH}),
    "pyro_ebm.negatives.PersistentNegatives.probe": spec(
        lambda: call(_used(_pcd()).probe, _Bowl(), 2, 4, seed=0, data=_data(), thin=1),
        accepts={"seed:huge": HUGE_SEED}),
    "pyro_ebm.negatives.PersistentNegatives.state_dict": spec(lambda: call(_used(_pcd()).state_dict)),
    "pyro_ebm.negatives.PersistentNegatives.load_state_dict": spec(
        lambda: call(_pcd().load_state_dict, _used(_pcd(seed=1)).state_dict())),
    "pyro_ebm.negatives.Corruption": spec(
        lambda: call(_negatives(N.Corruption), 0.1, n_neg=2, seed=0, energy=_Bowl(), y=_y()),
        accepts={"seed:huge": HUGE_SEED, "y:empty": EMPTY_BATCH},
        skip={"energy": "Corruption never evaluates the energy (it reads only its event shape)"}),
    "pyro_ebm.negatives.LearnedGenerator": spec(
        lambda: call(_negatives(N.LearnedGenerator), nn.Linear(3, 2), (3,), n_neg=1, lr=0.01, seed=0,
                     energy=_Bowl(), y=_y()),
        accepts={"seed:huge": HUGE_SEED, "y:empty": EMPTY_BATCH + " (and no training step)"}),
    "pyro_ebm.negatives.LearnedGenerator.state_dict": spec(
        lambda: call(_used(N.LearnedGenerator(nn.Linear(3, 2), (3,), seed=0)).state_dict)),
    "pyro_ebm.negatives.LearnedGenerator.load_state_dict": spec(
        lambda: call(N.LearnedGenerator(nn.Linear(3, 2), (3,), seed=0).load_state_dict,
                     _used(N.LearnedGenerator(nn.Linear(3, 2), (3,), seed=1)).state_dict())),
    "pyro_ebm.ml.PyroNUTSNegatives": spec(
        lambda: call(_negatives(N.PyroNUTSNegatives), 1, num_warmup=2, num_samples=2, beta=1.0, init_scale=1.0,
                     seed=0, max_tree_depth=2, energy=_Bowl(), y=_data(3)),
        accepts={"seed:huge": HUGE_SEED, "y:empty": EMPTY_BATCH}),
    "pyro_ebm.ml.PyroNUTSNegatives.probe": spec(
        lambda: call(N.PyroNUTSNegatives(num_warmup=2, num_samples=2, seed=0, max_tree_depth=2).probe, _Bowl(),
                     2, 4, seed=0, data=_data()),
        accepts={"seed:huge": HUGE_SEED}),
})

# --------------------------------------------------------------------------------------------- mcmc

SPECS.update({
    "pyro_ebm.mcmc.sample": spec(
        lambda: call(M.sample, _Bowl(), _y(), 3, 2, kernel="hmc", beta=1.0, seed=0, progress=False,
                     step_size=0.2),
        accepts={"seed:huge": HUGE_SEED}, names={"energy_or_model": r"\benergy\b"}),
    "pyro_ebm.mcmc.Samples": spec(lambda: (lambda s: call(M.Samples, s.draws, s.stats, "hmc", 1.0))(_samples()),
                                  accepts={"kernel:unknown-option": "kernel is a free-form label of the sampler",
                                           "draws:trailing-dim": "draws [chains, draws, 2, 1] are states of event "
                                                                 "shape (2, 1)"}),
    "pyro_ebm.mcmc.Samples.flat": spec(lambda: call(_samples().flat)),
    "pyro_ebm.mcmc.Samples.posterior_dict": spec(
        lambda: call(_samples().posterior_dict, "y"),
        accepts={"var_name:unknown-option": "var_name is a free-form variable name"}),
    "pyro_ebm.mcmc.Samples.to_arviz": spec(
        lambda: call(_samples().to_arviz, "y"),
        accepts={"var_name:unknown-option": "var_name is a free-form variable name"}),
    "pyro_ebm.mcmc.Samples.summary": spec(
        lambda: call(_samples().summary, "y"),
        accepts={"var_name:unknown-option": "var_name is a free-form variable name"}),
    "pyro_ebm.mcmc.PersistentChains": spec(
        lambda: call(_then(M.PersistentChains, "sample", ("n", _REQ), ("steps", _REQ)), _quadratic, 8,
                     event_shape=(2,), reinit_prob=0.05, kernel="ula", step_size=0.01, noise_scale=0.1,
                     n_leapfrog=2, beta=1.0, seed=0, n=4, steps=2),
        accepts={"seed:huge": HUGE_SEED}),
    "pyro_ebm.mcmc.PersistentChains.noise": spec(
        lambda: call(M.PersistentChains(_Bowl(), 8, seed=0).noise, 4)),
    "pyro_ebm.mcmc.PersistentChains.sample": spec(
        lambda: call(M.PersistentChains(_Bowl(), 8, kernel="mala", step_size=0.1, seed=0).sample, 4, 2)),
    "pyro_ebm.mcmc.PersistentChains.transition": spec(
        lambda: call(M.PersistentChains(_Bowl(), 8, kernel="mala", step_size=0.1, seed=0).transition, _y(), 2)),
    "pyro_ebm.mcmc.PersistentChains.set_step_size": spec(
        lambda: call(M.PersistentChains(_Bowl(), 8, seed=0).set_step_size, 0.05),
        names={"value": r"\bstep_size\b"}),  # set_step_size(value): the message names the step size
    "pyro_ebm.mcmc.DataProposal": spec(
        lambda: call(M.DataProposal, _data(), uniform_weight=0.1, box_scale=1.5, bandwidth=0.3, max_points=10,
                     seed=0),
        accepts={"seed:huge": HUGE_SEED, "data:trailing-dim": "data [N, 2, 1] are points of event shape (2, 1)"}),
    "pyro_ebm.mcmc.DataProposal.to": spec(lambda: call(M.DataProposal(_data()).to, torch.float64, "cpu")),
    "pyro_ebm.mcmc.DataProposal.sample": spec(lambda: call(M.DataProposal(_data()).sample, 4, _gen())),
    "pyro_ebm.mcmc.DataProposal.log_prob": spec(lambda: call(M.DataProposal(_data()).log_prob, _y()),
                                                accepts={"y:empty": "no points: an empty [0] of log densities"}),
    "pyro_ebm.mcmc.independence_jump": spec(
        lambda: call(M.independence_jump, _quadratic, _y(), _quadratic(_y()), M.DataProposal(_data()), 1.0,
                     _gen()),
        accepts={"energy_fn:returns-nan": "documented: a proposal whose energy is NaN is rejected (the chain "
                                          "stays), as a divergent transition of the local kernels"}),
    "pyro_ebm.mcmc.RecordingHMC": spec(
        lambda: call(M.RecordingHMC, _model, step_size=0.1, trajectory_length=0.5, num_steps=2,
                     target_accept_prob=0.8),
        skip={"model": "a Pyro model: only MCMC.run calls it"}),
    "pyro_ebm.mcmc.RecordingNUTS": spec(
        lambda: call(M.RecordingNUTS, _model, step_size=0.1, max_tree_depth=2, target_accept_prob=0.8),
        skip={"model": "a Pyro model: only MCMC.run calls it"}),
    "pyro_ebm.mcmc.from_pyro_mcmc": spec(lambda: call(M.from_pyro_mcmc, _pyro_run())),
    "pyro_ebm.mcmc.make_generator": spec(lambda: call(M.make_generator, 0, "cpu", "seed"),
                                         accepts={"seed:huge": HUGE_SEED,
                                                  "name:unknown-option": "name is the label used in messages"}),
    "pyro_ebm.mcmc.CompileWarning": WARNING_CLASS,
    "pyro_ebm.mcmc.TuningWarning": WARNING_CLASS,
})

# --------------------------------------------------------------------------------------------- ml

SPECS.update({
    "pyro_ebm.ml.FitWarning": WARNING_CLASS,
    "pyro_ebm.ml.FitCheck": Exempt("the result record of check_fit (its fields are outputs, filled by check_fit)"),
    "pyro_ebm.ml.FitCheck.summary": spec(lambda: call(_fit_check().summary)),
    "pyro_ebm.ml.MLRun": spec(lambda: call(ML.MLRun, T.History(), _pcd(), None, None)),
    "pyro_ebm.ml.check_fit": spec(
        lambda: call(ML.check_fit, _normal1d, _heldout1d(), negatives=_heldout1d().flip(0), num_samples=20,
                     alpha=0.05, nll_tolerance=0.05, seed=0, num_permutations=60),
        accepts={"seed:huge": HUGE_SEED}),
    "pyro_ebm.ml.make_negatives": spec(
        lambda: call(ML.make_negatives, "persistent", _data(), seed=0, buffer_size=16),
        accepts={"data:trailing-dim": "data [N, 2, 1] are points of event shape (2, 1) (the energy, not known "
                                      "here, is checked against them when the negatives are first drawn)"}),
    "pyro_ebm.ml.ml_fit": spec(
        lambda: call(ML.ml_fit, _Bowl(), _data(), sampler="persistent", sampler_options={"buffer_size": 8},
                     diagnose_every=2, diagnostics_options={"num_chains": 2, "num_draws": 4, "num_data": 8},
                     seed=0, steps=2, batch_size=8, progress=False),
        accepts={"seed:huge": HUGE_SEED}),
    "pyro_ebm.ml.SamplerDiagnostics": spec(
        lambda: call(_then(ML.SamplerDiagnostics, "__call__", ("step", _REQ), ("history", None)), _Bowl(), _pcd(),
                     _data(), every=1, num_chains=2, num_draws=4, thin=1, rhat_threshold=1.05, min_ess=1.0,
                     max_divergences=3, num_data=8, seed=0, step=1),
        accepts={"seed:huge": HUGE_SEED}),
    "pyro_ebm.ml.SamplerDiagnostics.generator": spec(lambda: call(_diag().generator, "cpu")),
    "pyro_ebm.ml.SamplerDiagnostics.state_dict": spec(lambda: call(_diag().state_dict)),
    "pyro_ebm.ml.SamplerDiagnostics.load_state_dict": spec(
        lambda: call(_diag().load_state_dict, (lambda d: (d(1, None), d.state_dict())[1])(_diag(seed=1)))),
    "pyro_ebm.ml.SamplerDiagnostics.probe": spec(lambda: call(_diag().probe)),
    "pyro_ebm.ml.SamplerDiagnostics.measure": spec(lambda: call(_diag().measure, _samples())),
    "pyro_ebm.ml.SamplerDiagnostics.problems": spec(
        lambda: (lambda d: call(d.problems, d.measure(_samples())))(_diag())),
})

# --------------------------------------------------------------------------------------------- train

SPECS.update({
    "pyro_ebm.train.DataOrder": spec(lambda: call(T.DataOrder, 8, 4, seed=0, device="cpu"),
                                     accepts={"seed:huge": HUGE_SEED}),
    "pyro_ebm.train.DataOrder.next": spec(lambda: call(T.DataOrder(8, 4, seed=0).next)),
    "pyro_ebm.train.DataOrder.state_dict": spec(lambda: call(T.DataOrder(8, 4, seed=0).state_dict)),
    "pyro_ebm.train.DataOrder.load_state_dict": spec(
        lambda: call(T.DataOrder(8, 4, seed=0).load_state_dict, T.DataOrder(8, 4, seed=1).state_dict())),
    "pyro_ebm.train.EnergyL2": spec(lambda: call(T.EnergyL2, 0.5)),
    "pyro_ebm.train.GradientPenalty": spec(lambda: call(T.GradientPenalty, 0.5)),
    "pyro_ebm.train.History": spec(lambda: call(T.History, [{"step": 1, "loss": 0.5}])),
    "pyro_ebm.train.History.append": spec(lambda: call(T.History().append, {"step": 1, "loss": 0.5})),
    "pyro_ebm.train.History.keys": spec(lambda: call(T.History([{"step": 1, "loss": 0.5}]).keys)),
    "pyro_ebm.train.History.state_dict": spec(lambda: call(T.History([{"step": 1, "loss": 0.5}]).state_dict)),
    "pyro_ebm.train.History.load_state_dict": spec(
        lambda: call(T.History().load_state_dict, T.History([{"step": 1, "loss": 0.5}]).state_dict())),
    "pyro_ebm.train.set_loss": spec(
        lambda: call(_set_loss_call, L.nll, _pos(), _E().T.contiguous(), beta=1.0),
        accepts={"neg:inf": "+inf excludes a contrastive candidate",
                 "beta:inf": "beta = inf is the zero-temperature limit of nll"}),
    "pyro_ebm.train.spectral_norm": spec(
        lambda: call(T.spectral_norm, nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)),
                     n_power_iterations=1),
        skip={"module": "spectral_norm never calls the module: it re-parametrizes its layers' weights"}),
    "pyro_ebm.train.fit": spec(
        lambda: call(T.fit, _Bowl(), _data(), L.log_loss, N.Corruption(0.3, seed=0), steps=2, batch_size=4,
                     lr=0.01, weight_decay=0.0, seed=0, checkpoint=pathlib.Path(_TMP.name) / "fit.ckpt",
                     checkpoint_every=1, progress=False, lr_schedule="cosine"),
        accepts={"seed:huge": HUGE_SEED}),
    "pyro_ebm.train.save_checkpoint": spec(
        lambda: call(T.save_checkpoint, pathlib.Path(_TMP.name) / "save.ckpt", step=1, **_ckpt_objects()),
        skip={"energy": "the module whose state is saved: it is never called"}),
    "pyro_ebm.train.load_checkpoint": spec(
        lambda: call(T.load_checkpoint, _checkpoint_file(), rank=0, **_ckpt_objects()),
        skip={"energy": "the module the checkpoint is loaded into: it is never called, and its parameters "
                        "are overwritten"}),
})
