r"""Independence proposals for Metropolis-Hastings jumps between the modes of an energy.

Local kernels (HMC, MALA, Langevin) move a chain within a mode; between well separated modes they almost
never cross, so a persistent buffer keeps whatever share of each mode its chains fell into, and a model
trained on it gets the modes' weights wrong with nothing to say so. A *jump* is one Metropolis-Hastings
step with a proposal :math:`q` that does not depend on the current state:

.. math:: y' \sim q, \qquad
          \alpha = \min\Big(1, \frac{e^{-\beta F(y')}\, q(y)}{e^{-\beta F(y)}\, q(y')}\Big),

which leaves :math:`e^{-\beta F}` invariant for any fixed :math:`q` that is positive wherever the target
is. :class:`DataProposal` is the mixture that serves maximum-likelihood training: a Gaussian kernel
density estimate on a fixed subsample of the training data (the model is trained towards the data, so
this is where its mass should be) and a uniform density on the data's bounding box widened by
``box_scale`` (so that mass the model puts where there are no data is proposed too, and the training
gradient can remove it). Its cost per jump is one energy evaluation and a distance matrix to at most
``max_points`` centres. In high dimension its acceptance falls towards zero; the jump then does nothing,
and costs little.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch

from .._rng import make_generator
from .._validation import check_beta, check_device, check_finite, check_positive_int, check_real

__all__ = ["DataProposal", "independence_jump"]


class DataProposal:
    r"""A fixed mixture proposal for :func:`independence_jump`: a Gaussian KDE of data and a uniform box.

    :math:`q(y) = (1 - w)\,\frac1m\sum_{i=1}^m N(y; c_i, h^2 I) + w\,U_{\text{box}}(y)`, with centres
    :math:`c_i` a fixed random subsample of ``data`` (at most ``max_points``), the bandwidth ``h``
    Scott's rule :math:`\bar\sigma\, m^{-1/(d+4)}` (``bandwidth`` overrides it; :math:`\bar\sigma` is the
    mean of the coordinates' standard deviations), and the box the data's per-coordinate range widened
    about its centre by ``box_scale``.

    :param data: ``[N, *event]`` floating-point data (``N >= 2``), finite.
    :param uniform_weight: ``w`` in ``[0, 1)``, the share of proposals drawn from the box (0.1).
    :param box_scale: the box's half-width over the data's half-range, ``>= 1`` (1.5).
    :param bandwidth: ``h > 0``; default Scott's rule.
    :param max_points: most KDE centres kept (1000).
    :param seed: int or ``torch.Generator`` for the subsample.

    Shapes: :meth:`sample` ``(n, generator) -> [n, *event]``; :meth:`log_prob` ``[n, *event] -> [n]``.

    Example::

        >>> import torch
        >>> data = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
        >>> q = DataProposal(data, seed=0)
        >>> y = q.sample(4, torch.Generator().manual_seed(1))
        >>> y.shape, q.log_prob(y).shape
        (torch.Size([4, 2]), torch.Size([4]))
    """

    def __init__(self, data: torch.Tensor, *, uniform_weight: float = 0.1, box_scale: float = 1.5,
                 bandwidth: Optional[float] = None, max_points: int = 1000, seed=0):
        if not isinstance(data, torch.Tensor) or not data.is_floating_point() or data.dim() < 2:
            got = f"shape {tuple(data.shape)} dtype {data.dtype}" if isinstance(data, torch.Tensor) else type(data).__name__
            raise TypeError(f"data must be a floating-point tensor [N, *event_shape] with N >= 2, got {got}")
        if data.shape[0] < 2:
            raise ValueError(f"data must hold at least 2 points, got {data.shape[0]}")
        flat = data.detach().reshape(data.shape[0], -1)
        bad = ~torch.isfinite(flat).all(-1)
        if bool(bad.any()):
            raise ValueError(f"data must be finite: {int(bad.sum())} rows are not (first: row {int(bad.nonzero()[0, 0])})")
        self.uniform_weight = check_real(uniform_weight, "uniform_weight", minimum=0)
        if not self.uniform_weight < 1:
            raise ValueError(f"uniform_weight must be in [0, 1), got {uniform_weight!r}")
        self.box_scale = check_real(box_scale, "box_scale", minimum=1)
        max_points = check_positive_int(max_points, "max_points")
        self.event_shape = torch.Size(data.shape[1:])
        gen = make_generator(seed, torch.device("cpu"))
        keep = torch.randperm(flat.shape[0], generator=gen)[:max_points].to(flat.device)
        self.centers = flat[keep].clone()
        m, d = self.centers.shape
        lo, hi = flat.min(0).values, flat.max(0).values
        half = ((hi - lo) / 2).clamp_min(1e-6 * (1 + float(flat.abs().max())))
        self.mid, self.half = (hi + lo) / 2, half * self.box_scale
        if bandwidth is None:
            bandwidth = float(flat.std(0).mean()) * m ** (-1.0 / (d + 4))
            bandwidth = max(bandwidth, float(half.min()) * 1e-3)
        self.bandwidth = check_real(bandwidth, "bandwidth", minimum=0, strict=True)
        self._log_box = -float(torch.log(2 * self.half.double()).sum())
        self._log_kde_norm = -math.log(m) - 0.5 * d * math.log(2 * math.pi * self.bandwidth**2)

    def to(self, dtype=None, device=None) -> "DataProposal":
        """Move the centres and the box (in place); returns ``self``."""
        if device is not None:
            device = check_device(device)
        self.centers = self.centers.to(dtype=dtype, device=device)
        self.mid, self.half = self.mid.to(dtype=dtype, device=device), self.half.to(dtype=dtype, device=device)
        return self

    def _match(self, ref: torch.Tensor) -> None:
        if self.centers.dtype != ref.dtype or self.centers.device != ref.device:
            self.to(ref.dtype, ref.device)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` proposals ``[n, *event]``."""
        n = check_positive_int(n, "n")
        dev = generator.device
        m, d = self.centers.shape
        pick = torch.randint(0, m, (n,), generator=generator, device=dev).to(self.centers.device)
        kde = self.centers[pick] + self.bandwidth * torch.randn(
            (n, d), generator=generator, device=dev, dtype=self.centers.dtype).to(self.centers.device)
        box = self.mid + self.half * (2 * torch.rand((n, d), generator=generator, device=dev,
                                                     dtype=self.centers.dtype).to(self.centers.device) - 1)
        use_box = torch.rand((n,), generator=generator, device=dev).to(self.centers.device) < self.uniform_weight
        return torch.where(use_box.unsqueeze(-1), box, kde).reshape((n,) + tuple(self.event_shape))

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """``log q(y)``, ``[n, *event] -> [n]`` (``-inf`` outside the box and far from every centre); ``y``
        floating point and finite."""
        if not isinstance(y, torch.Tensor) or not y.is_floating_point():
            raise TypeError(f"y must be a floating-point tensor [n, *event_shape], got "
                            f"{y.dtype if isinstance(y, torch.Tensor) else type(y).__name__}")
        if y.dim() < 1 or tuple(y.shape[1:]) != tuple(self.event_shape):
            raise ValueError(f"y must have shape [n, *event_shape] = [n, {', '.join(map(str, self.event_shape))}], "
                             f"got {tuple(y.shape)}")
        check_finite(y.detach(), "y")
        flat = y.reshape(y.shape[0], self.centers.shape[1])
        self._match(flat)
        d2 = torch.cat([torch.cdist(chunk, self.centers).pow(2) for chunk in flat.split(4096)]) \
            if flat.shape[0] else flat.new_zeros(0, self.centers.shape[0])
        log_kde = torch.logsumexp(-0.5 * d2 / self.bandwidth**2, -1) + self._log_kde_norm
        if self.uniform_weight == 0:
            return log_kde
        inside = ((flat - self.mid).abs() <= self.half).all(-1)
        log_box = torch.where(inside, torch.full_like(log_kde, self._log_box), torch.full_like(log_kde, -math.inf))
        return torch.logaddexp(log_kde + math.log1p(-self.uniform_weight), log_box + math.log(self.uniform_weight))

    def __repr__(self) -> str:
        return (f"DataProposal(centers={self.centers.shape[0]}, bandwidth={self.bandwidth:.3g}, "
                f"uniform_weight={self.uniform_weight}, box_scale={self.box_scale})")


