r"""Dynamic time warping: the 1-D constellation model.

An alignment of a sequence of length ``N`` with one of length ``M`` is a monotone path of cells ``(i, j)``
from ``(0, 0)`` to ``(N-1, M-1)`` moving by ``(1, 0)``, ``(0, 1)`` or ``(1, 1)``; its energy is the sum
of ``cost[i, j]`` along it. The alignment is the latent variable, and the free energy over it is

.. math:: F_\beta = -\frac1\beta \log \sum_{\text{alignments } \pi} e^{-\beta \sum_{(i,j)\in\pi} c_{ij}},

``soft-DTW`` (Cuturi & Blondel 2017, whose ``gamma`` is ``1 / beta``); ``beta = inf`` is the classical DTW
distance (the Viterbi alignment). Both come from one recursion written against
:class:`~pyro_ebm.structured.Semiring`,

.. math:: R_{ij} = c_{ij} + \textstyle\bigoplus_\beta (R_{i-1,j},\ R_{i,j-1},\ R_{i-1,j-1}),

run one anti-diagonal ``i + j = d`` at a time (every cell of an anti-diagonal depends only on the two
before it), so the loop has ``N + M - 1`` vectorised steps over the whole batch. The gradient with respect
to ``cost`` is the expected alignment matrix (at ``beta = inf``: the optimal path), computed by the backward
recursion over the same anti-diagonals.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch.autograd.function import once_differentiable

from .._validation import check_beta, check_finite
from .chain import _check_lengths
from .semiring import Semiring

__all__ = ["dtw", "soft_dtw", "squared_distances"]


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cost matrix of squared Euclidean distances ``||x_i - y_j||^2``: ``batch + (N, D)``, ``batch + (M, D)``
    -> ``batch + (N, M)``.

    Example::

        >>> import torch
        >>> from pyro_ebm.structured import squared_distances
        >>> squared_distances(torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0]]))
        tensor([[9.],
                [4.]])
    """
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y must have the same feature size, got {x.shape[-1]} and {y.shape[-1]}")
    # |x|^2 + |y|^2 - 2 x.y with one batched matrix product (like torch.cdist for long sequences); the
    # cancellation error is ~ eps * (|x|^2 + |y|^2), hence the clamp at 0
    cross = x @ y.transpose(-1, -2)
    return (x.pow(2).sum(-1).unsqueeze(-1) + y.pow(2).sum(-1).unsqueeze(-2) - 2.0 * cross).clamp_min(0.0)


def _rows(d: int, N: int, M: int):
    """Rows ``i`` of anti-diagonal ``d`` inside the ``N x M`` grid: ``range(lo, hi)``."""
    return max(0, d - M + 1), min(N, d + 1)


def _skew(c: torch.Tensor) -> torch.Tensor:
    """``[B, N, M]`` -> ``[B, N + M - 1, N]`` with ``out[b, d, i] = c[b, i, d - i]`` (``+inf`` off the grid)."""
    B, N, M = c.shape
    d = torch.arange(N + M - 1, device=c.device)
    i = torch.arange(N, device=c.device)
    j = d.unsqueeze(0) - i.unsqueeze(1)  # [N, D]
    valid = (j >= 0) & (j < M)
    out = c.gather(2, j.clamp(0, M - 1).expand(B, N, N + M - 1))
    return torch.where(valid, out, torch.full((), math.inf, dtype=c.dtype, device=c.device)).transpose(1, 2)


def _unskew(s: torch.Tensor, M: int) -> torch.Tensor:
    """Inverse of :func:`_skew` on ``[B, N + M - 1, N]``: ``out[b, i, j] = s[b, i + j, i]``."""
    B, D, N = s.shape
    idx = (torch.arange(N, device=s.device).unsqueeze(1) + torch.arange(M, device=s.device)).expand(B, N, M)
    return s.transpose(1, 2).gather(2, idx)


def _forward(sr: Semiring, cs: torch.Tensor, N: int, M: int):
    """Accumulated log-weights ``-beta R`` on the skewed grid, ``[B, D + 2, N + 1]``, with entry ``[b, d + 2,
    i + 1]`` for cell ``(i, d - i)`` (two leading diagonals and a leading row hold the boundary), and for
    ``beta = inf`` the chosen predecessor of each cell (0: ``(i-1, j)``, 1: ``(i, j-1)``, 2: ``(i-1, j-1)``).
    ``cs`` holds the skewed costs in log-weight units."""
    B, D, _ = cs.shape
    R = cs.new_full((B, D + 2, N + 1), -math.inf)
    R[:, 0, 0] = 0.0  # the empty alignment ends at (-1, -1)
    choice = cs.new_zeros((B, D, N), dtype=torch.uint8) if sr.tropical else None
    for d in range(D):
        lo, hi = _rows(d, N, M)
        up, left, diag = R[:, d + 1, lo:hi], R[:, d + 1, lo + 1 : hi + 1], R[:, d, lo:hi]
        if sr.tropical:
            best, k = torch.stack([up, left, diag]).max(0)
            choice[:, d, lo:hi] = k
        else:
            best = sr.log_plus(sr.log_plus(up, left), diag)
        torch.add(cs[:, d, lo:hi], best, out=R[:, d + 2, lo + 1 : hi + 1])
    return R, choice


