"""The interface every negative generator follows, and the shape helpers they share."""

from __future__ import annotations

import math
from typing import Dict, Optional, Union

import torch

from .._rng import check_seed, make_generator
from .._validation import check_device, check_finite, check_positive_int
from ..energy import Energy, as_energy, batch_shape_of, check_energy_output

__all__ = ["Negatives", "negative_energies"]

Seed = Union[int, torch.Generator, None]


# ------------------------------------------------------------------------------------------------------
# shapes


def _energy_for(energy, y: torch.Tensor) -> Energy:
    """``energy`` as an :class:`Energy`; a plain callable is taken to have one batch dimension."""
    if isinstance(energy, Energy):
        return energy
    if not callable(energy):
        raise TypeError(f"energy must be an Energy or a callable F(y[, x]), got {type(energy).__name__}")
    if not isinstance(y, torch.Tensor) or y.dim() < 1:
        raise ValueError("y must be a tensor [batch, *event_shape] when energy is a plain callable")
    return as_energy(energy, event_shape=y.shape[1:])


def _check_points(value, name: str) -> None:
    """``value`` must be a floating-point tensor of finite entries (examples, conditioning, answers)."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        got = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
        raise TypeError(f"{name} must be a floating-point tensor, got {got}")
    check_finite(value.detach(), name)


def _flatten(energy, y, x):
    """Returns ``(energy, batch, y_flat [B, *event], x_flat [B, *x_event] or None)``; ``y`` (and a
    floating ``x``) must be finite."""
    _check_points(y, "y")
    E = _energy_for(energy, y)
    batch = batch_shape_of(y, E.event_shape, "y")
    B = int(math.prod(batch))
    y_flat = y.detach().reshape((B,) + tuple(E.event_shape))
    x_flat = None
    if x is not None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor [*batch, *x_event], got {type(x).__name__}")
        if x.is_floating_point():
            check_finite(x.detach(), "x")
        nb = len(batch)
        if x.dim() < nb or tuple(x.shape[:nb]) != tuple(batch):
            raise ValueError(
                f"x must have the batch shape of y {tuple(batch)} as its leading dimensions, "
                f"got shape {tuple(x.shape)}"
            )
        x_flat = x.detach().reshape((B,) + tuple(x.shape[nb:]))
    return E, batch, y_flat, x_flat


def _repeat(t: Optional[torch.Tensor], n: int) -> Optional[torch.Tensor]:
    """``[B, ...] -> [n * B, ...]``, example-minor (row ``j * B + b`` is example ``b``)."""
    if t is None or n == 1:
        return t
    return t.repeat((n,) + (1,) * (t.dim() - 1))


def _call(E: Energy, y: torch.Tensor, x: Optional[torch.Tensor]) -> torch.Tensor:
    return E(y) if x is None else E(y, x)


def negative_energies(energy, y_hat: torch.Tensor, x: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Energies of contrastive answers, laid out for the losses: ``[n_neg, *batch, *event] -> [*batch, n_neg]``.

    The energy is called once on the flattened answers ``[n_neg * B, *event]`` (with ``x`` repeated to
    ``[n_neg * B, *x_event]``), so gradients flow into its parameters.

    :param energy: an :class:`~pyro_ebm.Energy` (or a callable; then ``y_hat`` is ``[n_neg, batch, *event]``).
    :param y_hat: contrastive answers ``[n_neg, *batch, *event]`` from a :class:`Negatives` (floating point,
        finite).
    :param x: optional conditioning ``[*batch, *x_event]``.
    :returns: ``[*batch, n_neg]``.

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy
        >>> F = as_energy(lambda y: (y ** 2).sum(-1), event_shape=(2,))
        >>> negative_energies(F, torch.ones(3, 5, 2)).shape
        torch.Size([5, 3])
    """
    if not isinstance(y_hat, torch.Tensor) or y_hat.dim() < 1:
        raise TypeError("y_hat must be a tensor [n_neg, *batch, *event_shape]")
    _check_points(y_hat, "y_hat")
    if x is not None and not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor [*batch, *x_event], got {type(x).__name__}")
    E = energy if isinstance(energy, Energy) else as_energy(energy, event_shape=y_hat.shape[2:])
    full = batch_shape_of(y_hat, E.event_shape, "y_hat")
    if len(full) < 1:
        raise ValueError(
            f"y_hat must have a leading n_neg dimension: [n_neg, *batch, *event_shape], got {tuple(y_hat.shape)}"
        )
    n, batch = full[0], full[1:]
    B = int(math.prod(batch))
    y_flat = y_hat.reshape((n * B,) + tuple(E.event_shape))
    x_flat = None
    if x is not None:
        nb = len(batch)
        if x.dim() < nb or tuple(x.shape[:nb]) != tuple(batch):
            raise ValueError(
                f"x must have the batch shape of the negatives {tuple(batch)} as its leading dimensions "
                f"(y_hat is [n_neg, *batch, *event]), got shape {tuple(x.shape)}"
            )
        x_flat = _repeat(x.reshape((B,) + tuple(x.shape[nb:])), n)
    out = _call(E, y_flat, x_flat)
    check_energy_output(out, (n * B,), name=E._label())
    return out.reshape((n,) + tuple(batch)).movedim(0, -1)


