r"""The log partition function :math:`\log Z_\beta = \log \int e^{-\beta F(y)}\,dy` and what it buys.

An energy defines the Gibbs-Boltzmann density :math:`p(y) = e^{-\beta F(y)} / Z_\beta` only up to its
normalizer. Knowing :math:`\log Z` turns an EBM into a normalized model: held-out log-likelihoods become
comparable with those of probabilistic models, and the EBM can be scored as a proper ``pyro.sample`` site.

Three estimators, chosen by ``method`` in :func:`log_partition`:

* ``"exact"`` -- a finite output set ``values`` ``[K, *event_shape]`` (sums, with counting measure),
  evaluated in chunks so memory stays bounded; no error.
* ``"quadrature"`` -- composite Gauss-Legendre on a box ``[low, high]`` for ``y`` with 1 to 3 scalar
  entries; the error is the change from ``n`` to ``2n`` points per dimension.
* ``"ais"`` -- annealed importance sampling along the inverse temperature, from a normalized base
  distribution to ``exp(-beta F)``; ``"reverse_ais"`` runs it backwards from samples of the target.
  Forward AIS is unbiased for :math:`Z`, so :math:`E[\log\hat Z] \le \log Z` (a stochastic lower bound);
  reverse AIS from exact target samples is unbiased for :math:`1/Z` and gives a stochastic upper bound.
  :func:`ais_bracket` runs both.

Bridges between the EBM and the probabilistic world:

* :func:`log_likelihood` -- :math:`-\beta F(y) - \log Z` per example;
* :func:`normalized_distribution` -- a :class:`NormalizedGibbs` Pyro distribution with that ``log_prob``;
* :func:`energy_from_model` -- the energy :math:`F(y) = -\log p(y)` of a Pyro model, with the model's
  discrete latents summed out by Pyro's enumeration machinery.

All estimates are returned as :class:`LogPartition` (``value`` and ``stderr`` in nats, float64), are
computed without gradients, and are reproducible given ``seed``.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
import math
import numbers
from dataclasses import dataclass
from typing import Callable, Dict, NamedTuple, Optional, Sequence

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions import constraints
from pyro.infer import config_enumerate
from pyro.ops.contract import contract_to_tensor

from ._validation import MAX_ENUMERATION, check_beta, check_positive_int
from .energy import Energy, as_energy, batch_shape_of, check_energy_output
from .gibbs import GibbsBoltzmann
from .inference import Estimate

__all__ = [
    "LogPartition",
    "Bracket",
    "log_partition",
    "ais_bracket",
    "log_likelihood",
    "NormalizedGibbs",
    "normalized_distribution",
    "energy_from_model",
]

_F64 = torch.float64


# ---------------------------------------------------------------------------------------------------
# result types
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogPartition:
    r"""An estimate of :math:`\log Z_\beta` with its uncertainty.

    :ivar value: the estimate of :math:`\log Z`, a 0-dim float64 tensor (nats).
    :ivar stderr: its error, float64, in nats: ``0`` for ``"exact"``; ``|log Z(2n) - log Z(n)|`` (the change
        under refinement, a conservative error of the reported ``2n`` value) for ``"quadrature"``; the delta
        method standard error ``std(w) / (sqrt(N) mean(w))`` for (reverse) AIS.
    :ivar ess: effective sample size ``(sum w)^2 / sum w^2`` of the AIS weights; ``None`` otherwise.
    :ivar method: ``"exact"``, ``"quadrature"``, ``"ais"`` or ``"reverse_ais"``.
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


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


def _generator(seed, device) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"seed must be an int, a torch.Generator or None, got {type(seed).__name__}")
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
    return gen


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


def _call_energy(energy: Energy, y: torch.Tensor, label: str) -> torch.Tensor:
    f = energy(y)
    check_energy_output(f, y.shape[:1], name=label, check_finite_values=False)
    return f


# ---------------------------------------------------------------------------------------------------
# exact enumeration
# ---------------------------------------------------------------------------------------------------


def _exact(energy, beta, *, values, event_shape=None, chunk_size: int = 65536, max_candidates: int = MAX_ENUMERATION):
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"values must be a tensor of candidates [K, *event_shape], got {type(values).__name__}")
    if values.dim() == 0 or values.shape[0] == 0:
        raise ValueError(f"values must have shape [K, *event_shape] with K >= 1, got {tuple(values.shape)}")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
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
    zero = torch.zeros((), dtype=_F64, device=total.device)
    return LogPartition(total, zero, None, "exact", num_evaluations=k)


# ---------------------------------------------------------------------------------------------------
# quadrature
# ---------------------------------------------------------------------------------------------------

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
    d = lows.numel()
    axes = [_gauss_legendre(float(lows[i]), float(highs[i]), n, order) for i in range(d)]
    nodes = [a[0].to(device) for a in axes]
    logw = [a[1].to(device) for a in axes]
    total_points = n**d
    total = torch.tensor(-math.inf, dtype=_F64, device=device)
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
    return total


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
    dtype, device = _energy_dtype_device(energy)
    label = energy._label()
    with torch.no_grad():
        coarse = _grid_log_z(energy, beta, lows, highs, n, order, chunk_size, dtype, device, label)
        fine = _grid_log_z(energy, beta, lows, highs, 2 * n, order, chunk_size, dtype, device, label)
    if not torch.isfinite(fine):
        raise ValueError(
            f"the integral of exp(-beta F) over the box is {math.exp(fine.item()) if fine.item() < 0 else 'infinite'}; "
            "the energy is +inf at every quadrature node or overflows: check low and high"
        )
    err = (fine - coarse).abs()
    return LogPartition(fine, err, None, "quadrature", num_evaluations=n**d + (2 * n) ** d)


