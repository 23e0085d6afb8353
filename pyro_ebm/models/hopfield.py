r"""The Hopfield net (Hopfield 1982): an energy over :math:`\pm 1` units with symmetric weights.

.. math:: E(y) = -\tfrac12 \sum_{ij} y_i w_{ij} y_j, \qquad w_{ij} = w_{ji},\ w_{ii} = 0

(the lecture writes :math:`-\sum_{ij}`, counting each pair twice; the factor only rescales the energy).
Inference is descent by single-unit updates :math:`y_i \leftarrow \operatorname{sign}(h_i)`, with the input
:math:`h_i = \sum_j w_{ij} y_j`: such an update changes the energy by :math:`-\Delta y_i\, h_i = -|\Delta y_i|
\,|h_i| \le 0`, so asynchronous recall never increases it and stops at a fixed point (a local minimum). Learning is the
Hebbian rule :math:`w_{ij} \mathrel{+}= y_i y_j / n`: it "digs holes" at the training patterns, with no
contrastive term pushing anything up, so the net also acquires spurious minima (mixtures of patterns,
negated patterns) and fails beyond about :math:`0.14\,n` random patterns.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .._validation import check_positive_int
from ..energy import Energy
from ..mcmc import make_generator
from ._common import check_binary, check_state, check_units, checked

__all__ = ["Hopfield", "Recall"]

_SPIN = (-1.0, 1.0)


class Recall(NamedTuple):
    """The result of :meth:`Hopfield.recall`.

    :ivar states: the final states ``[*batch, n]`` (fixed points where ``converged``).
    :ivar energy: their energies ``[*batch]``.
    :ivar converged: ``[*batch]`` bool, the state is a fixed point (a full sweep changed nothing).
    :ivar cycled: ``[*batch]`` bool, synchronous updates fell into a 2-cycle (always ``False`` for async).
    :ivar sweeps: number of sweeps run (the largest over the batch).
    """

    states: torch.Tensor
    energy: torch.Tensor
    converged: torch.Tensor
    cycled: torch.Tensor
    sweeps: int


def _check_weight(weight, n: int) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a tensor [{n}, {n}], got {type(weight).__name__}")
    if weight.dim() != 2 or weight.shape[0] != weight.shape[1]:
        raise ValueError(f"weight must be a square matrix [{n}, {n}], got shape {tuple(weight.shape)}")
    if weight.shape[0] != n:
        raise ValueError(f"weight must have shape [{n}, {n}] (n = {n} units), got {tuple(weight.shape)}")
    if not weight.is_floating_point():
        weight = weight.to(torch.get_default_dtype())
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("weight must be finite")
    asym = float((weight - weight.T).abs().max())
    if asym > 1e-6 * (1.0 + float(weight.abs().max())):
        raise ValueError(f"weight must be symmetric (w[i, j] == w[j, i]); its largest asymmetry is {asym:g}")
    if bool((weight.diagonal() != 0).any()):
        raise ValueError("weight must have a zero diagonal (no self-connections)")
    return weight


class Hopfield(Energy):
    r"""A Hopfield net of ``n`` :math:`\pm 1` units; calling it gives :math:`E(y)` ``[*batch]``.

    :param n: number of units.
    :param weight: optional initial weights ``[n, n]``, symmetric with a zero diagonal (default zeros).
    :param dtype: of the weights when ``weight`` is not given.

    Example::

        >>> import torch
        >>> net = Hopfield(6).store(torch.tensor([[1., -1., 1., -1., 1., -1.]]))
        >>> noisy = torch.tensor([[1., 1., 1., -1., 1., -1.]])          # one unit flipped
        >>> net.recall(noisy).states
        tensor([[ 1., -1.,  1., -1.,  1., -1.]])
        >>> bool(net(noisy) > net(net.recall(noisy).states))
        True
    """

    def __init__(self, n: int, weight: Optional[torch.Tensor] = None, *, dtype=None):
        n = check_units(n, "n")
        super().__init__(event_shape=(n,))
        self.n = n
        if weight is None:
            weight = torch.zeros(n, n, dtype=dtype or torch.get_default_dtype())
        self.register_buffer("weight", _check_weight(weight, n).clone())
        self.num_patterns = 0

    def forward(self, y, x=None):
        if x is not None:
            raise TypeError("Hopfield takes no conditioning x")
        y = check_state(y, "y", self.event_shape, like=self.weight)
        return checked(-0.5 * ((y @ self.weight) * y).sum(-1), "the Hopfield energy", [("y", y)])

    def set_weight(self, weight: torch.Tensor) -> "Hopfield":
        """Replace the weights (checked: ``[n, n]``, symmetric, zero diagonal). Returns ``self``."""
        w = _check_weight(weight, self.n)
        self.weight = w.to(dtype=self.weight.dtype, device=self.weight.device).clone()
        return self

    def store(self, patterns) -> "Hopfield":
        r"""Hebbian learning, :math:`w \mathrel{+}= \frac1n \sum_p y^{(p)} y^{(p)\top}` with the diagonal kept 0:
        lower the energy of each pattern (:math:`\partial E / \partial w_{ij} = -y_i y_j`), and push nothing up.

        :param patterns: ``[P, n]`` of :math:`\pm 1` (a tensor or an array); adds to the stored weights.
        :returns: ``self``.
        """
        y = check_binary(patterns, "patterns", self.n, values=_SPIN, min_dim=2, like=self.weight)
        if y.dim() != 2:
            raise ValueError(f"patterns must have shape [P, {self.n}], got {tuple(y.shape)}")
        w = self.weight + y.T @ y / self.n
        w.fill_diagonal_(0.0)
        self.weight = w
        self.num_patterns += y.shape[0]
        return self

    def recall(self, y, *, mode: str = "async", max_sweeps: int = 100, seed=None) -> Recall:
        """Descend the energy from ``y`` ``[*batch, n]`` (:math:`\\pm 1`) to a fixed point.

        * ``"async"`` -- one unit at a time, in a random order per sweep (shared by the batch), each set to
          the sign of its input (a zero input keeps the unit): the energy never increases, and a sweep that
          changes nothing ends at a fixed point.
        * ``"sync"`` -- all units at once, :math:`y \\leftarrow \\operatorname{sign}(W y)`: a fixed point or a
          2-cycle (reported in ``cycled``), and the energy may go up.

        :param max_sweeps: sweeps at most (``>= 1``).
        :param seed: int or ``torch.Generator`` for the async update order.
        :returns: :class:`Recall`.
        """
        y = check_binary(y, "y", self.n, values=_SPIN, like=self.weight).clone()
        max_sweeps = check_positive_int(max_sweeps, "max_sweeps")
        batch = y.shape[:-1]
        y = y.reshape(-1, self.n)
        W = self.weight
        converged = torch.zeros(y.shape[0], dtype=torch.bool, device=y.device)
        cycled = torch.zeros_like(converged)
        sweeps = 0
        if mode == "async":
            gen = make_generator(seed, "cpu")
            for sweeps in range(1, max_sweeps + 1):
                changed = torch.zeros_like(converged)
                for i in torch.randperm(self.n, generator=gen).tolist():
                    field = y @ W[i]  # W is symmetric: row i is column i, contiguous
                    new = torch.sign(field)
                    new = torch.where(new == 0, y[:, i], new)
                    changed |= new != y[:, i]
                    y[:, i] = new
                converged = ~changed
                if bool(converged.all()):
                    break
        elif mode == "sync":
            prev = None
            for sweeps in range(1, max_sweeps + 1):
                field = y @ W
                new = torch.where(field > 0, 1.0, torch.where(field < 0, -1.0, y))
                converged = (new == y).all(-1)
                if prev is not None:
                    cycled = ~converged & (new == prev).all(-1)
                prev, y = y, new
                if bool((converged | cycled).all()):
                    break
        else:
            raise ValueError(f"mode must be 'async' or 'sync', got {mode!r}")
        y = y.reshape(batch + (self.n,))
        return Recall(y, self(y), converged.reshape(batch), cycled.reshape(batch), sweeps)

    def overlap(self, y, patterns) -> torch.Tensor:
        """The overlaps :math:`m = y^\\top y^{(p)} / n` of states ``[*batch, n]`` with ``patterns`` ``[P, n]``,
        ``[*batch, P]`` (1: equal, -1: negated)."""
        y = check_binary(y, "y", self.n, values=_SPIN, like=self.weight)
        p = check_binary(patterns, "patterns", self.n, values=_SPIN, min_dim=2, like=self.weight)
        return y @ p.T / self.n
