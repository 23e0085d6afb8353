"""Pieces shared by the classic models: argument checks for binary data and the joint-state view that
hands a model's conditionals to the block-Gibbs kernel of :mod:`pyro_ebm.mcmc`."""

from __future__ import annotations

import numbers
from typing import Callable, Sequence

import torch

from .._validation import MAX_COUNT, surely_finite
from ..energy import Energy, batch_shape_of, check_inputs_finite

__all__ = ["check_binary", "check_units", "check_state", "checked", "all_finite", "joint_batch", "check_parameters",
           "check_module", "check_fit_finite", "JointState"]


def check_units(value, name: str) -> int:
    """A number of units: an int in ``[1, MAX_COUNT]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 1 (a number of units), got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1 (a number of units), got {value}")
    if value > MAX_COUNT:
        raise ValueError(f"{name} must be an integer <= {MAX_COUNT} (a number of units), got {value}")
    return int(value)


def check_state(value, name: str, event_shape, like=None) -> torch.Tensor:
    """``value`` as a tensor ``[*batch, *event_shape]``: its type, dtype and shape only (its finiteness is
    checked on the result, see :func:`checked`, so that an energy evaluation costs no extra pass over it).

    With ``like`` (a tensor), integer and boolean values (binary units) are converted to its dtype; without,
    ``value`` must be floating."""
    if not isinstance(value, torch.Tensor):
        shape = ", ".join(map(str, event_shape))
        raise TypeError(f"{name} must be a tensor [..., {shape}], got {type(value).__name__}")
    if not value.is_floating_point():
        if like is None or value.is_complex():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        value = value.to(like.dtype)
    k = len(event_shape)
    if value.dim() < k or (k and value.shape[-k:] != tuple(event_shape)):
        batch_shape_of(value, event_shape, name)  # raises, naming it
    return value


def joint_batch(y: torch.Tensor, z: torch.Tensor, event_shape, latent_shape, names=("y", "z")) -> torch.Size:
    """The broadcast batch shape of ``y`` ``[*batch, *event_shape]`` and ``z`` ``[*batch', *latent_shape]``."""
    yb = y.shape[: y.dim() - len(event_shape)]
    zb = z.shape[: z.dim() - len(latent_shape)]
    try:
        return torch.broadcast_shapes(yb, zb)
    except RuntimeError:
        raise ValueError(
            f"the batch shapes of {names[0]} {tuple(yb)} and {names[1]} {tuple(zb)} must broadcast"
        ) from None


def checked(out: torch.Tensor, what: str, inputs=(), module=None) -> torch.Tensor:
    """``out`` if every entry is finite (one reduction); otherwise a ``ValueError`` that names the first input
    of ``inputs`` (``(name, tensor)`` pairs) holding NaN or inf, else the first non-finite parameter of
    ``module``, else says that ``what`` overflowed."""
    if all_finite(out):
        return out
    check_inputs_finite(inputs)
    if module is not None:
        check_parameters(module, f"the parameters of {type(module).__name__}")
    raise ValueError(f"{what} is not finite (it overflowed) at finite inputs and parameters")


def all_finite(value: torch.Tensor) -> bool:
    """Whether every entry of ``value`` is finite: :func:`~pyro_ebm._validation.surely_finite` (one sum), and
    the exact test only when the sum is not finite (it may have overflowed)."""
    return surely_finite(value) or bool(torch.isfinite(value.detach()).all())


def check_parameters(module, name: str) -> None:
    """A ``ValueError`` naming ``name`` (and the parameter) when a floating parameter of ``module`` holds NaN
    or inf."""
    for pname, p in module.named_parameters():
        if p.is_floating_point() and not all_finite(p):
            raise ValueError(f"{name}: parameter {pname!r} is not finite (NaN or inf)")


def check_module(module, name: str, in_shape, out_shape, dtype) -> None:
    """Check a module argument once, when a model is built: its parameters are finite and it maps a batch of
    zeros ``[2, *in_shape]`` to a finite ``[2, *out_shape]`` (evaluated in eval mode, without gradients, so
    that nothing about the module changes)."""
    check_parameters(module, name)
    inp, outp = ", ".join(map(str, in_shape)), ", ".join(map(str, out_shape))
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros((2,) + tuple(in_shape), dtype=dtype))
    except RuntimeError as exc:
        raise ValueError(f"{name} must map [*batch, {inp}] to [*batch, {outp}], but it failed on a [2, {inp}] "
                         f"input of dtype {dtype}: {str(exc).splitlines()[0]}") from exc
    finally:
        module.train(training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2,) + tuple(out_shape):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{name} must map [*batch, {inp}] to [*batch, {outp}], got {got} for a [2, {inp}] input")
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name} returned NaN or inf on a batch of zeros [2, {inp}]")


def check_fit_finite(model, name: str, lr, epoch: int) -> None:
    """After a step (or an epoch) of a gradient fit: a ``ValueError`` naming ``lr`` when a parameter of
    ``model`` is no longer finite (the fit diverged), instead of returning NaN weights."""
    for pname, p in model.named_parameters():
        if p.is_floating_point() and not all_finite(p):
            raise ValueError(f"{name} diverged in epoch {epoch}: parameter {pname!r} is no longer finite; "
                             f"lr = {lr:g} is too large for this model and data, lower it")


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