# ---------------------------------------------------------------------------------------------------
# annealed importance sampling
# ---------------------------------------------------------------------------------------------------


def _schedule(schedule, num_temperatures: int, dtype=_F64) -> torch.Tensor:
    """``b_0 = 0 < b_1 < ... < b_T = 1``."""
    T = num_temperatures
    if isinstance(schedule, torch.Tensor) or (isinstance(schedule, Sequence) and not isinstance(schedule, str)):
        b = torch.as_tensor(schedule, dtype=dtype).reshape(-1)
        if b.numel() < 2 or float(b[0]) != 0.0 or float(b[-1]) != 1.0 or not bool((b[1:] > b[:-1]).all()):
            raise ValueError("schedule must be an increasing sequence from 0 to 1 (b_0 = 0, b_T = 1)")
        return b
    if schedule == "geometric":
        if T == 1:
            return torch.tensor([0.0, 1.0], dtype=dtype)
        b = torch.logspace(-4, 0, T, dtype=dtype)
        return torch.cat([torch.zeros(1, dtype=dtype), b])
    if schedule == "sigmoid":
        # Grosse, Maddison & Salakhutdinov (2013): a rescaled logistic in t, dense at both ends
        t = torch.linspace(-4.0, 4.0, T + 1, dtype=dtype)
        s = torch.sigmoid(t)
        return (s - s[0]) / (s[-1] - s[0])
    if schedule == "linear":
        return torch.linspace(0.0, 1.0, T + 1, dtype=dtype)
    raise ValueError(
        f"schedule must be 'geometric', 'sigmoid', 'linear' or an increasing tensor from 0 to 1, got {schedule!r}"
    )


class _Path:
    """The annealing path ``log q_b = (1 - b) log base + b (-beta F)`` on flat particles ``[N, D]``."""

    def __init__(self, energy: Energy, base, is_gauss: bool, beta: float, label: str):
        self.energy, self.base, self.beta, self.label = energy, base, beta, label
        self.event_shape = tuple(energy.event_shape)
        self.evals = 0
        self.checked = False
        self.safe = None  # a point inside the base's support (set from the first particle)
        self.gauss = None
        if is_gauss:  # closed-form log density and score of the default base (one backward pass less)
            normal = getattr(base, "base_dist", base)  # to_event(0) is the Normal itself
            loc, scale = normal.loc.reshape(-1), normal.scale.reshape(-1)
            norm = scale.log().sum() + 0.5 * loc.numel() * math.log(2 * math.pi)
            self.gauss = (loc, scale, norm)

    def components(self, x: torch.Tensor):
        """``F``, ``dF/dx``, ``log base``, ``d log base/dx`` at flat ``x`` ``[N, D]``."""
        n = x.shape[0]
        self.evals += n
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            y = x.reshape((n,) + self.event_shape)
            if self.checked:
                f = self.energy(y)
            else:  # the shape contract is checked once
                f = _call_energy(self.energy, y, self.label)
                self.checked = True
            gf = _grad(f, x)
            if self.gauss is None:
                lb = self._base_log_prob(y)
                glb = _grad(lb, x)
        if self.gauss is not None:
            loc, scale, norm = self.gauss
            z = (x.detach() - loc) / scale
            lb = -0.5 * (z**2).sum(-1) - norm
            glb = -z / scale
        return f.detach(), gf, lb.detach(), glb

    def _base_log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """``log base(y)``, ``-inf`` outside the base's support (without tripping argument validation)."""
        inside = self.base.support.check(y)
        if inside.dim() > 1:
            inside = inside.reshape(inside.shape[0], -1).all(-1)
        if bool(inside.all()):
            return self.base.log_prob(y)
        if self.safe is None:
            raise ValueError("the starting particles must lie in the support of base")
        mask = inside.reshape(inside.shape + (1,) * (y.dim() - 1))
        lb = self.base.log_prob(torch.where(mask, y, self.safe.to(y.dtype)))
        return torch.where(inside, lb, torch.full_like(lb, -math.inf))

    def potential(self, comps, b: float):
        """``U_b = -log q_b`` and its gradient; non-finite values mean zero density."""
        f, gf, lb, glb = comps
        u = -(1.0 - b) * lb + (b * self.beta) * f
        g = -(1.0 - b) * glb + (b * self.beta) * gf
        if b == 1.0:  # the base's support still bounds the path's support
            u = torch.where(torch.isneginf(lb), torch.full_like(u, math.inf), u)
        return u, g


def _grad(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if not out.requires_grad:  # e.g. a constant energy
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def _where(mask, new, old):
    return tuple(torch.where(mask.reshape(mask.shape + (1,) * (a.dim() - 1)), a, b) for a, b in zip(new, old))


def _transition(path: _Path, x, comps, b: float, eps: float, precond, n_leapfrog: int, gen):
    """One Metropolis-adjusted HMC transition (``n_leapfrog = 1`` is MALA) leaving ``q_b`` invariant.

    Mass matrix ``diag(1 / precond**2)``: momenta ``p = xi / precond`` and moves ``x += eps precond**2 p``.
    Returns the new ``(x, comps)`` and the acceptance probability of each particle.
    """
    u0, g0 = path.potential(comps, b)
    p = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device) / precond
    h0 = u0 + 0.5 * ((precond * p) ** 2).sum(-1)
    x1, g1, c1 = x, g0, comps
    p = p - 0.5 * eps * g1
    for i in range(n_leapfrog):
        x1 = x1 + eps * precond**2 * p
        c1 = path.components(x1)
        u1, g1 = path.potential(c1, b)
        p = p - (0.5 if i == n_leapfrog - 1 else 1.0) * eps * g1
    h1 = u1 + 0.5 * ((precond * p) ** 2).sum(-1)
    # a non-finite position, energy or gradient makes h1 non-finite (the last half kick uses the gradient)
    log_a = (h0 - h1).clamp(max=0.0)
    log_a = torch.where(torch.isfinite(log_a), log_a, torch.full_like(log_a, -math.inf))
    accept = torch.rand(log_a.shape, generator=gen, dtype=x.dtype, device=x.device).log() < log_a
    x_new = torch.where(accept.unsqueeze(-1), x1, x)
    comps_new = _where(accept, c1, comps)
    return x_new, comps_new, log_a.exp()


