r"""Langevin kernels: MALA (Metropolis-adjusted) and unadjusted Langevin (SGLD style).

**MALA** is exactly one-step HMC (a full momentum refresh, one leapfrog step, Metropolis correction),
so it reuses :func:`pyro_ebm.mcmc.hmc.step` with ``n_steps=1``; the driver adapts its per-chain step size
to an acceptance of 0.574 and the diagonal mass matrix like HMC.

**Unadjusted Langevin** as EBM papers use it (Du & Mordatch 2019, Nijkamp et al. 2019), with the step
and the noise decoupled:

.. math:: y \leftarrow y - \text{step}\,\nabla_y F(y) + \text{noise}\,\xi,\qquad \xi \sim N(0, I).

Its stationary law (for a small step) is :math:`\propto \exp(-2\,\text{step}\,F/\text{noise}^2)`, i.e.
the Gibbs-Boltzmann distribution at the *effective* inverse temperature
:math:`\beta_\text{eff} = 2\,\text{step}/\text{noise}^2`. Only ``noise**2 == 2 * step / beta`` (the
default) targets ``exp(-beta F)``; the usual EBM choice of a large step with small noise samples a
colder, sharper distribution (closer to a noisy gradient descent on ``F``). Even with matched noise,
there is no accept/reject, so a discretisation bias of order ``step`` remains; use MALA or HMC when the
draws must be exact.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .hmc import HMCState

__all__ = ["ULAInfo", "ula_step"]


class ULAInfo(NamedTuple):
    diverging: torch.Tensor


def ula_step(state: HMCState, potential, step_size, noise, generator, *, clip_grad=None):
    """One unadjusted Langevin step for every chain.

    :param state: :class:`~pyro_ebm.mcmc.hmc.HMCState` (``q`` ``[R, C, D]``, ``F``, ``dF/dq``).
    :param step_size: float or tensor broadcasting to ``[R, C, 1]`` (e.g. ``[R, 1, 1]`` per replica).
    :param noise: noise scale, same broadcasting as ``step_size``.
    :param clip_grad: if given, each gradient entry is clamped to ``[-clip_grad, clip_grad]``.
    :returns: ``(new_state, ULAInfo)``; a chain whose new state or energy is not finite keeps its last
        finite state and is flagged ``diverging``.

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> from pyro_ebm.mcmc import hmc, langevin
        >>> from pyro_ebm.mcmc.potential import EnergyPotential
        >>> pot = EnergyPotential(as_energy(lambda y: 0.5 * (y ** 2).sum(-1), event_shape=(2,)), (2,))
        >>> state = hmc.init(pot, torch.zeros(1, 4, 2))
        >>> state, info = langevin.ula_step(state, pot, 0.1, 0.1, torch.Generator().manual_seed(0))
        >>> state.q.shape, bool(info.diverging.any())
        (torch.Size([1, 4, 2]), False)
    """
    q, F, g = state
    with torch.no_grad():
        if clip_grad is not None:
            g = g.clamp(-clip_grad, clip_grad)
        xi = torch.randn(q.shape, generator=generator, dtype=q.dtype, device=q.device)
        q1 = q - step_size * g + noise * xi
    F1, g1 = potential.value_and_grad(q1)
    with torch.no_grad():
        ok = torch.isfinite(F1) & torch.isfinite(g1).all(-1) & torch.isfinite(q1).all(-1)
        ok3 = ok.unsqueeze(-1)
        new = HMCState(torch.where(ok3, q1, q), torch.where(ok, F1, F), torch.where(ok3, g1, state.grad))
    return new, ULAInfo(~ok)
