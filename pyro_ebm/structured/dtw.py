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
before it), so the loop has ``N + M - 1`` vectorised steps over the whole batch. The accumulated values
live on a skewed grid where each anti-diagonal is contiguous; the costs are read in place (an
anti-diagonal of a row-major matrix is a strided view). The gradient with respect
to ``cost`` is the expected alignment matrix (at ``beta = inf``: the optimal path), computed by the backward
recursion over the same anti-diagonals.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch.autograd.function import once_differentiable

from .._validation import check_finite
from .chain import _check_energies, _check_lengths
from .semiring import Semiring, _wide_dtype

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
    for name, v in (("x", x), ("y", y)):
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor batch + (length, D), got "
                            f"{v.dtype if isinstance(v, torch.Tensor) else type(v).__name__}")
        if v.dim() < 2:
            raise ValueError(f"{name} must have shape batch + (length, D), got {tuple(v.shape)}")
        check_finite(v.detach(), name)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y must have the same feature size, got {x.shape[-1]} and {y.shape[-1]}")
    # |x|^2 + |y|^2 - 2 x.y with one batched matrix product (like torch.cdist for long sequences); the
    # cancellation error is ~ eps * (|x|^2 + |y|^2), hence the clamp at 0
    cross = x @ y.transpose(-1, -2)
    return (x.pow(2).sum(-1).unsqueeze(-1) + y.pow(2).sum(-1).unsqueeze(-2) - 2.0 * cross).clamp_min(0.0)


def _rows(d: int, N: int, M: int):
    """Rows ``i`` of anti-diagonal ``d`` inside the ``N x M`` grid: ``range(lo, hi)``."""
    return max(0, d - M + 1), min(N, d + 1)


def _diagonal(c: torch.Tensor, d: int, lo: int, hi: int) -> torch.Tensor:
    """View ``[B, hi - lo]`` of ``c[b, i, d - i]`` for ``i`` in ``[lo, hi)`` (``c`` contiguous ``[B, N, M]``):
    an anti-diagonal is a stride of ``M - 1`` through row-major storage."""
    B, _, M = c.shape
    return c.as_strided((B, hi - lo), (c.stride(0), M - 1), c.storage_offset() + lo * M + (d - lo))


def _unskew(s: torch.Tensor, M: int) -> torch.Tensor:
    """``[B, N + M - 1, N]`` on the skewed grid -> ``[B, N, M]``: ``out[b, i, j] = s[b, i + j, i]``."""
    B, D, N = s.shape
    idx = (torch.arange(N, device=s.device).unsqueeze(1) + torch.arange(M, device=s.device)).expand(B, N, M)
    return s.transpose(1, 2).gather(2, idx)


def _forward(sr: Semiring, cost: torch.Tensor):
    """The recursion, one anti-diagonal at a time, on a skewed grid (anti-diagonals contiguous).

    Returns, in log-weight units: ``R [B, D + 2, N + 1]`` (``D = N + M - 1``) with ``R[b, d + 2, i + 1] =
    -beta R`` of cell ``(i, d - i)`` (two leading diagonals and a leading row hold the boundary: 0 at
    ``(-1, -1)``, ``-inf`` elsewhere); ``S [B, D + 2, N + 1]`` with ``S[b, d, i]`` the semiring sum of the
    three predecessors of cell ``(i, d - i)`` (``-inf`` where there is no cell); and at ``beta = inf`` the
    chosen predecessor ``choice[b, d, i]`` (0: ``(i-1, j)``, 1: ``(i, j-1)``, 2: ``(i-1, j-1)``, 3: none).

    ``R`` and ``S`` are float64 whatever the dtype of ``cost`` (see :func:`~.semiring._wide_dtype`: an
    alignment may skip an anti-diagonal, so there is no exact per-diagonal normalisation)."""
    cost = cost.to(_wide_dtype(cost))
    B, N, M = cost.shape
    D = N + M - 1
    R = cost.new_full((B, D + 2, N + 1), -math.inf)
    R[:, 0, 0] = 0.0  # the empty alignment ends at (-1, -1)
    S = cost.new_full((B, D + 2, N + 1), -math.inf)
    for d in range(D):
        lo, hi = _rows(d, N, M)
        up, left, diag = R[:, d + 1, lo:hi], R[:, d + 1, lo + 1 : hi + 1], R[:, d, lo:hi]
        s = sr._log_plus(sr._log_plus(up, left), diag, out=S[:, d, lo:hi])
        sr._log_times(s, _diagonal(cost, d, lo, hi), out=R[:, d + 2, lo + 1 : hi + 1])
    choice = None
    if sr.tropical:  # the max is exactly one of the three: the first equal one is the chosen predecessor
        s, code = S[:, :D, :N], torch.full((), 3, dtype=torch.uint8, device=S.device)
        choice = torch.full_like(S, 3, dtype=torch.uint8)
        ok = s > -math.inf
        for k, pred in reversed(list(enumerate((R[:, 1 : D + 1, 0:N], R[:, 1 : D + 1, 1 : N + 1], R[:, 0:D, 0:N])))):
            code = torch.where(ok & (pred == s), torch.full_like(code, k), code)
        choice[:, :D, :N] = code
    return R, S, choice