def _make_base(base, loc, scale, event_shape, dtype, device):
    if base is None:
        loc = torch.as_tensor(0.0 if loc is None else loc, dtype=dtype, device=device)
        scale = torch.as_tensor(1.0 if scale is None else scale, dtype=dtype, device=device)
        if not bool((scale > 0).all()):
            raise ValueError(f"scale must be > 0 (the base Gaussian's standard deviation), got {scale}")
        try:
            loc = loc.expand(event_shape)
            scale = scale.expand(event_shape)
        except RuntimeError:
            raise ValueError(
                f"loc {tuple(loc.shape)} and scale {tuple(scale.shape)} must broadcast to event_shape "
                f"{tuple(event_shape)}"
            ) from None
        return dist.Normal(loc, scale).to_event(len(event_shape)), True
    if loc is not None or scale is not None:
        raise ValueError("loc and scale set the default Gaussian base; do not pass them together with base")
    if not isinstance(base, torch.distributions.Distribution):
        raise TypeError(f"base must be a torch/Pyro Distribution, got {type(base).__name__}")
    if tuple(base.event_shape) != tuple(event_shape) or tuple(base.batch_shape) != ():
        hint = ""
        if tuple(base.batch_shape) + tuple(base.event_shape) == tuple(event_shape):
            hint = f"; use base.to_event({len(base.batch_shape)})"
        raise ValueError(
            f"base must have event_shape {tuple(event_shape)} (the energy's) and batch_shape (), got "
            f"event_shape {tuple(base.event_shape)} and batch_shape {tuple(base.batch_shape)}{hint}"
        )
    if getattr(base.support, "is_discrete", False):
        raise ValueError("base must be a continuous distribution (AIS moves particles with gradients)")
    return base, False


def _sample_base(base, n, gen, is_gauss):
    if is_gauss:
        normal = getattr(base, "base_dist", base)
        loc, scale = normal.loc, normal.scale
        eps = torch.randn((n,) + tuple(loc.shape), generator=gen, dtype=loc.dtype, device=loc.device)
        return loc + scale * eps
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
        return base.sample((n,)).detach()


def _precond(base, event_shape, dtype, device):
    d = int(math.prod(event_shape))
    try:
        sd = base.stddev.detach()
        sd = sd.to(dtype=dtype, device=device).expand(tuple(event_shape)).reshape(d)
        if bool(torch.isfinite(sd).all()) and bool((sd > 0).all()):
            return sd
    except (NotImplementedError, RuntimeError, AttributeError):
        pass
    return torch.ones(d, dtype=dtype, device=device)


def _run_ais(path: _Path, x0, betas, *, n_mcmc, n_leapfrog, step_size, target_accept, precond, gen, method):
    """Anneal flat particles ``x0`` ``[N, D]`` along ``betas`` (increasing: forward; decreasing: reverse).

    Log-weights accumulate ``log q_{b_{t}}(x) - log q_{b_{t-1}}(x) = (b_t - b_{t-1}) (-beta F(x) - log base(x))``
    before each transition at ``b_t`` (none at the last ``b``).
    """
    n, d = x0.shape
    T = betas.numel() - 1
    interior = T - 1
    if step_size is not None:
        fixed = torch.as_tensor(step_size).to(_F64).reshape(-1).cpu()
        if fixed.numel() == 1:
            fixed = fixed.expand(max(interior, 1))
        elif fixed.numel() != interior:
            raise ValueError(
                f"step_size must be a float or have one entry per interior temperature ({interior}), "
                f"got {fixed.numel()}"
            )
        if interior and not bool((fixed > 0).all()):
            raise ValueError("step_size must be > 0")
        if method == "reverse_ais":
            fixed = fixed.flip(0)
        eps, adapt = None, False
    else:
        fixed, adapt = None, True
        # MALA's optimal step shrinks like D^(-1/3) (HMC's like D^(-1/4)) in units of the base's scale
        eps = 1.6 * d ** (-1 / 3) if n_leapfrog == 1 else 1.2 * d ** (-0.25)
    if path.gauss is None:
        first = x0[:1].reshape((1,) + path.event_shape)
        if bool(path.base.support.check(first).all()):
            path.safe = first[0].detach()
    comps = path.components(x0)
    f0 = comps[0]
    _check_values(f0, x0.reshape((n,) + path.event_shape), "a starting particle", path.label)
    x = x0
    log_w = torch.zeros(n, dtype=_F64, device=x0.device)
    used = torch.empty(interior, dtype=_F64)
    acc = torch.empty(interior, dtype=_F64)
    for t in range(1, T + 1):
        b_prev, b = float(betas[t - 1]), float(betas[t])
        f, _, lb, _ = comps
        g = (-path.beta * f).to(_F64) - lb.to(_F64)
        inc = (b - b_prev) * g
        # zero density under both ends (F = +inf, outside the base) gives -inf, never NaN
        inc = torch.where(torch.isnan(inc), torch.full_like(inc, -math.inf), inc)
        log_w = log_w + inc
        if t == T:
            break
        e = float(fixed[t - 1]) if fixed is not None else eps
        rates = []
        for _ in range(n_mcmc):
            x, comps, a = _transition(path, x, comps, b, e, precond, n_leapfrog, gen)
            rates.append(a.mean())
        rate = float(torch.stack(rates).mean()) if rates else float("nan")
        used[t - 1], acc[t - 1] = e, rate
        if adapt and rates:
            # the next temperature's step depends on the particles only through this average
            eps = min(max(eps * math.exp(2.0 * (rate - target_accept)), 1e-6), 1e3)
    if method == "reverse_ais":
        used, acc = used.flip(0), acc.flip(0)
    return x, log_w, used, acc


