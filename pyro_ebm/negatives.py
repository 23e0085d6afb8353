r"""Contrastive answers :math:`\hat y`: the "y-hat generation" column of the lecture's loss zoo.

Every generator is a :class:`Negatives` and is called the same way::

    y_hat = negatives(energy, y, x)     # y: [*batch, *event]  ->  y_hat: [n_neg, *batch, *event]

``y_hat[j, b]`` is the ``j``-th contrastive answer for the example ``y[b]`` (conditioned on ``x[b]``).
The leading ``n_neg`` dimension is always there, even when it is 1, and ``y_hat`` is detached (a
constant for the loss). :func:`negative_energies` turns it into the ``[*batch, n_neg]`` energies that the
pairwise losses of :mod:`pyro_ebm.losses` take as ``neg``::

    pos = energy(y, x)                                  # [*batch]
    neg = negative_energies(energy, y_hat, x)           # [*batch, n_neg]
    loss = losses.hinge(pos, neg, margin=1.0)

Conditioning ``x`` has shape ``[*batch, *x_event]`` (the same leading dimensions as ``y``). Generators
and :func:`negative_energies` call the energy on *flattened* batches, ``F(y [M, *event], x [M, *x_event])``,
so an energy only has to handle one batch dimension (an MLP on ``torch.cat([y, x], -1)`` works).

================================  =====================================  ============================
lecture's loss zoo row            y-hat generation                       generator
================================  =====================================  ============================
1-2 max likelihood (exhaustive)   all outputs                            :class:`Exhaustive`
3 max likelihood                  MC or MCMC                             :class:`MCMCNegatives`
4 contrastive divergence          truncated MCMC from the data           :class:`ContrastiveDivergence`
4 (persistent CD, replay buffer)  MCMC continued across steps            :class:`PersistentNegatives`
5-8 hinge, square-square, ...     most offending                         :class:`MostOffending`
9 GAN                             :math:`\hat y = g_u(z)`                :class:`LearnedGenerator`
10 denoising                      :math:`\hat y = N(y)` (corruption)     :class:`Corruption`
================================  =====================================  ============================

Stochastic generators take ``seed`` (an int or a ``torch.Generator``); the same seed gives the same
numbers. Generators with state (random-number generator, replay buffer, generator network and its
optimizer) have :meth:`~Negatives.state_dict` / :meth:`~Negatives.load_state_dict`, which
:func:`pyro_ebm.train.fit` stores in its checkpoints so training resumes bit for bit. Generators that
run a sampler put its per-call statistics in :attr:`~Negatives.diagnostics` (the training loop records
them in its history).
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Callable, Dict, Optional, Sequence, Union

import torch
from torch import nn

from ._validation import MAX_ENUMERATION, check_beta, check_positive_int
from .energy import Energy, as_energy, batch_shape_of, check_energy_output
from . import mcmc

__all__ = [
    "Negatives",
    "negative_energies",
    "Exhaustive",
    "MCMCNegatives",
    "ContrastiveDivergence",
    "PersistentNegatives",
    "MostOffending",
    "Corruption",
    "LearnedGenerator",
]

Seed = Union[int, torch.Generator, None]


# ------------------------------------------------------------------------------------------------------
# shapes


def _energy_for(energy, y: torch.Tensor) -> Energy:
    """``energy`` as an :class:`Energy`; a plain callable is taken to have one batch dimension."""
    if isinstance(energy, Energy):
        return energy
    if not callable(energy):
        raise TypeError(f"energy must be an Energy or a callable F(y[, x]), got {type(energy).__name__}")
    if not isinstance(y, torch.Tensor) or y.dim() < 1:
        raise ValueError("y must be a tensor [batch, *event_shape] when energy is a plain callable")
    return as_energy(energy, event_shape=y.shape[1:])


def _flatten(energy, y, x):
    """Returns ``(energy, batch, y_flat [B, *event], x_flat [B, *x_event] or None)``."""
    E = _energy_for(energy, y)
    batch = batch_shape_of(y, E.event_shape, "y")
    B = int(math.prod(batch))
    y_flat = y.detach().reshape((B,) + tuple(E.event_shape))
    x_flat = None
    if x is not None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor [*batch, *x_event], got {type(x).__name__}")
        nb = len(batch)
        if x.dim() < nb or tuple(x.shape[:nb]) != tuple(batch):
            raise ValueError(
                f"x must have the batch shape of y {tuple(batch)} as its leading dimensions, "
                f"got shape {tuple(x.shape)}"
            )
        x_flat = x.detach().reshape((B,) + tuple(x.shape[nb:]))
    return E, batch, y_flat, x_flat


def _repeat(t: Optional[torch.Tensor], n: int) -> Optional[torch.Tensor]:
    """``[B, ...] -> [n * B, ...]``, example-minor (row ``j * B + b`` is example ``b``)."""
    if t is None or n == 1:
        return t
    return t.repeat((n,) + (1,) * (t.dim() - 1))


def _call(E: Energy, y: torch.Tensor, x: Optional[torch.Tensor]) -> torch.Tensor:
    return E(y) if x is None else E(y, x)


def negative_energies(energy, y_hat: torch.Tensor, x: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Energies of contrastive answers, laid out for the losses: ``[n_neg, *batch, *event] -> [*batch, n_neg]``.

    The energy is called once on the flattened answers ``[n_neg * B, *event]`` (with ``x`` repeated to
    ``[n_neg * B, *x_event]``), so gradients flow into its parameters.

    :param energy: an :class:`~pyro_ebm.Energy` (or a callable; then ``y_hat`` is ``[n_neg, batch, *event]``).
    :param y_hat: contrastive answers ``[n_neg, *batch, *event]`` from a :class:`Negatives`.
    :param x: optional conditioning ``[*batch, *x_event]``.
    :returns: ``[*batch, n_neg]``.

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> F = as_energy(lambda y: (y ** 2).sum(-1), event_shape=(2,))
        >>> negative_energies(F, torch.ones(3, 5, 2)).shape
        torch.Size([5, 3])
    """
    if not isinstance(y_hat, torch.Tensor) or y_hat.dim() < 1:
        raise TypeError("y_hat must be a tensor [n_neg, *batch, *event_shape]")
    E = energy if isinstance(energy, Energy) else as_energy(energy, event_shape=y_hat.shape[2:])
    full = batch_shape_of(y_hat, E.event_shape, "y_hat")
    if len(full) < 1:
        raise ValueError(
            f"y_hat must have a leading n_neg dimension: [n_neg, *batch, *event_shape], got {tuple(y_hat.shape)}"
        )
    n, batch = full[0], full[1:]
    B = int(math.prod(batch))
    y_flat = y_hat.reshape((n * B,) + tuple(E.event_shape))
    x_flat = None
    if x is not None:
        nb = len(batch)
        if x.dim() < nb or tuple(x.shape[:nb]) != tuple(batch):
            raise ValueError(
                f"x must have the batch shape of the negatives {tuple(batch)} as its leading dimensions "
                f"(y_hat is [n_neg, *batch, *event]), got shape {tuple(x.shape)}"
            )
        x_flat = _repeat(x.reshape((B,) + tuple(x.shape[nb:])), n)
    out = _call(E, y_flat, x_flat)
    check_energy_output(out, (n * B,), name=E._label())
    return out.reshape((n,) + tuple(batch)).movedim(0, -1)


