r"""One semiring over energies, parameterised by the inverse temperature ``beta``.

Energies are costs (lower is better). The semiring's "plus" combines the energies of alternative paths
into their free energy, and its "times" chains the energies of consecutive pieces of one path:

.. math::

    a \oplus_\beta b = -\frac{1}{\beta} \log\left(e^{-\beta a} + e^{-\beta b}\right), \qquad
    a \otimes b = a + b, \qquad \bar 0 = +\infty, \qquad \bar 1 = 0 .

``beta = inf`` is the tropical (min-sum) semiring, ``a (+) b = min(a, b)``: the zero-temperature limit
in which free energies become minimum energies and dynamic programs become Viterbi.

Every dynamic program of :mod:`pyro_ebm.structured` is written once against this class; the gradient of
a free energy with respect to the energy of a piece is the Gibbs probability that a path uses that piece
(at ``beta = inf``, the indicator of the minimum-energy path).
"""

from __future__ import annotations

import math
import numbers

import torch

from .._validation import check_beta, check_finite

__all__ = ["Semiring"]


def _wide_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype in which a dynamic program over paths of different lengths accumulates: float64.

    The free energy over such paths (soft-DTW alignments with different numbers of cells, graph paths
    with different numbers of arcs) has no exact per-step normalisation: adding a constant to every
    energy of a step changes the relative weight of a path that skips the step. So the accumulated
    log-weights keep their full size, up to ``length * beta * |E|``, and their differences of size 1
    decide the gradient; float32 has a spacing of 1 at 1e7 and cannot hold them. The chain recursions do
    not need this: every labelling visits every step, and they normalise each step exactly.

    Devices without float64 (Apple's MPS) keep the input dtype.
    """
    return x.dtype if x.device.type == "mps" else torch.float64


def _check_energies(x, name: str) -> None:
    """Energies for the energy-level methods: a floating tensor, no NaN, no ``-inf`` (``+inf``: no path)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of energies, got "
                        f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
    check_finite(x.detach(), name, allow_pos_inf=True)


def _check_dim(dim, x: torch.Tensor) -> None:
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"dim must be an integer, got {dim!r}")
    if not -x.dim() <= dim < max(x.dim(), 1):
        raise ValueError(f"dim must be in [{-x.dim()}, {x.dim() - 1}] for x of shape {tuple(x.shape)}, got {dim}")


def _check_broadcast(a_shape, b_shape) -> None:
    try:
        torch.broadcast_shapes(a_shape, b_shape)
    except RuntimeError:
        raise ValueError(f"a and b must broadcast: got shapes {tuple(a_shape)} and {tuple(b_shape)}") from None


class Semiring:
    r"""The beta-soft-min semiring over energies (``beta = inf``: min-sum).

    :param beta: inverse temperature, a positive float; ``float("inf")`` gives the tropical semiring.

    Example::

        >>> import torch
        >>> from pyro_ebm.structured import Semiring
        >>> x = torch.tensor([1.0, 2.0, 3.0])
        >>> print(round(Semiring(1.0).sum(x, 0).item(), 4))  # -log(e^-1 + e^-2 + e^-3)
        0.5924
        >>> Semiring(float("inf")).sum(x, 0)
        tensor(1.)
        >>> a = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
        >>> Semiring(float("inf")).matmul(a, a)  # min_k a[i, k] + a[k, j]
        tensor([[0., 1.],
                [2., 0.]])
    """

    def __init__(self, beta=1.0):
        if isinstance(beta, torch.Tensor):
            if beta.numel() != 1:
                raise ValueError(f"beta must be a single number here, got a tensor of shape {tuple(beta.shape)}")
            beta = float(beta.detach())
        self.beta = float(check_beta(beta, allow_inf=True))
        self.tropical = math.isinf(self.beta)

    zero = math.inf  #: the energy of "no path" (identity of plus)
    one = 0.0  #: the energy of the empty path (identity of times)

    # Dynamic programs run in log-weight units ``s = -beta * energy`` (``-energy`` at beta = inf), where the
    # semiring sum is a log-sum-exp (a max at beta = inf): one fused kernel per step instead of five.

    def _to_log(self, x: torch.Tensor) -> torch.Tensor:
        """Energies -> log-weights: ``-beta * x`` (``-x`` at ``beta = inf``)."""
        return -x if self.tropical else x * (-self.beta)

    def _from_log(self, s: torch.Tensor) -> torch.Tensor:
        """Log-weights -> energies (inverse of ``_to_log``)."""
        return (0.0 - s) if self.tropical else (0.0 - s) / self.beta  # 0.0 - s: no negative zeros

    def _log_sum(self, s: torch.Tensor, dim) -> torch.Tensor:
        """Semiring sum in log-weight units over ``dim``: ``logsumexp`` (``amax`` at ``beta = inf``)."""
        return s.amax(dim) if self.tropical else torch.logsumexp(s, dim)

    def _log_plus(self, a: torch.Tensor, b: torch.Tensor, out=None) -> torch.Tensor:
        """Elementwise semiring sum in log-weight units: ``logaddexp`` (``maximum`` at ``beta = inf``)."""
        return torch.maximum(a, b, out=out) if self.tropical else torch.logaddexp(a, b, out=out)

    def _log_times(self, s: torch.Tensor, x: torch.Tensor, out=None) -> torch.Tensor:
        """Log-weights ``s`` times (in the semiring) energies ``x``: ``s + to_log(x)``, one fused kernel."""
        return torch.add(s, x, alpha=-1.0 if self.tropical else -self.beta, out=out)

    def sum(self, x: torch.Tensor, dim) -> torch.Tensor:
        r"""The semiring sum (soft-min) of energies ``x`` over ``dim``: :math:`-\frac1\beta \log\sum e^{-\beta x}`
        (``+inf`` entries are allowed: no path)."""
        _check_energies(x, "x")
        _check_dim(dim, x)
        return self._from_log(self._log_sum(self._to_log(x), dim))

    def plus(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Elementwise semiring sum of two energy tensors (broadcast)."""
        _check_energies(a, "a")
        _check_energies(b, "b")
        _check_broadcast(a.shape, b.shape)
        return self._from_log(self._log_plus(self._to_log(a), self._to_log(b)))

    @staticmethod
    def times(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Semiring product: energies of consecutive pieces add."""
        return a + b

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        r"""Semiring matrix product :math:`c_{ij} = \bigoplus_k a_{ik} \otimes b_{kj}`; shapes ``[..., I, K]``,
        ``[..., K, J]`` -> ``[..., I, J]`` (batch dimensions broadcast)."""
        _check_energies(a, "a")
        _check_energies(b, "b")
        if a.dim() < 2 or b.dim() < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"a and b must have shapes [..., I, K] and [..., K, J], got {tuple(a.shape)} and "
                             f"{tuple(b.shape)}")
        _check_broadcast(a.shape[:-2], b.shape[:-2])
        return self._from_log(self._log_sum(self._to_log(a.unsqueeze(-1) + b.unsqueeze(-3)), -2))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        r"""Gibbs weights :math:`e^{-\beta x}` of energies ``x`` measured from a free energy (finite beta only)."""
        if self.tropical:
            raise ValueError("weights are not defined at beta = inf; use the minimum-energy path instead")
        _check_energies(x, "x")
        return torch.exp(x * (-self.beta))

    def __repr__(self):
        return f"Semiring(beta={self.beta:g})"
