"""The one leapfrog (velocity Verlet) integrator of the library, batched over replicas and chains.

Every Hamiltonian move in :mod:`pyro_ebm` -- HMC and MALA in :func:`pyro_ebm.mcmc.sample`, persistent
chains, and the moves of annealed importance sampling and tempered SMC in :mod:`pyro_ebm.partition` --
goes through :func:`leapfrog` (a half kick, then :func:`trajectory`), via :func:`pyro_ebm.mcmc.hmc.step`.
One step is :func:`leapfrog_step` (every chain moves; :func:`leapfrog_steps` makes several) or
:func:`masked_leapfrog_step` (chains past their own number of steps stay put);
:mod:`pyro_ebm.mcmc.compiled` compiles these same functions.

It is written here rather than taken from ``pyro.ops.integrator.velocity_verlet``: Pyro's works on dicts
of sites and differentiates a *scalar* potential (so per-chain energies would have to be recomputed),
and it has no notion of chains with different numbers of steps. This one keeps the energy and gradient of
every chain from the same batched backward pass and fuses each update into one ``addcmul``.
"""

from __future__ import annotations

import torch

__all__ = ["leapfrog", "trajectory", "leapfrog_step", "leapfrog_steps", "masked_leapfrog_step"]


def leapfrog_step(value_and_grad, q, p, drift, kick):
    """Drift ``q += drift * p``, evaluate ``(F, dF/dq)`` there, kick ``p -= kick * dF/dq``.

    ``p`` has had its first half kick already; ``kick`` ``[R, C, 1]`` is the full kick ``step * beta``,
    or the half kick on the last step. Returns ``(q, p, F, grad)``.
    """
    q = torch.addcmul(q, drift, p)
    F, grad = value_and_grad(q)
    return q, torch.addcmul(p, kick, grad, value=-1), F, grad


def leapfrog_steps(value_and_grad, q, p, drift, full, last_kick, n: int):
    """``n`` unmasked :func:`leapfrog_step` s: full kicks, and ``last_kick`` on the last one."""
    F = grad = None
    for k in range(n):
        q, p, F, grad = leapfrog_step(value_and_grad, q, p, drift, last_kick if k == n - 1 else full)
    return q, p, F, grad


def masked_leapfrog_step(value_and_grad, q, p, F, grad, drift, half, full, n_steps, k):
    """Step ``k`` (0-based; an int or a 0-d tensor) of chains with ``n_steps`` ``[R, C]`` steps each:
    chains with ``n_steps <= k`` keep ``(q, p, F, grad)``, the others make :func:`leapfrog_step` with a
    full kick, or a half kick on their last step."""
    q_new = torch.addcmul(q, drift, p)
    F_new, g_new = value_and_grad(q_new)
    active = n_steps > k
    a3 = active.unsqueeze(-1)
    q = torch.where(a3, q_new, q)
    F = torch.where(active, F_new, F)
    grad = torch.where(a3, g_new, grad)
    kick = torch.where((n_steps == k + 1).unsqueeze(-1), half, full) * a3
    return q, torch.addcmul(p, kick, grad, value=-1), F, grad


class _EagerSteps:
    """:func:`leapfrog_step` and :func:`masked_leapfrog_step` bound to a potential's ``value_and_grad``."""

    def __init__(self, potential):
        self.vg = potential.value_and_grad

    #: the number of steps :meth:`steps` runs at once (compiled step functions run several)
    chunk = 1

    def steps(self, q, p, drift, full, last_kick, n):
        return leapfrog_steps(self.vg, q, p, drift, full, last_kick, n)

    def masked_step(self, q, p, F, grad, drift, half, full, n_steps, k):
        return masked_leapfrog_step(self.vg, q, p, F, grad, drift, half, full, n_steps, k)


def leapfrog(potential, q, p, grad, F, half, full, drift, n_steps, n_max, steps=None):
    """``n_max`` batched leapfrog steps of ``H = beta F(q) + p^T M^-1 p / 2``.

    Shapes: ``q, p, grad`` ``[R, C, D]`` (``grad = dF/dq`` at ``q``), ``F`` ``[R, C]``. ``half``
    ``[R, C, 1]`` is the half kick ``step * beta / 2``, ``full = 2 half`` and ``drift = step * inv_mass``
    ``[R, C, D]``. ``n_steps`` is ``None`` (every chain makes ``n_max`` steps) or a long tensor
    ``[R, C]``: rows with ``n_steps <= k`` are frozen from step ``k`` on, so chains with different
    trajectory lengths share one batched gradient per step. ``potential.value_and_grad(q)`` returns
    ``(F [R, C], dF/dq [R, C, D])``. ``steps`` is an object with ``steps`` (:func:`leapfrog_steps`),
    ``masked_step`` (:func:`masked_leapfrog_step`), both with the potential bound, and ``chunk`` (the most
    steps one ``steps`` call runs, a power of two; the trajectory is cut into calls of ``chunk``, then
    halving numbers of steps); compiled ones come from
    :mod:`pyro_ebm.mcmc.compiled`. By default the eager ones.

    Returns the end point ``(q, p, F, grad)``.

    Example (a harmonic oscillator: ``H`` is conserved to ``O(step^2)``, and the map is reversible)::

        >>> import torch
        >>> class Quadratic:
        ...     def value_and_grad(self, q):
        ...         return 0.5 * (q ** 2).sum(-1), q.clone()
        >>> q0, p0 = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 1.0]]])
        >>> eps = torch.full((1, 1, 1), 0.1)
        >>> pot = Quadratic()
        >>> F0, g0 = pot.value_and_grad(q0)
        >>> q1, p1, F1, g1 = leapfrog(pot, q0, p0.clone(), g0, F0, eps / 2, eps, eps, None, 10)
        >>> q2, p2, _, _ = leapfrog(pot, q1, -p1, g1, F1, eps / 2, eps, eps, None, 10)
        >>> bool(torch.allclose(q2, q0, atol=1e-6)), bool(torch.allclose(-p2, p0, atol=1e-6))
        (True, True)
    """
    return trajectory(potential, q, torch.addcmul(p, half, grad, value=-1), grad, F, half, full, drift, n_steps, n_max,
                      steps=steps)


def trajectory(potential, q, p, grad, F, half, full, drift, n_steps, n_max, steps=None):
    """:func:`leapfrog` after its first half kick: ``p`` is the momentum already kicked by ``half * grad``
    (:func:`pyro_ebm.mcmc.hmc.begin` makes that kick together with the momentum draw). Same arguments and
    result as :func:`leapfrog`."""
    if steps is None:
        steps = _EagerSteps(potential)
    if n_steps is None:
        done, chunk = 0, steps.chunk
        while done < n_max:
            n = chunk
            while n > n_max - done:  # the largest power of two that fits
                n //= 2
            done += n
            q, p, F, grad = steps.steps(q, p, drift, full, half if done == n_max else full, n)
        return q, p, F, grad
    for k in range(n_max):
        q, p, F, grad = steps.masked_step(q, p, F, grad, drift, half, full, n_steps, k)
    return q, p, F, grad
