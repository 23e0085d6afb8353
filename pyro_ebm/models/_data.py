"""Argument checks shared by the regularized and architectural models (real-valued data, latent sizes)."""

from __future__ import annotations

import math

import torch

from .._validation import check_beta, check_finite
from ..energy import batch_shape_of

__all__ = ["check_data", "check_input", "check_matrix", "gaussian_volume", "as_beta"]


def check_data(value, name: str, n_features=None, *, min_rows: int = 1) -> torch.Tensor:
    """``value`` as a finite floating tensor ``[N, d]`` (``d == n_features`` when given, ``N >= min_rows``).

    numpy arrays are accepted (converted to the default floating dtype unless already floating)."""
    if not isinstance(value, torch.Tensor):
        try:
            import numpy as np

            value = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a tensor [N, n_features], got {type(value).__name__}") from None
    if value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"{name} must be a real tensor [N, n_features], got dtype {value.dtype}")
    if not value.is_floating_point():
        value = value.to(torch.get_default_dtype())
    if value.dim() != 2 or value.shape[0] < min_rows:
        raise ValueError(f"{name} must have shape [N, n_features] with N >= {min_rows}, got {tuple(value.shape)}")
    if n_features is not None and value.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features (shape [N, {n_features}]), got {tuple(value.shape)}")
    check_finite(value, name)
    return value


def check_input(value, event_shape, name: str = "y") -> torch.Tensor:
    """A floating tensor ``batch + event_shape`` with finite entries."""
    batch_shape_of(value, event_shape, name)
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    check_finite(value, name)
    return value


def check_matrix(value, name: str, shape_doc: str, rows=None, cols=None) -> torch.Tensor:
    """A finite floating 2-D tensor with at least one row and one column (optionally with the given number of
    rows/columns)."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor {shape_doc}, got {type(value).__name__}"
                        + (f" of dtype {value.dtype}" if isinstance(value, torch.Tensor) else ""))
    if value.dim() != 2 or (rows is not None and value.shape[0] != rows) or (cols is not None and value.shape[1] != cols):
        raise ValueError(f"{name} must have shape {shape_doc}, got {tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"{name} must have shape {shape_doc} with at least one row and column, got "
                         f"{tuple(value.shape)}")
    check_finite(value, name)
    return value


def as_beta(beta, like: torch.Tensor) -> torch.Tensor:
    """A validated inverse temperature (``inf`` allowed) as a tensor of ``like``'s dtype and device."""
    beta = check_beta(beta, allow_inf=True)
    return torch.as_tensor(beta, dtype=like.dtype, device=like.device)


def gaussian_volume(e_min: torch.Tensor, beta: torch.Tensor, k: int, logdet_hessian_half) -> torch.Tensor:
    r"""The free energy of a latent that enters quadratically: with ``E(y, z) = E_min(y) + (z - z*)^T A (z - z*)``
    over ``z`` in ``R^k``, :math:`F_\beta = E_{\min} - \frac{k}{2\beta}\log\frac{\pi}{\beta} + \frac{1}{2\beta}\log\det A`
    (Lebesgue measure on ``z``); ``beta = inf`` gives ``E_min``."""
    inf = torch.isinf(beta)
    b = torch.where(inf, torch.ones_like(beta), beta)
    corr = (-0.5 * k * torch.log(math.pi / b) + 0.5 * logdet_hessian_half) / b
    return e_min + torch.where(inf, torch.zeros_like(corr), corr)
