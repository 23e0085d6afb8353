"""What every estimator of the package shares: the result types and the checks on energies."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import torch

from .._weights import importance_summary
from ..energy import Energy, as_energy, call_energy, check_energy_output
from ..inference import Estimate

_F64 = torch.float64


class EstimateWarning(UserWarning):
    """An estimate of ``log Z`` whose error bar cannot be trusted (its weights are dominated by a few
    particles or replicas)."""


@dataclass(frozen=True)
class LogPartition:
    r"""An estimate of :math:`\log Z_\beta` with its uncertainty.

    :ivar value: the estimate of :math:`\log Z`, a 0-dim float64 tensor (nats).
    :ivar stderr: its error, float64, in nats: ``0`` for ``"exact"``; ``|log Z(2n) - log Z(n)|`` (the change
        under refinement, a conservative error of the reported ``2n`` value) for ``"quadrature"``; the delta
        method standard error ``std(w) / (sqrt(N) mean(w))`` for (reverse) AIS.
    :ivar ess: effective sample size ``(sum w)^2 / sum w^2`` of the AIS weights; ``None`` otherwise.
    :ivar method: ``"exact"``, ``"quadrature"``, ``"smc"``, ``"ais"`` or ``"reverse_ais"``.
    :ivar log_weights: the ``N`` AIS log-weights (float64; for reverse AIS the log-weights of ``1/Z``).
    :ivar samples: the final particles ``[N, *event_shape]`` (forward AIS: importance-weighted draws of the
        target with ``log_weights``; reverse AIS: where the chains ended, near the base).
    :ivar betas: the annealing schedule ``b_0 = 0 < ... < b_T = 1`` (fraction of the way to the target).
    :ivar step_sizes: the step size used at each interior temperature ``b_1 .. b_{T-1}``, ``[T - 1]``; pass
        it back as ``step_size=`` to run with a fixed schedule (strictly unbiased, see :func:`log_partition`).
    :ivar accept_rate: mean Metropolis acceptance at each interior temperature, ``[T - 1]``.
    :ivar num_evaluations: how many energies were evaluated (points x gradient calls).
    """

    value: torch.Tensor
    stderr: torch.Tensor
    ess: Optional[torch.Tensor] = None
    method: str = ""
    log_weights: Optional[torch.Tensor] = None
    samples: Optional[torch.Tensor] = None
    betas: Optional[torch.Tensor] = None
    step_sizes: Optional[torch.Tensor] = None
    accept_rate: Optional[torch.Tensor] = None
    num_evaluations: int = 0

    @property
    def estimate(self) -> Estimate:
        """The ``(value, stderr, ess)`` triple as a :class:`~pyro_ebm.Estimate` (``ess`` is ``inf`` for the
        deterministic methods)."""
        ess = self.ess if self.ess is not None else torch.tensor(math.inf, dtype=_F64)
        return Estimate(self.value, self.stderr, ess)

    def __float__(self) -> float:
        return float(self.value)

    def __repr__(self) -> str:
        extra = f", ess={float(self.ess):.1f}" if self.ess is not None else ""
        return (
            f"LogPartition(value={float(self.value):.6g}, stderr={float(self.stderr):.3g}{extra}, "
            f"method={self.method!r})"
        )


class Bracket(NamedTuple):
    """Forward (lower) and reverse (upper) AIS estimates of ``log Z``; see :func:`ais_bracket`."""

    lower: LogPartition
    upper: LogPartition


def _energy_dtype_device(energy: Energy, fallback=None):
    for p in energy.parameters():
        if p.is_floating_point():
            return p.dtype, p.device
    for b in energy.buffers():
        if b.is_floating_point():
            return b.dtype, b.device
    if isinstance(fallback, torch.Tensor) and fallback.is_floating_point():
        return fallback.dtype, fallback.device
    return torch.get_default_dtype(), torch.device("cpu")


def _as_log_z(log_z, name: str = "log_z") -> torch.Tensor:
    if isinstance(log_z, (LogPartition, Estimate)):
        log_z = log_z.value
    if isinstance(log_z, bool) or not isinstance(log_z, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a number, a tensor or a LogPartition, got {type(log_z).__name__}")
    log_z = torch.as_tensor(log_z)
    if not log_z.is_floating_point():
        log_z = log_z.to(torch.get_default_dtype())
    if not torch.isfinite(log_z).all():
        raise ValueError(f"{name} must be finite, got {log_z}")
    return log_z


def _resolve_energy(energy, event_shape):
    if event_shape is None and not isinstance(energy, Energy):
        return None
    energy = as_energy(energy, event_shape=event_shape)
    if energy.has_latent:
        raise TypeError(
            "energy has a latent variable z: pass its free energy over z (pyro_ebm.free_energy) instead"
        )
    return energy


def _fmt_point(y: torch.Tensor) -> str:
    return np.array2string(y.detach().cpu().double().numpy(), precision=6, separator=", ")


def _check_values(f: torch.Tensor, y: torch.Tensor, what: str, label: str, offset: Optional[int] = None) -> None:
    """NaN or -inf energies are an error that gives the offending point (+inf, zero density, is allowed)."""
    bad = torch.isnan(f) | torch.isneginf(f)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        if offset is not None:
            what = f"{what}[{offset + i}]"
        raise ValueError(
            f"{label} is {f[i].item()} at y = {_fmt_point(y[i])} ({what}); the energy must be finite "
            f"(or +inf for zero density) there"
        )


def _check_some_mass(f: torch.Tensor, label: str, where: str, remedy: str) -> None:
    """Fail fast when the energy ``f`` is ``+inf`` at every point of ``where`` (the starting particles, the
    candidates): ``exp(-beta F)`` has no mass there, and annealing towards it could only stall."""
    if f.numel() and bool(torch.isposinf(f).all()):
        raise ValueError(
            f"{label} is +inf at all {f.numel()} {where}: exp(-beta F) has no mass there. Is the energy +inf "
            f"everywhere? If not, {remedy}"
        )


def _call_energy(energy: Energy, y: torch.Tensor, label: str) -> torch.Tensor:
    """``energy(y)`` through the shared check (:func:`~pyro_ebm.energy.call_energy`), whose dtype error
    (e.g. a closure over float64 tensors fed float32 points) gets this module's remedy: ``dtype=``."""
    try:
        f = call_energy(energy, y)
    except TypeError as exc:
        raise TypeError(f"{label}: {exc}; pass dtype= with the dtype the energy computes in "
                        "(e.g. dtype=torch.float64)") from exc
    check_energy_output(f, y.shape[:1], name=label, check_finite_values=False)
    return f


def _weights_summary(log_w: torch.Tensor):
    """``(log mean w, stderr, ESS)`` of 1-d log-weights (float64), by the library's one summary."""
    return importance_summary(log_w.to(_F64), 0)
