"""Negatives found by enumeration or search: every other output (rows 1-2) and the most offending one (5-8)."""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch

from .._validation import MAX_ENUMERATION, check_finite, check_positive_int, check_real
from ..energy import Energy, check_energy_output
from .base import Negatives, Seed, _call, _check_points, _flatten, _repeat

__all__ = ["Exhaustive", "MostOffending"]


def _check_candidates(candidates, E: Energy, name: str = "candidates") -> torch.Tensor:
    if not isinstance(candidates, torch.Tensor):
        raise TypeError(f"{name} must be a tensor [K, *event_shape], got {type(candidates).__name__}")
    if candidates.dim() < 1 or tuple(candidates.shape[1:]) != tuple(E.event_shape):
        raise ValueError(
            f"{name} must have shape [K, *event_shape] = [K, {', '.join(map(str, E.event_shape))}], "
            f"got {tuple(candidates.shape)}"
        )
    return candidates


def _distances(candidates: torch.Tensor, y_flat: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``[B, K]`` between each example and each candidate (over the event dims)."""
    K, B = candidates.shape[0], y_flat.shape[0]
    D = int(math.prod(candidates.shape[1:]))
    c = candidates.reshape(K, D).to(y_flat.dtype)
    if D == 0 or B == 0:
        return torch.zeros(B, K, dtype=y_flat.dtype, device=y_flat.device)
    # exact differences (no matrix-product shortcut), so that equal rows are at distance exactly 0
    return torch.cdist(y_flat.reshape(B, D), c, compute_mode="donot_use_mm_for_euclid_dist")


def _all_energies(E: Energy, candidates, x_flat, B) -> torch.Tensor:
    """Energies ``[B, K]`` of every candidate for every example, one flattened call."""
    K = candidates.shape[0]
    if K * B > MAX_ENUMERATION:
        raise ValueError(
            f"enumerating {K} candidates for {B} examples needs {K * B} energies, more than {MAX_ENUMERATION}: "
            "use MCMCNegatives or MostOffending with candidates=None instead"
        )
    c = candidates.repeat_interleave(B, dim=0)  # row k * B + b
    out = _call(E, c, _repeat(x_flat, K))
    check_energy_output(out, (K * B,), name=E._label())
    return out.reshape(K, B).T


# ------------------------------------------------------------------------------------------------------
# 1-2: exhaustive


class Exhaustive(Negatives):
    r"""Every candidate output except the example's own: :math:`\mathcal{Y} \setminus \{y\}`.

    For a finite output set ``candidates`` ``[K, *event]``; each example ``y`` must equal exactly one
    candidate. Returns the ``K - 1`` others, ``[K - 1, *batch, *event]``, in candidate order. With
    :func:`pyro_ebm.train.set_loss` a loss over the whole set (:func:`~pyro_ebm.losses.nll`,
    :func:`~pyro_ebm.losses.mee`) sees the data's energy as candidate 0 and these as the rest, which is
    the lecture's rows 1-2 (maximum likelihood with exhaustive :math:`\hat y`). Deterministic, no state.

    :param candidates: all outputs, ``[K, *event_shape]``, ``K >= 2``.

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> F = as_energy(lambda y: y.sum(-1), event_shape=(3,))
        >>> y = torch.eye(3)[[2, 0]]                       # two one-hot examples
        >>> Exhaustive(torch.eye(3))(F, y).argmax(-1)      # the other classes, [K - 1, batch]
        tensor([[0, 1],
                [1, 2]])
    """

    def __init__(self, candidates: torch.Tensor):
        super().__init__(None)
        if not isinstance(candidates, torch.Tensor) or candidates.dim() < 1 or candidates.shape[0] < 2:
            raise ValueError("candidates must be a tensor [K, *event_shape] with K >= 2")
        if candidates.is_floating_point():
            check_finite(candidates.detach(), "candidates")
        self.candidates = candidates

    def target_index(self, y_flat: torch.Tensor) -> torch.Tensor:
        """Index ``[B]`` of each example ``y_flat`` ``[B, *event_shape]`` (floating point) among the
        candidates; raises if one matches none or several."""
        _check_points(y_flat, "y_flat")
        if y_flat.dim() < 1 or tuple(y_flat.shape[1:]) != tuple(self.candidates.shape[1:]):
            raise ValueError(f"y_flat must have shape [B, *event_shape] = [B, "
                             f"{', '.join(map(str, self.candidates.shape[1:]))}], got {tuple(y_flat.shape)}")
        match = _distances(self.candidates, y_flat) == 0
        count = match.sum(-1)
        if bool((count != 1).any()):
            b = int((count != 1).nonzero()[0])
            what = "no candidate" if int(count[b]) == 0 else f"{int(count[b])} candidates"
            raise ValueError(
                f"y[{b}] equals {what}; for Exhaustive negatives each example must be exactly one of the "
                "candidates (e.g. a one-hot row of torch.eye(K))"
            )
        return match.to(torch.int64).argmax(-1)

    def __call__(self, energy, y, x=None):
        E, batch, y_flat, _ = _flatten(energy, y, x)
        cands = _check_candidates(self.candidates.to(device=y.device), E)
        B, K = y_flat.shape[0], cands.shape[0]
        match = _distances(cands, y_flat) == 0
        self.target_index(y_flat)
        # stable sort puts the K - 1 non-matching candidates first, in their own order
        order = torch.argsort(match.to(torch.int64), dim=-1, stable=True)[:, : K - 1]  # [B, K-1]
        out = cands[order].movedim(1, 0)  # [K-1, B, *event]
        return out.reshape((K - 1,) + tuple(batch) + tuple(E.event_shape)).to(y.dtype)

    def __repr__(self) -> str:
        return f"Exhaustive(K={self.candidates.shape[0]})"


# ------------------------------------------------------------------------------------------------------
# 5-8: most offending


class MostOffending(Negatives):
    r"""The most offending incorrect answer: the lowest-energy output at least ``radius`` away from ``y``.

    Rows 5-8 of the loss zoo (hinge, min-hinge, square-square/square-hinge, square-exp, logistic).

    * **Finite outputs** (``candidates`` ``[K, *event]``): brute force over the candidates, excluding those
      within Euclidean distance ``radius`` of the example (``radius = 0`` excludes exactly the correct
      answer). Returns the ``k`` lowest, ``[k, *batch, *event]``. Deterministic.
    * **Continuous outputs** (``candidates=None``): projected gradient descent on :math:`F(x, \cdot)` from
      ``restarts`` points ``y + init_scale * N(0, I)``; after every step a point closer than ``radius`` to
      ``y`` is projected onto the sphere of radius ``radius`` around ``y``. Returns the lowest-energy
      restart, ``[1, *batch, *event]``. Without an exclusion radius the search would return the data
      itself once the energy is well trained.

    :param candidates: the finite output set, or ``None`` for continuous ``y``.
    :param radius: exclusion radius ``>= 0``.
    :param k: (finite) number of most offending answers returned.
    :param restarts: (continuous) starting points per example.
    :param steps: (continuous) gradient steps.
    :param lr: (continuous) step size of the gradient descent.
    :param init_scale: (continuous) spread of the starting points (default ``2 * radius``, or 1).
    :param seed: int or ``torch.Generator`` (continuous search only).

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> F = as_energy(lambda y: (y ** 2).sum(-1), event_shape=(1,))    # lowest at 0
        >>> cands = torch.tensor([[0.0], [1.0], [-2.0], [3.0]])
        >>> MostOffending(cands)(F, torch.tensor([[0.0], [1.0]])).flatten()   # best other than y
        tensor([1., 0.])
        >>> y_hat = MostOffending(radius=0.5, seed=0)(F, torch.zeros(3, 1))
        >>> y_hat.abs().flatten().round(decimals=3)                    # on the exclusion sphere
        tensor([0.5000, 0.5000, 0.5000])
    """

    def __init__(
        self,
        candidates: Optional[torch.Tensor] = None,
        *,
        radius: float = 0.0,
        k: int = 1,
        restarts: int = 8,
        steps: int = 100,
        lr: float = 0.05,
        init_scale: Optional[float] = None,
        seed: Seed = None,
    ):
        super().__init__(seed)
        if isinstance(radius, bool) or not isinstance(radius, numbers.Real) or not radius >= 0 or math.isinf(radius):
            raise ValueError(f"radius must be a finite number >= 0, got {radius!r}")
        if candidates is not None and (not isinstance(candidates, torch.Tensor) or candidates.dim() < 1):
            raise TypeError("candidates must be a tensor [K, *event_shape] or None")
        self.candidates = candidates
        self.radius = float(radius)
        self.k = check_positive_int(k, "k")
        self.restarts = check_positive_int(restarts, "restarts")
        self.steps = check_positive_int(steps, "steps", minimum=0)
        self.lr = check_real(lr, "lr", minimum=0, strict=True)
        if init_scale is not None:
            init_scale = check_real(init_scale, "init_scale", minimum=0, strict=True)
        self.init_scale = init_scale if init_scale is not None else (2 * self.radius or 1.0)

    def __call__(self, energy, y, x=None):
        E, batch, y_flat, x_flat = _flatten(energy, y, x)
        if self.candidates is not None:
            return self._finite(E, batch, y_flat, x_flat)
        return self._search(E, batch, y_flat, x_flat, y.device)

    def _finite(self, E, batch, y_flat, x_flat):
        cands = _check_candidates(self.candidates.to(device=y_flat.device), E)
        B, K = y_flat.shape[0], cands.shape[0]
        with torch.no_grad():
            energies = _all_energies(E, cands.to(y_flat.dtype), x_flat, B)  # [B, K]
            excluded = _distances(cands, y_flat) <= self.radius
        allowed = (~excluded).sum(-1)
        if bool((allowed < self.k).any()):
            b = int((allowed < self.k).nonzero()[0])
            raise ValueError(
                f"only {int(allowed[b])} candidates lie farther than radius={self.radius} from y[{b}], "
                f"fewer than k={self.k}"
            )
        masked = energies.masked_fill(excluded, math.inf)
        idx = masked.topk(self.k, dim=-1, largest=False).indices  # [B, k]
        out = cands[idx].movedim(1, 0).to(y_flat.dtype)
        self.diagnostics = {}
        return out.reshape((self.k,) + tuple(batch) + tuple(E.event_shape))

    def _project(self, u, center, fallback):
        """Points of ``u`` closer than ``radius`` to ``center`` go onto the sphere (all ``[M, D]``)."""
        if self.radius == 0:
            return u
        d = u - center
        n = d.norm(dim=-1, keepdim=True)
        d = torch.where(n > 0, d, fallback)
        n = d.norm(dim=-1, keepdim=True)
        return torch.where(n < self.radius, center + d * (self.radius / n), u)

    def _search(self, E, batch, y_flat, x_flat, device):
        B, R = y_flat.shape[0], self.restarts
        D = int(math.prod(E.event_shape))
        gen = self.rng(device)
        center = _repeat(y_flat, R).reshape(R * B, D)
        xr = _repeat(x_flat, R)
        eps = torch.randn(center.shape, generator=gen, dtype=center.dtype, device=center.device)
        eps = torch.where(eps.norm(dim=-1, keepdim=True) > 0, eps, torch.ones_like(eps))
        u = self._project(center + self.init_scale * eps, center, eps)

        def f(v):
            return _call(E, v.reshape((R * B,) + tuple(E.event_shape)), xr)

        with torch.no_grad():  # the energy's contract, once, at the starting points
            check_energy_output(f(u), (R * B,), name=E._label())
        for _ in range(self.steps):
            with torch.enable_grad():
                v = u.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(f(v).sum(), v)
            u = self._project(u - self.lr * g, center, eps)
        with torch.no_grad():
            e = f(u)
        if not bool(torch.isfinite(e).all()):
            raise ValueError("the energy is not finite at the end of the most-offending search; lower lr")
        best = e.reshape(R, B).argmin(0)  # [B]
        out = u.reshape(R, B, D)[best, torch.arange(B, device=u.device)]
        self.diagnostics = {"offending_energy": float(e.reshape(R, B).min(0).values.mean())}
        return out.detach().reshape((1,) + tuple(batch) + tuple(E.event_shape))

    def __repr__(self) -> str:
        kind = f"K={self.candidates.shape[0]}" if self.candidates is not None else "continuous"
        return f"MostOffending({kind}, radius={self.radius})"
