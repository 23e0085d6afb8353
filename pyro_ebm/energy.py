"""Energies: scalar compatibility functions ``F(y)``, ``F(y, x)`` and, with latents, ``E(y, z[, x])``.

Calling convention (the same everywhere in the library): the inferred variable comes first, conditioning
comes last. An energy maps ``y`` of shape ``batch + event_shape`` to a tensor of shape ``batch``; it never
sums over the batch. Conditioning ``x`` (and latent ``z``) broadcast against ``y``'s batch dimensions.

Two ways to get an energy:

* subclass :class:`Energy` (or :class:`LatentEnergy`) and implement ``forward``;
* wrap any callable with :func:`as_energy`.

Example::

    >>> import torch
    >>> from pyro_ebm import as_energy
    >>> F = as_energy(lambda y: 0.5 * (y ** 2).sum(-1), event_shape=(2,))
    >>> F(torch.zeros(5, 2)).shape
    torch.Size([5])
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ._validation import check_finite, surely_finite

__all__ = ["Energy", "LatentEnergy", "as_energy", "check_energy_output", "batch_shape_of"]


def _as_size(shape, name: str) -> torch.Size:
    if isinstance(shape, int):
        shape = (shape,)
    try:
        size = torch.Size(shape)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a tuple of non-negative ints, got {shape!r}") from None
    if any(s < 0 for s in size):
        raise ValueError(f"{name} must be a tuple of non-negative ints, got {tuple(size)}")
    return size


def batch_shape_of(value: torch.Tensor, event_shape: torch.Size, name: str = "y") -> torch.Size:
    """The batch shape of ``value`` given its ``event_shape``; raises if the trailing dims do not match."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    k = len(event_shape)
    if value.dim() < k or tuple(value.shape[value.dim() - k :]) != tuple(event_shape):
        event_shape = _as_size(event_shape, "event_shape")
        raise ValueError(
            f"{name} must have shape batch + event_shape = (..., {', '.join(map(str, event_shape))}), "
            f"got {tuple(value.shape)}"
        )
    return value.shape[: value.dim() - k]


def check_inputs_finite(inputs) -> None:
    """Raise a ``ValueError`` naming the first floating tensor of ``inputs`` (``[(name, value), ...]``) that
    holds NaN or inf. Called when an energy's output is not finite, to blame a bad input rather than the
    energy."""
    for input_name, value in inputs:
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not surely_finite(value):
            check_finite(value, input_name)


def _describe_inputs(inputs, event_shape) -> str:
    shapes = [f"{n} of shape {tuple(v.shape)}" for n, v in inputs if isinstance(v, torch.Tensor)]
    text = f" (evaluated at {', '.join(shapes)}" if shapes else ""
    if event_shape is not None:
        text += ("; " if text else " (") + f"event_shape {tuple(event_shape)}"
    return text + ")" if text else ""


