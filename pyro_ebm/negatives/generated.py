"""Negatives made from the data or by a trained network: corruption (row 10) and a generator (row 9)."""

from __future__ import annotations

import copy
import math
import numbers
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from .._validation import check_finite, check_positive_int, check_real
from ..energy import _as_size, check_energy_output
from .base import Negatives, Seed, _call, _flatten, _repeat

__all__ = ["Corruption", "LearnedGenerator"]


# ------------------------------------------------------------------------------------------------------
# 10: noise / corruption


class Corruption(Negatives):
    r"""Corrupted data: :math:`\hat y = y + \sigma\,\epsilon`, :math:`\epsilon \sim N(0, I)`, or ``corrupt(y)``.

    Row 10 of the loss zoo (denoising: :math:`\hat y = N(y)`). With a user function
    ``corrupt(y, generator) -> y_hat`` (``y`` ``[M, *event]``, same shape out) any corruption (masking,
    swapping, blurring) can be used; it must draw its random numbers from ``generator`` for the results
    to be reproducible.

    :param sigma: noise standard deviation ``> 0`` (ignored when ``corrupt`` is given).
    :param n_neg: corrupted copies per example.
    :param corrupt: optional ``corrupt(y, generator)``.
    :param seed: int or ``torch.Generator``.

    Example::

        >>> import torch
        >>> neg = Corruption(sigma=0.5, n_neg=2, seed=0)
        >>> y_hat = neg(lambda y: y.sum(-1), torch.zeros(1000, 3))
        >>> y_hat.shape, round(y_hat.std().item(), 1)
        (torch.Size([2, 1000, 3]), 0.5)
    """

    def __init__(self, sigma: float = 0.1, *, n_neg: int = 1, corrupt: Optional[Callable] = None, seed: Seed = None):
        super().__init__(seed)
        if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not sigma > 0 or math.isinf(sigma):
            raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
        if corrupt is not None and not callable(corrupt):
            raise TypeError("corrupt must be a callable corrupt(y, generator) -> y_hat")
        self.sigma = float(sigma)
        self.n_neg = check_positive_int(n_neg, "n_neg")
        self.corrupt = corrupt

    def __call__(self, energy, y, x=None):
        E, batch, y_flat, _ = _flatten(energy, y, x)
        gen = self.rng(y.device)
        y_rep = _repeat(y_flat, self.n_neg)
        if self.corrupt is None:
            out = y_rep + self.sigma * torch.randn(y_rep.shape, generator=gen, dtype=y.dtype, device=y.device)
        else:
            out = self.corrupt(y_rep, gen)
            if not isinstance(out, torch.Tensor) or out.shape != y_rep.shape:
                raise ValueError(
                    f"corrupt(y, generator) must return a tensor of y's shape {tuple(y_rep.shape)}, got "
                    f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}"
                )
        return out.detach().reshape((self.n_neg,) + tuple(batch) + tuple(E.event_shape))

    def __repr__(self) -> str:
        return f"Corruption(sigma={self.sigma}, n_neg={self.n_neg})" if self.corrupt is None else "Corruption(corrupt)"


# ------------------------------------------------------------------------------------------------------
# 9: a trained generator