def _alignment(sr: Semiring, R, cs, choice, seed, N: int, M: int) -> torch.Tensor:
    """Backward recursion: ``E[b, d, i] = dF/dcost`` at cell ``(i, d - i)`` given ``dF/dR`` at the end cells
    (``seed``, skewed ``[B, D, N]``). Returns skewed ``[B, D, N]``."""
    B, D, _ = cs.shape
    pad = (0, 1, 0, 2)  # one more row, two more diagonals of "no successor"
    if sr.tropical:
        ch = torch.nn.functional.pad(choice, pad, value=3)
        w_down = (ch[:, 1 : D + 1, 1 : N + 1] == 0).to(cs.dtype)  # (i+1, j) came from (i, j)
        w_right = (ch[:, 1 : D + 1, 0:N] == 1).to(cs.dtype)  # (i, j+1) came from (i, j)
        w_diag = (ch[:, 2 : D + 2, 1 : N + 1] == 2).to(cs.dtype)  # (i+1, j+1) came from (i, j)
    else:
        # P(the predecessor of a successor is this cell) = exp(r - (r_succ - c_succ)) in log-weight units.
        # Unreachable cells (-inf) become a large negative number so that no inf - inf appears: their
        # weights towards reachable successors underflow to 0, and reachable cells' weights towards
        # unreachable successors are capped at 1 and multiply an alignment probability of exactly 0.
        big = torch.finfo(cs.dtype).max / 8
        r = torch.nan_to_num(R[:, 2:, 1:], neginf=-big)
        s = torch.nn.functional.pad(r - torch.nan_to_num(cs, neginf=-big), pad, value=0.0)
    E = torch.nn.functional.pad(seed, pad, value=0.0)
    for d in range(D - 1, -1, -1):
        lo, hi = _rows(d, N, M)
        e = E[:, d, lo:hi]
        if sr.tropical:
            e.addcmul_(E[:, d + 1, lo + 1 : hi + 1], w_down[:, d, lo:hi])
            e.addcmul_(E[:, d + 1, lo:hi], w_right[:, d, lo:hi])
            e.addcmul_(E[:, d + 2, lo + 1 : hi + 1], w_diag[:, d, lo:hi])
        else:
            rd = r[:, d, lo:hi]
            e.addcmul_(E[:, d + 1, lo + 1 : hi + 1], (rd - s[:, d + 1, lo + 1 : hi + 1]).clamp_max_(0.0).exp_())
            e.addcmul_(E[:, d + 1, lo:hi], (rd - s[:, d + 1, lo:hi]).clamp_max_(0.0).exp_())
            e.addcmul_(E[:, d + 2, lo + 1 : hi + 1], (rd - s[:, d + 2, lo + 1 : hi + 1]).clamp_max_(0.0).exp_())
    return E[:, :D, :N]


class _SoftDTW(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cost, beta, n, m):
        sr = Semiring(beta)
        B, N, M = cost.shape
        cs = sr.to_log(_skew(cost))
        R, choice = _forward(sr, cs, N, M)
        rows = torch.arange(B, device=cost.device)
        value = sr.from_log(R[rows, n + m, n])  # cell (n-1, m-1) sits at diagonal n+m-2, row n-1
        ctx.save_for_backward(R, cs, n, m, *(() if choice is None else (choice,)))
        ctx.sr, ctx.shape = sr, (N, M)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        R, cs, n, m, *rest = ctx.saved_tensors
        N, M = ctx.shape
        seed = torch.zeros_like(cs)
        seed[torch.arange(cs.shape[0], device=cs.device), n + m - 2, n - 1] = grad
        E = _alignment(ctx.sr, R, cs, rest[0] if rest else None, seed, N, M)
        return _unskew(E, M), None, None, None


