r"""The lecture's latent-variable generative EBM, and the volume diagnostic of regularized models.

.. math:: F(x, y) = \min_z \big[C(\mathrm{Dec}(\mathrm{Pred}(x), z), y) + R(z)\big]

The predictor reads ``x``, the decoder turns its output and the latent ``z`` into a prediction, the cost
compares the prediction with ``y`` and the regularizer limits the information capacity of ``z``. Training
by pushing down on ``F`` at the data works when the set of predictions ``{Dec(Pred(x), z)}`` is small: the
latent's dimension, its regularizer or its quantisation bounds the volume of low energy
(:func:`low_energy_volume` measures it).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from .._rng import make_generator
from .._validation import check_beta, check_positive_int, check_real
from ..energy import Energy, LatentEnergy, as_energy
from ..inference import _check_z_values, argmin_latent, free_energy, free_energy_min
from ._data import check_data

__all__ = ["LatentGenerativeEBM", "low_energy_volume"]


def _squared_error(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((y_hat - y) ** 2).sum(-1)


class LatentGenerativeEBM(LatentEnergy):
    r"""``E(y, z, x) = C(Dec(Pred(x), z), y) + R(z)`` with pluggable parts.

    :param decoder: ``decoder(h, z) -> y_hat`` with ``h = predictor(x)`` (``None`` without ``x``); ``y_hat``
        broadcasts against ``y`` (``[*batch, *event_shape]``).
    :param event_shape: shape of one ``y``.
    :param latent_shape: shape of one ``z``.
    :param predictor: ``predictor(x) -> h`` (default: identity).
    :param cost: ``cost(y_hat, y) -> [*batch]`` (default: squared Euclidean distance over the last dim).
    :param regularizer: ``regularizer(z) -> [*batch]`` (default: none).
    :param z_values: optional grid of latent values ``[K, *latent_shape]``: free energies are then exact sums
        over it (:func:`pyro_ebm.free_energy`), with ``z_measure`` the volume of each grid cell so that the
        finite-``beta`` free energy approximates the integral over ``z``
        (:math:`F_\beta = -\frac1\beta\log\sum_k e^{-\beta E(y, z_k)} \Delta z`). Without a grid, only
        ``beta = inf`` is available (gradient descent over ``z`` from ``z_init``).
    :param z_measure: the volume ``Delta z`` of a grid cell (default 1, the counting measure).
    :param z_init: restarts ``[R, *latent_shape]`` for the continuous minimisation over ``z``.
    :param refine_steps: gradient steps polishing the grid minimiser at ``beta = inf`` (0: the grid's
        minimum is the answer).

    Example (a circle of radius ``x``, ``z`` the angle)::

        >>> import math, torch
        >>> from pyro_ebm.models import LatentGenerativeEBM
        >>> dec = lambda h, z: h * torch.cat([torch.cos(z), torch.sin(z)], -1)
        >>> grid = torch.linspace(0, 2 * math.pi, 65)[:-1].unsqueeze(-1)
        >>> m = LatentGenerativeEBM(dec, event_shape=(2,), latent_shape=(1,), z_values=grid, refine_steps=200)
        >>> y, x = torch.tensor([[0.0, 3.0]]), torch.tensor([[2.0]])
        >>> m.free_energy(y, x, beta=float("inf")).round(decimals=4)  # (3 - 2)^2
        tensor([1.])
    """

    def __init__(
        self,
        decoder: Callable,
        *,
        event_shape: Sequence[int],
        latent_shape: Sequence[int],
        predictor: Optional[Callable] = None,
        cost: Optional[Callable] = None,
        regularizer: Optional[Callable] = None,
        z_values: Optional[torch.Tensor] = None,
        z_measure: float = 1.0,
        z_init: Optional[torch.Tensor] = None,
        refine_steps: int = 0,
    ):
        super().__init__(event_shape=event_shape, latent_shape=latent_shape)
        for name, fn in (("decoder", decoder), ("predictor", predictor), ("cost", cost), ("regularizer", regularizer)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
            if isinstance(fn, nn.Module):
                self.add_module(name, fn)
            else:
                object.__setattr__(self, name, fn)
        if z_values is not None:
            _check_z_values(self, z_values)
        if z_init is not None:
            if not isinstance(z_init, torch.Tensor) or tuple(z_init.shape[1:]) != tuple(self.latent_shape) \
                    or z_init.dim() != 1 + len(self.latent_shape):
                raise ValueError(f"z_init must have shape [R, *latent_shape] = [R, {tuple(self.latent_shape)}], "
                                 f"got {getattr(z_init, 'shape', type(z_init).__name__)}")
        self.z_values, self.z_init = z_values, z_init
        self.z_measure = check_real(z_measure, "z_measure", minimum=0.0, strict=True)
        self.refine_steps = check_positive_int(refine_steps, "refine_steps", minimum=0)

    def predict(self, x):
        """``Pred(x)`` (``None`` without ``x``)."""
        if x is None:
            return None
        return x if self.predictor is None else self.predictor(x)

    def generate(self, z: torch.Tensor, x=None) -> torch.Tensor:
        """The prediction ``Dec(Pred(x), z)``: sweeping ``z`` traces every ``y`` compatible with ``x``."""
        return self.decoder(self.predict(x), z)

    def forward(self, y, z, x=None):
        y_hat = self.generate(z, x)
        e = (self.cost or _squared_error)(y_hat, y)
        if self.regularizer is not None:
            e = e + self.regularizer(z)
        return e

    def _minimize(self, y, x):
        if self.z_values is not None:
            z, e = argmin_latent(self, y, self.z_values, x)
            if self.refine_steps == 0:
                return e, z
            z_init = z.unsqueeze(0)
        elif self.z_init is not None:
            z_init = self.z_init
        else:
            raise ValueError("zero-temperature inference needs z_values (a grid) or z_init (restarts)")
        steps = max(self.refine_steps, 1) if self.z_values is not None else max(self.refine_steps, 500)
        return free_energy_min(self, y, z_init, x, steps=steps, lr=0.02)

    def infer(self, y: torch.Tensor, x=None) -> torch.Tensor:
        """``z* = argmin_z E(y, z, x)``, ``[*batch, *latent_shape]`` (detached)."""
        return self._minimize(y, x)[1]

    def free_energy(self, y: torch.Tensor, x=None, beta=1.0) -> torch.Tensor:
        """``F_beta(y, x)`` ``[*batch]``: the grid sum (with ``z_measure``) at finite ``beta``; at ``beta =
        inf``, ``E(y, z*, x)`` (differentiable in the parameters and ``y``)."""
        beta = check_beta(beta, allow_inf=True)
        inf = (isinstance(beta, float) and math.isinf(beta)) or (
            isinstance(beta, torch.Tensor) and bool(torch.isinf(beta).all()))
        if inf:
            return self._minimize(y, x)[0]
        if self.z_values is None:
            raise ValueError("a finite beta needs z_values (a grid over z) to sum over; pass z_values=...")
        f = free_energy(self, y, self.z_values, x, beta)
        if self.z_measure != 1.0:
            f = f - math.log(self.z_measure) / torch.as_tensor(beta, dtype=f.dtype, device=f.device)
        return f

    def energy_of_y(self, x=None, beta=float("inf")) -> Energy:
        """The free energy ``y -> F_beta(y, x)`` as an :class:`~pyro_ebm.Energy` (for argmin_energy, plots, ...)."""
        return as_energy(lambda y: self.free_energy(y, x, beta), event_shape=self.event_shape)


def low_energy_volume(energy, data: torch.Tensor, low, high, *, num_points: int = 10000, quantile: float = 0.5,
                      atol: float = 1e-6, seed=0) -> float:
    r"""The fraction of the box ``[low, high]`` whose energy is below the data's median energy.

    A regularized or architecturally constrained energy keeps this fraction small (low energy only near the
    data); a collapsed energy is flat, and the fraction approaches 1.

    :param energy: callable ``F(y) -> [batch]`` on points ``[N, d]``.
    :param data: ``[M, d]``; the threshold is the ``quantile`` (default the median) of ``F(data)``.
    :param low, high: the box's corners (floats or ``[d]`` tensors).
    :param num_points: uniform points in the box.
    :param atol: energies up to ``atol`` above the threshold count as below it (so that an energy that is flat
        up to rounding has volume 1).
    :param seed: seed or ``torch.Generator``.
    :returns: a float in ``[0, 1]``.

    Example::

        >>> import torch
        >>> data = torch.zeros(10, 2)
        >>> low_energy_volume(lambda y: (y ** 2).sum(-1), data, -1.0, 1.0)  # only the origin is that low
        0.0
        >>> low_energy_volume(lambda y: torch.zeros(y.shape[0]), data, -1.0, 1.0)  # a flat energy
        1.0
    """
    if not callable(energy):
        raise TypeError(f"energy must be callable F(y) -> [batch], got {type(energy).__name__}")
    data = check_data(data, "data")
    d = data.shape[1]
    num_points = check_positive_int(num_points, "num_points")
    quantile = check_real(quantile, "quantile", minimum=0.0)
    atol = check_real(atol, "atol", minimum=0.0)
    if quantile > 1:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    lo = torch.as_tensor(low, dtype=data.dtype).expand(d)
    hi = torch.as_tensor(high, dtype=data.dtype).expand(d)
    if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()) or not bool((hi > lo).all()):
        raise ValueError(f"low and high must be finite with high > low in every dimension, got {lo.tolist()}, {hi.tolist()}")
    gen = make_generator(seed)
    pts = lo + (hi - lo) * torch.rand(num_points, d, generator=gen, dtype=data.dtype)
    with torch.no_grad():
        threshold = torch.quantile(energy(data).detach().to(data.dtype), quantile)
        e = energy(pts.to(data.device)).detach()
    return float((e <= threshold + atol).to(data.dtype).mean())