class LearnedGenerator(Negatives):
    r"""GAN-style negatives :math:`\hat y = g_u(z)`, :math:`z \sim N(0, I)`, with ``g`` trained to lower their energy.

    Row 9 of the loss zoo. At every call the generator takes one optimizer step on
    :math:`\frac1M \sum_i F(x_i, g_u(z_i))` (the energy's parameters receive no gradient from it), then
    returns fresh samples. The energy, trained with a contrastive loss, pushes up where the generator puts
    its samples; the generator chases the low-energy regions. Keep it simple: nothing here prevents the
    generator from collapsing onto a mode (add an entropy or diversity term in your own generator if
    needed).

    :param generator: an ``nn.Module`` mapping ``z`` ``[M, *latent_shape]`` (and ``x`` ``[M, *x_event]``
        when conditioning is given) to ``[M, *event_shape]``.
    :param latent_shape: shape of one ``z``.
    :param n_neg: samples per example.
    :param optimizer: optimizer over the generator's parameters (default Adam with ``lr``).
    :param lr: learning rate of the default optimizer.
    :param seed: int or ``torch.Generator`` (draws of ``z``).

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> F = as_energy(lambda y: ((y - 3.0) ** 2).sum(-1), event_shape=(2,))
        >>> neg = LearnedGenerator(torch.nn.Linear(4, 2), latent_shape=(4,), lr=0.05, seed=0)
        >>> neg(F, torch.zeros(16, 2)).shape
        torch.Size([1, 16, 2])
    """

    def __init__(
        self,
        generator: nn.Module,
        latent_shape: Sequence[int],
        *,
        n_neg: int = 1,
        optimizer: Optional[torch.optim.Optimizer] = None,
        lr: float = 1e-3,
        seed: Seed = None,
    ):
        super().__init__(seed)
        if not isinstance(generator, nn.Module):
            raise TypeError(f"generator must be an nn.Module, got {type(generator).__name__}")
        self.net = generator
        self.latent_shape = _as_size(latent_shape, "latent_shape")
        self.n_neg = check_positive_int(n_neg, "n_neg")
        if optimizer is None:
            lr = check_real(lr, "lr", minimum=0, strict=True)
            optimizer = torch.optim.Adam(generator.parameters(), lr=lr)
        self.optimizer = optimizer

    def _sample(self, M, x_rep, gen, dtype, device, event_shape):
        z = torch.randn((M,) + tuple(self.latent_shape), generator=gen, dtype=dtype, device=device)
        try:
            out = self.net(z) if x_rep is None else self.net(z, x_rep)
        except RuntimeError as exc:
            with_x = "" if x_rep is None else f" and x of shape {tuple(x_rep.shape)}"
            raise ValueError(
                f"generator failed on z of shape [M, *latent_shape] = {tuple(z.shape)}{with_x}: give the "
                f"latent_shape its input layer takes ({str(exc).splitlines()[0]})"
            ) from exc
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (M,) + tuple(event_shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"generator must map z [M, *latent_shape] to [M, *event_shape] = {(M,) + tuple(event_shape)}, "
                f"got {got}"
            )
        check_finite(out.detach(), "generator output")
        return out

    def __call__(self, energy, y, x=None):
        E, batch, y_flat, x_flat = _flatten(energy, y, x)
        M = self.n_neg * y_flat.shape[0]
        shape = (self.n_neg,) + tuple(batch) + tuple(E.event_shape)
        if M == 0:  # an empty batch: nothing to train on, no negatives
            self.diagnostics = {}
            return torch.zeros(shape, dtype=y.dtype, device=y.device)
        x_rep = _repeat(x_flat, self.n_neg)
        gen = self.rng(y.device)
        params = [p for p in self.net.parameters() if p.requires_grad]
        with torch.enable_grad():
            fake = self._sample(M, x_rep, gen, y.dtype, y.device, E.event_shape)
            values = _call(E, fake, x_rep)
            check_energy_output(values, (M,), name=E._label())
            g_loss = values.mean()
            grads = torch.autograd.grad(g_loss, params)  # only the generator's parameters
        for p, g in zip(params, grads):
            p.grad = g
        self.optimizer.step()
        for p in params:
            p.grad = None
        with torch.no_grad():
            out = self._sample(M, x_rep, gen, y.dtype, y.device, E.event_shape)
        self.diagnostics = {"generator_energy": float(g_loss.detach())}
        return out.detach().reshape(shape)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["generator"] = {k: v.clone() for k, v in self.net.state_dict().items()}
        state["optimizer"] = copy.deepcopy(self.optimizer.state_dict())  # Adam updates its state in place
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "generator" in state:
            self.net.load_state_dict(state["generator"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))

    def __repr__(self) -> str:
        return f"LearnedGenerator({type(self.net).__name__}, latent_shape={tuple(self.latent_shape)})"
