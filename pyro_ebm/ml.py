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
import numbers
import warnings
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from . import _arviz, losses, mcmc
from ._validation import check_beta, check_positive_int
from .diagnostics import NegativesWarning
from .energy import Energy, as_energy
from .mcmc.samples import Samples
from .negatives import (
    ContrastiveDivergence,
    MCMCNegatives,
    Negatives,
    PersistentNegatives,
    _check_init,
    _fixed_kernel_options,
    _init_noise,
)

__all__ = [
    "SamplerDiagnostics",
    "PyroNUTSNegatives",
    "make_negatives",
    "ml_fit",
    "MLRun",
    "DIAGNOSTIC_KEYS",
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


# ------------------------------------------------------------------------------------------------------
# stock Pyro NUTS as a negative generator


class PyroNUTSNegatives(Negatives):
    r"""Negatives drawn by stock ``pyro.infer.MCMC`` with :class:`~pyro_ebm.mcmc.RecordingNUTS`.

    Each call puts all ``M = n_neg * batch`` negatives into *one* Pyro model,
    ``y ~ GibbsBoltzmann(F, beta)`` with batch ``[M]`` made an event, so that a single NUTS chain moves
    ``M`` independent copies of the 2-D (or ``D``-dimensional) target at once (Pyro's ``num_chains > 1``
    would start processes). The chain starts from the base distribution, adapts for ``num_warmup``
    iterations, draws ``num_samples`` and the last draw is returned.

    :attr:`last_samples` holds the draws in the per-particle layout ``[M, num_samples, *event]``: the
    ``M`` particles are independent chains of the same target, so R-hat and ESS across them are
    meaningful. The joint transition's statistics are replicated over the particles, except
    ``diverging``, which is put on particle 0 only (so that divergences are counted once).
    :attr:`last_mcmc` is the ``pyro.infer.MCMC`` object of the last call.

    This is the slow, reference path (Python overhead per leapfrog step); the batched samplers of
    :mod:`pyro_ebm.mcmc` are much faster for training. Unconditional energies only.

    :param n_neg: negatives per example.
    :param num_warmup: NUTS warmup iterations per call.
    :param num_samples: draws per call (``>= 4`` lets :class:`SamplerDiagnostics` use them directly).
    :param beta: inverse temperature.
    :param init: base distribution ``init(n, generator) -> [n, *event]`` (default ``init_scale * N(0, I)``).
    :param init_scale: standard deviation of the default base distribution.
    :param seed: int or ``torch.Generator``.
    :param nuts_options: passed to :class:`~pyro_ebm.mcmc.RecordingNUTS` (``max_tree_depth``,
        ``target_accept_prob``, ``step_size``, ...).
    """

    def __init__(
        self,
        n_neg: int = 1,
        *,
        num_warmup: int = 50,
        num_samples: int = 10,
        beta: float = 1.0,
        init: Optional[Callable] = None,
        init_scale: float = 1.0,
        seed: Seed = None,
        **nuts_options,
    ):
        super().__init__(seed)
        self.n_neg = check_positive_int(n_neg, "n_neg")
        self.num_warmup = check_positive_int(num_warmup, "num_warmup", minimum=0)
        self.num_samples = check_positive_int(num_samples, "num_samples")
        self.beta = check_beta(beta)
        self.init_scale = _check_init(init, init_scale)
        self.init = init
        nuts_options.setdefault("max_tree_depth", 6)
        self.nuts_options = nuts_options
        self.last_samples: Optional[Samples] = None
        self.last_mcmc = None

    def __call__(self, energy, y, x=None):
        import pyro
        from pyro.infer import MCMC

        from .gibbs import GibbsBoltzmann

        if x is not None:
            raise ValueError("PyroNUTSNegatives supports unconditional energies only (x must be None)")
        E = energy if isinstance(energy, Energy) else as_energy(energy, event_shape=y.shape[1:])
        event = tuple(E.event_shape)
        batch = tuple(y.shape[: y.dim() - len(event)])
        M = self.n_neg * int(math.prod(batch))
        gen = self.rng(y.device)
        q0 = _init_noise(self.init, M, event, self.init_scale, gen, y.dtype, y.device)
        beta = self.beta

        def model():
            site = GibbsBoltzmann(E, beta=beta).expand([M]).to_event(1)
            pyro.sample("y", site)

        kernel = mcmc.RecordingNUTS(model, **self.nuts_options)
        seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            run = MCMC(kernel, num_samples=self.num_samples, warmup_steps=self.num_warmup,
                       initial_params={"y": q0}, disable_progbar=True)
            run.run()
        s = mcmc.from_pyro_mcmc(run)
        draws = s.draws["y"][0].detach()  # [S, M, *event]
        S = draws.shape[0]
        per_particle = draws.movedim(0, 1)  # [M, S, *event]
        stats = {}
        for k, v in s.stats.items():
            row = v[0]  # [S]
            if k == "diverging":
                full = torch.zeros((M, S), dtype=torch.bool, device=row.device)
                full[0] = row
            else:
                full = row.unsqueeze(0).expand(M, S).clone()
            stats[k] = full
        self.last_mcmc = run
        self.last_samples = Samples(draws=per_particle, stats=stats, kernel="RecordingNUTS", beta=beta,
                                    info={"joint_chain": True})
        self.diagnostics = {
            "acceptance_rate": float(s.stats["acceptance_rate"].float().mean()),
            "step_size": float(s.stats["step_size"].float().mean()),
            "diverging": float(s.stats["diverging"].float().sum()),
        }
        out = per_particle[:, -1]
        return out.reshape((self.n_neg,) + batch + event)

    def __repr__(self) -> str:
        return f"PyroNUTSNegatives(n_neg={self.n_neg}, num_warmup={self.num_warmup}, num_samples={self.num_samples})"


# ------------------------------------------------------------------------------------------------------
# the callback


class SamplerDiagnostics:
    r"""A :func:`pyro_ebm.train.fit` callback that checks, every ``every`` steps, the sampler behind the negatives.

    At a probed step it gets a multi-chain :class:`~pyro_ebm.mcmc.Samples` of the current energy:

    * from ``sampler(energy, generator)`` if given (any function returning ``Samples`` with draws
      ``[chains, draws, *event]``);
    * else from the generator's :attr:`last_samples` when it holds ``>= 4`` draws per chain and at least
      two chains (e.g. :class:`PyroNUTSNegatives`);
    * else by running a probe of the generator's own transition with :func:`pyro_ebm.mcmc.sample`:

      - :class:`~pyro_ebm.negatives.PersistentNegatives`: ``num_chains`` chains started at random replay
        buffer entries (the states the negatives are currently drawn from), the same kernel, step size,
        leapfrog steps and noise, no adaptation; ``num_draws`` draws, one every ``thin`` transitions
        (default ``thin = negatives.steps``: one draw per training call);
      - :class:`~pyro_ebm.negatives.MCMCNegatives` (batched HMC / MALA / ULA, with or without
        ``tempering``): ``num_chains`` chains from the generator's base distribution, the same
        ``num_warmup`` and options, then ``num_draws`` draws;
      - :class:`~pyro_ebm.negatives.ContrastiveDivergence`: ``num_chains`` chains started at data points,
        the same fixed-step kernel (this shows how far CD-k chains are from equilibrium).

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

    R-hat and ESS are ArviZ's (``az.rhat``, ``az.ess(method="bulk")``) on the probe's draws. A
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
        if isinstance(rhat_threshold, bool) or not isinstance(rhat_threshold, numbers.Real) or not rhat_threshold > 1:
            raise ValueError(f"rhat_threshold must be a number > 1, got {rhat_threshold!r}")
        self.rhat_threshold = float(rhat_threshold)
        if isinstance(min_ess, bool) or not isinstance(min_ess, numbers.Real) or not min_ess >= 0:
            raise ValueError(f"min_ess must be a number >= 0, got {min_ess!r}")
        self.min_ess = float(min_ess)
        self.max_divergences = None if max_divergences is None else check_positive_int(
            max_divergences, "max_divergences", minimum=0)
        self.num_data = check_positive_int(num_data, "num_data")
        self.at_start = bool(at_start)
        self.warn = bool(warn)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, torch.Generator))):
            raise TypeError(f"seed must be an int, a torch.Generator or None, got {type(seed).__name__}")
        self.seed = seed
        self._gen: Optional[torch.Generator] = None
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
        device = torch.device(device)
        if self._gen is None or self._gen.device.type != device.type:
            self._gen = mcmc.make_generator(self.seed, device)
        return self._gen

    # -- the probe -----------------------------------------------------------------------------------
    def probe(self) -> Samples:
        """A multi-chain :class:`~pyro_ebm.mcmc.Samples` of the negatives' sampler on the current energy."""
        E = self._energy()
        dtype, device = self._ref()
        gen = self.generator(device)
        C, S = self.num_chains, self.num_draws
        neg = self.negatives
        if self.sampler is not None:
            s = self.sampler(E, gen)
            if not isinstance(s, Samples):
                raise TypeError(f"sampler must return pyro_ebm.mcmc.Samples, got {type(s).__name__}")
            return s
        last = getattr(neg, "last_samples", None)
        if isinstance(last, Samples) and isinstance(last.draws, torch.Tensor) and last.num_draws >= 4 \
                and last.num_chains >= 2:
            return last
        if isinstance(neg, PersistentNegatives):
            thin = self.thin or max(neg.steps, 1)
            if neg.buffer is not None:
                idx = torch.randperm(neg.buffer.shape[0], generator=gen, device=gen.device)[:C].to(neg.buffer.device)
                init = neg.buffer[idx].to(dtype=dtype, device=device).clone()
                if init.shape[0] < C:
                    raise ValueError(f"the replay buffer has {init.shape[0]} entries, fewer than num_chains={C}")
            else:
                init = neg.chains.noise(C) if neg.chains is not None else self._noise(E, C, gen, dtype, device)
            if neg.kernel == "gibbs":
                opts = {}
            else:
                noise = neg.noise_scale if neg.kernel == "ula" else None
                opts = _fixed_kernel_options(neg.kernel, neg.step_size, neg.n_leapfrog, noise)
            s = mcmc.sample(E, init, 0, S * thin, kernel=neg.kernel, beta=neg.beta, seed=gen, progress=False,
                            **opts)
            return _thin(s, thin)
        if isinstance(neg, ContrastiveDivergence):
            if self.data is None:
                raise ValueError("probing ContrastiveDivergence needs data (its chains start at data points)")
            thin = self.thin or max(neg.k, 1)
            idx = torch.randint(0, self.data.shape[0], (C,), generator=gen, device=gen.device).to(self.data.device)
            init = self.data[idx].to(dtype=dtype, device=device).clone()
            opts = _fixed_kernel_options(neg.kernel, neg.step_size, neg.n_leapfrog, neg.noise)
            s = mcmc.sample(E, init, 0, S * thin, kernel=neg.kernel, beta=neg.beta, seed=gen, progress=False,
                            **opts)
            return _thin(s, thin)
        if isinstance(neg, MCMCNegatives):
            if neg.init is None:
                init = neg.init_scale * torch.randn((C,) + tuple(E.event_shape), generator=gen, dtype=dtype,
                                                    device=device)
            else:
                init = neg.init(C, gen).to(dtype=dtype, device=device)
            return mcmc.sample(E, init, neg.num_warmup, S, kernel=neg.kernel, beta=neg.beta, seed=gen,
                               progress=False, **neg.kernel_options)
        raise TypeError(
            f"cannot probe a {type(neg).__name__}: give sampler=..., or use PersistentNegatives, MCMCNegatives, "
            "ContrastiveDivergence or a generator whose last_samples hold >= 4 draws of >= 2 chains"
        )

    def _noise(self, E, n, gen, dtype, device):
        return 2 * torch.rand((n,) + tuple(E.event_shape), generator=gen, dtype=dtype, device=device) - 1

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
        x = draws.cpu().double().numpy().reshape(C, S, -1)
        with torch.no_grad():
            F = E(draws.reshape((C * S,) + tuple(E.event_shape))).reshape(C, S)
        f = F.detach().cpu().double().numpy()
        out = {
            "diag_rhat": _nanmax(_arviz.rhat(x)),
            "diag_rhat_energy": _nanmax(_arviz.rhat(f)),
            "diag_ess_bulk": _nanmin(_arviz.ess(x, method="bulk")),
            "diag_ess_bulk_energy": _nanmin(_arviz.ess(f, method="bulk")),
        }
        st = samples.stats
        out["diag_acceptance"] = float(st["acceptance_rate"].double().mean()) if "acceptance_rate" in st else math.nan
        out["diag_divergences"] = float(st["diverging"].sum()) if "diverging" in st else math.nan
        gap, se = math.nan, math.nan
        if self.data is not None:
            from .diagnostics import energy_gap

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


def _nanmax(a) -> float:
    a = np.asarray(a, dtype=float)
    return math.nan if np.all(np.isnan(a)) else float(np.nanmax(a))


def _nanmin(a) -> float:
    a = np.asarray(a, dtype=float)
    return math.nan if np.all(np.isnan(a)) else float(np.nanmin(a))


def _thin(s: Samples, thin: int) -> Samples:
    if thin == 1:
        return s
    stats = {}
    for k, v in s.stats.items():
        C, T = v.shape
        blocks = v.reshape(C, T // thin, thin)
        if k == "diverging":
            stats[k] = blocks.any(-1)
        elif k == "n_steps":
            stats[k] = blocks.sum(-1)
        elif k in ("acceptance_rate", "step_size"):
            stats[k] = blocks.double().mean(-1).to(v.dtype)
        else:  # energy, lp: the value at the kept draw
            stats[k] = blocks[..., -1]
    draws = s.draws[:, thin - 1 :: thin]
    return Samples(draws=draws, stats=stats, kernel=s.kernel, beta=s.beta, info={**s.info, "thin": thin})


# ------------------------------------------------------------------------------------------------------
# convenience


def make_negatives(sampler: str = "persistent", **options) -> Negatives:
    r"""MCMC negatives for maximum likelihood, by name, with defaults that work for small 2-D energies.

    ================  ===================================================================================
    ``sampler``       generator (defaults; any option overrides)
    ================  ===================================================================================
    ``"persistent"``  :class:`~pyro_ebm.negatives.PersistentNegatives`, HMC kernel: ``buffer_size=2000``,
                      ``steps=4``, ``step_size=0.05``, ``n_leapfrog=5``, ``reinit_prob=0.05``
    ``"hmc"``         :class:`~pyro_ebm.negatives.MCMCNegatives`: fresh batched HMC chains from
                      ``init_scale * N(0, I)`` with step-size/mass/trajectory adaptation,
                      ``num_warmup=50``, ``init_scale=2``
    ``"tempering"``   the same with parallel tempering, ``tempering=4`` replicas (ladder down to
                      ``tempering_min_ratio=0.1``)
    ``"nuts"``        :class:`PyroNUTSNegatives` (stock Pyro NUTS via ``RecordingNUTS``): ``num_warmup=30``,
                      ``num_samples=8``, ``init_scale=2`` -- slow, a reference
    ``"ula"``         :class:`~pyro_ebm.negatives.PersistentNegatives` with unadjusted Langevin:
                      ``steps=20``, ``step_size=0.01``
    ================  ===================================================================================

    Example::

        >>> make_negatives("persistent", seed=0)
        PersistentNegatives(buffer_size=2000, steps=4, reinit_prob=0.05, kernel='hmc')
        >>> make_negatives("tempering", seed=0).kernel_options
        {'tempering': 4, 'tempering_min_ratio': 0.1}
    """
    if sampler == "persistent":
        opts = dict(buffer_size=2000, steps=4, step_size=0.05, n_leapfrog=5, reinit_prob=0.05, kernel="hmc")
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
        opts = dict(num_warmup=30, num_samples=8, init_scale=2.0)
        opts.update(options)
        return PyroNUTSNegatives(**opts)
    raise ValueError(f"sampler must be 'persistent', 'ula', 'hmc', 'tempering' or 'nuts', got {sampler!r}")


class MLRun(NamedTuple):
    """Result of :func:`ml_fit`: the training ``history``, the ``negatives`` and the ``diagnostics`` callback."""

    history: object
    negatives: object
    diagnostics: Optional[SamplerDiagnostics]


def ml_fit(
    energy,
    data: torch.Tensor,
    *,
    sampler: Union[str, Callable] = "persistent",
    sampler_options: Optional[dict] = None,
    diagnose_every: Optional[int] = 100,
    diagnostics_options: Optional[dict] = None,
    callbacks: Iterable[Callable] = (),
    seed: Optional[int] = 0,
    **fit_options,
) -> MLRun:
    r"""Maximum likelihood with MCMC negatives: :func:`~pyro_ebm.train.fit` with
    :func:`~pyro_ebm.losses.ml_sampled`, negatives from :func:`make_negatives` and a
    :class:`SamplerDiagnostics` callback.

    :param energy: the energy to train.
    :param data: ``[N, *event]``.
    :param sampler: a name for :func:`make_negatives` or a ready negative generator.
    :param sampler_options: options of :func:`make_negatives` (``seed`` defaults to ``seed``).
    :param diagnose_every: probe the sampler every this many steps (``None``: no probe).
    :param diagnostics_options: options of :class:`SamplerDiagnostics` (``num_chains``, ``check``, ...).
    :param callbacks: more callbacks for ``fit``; they run after the diagnostics callback, so at a probed
        step ``history.last`` already holds the ``diag_*`` values.
    :param seed: seed of ``fit``, of the negatives and of the probe.
    :param fit_options: the rest of :func:`~pyro_ebm.train.fit`'s options (``steps``, ``batch_size``,
        ``optimizer``, ``lr``, ``regularizers``, ``progress``, ...).
    :returns: :class:`MLRun` ``(history, negatives, diagnostics)``.

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
        >>> run = ml_fit(as_energy(Bowl(), event_shape=(2,)), data, steps=300, lr=0.05, batch_size=128,
        ...              sampler_options={"buffer_size": 512, "step_size": 0.2}, diagnose_every=150,
        ...              progress=False)
        >>> energy_precision = float(run.negatives.buffer.var(0).mean()) ** -1
        >>> 2.5 < energy_precision < 6.0        # the data's precision is 4
        True
    """
    from .train import fit

    if isinstance(sampler, str):
        opts = dict(sampler_options or {})
        opts.setdefault("seed", seed)
        negatives = make_negatives(sampler, **opts)
    elif callable(sampler):
        if sampler_options:
            raise ValueError("sampler_options are for a sampler given by name")
        negatives = sampler
    else:
        raise TypeError(f"sampler must be a name or a negative generator, got {type(sampler).__name__}")
    callbacks = list(callbacks)
    diag = None
    if diagnose_every is not None:
        dopts = dict(diagnostics_options or {})
        dopts.setdefault("seed", seed)
        diag = SamplerDiagnostics(energy, negatives, data, every=diagnose_every, **dopts)
        callbacks.insert(0, diag)  # first, so that the other callbacks see its numbers in the history
    fit_options.setdefault("loss", losses.ml_sampled)
    loss = fit_options.pop("loss")
    history = fit(energy, data, loss, negatives, callbacks=callbacks, seed=seed, **fit_options)
    return MLRun(history, negatives, diag)
