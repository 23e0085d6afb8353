"""``method="exact"``: a log-sum-exp over a finite set of outputs, in chunks."""

from __future__ import annotations

import math

import torch

from .._validation import MAX_ENUMERATION, check_positive_int
from ..energy import Energy, batch_shape_of
from ._common import _F64, LogPartition, _call_energy, _check_values, _resolve_energy




def _exact(energy, beta, *, values, event_shape=None, chunk_size: int = 65536, max_candidates: int = MAX_ENUMERATION):
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"values must be a tensor of candidates [K, *event_shape], got {type(values).__name__}")
    if values.dim() == 0 or values.shape[0] == 0:
        raise ValueError(f"values must have shape [K, *event_shape] with K >= 1, got {tuple(values.shape)}")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    max_candidates = check_positive_int(max_candidates, "max_candidates", maximum=math.inf)
    if event_shape is None and not isinstance(energy, Energy):
        event_shape = values.shape[1:]
    energy = _resolve_energy(energy, event_shape)
    batch = batch_shape_of(values, energy.event_shape, "values")
    if len(batch) != 1:
        raise ValueError(
            f"values must have shape [K, *event_shape] = [K, {', '.join(map(str, energy.event_shape))}], "
            f"got {tuple(values.shape)}"
        )
    k = values.shape[0]
    if k > max_candidates:
        raise ValueError(
            f"values has {k} candidates, more than max_candidates={max_candidates}: too many to enumerate; "
            "raise max_candidates or use method='ais'"
        )
    label = energy._label()
    total = torch.tensor(-math.inf, dtype=_F64, device=values.device)
    with torch.no_grad():
        for start in range(0, k, chunk_size):
            y = values[start : start + chunk_size]
            f = _call_energy(energy, y, label)
            _check_values(f, y, "values", label, offset=start)
            chunk = torch.logsumexp(-beta * f.to(_F64), 0)
            total = torch.logaddexp(total, chunk)
    if bool(torch.isneginf(total)):
        raise ValueError(f"{label} is +inf at all {k} values: exp(-beta F) sums to 0, log Z is undefined")
    zero = torch.zeros((), dtype=_F64, device=total.device)
    return LogPartition(total, zero, None, "exact", num_evaluations=k)
