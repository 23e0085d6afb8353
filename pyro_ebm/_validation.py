"""Argument checks shared by every public entry point.

Each check raises ``ValueError``/``TypeError`` with a message that names the offending argument and says
what was expected, so a user never has to read a traceback into the library to find out what went wrong.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = [
    "check_beta",
    "check_beta_batch",
    "check_positive_int",
    "check_finite",
    "check_real",
    "check_some_finite",
    "check_device",
    "MAX_ENUMERATION",
]

#: Largest number of energy evaluations an exhaustive enumeration may ask for (candidates x batch).
MAX_ENUMERATION = 10_000_000


def check_beta(beta, *, allow_inf: bool = False, name: str = "beta"):
    """Validate an inverse temperature.

    Accepts a positive Python number or a tensor of positive values (a ladder or a per-batch beta).
    ``inf`` is accepted only where the zero-temperature limit is defined (``allow_inf=True``).
    Returns ``beta`` unchanged (a float for Python numbers).
    """
    if isinstance(beta, bool) or not isinstance(beta, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a positive number or tensor, got {type(beta).__name__}")
    if isinstance(beta, torch.Tensor):
        if beta.is_complex() or not (beta.is_floating_point() or beta.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{name} must be a real tensor, got dtype {beta.dtype}")
        b = beta.detach()
        if torch.isnan(b).any():
            raise ValueError(f"{name} must be > 0, got NaN")
        if (b <= 0).any():
            raise ValueError(f"{name} must be > 0 (an inverse temperature), got min {b.min().item():g}")
        if not allow_inf and torch.isinf(b).any():
            raise ValueError(
                f"{name} = inf (zero temperature) is not defined here; use the argmin/min functions instead"
            )
        return beta
    beta = float(beta)
    if math.isnan(beta) or beta <= 0:
        raise ValueError(f"{name} must be > 0 (an inverse temperature), got {beta}")
    if not allow_inf and math.isinf(beta):
        raise ValueError(
            f"{name} = inf (zero temperature) is not defined here; use the argmin/min functions instead"
        )
    return beta


MAX_COUNT = 2**31 - 1  # the largest count (steps, samples, sizes) the library accepts: int32 indexing


def check_positive_int(value, name: str, *, minimum: int = 1, maximum: int = MAX_COUNT) -> int:
    """Validate an integer count such as a number of restarts, steps or samples (at most ``maximum``: a
    count beyond it could only hang or fail to allocate)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum}, got {value}")
    return int(value)


def check_finite(value: torch.Tensor, name: str, *, allow_pos_inf: bool = False) -> None:
    """Raise a ``ValueError`` that says where ``value`` first holds NaN (or inf)."""
    bad = torch.isnan(value)
    bad = bad | (torch.isneginf(value) if allow_pos_inf else torch.isinf(value))
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0].tolist())
        kind = "NaN" if torch.isnan(value[idx]) else str(value[idx].item())
        count = int(bad.sum())
        allowed = "finite or +inf" if allow_pos_inf else "finite"
        raise ValueError(
            f"{name} must be {allowed}, but {count} of {value.numel()} entries are not "
            f"(first at index {idx}: {kind})"
        )


def surely_finite(value: torch.Tensor) -> bool:
    """A cheap test for hot paths (one reduction): ``True`` when every entry of ``value`` is finite, ``False``
    when some entry may not be (the sum is NaN or inf, which an overflow of large finite entries also gives):
    then check exactly."""
    return value.numel() == 0 or math.isfinite(float(value.detach().sum()))


def check_beta_batch(beta, batch_shape, *, name: str = "beta", what: str = "the batch shape") -> torch.Size:
    """The batch shape ``batch_shape`` broadcast with a tensor ``beta``'s shape (a float beta adds nothing).

    Raises a ``ValueError`` naming ``beta`` when the two do not broadcast, instead of torch's raw size
    mismatch later on.
    """
    batch_shape = torch.Size(batch_shape)
    if not isinstance(beta, torch.Tensor) or beta.dim() == 0:
        return batch_shape
    try:
        return torch.broadcast_shapes(batch_shape, beta.shape)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(beta.shape)} must broadcast with {what} {tuple(batch_shape)} "
            "(one inverse temperature per batch element, or a scalar)"
        ) from None


def check_real(value, name: str, *, minimum=None, strict: bool = False, allow_inf: bool = False) -> float:
    """Validate a real number (not bool, not NaN); with ``minimum``, require ``value >= minimum``
    (``> minimum`` with ``strict``). Returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got NaN")
    if not allow_inf and math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    return value


def check_some_finite(energies: torch.Tensor, name: str) -> None:
    """Raise a ``ValueError`` naming the first batch row of ``energies`` ``[*batch, K]`` whose every entry
    is ``+inf`` (no candidate has positive probability, so the Gibbs distribution is undefined there)."""
    dead = torch.isposinf(energies.detach()).all(-1)
    if dead.any():
        idx = tuple(int(i) for i in dead.nonzero()[0].tolist())
        raise ValueError(
            f"{name}: every candidate has energy +inf in batch row {idx} ({int(dead.sum())} such rows); "
            "at least one candidate per row needs a finite energy"
        )


def check_device(device, name: str = "device") -> torch.device:
    """``device`` (a ``torch.device`` or a name such as ``"cpu"``, ``"cuda:0"``) as a ``torch.device``; a
    ``TypeError``/``ValueError`` naming ``name`` instead of torch's own error for anything else."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, (str, int)) or isinstance(device, bool):
        raise TypeError(f"{name} must be a torch.device or a device name such as 'cpu' or 'cuda', got {device!r}")
    try:
        return torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{name} must be a torch.device or a device name such as 'cpu' or 'cuda', "
                         f"got {device!r}") from None
