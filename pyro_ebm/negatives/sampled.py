"""Negatives drawn by MCMC: from noise (row 3), from the data (row 4), persistent chains, and stock Pyro NUTS."""

from __future__ import annotations

import numbers
from typing import Callable, Dict, Optional

import torch

from .. import mcmc
from .._validation import check_beta, check_positive_int, check_real
from ..energy import Energy, check_energy_output
from ..mcmc.samples import Samples
from .base import Negatives, Seed, _flatten, _probe_args, _repeat

__all__ = ["MCMCNegatives", "ContrastiveDivergence", "PersistentNegatives", "PyroNUTSNegatives"]


# ------------------------------------------------------------------------------------------------------
# 3: MC / MCMC from noise


def _mcmc_stats(s) -> Dict[str, float]:
    st = s.stats
    return {
        "acceptance_rate": float(st["acceptance_rate"].float().mean()),
        "step_size": float(st["step_size"].float().mean()),
        "diverging": float(st["diverging"].float().sum()),
    }


def _check_init(init, init_scale) -> float:
    """Validate a base distribution ``init(n, generator)`` (or ``None``) and its default's scale."""
    if init is not None and not callable(init):
        raise TypeError("init must be a callable init(n, generator) -> [n, *event_shape]")
    return check_real(init_scale, "init_scale", minimum=0, strict=True)


def _init_noise(init, n: int, event_shape, scale: float, gen, dtype, device) -> torch.Tensor:
    if init is None:
        return scale * torch.randn((n,) + tuple(event_shape), generator=gen, dtype=dtype, device=device)
    out = init(n, gen)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n,) + tuple(event_shape):
        raise ValueError(
            f"init(n, generator) must return a tensor [n, *event_shape] = {(n,) + tuple(event_shape)}, "
            f"got {tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}"
        )
    return out.to(dtype=dtype, device=device)


# ------------------------------------------------------------------------------------------------------
# probes: a short multi-chain run of a generator's own sampler, for R-hat and ESS


def _thin(s: Samples, thin: int) -> Samples:
    """Keep every ``thin``-th draw; the statistics of the ``thin`` transitions behind a kept draw are merged."""
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