def _weights_summary(log_w: torch.Tensor):
    n = log_w.numel()
    lse = torch.logsumexp(log_w, 0)
    log_mean = lse - math.log(n)
    if not torch.isfinite(lse):
        nan = torch.tensor(math.nan, dtype=_F64)
        return log_mean, nan, torch.zeros((), dtype=_F64)
    w = torch.exp(log_w - lse)  # normalized
    ess = 1.0 / (w**2).sum()
    stderr = (w * n).std(unbiased=True) / math.sqrt(n)
    return log_mean, stderr, ess


def _ais_common(energy, event_shape, base, loc, scale, dtype, schedule, num_temperatures, num_mcmc_steps,
                transition, num_leapfrog, step_size, target_accept, like=None):
    if event_shape is None and not isinstance(energy, Energy):
        if isinstance(base, torch.distributions.Distribution):
            event_shape = base.event_shape
        elif like is not None:
            event_shape = like
        else:
            raise ValueError(
                "event_shape is needed for a callable energy (or pass an Energy, or a base distribution)"
            )
    energy = _resolve_energy(energy, event_shape)
    e_dtype, device = _energy_dtype_device(energy, loc if isinstance(loc, torch.Tensor) else None)
    if dtype is None:
        dtype = e_dtype
    base, is_gauss = _make_base(base, loc, scale, energy.event_shape, dtype, device)
    T = check_positive_int(num_temperatures, "num_temperatures")
    betas = _schedule(schedule, T)
    n_mcmc = check_positive_int(num_mcmc_steps, "num_mcmc_steps", minimum=0)
    if transition == "mala":
        n_leapfrog = 1
    elif transition == "hmc":
        n_leapfrog = check_positive_int(num_leapfrog, "num_leapfrog")
    else:
        raise ValueError(f"transition must be 'mala' or 'hmc', got {transition!r}")
    if target_accept is None:
        target_accept = 0.6 if n_leapfrog == 1 else 0.7
    if not 0.0 < float(target_accept) < 1.0:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")
    if step_size is not None and not isinstance(step_size, torch.Tensor):
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Real) or not step_size > 0:
            raise ValueError(
                f"step_size must be > 0 (a float, or a tensor of one step per temperature), got {step_size!r}"
            )
    d = int(math.prod(energy.event_shape))
    precond = _precond(base, energy.event_shape, dtype, device)
    return energy, base, is_gauss, betas, n_mcmc, n_leapfrog, float(target_accept), d, precond, dtype, device


def _ais(
    energy,
    beta,
    *,
    event_shape=None,
    base=None,
    loc=None,
    scale=None,
    num_particles: int = 512,
    num_temperatures: int = 500,
    schedule="sigmoid",
    transition: str = "mala",
    num_mcmc_steps: int = 2,
    num_leapfrog: int = 5,
    step_size=None,
    target_accept: Optional[float] = None,
    dtype=None,
    seed=None,
):
    (energy, base, is_gauss, betas, n_mcmc, n_leapfrog, target_accept, d, precond, dtype, device) = _ais_common(
        energy, event_shape, base, loc, scale, dtype, schedule, num_temperatures, num_mcmc_steps, transition,
        num_leapfrog, step_size, target_accept,
    )
    n = check_positive_int(num_particles, "num_particles", minimum=2)
    gen = _generator(seed, device)
    path = _Path(energy, base, is_gauss, beta, energy._label())
    with torch.no_grad():
        x0 = _sample_base(base, n, gen, is_gauss).to(dtype).reshape(n, d)
        x, log_w, used, acc = _run_ais(
            path, x0, betas, n_mcmc=n_mcmc, n_leapfrog=n_leapfrog, step_size=step_size,
            target_accept=target_accept, precond=precond, gen=gen, method="ais",
        )
    value, stderr, ess = _weights_summary(log_w)
    return LogPartition(
        value, stderr, ess, "ais", log_w, x.reshape((n,) + tuple(energy.event_shape)), betas, used, acc, path.evals
    )


def _reverse_ais(
    energy,
    beta,
    *,
    samples,
    event_shape=None,
    base=None,
    loc=None,
    scale=None,
    num_temperatures: int = 500,
    schedule="sigmoid",
    transition: str = "mala",
    num_mcmc_steps: int = 2,
    num_leapfrog: int = 5,
    step_size=None,
    target_accept: Optional[float] = None,
    dtype=None,
    seed=None,
):
    if not isinstance(samples, torch.Tensor) or not samples.is_floating_point():
        raise TypeError("samples must be a floating-point tensor [N, *event_shape] of draws from exp(-beta F)")
    like = samples.shape[1:] if samples.dim() >= 1 else None
    (energy, base, is_gauss, betas, n_mcmc, n_leapfrog, target_accept, d, precond, dtype, device) = _ais_common(
        energy, event_shape, base, loc, scale, dtype, schedule, num_temperatures, num_mcmc_steps, transition,
        num_leapfrog, step_size, target_accept, like=like,
    )
    batch = batch_shape_of(samples, energy.event_shape, "samples")
    if len(batch) != 1 or batch[0] < 2:
        raise ValueError(
            f"samples must have shape [N, *event_shape] with N >= 2, event_shape {tuple(energy.event_shape)}; "
            f"got {tuple(samples.shape)}"
        )
    n = batch[0]
    gen = _generator(seed, device)
    path = _Path(energy, base, is_gauss, beta, energy._label())
    with torch.no_grad():
        x0 = samples.detach().to(dtype=dtype, device=device).reshape(n, d)
        x, log_w, used, acc = _run_ais(
            path, x0, betas.flip(0), n_mcmc=n_mcmc, n_leapfrog=n_leapfrog, step_size=step_size,
            target_accept=target_accept, precond=precond, gen=gen, method="reverse_ais",
        )
    # mean(w) estimates 1/Z: log Z_hat = -log mean(w); the delta-method error is the same on the log scale
    log_inv, stderr, ess = _weights_summary(log_w)
    return LogPartition(
        -log_inv, stderr, ess, "reverse_ais", log_w, x.reshape((n,) + tuple(energy.event_shape)), betas, used,
        acc, path.evals,
    )