# ------------------------------------------------------------------------------------------------------
# the interface


class Negatives:
    """Base class of the contrastive-answer generators.

    Subclasses implement :meth:`__call__`; those with state override :meth:`state_dict` and
    :meth:`load_state_dict`. Any callable ``(energy, y, x) -> y_hat`` with the same shapes can be used in
    :func:`pyro_ebm.train.fit` as well.
    """

    #: statistics of the last call (e.g. the sampler's mean acceptance rate); empty when there are none
    diagnostics: Dict[str, float]

    def __init__(self, seed: Seed = None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, torch.Generator))):
            raise TypeError(f"seed must be an int, a torch.Generator or None, got {type(seed).__name__}")
        self.seed = seed
        self._gen: Optional[torch.Generator] = seed if isinstance(seed, torch.Generator) else None
        self._pending_rng = None
        self.diagnostics = {}

    def __call__(self, energy, y: torch.Tensor, x: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Contrastive answers for the examples ``y`` (``[*batch, *event]``) given ``x``.

        :returns: ``[n_neg, *batch, *event]``, detached.
        """
        raise NotImplementedError  # pragma: no cover

    # -- random numbers ------------------------------------------------------------------------------
    def rng(self, device) -> torch.Generator:
        """The generator's own ``torch.Generator`` on ``device`` (made from ``seed`` on first use)."""
        device = torch.device(device)
        if self._gen is None or self._gen.device.type != device.type:
            if isinstance(self.seed, torch.Generator):
                raise ValueError(
                    f"seed is a torch.Generator on {self.seed.device}, but the data are on {device}; "
                    "give a generator on the data's device or an int seed"
                )
            gen = torch.Generator(device=device)
            if self._pending_rng is not None:  # restored by load_state_dict before the first call
                gen.set_state(self._pending_rng)
                self._pending_rng = None
            elif self.seed is None:
                gen.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
            else:
                gen.manual_seed(int(self.seed))
            self._gen = gen
        return self._gen

    def state_dict(self) -> dict:
        """Everything needed to continue exactly where this generator is (here: its RNG state)."""
        if self._gen is not None:
            return {"rng": self._gen.get_state()}
        return {"rng": self._pending_rng}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`."""
        rng = state.get("rng")
        if rng is None:
            return
        if self._gen is not None:
            self._gen.set_state(rng)
        else:
            self._pending_rng = rng

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _check_candidates(candidates, E: Energy, name: str = "candidates") -> torch.Tensor:
    if not isinstance(candidates, torch.Tensor):
        raise TypeError(f"{name} must be a tensor [K, *event_shape], got {type(candidates).__name__}")
    if candidates.dim() < 1 or tuple(candidates.shape[1:]) != tuple(E.event_shape):
        raise ValueError(
            f"{name} must have shape [K, *event_shape] = [K, {', '.join(map(str, E.event_shape))}], "
            f"got {tuple(candidates.shape)}"
        )
    return candidates


def _distances(candidates: torch.Tensor, y_flat: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``[B, K]`` between each example and each candidate (over the event dims)."""
    K, B = candidates.shape[0], y_flat.shape[0]
    c = candidates.reshape(K, -1).to(y_flat.dtype)
    if c.shape[1] == 0:
        return torch.zeros(B, K, dtype=y_flat.dtype, device=y_flat.device)
    # exact differences (no matrix-product shortcut), so that equal rows are at distance exactly 0
    return torch.cdist(y_flat.reshape(B, -1), c, compute_mode="donot_use_mm_for_euclid_dist")


def _all_energies(E: Energy, candidates, x_flat, B) -> torch.Tensor:
    """Energies ``[B, K]`` of every candidate for every example, one flattened call."""
    K = candidates.shape[0]
    if K * B > MAX_ENUMERATION:
        raise ValueError(
            f"enumerating {K} candidates for {B} examples needs {K * B} energies, more than {MAX_ENUMERATION}: "
            "use MCMCNegatives or MostOffending with candidates=None instead"
        )
    c = candidates.repeat_interleave(B, dim=0)  # row k * B + b
    out = _call(E, c, _repeat(x_flat, K))
    check_energy_output(out, (K * B,), name=E._label())
    return out.reshape(K, B).T


# ------------------------------------------------------------------------------------------------------
# 1-2: exhaustive


class Exhaustive(Negatives):
    r"""Every candidate output except the example's own: :math:`\mathcal{Y} \setminus \{y\}`.

    For a finite output set ``candidates`` ``[K, *event]``; each example ``y`` must equal exactly one
    candidate. Returns the ``K - 1`` others, ``[K - 1, *batch, *event]``, in candidate order. With
    :func:`pyro_ebm.train.set_loss` a loss over the whole set (:func:`~pyro_ebm.losses.nll`,
    :func:`~pyro_ebm.losses.mee`) sees the data's energy as candidate 0 and these as the rest, which is
    the lecture's rows 1-2 (maximum likelihood with exhaustive :math:`\hat y`). Deterministic, no state.

    :param candidates: all outputs, ``[K, *event_shape]``, ``K >= 2``.

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> F = as_energy(lambda y: y.sum(-1), event_shape=(3,))
        >>> y = torch.eye(3)[[2, 0]]                       # two one-hot examples
        >>> Exhaustive(torch.eye(3))(F, y).argmax(-1)      # the other classes, [K - 1, batch]
        tensor([[0, 1],
                [1, 2]])
    """

    def __init__(self, candidates: torch.Tensor):
        super().__init__(None)
        if not isinstance(candidates, torch.Tensor) or candidates.dim() < 1 or candidates.shape[0] < 2:
            raise ValueError("candidates must be a tensor [K, *event_shape] with K >= 2")
        self.candidates = candidates

    def target_index(self, y_flat: torch.Tensor) -> torch.Tensor:
        """Index ``[B]`` of each example among the candidates; raises if one matches none or several."""
        match = _distances(self.candidates, y_flat) == 0
        count = match.sum(-1)
        if bool((count != 1).any()):
            b = int((count != 1).nonzero()[0])
            what = "no candidate" if int(count[b]) == 0 else f"{int(count[b])} candidates"
            raise ValueError(
                f"y[{b}] equals {what}; for Exhaustive negatives each example must be exactly one of the "
                "candidates (e.g. a one-hot row of torch.eye(K))"
            )
        return match.to(torch.int64).argmax(-1)

    def __call__(self, energy, y, x=None):
        E, batch, y_flat, _ = _flatten(energy, y, x)
        cands = _check_candidates(self.candidates.to(device=y.device), E)
        B, K = y_flat.shape[0], cands.shape[0]
        match = _distances(cands, y_flat) == 0
        self.target_index(y_flat)
        # stable sort puts the K - 1 non-matching candidates first, in their own order
        order = torch.argsort(match.to(torch.int64), dim=-1, stable=True)[:, : K - 1]  # [B, K-1]
        out = cands[order].movedim(1, 0)  # [K-1, B, *event]
        return out.reshape((K - 1,) + tuple(batch) + tuple(E.event_shape)).to(y.dtype)

    def __repr__(self) -> str:
        return f"Exhaustive(K={self.candidates.shape[0]})"


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
    if not float(init_scale) > 0:
        raise ValueError(f"init_scale must be > 0, got {init_scale}")
    return float(init_scale)


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
        if not float(step_size) > 0:
            raise ValueError(f"step_size must be > 0, got {step_size}")
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
    ):
        super().__init__(seed)
        self.buffer_size = check_positive_int(buffer_size, "buffer_size")
        self.n_neg = check_positive_int(n_neg, "n_neg")
        self.steps = check_positive_int(steps, "steps", minimum=0)
        if isinstance(reinit_prob, bool) or not isinstance(reinit_prob, numbers.Real) or not 0 <= reinit_prob <= 1:
            raise ValueError(f"reinit_prob must be a probability in [0, 1], got {reinit_prob!r}")
        if kernel not in ("ula", "mala", "hmc", "gibbs"):
            raise ValueError(f"kernel must be one of 'ula', 'mala', 'hmc', 'gibbs', got {kernel!r}")
        if not float(step_size) > 0:
            raise ValueError(f"step_size must be > 0, got {step_size}")
        self.reinit_prob = float(reinit_prob)
        self.kernel = kernel
        self.step_size = float(step_size)
        self.noise_scale = noise_scale
        self.noise = noise
        self.n_leapfrog = check_positive_int(n_leapfrog, "n_leapfrog")
        self.beta = check_beta(beta)
        self.chains: Optional[mcmc.PersistentChains] = None
        self._pending_buffer = None

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
            beta=self.beta, seed=gen, dtype=y.dtype, device=y.device,
        )

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
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        buf = state.get("buffer")
        if buf is None:
            return
        if buf.shape[0] != self.buffer_size:
            raise ValueError(f"the saved buffer has {buf.shape[0]} entries, but buffer_size is {self.buffer_size}")
        if self.chains is not None:
            self.chains.buffer = buf.to(dtype=self.chains.buffer.dtype, device=self.chains.buffer.device).clone()
        else:
            self._pending_buffer = buf.clone()

    def __repr__(self) -> str:
        return (
            f"PersistentNegatives(buffer_size={self.buffer_size}, steps={self.steps}, "
            f"reinit_prob={self.reinit_prob}, kernel={self.kernel!r})"
        )


# ------------------------------------------------------------------------------------------------------
# 5-8: most offending


class MostOffending(Negatives):
    r"""The most offending incorrect answer: the lowest-energy output at least ``radius`` away from ``y``.

    Rows 5-8 of the loss zoo (hinge, min-hinge, square-square/square-hinge, square-exp, logistic).

    * **Finite outputs** (``candidates`` ``[K, *event]``): brute force over the candidates, excluding those
      within Euclidean distance ``radius`` of the example (``radius = 0`` excludes exactly the correct
      answer). Returns the ``k`` lowest, ``[k, *batch, *event]``. Deterministic.
    * **Continuous outputs** (``candidates=None``): projected gradient descent on :math:`F(x, \cdot)` from
      ``restarts`` points ``y + init_scale * N(0, I)``; after every step a point closer than ``radius`` to
      ``y`` is projected onto the sphere of radius ``radius`` around ``y``. Returns the lowest-energy
      restart, ``[1, *batch, *event]``. Without an exclusion radius the search would return the data
      itself once the energy is well trained.

    :param candidates: the finite output set, or ``None`` for continuous ``y``.
    :param radius: exclusion radius ``>= 0``.
    :param k: (finite) number of most offending answers returned.
    :param restarts: (continuous) starting points per example.
    :param steps: (continuous) gradient steps.
    :param lr: (continuous) step size of the gradient descent.
    :param init_scale: (continuous) spread of the starting points (default ``2 * radius``, or 1).
    :param seed: int or ``torch.Generator`` (continuous search only).

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> F = as_energy(lambda y: (y ** 2).sum(-1), event_shape=(1,))    # lowest at 0
        >>> cands = torch.tensor([[0.0], [1.0], [-2.0], [3.0]])
        >>> MostOffending(cands)(F, torch.tensor([[0.0], [1.0]])).flatten()   # best other than y
        tensor([1., 0.])
        >>> y_hat = MostOffending(radius=0.5, seed=0)(F, torch.zeros(3, 1))
        >>> y_hat.abs().flatten().round(decimals=3)                    # on the exclusion sphere
        tensor([0.5000, 0.5000, 0.5000])
    """

    def __init__(
        self,
        candidates: Optional[torch.Tensor] = None,
        *,
        radius: float = 0.0,
        k: int = 1,
        restarts: int = 8,
        steps: int = 100,
        lr: float = 0.05,
        init_scale: Optional[float] = None,
        seed: Seed = None,
    ):
        super().__init__(seed)
        if isinstance(radius, bool) or not isinstance(radius, numbers.Real) or not radius >= 0 or math.isinf(radius):
            raise ValueError(f"radius must be a finite number >= 0, got {radius!r}")
        if candidates is not None and (not isinstance(candidates, torch.Tensor) or candidates.dim() < 1):
            raise TypeError("candidates must be a tensor [K, *event_shape] or None")
        self.candidates = candidates
        self.radius = float(radius)
        self.k = check_positive_int(k, "k")
        self.restarts = check_positive_int(restarts, "restarts")
        self.steps = check_positive_int(steps, "steps", minimum=0)
        if not float(lr) > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.lr = float(lr)
        if init_scale is not None and not float(init_scale) > 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale}")
        self.init_scale = float(init_scale) if init_scale is not None else (2 * self.radius or 1.0)

    def __call__(self, energy, y, x=None):
        E, batch, y_flat, x_flat = _flatten(energy, y, x)
        if self.candidates is not None:
            return self._finite(E, batch, y_flat, x_flat)
        return self._search(E, batch, y_flat, x_flat, y.device)

    def _finite(self, E, batch, y_flat, x_flat):
        cands = _check_candidates(self.candidates.to(device=y_flat.device), E)
        B, K = y_flat.shape[0], cands.shape[0]
        with torch.no_grad():
            energies = _all_energies(E, cands.to(y_flat.dtype), x_flat, B)  # [B, K]
            excluded = _distances(cands, y_flat) <= self.radius
        allowed = (~excluded).sum(-1)
        if bool((allowed < self.k).any()):
            b = int((allowed < self.k).nonzero()[0])
            raise ValueError(
                f"only {int(allowed[b])} candidates lie farther than radius={self.radius} from y[{b}], "
                f"fewer than k={self.k}"
            )
        masked = energies.masked_fill(excluded, math.inf)
        idx = masked.topk(self.k, dim=-1, largest=False).indices  # [B, k]
        out = cands[idx].movedim(1, 0).to(y_flat.dtype)
        self.diagnostics = {}
        return out.reshape((self.k,) + tuple(batch) + tuple(E.event_shape))

    def _project(self, u, center, fallback):
        """Points of ``u`` closer than ``radius`` to ``center`` go onto the sphere (all ``[M, D]``)."""
        if self.radius == 0:
            return u
        d = u - center
        n = d.norm(dim=-1, keepdim=True)
        d = torch.where(n > 0, d, fallback)
        n = d.norm(dim=-1, keepdim=True)
        return torch.where(n < self.radius, center + d * (self.radius / n), u)

    def _search(self, E, batch, y_flat, x_flat, device):
        B, R = y_flat.shape[0], self.restarts
        D = int(math.prod(E.event_shape))
        gen = self.rng(device)
        center = _repeat(y_flat, R).reshape(R * B, D)
        xr = _repeat(x_flat, R)
        eps = torch.randn(center.shape, generator=gen, dtype=center.dtype, device=center.device)
        eps = torch.where(eps.norm(dim=-1, keepdim=True) > 0, eps, torch.ones_like(eps))
        u = self._project(center + self.init_scale * eps, center, eps)

        def f(v):
            return _call(E, v.reshape((R * B,) + tuple(E.event_shape)), xr)

        for _ in range(self.steps):
            with torch.enable_grad():
                v = u.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(f(v).sum(), v)
            u = self._project(u - self.lr * g, center, eps)
        with torch.no_grad():
            e = f(u)
        if not bool(torch.isfinite(e).all()):
            raise ValueError("the energy is not finite at the end of the most-offending search; lower lr")
        best = e.reshape(R, B).argmin(0)  # [B]
        out = u.reshape(R, B, D)[best, torch.arange(B, device=u.device)]
        self.diagnostics = {"offending_energy": float(e.reshape(R, B).min(0).values.mean())}
        return out.detach().reshape((1,) + tuple(batch) + tuple(E.event_shape))

    def __repr__(self) -> str:
        kind = f"K={self.candidates.shape[0]}" if self.candidates is not None else "continuous"
        return f"MostOffending({kind}, radius={self.radius})"


# ------------------------------------------------------------------------------------------------------
# 10: noise / corruption


class Corruption(Negatives):
    r"""Corrupted data: :math:`\hat y = y + \sigma\,\epsilon`, :math:`\epsilon \sim N(0, I)`, or ``corrupt(y)``.

    Row 10 of the loss zoo (denoising: :math:`\hat y = N(y)`). With a user function
    ``corrupt(y, generator) -> y_hat`` (``y`` ``[M, *event]``, same shape out) any corruption (masking,
    swapping, blurring) can be used; it must draw its random numbers from ``generator`` for the results
    to be reproducible.

    :param sigma: noise standard deviation ``> 0`` (ignored when ``corrupt`` is given).
    :param n_neg: corrupted copies per example.
    :param corrupt: optional ``corrupt(y, generator)``.
    :param seed: int or ``torch.Generator``.

    Example::

        >>> import torch
        >>> neg = Corruption(sigma=0.5, n_neg=2, seed=0)
        >>> y_hat = neg(lambda y: y.sum(-1), torch.zeros(1000, 3))
        >>> y_hat.shape, round(y_hat.std().item(), 1)
        (torch.Size([2, 1000, 3]), 0.5)
    """

    def __init__(self, sigma: float = 0.1, *, n_neg: int = 1, corrupt: Optional[Callable] = None, seed: Seed = None):
        super().__init__(seed)
        if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not sigma > 0 or math.isinf(sigma):
            raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
        if corrupt is not None and not callable(corrupt):
            raise TypeError("corrupt must be a callable corrupt(y, generator) -> y_hat")
        self.sigma = float(sigma)
        self.n_neg = check_positive_int(n_neg, "n_neg")
        self.corrupt = corrupt

    def __call__(self, energy, y, x=None):
        E, batch, y_flat, _ = _flatten(energy, y, x)
        gen = self.rng(y.device)
        y_rep = _repeat(y_flat, self.n_neg)
        if self.corrupt is None:
            out = y_rep + self.sigma * torch.randn(y_rep.shape, generator=gen, dtype=y.dtype, device=y.device)
        else:
            out = self.corrupt(y_rep, gen)
            if not isinstance(out, torch.Tensor) or out.shape != y_rep.shape:
                raise ValueError(
                    f"corrupt(y, generator) must return a tensor of y's shape {tuple(y_rep.shape)}, got "
                    f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}"
                )
        return out.detach().reshape((self.n_neg,) + tuple(batch) + tuple(E.event_shape))

    def __repr__(self) -> str:
        return f"Corruption(sigma={self.sigma}, n_neg={self.n_neg})" if self.corrupt is None else "Corruption(corrupt)"


# ------------------------------------------------------------------------------------------------------
# 9: a trained generator


class LearnedGenerator(Negatives):
    r"""GAN-style negatives :math:`\hat y = g_u(z)`, :math:`z \sim N(0, I)`, with ``g`` trained to lower their energy.

    Row 9 of the loss zoo. At every call the generator takes one optimizer step on
    :math:`\frac1M \sum_i F(x_i, g_u(z_i))` (the energy's parameters receive no gradient from it), then
    returns fresh samples. The energy, trained with a contrastive loss, pushes up where the generator puts
    its samples; the generator chases the low-energy regions. Keep it simple: nothing here prevents the
    generator from collapsing onto a mode (add an entropy or diversity term in your own generator if
    needed).

    :param generator: an ``nn.Module`` mapping ``z`` ``[M, *latent_shape]`` (and ``x`` ``[M, *x_event]``
        when conditioning is given) to ``[M, *event_shape]``.
    :param latent_shape: shape of one ``z``.
    :param n_neg: samples per example.
    :param optimizer: optimizer over the generator's parameters (default Adam with ``lr``).
    :param lr: learning rate of the default optimizer.
    :param seed: int or ``torch.Generator`` (draws of ``z``).

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> F = as_energy(lambda y: ((y - 3.0) ** 2).sum(-1), event_shape=(2,))
        >>> neg = LearnedGenerator(torch.nn.Linear(4, 2), latent_shape=(4,), lr=0.05, seed=0)
        >>> neg(F, torch.zeros(16, 2)).shape
        torch.Size([1, 16, 2])
    """

    def __init__(
        self,
        generator: nn.Module,
        latent_shape: Sequence[int],
        *,
        n_neg: int = 1,
        optimizer: Optional[torch.optim.Optimizer] = None,
        lr: float = 1e-3,
        seed: Seed = None,
    ):
        super().__init__(seed)
        if not isinstance(generator, nn.Module):
            raise TypeError(f"generator must be an nn.Module, got {type(generator).__name__}")
        self.net = generator
        self.latent_shape = torch.Size((latent_shape,) if isinstance(latent_shape, int) else latent_shape)
        self.n_neg = check_positive_int(n_neg, "n_neg")
        if optimizer is None:
            if not float(lr) > 0:
                raise ValueError(f"lr must be > 0, got {lr}")
            optimizer = torch.optim.Adam(generator.parameters(), lr=lr)
        self.optimizer = optimizer

    def _sample(self, M, x_rep, gen, dtype, device):
        z = torch.randn((M,) + tuple(self.latent_shape), generator=gen, dtype=dtype, device=device)
        return self.net(z) if x_rep is None else self.net(z, x_rep)

    def __call__(self, energy, y, x=None):
        E, batch, y_flat, x_flat = _flatten(energy, y, x)
        M = self.n_neg * y_flat.shape[0]
        x_rep = _repeat(x_flat, self.n_neg)
        gen = self.rng(y.device)
        params = [p for p in self.net.parameters() if p.requires_grad]
        with torch.enable_grad():
            fake = self._sample(M, x_rep, gen, y.dtype, y.device)
            if tuple(fake.shape) != (M,) + tuple(E.event_shape):
                raise ValueError(
                    f"generator must map z [M, *latent_shape] to [M, *event_shape] = {(M,) + tuple(E.event_shape)}, "
                    f"got {tuple(fake.shape)}"
                )
            g_loss = _call(E, fake, x_rep).mean()
            grads = torch.autograd.grad(g_loss, params)  # only the generator's parameters
        for p, g in zip(params, grads):
            p.grad = g
        self.optimizer.step()
        for p in params:
            p.grad = None
        with torch.no_grad():
            out = self._sample(M, x_rep, gen, y.dtype, y.device)
        self.diagnostics = {"generator_energy": float(g_loss.detach())}
        return out.detach().reshape((self.n_neg,) + tuple(batch) + tuple(E.event_shape))

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["generator"] = {k: v.clone() for k, v in self.net.state_dict().items()}
        state["optimizer"] = copy.deepcopy(self.optimizer.state_dict())  # Adam updates its state in place
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "generator" in state:
            self.net.load_state_dict(state["generator"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))

    def __repr__(self) -> str:
        return f"LearnedGenerator({type(self.net).__name__}, latent_shape={tuple(self.latent_shape)})"
