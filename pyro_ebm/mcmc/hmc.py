"""Hamiltonian Monte Carlo over a batch of chains, as pure ``init``/``step`` functions.

State tensors are ``[R, C, D]`` (replicas x chains x flattened event) and the driver
(:func:`pyro_ebm.mcmc.sample`) owns the loop and the adaptation. The potential is ``U = beta * F`` with a
per-replica ``beta`` ``[R, 1]``; the state stores ``F`` and ``dF/dq`` so replicas can swap states.

Every chain has its own step size and its own number of leapfrog steps; a chain that has done its steps
is frozen while the others finish (one batched gradient per leapfrog step for all chains). Acceptance is
per chain. A proposal whose energy is NaN/inf is rejected and flagged divergent, so the chain stays at its
last finite state and other chains are unaffected.

The trajectory is :func:`pyro_ebm.mcmc.integrator.leapfrog`, the library's one integrator: :func:`begin`
draws the momentum and makes its first half kick, :func:`~pyro_ebm.mcmc.integrator.trajectory` the rest.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .integrator import trajectory

__all__ = ["HMCState", "HMCInfo", "Noise", "draw_noise", "EagerOps", "init", "step", "begin", "end",
           "find_initial_step_size"]


class HMCState(NamedTuple):
    """``q`` ``[R, C, D]``, energy ``F`` ``[R, C]``, gradient ``dF/dq`` ``[R, C, D]``."""

    q: torch.Tensor
    F: torch.Tensor
    grad: torch.Tensor


class HMCInfo(NamedTuple):
    """Per-chain transition statistics (all ``[R, C]`` except the proposal tensors ``[R, C, D]``;
    ``n_steps`` is an int when every chain made the same number of leapfrog steps)."""

    accept_prob: torch.Tensor
    accepted: torch.Tensor
    diverging: torch.Tensor
    energy: torch.Tensor
    q_prop: torch.Tensor
    p_prop: torch.Tensor
    n_steps: torch.Tensor


def init(potential, q: torch.Tensor) -> HMCState:
    """Evaluate ``F`` and its gradient at ``q`` ``[R, C, D]`` (contiguous tensors: the compiled pieces
    are called with the strides they were compiled for)."""
    F, g = potential.value_and_grad(q)
    return HMCState(q.detach().contiguous(), F.contiguous(), g.contiguous())


def step(
    state: HMCState,
    potential,
    step_size: torch.Tensor,
    n_steps,
    beta: torch.Tensor,
    inv_mass: torch.Tensor,
    generator: torch.Generator,
    *,
    max_delta_energy: float = 1000.0,
    ops=None,
):
    """One HMC transition for every chain.

    :param state: current :class:`HMCState`.
    :param potential: object with ``value_and_grad(q) -> (F [R, C], dF/dq [R, C, D])``.
    :param step_size: ``[R, C]`` per-chain leapfrog step size.
    :param n_steps: int (same for all chains) or long tensor ``[R, C]``.
    :param beta: ``[R, 1]`` inverse temperature of each replica.
    :param inv_mass: ``[R, 1, D]`` diagonal inverse mass matrix.
    :param generator: ``torch.Generator`` on the state's device, or a :class:`Noise` drawing from one
        for many transitions at once (what :func:`pyro_ebm.mcmc.sample` uses).
    :param ops: the pieces of the transition (:class:`EagerOps` by default; compiled ones from
        :func:`pyro_ebm.mcmc.compiled.compile_ops`).
    :returns: ``(new_state, HMCInfo)``.

    Example (the driver :func:`pyro_ebm.mcmc.sample` normally does this)::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> from pyro_ebm.mcmc import hmc
        >>> from pyro_ebm.mcmc.potential import EnergyPotential
        >>> pot = EnergyPotential(as_energy(lambda y: 0.5 * (y ** 2).sum(-1), event_shape=(3,)), (3,))
        >>> state = hmc.init(pot, torch.zeros(1, 5, 3))          # 1 replica, 5 chains
        >>> gen = torch.Generator().manual_seed(0)
        >>> eps, beta, inv_mass = torch.full((1, 5), 0.3), torch.ones(1, 1), torch.ones(1, 1, 3)
        >>> state, info = hmc.step(state, pot, eps, 10, beta, inv_mass, gen)
        >>> state.q.shape, info.accept_prob.shape
        (torch.Size([1, 5, 3]), torch.Size([1, 5]))
    """
    if torch.is_grad_enabled():  # the energy's gradient is taken inside value_and_grad; nothing else is
        with torch.no_grad():  # differentiated (one check here, not a context per piece)
            return step(state, potential, step_size, n_steps, beta, inv_mass, generator,
                        max_delta_energy=max_delta_energy, ops=ops)
    q, F, grad = state
    ops = _EAGER if ops is None else ops
    xi, u = generator.next() if isinstance(generator, Noise) else draw_noise(generator, q)
    p, H0, half, full, drift = ops.begin(xi, inv_mass, step_size, beta, F, grad)
    if isinstance(n_steps, int):
        n_max, n_t = n_steps, None
    else:
        n_max = int(n_steps.max())
        n_t = None if int(n_steps.min()) == n_max else n_steps
    q1, p1, F1, g1 = trajectory(potential, q, p, grad, F, half, full, drift, n_t, n_max, steps=ops.stepper)
    q, F, grad, accept_prob, accepted, diverging, energy = ops.end(
        q, F, grad, q1, p1, F1, g1, H0, beta, inv_mass, u, max_delta_energy)
    return HMCState(q, F, grad), HMCInfo(accept_prob, accepted, diverging, energy, q1, p1, n_steps)


def draw_noise(generator: torch.Generator, q: torch.Tensor, block: int | None = None):
    """A transition's standard normals ``xi`` (shaped like ``q`` ``[R, C, D]``) and uniforms ``u``
    ``[R, C]``; with ``block``, those of ``block`` transitions (``[block, R, C, D]``, ``[block, R, C]``)."""
    lead = () if block is None else (block,)
    return (torch.randn(lead + q.shape, generator=generator, dtype=q.dtype, device=q.device),
            torch.rand(lead + q.shape[:2], generator=generator, dtype=q.dtype, device=q.device))


class Noise:
    """The random numbers of a run's transitions (:func:`draw_noise`), drawn ``block`` transitions at a time:
    two generator calls per block instead of two per transition (each costs a few microseconds, as much as
    a compiled leapfrog step of a small energy). ``total`` caps the last block at what the run needs."""

    def __init__(self, generator: torch.Generator, q: torch.Tensor, total: int, block: int = 64):
        self.generator, self.q, self.left = generator, q, total
        # at most ~4M numbers held at once
        self.block = max(1, min(block, (1 << 22) // max(1, q.numel())))
        self.i = self.n = 0

    def next(self):
        """``(xi, u)`` of the next transition."""
        if self.i == self.n:
            self.n = max(1, min(self.block, self.left))
            self.left -= self.n
            xi, u = draw_noise(self.generator, self.q, self.n)
            self.xi, self.u = xi.unbind(0), u.unbind(0)  # all views at once, not two indexings a transition
            self.i = 0
        i = self.i
        self.i += 1
        return self.xi[i], self.u[i]


def begin(xi, inv_mass, step_size, beta, F, grad):
    """The start of a transition, from standard normals ``xi`` ``[R, C, D]``: the momentum
    ``p = xi * M^(1/2)`` after the trajectory's first half kick (``p - half * grad``), the starting
    Hamiltonian ``H0 = beta F + |xi|^2 / 2`` ``[R, C]``, and the integrator's constants ``half = step * beta
    / 2``, ``full = 2 half`` ``[R, C, 1]`` and ``drift = step * inv_mass`` ``[R, C, D]``.

    Returns ``(p, H0, half, full, drift)``."""
    step = step_size.unsqueeze(-1)
    half = 0.5 * step * beta.unsqueeze(-1)
    p = torch.addcmul(xi * inv_mass.rsqrt(), half, grad, value=-1)
    return p, torch.linalg.vecdot(xi, xi).mul(0.5).addcmul(beta, F), half, 2 * half, step * inv_mass


def end(q, F, grad, q1, p1, F1, g1, H0, beta, inv_mass, u, max_delta_energy: float):
    """The Metropolis test of proposals ``(q1, p1, F1, g1)`` against the current ``(q, F, grad)`` with
    uniforms ``u`` ``[R, C]``: returns the new ``(q, F, grad)``, the acceptance probability, the accepted
    and divergent flags and the Hamiltonian of each chain's new state."""
    H1 = torch.linalg.vecdot(p1, p1 * inv_mass).mul(0.5).addcmul(beta, F1)
    # a non-finite position or gradient makes the final momentum, hence dH = H1 - H0, non-finite: such
    # a proposal gets dH = inf, acceptance probability 0, and counts as divergent
    ninf = float("-inf")
    minus_dH = H0.sub(H1).nan_to_num(nan=ninf, posinf=ninf, neginf=ninf)
    accept_prob = minus_dH.exp().clamp(max=1.0)
    accepted = u < accept_prob  # u in [0, 1): never for probability 0
    a3 = accepted.unsqueeze(-1)
    return (torch.where(a3, q1, q), torch.where(accepted, F1, F), torch.where(a3, g1, grad), accept_prob,
            accepted, minus_dH < -max_delta_energy, torch.where(accepted, H1, H0))