def _prepare(cost, lengths, band):
    if not isinstance(cost, torch.Tensor):
        raise TypeError(
            f"cost must be a tensor batch + (N, M), got {type(cost).__name__}; pad ragged sequences "
            "(pyro_ebm.structured.pad_sequences) and pass lengths=(n, m)"
        )
    if not cost.is_floating_point():
        raise TypeError(f"cost must be a floating-point tensor, got dtype {cost.dtype}")
    if cost.dim() < 2 or cost.shape[-1] == 0 or cost.shape[-2] == 0:
        raise ValueError(f"cost must have shape batch + (N, M) with N, M >= 1 (no empty sequences), got {tuple(cost.shape)}")
    batch_shape, (N, M) = cost.shape[:-2], cost.shape[-2:]
    check_finite(cost.detach(), "cost")
    B = int(math.prod(batch_shape))
    c = cost.reshape(B, N, M)
    if lengths is None:
        n = torch.full((B,), N, dtype=torch.long, device=c.device)
        m = torch.full((B,), M, dtype=torch.long, device=c.device)
    else:
        if not isinstance(lengths, (tuple, list)) or len(lengths) != 2:
            raise TypeError("lengths must be a pair (n, m) of integer tensors of shape batch")
        n = _check_lengths(lengths[0], batch_shape, N, name="lengths[0]", device=c.device).reshape(B)
        m = _check_lengths(lengths[1], batch_shape, M, name="lengths[1]", device=c.device).reshape(B)
    keep = None
    if bool((n < N).any()) or bool((m < M).any()):
        keep = (torch.arange(N, device=c.device)[:, None] < n[:, None, None]) & (
            torch.arange(M, device=c.device) < m[:, None, None]
        )
    if band is not None:
        if isinstance(band, bool) or not isinstance(band, numbers.Integral) or band < 0:
            raise ValueError(f"band must be a non-negative integer (the largest |i - j|), got {band!r}")
        if bool(((n - m).abs() > band).any()):
            raise ValueError(
                f"band = {band} is too narrow: it must be >= |n - m| = {int((n - m).abs().max())} for the "
                "end cell (n-1, m-1) to be reachable"
            )
        ii = torch.arange(N, device=c.device)[:, None]
        inside = (ii - torch.arange(M, device=c.device)).abs() <= band
        keep = inside if keep is None else keep & inside
    if keep is not None:
        c = torch.where(keep, c, torch.full((), math.inf, dtype=c.dtype, device=c.device))
    return c, n, m, batch_shape


def soft_dtw(cost: torch.Tensor, beta=1.0, *, lengths=None, band=None) -> torch.Tensor:
    r"""Soft-DTW: the free energy over monotone alignments of a cost matrix (``gamma = 1 / beta``).

    Differentiable: the gradient with respect to ``cost`` is the Gibbs-expected alignment matrix
    :math:`P_\beta((i, j) \in \pi)` (at ``beta = inf`` the indicator of the optimal alignment).

    :param cost: local costs ``batch + (N, M)`` (finite), e.g. :func:`squared_distances` of two sequences.
    :param beta: inverse temperature > 0; ``float("inf")`` gives :func:`dtw`.
    :param lengths: optional pair ``(n, m)`` of integer tensors of shape ``batch``: only ``cost[..., :n,
        :m]`` is used and the alignment ends at ``(n-1, m-1)``.
    :param band: optional Sakoe-Chiba band: cells with ``|i - j| > band`` are excluded.
    :returns: free energies of shape ``batch``.

    Example::

        >>> import torch
        >>> from pyro_ebm.structured import soft_dtw
        >>> cost = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> # three alignments: diagonal (energy 0), via (0, 1) or via (1, 0) (energy 1 each)
        >>> torch.allclose(soft_dtw(cost, beta=2.0), -torch.log(1 + 2 * torch.exp(torch.tensor(-2.0))) / 2)
        True
    """
    check_beta(beta, allow_inf=True)
    c, n, m, batch_shape = _prepare(cost, lengths, band)
    value = _SoftDTW.apply(c, float(beta), n, m)
    return value.reshape(batch_shape)


def dtw(cost: torch.Tensor, *, lengths=None, band=None, return_path: bool = False):
    """Dynamic time warping: the minimum energy over monotone alignments (``soft_dtw`` at ``beta = inf``).

    Arguments as :func:`soft_dtw`. Returns the values (shape ``batch``, differentiable: the gradient is the
    optimal alignment), and with ``return_path=True`` also ``(value, path)`` where ``path`` is a boolean
    alignment matrix ``batch + (N, M)`` marking the cells of the optimal path (ties: the predecessor order
    ``(i-1, j)``, ``(i, j-1)``, ``(i-1, j-1)``).

    Example::

        >>> import torch
        >>> from pyro_ebm.structured import dtw
        >>> x, y = torch.tensor([0.0, 1.0, 1.0, 2.0]), torch.tensor([0.0, 1.0, 2.0])
        >>> value, path = dtw((x[:, None] - y[None, :]).abs(), return_path=True)
        >>> value
        tensor(0.)
        >>> path.int()
        tensor([[1, 0, 0],
                [0, 1, 0],
                [0, 1, 0],
                [0, 0, 1]], dtype=torch.int32)
    """
    c, n, m, batch_shape = _prepare(cost, lengths, band)
    value = _SoftDTW.apply(c, math.inf, n, m)
    if not return_path:
        return value.reshape(batch_shape)
    sr = Semiring(math.inf)
    B, N, M = c.shape
    with torch.no_grad():
        cs = sr.to_log(_skew(c.detach()))
        R, choice = _forward(sr, cs, N, M)
        seed = torch.zeros_like(cs)
        seed[torch.arange(B, device=c.device), n + m - 2, n - 1] = 1.0
        path = _unskew(_alignment(sr, R, cs, choice, seed, N, M), M) > 0.5
    return value.reshape(batch_shape), path.reshape(tuple(batch_shape) + (N, M))