_METHODS: Dict[str, Callable] = {
    "exact": _exact,
    "quadrature": _quadrature,
    "ais": _ais,
    "reverse_ais": _reverse_ais,
}


def log_partition(energy, beta=1.0, method: str = "ais", **options) -> LogPartition:
    r"""Estimate :math:`\log Z_\beta = \log \int e^{-\beta F(y)}\,dy` (a sum for a finite set) with an error.

    :param energy: an :class:`~pyro_ebm.Energy` or a callable ``F(y)`` mapping ``[N, *event_shape]`` to
        ``[N]``. (For a conditional energy ``F(y, x)``, pass ``lambda y: F(y, x)`` with ``event_shape``.)
    :param beta: inverse temperature ``> 0`` (a finite float).
    :param method: ``"exact"``, ``"quadrature"``, ``"ais"`` (default) or ``"reverse_ais"``.
    :param options: the method's options, below. ``event_shape`` (the shape of one ``y``) is accepted by
        every method and needed for a plain callable unless it follows from the other options.
    :returns: :class:`LogPartition` (``value``, ``stderr``; for AIS also ``ess``, ``log_weights``,
        ``samples``, ``betas``, ``step_sizes``, ``accept_rate``). Computed without gradients.

    **exact** (``Z = sum_k exp(-beta F(values[k]))``, counting measure):

    * ``values`` -- ``[K, *event_shape]`` candidates;
    * ``chunk_size`` -- candidates per energy call (default 65536), so memory stays bounded; the
      log-sum-exp is accumulated across chunks in float64;
    * ``max_candidates`` -- refuse larger sets (default ``MAX_ENUMERATION``).

    **quadrature** (``y`` with 1 to 3 entries, Lebesgue measure on the box only):

    * ``low``, ``high`` -- the box, one bound per entry of ``y`` (a number for one dimension);
    * ``num_points`` -- nodes per dimension of the coarse rule (default 512, 128, 48 in 1, 2, 3
      dimensions), rounded up to whole panels; the reported value uses twice as many per dimension and
      ``stderr = |log Z(2n) - log Z(n)|``;
    * ``order`` -- Gauss-Legendre nodes per panel (default 8);
    * ``chunk_size`` -- nodes per energy call (default 65536).

    Energies are evaluated in the energy's dtype and accumulated in float64. A NaN or ``-inf`` energy at a
    node is a ``ValueError`` giving the node; ``+inf`` is zero density. Mass outside the box is not counted.

    **ais** (annealed importance sampling, Neal 2001):

    * ``base`` -- a normalized, continuous distribution with the energy's ``event_shape`` and batch shape
      ``()``; by default ``Normal(loc, scale)`` over the event (``loc=0``, ``scale=1``, broadcast);
    * ``num_particles`` ``N`` (default 512), all moved at once;
    * ``num_temperatures`` ``T`` (default 500) and ``schedule``: ``"geometric"`` (default,
      ``b = 10^-4 .. 1`` log-spaced), ``"sigmoid"`` (Grosse et al. 2013), ``"linear"`` or an increasing
      tensor from 0 to 1. The intermediate densities are
      :math:`\log q_b = (1 - b)\log \text{base} + b\,(-\beta F)`;
    * ``transition`` -- ``"mala"`` (default) or ``"hmc"`` (``num_leapfrog`` steps, default 5), with
      ``num_mcmc_steps`` Metropolis-adjusted transitions per temperature (default 2), preconditioned by the
      base's standard deviation;
    * ``step_size`` -- ``None`` (adapted: the step at each temperature moves the previous temperature's
      mean acceptance toward ``target_accept``, 0.6 for MALA and 0.7 for HMC), a float, or a tensor of
      ``T - 1`` steps (one per interior temperature, e.g. ``result.step_sizes`` of an earlier run);
    * ``dtype`` (default: the energy's) and ``seed`` (int or ``torch.Generator``).

    The weights are :math:`w = \prod_t q_{b_t}(x_{t-1}) / q_{b_{t-1}}(x_{t-1})`; ``value = log mean(w)``,
    ``stderr = std(w) / (sqrt(N) mean(w))`` (delta method) and ``ess = (sum w)^2 / sum w^2``. With a fixed
    step schedule every transition leaves its :math:`q_b` invariant whatever the particles do, so
    :math:`E[\hat Z] = Z` exactly and :math:`E[\log \hat Z] \le \log Z`. The adaptive default couples the
    particles only through one average acceptance per temperature (an :math:`O(1/N)` effect); for a
    strictly unbiased run pass ``step_size=pilot.step_sizes`` from a pilot run. Trust the error bar only
    when ``ess`` is a sizeable fraction of ``N``: a small ESS means the weights are dominated by a few
    particles and the variance is itself poorly estimated (use more temperatures).

    **reverse_ais**: the same options (no ``num_particles``) plus ``samples`` ``[N, *event_shape]``, draws
    from :math:`e^{-\beta F}/Z` (exact, or e.g. long MCMC runs). The chains are annealed from the target
    back to the base; the mean weight estimates :math:`1/Z`, and ``value = -log mean(w)``. With exact draws
    :math:`E[\text{value}] \ge \log Z` (a stochastic upper bound); with approximate draws the bound is only
    approximate.

    Example::

        >>> import math, torch
        >>> from pyro_ebm import as_energy
        >>> from pyro_ebm.partition import log_partition
        >>> F = as_energy(lambda y: 0.5 * (y ** 2).sum(-1), event_shape=(2,))
        >>> round(math.log(2 * math.pi), 4)
        1.8379
        >>> round(float(log_partition(F, method="quadrature", low=[-9, -9], high=[9, 9]).value), 4)
        1.8379
        >>> est = log_partition(F, method="ais", scale=2.0, num_particles=128, num_temperatures=30, seed=0)
        >>> abs(est.value.item() - math.log(2 * math.pi)) < 3 * est.stderr.item() + 0.02
        True
        >>> values = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> round(float(log_partition(F, method="exact", values=values).value), 4)  # log(1 + 2 e^-0.5)
        0.7944
    """
    beta = check_beta(beta)
    if isinstance(beta, torch.Tensor):
        if beta.numel() != 1:
            raise ValueError(f"beta must be a single inverse temperature here, got shape {tuple(beta.shape)}")
        beta = float(beta)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
    fn = _METHODS[method]
    allowed = [p for p in inspect.signature(fn).parameters if p not in ("energy", "beta")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for method={method!r}; expected some of {allowed}")
    required = [
        p.name for p in inspect.signature(fn).parameters.values()
        if p.kind == p.KEYWORD_ONLY and p.default is p.empty and p.name not in options
    ]
    if required:
        raise TypeError(f"method={method!r} needs the option(s) {required}")
    return fn(energy, beta, **options)


def ais_bracket(energy, samples: torch.Tensor, beta=1.0, **options) -> Bracket:
    r"""Sandwich :math:`\log Z` between forward AIS (stochastic lower bound) and reverse AIS (upper bound).

    Runs forward AIS from the base, then reverse AIS from ``samples`` (exact draws of :math:`e^{-\beta F}/Z`)
    with the forward run's step-size schedule held fixed, so the reverse run is not adapted to the particles
    it moves. The gap ``upper.value - lower.value`` shrinks to zero as the number of temperatures grows; a
    large gap says the chains do not mix between the base and the target (with exact samples, the truth
    lies in between up to the two error bars).

    :param energy: an :class:`~pyro_ebm.Energy` or callable ``F(y)``.
    :param samples: ``[N, *event_shape]`` draws from the target.
    :param beta: inverse temperature ``> 0``.
    :param options: options of ``method="ais"`` (see :func:`log_partition`); ``num_particles`` defaults to
        ``N``. ``seed`` seeds the forward run and, offset by one, the reverse run.
    :returns: :class:`Bracket` ``(lower, upper)`` of :class:`LogPartition`.
    """
    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"samples must be a tensor [N, *event_shape], got {type(samples).__name__}")
    fwd_opts = dict(options)
    fwd_opts.setdefault("num_particles", samples.shape[0] if samples.dim() else 2)
    if "event_shape" not in fwd_opts and not isinstance(energy, Energy) and not isinstance(
        options.get("base"), torch.distributions.Distribution
    ):
        fwd_opts["event_shape"] = samples.shape[1:]
    seed = options.get("seed")
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        rev_seed = seed + 1
    else:
        rev_seed = seed  # a generator simply continues its stream
    lower = log_partition(energy, beta, "ais", **fwd_opts)
    rev_opts = {k: v for k, v in fwd_opts.items() if k != "num_particles"}
    rev_opts["seed"] = rev_seed
    if rev_opts.get("step_size") is None or not isinstance(rev_opts.get("step_size"), torch.Tensor):
        if lower.step_sizes is not None and lower.step_sizes.numel() > 0:
            rev_opts["step_size"] = lower.step_sizes
    upper = log_partition(energy, beta, "reverse_ais", samples=samples, **rev_opts)
    return Bracket(lower, upper)