class MCMCNegatives(Negatives):
    r"""Draws of :math:`P_\beta(y \mid x) \propto e^{-\beta F(x, y)}` by MCMC started from a base distribution.

    Row 3 of the loss zoo (maximum likelihood, MC or MCMC :math:`\hat y`; use with
    :func:`~pyro_ebm.losses.ml_sampled`). Each call starts ``n_neg`` fresh chains per example from the base
    distribution (``init``), runs :func:`pyro_ebm.mcmc.sample` for ``num_warmup`` adaptation steps and
    keeps each chain's last state. Sampler statistics of the call are in :attr:`diagnostics`
    (``acceptance_rate``, ``step_size``, ``diverging``) and the whole :class:`~pyro_ebm.mcmc.Samples` in
    :attr:`last_samples` (for ArviZ).

    :param n_neg: chains (negatives) per example.
    :param kernel: ``"hmc"``, ``"mala"``, ``"ula"`` (see :func:`pyro_ebm.mcmc.sample`).
    :param num_warmup: steps before the kept draw (adaptation for HMC/MALA, burn-in for ULA).
    :param beta: inverse temperature ``> 0``.
    :param init: base distribution, a callable ``init(n, generator) -> [n, *event]``; default
        ``init_scale * N(0, I)``.
    :param init_scale: standard deviation of the default base distribution.
    :param seed: int or ``torch.Generator``.
    :param kernel_options: passed to :func:`pyro_ebm.mcmc.sample` (``step_size``, ``n_steps``, ...).

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> F = as_energy(lambda y: 0.5 * (y ** 2).sum(-1), event_shape=(2,))
        >>> neg = MCMCNegatives(n_neg=3, kernel="mala", num_warmup=20, seed=0)
        >>> neg(F, torch.zeros(4, 2)).shape
        torch.Size([3, 4, 2])
        >>> sorted(neg.diagnostics)
        ['acceptance_rate', 'diverging', 'step_size']
    """

    def __init__(
        self,
        n_neg: int = 1,
        *,
        kernel: str = "hmc",
        num_warmup: int = 100,
        beta: float = 1.0,
        init: Optional[Callable] = None,
        init_scale: float = 1.0,
        seed: Seed = None,
        **kernel_options,
    ):
        super().__init__(seed)
        self.n_neg = check_positive_int(n_neg, "n_neg")
        if kernel not in ("hmc", "mala", "ula"):
            raise ValueError(f"kernel must be one of 'hmc', 'mala', 'ula', got {kernel!r}")
        self.kernel = kernel
        self.num_warmup = check_positive_int(num_warmup, "num_warmup", minimum=0)
        self.beta = check_beta(beta)
        self.init_scale = _check_init(init, init_scale)
        self.init = init
        self.kernel_options = kernel_options
        self.last_samples = None

    def __call__(self, energy, y, x=None):
        E, batch, y_flat, x_flat = _flatten(energy, y, x)
        M = self.n_neg * y_flat.shape[0]
        gen = self.rng(y.device)
        q0 = _init_noise(self.init, M, E.event_shape, self.init_scale, gen, y.dtype, y.device)
        s = mcmc.sample(
            E, q0, self.num_warmup, 1, kernel=self.kernel, beta=self.beta, seed=gen, progress=False,
            x=_repeat(x_flat, self.n_neg), **self.kernel_options,
        )
        self.last_samples = s
        self.diagnostics = _mcmc_stats(s)
        out = s.draws[:, -1].detach()
        return out.reshape((self.n_neg,) + tuple(batch) + tuple(E.event_shape))

    def probe(self, energy, num_chains: int = 8, num_draws: int = 200, *, seed=None, data=None, thin=None,
              dtype=None, device=None) -> Samples:
        """``num_chains`` chains of this generator's sampler from its base distribution, with the same
        ``num_warmup``, kernel and options (``tempering`` included), then ``num_draws`` draws each
        (``thin`` is not used); see :meth:`Negatives.probe`."""
        E, C, S, _, gen, dtype, device = _probe_args(energy, num_chains, num_draws, seed, data, thin, dtype, device)
        init = _init_noise(self.init, C, E.event_shape, self.init_scale, gen, dtype, device)
        return mcmc.sample(E, init, self.num_warmup, S, kernel=self.kernel, beta=self.beta, seed=gen,
                           progress=False, **self.kernel_options)

    def __repr__(self) -> str:
        return f"MCMCNegatives(n_neg={self.n_neg}, kernel={self.kernel!r}, num_warmup={self.num_warmup})"


# ------------------------------------------------------------------------------------------------------
# 4: contrastive divergence


def _fixed_kernel_options(kernel: str, step_size: float, n_leapfrog: int, noise) -> dict:
    if kernel == "ula":
        opts = {"step_size": step_size}
        if noise is not None:
            opts["noise"] = noise
        return opts
    opts = {"step_size": step_size, "adapt_step_size": False, "adapt_mass": False}
    if kernel == "hmc":
        opts["n_steps"] = n_leapfrog
    return opts


