"""Argument checks shared by every public entry point.

Each check raises ``ValueError``/``TypeError`` with a message that names the offending argument and says
what was expected, so a user never has to read a traceback into the library to find out what went wrong.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = ["check_beta", "check_positive_int", "check_finite", "MAX_ENUMERATION"]

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


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Validate an integer count such as a number of restarts, steps or samples."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
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
