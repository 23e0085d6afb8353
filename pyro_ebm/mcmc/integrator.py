"""The one leapfrog (velocity Verlet) integrator of the library, batched over replicas and chains.

Every Hamiltonian move in :mod:`pyro_ebm` -- HMC and MALA in :func:`pyro_ebm.mcmc.sample`, persistent
chains, and the moves of annealed importance sampling and tempered SMC in :mod:`pyro_ebm.partition` --
goes through :func:`leapfrog`, via :func:`pyro_ebm.mcmc.hmc.step`.

It is written here rather than taken from ``pyro.ops.integrator.velocity_verlet``: Pyro's works on dicts
of sites and differentiates a *scalar* potential (so per-chain energies would have to be recomputed),
and it has no notion of chains with different numbers of steps. This one keeps the energy and gradient of
every chain from the same batched backward pass and fuses each update into one ``addcmul``.
"""

from __future__ import annotations

import torch

__all__ = ["leapfrog"]


def leapfrog(potential, q, p, grad, F, half, full, drift, n_steps, n_max):
    """``n_max`` batched leapfrog steps of ``H = beta F(q) + p^T M^-1 p / 2``.

    Shapes: ``q, p, grad`` ``[R, C, D]`` (``grad = dF/dq`` at ``q``), ``F`` ``[R, C]``. ``half``
    ``[R, C, 1]`` is the half kick ``step * beta / 2``, ``full = 2 half`` and ``drift = step * inv_mass``
    ``[R, C, D]``. ``n_steps`` is ``None`` (every chain makes ``n_max`` steps) or a long tensor
    ``[R, C]``: rows with ``n_steps <= k`` are frozen from step ``k`` on, so chains with different
    trajectory lengths share one batched gradient per step. ``potential.value_and_grad(q)`` returns
    ``(F [R, C], dF/dq [R, C, D])``.

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
    masked = n_steps is not None
    p = torch.addcmul(p, half, grad, value=-1)
    for k in range(n_max):
        q_new = torch.addcmul(q, drift, p)
        F_new, g_new = potential.value_and_grad(q_new)
        if masked:
            active = (n_steps > k).unsqueeze(-1)
            q = torch.where(active, q_new, q)
            F = torch.where(active.squeeze(-1), F_new, F)
            grad = torch.where(active, g_new, grad)
            # a full kick except on each row's last step, where it is a half kick
            kick = torch.where((n_steps == k + 1).unsqueeze(-1), half, full) * active
            p = torch.addcmul(p, kick, grad, value=-1)
        else:
            q, F, grad = q_new, F_new, g_new
            # p is a fresh tensor of this transition: update it in place
            p.addcmul_(half if k == n_max - 1 else full, grad, value=-1)
    return q, p, F, grad
