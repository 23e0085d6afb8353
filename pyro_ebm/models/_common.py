"""Pieces shared by the classic models: argument checks for binary data and the joint-state view that
hands a model's conditionals to the block-Gibbs kernel of :mod:`pyro_ebm.mcmc`."""

from __future__ import annotations

import numbers
from typing import Callable, Sequence

import torch

from ..energy import Energy

__all__ = ["check_binary", "check_units", "JointState"]


def check_units(value, name: str) -> int:
    """A number of units: an int ``>= 1``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 1 (a number of units), got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1 (a number of units), got {value}")
    return int(value)


def check_binary(value, name: str, size: int, *, values=(0.0, 1.0), min_dim: int = 1, like=None) -> torch.Tensor:
    """``value`` as a floating tensor ``[..., size]`` whose entries are all in ``values``.

    Accepts tensors and array-likes (numpy arrays); integer and boolean tensors are converted to the
    default floating dtype, and with ``like`` (a tensor) to its dtype and device. Raises a
    ``TypeError``/``ValueError`` naming ``name``.
    """
    if not isinstance(value, torch.Tensor):
        try:
            import numpy as np

            value = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a tensor [..., {size}], got {type(value).__name__}") from None
    if value.is_complex():
        raise TypeError(f"{name} must be a real tensor, got dtype {value.dtype}")
    if not value.is_floating_point():
        value = value.to(torch.get_default_dtype())
    if value.dim() < min_dim or value.shape[-1] != size:
        lead = "[N, " if min_dim >= 2 else "[..., "
        raise ValueError(f"{name} must have shape {lead}{size}], got {tuple(value.shape)}")
    ok = torch.zeros(value.shape, dtype=torch.bool, device=value.device)
    for v in values:
        ok |= value == v
    if not bool(ok.all()):
        bad = value[~ok].flatten()[0].item()
        allowed = " or ".join(f"{v:g}" for v in values)
        raise ValueError(
            f"{name} must be binary (every entry {allowed}), but {int((~ok).sum())} entries are not "
            f"(e.g. {bad:g}); binarize it first"
        )
    return value if like is None else value.to(dtype=like.dtype, device=like.device)


class JointState(Energy):
    """The joint energy of visible and hidden units as one state ``s = [v, h]`` of event shape
    ``(n_visible + n_hidden,)``, with the model's exact conditionals for :func:`pyro_ebm.mcmc.sample`
    (``kernel="gibbs"`` picks up ``conditional_logits`` and ``gibbs_blocks``).

    A view: it holds the model without registering it as a submodule, so the model's parameters stay the
    model's own (and every change to them is seen here).

    :param model: the owning model.
    :param energy: ``energy(s) -> [batch]`` at ``beta = 1``.
    :param logits: ``logits(s, block) -> [batch, len(block)]``, :math:`E(s_j{=}0) - E(s_j{=}1)` for the
        units of ``block`` given the others (at ``beta = 1``).
    :param blocks: the update order, a list of long tensors of unit indices that are conditionally
        independent given the rest.
    """

    def __init__(self, model, n: int, energy: Callable, logits: Callable, blocks: Sequence[torch.Tensor]):
        super().__init__(event_shape=(n,))
        object.__setattr__(self, "model", model)
        self._energy_fn, self._logits_fn = energy, logits
        self.gibbs_blocks = list(blocks)

    def forward(self, s, x=None):
        if x is not None:
            raise TypeError(f"{type(self.model).__name__} takes no conditioning x")
        return self._energy_fn(s)

    def conditional_logits(self, s, block):
        return self._logits_fn(s, block)

    def _label(self) -> str:
        return f"energy {type(self.model).__name__} (joint state)"