# ---------------------------------------------------------------------------------------------------
# normalized EBMs
# ---------------------------------------------------------------------------------------------------


def log_likelihood(energy, y: torch.Tensor, log_z, beta=1.0, x=None) -> torch.Tensor:
    r"""Held-out log-likelihood of an EBM: :math:`\log p(y) = -\beta F(y) - \log Z_\beta`, per example.

    :param energy: an :class:`~pyro_ebm.Energy` or callable ``F(y[, x])``.
    :param y: ``[*batch, *event_shape]``.
    :param log_z: :math:`\log Z_\beta` at the same ``beta``: a float, a tensor broadcasting to ``batch``
        (one normalizer per conditioning ``x``) or a :class:`LogPartition`.
    :param beta: inverse temperature ``> 0``.
    :param x: optional conditioning passed as ``F(y, x)``.
    :returns: ``[*batch]``, differentiable with respect to the energy's parameters (``log_z`` is taken as
        given). The uncertainty of an estimated ``log_z`` shifts every example by the same amount.

    Example::

        >>> import math, torch
        >>> from pyro_ebm.partition import log_likelihood
        >>> F = lambda y: 0.5 * y ** 2
        >>> log_likelihood(F, torch.tensor([0.0, 1.0]), 0.5 * math.log(2 * math.pi))
        tensor([-0.9189, -1.4189])
    """
    beta = check_beta(beta)
    log_z = _as_log_z(log_z)
    if not isinstance(energy, Energy) and not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a tensor, got {type(y).__name__}")
    energy = as_energy(energy) if not isinstance(energy, Energy) else energy
    batch = batch_shape_of(y, energy.event_shape, "y")
    f = energy(y) if x is None else energy(y, x)
    check_energy_output(f, batch, name=energy._label())
    b = torch.as_tensor(beta, dtype=f.dtype, device=f.device)
    return -b * f - log_z.to(dtype=f.dtype, device=f.device)