class EagerOps:
    """The pieces of :func:`step` as plain functions of one potential: :func:`begin`, the leapfrog steps
    of :mod:`~pyro_ebm.mcmc.integrator` (``stepper``; ``None``: the eager ones) and :func:`end`.
    :mod:`pyro_ebm.mcmc.compiled` provides the same interface with each piece compiled."""

    stepper = None
    compiled = False
    begin = staticmethod(begin)
    end = staticmethod(end)

    @staticmethod
    def call(name, fn, args):
        """Run ``fn(*args)`` (compiled ops compile it, cached under ``name`` and the input shapes)."""
        return fn(*args)


_EAGER = EagerOps()


def find_initial_step_size(
    state: HMCState, potential, beta, inv_mass, generator, *, start=0.1, target: float = 0.8, iters: int = 16,
    ops=None,
):
    """Per-chain doubling/halving search for a step size whose one-step acceptance crosses ``target``.

    Each chain starts from ``start`` (a float, or ``[R, C]`` per-chain step sizes, e.g. the current ones
    after the mass matrix changed) and doubles (if the first trial accepts above ``target``) or halves
    until the acceptance crosses ``target``, at most ``iters`` trials; all chains move together, one
    batched gradient per trial.

    :returns: ``(step_size [R, C], trials)``, ``trials`` being the number of batched gradient evaluations.
    """
    eps = torch.as_tensor(start, dtype=state.F.dtype, device=state.F.device).expand(state.F.shape).clone()
    direction = None
    active = torch.ones_like(state.F, dtype=torch.bool)
    trials = 0
    for _ in range(iters):
        _, info = step(state, potential, eps, 1, beta, inv_mass, generator, ops=ops)
        trials += 1
        good = info.accept_prob > target
        if direction is None:
            direction = torch.where(good, 2.0, 0.5).to(eps.dtype)
        else:
            crossed = good != (direction > 1)
            active = active & ~crossed
        if not bool(active.any()):
            break
        eps = torch.where(active, eps * direction, eps)
    # a chain that grew its step ends one doubling past the crossing: go back one
    return torch.where(direction > 1, 0.5 * eps, eps).clamp(1e-8, 1e3), trials
