"""``method="quadrature"``: composite Gauss-Legendre on a box, for ``y`` with 1 to 3 entries."""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence

import numpy as np
import torch

from .._validation import check_positive_int
from ..energy import Energy
from ._common import _F64, LogPartition, _call_energy, _energy_dtype_device, _fmt_point, _resolve_energy



_DEFAULT_POINTS = {1: 512, 2: 128, 3: 48}


def _box(bound, d: int, name: str) -> torch.Tensor:
    if isinstance(bound, bool) or not isinstance(bound, (numbers.Real, torch.Tensor, Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a number or a sequence of {d} numbers, got {type(bound).__name__}")
    if isinstance(bound, torch.Tensor):
        bound = bound.detach().cpu()
    t = torch.as_tensor(np.asarray(bound, dtype=np.float64))
    if t.dim() == 0:
        if d != 1:
            raise ValueError(f"{name} must give one bound per dimension ({d} numbers), got a scalar")
        t = t.reshape(1)
    t = t.reshape(-1)
    if t.numel() != d:
        raise ValueError(f"{name} must give one bound per dimension ({d} numbers), got {t.numel()}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite (quadrature needs a bounded box), got {t.tolist()}")
    return t


def _gauss_legendre(low: float, high: float, n: int, order: int):
    """Composite Gauss-Legendre nodes and log-weights (float64) on [low, high] with n // order panels."""
    x, w = np.polynomial.legendre.leggauss(order)
    panels = n // order
    edges = np.linspace(low, high, panels + 1)
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    nodes = (mid[:, None] + half[:, None] * x[None, :]).reshape(-1)
    weights = (half[:, None] * w[None, :]).reshape(-1)
    return torch.from_numpy(nodes), torch.from_numpy(np.log(weights))


def _grid_log_z(energy, beta, lows, highs, n, order, chunk_size, dtype, device, label):
    """``(log Z, F_min)``: the rule's log-sum-exp (float64) and the smallest energy at a node."""
    d = lows.numel()
    axes = [_gauss_legendre(float(lows[i]), float(highs[i]), n, order) for i in range(d)]
    nodes = [a[0].to(device) for a in axes]
    logw = [a[1].to(device) for a in axes]
    total_points = n**d
    total = torch.tensor(-math.inf, dtype=_F64, device=device)
    f_min = math.inf
    for start in range(0, total_points, chunk_size):
        idx = torch.arange(start, min(start + chunk_size, total_points), device=device)
        coords, lw, rem = [], torch.zeros(idx.shape, dtype=_F64, device=device), idx
        for i in reversed(range(d)):
            j = rem % n
            rem = rem // n
            coords.append(nodes[i][j])
            lw = lw + logw[i][j]
        pts = torch.stack(coords[::-1], -1)  # [chunk, d] float64
        y = pts.to(dtype).reshape((idx.numel(),) + tuple(energy.event_shape))
        f = _call_energy(energy, y, label)
        bad = torch.isnan(f) | torch.isneginf(f)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"{label} is {f[i].item()} at y = {_fmt_point(y[i])} (a quadrature node in the box "
                f"low={lows.tolist()}, high={highs.tolist()}); quadrature needs a finite energy on the box "
                "(+inf, zero density, is allowed)"
            )
        total = torch.logaddexp(total, torch.logsumexp(lw - beta * f.to(_F64), 0))
        f_min = min(f_min, float(f.min()))
    return total, f_min


def _quadrature(
    energy,
    beta,
    *,
    low,
    high,
    event_shape=None,
    num_points: Optional[int] = None,
    order: int = 8,
    chunk_size: int = 65536,
    dtype=None,
):
    if event_shape is None and not isinstance(energy, Energy):
        lo = np.asarray(low.detach().cpu() if isinstance(low, torch.Tensor) else low, dtype=np.float64)
        event_shape = () if lo.ndim == 0 else lo.shape
    energy = _resolve_energy(energy, event_shape)
    d = int(math.prod(energy.event_shape))
    if d > 3:
        raise ValueError(
            f"quadrature in {d} dimensions (event_shape {tuple(energy.event_shape)}) needs n**{d} energy "
            "evaluations; quadrature is for 1 to 3 dimensions: use method='ais'"
        )
    if d == 0:
        raise ValueError("quadrature needs y with at least one entry; event_shape has size 0")
    lows, highs = _box(low, d, "low"), _box(high, d, "high")
    if not bool((highs > lows).all()):
        raise ValueError(f"high must be > low in every dimension, got low={lows.tolist()}, high={highs.tolist()}")
    order = check_positive_int(order, "order")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    n = _DEFAULT_POINTS[d] if num_points is None else check_positive_int(num_points, "num_points")
    n = order * max(1, -(-n // order))  # whole panels
    e_dtype, device = _energy_dtype_device(energy)
    if dtype is None:
        dtype = e_dtype
    elif not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    label = energy._label()
    with torch.no_grad():
        coarse, _ = _grid_log_z(energy, beta, lows, highs, n, order, chunk_size, dtype, device, label)
        fine, f_min = _grid_log_z(energy, beta, lows, highs, 2 * n, order, chunk_size, dtype, device, label)
    if not torch.isfinite(fine):
        raise ValueError(
            f"the integral of exp(-beta F) over the box is {math.exp(fine.item()) if fine.item() < 0 else 'infinite'}; "
            f"{label} is +inf at every quadrature node or overflows: check low and high"
        )
    # the energies themselves are rounded to the dtype: near the minimum each is off by up to half an ulp of
    # |F_min|, which beta multiplies (float32 at beta = 1e6 and F ~ 1000 is off by tens of nats)
    rounding = beta * 0.5 * torch.finfo(dtype).eps * max(abs(f_min), torch.finfo(dtype).tiny)
    err = torch.maximum((fine - coarse).abs(), torch.tensor(rounding, dtype=_F64))
    return LogPartition(fine, err, None, "quadrature", num_evaluations=n**d + (2 * n) ** d)
