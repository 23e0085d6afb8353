r"""Maximum-likelihood training with MCMC negatives, and a check on the sampler while it trains.

The lecture's row 3 of the loss zoo: the negative log-likelihood gradient of an EBM is

.. math:: \frac{\partial \mathcal L}{\partial w} = \frac{\partial F_w(y)}{\partial w}
          - \mathbb E_{\hat y \sim P_w}\Big[\frac{\partial F_w(\hat y)}{\partial w}\Big],

and the second term is estimated with MCMC samples of the model itself. The estimate is only as good as
the samples: if the chains have not mixed, training follows a biased gradient and nothing in the loss
says so. :class:`SamplerDiagnostics` is a callback for :func:`pyro_ebm.train.fit` that, every ``every``
steps, runs a short multi-chain probe of the *same* sampler that makes the negatives, on the current
energy, and records R-hat, bulk ESS, acceptance, divergences and the energy gap between the negatives and
the data in the training history. It emits a :class:`~pyro_ebm.diagnostics.NegativesWarning` when R-hat
is above ``rhat_threshold`` or the bulk ESS is below ``min_ess``.

:func:`make_negatives` builds MCMC negatives by name (persistent HMC chains, batched HMC from noise,
parallel tempering, stock Pyro NUTS through :class:`~pyro_ebm.mcmc.RecordingNUTS`) and :func:`ml_fit`
plugs them and the callback into :func:`~pyro_ebm.train.fit` with :func:`~pyro_ebm.losses.ml_sampled`.

Recipe (the same thing by hand)::

    from pyro_ebm import losses
    from pyro_ebm.negatives import PersistentNegatives
    from pyro_ebm.train import fit
    from pyro_ebm.ml import SamplerDiagnostics

    negatives = PersistentNegatives(buffer_size=4000, kernel="hmc", steps=4, step_size=0.05, seed=0)
    diag = SamplerDiagnostics(energy, negatives, data, every=200)
    history = fit(energy, data, losses.ml_sampled, negatives, steps=4000, callbacks=[diag])
    history["diag_rhat"]        # NaN on the steps without a probe
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from . import losses, mcmc
from ._rng import check_seed
from ._validation import check_device, check_positive_int, check_real
from .diagnostics import NegativesWarning, check_negatives, energy_gap, to_arviz
from .energy import Energy, as_energy
from .fit_check import FitCheck, check_fit
from .mcmc.proposals import DataProposal
from .mcmc.samples import Samples
from .negatives import MCMCNegatives, Negatives, PersistentNegatives, PyroNUTSNegatives

__all__ = [
    "SamplerDiagnostics",
    "PyroNUTSNegatives",
    "make_negatives",
    "ml_fit",
    "MLRun",
    "DIAGNOSTIC_KEYS",
    "check_fit",
    "FitCheck",
    "FitWarning",
    "ML_DEFAULTS",
]

#: keys that :class:`SamplerDiagnostics` adds to the history record of a probed step
DIAGNOSTIC_KEYS = (
    "diag_rhat",
    "diag_rhat_energy",
    "diag_ess_bulk",
    "diag_ess_bulk_energy",
    "diag_acceptance",
    "diag_divergences",
    "diag_energy_gap",
    "diag_energy_gap_se",
)

Seed = Union[int, torch.Generator, None]


class FitWarning(UserWarning):
    """The trained model failed :func:`~pyro_ebm.fit_check.check_fit` on the held-out data."""


# ------------------------------------------------------------------------------------------------------
# the callback


class SamplerDiagnostics:
    r"""A :func:`pyro_ebm.train.fit` callback that checks, every ``every`` steps, the sampler behind the negatives.

    At a probed step it gets a multi-chain :class:`~pyro_ebm.mcmc.Samples` of the current energy:

    * from ``sampler(energy, generator)`` if given (any function returning ``Samples`` with draws
      ``[chains, draws, *event]``);
    * else from the generator's own :meth:`~pyro_ebm.negatives.Negatives.probe`, a short run of the
      sampler that makes the negatives, with ``num_chains``, ``num_draws``, ``thin``, the data and the
      callback's generator:

      - :class:`~pyro_ebm.negatives.PersistentNegatives`: chains started at random replay buffer entries
        (the states the negatives are currently drawn from; before the first call, the generator's own
        fresh states), the same kernel (``"gibbs"`` included), step size, leapfrog steps and noise, no
        adaptation; one draw every ``thin`` transitions (default ``thin = negatives.steps``: one draw per
        training call);
      - :class:`~pyro_ebm.negatives.MCMCNegatives` (batched HMC / MALA / ULA, with or without
        ``tempering``): chains from the generator's base distribution, the same ``num_warmup`` and
        options, then ``num_draws`` draws;
      - :class:`~pyro_ebm.negatives.ContrastiveDivergence`: chains started at data points, the same
        fixed-step kernel (this shows how far CD-k chains are from equilibrium);
      - :class:`~pyro_ebm.negatives.PyroNUTSNegatives`: the draws of its last call (its particles are
        the chains), or a fresh NUTS run before the first call;
    * else from the generator's ``last_samples`` when it holds ``>= 4`` draws per chain and at least two
      chains (a generator of your own).

    It records into the history record of that step (see :data:`DIAGNOSTIC_KEYS`):

    * ``diag_rhat`` -- the largest rank-normalized split R-hat over the coordinates of ``y``;
    * ``diag_rhat_energy`` -- R-hat of the energy ``F(y)`` of the draws (a scalar summary that does not
      care *which* of several symmetric modes a chain sits in);
    * ``diag_ess_bulk`` / ``diag_ess_bulk_energy`` -- smallest bulk ESS over the coordinates / of ``F``;
    * ``diag_acceptance`` -- mean acceptance rate of the probe (1 for ULA, which has no accept step);
    * ``diag_divergences`` -- number of divergent transitions in the probe;
    * ``diag_energy_gap`` -- ``mean F(negatives) - mean F(data)`` over the probe's draws and ``num_data``
      data points (the sign of the history's ``gap``), with ``diag_energy_gap_se`` its standard error
      (ESS-based for the chains, :func:`pyro_ebm.diagnostics.energy_gap`).

    R-hat and ESS are those of :func:`~pyro_ebm.diagnostics.check_negatives` (ArviZ's ``az.rhat`` and
    ``az.ess(method="bulk")``) on the probe's draws. The callback's random state and its reports are in
    :meth:`state_dict`; :func:`ml_fit` puts them in ``fit``'s checkpoints, so a resumed run probes exactly
    as the uninterrupted one. A
    :class:`~pyro_ebm.diagnostics.NegativesWarning` is emitted when a quantity named in ``check`` has
    R-hat ``> rhat_threshold`` or bulk ESS ``< min_ess`` (and, if ``max_divergences`` is set, when the
    probe had more divergences). On a multimodal target chains that stay in their own mode give a large
    coordinate R-hat even when every mode is sampled well; ``check=("energy",)`` then checks only the
    within-mode mixing, and the coordinate R-hat is still recorded.

    :param energy: the energy being trained (the same object given to ``fit``).
    :param negatives: the negative generator given to ``fit``.
    :param data: the training data ``[N, *event]`` (for the energy gap; ``None`` skips the gap).
    :param every: probe every this many steps (and at step 1 if ``at_start``).
    :param num_chains: chains of the probe (``>= 2``).
    :param num_draws: draws per chain kept (``>= 4``).
    :param thin: transitions per kept draw (persistent and CD probes; default: the generator's ``steps``
        or ``k``).
    :param sampler: optional ``sampler(energy, generator) -> Samples`` replacing the automatic probe.
    :param check: which R-hat/ESS quantities can warn: ``"y"`` and/or ``"energy"``.
    :param rhat_threshold: R-hat above this warns (1.05).
    :param min_ess: bulk ESS below this warns (50 effective draws over the whole probe).
    :param max_divergences: warn when the probe has more divergent transitions (``None``: never).
    :param num_data: data points used for the energy gap.
    :param at_start: also probe after the first step.
    :param warn: emit warnings (``False`` only records).
    :param seed: int or ``torch.Generator`` of the probe (chains' starts and transitions).

    :ivar reports: list of dicts, one per probe (``step`` plus the recorded values and ``problems``).
    :ivar last_samples: the probe's :class:`~pyro_ebm.mcmc.Samples` of the last probe.

    Example::

        >>> import torch
        >>> from pyro_ebm import Energy, losses
        >>> from pyro_ebm.negatives import PersistentNegatives
        >>> from pyro_ebm.train import fit
        >>> class Bowl(Energy):
        ...     def __init__(self):
        ...         super().__init__(event_shape=(2,))
        ...         self.log_prec = torch.nn.Parameter(torch.zeros(()))
        ...     def forward(self, y, x=None):
        ...         return 0.5 * self.log_prec.exp() * (y ** 2).sum(-1)
        >>> data = torch.randn(512, 2, generator=torch.Generator().manual_seed(0)) * 0.5
        >>> energy = Bowl()
        >>> neg = PersistentNegatives(256, kernel="hmc", steps=2, step_size=0.2, seed=0)
        >>> diag = SamplerDiagnostics(energy, neg, data, every=20, num_chains=4, num_draws=100, seed=0)
        >>> h = fit(energy, data, losses.ml_sampled, neg, steps=40, batch_size=64, lr=0.05,
        ...         callbacks=[diag], progress=False)
        >>> [r["step"] for r in diag.reports]
        [20, 40]
        >>> diag.reports[-1]["diag_rhat"] < 1.05
        True
    """

    def __init__(
        self,
        energy,
        negatives,
        data: Optional[torch.Tensor] = None,
        *,
        every: int = 100,
        num_chains: int = 8,
        num_draws: int = 200,
        thin: Optional[int] = None,
        sampler: Optional[Callable] = None,
        check: Sequence[str] = ("y", "energy"),
        rhat_threshold: float = 1.05,
        min_ess: float = 50.0,
        max_divergences: Optional[int] = None,
        num_data: int = 1000,
        at_start: bool = False,
        warn: bool = True,
        seed: Seed = 0,
    ):
        if not callable(energy):
            raise TypeError(f"energy must be an Energy (the one being trained), got {type(energy).__name__}")
        self.energy = energy
        self.negatives = negatives
        if data is not None and (not isinstance(data, torch.Tensor) or not data.is_floating_point()):
            raise TypeError("data must be a floating-point tensor [N, *event_shape] or None")
        self.data = data
        self.every = check_positive_int(every, "every")
        self.num_chains = check_positive_int(num_chains, "num_chains", minimum=2)
        self.num_draws = check_positive_int(num_draws, "num_draws", minimum=4)
        self.thin = None if thin is None else check_positive_int(thin, "thin")
        if sampler is not None and not callable(sampler):
            raise TypeError("sampler must be a callable sampler(energy, generator) -> Samples")
        self.sampler = sampler
        check = (check,) if isinstance(check, str) else tuple(check)
        if not check or any(c not in ("y", "energy") for c in check):
            raise ValueError(f"check must name 'y' and/or 'energy', got {check!r}")
        self.check = check
        self.rhat_threshold = check_real(rhat_threshold, "rhat_threshold", minimum=1, strict=True)
        self.min_ess = check_real(min_ess, "min_ess", minimum=0)
        self.max_divergences = None if max_divergences is None else check_positive_int(
            max_divergences, "max_divergences", minimum=0)
        self.num_data = check_positive_int(num_data, "num_data")
        self.at_start = bool(at_start)
        self.warn = bool(warn)
        self.seed = check_seed(seed)
        self._gen: Optional[torch.Generator] = None
        self._pending_rng = None
        self.reports: List[dict] = []
        self.last_samples: Optional[Samples] = None

    # -- plumbing ------------------------------------------------------------------------------------
    def _energy(self) -> Energy:
        E = self.energy
        if isinstance(E, Energy):
            return E
        if self.data is None:
            raise ValueError("a plain-callable energy needs data (for its event shape)")
        return as_energy(E, event_shape=self.data.shape[1:])

    def _ref(self):
        """dtype and device of the probe."""
        if self.data is not None:
            return self.data.dtype, self.data.device
        p = next(iter(self.energy.parameters()), None) if isinstance(self.energy, torch.nn.Module) else None
        if p is not None:
            return p.dtype, p.device
        return torch.get_default_dtype(), torch.device("cpu")

    def generator(self, device) -> torch.Generator:
        """The probe's ``torch.Generator`` on ``device`` (made from ``seed`` on first use)."""
        device = check_device(device)
        if self._gen is None or self._gen.device.type != device.type:
            self._gen = mcmc.make_generator(self.seed, device)
            if self._pending_rng is not None:  # restored by load_state_dict before the first probe
                self._gen.set_state(self._pending_rng)
                self._pending_rng = None
        return self._gen

    def state_dict(self) -> dict:
        """The callback's random state and its reports: what a resumed run needs to probe bit for bit."""
        rng = self._gen.get_state() if self._gen is not None else self._pending_rng
        return {"rng": rng, "reports": [dict(r, problems=list(r["problems"])) for r in self.reports]}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`."""
        if not isinstance(state, dict) or "reports" not in state:
            raise ValueError("state must be a SamplerDiagnostics.state_dict()")
        self.reports = [dict(r, problems=list(r["problems"])) for r in state["reports"]]
        rng = state.get("rng")
        if rng is None:
            return
        if self._gen is not None:
            self._gen.set_state(rng)
        else:
            self._pending_rng = rng

    # -- the probe -----------------------------------------------------------------------------------
    def probe(self) -> Samples:
        """A multi-chain :class:`~pyro_ebm.mcmc.Samples` of the negatives' sampler on the current energy."""
        E = self._energy()
        dtype, device = self._ref()
        gen = self.generator(device)
        neg = self.negatives
        if self.sampler is not None:
            s = self.sampler(E, gen)
            if not isinstance(s, Samples):
                raise TypeError(f"sampler must return pyro_ebm.mcmc.Samples, got {type(s).__name__}")
            return s
        if callable(getattr(neg, "probe", None)):
            return neg.probe(E, self.num_chains, self.num_draws, seed=gen, data=self.data, thin=self.thin,
                             dtype=dtype, device=device)
        last = getattr(neg, "last_samples", None)  # a generator of one's own that keeps its draws
        if isinstance(last, Samples) and isinstance(last.draws, torch.Tensor) and last.num_draws >= 4 \
                and last.num_chains >= 2:
            return last
        raise TypeError(
            f"cannot probe a {type(neg).__name__}: give sampler=..., or use a generator with a probe method "
            "(the MCMC generators of pyro_ebm.negatives) or whose last_samples hold >= 4 draws of >= 2 chains"
        )

    # -- the numbers ---------------------------------------------------------------------------------
    def measure(self, samples: Samples) -> Dict[str, float]:
        """R-hat, bulk ESS, acceptance, divergences and the energy gap of ``samples`` (a :class:`Samples`)."""
        E = self._energy()
        draws = samples.draws
        if isinstance(draws, dict):
            if len(draws) != 1:
                raise ValueError("samples of an energy must have one variable")
            draws = next(iter(draws.values()))
        draws = draws.detach()
        C, S = draws.shape[:2]
        if S < 4 or C < 2:
            raise ValueError(f"the probe needs >= 2 chains of >= 4 draws, got {C} x {S}")
        with torch.no_grad():
            F = E(draws.reshape((C * S,) + tuple(E.event_shape))).reshape(C, S)
        # R-hat and bulk ESS by the library's one set of reductions (check_negatives: rank-normalized split
        # R-hat, bulk ESS), on float64 copies; a quantity with non-finite values gets NaN
        posterior = {"y": draws.cpu().double().numpy().reshape(C, S, -1), "F": F.detach().cpu().double().numpy()}
        finite = {k: v for k, v in posterior.items() if np.isfinite(v).all()}
        reports = {}
        if finite:
            data = to_arviz(finite)
            reports = {k: check_negatives(data, var_names=k, warn=False) for k in finite}
        out = {}
        for var, suffix in (("y", ""), ("F", "_energy")):
            r = reports.get(var)
            out["diag_rhat" + suffix] = math.nan if r is None else r.max_rhat
            out["diag_ess_bulk" + suffix] = math.nan if r is None else r.min_ess_bulk
        st = samples.stats
        out["diag_acceptance"] = float(st["acceptance_rate"].double().mean()) if "acceptance_rate" in st else math.nan
        out["diag_divergences"] = float(st["diverging"].sum()) if "diverging" in st else math.nan
        gap, se = math.nan, math.nan
        if self.data is not None:
            n = min(self.num_data, self.data.shape[0])
            gen = self.generator(self.data.device)
            idx = torch.randperm(self.data.shape[0], generator=gen, device=gen.device)[:n].to(self.data.device)
            with torch.no_grad():
                pos = E(self.data[idx])
            if bool(torch.isfinite(F).all()) and bool(torch.isfinite(pos).all()):
                g = energy_gap(pos.detach().cpu(), F.cpu())
                gap, se = g.gap, g.stderr
        out["diag_energy_gap"] = float(gap)
        out["diag_energy_gap_se"] = float(se)
        return out

    def problems(self, values: Dict[str, float]) -> List[str]:
        """The failed checks of one probe's ``values`` (empty when all pass)."""
        found = []
        names = {"y": ("diag_rhat", "diag_ess_bulk", "y"), "energy": ("diag_rhat_energy", "diag_ess_bulk_energy", "F(y)")}
        for c in self.check:
            rk, ek, label = names[c]
            r, e = values[rk], values[ek]
            if math.isnan(r) or r > self.rhat_threshold:
                found.append(f"R-hat of {label} {r:.3f} > {self.rhat_threshold}")
            if not e >= self.min_ess:
                found.append(f"bulk ESS of {label} {e:.1f} < {self.min_ess:g}")
        if self.max_divergences is not None and values["diag_divergences"] > self.max_divergences:
            found.append(f"{int(values['diag_divergences'])} divergent transitions")
        return found

    def __call__(self, step: int, history) -> bool:
        step = check_positive_int(step, "step")
        if not (step % self.every == 0 or (self.at_start and step == 1)):
            return False
        samples = self.probe()
        values = self.measure(samples)
        self.last_samples = samples
        problems = self.problems(values)
        if history is not None and len(history):
            history.records[-1].update(values)
        self.reports.append({"step": int(step), **values, "problems": problems})
        if problems and self.warn:
            warnings.warn(
                f"MCMC negatives at step {step} look unreliable: " + "; ".join(problems)
                + " (longer chains, a better step size, tempering, or more steps per call)",
                NegativesWarning,
                stacklevel=2,
            )
        return False

    def __repr__(self) -> str:
        return (f"SamplerDiagnostics(every={self.every}, num_chains={self.num_chains}, num_draws={self.num_draws}, "
                f"check={self.check})")


# ------------------------------------------------------------------------------------------------------
# convenience


def make_negatives(sampler: str = "persistent", data: Optional[torch.Tensor] = None, **options) -> Negatives:
    r"""MCMC negatives for maximum likelihood, by name, with the defaults of :func:`ml_fit`.

    ================  ===================================================================================
    ``sampler``       generator (defaults; any option overrides)
    ================  ===================================================================================
    ``"persistent"``  :class:`~pyro_ebm.negatives.PersistentNegatives`, HMC kernel: ``buffer_size=1024``,
                      ``steps=2`` transitions of ``n_leapfrog=5`` per call, step size adapted across calls
                      to ``target_accept=0.7`` (from ``step_size=0.05``), ``reinit_prob=0``; with
                      ``data``, one independence jump per call from a
                      :class:`~pyro_ebm.mcmc.proposals.DataProposal` of the data (``jump``), which also
                      makes the first buffer (``noise``)
    ``"hmc"``         :class:`~pyro_ebm.negatives.MCMCNegatives`: fresh batched HMC chains from
                      ``init_scale * N(0, I)`` with step-size/mass/trajectory adaptation,
                      ``num_warmup=50``, ``init_scale=2``
    ``"tempering"``   the same with parallel tempering, ``tempering=4`` replicas (ladder down to
                      ``tempering_min_ratio=0.1``)
    ``"nuts"``        :class:`~pyro_ebm.negatives.PyroNUTSNegatives` (stock Pyro NUTS via ``RecordingNUTS``): ``num_warmup=50``,
                      ``num_samples=8``, ``init_scale=2`` -- slow, a reference
    ``"ula"``         :class:`~pyro_ebm.negatives.PersistentNegatives` with unadjusted Langevin:
                      ``steps=20``, ``step_size=0.01``, ``reinit_prob=0.05``
    ================  ===================================================================================

    Why these persistent defaults (measured on the 8 Gaussians and rings, :doc:`/ml`): without jumps the
    chains cannot cross between modes, so the buffer's share of each mode is wherever its chains fell,
    and with a learning rate high enough to carve the modes in a few thousand steps training fell into
    spikes (held-out NLL 1e5 nats); a fixed step size left the chains at acceptance 0.99 (steps far too
    small) or 0 as the energy sharpened; restarts from noise (``reinit_prob``) bias the negatives
    towards short-run states and, with jumps doing the exploring, were worse on the uneven mixture
    (gap 0.06 against 0.015 nats); a buffer of two batches keeps each chain within a few updates of the
    current energy.

    :param data: ``[N, *event]`` training data for the jump proposal (``"persistent"`` only; ``None``: no
        jumps, uniform noise on ``[-1, 1]`` for the first buffer).

    Example::

        >>> make_negatives("persistent", seed=0)
        PersistentNegatives(buffer_size=1024, steps=2, reinit_prob=0.0, kernel='hmc')
        >>> make_negatives("tempering", seed=0).kernel_options
        {'tempering': 4, 'tempering_min_ratio': 0.1}
    """
    if data is not None and sampler != "persistent":
        raise ValueError(f"data is for the jumps of sampler='persistent', got sampler={sampler!r}")
    if sampler == "persistent":
        opts = dict(buffer_size=1024, steps=2, step_size=0.05, n_leapfrog=5, reinit_prob=0.0, kernel="hmc")
        if options.get("kernel", "hmc") in ("hmc", "mala"):
            opts["target_accept"] = 0.7
        if data is not None and options.get("kernel", "hmc") != "gibbs":
            seed = options.get("seed")
            proposal = DataProposal(data, seed=seed if isinstance(seed, int) else 0)
            opts.update(jump=proposal, noise=proposal.sample)
        opts.update(options)
        return PersistentNegatives(**opts)
    if sampler == "ula":
        opts = dict(buffer_size=2000, steps=20, step_size=0.01, reinit_prob=0.05, kernel="ula")
        opts.update(options)
        return PersistentNegatives(**opts)
    if sampler == "hmc":
        opts = dict(kernel="hmc", num_warmup=50, init_scale=2.0)
        opts.update(options)
        return MCMCNegatives(**opts)
    if sampler == "tempering":
        opts = dict(kernel="hmc", num_warmup=50, init_scale=2.0, tempering=4, tempering_min_ratio=0.1)
        opts.update(options)
        return MCMCNegatives(**opts)
    if sampler == "nuts":
        opts = dict(num_warmup=50, num_samples=8, init_scale=2.0)
        opts.update(options)
        return PyroNUTSNegatives(**opts)
    raise ValueError(f"sampler must be 'persistent', 'ula', 'hmc', 'tempering' or 'nuts', got {sampler!r}")


class MLRun(NamedTuple):
    """Result of :func:`ml_fit`: the training ``history``, the ``negatives``, the ``diagnostics`` callback and,
    when ``heldout`` was given, the verdict of :func:`~pyro_ebm.fit_check.check_fit` (``check``)."""

    history: object
    negatives: object
    diagnostics: Optional[SamplerDiagnostics]
    check: Optional[FitCheck] = None


#: ``ml_fit``'s training defaults (see its docstring for why each is what it is)
ML_DEFAULTS = dict(steps=6000, batch_size=512, lr=1e-2, lr_schedule="cosine")


def ml_fit(
    energy,
    data: torch.Tensor,
    *,
    sampler: Union[str, Callable] = "persistent",
    sampler_options: Optional[dict] = None,
    diagnose_every: Union[int, None, str] = "auto",
    diagnostics_options: Optional[dict] = None,
    heldout: Optional[torch.Tensor] = None,
    reference=None,
    check_options: Optional[dict] = None,
    callbacks: Iterable[Callable] = (),
    seed: Optional[int] = 0,
    **fit_options,
) -> MLRun:
    r"""Maximum likelihood with MCMC negatives: :func:`~pyro_ebm.train.fit` with
    :func:`~pyro_ebm.losses.ml_sampled`, negatives from :func:`make_negatives`, a
    :class:`SamplerDiagnostics` callback and, given ``heldout``, a verdict on the fit.

    The defaults are a recipe measured to reach the true density of the embedded 2-D data sets with an
    MLP energy (``benchmarks/training_truth.py``; table and reasons in :doc:`/ml`):

    * **negatives** -- persistent HMC chains (a buffer of 1024) whose step size follows the energy to an
      acceptance of 0.7, with one independence Metropolis-Hastings jump per call from a kernel density
      estimate of the data mixed with a uniform box (:class:`~pyro_ebm.mcmc.proposals.DataProposal`), so
      that the chains move between modes and into regions where the model has mass and the data have
      none (:func:`make_negatives`);
    * **optimisation** -- Adam, ``lr=1e-2`` with a cosine decay to 0 (``lr_schedule="cosine"``), batches
      of 512 (fewer if the data are fewer), ``steps=6000``: with batches of 128 the gradient noise alone
      kept the 8 Gaussians 0.04 nats from the truth even with exact negatives; the decay averages the
      last updates; the thin rings needed 6000 steps (at 3000, seeds 0-2 were 0.06, 0.22 and 0.15 nats
      off);
    * **no energy regularizer**: an L2 penalty on the energies biases the fit (it pulls every energy
      towards 0) and the recipe is stable without it.

    :param energy: the energy to train.
    :param data: ``[N, *event]`` floating-point training data (finite).
    :param sampler: a name for :func:`make_negatives` or a ready negative generator.
    :param sampler_options: options of :func:`make_negatives` (``seed`` defaults to ``seed``, plus the
        process's rank in a data-parallel run, so that every rank keeps chains of its own).
    :param diagnose_every: probe the sampler every this many steps (``"auto"``: five probes over the run;
        ``None``: no probe).
    :param diagnostics_options: options of :class:`SamplerDiagnostics`; here ``check`` defaults to
        ``("energy",)`` (a sampler that mixes within modes but rarely between them, as any local kernel on
        well separated modes, gives a large coordinate R-hat however well it samples, so only the R-hat
        and ESS of ``F`` warn; the coordinate R-hat is still recorded), ``num_chains`` to 16 and
        ``num_draws`` to 400 (with 8 chains of 200 draws the split R-hat of ``F`` on the exact uneven
        mixture exceeded 1.05 in 3 of 10 probes, with 16 of 400 in none).
    :param heldout: ``[M, *event]`` held-out data: after training, :func:`~pyro_ebm.fit_check.check_fit`
        compares the model with them (and the replay buffer with the model), and the result is
        ``run.check``; a :class:`~pyro_ebm.diagnostics.NegativesWarning`-free run can still be a wrong
        model, and this is what says so.
    :param reference: for ``check_fit``: a reference density (``log_prob`` callable or distribution)
        whose held-out NLL the model's is compared with.
    :param check_options: more options of ``check_fit`` (``alpha``, ``nll_tolerance``, ``bounds``, ...).
    :param callbacks: more callbacks for ``fit``; they run after the diagnostics callback, so at a probed
        step ``history.last`` already holds the ``diag_*`` values.
    :param seed: seed of ``fit``, of the negatives and of the probe.
    :param fit_options: the rest of :func:`~pyro_ebm.train.fit`'s options (``steps``, ``batch_size``,
        ``optimizer``, ``lr``, ``lr_schedule``, ``regularizers``, ``progress``, ``checkpoint``,
        ``resume``, ...), with the defaults above. A checkpoint holds the diagnostics' random state and
        reports too, so a resumed run gives bit for bit the parameters *and* the probes of the
        uninterrupted one. Under ``torch.distributed`` (e.g. ``torchrun``) it runs unchanged, data
        parallel (see :func:`~pyro_ebm.train.fit`): every rank has its own chains and shard of each
        batch, and probes its own chains.
    :returns: :class:`MLRun` ``(history, negatives, diagnostics, check)``.

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> from pyro_ebm.ml import ml_fit
        >>> class Bowl(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.log_prec = torch.nn.Parameter(torch.zeros(()))
        ...     def forward(self, y):
        ...         return 0.5 * self.log_prec.exp() * (y ** 2).sum(-1)
        >>> data = torch.randn(1024, 2, generator=torch.Generator().manual_seed(0)) * 0.5
        >>> heldout = torch.randn(500, 2, generator=torch.Generator().manual_seed(1)) * 0.5
        >>> energy = as_energy(Bowl(), event_shape=(2,))
        >>> run = ml_fit(energy, data, steps=300, batch_size=256, lr=0.05, heldout=heldout, progress=False)
        >>> 3.5 < float(energy.module.log_prec.detach().exp()) < 4.5      # the data's precision is 4
        True
        >>> run.check.ok
        True
    """
    from ._distributed import world
    from .train import fit

    if not isinstance(data, torch.Tensor) or not data.is_floating_point() or data.dim() < 1:
        got = f"shape {tuple(data.shape)} dtype {data.dtype}" if isinstance(data, torch.Tensor) else type(data).__name__
        raise TypeError(f"data must be a floating-point tensor [N, *event_shape], got {got}")
    if data.dim() < 2 or data.shape[0] < 2:
        raise ValueError(f"data must hold at least 2 points [N, *event_shape], got shape {tuple(data.shape)}")
    flat = data.reshape(data.shape[0], -1)
    bad = ~torch.isfinite(flat).all(-1)
    if bool(bad.any()):
        raise ValueError(f"data must be finite: {int(bad.sum())} of its {data.shape[0]} rows are not "
                         f"(first: row {int(bad.nonzero()[0, 0])})")
    if heldout is None and (reference is not None or check_options):
        raise ValueError("reference and check_options are for the check on heldout data: give heldout too")
    if heldout is not None:  # checked now, not after a long training
        if not isinstance(heldout, torch.Tensor) or not heldout.is_floating_point() \
                or tuple(heldout.shape[1:]) != tuple(data.shape[1:]) or heldout.shape[0] < 20:
            got = f"shape {tuple(heldout.shape)}" if isinstance(heldout, torch.Tensor) else type(heldout).__name__
            raise ValueError(f"heldout must be a floating-point tensor [M >= 20, {', '.join(map(str, data.shape[1:]))}] "
                             f"like data, got {got}")
        if not bool(torch.isfinite(heldout).all()):
            raise ValueError("heldout must be finite")
        if reference is not None and not (callable(reference) or callable(getattr(reference, "log_prob", None))):
            raise TypeError(f"reference must be a log_prob callable or have .log_prob, got {type(reference).__name__}")
    opts_fit = dict(ML_DEFAULTS)
    # the default batch: 512, or all the data when fewer (a multiple of the processes in a data-parallel run)
    opts_fit["batch_size"] = min(opts_fit["batch_size"], data.shape[0] - data.shape[0] % world()[1] or 1)
    if "optimizer" in fit_options:  # the user's optimizer keeps its own learning rate and no schedule is imposed
        opts_fit.pop("lr")
        opts_fit["lr_schedule"] = None
    opts_fit.update(fit_options)
    if isinstance(sampler, str):
        opts = dict(sampler_options or {})
        opts.setdefault("seed", None if seed is None else seed + world()[0])
        negatives = make_negatives(sampler, data=data if sampler == "persistent" else None, **opts)
    elif callable(sampler):
        if sampler_options:
            raise ValueError("sampler_options are for a sampler given by name")
        negatives = sampler
    else:
        raise TypeError(f"sampler must be a name or a negative generator, got {type(sampler).__name__}")
    callbacks = list(callbacks)
    diag = None
    if isinstance(diagnose_every, str) and diagnose_every != "auto":
        raise ValueError(f"diagnose_every must be a number of steps, 'auto' or None, got {diagnose_every!r}")
    if diagnose_every is not None and diagnose_every != "auto":
        check_positive_int(diagnose_every, "diagnose_every")
    if diagnose_every == "auto":
        diagnose_every = max(int(opts_fit["steps"]) // 5, 1) if isinstance(opts_fit["steps"], int) else 500
    if diagnose_every is not None:
        dopts = dict(diagnostics_options or {})
        dopts.setdefault("seed", seed)
        dopts.setdefault("check", ("energy",))
        dopts.setdefault("num_chains", 16)
        dopts.setdefault("num_draws", 400)
        diag = SamplerDiagnostics(energy, negatives, data, every=diagnose_every, **dopts)
        callbacks.insert(0, diag)  # first, so that the other callbacks see its numbers in the history
    opts_fit.setdefault("loss", losses.ml_sampled)
    loss = opts_fit.pop("loss")
    history = fit(energy, data, loss, negatives, callbacks=callbacks, seed=seed, **opts_fit)
    check = None
    if heldout is not None:
        copts = dict(check_options or {})
        copts.setdefault("seed", 0 if seed is None else seed)
        buffer = getattr(negatives, "buffer", None)
        if isinstance(buffer, torch.Tensor):
            copts.setdefault("negatives", buffer)
        E = energy if isinstance(energy, Energy) else as_energy(energy, event_shape=data.shape[1:])
        check = check_fit(E, heldout, reference=reference, **copts)
        if not check.ok:
            warnings.warn("the trained model does not fit the held-out data: " + "; ".join(check.problems),
                          FitWarning, stacklevel=2)
    return MLRun(history, negatives, diag, check)
