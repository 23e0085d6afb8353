"""Persistent chains (a replay buffer) for PCD-style training of an energy."""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch

from .._rng import make_generator
from .._validation import check_beta, check_finite, check_positive_int
from ..energy import Energy, as_energy, check_energy_output
from .loop import _positive, make_kernel, run
from .potential import EnergyPotential
from .proposals import independence_jump

__all__ = ["PersistentChains"]


class PersistentChains:
    """A buffer of chain states that :meth:`sample` continues and writes back (Du & Mordatch 2019).

    Each call draws ``n`` buffer entries at random, replaces each with fresh noise with probability
    ``reinit_prob``, runs ``steps`` kernel steps on the batch, optionally makes one independence
    Metropolis-Hastings ``jump`` (:mod:`pyro_ebm.mcmc.proposals`: moves between modes that the local
    kernel cannot make), writes the states back and returns them detached.

    Within a call the step size is fixed (the energy changes between calls, so the warmup of
    :func:`~pyro_ebm.mcmc.sample` does not apply). With ``target_accept`` set (HMC/MALA), the step size
    follows the energy across calls: after each call ``log step_size += 0.1 (a - target) / max(target,
    1 - target)`` with ``a`` the call's mean acceptance probability (a Robbins-Monro step with a constant
    gain, so it keeps tracking a changing energy; the same rule as the step-size part of dual averaging).

    :param energy: an :class:`~pyro_ebm.Energy` or a callable ``F(y)`` (then give ``event_shape``).
    :param buffer_size: number of stored states.
    :param init: ``[buffer_size, *event]`` initial buffer, or ``None`` for ``noise(buffer_size)``.
    :param noise: ``noise(n, generator) -> [n, *event]`` fresh states; default uniform on ``[-1, 1]``
        (Bernoulli(0.5) for ``kernel="gibbs"``).
    :param event_shape: shape of one state when ``energy`` is a plain callable.
    :param reinit_prob: probability that a drawn entry restarts from fresh noise (default 0.05).
    :param kernel: ``"ula"`` (default, as EBM papers use), ``"mala"``, ``"hmc"`` or ``"gibbs"``.
    :param step_size: Langevin / leapfrog step size.
    :param noise_scale: ULA noise (default ``sqrt(2 step / beta)``).
    :param n_leapfrog: leapfrog steps per HMC transition.
    :param beta: inverse temperature.
    :param seed: int or ``torch.Generator``.
    :param dtype, device: of the buffer when ``init`` is not given.
    :param compile: run the HMC/MALA transition compiled (see :mod:`pyro_ebm.mcmc.compiled`); compiled
        once for the batch shape, then reused by every call.
    :param target_accept: ``None`` (fixed ``step_size``) or the mean acceptance in ``(0, 1)`` that the step
        size is adapted to across calls (HMC/MALA only).
    :param jump: ``None`` or an independence proposal with ``sample(n, generator)`` and ``log_prob(y)``
        (e.g. :class:`~pyro_ebm.mcmc.proposals.DataProposal`) for one jump per call after the kernel steps.

    Example::

        >>> import torch
        >>> from pyro_ebm.mcmc import PersistentChains
        >>> F = lambda y: 0.5 * (y ** 2).sum(-1)
        >>> pcd = PersistentChains(F, buffer_size=100, event_shape=(2,), step_size=0.1, seed=0)
        >>> pcd.sample(16, steps=10).shape
        torch.Size([16, 2])
        >>> pcd.buffer.shape
        torch.Size([100, 2])
    """

    def __init__(
        self,
        energy,
        buffer_size: int,
        init: Optional[torch.Tensor] = None,
        *,
        noise: Optional[Callable] = None,
        event_shape: Optional[Sequence[int]] = None,
        reinit_prob: float = 0.05,
        kernel: str = "ula",
        step_size: float = 0.01,
        noise_scale: Optional[float] = None,
        n_leapfrog: int = 5,
        beta: float = 1.0,
        seed=None,
        dtype=None,
        device=None,
        compile: bool = False,
        target_accept: Optional[float] = None,
        jump=None,
    ):
        self.buffer_size = check_positive_int(buffer_size, "buffer_size")
        if compile is not False and kernel not in ("hmc", "mala"):
            raise ValueError(f"compile=True needs kernel 'hmc' or 'mala', got kernel={kernel!r}")
        if not 0.0 <= float(reinit_prob) <= 1.0:
            raise ValueError(f"reinit_prob must be in [0, 1], got {reinit_prob}")
        if kernel not in ("ula", "mala", "hmc", "gibbs"):
            raise ValueError(f"kernel must be one of 'ula', 'mala', 'hmc', 'gibbs', got {kernel!r}")
        self.beta = check_beta(beta)
        self.reinit_prob = float(reinit_prob)
        self.kernel = kernel
        self.step_size = _positive(step_size, "step_size")
        self.noise_scale = None if noise_scale is None else _positive(noise_scale, "noise_scale", allow_zero=True)
        self.n_leapfrog = check_positive_int(n_leapfrog, "n_leapfrog")
        if target_accept is not None:
            if kernel not in ("hmc", "mala"):
                raise ValueError(f"target_accept needs kernel 'hmc' or 'mala', got kernel={kernel!r}")
            if isinstance(target_accept, bool) or not isinstance(target_accept, (int, float)) \
                    or not 0 < target_accept < 1:
                raise ValueError(f"target_accept must be a number in (0, 1) or None, got {target_accept!r}")
            target_accept = float(target_accept)
        self.target_accept = target_accept
        if jump is not None and not (callable(getattr(jump, "sample", None)) and callable(getattr(jump, "log_prob", None))):
            raise TypeError(f"jump must be a proposal with sample(n, generator) and log_prob(y), got {type(jump).__name__}")
        if jump is not None and kernel == "gibbs":
            raise ValueError("jump is for continuous states; kernel='gibbs' has binary units")
        self.jump = jump
        # the kernel of sample(), with this buffer's fixed settings (no adaptation: the energy changes
        # between calls during training)
        opts = {
            "ula": {"step_size": self.step_size, "noise": self.noise_scale},
            "mala": {"step_size": self.step_size, "adapt_step_size": False, "adapt_mass": False},
            "hmc": {"step_size": self.step_size, "n_steps": self.n_leapfrog, "adapt_step_size": False,
                    "adapt_mass": False},
            "gibbs": {},
        }[kernel]
        if kernel in ("hmc", "mala"):
            opts["compile"] = compile
        self._kernel = make_kernel(kernel, opts)
        if init is not None:
            if not isinstance(init, torch.Tensor) or init.dim() < 1 or init.shape[0] != buffer_size:
                raise ValueError(f"init must be a tensor [buffer_size={buffer_size}, *event_shape]")
            if not init.is_floating_point() or not bool(torch.isfinite(init).all()):
                raise ValueError("init must be a floating-point tensor of finite values")
            event_shape = tuple(init.shape[1:]) if event_shape is None else event_shape
            dtype, device = init.dtype, init.device
        if isinstance(energy, Energy):
            event_shape = energy.event_shape if event_shape is None else event_shape
        if event_shape is None:
            raise ValueError("event_shape is needed when energy is a plain callable and init is not given")
        self.energy = as_energy(energy, event_shape=event_shape)
        self.event_shape = torch.Size(self.energy.event_shape)
        self.dtype = dtype or torch.get_default_dtype()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.generator = make_generator(seed, self.device)
        self._noise = noise
        self.buffer = init.detach().clone() if init is not None else self.noise(buffer_size)
        self.last_stats = {}

    def noise(self, n: int) -> torch.Tensor:
        """``n`` fresh states ``[n, *event]``."""
        n = check_positive_int(n, "n")
        if self._noise is not None:
            out = self._noise(n, self.generator)
            shape = (n,) + tuple(self.event_shape)
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != shape:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"noise(n, generator) must return a tensor [n, *event_shape] = {shape}, got {got}")
            check_finite(out.detach(), "noise(n, generator) output")
            return out.to(dtype=self.dtype, device=self.device)
        shape = (n,) + tuple(self.event_shape)
        u = torch.rand(shape, generator=self.generator, dtype=self.dtype, device=self.device)
        if self.kernel == "gibbs":
            return (u < 0.5).to(self.dtype)
        return 2 * u - 1

    def sample(self, n: int, steps: int, x=None) -> torch.Tensor:
        """Continue ``n`` random buffer entries for ``steps`` steps; returns ``[n, *event]`` (detached).

        The steps are those of :func:`pyro_ebm.mcmc.sample` with this buffer's fixed settings (the same
        run loop: the same generator state gives the same draws). After the call, ``last_stats`` holds
        the number of divergent transitions (``diverging``: for ULA, proposals with a NaN/inf state or
        energy, which are rejected) and, for the Metropolis-adjusted kernels, the mean acceptance
        probability over the steps and chains (``acceptance_rate``); it is empty for Gibbs.

        :param x: optional conditioning passed to the energy.
        """
        n = check_positive_int(n, "n")
        steps = check_positive_int(steps, "steps", minimum=0)
        self.last_stats = {}
        idx = torch.randint(0, self.buffer_size, (n,), generator=self.generator, device=self.device)
        y = self.buffer[idx]
        fresh = torch.rand((n,), generator=self.generator, dtype=self.dtype, device=self.device) < self.reinit_prob
        y = torch.where(fresh.reshape((n,) + (1,) * len(self.event_shape)), self.noise(n), y)
        if not steps:
            self.buffer[idx] = y
            return y.detach().clone()
        out, stats, accepted = self.transition(y, steps, x)
        if self.kernel in ("mala", "hmc"):
            self.last_stats = {"acceptance_rate": float(stats["acceptance_rate"].mean()),
                               "diverging": int(stats["diverging"].sum())}
            if self.target_accept is not None:
                self._adapt(self.last_stats["acceptance_rate"])
                self.last_stats["step_size"] = self.step_size
        elif self.kernel == "ula":
            self.last_stats = {"diverging": int(stats["diverging"].sum())}
        if accepted is not None:
            self.last_stats["jump_rate"] = float(accepted.double().mean())
        self.buffer[idx] = out
        return out.clone()

    def transition(self, y: torch.Tensor, steps: int, x=None):
        """Move the states ``y`` ``[n, *event]`` by ``steps`` kernel steps and then, with ``jump``, one jump.

        No buffer is read or written and the step size is not adapted: this is the chains' transition
        (what :meth:`sample` applies to the entries it draws, and what a probe of the sampler repeats).

        :returns: ``(y_new [n, *event] detached, stats {name: [n, steps]} of the kernel steps, accepted
            [n] bool of the jump or None)``.
        """
        if not isinstance(y, torch.Tensor) or not y.is_floating_point():
            raise TypeError(f"y must be a floating-point tensor [n, *event_shape], got "
                            f"{y.dtype if isinstance(y, torch.Tensor) else type(y).__name__}")
        if y.dim() < 1 or y.shape[0] < 1 or tuple(y.shape[1:]) != tuple(self.event_shape):
            raise ValueError(f"y must have shape [n >= 1, *event_shape] = [n, "
                             f"{', '.join(map(str, self.event_shape))}], got {tuple(y.shape)}")
        steps = check_positive_int(steps, "steps")
        check_finite(y.detach(), "y")
        n = y.shape[0]
        pot = EnergyPotential(self.energy, self.event_shape, x)
        q = pot.to_flat(y)
        with torch.no_grad():  # the energy's shape contract, once per call (the loop reshapes its output)
            F0 = pot._energy(pot._input(q.unsqueeze(0)))
        check_energy_output(F0, (n,), name=f"{self.energy._label()} (on states of event_shape "
                            f"{tuple(self.event_shape)})", check_finite_values=False)
        F0 = F0.reshape(n)
        if not bool(torch.isfinite(F0).all()):
            bad = (~torch.isfinite(F0)).nonzero().flatten()[:10].tolist()
            raise ValueError(
                f"the energy is not finite at {int((~torch.isfinite(F0)).sum())} of {n} drawn buffer entries "
                f"(first: {bad}); the buffer (init, or the noise it restarts from) must hold states where F "
                "is finite"
            )
        betas = torch.full((1,), self.beta, dtype=self.dtype, device=self.device)
        draws, stats, _ = run(self._kernel, pot, q.unsqueeze(0), betas, 0, steps, self.generator)
        out = pot.unflatten(draws[:, -1]).detach()
        accepted = None
        if self.jump is not None:
            def F(v):
                return self.energy(v) if x is None else self.energy(v, x)

            with torch.no_grad():
                F_last = F(out)
            out, F_new, accepted = independence_jump(F, out, F_last.detach(), self.jump, self.beta, self.generator)
            if "lp" in stats:  # the statistics at the last step follow the jump
                stats["lp"][:, -1] = (-self.beta * F_new).to(stats["lp"].dtype)
            if "energy" in stats:  # the Hamiltonian's potential part moves with the jump
                stats["energy"][:, -1] += (self.beta * (F_new - F_last)).to(stats["energy"].dtype)
        return out, stats, accepted

    def _adapt(self, acceptance: float) -> None:
        """One step of the step size towards ``target_accept`` (see the class docstring)."""
        t = self.target_accept
        if acceptance != acceptance:  # NaN: every proposal failed; shrink
            acceptance = 0.0
        self.set_step_size(self.step_size * math.exp(0.1 * (acceptance - t) / max(t, 1 - t)))

    def set_step_size(self, value: float) -> None:
        """Set the step size of the following calls (an adapted one restored from a checkpoint, say)."""
        self.step_size = _positive(float(value), "step_size")
        self._kernel.step_size = self.step_size