class ContrastiveDivergence(Negatives):
    r"""CD-k: ``k`` MCMC steps started *at the data* (truncated MCMC), with a fixed step size.

    Row 4 of the loss zoo (use with :func:`~pyro_ebm.losses.ml_sampled`). The chains are not run to
    equilibrium: the negatives explore only the neighbourhood of the data, which gives a biased but cheap
    estimate of the likelihood gradient (Hinton 2002). ``k = 0`` returns the data itself.

    :param k: number of MCMC steps (``>= 0``).
    :param n_neg: chains per example.
    :param kernel: ``"ula"`` (default), ``"mala"`` or ``"hmc"`` (no adaptation: the energy changes between
        calls).
    :param step_size: the kernel's step size (``> 0``).
    :param noise: ULA noise scale (default ``sqrt(2 step_size / beta)``; ``0`` is gradient descent).
    :param n_leapfrog: leapfrog steps per HMC transition.
    :param beta: inverse temperature ``> 0``.
    :param seed: int or ``torch.Generator``.

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> F = as_energy(lambda y: 0.5 * (y ** 2).sum(-1), event_shape=(2,))
        >>> y = torch.ones(4, 2)
        >>> torch.equal(ContrastiveDivergence(k=0)(F, y)[0], y)
        True
        >>> ContrastiveDivergence(k=5, n_neg=2, step_size=0.1, seed=0)(F, y).shape
        torch.Size([2, 4, 2])
    """

    def __init__(
        self,
        k: int = 1,
        *,
        n_neg: int = 1,
        kernel: str = "ula",
        step_size: float = 0.01,
        noise: Optional[float] = None,
        n_leapfrog: int = 5,
        beta: float = 1.0,
        seed: Seed = None,
    ):
        super().__init__(seed)
        self.k = check_positive_int(k, "k", minimum=0)
        self.n_neg = check_positive_int(n_neg, "n_neg")
        if kernel not in ("hmc", "mala", "ula"):
            raise ValueError(f"kernel must be one of 'ula', 'mala', 'hmc', got {kernel!r}")
        check_real(step_size, "step_size", minimum=0, strict=True)
        if noise is not None and not float(noise) >= 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.kernel = kernel
        self.step_size = float(step_size)
        self.noise = noise
        self.n_leapfrog = check_positive_int(n_leapfrog, "n_leapfrog")
        self.beta = check_beta(beta)

    def __call__(self, energy, y, x=None):
        E, batch, y_flat, x_flat = _flatten(energy, y, x)
        shape = (self.n_neg,) + tuple(batch) + tuple(E.event_shape)
        q0 = _repeat(y_flat, self.n_neg)
        if self.k == 0:
            self.diagnostics = {}
            return q0.clone().reshape(shape)
        gen = self.rng(y.device)
        s = mcmc.sample(
            E, q0, 0, self.k, kernel=self.kernel, beta=self.beta, seed=gen, progress=False,
            x=_repeat(x_flat, self.n_neg),
            **_fixed_kernel_options(self.kernel, self.step_size, self.n_leapfrog, self.noise),
        )
        self.diagnostics = _mcmc_stats(s)
        return s.draws[:, -1].detach().reshape(shape)

    def probe(self, energy, num_chains: int = 8, num_draws: int = 200, *, seed=None, data=None, thin=None,
              dtype=None, device=None) -> Samples:
        """``num_chains`` chains started at random data points, with the same fixed-step kernel, run for
        ``num_draws * thin`` transitions and one draw kept every ``thin`` (default ``k``): how far the
        CD-k chains are from equilibrium; see :meth:`Negatives.probe`."""
        E, C, S, thin, gen, dtype, device = _probe_args(energy, num_chains, num_draws, seed, data, thin, dtype,
                                                        device)
        if data is None:
            raise ValueError("probing ContrastiveDivergence needs data (its chains start at data points)")
        thin = thin or max(self.k, 1)
        idx = torch.randint(0, data.shape[0], (C,), generator=gen, device=gen.device).to(data.device)
        init = data[idx].to(dtype=dtype, device=device).clone()
        opts = _fixed_kernel_options(self.kernel, self.step_size, self.n_leapfrog, self.noise)
        s = mcmc.sample(E, init, 0, S * thin, kernel=self.kernel, beta=self.beta, seed=gen, progress=False, **opts)
        return _thin(s, thin)

    def __repr__(self) -> str:
        return f"ContrastiveDivergence(k={self.k}, kernel={self.kernel!r}, step_size={self.step_size})"


# ------------------------------------------------------------------------------------------------------
# 4 (persistent): PCD with a replay buffer