def _probe_args(energy, num_chains, num_draws, seed, data, thin, dtype, device):
    """Checked arguments of a ``probe``: ``(energy, chains, draws, thin, generator, dtype, device)``."""
    if data is not None and (not isinstance(data, torch.Tensor) or not data.is_floating_point()):
        raise TypeError("data must be a floating-point tensor [N, *event_shape] or None")
    if not isinstance(energy, Energy):
        if not callable(energy):
            raise TypeError(f"energy must be an Energy or a callable F(y), got {type(energy).__name__}")
        if data is None:
            raise ValueError("a plain-callable energy needs data [N, *event_shape] (for its event shape)")
        energy = as_energy(energy, event_shape=data.shape[1:])
    if data is not None:
        if len(batch_shape_of(data, energy.event_shape, "data")) != 1 or data.shape[0] < 1:
            raise ValueError(f"data must have shape [N >= 1, *event_shape] = [N, "
                             f"{', '.join(map(str, energy.event_shape))}], got {tuple(data.shape)}")
        check_finite(data.detach(), "data")
    chains = check_positive_int(num_chains, "num_chains", minimum=2)
    draws = check_positive_int(num_draws, "num_draws", minimum=4)
    thin = None if thin is None else check_positive_int(thin, "thin")
    ref = data if data is not None else next(iter(energy.parameters()), None)
    if dtype is None:
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    if device is None:
        device = ref.device if ref is not None else torch.device("cpu")
    device = check_device(device)
    return energy, chains, draws, thin, make_generator(seed, device), dtype, device


# ------------------------------------------------------------------------------------------------------
# the interface


class Negatives:
    """Base class of the contrastive-answer generators.

    Subclasses implement :meth:`__call__`; those with state override :meth:`state_dict` and
    :meth:`load_state_dict`. Any callable ``(energy, y, x) -> y_hat`` with the same shapes can be used in
    :func:`pyro_ebm.train.fit` as well.
    """

    #: statistics of the last call (e.g. the sampler's mean acceptance rate); empty when there are none
    diagnostics: Dict[str, float]

    def __init__(self, seed: Seed = None):
        self.seed = check_seed(seed)
        self._gen: Optional[torch.Generator] = seed if isinstance(seed, torch.Generator) else None
        self._pending_rng = None
        self.diagnostics = {}

    def __call__(self, energy, y: torch.Tensor, x: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Contrastive answers for the examples ``y`` (``[*batch, *event]``) given ``x``.

        :returns: ``[n_neg, *batch, *event]``, detached.
        """
        raise NotImplementedError  # pragma: no cover

    def probe(self, energy, num_chains: int = 8, num_draws: int = 200, *, seed=None, data=None, thin=None,
              dtype=None, device=None):
        """A short multi-chain run of this generator's own sampler on ``energy``, for R-hat and ESS.

        Generators that run MCMC override this (:class:`~pyro_ebm.ml.SamplerDiagnostics` calls it). Here,
        in the base class, a subclass that keeps its draws in ``last_samples`` (a
        :class:`~pyro_ebm.mcmc.Samples` of ``>= 2`` chains and ``>= 4`` draws) gets those back; the other
        generators have no chains to probe and raise ``TypeError``. A probe draws its random numbers from
        ``seed`` only: the generator's own state (RNG, buffer, last draws) is left as it is, so probing
        never changes the negatives of later calls.

        :param energy: the (current) energy; a plain callable needs ``data`` for its event shape.
        :param num_chains: chains of the probe (``>= 2``).
        :param num_draws: draws kept per chain (``>= 4``).
        :param seed: int or ``torch.Generator`` of the probe.
        :param data: the training data ``[N, *event]`` (chains of contrastive divergence start there).
        :param thin: transitions per kept draw (persistent and CD probes).
        :param dtype, device: of the chains (default: those of ``data``, else of the energy's parameters).
        :returns: :class:`~pyro_ebm.mcmc.Samples` with draws ``[num_chains, num_draws, *event]``.
        """
        _probe_args(energy, num_chains, num_draws, seed, data, thin, dtype, device)
        last = getattr(self, "last_samples", None)
        if last is not None and isinstance(getattr(last, "draws", None), torch.Tensor) \
                and last.num_draws >= 4 and last.num_chains >= 2:
            return last
        raise TypeError(
            f"cannot probe a {type(self).__name__}: it runs no sampler (give SamplerDiagnostics a "
            "sampler=... instead)"
        )

    # -- random numbers ------------------------------------------------------------------------------
    def rng(self, device) -> torch.Generator:
        """The generator's own ``torch.Generator`` on ``device`` (made from ``seed`` on first use)."""
        device = check_device(device)
        if self._gen is None or self._gen.device.type != device.type:
            if isinstance(self.seed, torch.Generator):
                raise ValueError(
                    f"seed is a torch.Generator on {self.seed.device}, but the data are on {device}; "
                    "give a generator on the data's device or an int seed"
                )
            gen = make_generator(self.seed, device)
            if self._pending_rng is not None:  # restored by load_state_dict before the first call
                gen.set_state(self._pending_rng)
                self._pending_rng = None
            self._gen = gen
        return self._gen

    def state_dict(self) -> dict:
        """Everything needed to continue exactly where this generator is (here: its RNG state)."""
        if self._gen is not None:
            return {"rng": self._gen.get_state()}
        return {"rng": self._pending_rng}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`."""
        rng = state.get("rng")
        if rng is None:
            return
        if self._gen is not None:
            self._gen.set_state(rng)
        else:
            self._pending_rng = rng

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