def _alignment(sr: Semiring, R, S, choice, E, N: int, M: int) -> torch.Tensor:
    """Backward recursion for ``dF/dcost`` on the skewed grid: ``E [B, D + 2, N + 1]`` holds ``dF/dR`` at
    the end cells on entry (zeros elsewhere) and is filled in place; returns ``[B, N, M]``.

    The weight from a cell to a successor is the probability that the successor's path comes from the cell:
    ``exp(r_cell - s_succ) <= 1`` at finite beta (``s_succ`` is a log-sum-exp that includes ``r_cell``), the
    indicator of the chosen predecessor at ``beta = inf``. A successor that no alignment reaches (``s =
    -inf``, or ``-inf - -inf``) has ``E = 0``; its weight is set to 0 so that no ``inf * 0`` appears."""
    D = N + M - 1
    if sr.tropical:  # w[k][b, d, i]: does successor k of cell (i, d - i) come from it?
        w = [(choice[:, 1 : D + 1, 1 : N + 1] == 0), (choice[:, 1 : D + 1, 0:N] == 1), (choice[:, 2 : D + 2, 1 : N + 1] == 2)]
        w = [t.to(E.dtype) for t in w]
    for d in range(D - 1, -1, -1):
        lo, hi = _rows(d, N, M)
        e = E[:, d, lo:hi]
        succ = ((d + 1, lo + 1, 0), (d + 1, lo, 1), (d + 2, lo + 1, 2))  # (i+1, j), (i, j+1), (i+1, j+1)
        if sr.tropical:
            for dd, ll, k in succ:
                e.addcmul_(E[:, dd, ll : ll + hi - lo], w[k][:, d, lo:hi])
        else:
            r = R[:, d + 2, lo + 1 : hi + 1]
            for dd, ll, _ in succ:
                w = torch.sub(r, S[:, dd, ll : ll + hi - lo]).nan_to_num_(nan=-math.inf, posinf=-math.inf)
                e.addcmul_(E[:, dd, ll : ll + hi - lo], w.exp_())
    return _unskew(E[:, :D, :N], M)


def _end_cells(E, n, m, value):
    E[torch.arange(E.shape[0], device=E.device), n + m - 2, n - 1] = value
    return E


class _SoftDTW(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cost, beta, n, m):
        sr = Semiring(beta)
        R, S, choice = _forward(sr, cost)
        ctx.save_for_backward(R, S, n, m, *(() if choice is None else (choice,)))
        ctx.sr, ctx.shape, ctx.dtype = sr, cost.shape[1:], cost.dtype
        rows = torch.arange(cost.shape[0], device=cost.device)
        return sr._from_log(R[rows, n + m, n]).to(cost.dtype)  # cell (n-1, m-1): diagonal n+m-2, row n-1

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        R, S, n, m, *rest = ctx.saved_tensors
        E = _end_cells(torch.zeros_like(R), n, m, grad.to(R.dtype))
        out = _alignment(ctx.sr, R, S, rest[0] if rest else None, E, *ctx.shape)
        return out.to(ctx.dtype), None, None, None


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
    B = int(math.prod(batch_shape))
    c = cost.reshape(B, N, M)
    if lengths is None:
        n = torch.full((B,), N, dtype=torch.long, device=c.device)
        m = torch.full((B,), M, dtype=torch.long, device=c.device)
    else:
        if not isinstance(lengths, (tuple, list)) or len(lengths) != 2:
            raise TypeError("lengths must be a pair (n, m) of integer tensors of shape batch")
        n = _check_lengths(lengths[0], batch_shape, N, name="lengths[0]", device=c.device, of="cost").reshape(B)
        m = _check_lengths(lengths[1], batch_shape, M, name="lengths[1]", device=c.device, of="cost").reshape(B)
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
    if keep is None:
        _check_energies(c, "cost")
    else:  # padding and cells outside the band are never looked at
        _check_energies(torch.where(keep, c, torch.zeros((), dtype=c.dtype, device=c.device)), "cost")
        c = torch.where(keep, c, torch.full((), math.inf, dtype=c.dtype, device=c.device))
    return c.contiguous(), n, m, batch_shape


def soft_dtw(cost: torch.Tensor, beta=1.0, *, lengths=None, band=None) -> torch.Tensor:
    r"""Soft-DTW: the free energy over monotone alignments of a cost matrix (``gamma = 1 / beta``).

    Differentiable: the gradient with respect to ``cost`` is the Gibbs-expected alignment matrix
    :math:`P_\beta((i, j) \in \pi)` (at ``beta = inf`` the indicator of the optimal alignment).

    :param cost: local costs ``batch + (N, M)`` (finite), e.g. :func:`squared_distances` of two sequences.
    :param beta: inverse temperature > 0; ``float("inf")`` gives :func:`dtw`.
    :param lengths: optional pair ``(n, m)`` of integer tensors of shape ``batch``: only ``cost[..., :n,
        :m]`` is used and the alignment ends at ``(n-1, m-1)``.
    :param band: optional Sakoe-Chiba band: cells with ``|i - j| > band`` are excluded.
    :returns: free energies of shape ``batch``, in the dtype of ``cost``; the recursion accumulates in
        float64 (alignments of different lengths leave no exact normalisation per anti-diagonal, and float32
        would lose the differences of size 1 between alignment energies of size 1e6).

    Example::

        >>> import torch
        >>> from pyro_ebm.structured import soft_dtw
        >>> cost = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> # three alignments: diagonal (energy 0), via (0, 1) or via (1, 0) (energy 1 each)
        >>> torch.allclose(soft_dtw(cost, beta=2.0), -torch.log(1 + 2 * torch.exp(torch.tensor(-2.0))) / 2)
        True
    """
    sr = Semiring(beta)  # validates beta
    c, n, m, batch_shape = _prepare(cost, lengths, band)
    value = _SoftDTW.apply(c, sr.beta, n, m)
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
        R, S, choice = _forward(sr, c.detach())
        path = _alignment(sr, R, S, choice, _end_cells(torch.zeros_like(R), n, m, 1.0), N, M) > 0.5
    return value.reshape(batch_shape), path.reshape(tuple(batch_shape) + (N, M))
