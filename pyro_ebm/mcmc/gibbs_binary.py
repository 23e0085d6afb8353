r"""Gibbs sampling for binary units ``y in {0, 1}^n``, batched over chains.

Generic energies get a systematic scan of single-site heat-bath updates: for site ``i`` the flip of
``y_i`` is taken with probability :math:`\sigma(-\beta\,[F(y^{(i\to 1-y_i)}) - F(y)])`, one batched
energy evaluation per site for all chains. An energy that knows its conditionals can expose

``conditional_logits(y, block) -> [*batch, len(block)]``

the logits of :math:`p(y_j = 1 \mid y_{\setminus \text{block}})` at ``beta = 1``, i.e.
:math:`F(y_j{=}0) - F(y_j{=}1)`, for a block of units (flat indices into the event) that are
conditionally independent given the rest; the sampler multiplies them by ``beta`` and draws the whole
block at once. The blocks come from the ``blocks`` option or an energy attribute ``gibbs_blocks`` (an
RBM uses ``[visible, hidden]``).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch

__all__ = ["GibbsState", "init", "step"]


class GibbsState(NamedTuple):
    """``q`` ``[R, C, D]`` with entries in {0, 1} and its energy ``F`` ``[R, C]``."""

    q: torch.Tensor
    F: torch.Tensor


def init(potential, q: torch.Tensor) -> GibbsState:
    if not bool(((q == 0) | (q == 1)).all()):
        raise ValueError("init must hold only 0s and 1s for the binary Gibbs kernel")
    return GibbsState(q, potential.value(q))


def step(state: GibbsState, potential, beta: torch.Tensor, generator, *, blocks: Optional[Sequence] = None):
    """One sweep over all units (or all blocks) for every chain.

    :param beta: ``[R, 1]`` inverse temperature per replica.
    :param blocks: list of long tensors of flat unit indices, used with the energy's
        ``conditional_logits``; ``None`` means single-site updates from energy differences.
    :returns: ``(new_state, number_of_energy_or_block_evaluations)``.

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> from pyro_ebm.mcmc import gibbs_binary
        >>> from pyro_ebm.mcmc.potential import EnergyPotential
        >>> pot = EnergyPotential(as_energy(lambda y: -y.sum(-1), event_shape=(4,)), (4,))
        >>> state = gibbs_binary.init(pot, torch.zeros(1, 3, 4))
        >>> state, n = gibbs_binary.step(state, pot, torch.ones(1, 1), torch.Generator().manual_seed(0))
        >>> state.q.shape, n
        (torch.Size([1, 3, 4]), 4)
    """
    q, F = state
    with torch.no_grad():
        if blocks is not None:
            energy = potential.energy
            for block in blocks:
                y = potential.unflatten(q)
                R, C = q.shape[:2]
                logits = energy.conditional_logits(y.reshape((R * C,) + potential.event_shape), block)
                logits = logits.reshape(R, C, -1) * beta.unsqueeze(-1)
                u = torch.rand(logits.shape, generator=generator, dtype=q.dtype, device=q.device)
                q = q.clone()
                q[..., block] = (u < torch.sigmoid(logits)).to(q.dtype)
            return GibbsState(q, potential.value(q)), len(blocks)
        D = q.shape[-1]
        u = torch.rand(q.shape, generator=generator, dtype=q.dtype, device=q.device)
        for i in range(D):
            flipped = q.clone()
            flipped[..., i] = 1 - flipped[..., i]
            F1 = potential.value(flipped)
            # heat bath: P(flip) = 1 / (1 + exp(beta (F1 - F)))
            p_flip = torch.sigmoid(-beta * (F1 - F))
            p_flip = torch.where(torch.isnan(p_flip), torch.zeros_like(p_flip), p_flip)
            take = u[..., i] < p_flip
            q = torch.where(take.unsqueeze(-1), flipped, q)
            F = torch.where(take, F1, F)
        return GibbsState(q, F), D