class NormalizedGibbs(GibbsBoltzmann):
    r"""A Gibbs-Boltzmann distribution with a known normalizer: ``log_prob(y) = -beta F(y) - log_z``.

    Use it to score an EBM as a proper density next to a probabilistic model (as an observed
    ``pyro.sample`` site, in ``Trace_ELBO``, in model comparison). It is a :class:`~pyro_ebm.GibbsBoltzmann`
    and inherits everything else from it, in particular **what** ``.sample()`` **returns**: draws from the
    initial distribution ``init``, *not* from :math:`e^{-\beta F}/Z` (exact draws need MCMC:
    :func:`pyro_ebm.mcmc.sample`). That keeps the site usable as a latent under NUTS/HMC and every
    ``init_to_*`` strategy; ``log_z`` is a constant there and does not change the posterior.

    :param energy: an :class:`~pyro_ebm.Energy` or callable ``F(y[, x])``.
    :param log_z: :math:`\log Z_\beta` at this ``beta`` (float, tensor broadcasting to the batch shape, or a
        :class:`LogPartition`).

    The other arguments (``beta``, ``x``, ``event_shape``, ``support``, ``init``, ``batch_shape``) are those of
    :class:`~pyro_ebm.GibbsBoltzmann`.
    """

    def __init__(self, energy, log_z, beta=1.0, x=None, event_shape=None, support=constraints.real, init=None,
                 batch_shape=(), validate_args=None):
        self.log_z = _as_log_z(log_z)
        super().__init__(energy, beta=beta, x=x, event_shape=event_shape, support=support, init=init,
                         batch_shape=batch_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(NormalizedGibbs, _instance)
        new.log_z = self.log_z
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``-beta F(value, x) - log_z``, shape ``sample + batch``."""
        lp = super().log_prob(value)
        return lp - self.log_z.to(dtype=lp.dtype, device=lp.device)

    def __repr__(self):
        return (
            f"NormalizedGibbs(energy={self.energy._label()}, beta={self.beta}, log_z={self.log_z.tolist()}, "
            f"event_shape={tuple(self.event_shape)}, batch_shape={tuple(self.batch_shape)})"
        )


def normalized_distribution(
    energy, log_z, beta=1.0, event_shape=None, support=constraints.real, **kwargs
) -> NormalizedGibbs:
    r"""The normalized Pyro distribution :math:`p(y) = e^{-\beta F(y)} / Z` of an EBM, given ``log Z``.

    A thin constructor of :class:`NormalizedGibbs` (see there for what ``.sample()`` returns).

    :param energy: an :class:`~pyro_ebm.Energy` or callable ``F(y[, x])``.
    :param log_z: :math:`\log Z_\beta` (e.g. ``log_partition(energy, beta, ...)``).
    :param beta: inverse temperature ``> 0``.
    :param event_shape: shape of one ``y`` (default: the energy's).
    :param support: constraint of ``y`` (default real).
    :param kwargs: ``x``, ``init``, ``batch_shape``, ``validate_args``.

    Example::

        >>> import math, torch, pyro
        >>> from pyro_ebm.partition import normalized_distribution
        >>> p = normalized_distribution(lambda y: 0.5 * y ** 2, 0.5 * math.log(2 * math.pi))
        >>> y = torch.tensor([0.0, 1.0])
        >>> torch.allclose(p.log_prob(y), pyro.distributions.Normal(0.0, 1.0).log_prob(y))
        True
    """
    return NormalizedGibbs(energy, log_z, beta=beta, event_shape=event_shape, support=support, **kwargs)


# ---------------------------------------------------------------------------------------------------
# from a Pyro model to an energy
# ---------------------------------------------------------------------------------------------------


def _is_subsample(site) -> bool:
    return type(site["fn"]).__name__ == "_Subsample"


def _max_plate_nesting(trace) -> int:
    depth = 0
    for site in trace.nodes.values():
        if site["type"] == "sample":
            for frame in site["cond_indep_stack"]:
                if frame.vectorized and frame.dim is not None:
                    depth = max(depth, -frame.dim)
    return depth


class _ModelEnergy(Energy):
    """``F(y) = -log p(y)`` of a Pyro model's site, other discrete latents enumerated (see
    :func:`energy_from_model`)."""

    _PLATE = "_ebm_examples"

    def __init__(self, model, site, args, kwargs, data, max_plate_nesting):
        self.model, self.site = model, site
        self.args, self.kwargs, self.data = tuple(args), dict(kwargs or {}), dict(data or {})
        with torch.no_grad(), poutine.block():
            trace = poutine.trace(poutine.condition(model, self.data)).get_trace(*self.args, **self.kwargs)
        if site not in trace.nodes or trace.nodes[site]["type"] != "sample":
            names = [n for n, s in trace.nodes.items() if s["type"] == "sample"]
            raise ValueError(f"site {site!r} is not a sample site of the model; its sample sites are {names}")
        node = trace.nodes[site]
        for name, s in trace.nodes.items():
            if s["type"] != "sample" or name == site or s["is_observed"] or _is_subsample(s):
                continue
            if not getattr(s["fn"], "has_enumerate_support", False):
                raise ValueError(
                    f"site {name!r} is a continuous latent (its distribution {type(s['fn']).__name__} cannot be "
                    "enumerated), so -log p(y) would need an integral over it: condition it (pass "
                    f"data={{{name!r}: value}} or poutine.condition the model), or use a model whose other "
                    "latents are discrete"
                )
        value = node["value"]
        mpn = _max_plate_nesting(trace) if max_plate_nesting is None else int(max_plate_nesting)
        self.max_plate_nesting = mpn
        self.site_batch_ndim = value.dim() - node["fn"].event_dim
        super().__init__(event_shape=tuple(value.shape))
        # remembers the site's dtype and device, so estimators work in the model's precision
        like = value if value.is_floating_point() else torch.zeros((), device=value.device)
        self.register_buffer("_like", torch.zeros((), dtype=like.dtype, device=like.device), persistent=False)

    def forward(self, y, x=None):
        if x is not None:
            raise TypeError("an energy built from a model takes the model's arguments via args/kwargs, not x")
        batch = y.shape[: y.dim() - len(self.event_shape)]
        n = int(math.prod(batch))
        mpn = self.max_plate_nesting
        pad = mpn - self.site_batch_ndim
        yy = y.reshape((n,) + (1,) * max(pad, 0) + tuple(self.event_shape))
        data = dict(self.data)
        data[self.site] = yy
        # the examples get their own plate left of the model's plates; enumeration goes further left
        conditioned = poutine.condition(config_enumerate(self.model, default="parallel"), data)
        with poutine.block(), pyro.validation_enabled(False):
            enum = poutine.enum(first_available_dim=-(mpn + 2))
            with poutine.trace() as tr, enum:
                with pyro.plate(self._PLATE, n, dim=-(mpn + 1)):
                    conditioned(*self.args, **self.kwargs)
        trace = tr.trace
        trace.compute_log_prob(site_filter=lambda name, s: not _is_subsample(s))
        trace.pack_tensors()
        outer = trace.plate_to_symbol[self._PLATE]
        tree: Dict[frozenset, list] = OrderedDict()
        for name, s in trace.nodes.items():
            if s["type"] != "sample" or _is_subsample(s):
                continue
            ordinal = frozenset(trace.plate_to_symbol[f.name] for f in s["cond_indep_stack"] if f.vectorized)
            tree.setdefault(ordinal, []).append(s["packed"]["log_prob"])
        sum_dims = set(trace.symbol_to_dim) - set(trace.plate_to_symbol.values())
        # with one example the size-1 plate is packed away: then there is nothing to keep
        kept = any(outer in t._pyro_dims for terms in tree.values() for t in terms)
        log_p = contract_to_tensor(tree, sum_dims, target_ordinal=frozenset({outer}) if kept else frozenset())
        dims = getattr(log_p, "_pyro_dims", "")
        if outer in dims:
            log_p = log_p.reshape(n)
        else:
            log_p = log_p.reshape(()).expand(n)
        return (-log_p).reshape(batch)

    def _label(self) -> str:
        return f"energy -log p({self.site})"


def energy_from_model(model, site: str = "y", *, args=(), kwargs=None, data=None, max_plate_nesting=None) -> Energy:
    r"""The energy :math:`F(y) = -\log p(y)` of the site ``site`` of a Pyro model.

    :math:`p(y)` is the model's joint density of ``y`` and its observed sites, with the model's other
    **discrete** latent sites summed out exactly by Pyro's parallel enumeration (the same contraction as
    ``TraceEnum_ELBO``, so local discrete latents inside plates are handled). With ``beta = 1`` the energy's
    ``log Z`` is 0 (up to the mass the model puts outside the region you integrate over): a handy check of
    :func:`log_partition`, and the way to put a probabilistic model and an EBM on the same footing.

    :param model: a Pyro model (a callable). ``pyro.param`` values are used as they are in the param store.
    :param site: name of the sample site that plays ``y``; the energy's ``event_shape`` is the site's full
        value shape in one run of the model (its plates included: ``F`` is then the joint over the plate).
    :param args: positional arguments of the model.
    :param kwargs: keyword arguments of the model.
    :param data: ``{site: value}`` to condition other sites (e.g. continuous latents at fixed values).
    :param max_plate_nesting: the model's plate depth (guessed from one run by default).
    :returns: an :class:`~pyro_ebm.Energy`; ``F(y)`` takes ``y`` ``[*batch, *event_shape]`` and returns
        ``[*batch]`` (all examples in one vectorised run under an extra plate). Differentiable with respect
        to ``y`` and the model's parameters.
    :raises ValueError: if ``site`` is not a sample site, or another latent site is continuous and not
        conditioned.

    Example::

        >>> import torch, pyro, pyro.distributions as dist
        >>> from pyro_ebm.partition import energy_from_model
        >>> def mixture():
        ...     z = pyro.sample("z", dist.Categorical(torch.tensor([0.3, 0.7])))
        ...     return pyro.sample("y", dist.Normal(torch.tensor([-2.0, 2.0])[z], 1.0))
        >>> F = energy_from_model(mixture, "y")
        >>> y = torch.tensor([-2.0, 0.0, 2.0])
        >>> ref = torch.logsumexp(torch.stack([torch.tensor(0.3).log() + dist.Normal(-2.0, 1.0).log_prob(y),
        ...                                    torch.tensor(0.7).log() + dist.Normal(2.0, 1.0).log_prob(y)]), 0)
        >>> torch.allclose(F(y), -ref)
        True
    """
    if not callable(model):
        raise TypeError(f"model must be a callable Pyro model, got {type(model).__name__}")
    if not isinstance(site, str):
        raise TypeError(f"site must be a site name (str), got {type(site).__name__}")
    return _ModelEnergy(model, site, args, kwargs, data, max_plate_nesting)
