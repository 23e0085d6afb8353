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
from .._validation import check_beta, check_finite, check_positive_int, check_real
from ..energy import Energy, LatentEnergy, as_energy, check_energy_output
from ..inference import _check_z_values, argmin_latent, free_energy, free_energy_min
from ._common import all_finite, check_state, joint_batch
from ._data import check_data

__all__ = ["LatentGenerativeEBM", "low_energy_volume"]


def _squared_error(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((y_hat - y) ** 2).sum(-1)


def _check_x(x) -> None:
    """Conditioning ``x`` is whatever the predictor takes; a floating tensor must be finite."""
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        check_finite(x.detach(), "x")


def _check_output(value, name: str) -> None:
    """A floating tensor returned by ``name`` (the predictor, the decoder) must be finite."""
    if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value.detach()).all()):
        raise ValueError(f"{name} returned NaN or inf (at finite inputs)")


def _check_latents(value: torch.Tensor, name: str) -> None:
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    check_finite(value.detach(), name)


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
            _check_latents(z_values, "z_values")
        if z_init is not None:
            if not isinstance(z_init, torch.Tensor) or tuple(z_init.shape[1:]) != tuple(self.latent_shape) \
                    or z_init.dim() != 1 + len(self.latent_shape) or z_init.shape[0] == 0:
                raise ValueError(f"z_init must have shape [R, *latent_shape] = [R, {tuple(self.latent_shape)}] with "
                                 f"R >= 1, got {getattr(z_init, 'shape', type(z_init).__name__)}")
            _check_latents(z_init, "z_init")
        self.z_values, self.z_init = z_values, z_init
        self.z_measure = check_real(z_measure, "z_measure", minimum=0.0, strict=True)
        self.refine_steps = check_positive_int(refine_steps, "refine_steps", minimum=0)

    def predict(self, x):
        """``Pred(x)`` (``None`` without ``x``)."""
        if x is None:
            return None
        _check_x(x)
        h = x if self.predictor is None else self.predictor(x)
        _check_output(h, "predictor")
        return h

    def generate(self, z: torch.Tensor, x=None) -> torch.Tensor:
        """The prediction ``Dec(Pred(x), z)`` ``[*batch, *event_shape]`` for ``z`` ``[*batch, *latent_shape]``:
        sweeping ``z`` traces every ``y`` compatible with ``x``."""
        z = check_state(z, "z", self.latent_shape)
        check_finite(z.detach(), "z")
        y_hat = self._decode(self.predict(x), z)
        _check_output(y_hat, "decoder")
        return y_hat

    def _decode(self, h, z):
        try:
            y_hat = self.decoder(h, z)
        except RuntimeError as exc:
            hs = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise ValueError(f"decoder failed on Pred(x) {hs} and z {tuple(z.shape)}: the batch shapes of x and z "
                             f"must broadcast ({str(exc).splitlines()[0]})") from exc
        k = len(self.event_shape)
        if not isinstance(y_hat, torch.Tensor) or y_hat.dim() < k or y_hat.shape[y_hat.dim() - k:] != self.event_shape:
            raise ValueError(f"decoder must return a tensor [*batch, *event_shape] = [*batch, "
                             f"{', '.join(map(str, self.event_shape))}], got "
                             f"{tuple(y_hat.shape) if isinstance(y_hat, torch.Tensor) else type(y_hat).__name__}")
        return y_hat

    def forward(self, y, z, x=None):
        k = len(self.event_shape)
        y = check_state(y, "y", self.event_shape)
        z = check_state(z, "z", self.latent_shape)
        joint_batch(y, z, self.event_shape, self.latent_shape)
        h = x if x is None or self.predictor is None else self.predictor(x)
        y_hat = self._decode(h, z)
        try:
            batch = torch.broadcast_shapes(y_hat.shape[: y_hat.dim() - k], y.shape[: y.dim() - k])
        except RuntimeError:
            raise ValueError(f"the prediction Dec(Pred(x), z) of shape {tuple(y_hat.shape)} does not broadcast with "
                             f"y {tuple(y.shape)}: check the shapes of x and z and what the predictor and the "
                             "decoder return") from None
        c = (self.cost or _squared_error)(y_hat, y)
        if not isinstance(c, torch.Tensor) or tuple(c.shape) != tuple(batch):
            raise ValueError(f"cost must return one value per example, shape {tuple(batch)} (the batch of y and of "
                             f"the prediction, before event_shape {tuple(self.event_shape)}), got "
                             f"{tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__}")
        e = c
        r = None
        if self.regularizer is not None:
            r = self.regularizer(z)
            zb = tuple(z.shape[: z.dim() - len(self.latent_shape)])
            if not isinstance(r, torch.Tensor) or tuple(r.shape) != zb:
                raise ValueError(f"regularizer must return one value per latent, shape {zb}, got "
                                 f"{tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__}")
            e = e + r
        if not all_finite(e):  # find the culprit; +inf from cost/regularizer is allowed
            for name, value in (("y", y), ("z", z), ("x", x)):
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    check_finite(value.detach(), name)
            _check_output(h if x is not None else None, "predictor")
            _check_output(y_hat, "decoder")
            for name, value in (("cost", c), ("regularizer", r)):
                if value is not None:
                    check_finite(value.detach(), f"the output of {name}", allow_pos_inf=True)
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
        beta = check_beta(beta, allow_inf=True)
        if x is not None:
            _check_x(x)
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
        e_data = check_energy_output(energy(data), data.shape[:1], name="energy", check_finite_values=False).detach()
        check_finite(e_data, "energy(data)")
        threshold = torch.quantile(e_data.to(data.dtype), quantile)
        e = check_energy_output(energy(pts.to(data.device)), pts.shape[:1], name="energy").detach()
    return float((e <= threshold + atol).to(data.dtype).mean())