def check_energy_output(
    value,
    batch_shape: Sequence[int],
    *,
    name: str = "energy",
    check_finite_values: bool = True,
    inputs=(),
    event_shape: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """Check that an energy returned a tensor of the batch shape (up to broadcasting with conditioning).

    The output must have exactly ``len(batch_shape)`` dimensions and ``batch_shape`` must broadcast to it
    (conditioning ``x`` may carry a larger batch). With ``check_finite_values`` a NaN or ``-inf`` energy is
    an error that says where; ``+inf`` (zero probability) is allowed.

    :param inputs: ``[(name, tensor), ...]``, what the energy was evaluated at: a shape error gives their
        shapes, and a NaN or ``-inf`` output is blamed on the first of them that holds NaN or inf.
    :param event_shape: the event shape the batch shape was read with (named in a shape error).
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must return a torch.Tensor, got {type(value).__name__}")
    try:
        batch_shape = tuple(torch.Size(batch_shape))
    except (TypeError, ValueError):
        raise TypeError(f"batch_shape must be a tuple of non-negative ints, got {batch_shape!r}") from None
    ok = value.dim() == len(batch_shape)
    if ok and tuple(value.shape) != batch_shape:  # (torch.broadcast_shapes is slow: only when needed)
        try:
            ok = tuple(torch.broadcast_shapes(value.shape, batch_shape)) == tuple(value.shape)
        except RuntimeError:
            ok = False
    if not ok:
        hint = ""
        if value.dim() < len(batch_shape):
            hint = " (did it sum over the batch?)"
        elif value.dim() > len(batch_shape):
            hint = " (did it forget to reduce over the event dimensions?)"
        raise ValueError(
            f"{name} must return one value per batch element, batch_shape {batch_shape}"
            f"{_describe_inputs(inputs, event_shape)}, got shape {tuple(value.shape)}{hint}"
        )
    if not check_finite_values or surely_finite(value):  # the common case: one cheap reduction
        return value
    if bool((torch.isnan(value) | torch.isneginf(value)).any()):
        check_inputs_finite(inputs)
        check_finite(value, f"{name} output", allow_pos_inf=True)
    return value


def _check_energy_call(out, batch, name, inputs, event_shape) -> None:
    """The output checks of :meth:`Energy.energy`: shape, and no NaN/``-inf``; a non-finite output
    (``+inf`` included) is first blamed on a non-finite input."""
    check_energy_output(out, batch, name=name, check_finite_values=False, inputs=inputs, event_shape=event_shape)
    if not surely_finite(out) and not bool(torch.isfinite(out).all()):
        check_inputs_finite(inputs)
        check_finite(out, f"{name} output", allow_pos_inf=True)


_MISMATCH_HINTS = ("size of tensor", "must match the size", "shape", "broadcast", "expected scalar type",
                   "dtype", "expected both", "found at least two devices")
_DTYPE_HINTS = ("expected scalar type", "dtype")


def call_energy(energy, y: torch.Tensor, x=None, z=None, *, names=("y", "x")):
    """Evaluate ``energy(y[, z][, x])``, turning torch's raw shape/dtype mismatch errors into a
    ``ValueError``/``TypeError`` that names the arguments (``names``: how the caller calls ``y`` and ``x``);
    with ``y`` alone, a dtype mismatch against the energy's own tensors is a ``TypeError`` naming ``y``.

    An integer- or bool-valued output is promoted to ``y``'s floating dtype (the default dtype for an
    integer ``y``), so exact enumeration over integer candidates works.
    """
    named = [(names[0], y)] + ([("z", z)] if z is not None else []) + ([(names[1], x)] if x is not None else [])
    try:
        out = energy(*[a for _, a in named])
    except RuntimeError as exc:
        msg = str(exc)
        if len(named) < 2:
            if not any(h in msg for h in _DTYPE_HINTS):
                raise
            # e.g. float64 points fed to a module with float32 parameters
            raise TypeError(
                f"the energy failed on {names[0]} of dtype {y.dtype}: it computes in another dtype (its "
                f"parameters or the tensors it captured); give {names[0]} that dtype ({msg.splitlines()[0]})"
            ) from exc
        if not any(h in msg for h in _MISMATCH_HINTS):
            raise
        shapes = ", ".join(f"{n} {tuple(a.shape)} {a.dtype}" for n, a in named if isinstance(a, torch.Tensor))
        kind = TypeError if ("type" in msg or "dtype" in msg) else ValueError
        raise kind(
            f"the energy failed on {shapes}: the batch dimensions (or dtypes) of "
            f"{' and '.join(n for n, _ in named)} must agree ({msg.splitlines()[0]})"
        ) from exc
    if isinstance(out, torch.Tensor) and not out.is_floating_point() and not out.is_complex():
        dtype = y.dtype if y.is_floating_point() else torch.get_default_dtype()
        out = out.to(dtype)
    return out


class Energy(nn.Module):
    """Base class of energies ``F(y)`` / ``F(y, x)``.

    Subclasses implement :meth:`forward` taking ``y`` of shape ``batch + event_shape`` (and optional
    conditioning ``x``) and returning shape ``batch``. Parameters are ordinary ``nn.Module`` parameters,
    so an energy trains with any torch optimizer.

    :param event_shape: the shape of one ``y``.

    Example::

        >>> import torch
        >>> from pyro_ebm import Energy
        >>> class Quadratic(Energy):
        ...     def __init__(self):
        ...         super().__init__(event_shape=(2,))
        ...         self.center = torch.nn.Parameter(torch.zeros(2))
        ...     def forward(self, y, x=None):
        ...         return 0.5 * ((y - self.center) ** 2).sum(-1)
        >>> Quadratic()(torch.ones(3, 2))
        tensor([1., 1., 1.], grad_fn=<MulBackward0>)
    """

    #: whether ``forward`` takes a latent ``z`` as its second argument
    has_latent = False

    def __init__(self, event_shape: Sequence[int] = ()):
        super().__init__()
        self.event_shape = _as_size(event_shape, "event_shape")

    @property
    def event_dim(self) -> int:
        return len(self.event_shape)

    def forward(self, y: torch.Tensor, x=None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward(y, x=None)")

    def energy(self, y: torch.Tensor, x=None, *, check: bool = True) -> torch.Tensor:
        """Evaluate the energy with the shape (and, with ``check``, finiteness) contract enforced."""
        batch = batch_shape_of(y, self.event_shape, "y")
        out = call_energy(self, y, x)
        if check:
            _check_energy_call(out, batch, self._label(), (("y", y), ("x", x)), self.event_shape)
        return out

    def _label(self) -> str:
        return f"energy {type(self).__name__}"


class LatentEnergy(Energy):
    """Base class of latent-variable energies ``E(y, z)`` / ``E(y, z, x)``.

    ``y`` has shape ``batch + event_shape`` and ``z`` shape ``batch' + latent_shape``; the two batch shapes
    broadcast and the output has the broadcast batch shape. Free energies over ``z`` are computed by
    :func:`pyro_ebm.free_energy` and friends.

    :param event_shape: the shape of one ``y``.
    :param latent_shape: the shape of one ``z``.
    """

    has_latent = True

    def __init__(self, event_shape: Sequence[int] = (), latent_shape: Sequence[int] = ()):
        super().__init__(event_shape)
        self.latent_shape = _as_size(latent_shape, "latent_shape")

    def forward(self, y: torch.Tensor, z: torch.Tensor, x=None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} must implement forward(y, z, x=None)")

    def energy(self, y: torch.Tensor, z: torch.Tensor = None, x=None, *, check: bool = True) -> torch.Tensor:
        """Evaluate ``E(y, z[, x])`` with the shape (and, with ``check``, finiteness) contract enforced."""
        if z is None:
            raise TypeError("a LatentEnergy needs z: call energy(y, z, x)")
        yb = batch_shape_of(y, self.event_shape, "y")
        zb = batch_shape_of(z, self.latent_shape, "z")
        try:
            batch = torch.broadcast_shapes(yb, zb)
        except RuntimeError:
            raise ValueError(
                f"the batch shapes of y {tuple(yb)} and z {tuple(zb)} must broadcast"
            ) from None
        out = call_energy(self, y, x, z)
        if check:
            _check_energy_call(out, batch, self._label(), (("y", y), ("z", z), ("x", x)), self.event_shape)
        return out


class _CallableEnergy(Energy):
    def __init__(self, fn: Callable, event_shape):
        super().__init__(event_shape)
        self.fn = fn
        if isinstance(fn, nn.Module):
            self.add_module("module", fn)

    def forward(self, y, x=None):
        return self.fn(y) if x is None else self.fn(y, x)

    def _label(self) -> str:
        return f"energy {getattr(self.fn, '__name__', type(self.fn).__name__)}"


class _CallableLatentEnergy(LatentEnergy):
    def __init__(self, fn: Callable, event_shape, latent_shape):
        super().__init__(event_shape, latent_shape)
        self.fn = fn
        if isinstance(fn, nn.Module):
            self.add_module("module", fn)

    def forward(self, y, z, x=None):
        return self.fn(y, z) if x is None else self.fn(y, z, x)

    def _label(self) -> str:
        return f"energy {getattr(self.fn, '__name__', type(self.fn).__name__)}"


def as_energy(
    fn: Callable,
    event_shape: Optional[Sequence[int]] = None,
    latent_shape: Optional[Sequence[int]] = None,
) -> Energy:
    """Wrap a callable as an :class:`Energy` (or :class:`LatentEnergy` when ``latent_shape`` is given).

    :param fn: ``fn(y)`` / ``fn(y, x)``, or with latents ``fn(y, z)`` / ``fn(y, z, x)``, returning one
        energy per batch element. An ``nn.Module`` keeps its parameters (they appear in
        ``energy.parameters()``).
    :param event_shape: shape of one ``y``; defaults to ``()`` (scalar ``y``). If ``fn`` is already an
        :class:`Energy` it is returned unchanged, and a given ``event_shape`` must agree with its own.
    :param latent_shape: shape of one ``z``; makes a latent-variable energy.
    :returns: an :class:`Energy`.

    Example::

        >>> import torch
        >>> E = as_energy(lambda y, z: ((y - z) ** 2).sum(-1), event_shape=(2,), latent_shape=(2,))
        >>> E.energy(torch.zeros(4, 2), torch.ones(4, 2))
        tensor([2., 2., 2., 2.])
    """
    if isinstance(fn, Energy):
        if event_shape is not None and _as_size(event_shape, "event_shape") != fn.event_shape:
            raise ValueError(
                f"event_shape {tuple(event_shape)} disagrees with the energy's own {tuple(fn.event_shape)}"
            )
        if latent_shape is not None:
            if not fn.has_latent:
                raise ValueError("latent_shape was given but the energy has no latent variable")
            if _as_size(latent_shape, "latent_shape") != fn.latent_shape:
                raise ValueError(
                    f"latent_shape {tuple(latent_shape)} disagrees with the energy's own "
                    f"{tuple(fn.latent_shape)}"
                )
        return fn
    if not callable(fn):
        raise TypeError(f"fn: the energy must be callable (y[, x]) -> tensor, got {type(fn).__name__}")
    event_shape = () if event_shape is None else event_shape
    if latent_shape is not None:
        return _CallableLatentEnergy(fn, event_shape, latent_shape)
    return _CallableEnergy(fn, event_shape)
