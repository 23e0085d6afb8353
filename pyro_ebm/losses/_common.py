"""Argument checks and the reduction shared by the losses."""

from __future__ import annotations

import math
import numbers

import torch

from .._validation import check_finite, check_some_finite


_REDUCTIONS = ("none", "mean", "sum")


# ----------------------------------------------------------------------------------------------------------
# argument checks and reduction
# ----------------------------------------------------------------------------------------------------------


def _check_reduction(reduction) -> str:
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'none', 'mean' or 'sum', got {reduction!r}")
    return reduction


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_energy(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of energies, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of energies, got dtype {value.dtype}")
    return value


def _check_values(pos, neg, pos_name: str = "pos", neg_name: str = "neg", *, neg_pos_inf: bool = True) -> None:
    """``pos`` must be finite; ``neg`` too, except that ``+inf`` (an impossible answer, whose term of the
    loss vanishes) is allowed with ``neg_pos_inf``. One device sync when all is well."""
    p, n = pos.detach(), neg.detach()
    bad_neg = (torch.isnan(n) | torch.isneginf(n)) if neg_pos_inf else ~torch.isfinite(n)
    if bool(~torch.isfinite(p).all() | bad_neg.any()):
        check_finite(p, pos_name)
        check_finite(n, neg_name, allow_pos_inf=neg_pos_inf)


def _check_pair(pos, neg, pos_name: str = "pos", neg_name: str = "neg", *, neg_pos_inf: bool = True):
    """Validate ``pos``/``neg`` (shapes and values, see :func:`_check_values`) and return
    ``(pos aligned with neg, neg, has_negatives_dim)``."""
    pos = _check_energy(pos, pos_name)
    neg = _check_energy(neg, neg_name)
    if neg.shape == pos.shape:
        multi = False
    elif neg.dim() == pos.dim() + 1 and neg.shape[:-1] == pos.shape:
        multi = True
    else:
        raise ValueError(
            f"{neg_name} must have the shape of {pos_name} {tuple(pos.shape)} or that shape plus a trailing "
            f"dimension of negatives {tuple(pos.shape) + ('p',)}, got {tuple(neg.shape)}"
        )
    _check_values(pos, neg, pos_name, neg_name, neg_pos_inf=neg_pos_inf)
    return (pos.unsqueeze(-1) if multi else pos), neg, multi


def _check_nonneg(value, name: str, like: torch.Tensor, *, allow_inf: bool = False) -> torch.Tensor:
    """A non-negative float or tensor (margin, cap), returned as a tensor on ``like``'s dtype/device."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a non-negative number or tensor, got {type(value).__name__}")
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise TypeError(f"{name} must be a real tensor, got dtype {value.dtype}")
        v = value.detach()
        if torch.isnan(v).any():
            raise ValueError(f"{name} must be >= 0, got NaN")
        if (v < 0).any():
            raise ValueError(f"{name} must be >= 0, got min {v.min().item():g}")
        if not allow_inf and torch.isinf(v).any():
            raise ValueError(f"{name} must be finite, got inf")
        return value.to(dtype=like.dtype, device=like.device)
    value = float(value)
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    if not allow_inf and math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def _align(t: torch.Tensor, multi: bool, batch_dim: int) -> torch.Tensor:
    """Give a per-example tensor (margin, beta) a trailing dimension matching the negatives dimension."""
    if multi and t.dim() > 0 and t.dim() <= batch_dim:
        return t.unsqueeze(-1)
    return t


def _check_margin(margin, neg, multi: bool, name: str = "margin", allow_inf: bool = False):
    m = _align(_check_nonneg(margin, name, neg, allow_inf=allow_inf), multi, neg.dim() - int(multi))
    try:
        torch.broadcast_shapes(m.shape, neg.shape)
    except RuntimeError:
        raise ValueError(
            f"{name} must broadcast to the batch shape {tuple(neg.shape[: neg.dim() - int(multi)])} or to the "
            f"shape of the negatives {tuple(neg.shape)}, got {tuple(m.shape)}"
        ) from None
    return m


def _beta_tensor(beta, like: torch.Tensor) -> torch.Tensor:
    if isinstance(beta, torch.Tensor):
        return beta.to(dtype=like.dtype, device=like.device)
    return torch.tensor(beta, dtype=like.dtype, device=like.device)


def _check_candidates(energies, target, name: str = "energies", *, finite_target: bool = True):
    """Validate ``energies`` ``[*batch, K]`` and integer ``target`` ``[*batch]`` with values in ``[0, K)``.

    Energies may be ``+inf`` (an excluded candidate) but not NaN or ``-inf``, and every row needs a finite
    one; with ``finite_target`` the desired candidate's energy must be finite too (else the loss is
    infinite)."""
    energies = _check_energy(energies, name)
    if energies.dim() < 1 or energies.shape[-1] < 1:
        raise ValueError(f"{name} must have shape [*batch, K] with K >= 1 candidates, got {tuple(energies.shape)}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor of integer indices, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target must be a tensor of integer indices, got dtype {target.dtype}")
    if target.shape != energies.shape[:-1]:
        raise ValueError(
            f"target must have the batch shape of {name} {tuple(energies.shape[:-1])}, got {tuple(target.shape)}"
        )
    k = energies.shape[-1]
    if target.numel() and (target.min() < 0 or target.max() >= k):
        bad = target[(target < 0) | (target >= k)].flatten()[0].item()
        raise ValueError(f"target indices must be in [0, {k}) (K = {name}.shape[-1]), got {bad}")
    if torch.isnan(energies.detach()).any() or torch.isneginf(energies.detach()).any():
        check_finite(energies.detach(), name, allow_pos_inf=True)
    check_some_finite(energies, name)
    target = target.to(device=energies.device, dtype=torch.long)
    if finite_target:
        dead = torch.isposinf(_gather(energies.detach(), target))
        if dead.any():
            idx = tuple(int(i) for i in dead.nonzero()[0].tolist())
            raise ValueError(
                f"{name}: the desired candidate (target) has energy +inf in batch row {idx} "
                f"({int(dead.sum())} such rows), which makes the loss infinite; the desired answer needs a "
                "finite energy"
            )
    return energies, target


def _gather(energies: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return energies.gather(-1, target.unsqueeze(-1)).squeeze(-1)