def independence_jump(energy_fn, y: torch.Tensor, F: torch.Tensor, proposal, beta: float,
                      generator: torch.Generator):
    r"""One independence Metropolis-Hastings step for every chain of ``y`` (see the module docstring).

    :param energy_fn: ``F(y) -> [n]`` (no gradient needed).
    :param y: ``[n, *event]`` current states; ``F``: ``[n]`` their energies (finite).
    :param proposal: an object with ``sample(n, generator)`` and ``log_prob(y)``, e.g. :class:`DataProposal`.
    :param beta: inverse temperature of the target ``exp(-beta F)``.
    :returns: ``(y_new, F_new, accepted [n] bool)``. A proposal with a NaN or infinite energy is rejected.
    """
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise TypeError(f"beta must be a number, got {type(beta).__name__}")
    check_beta(beta)
    for name, value in (("y", y), ("F", F)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got "
                            f"{value.dtype if isinstance(value, torch.Tensor) else type(value).__name__}")
    n = y.shape[0] if y.dim() else 0
    if n < 1:
        raise ValueError(f"y must hold at least one state [n >= 1, *event_shape], got shape {tuple(y.shape)}")
    if tuple(F.shape) != (n,):
        raise ValueError(f"F must hold the energy of each state of y, shape ({n},), got {tuple(F.shape)}")
    if not bool(torch.isfinite(y).all() & torch.isfinite(F).all()):  # one sync when all is well
        check_finite(y.detach(), "y")
        check_finite(F.detach(), "F")
    y_prop = proposal.sample(n, generator).to(dtype=y.dtype, device=y.device)
    if y_prop.shape != y.shape:
        raise ValueError(f"y must have the shape of the proposal's states [n, *event_shape] = "
                         f"{tuple(y_prop.shape)}, got {tuple(y.shape)}")
    with torch.no_grad():
        F_prop = energy_fn(y_prop)
        if not isinstance(F_prop, torch.Tensor) or tuple(F_prop.shape) != (n,):
            raise ValueError(f"energy_fn must return one energy per state, shape ({n},), got "
                             f"{tuple(F_prop.shape) if isinstance(F_prop, torch.Tensor) else type(F_prop).__name__}")
        log_ratio = beta * (F - F_prop) + proposal.log_prob(y) - proposal.log_prob(y_prop)
    log_u = torch.rand((n,), generator=generator, device=generator.device, dtype=y.dtype).to(y.device).log()
    accept = (log_u < log_ratio) & torch.isfinite(F_prop)
    shape = (n,) + (1,) * (y.dim() - 1)
    return (torch.where(accept.reshape(shape), y_prop, y), torch.where(accept, F_prop, F), accept)