class PersistentNegatives(Negatives):
    r"""Persistent contrastive divergence: chains kept in a replay buffer and continued at every call.

    Wraps :class:`pyro_ebm.mcmc.PersistentChains` (Tieleman 2008; Du & Mordatch 2019): each call draws
    ``n_neg * batch`` buffer entries at random, restarts each from noise with probability
    ``reinit_prob``, runs ``steps`` kernel steps on the current energy, writes them back and returns
    them. Since the chains continue across parameter updates they get much closer to equilibrium than
    CD-k for the same cost. The buffer is made on the first call (from the energy's event shape and the
    data's dtype/device); its contents and the RNG state are in :meth:`state_dict`.

    :param buffer_size: number of stored chain states.
    :param n_neg: negatives per example.
    :param steps: kernel steps per call.
    :param reinit_prob: probability that a drawn entry restarts from noise, in ``[0, 1]``.
    :param kernel: ``"ula"`` (default), ``"mala"``, ``"hmc"`` or ``"gibbs"`` (binary units).
    :param step_size: Langevin / leapfrog step size.
    :param noise_scale: ULA noise (default ``sqrt(2 step_size / beta)``).
    :param noise: ``noise(n, generator) -> [n, *event]`` fresh states (default uniform on ``[-1, 1]``).
    :param n_leapfrog: leapfrog steps per HMC transition.
    :param beta: inverse temperature ``> 0``.
    :param seed: int or ``torch.Generator``.
    :param compile: run the HMC/MALA transitions compiled (:mod:`pyro_ebm.mcmc.compiled`): the chains'
        batch has the same shape at every call, so the compile is paid once.
    :param target_accept: adapt the HMC/MALA step size across calls to this mean acceptance (``None``:
        fixed ``step_size``); see :class:`~pyro_ebm.mcmc.PersistentChains`.
    :param jump: an independence proposal for one Metropolis-Hastings jump per call (e.g.
        :class:`~pyro_ebm.mcmc.proposals.DataProposal`), for moves between modes.

    The adapted step size and the jump acceptance of the last call are in :attr:`diagnostics`
    (``step_size``, ``jump_rate``); the step size is saved by :meth:`state_dict`.

    Conditioning ``x``, when given, is that of the examples the drawn entries are paired with.

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> F = as_energy(lambda y: 0.5 * (y ** 2).sum(-1), event_shape=(2,))
        >>> pcd = PersistentNegatives(buffer_size=64, steps=5, step_size=0.05, seed=0)
        >>> pcd(F, torch.zeros(8, 2)).shape
        torch.Size([1, 8, 2])
        >>> pcd.buffer.shape
        torch.Size([64, 2])
    """

    def __init__(
        self,
        buffer_size: int = 10_000,
        *,
        n_neg: int = 1,
        steps: int = 20,
        reinit_prob: float = 0.05,
        kernel: str = "ula",
        step_size: float = 0.01,
        noise_scale: Optional[float] = None,
        noise: Optional[Callable] = None,
        n_leapfrog: int = 5,
        beta: float = 1.0,
        seed: Seed = None,
        compile: bool = False,
        target_accept: Optional[float] = None,
        jump=None,
    ):
        super().__init__(seed)
        self.buffer_size = check_positive_int(buffer_size, "buffer_size")
        if compile is not False and kernel not in ("hmc", "mala"):
            raise ValueError(f"compile=True needs kernel 'hmc' or 'mala', got kernel={kernel!r}")
        if not isinstance(compile, bool):
            raise TypeError(f"compile must be True or False, got {compile!r}")
        self.compile = compile
        self.n_neg = check_positive_int(n_neg, "n_neg")
        self.steps = check_positive_int(steps, "steps", minimum=0)
        if isinstance(reinit_prob, bool) or not isinstance(reinit_prob, numbers.Real) or not 0 <= reinit_prob <= 1:
            raise ValueError(f"reinit_prob must be a probability in [0, 1], got {reinit_prob!r}")
        if kernel not in ("ula", "mala", "hmc", "gibbs"):
            raise ValueError(f"kernel must be one of 'ula', 'mala', 'hmc', 'gibbs', got {kernel!r}")
        check_real(step_size, "step_size", minimum=0, strict=True)
        self.reinit_prob = float(reinit_prob)
        self.kernel = kernel
        self.step_size = float(step_size)
        self.noise_scale = None if noise_scale is None else check_real(noise_scale, "noise_scale", minimum=0)
        self.noise = noise
        self.n_leapfrog = check_positive_int(n_leapfrog, "n_leapfrog")
        self.beta = check_beta(beta)
        if target_accept is not None and (isinstance(target_accept, bool) or not isinstance(target_accept, numbers.Real)
                                          or not 0 < target_accept < 1):
            raise ValueError(f"target_accept must be a number in (0, 1) or None, got {target_accept!r}")
        if target_accept is not None and kernel not in ("hmc", "mala"):
            raise ValueError(f"target_accept needs kernel 'hmc' or 'mala', got kernel={kernel!r}")
        self.target_accept = target_accept
        if jump is not None and not (callable(getattr(jump, "sample", None)) and callable(getattr(jump, "log_prob", None))):
            raise TypeError(f"jump must be a proposal with sample(n, generator) and log_prob(y), got {type(jump).__name__}")
        self.jump = jump
        self.chains: Optional[mcmc.PersistentChains] = None
        self._pending_buffer = None
        self._pending_step_size = None

    @property
    def buffer(self) -> Optional[torch.Tensor]:
        """The replay buffer ``[buffer_size, *event]`` (``None`` before the first call)."""
        return None if self.chains is None else self.chains.buffer

    def _build(self, E: Energy, y: torch.Tensor) -> None:
        gen = self.rng(y.device)
        init = None
        if self._pending_buffer is not None:  # restored by load_state_dict: no fresh noise is drawn
            init = self._pending_buffer.to(dtype=y.dtype, device=y.device)
            self._pending_buffer = None
        self.chains = mcmc.PersistentChains(
            E, self.buffer_size, init, noise=self.noise, reinit_prob=self.reinit_prob, kernel=self.kernel,
            step_size=self.step_size, noise_scale=self.noise_scale, n_leapfrog=self.n_leapfrog,
            beta=self.beta, seed=gen, dtype=y.dtype, device=y.device, compile=self.compile,
            target_accept=self.target_accept, jump=self.jump,
        )
        if self._pending_step_size is not None:  # an adapted step size restored by load_state_dict
            self.chains.set_step_size(self._pending_step_size)
            self._pending_step_size = None

    def __call__(self, energy, y, x=None):
        E, batch, y_flat, x_flat = _flatten(energy, y, x)
        if self.chains is None:
            self._build(E, y)
        self.chains.energy = E  # the energy object may differ between calls; its parameters change anyway
        M = self.n_neg * y_flat.shape[0]
        out = self.chains.sample(M, self.steps, x=_repeat(x_flat, self.n_neg))
        self.diagnostics = dict(self.chains.last_stats)
        return out.reshape((self.n_neg,) + tuple(batch) + tuple(E.event_shape))

    def state_dict(self) -> dict:
        state = super().state_dict()
        buf = self.buffer if self.chains is not None else self._pending_buffer
        state["buffer"] = None if buf is None else buf.clone()
        state["step_size"] = self.step_size
        return state

    @property
    def step_size(self) -> float:
        """The current (with ``target_accept``: adapted) step size."""
        if self.chains is not None:
            return self.chains.step_size
        return self._pending_step_size if self._pending_step_size is not None else self._step_size

    @step_size.setter
    def step_size(self, value: float) -> None:
        self._step_size = float(value)

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        buf = state.get("buffer")
        if buf is None:
            return
        if buf.shape[0] != self.buffer_size:
            raise ValueError(f"the saved buffer has {buf.shape[0]} entries, but buffer_size is {self.buffer_size}")
        step = state.get("step_size")
        if self.chains is not None:
            self.chains.buffer = buf.to(dtype=self.chains.buffer.dtype, device=self.chains.buffer.device).clone()
            if step is not None:
                self.chains.set_step_size(step)
        else:
            self._pending_buffer = buf.clone()
            self._pending_step_size = None if step is None else float(step)

    def probe(self, energy, num_chains: int = 8, num_draws: int = 200, *, seed=None, data=None, thin=None,
              dtype=None, device=None) -> Samples:
        """``num_chains`` chains started at random replay-buffer entries (the states the negatives are
        drawn from; before the first call, fresh states of this generator's ``noise``, Bernoulli(0.5)
        units for ``kernel="gibbs"``), with the same kernel, step size, leapfrog steps and noise and no
        adaptation; one draw kept every ``thin`` transitions (default ``steps``: one per training call); see :meth:`Negatives.probe`."""
        E, C, S, thin, gen, dtype, device = _probe_args(energy, num_chains, num_draws, seed, data, thin, dtype,
                                                        device)
        thin = thin or max(self.steps, 1)
        buf = self.buffer if self.chains is not None else self._pending_buffer
        if buf is not None:
            if buf.shape[0] < C:
                raise ValueError(f"the replay buffer has {buf.shape[0]} entries, fewer than num_chains={C}")
            idx = torch.randperm(buf.shape[0], generator=gen, device=gen.device)[:C].to(buf.device)
            init = buf[idx].to(dtype=dtype, device=device).clone()
        else:  # the chains' own fresh states, drawn with the probe's generator
            init = mcmc.PersistentChains(E, C, noise=self.noise, kernel=self.kernel, seed=gen, dtype=dtype,
                                         device=device).buffer
        if self.kernel == "gibbs":
            opts = {}
        else:
            noise = self.noise_scale if self.kernel == "ula" else None
            opts = _fixed_kernel_options(self.kernel, self.step_size, self.n_leapfrog, noise)
        if self.jump is None:
            s = mcmc.sample(E, init, 0, S * thin, kernel=self.kernel, beta=self.beta, seed=gen, progress=False,
                            **opts)
            return _thin(s, thin)
        # the sampler of training: ``thin`` kernel transitions, then one jump, per kept draw
        chains = mcmc.PersistentChains(E, C, init, kernel=self.kernel, step_size=self.step_size,
                                       noise_scale=self.noise_scale, n_leapfrog=self.n_leapfrog, beta=self.beta,
                                       seed=gen, jump=self.jump)
        y, draws, stats, jumps = init, [], [], []
        for _ in range(S):
            y, st, accepted = chains.transition(y, thin)
            draws.append(y)
            stats.append(st)
            jumps.append(accepted)
        merged = {k: torch.cat([st[k] for st in stats], 1) for k in stats[0]}
        s = _thin(Samples(draws=torch.stack(draws, 1).repeat_interleave(thin, 1), stats=merged, kernel=self.kernel,
                          beta=self.beta), thin)
        s.info["jump_rate"] = float(torch.stack(jumps).double().mean())
        return s

    def __repr__(self) -> str:
        return (
            f"PersistentNegatives(buffer_size={self.buffer_size}, steps={self.steps}, "
            f"reinit_prob={self.reinit_prob}, kernel={self.kernel!r})"
        )


# ------------------------------------------------------------------------------------------------------
# 3 (reference): stock Pyro NUTS


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

    The energy must be finite at the starting points: a NaN or infinite energy there raises a
    ``ValueError`` that names the particle and the point (NUTS cannot start where the density is
    undefined). A trajectory that runs into a region where the energy is NaN or infinite is rejected
    by NUTS and counted in ``diverging``; the chain stays where it was.

    This is the slow, reference path (Python overhead per leapfrog step); the batched samplers of
    :mod:`pyro_ebm.mcmc` are much faster for training. Unconditional energies only.

    :param n_neg: negatives per example.
    :param num_warmup: NUTS warmup iterations per call.
    :param num_samples: draws per call (``>= 4`` lets :meth:`probe` use them directly).
    :param beta: inverse temperature.
    :param init: base distribution ``init(n, generator) -> [n, *event]`` (default ``init_scale * N(0, I)``).
    :param init_scale: standard deviation of the default base distribution.
    :param seed: int or ``torch.Generator``.
    :param nuts_options: passed to :class:`~pyro_ebm.mcmc.RecordingNUTS` (``max_tree_depth``,
        ``target_accept_prob``, ``step_size``, ...).

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> F = as_energy(lambda y: 0.5 * (y ** 2).sum(-1), event_shape=(2,))
        >>> neg = PyroNUTSNegatives(num_warmup=10, num_samples=4, seed=0, max_tree_depth=3)
        >>> neg(F, torch.zeros(5, 2)).shape, neg.last_samples.draws.shape
        (torch.Size([1, 5, 2]), torch.Size([5, 4, 2]))
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

    def _run(self, E: Energy, M: int, num_samples: int, gen: torch.Generator, dtype, device):
        """One NUTS chain moving ``M`` particles: ``(Samples [M, num_samples, *event], the MCMC object)``."""
        import pyro
        from pyro.infer import MCMC

        from ..gibbs import GibbsBoltzmann

        q0 = _init_noise(self.init, M, E.event_shape, self.init_scale, gen, dtype, device)
        with torch.no_grad():
            F0 = E(q0)
        bad = ~torch.isfinite(F0) if isinstance(F0, torch.Tensor) and tuple(F0.shape) == (M,) else None
        if bad is not None and bool(bad.any()):
            i = int(bad.nonzero()[0])
            point = "[" + ", ".join(f"{v:.4g}" for v in q0[i].flatten().tolist()) + "]"
            raise ValueError(
                f"the energy is {float(F0[i])} at {int(bad.sum())} of the {M} starting points of "
                f"PyroNUTSNegatives (first: particle {i}, y = {point}); NUTS cannot start where the "
                "energy is NaN or infinite: give an init (or a smaller init_scale) that starts where it is finite"
            )
        check_energy_output(F0, (M,), name=E._label())
        beta = self.beta

        def model():
            pyro.sample("y", GibbsBoltzmann(E, beta=beta).expand([M]).to_event(1))

        kernel = mcmc.RecordingNUTS(model, **self.nuts_options)
        seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            run = MCMC(kernel, num_samples=num_samples, warmup_steps=self.num_warmup,
                       initial_params={"y": q0}, disable_progbar=True)
            run.run()
        s = mcmc.from_pyro_mcmc(run)
        draws = s.draws["y"][0].detach()  # [S, M, *event]
        S = draws.shape[0]
        stats = {}
        for k, v in s.stats.items():
            row = v[0]  # [S]
            if k == "diverging":
                full = torch.zeros((M, S), dtype=torch.bool, device=row.device)
                full[0] = row
            else:
                full = row.unsqueeze(0).expand(M, S).clone()
            stats[k] = full
        out = Samples(draws=draws.movedim(0, 1), stats=stats, kernel="RecordingNUTS", beta=beta,
                      info={"joint_chain": True})
        return out, run

    def __call__(self, energy, y, x=None):
        if x is not None:
            raise ValueError("PyroNUTSNegatives supports unconditional energies only (x must be None)")
        E, batch, y_flat, _ = _flatten(energy, y, None)
        M = self.n_neg * y_flat.shape[0]
        if M == 0:  # an empty batch: no particles to move
            self.diagnostics = {}
            return torch.zeros((self.n_neg,) + tuple(batch) + tuple(E.event_shape), dtype=y.dtype, device=y.device)
        s, run = self._run(E, M, self.num_samples, self.rng(y.device), y.dtype, y.device)
        self.last_mcmc = run
        self.last_samples = s
        self.diagnostics = {
            "acceptance_rate": float(s.stats["acceptance_rate"][0].float().mean()),
            "step_size": float(s.stats["step_size"][0].float().mean()),
            "diverging": float(s.stats["diverging"].float().sum()),
        }
        out = s.draws[:, -1]
        return out.reshape((self.n_neg,) + tuple(batch) + tuple(E.event_shape))

    def probe(self, energy, num_chains: int = 8, num_draws: int = 200, *, seed=None, data=None, thin=None,
              dtype=None, device=None) -> Samples:
        """The draws of the last call when they hold ``>= 4`` draws of ``>= 2`` particles (no extra
        sampling: the particles are the chains); else one NUTS run of ``num_chains`` particles for
        ``num_draws`` draws with this generator's settings. See :meth:`Negatives.probe`."""
        last = self.last_samples
        if last is not None and last.num_draws >= 4 and last.num_chains >= 2:
            return last
        E, C, S, _, gen, dtype, device = _probe_args(energy, num_chains, num_draws, seed, data, thin, dtype, device)
        return self._run(E, C, S, gen, dtype, device)[0]

    def __repr__(self) -> str:
        return f"PyroNUTSNegatives(n_neg={self.n_neg}, num_warmup={self.num_warmup}, num_samples={self.num_samples})"
