r"""Chain factor graphs: the energy of a labelling ``y = (y_0, ..., y_{T-1})``, ``y_t in {0..K-1}``, is

.. math::

    E(y) = a_{y_0} + \sum_{t=0}^{T-1} u_t(y_t) + \sum_{t=0}^{T-2} p_t(y_t, y_{t+1}) + b_{y_{T-1}}

with unary energies ``u`` (``unary[b, t, k]``), pairwise energies ``p`` (``pairwise[k, l]`` shared over time,
or ``pairwise[b, t, k, l]``), and optional initial/final energies ``a``/``b``. Energies, not scores: lower
is better (a CRF's scores are minus these energies).

The factor values sit on the arcs of a trellis (one column of ``K`` nodes per time step) and a path through
the trellis is a labelling whose energy is the sum along the path. One forward recursion over the trellis,
written against :class:`~pyro_ebm.structured.Semiring`, gives the free energy

.. math:: F_\beta = -\frac1\beta \log \sum_y e^{-\beta E(y)}

for every beta, and the minimum energy (Viterbi) at ``beta = inf``. The same recursion on the reversed
chain gives the backward messages, hence the Gibbs marginals :math:`P_\beta(y_t = k)`, which are also the
gradient of :math:`F_\beta` with respect to ``unary`` (computed that way in the backward pass, so a
gradient costs one more sweep and no autograd graph over time).

Variable lengths: ``lengths[b]`` time steps of ``unary[b]`` are used; the rest is padding. Internally the
padded steps become identity transitions (energy 0 to stay in the same state, ``+inf`` to move), so every
sequence runs through the same vectorised recursion.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from .._rng import check_seed
from .._validation import check_beta, check_finite, check_positive_int, check_real
from ..energy import _as_size
from .semiring import Semiring

__all__ = [
    "chain_free_energy",
    "chain_energy",
    "viterbi",
    "chain_marginals",
    "sample_chain",
    "kbest",
    "pad_sequences",
]


def pad_sequences(sequences, value: float = 0.0):
    """Stack tensors of different lengths (along their first dimension) into ``(padded, lengths)``.

    :param sequences: a list of tensors ``[T_i, *rest]`` with the same ``rest``.
    :returns: ``padded [B, max T_i, *rest]`` (filled with ``value``) and ``lengths [B]`` (int64).

    Example::

        >>> import torch
        >>> from pyro_ebm.structured import pad_sequences
        >>> x, n = pad_sequences([torch.ones(2, 3), torch.ones(4, 3)])
        >>> tuple(x.shape), n.tolist()
        ((2, 4, 3), [2, 4])
    """
    if not isinstance(sequences, (list, tuple)) or not all(isinstance(s, torch.Tensor) for s in sequences):
        raise TypeError("sequences must be a list of tensors [T_i, ...]")
    if len(sequences) == 0 or any(s.dim() == 0 or s.shape[0] == 0 for s in sequences):
        raise ValueError("sequences must be a non-empty list of non-empty tensors [T_i, ...] (T_i >= 1)")
    rest = sequences[0].shape[1:]
    if any(s.shape[1:] != rest for s in sequences):
        raise ValueError(f"sequences must all have shape [T_i, {', '.join(map(str, rest))}]")
    value = check_real(value, "value")
    lengths = torch.tensor([s.shape[0] for s in sequences], dtype=torch.long, device=sequences[0].device)
    out = sequences[0].new_full((len(sequences), int(lengths.max())) + tuple(rest), value)
    for i, s in enumerate(sequences):
        out[i, : s.shape[0]] = s
    return out, lengths


# ----------------------------------------------------------------------------------------------------------
# input checks and padding
# ----------------------------------------------------------------------------------------------------------


def _check_lengths(lengths, batch_shape, full: int, name: str = "lengths", device=None, of: str = "unary"):
    if lengths is None:
        return None
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of shape {tuple(batch_shape)}, got dtype {lengths.dtype}")
    if lengths.shape != batch_shape:
        raise ValueError(
            f"{name} must have shape {tuple(batch_shape)} (the batch shape of {of}), got {tuple(lengths.shape)}"
        )
    if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > full):
        raise ValueError(
            f"{name} must lie in [1, {full}] (empty sequences have no paths), got values in "
            f"[{int(lengths.min())}, {int(lengths.max())}]"
        )
    return lengths.to(device=device, dtype=torch.long)


def _check_energies(x: torch.Tensor, name: str, allow_pos_inf: bool = False) -> None:
    """``check_finite`` behind a two-reduction fast path (``min`` propagates NaN)."""
    x = x.detach()
    if x.numel() and not (bool(x.min() > -math.inf) and (allow_pos_inf or bool(x.max() < math.inf))):
        check_finite(x, name, allow_pos_inf=allow_pos_inf)


def _fit_shape(x: torch.Tensor, name: str, want: tuple, event: tuple, doc: str) -> torch.Tensor:
    """``x`` expanded to the shape ``want``: its trailing dimensions must equal ``event`` exactly (a
    ``[K, K, 1]`` pairwise is an error, not a broadcast), the leading ones must broadcast to the rest of
    ``want``. ``doc`` names the accepted shapes in the error message."""
    if x.dim() >= len(event) and tuple(x.shape[x.dim() - len(event):]) == tuple(event):
        try:
            return x.expand(want)
        except RuntimeError:
            pass
    raise ValueError(f"{name} must have shape {doc} (K = unary.shape[-1]), got {list(x.shape)}")


def _prepare(unary, pairwise, initial=None, final=None, lengths=None):
    """Validate and flatten: returns ``(u [B,T,K], p [K,K] or [B,T-1,K,K], a [B,K], b [B,K], lengths [B] or
    None, batch_shape)`` with padded steps already turned into identity transitions."""
    if not isinstance(unary, torch.Tensor):
        raise TypeError(
            f"unary must be a tensor [B, T, K], got {type(unary).__name__}; pad ragged sequences with "
            "pyro_ebm.structured.pad_sequences and pass lengths"
        )
    if not unary.is_floating_point():
        raise TypeError(f"unary must be a floating-point tensor, got dtype {unary.dtype}")
    if unary.dim() < 2:
        raise ValueError(f"unary must have shape batch + (T, K), got {tuple(unary.shape)}")
    batch_shape, (T, K) = unary.shape[:-2], unary.shape[-2:]
    if T == 0 or K == 0:
        raise ValueError(f"unary must have T >= 1 time steps and K >= 1 labels, got shape {tuple(unary.shape)}")
    if not isinstance(pairwise, torch.Tensor) or not pairwise.is_floating_point():
        raise TypeError("pairwise must be a floating-point tensor [K, K] or batch + (T-1, K, K)")
    tensors = [t for t in (pairwise, initial, final) if t is not None]
    for name, t in (("initial", initial), ("final", final)):
        if t is not None and (not isinstance(t, torch.Tensor) or not t.is_floating_point()):
            raise TypeError(f"{name} must be a floating-point tensor [K] or batch + (K,)")
    dtype = unary.dtype
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    B = int(math.prod(batch_shape))
    u = unary.to(dtype).reshape(B, T, K)
    doc = f"[K, K] = {[K, K]} or batch + (T-1, K, K) = {list(batch_shape) + [T - 1, K, K]}"
    if pairwise.dim() == 2:
        p = _fit_shape(pairwise, "pairwise", (K, K), (K, K), doc).to(dtype)
    else:
        p = _fit_shape(pairwise, "pairwise", tuple(batch_shape) + (T - 1, K, K), (K, K), doc)
        p = p.to(dtype).reshape(B, T - 1, K, K)
    _check_energies(p, "pairwise", allow_pos_inf=True)
    ends = []
    for name, t in (("initial", initial), ("final", final)):
        if t is None:
            ends.append(u.new_zeros(B, K))
            continue
        doc = f"[K] = {[K]} or batch + (K,) = {list(batch_shape) + [K]}"
        e = _fit_shape(t, name, tuple(batch_shape) + (K,), (K,), doc).to(dtype).reshape(B, K)
        _check_energies(e, name, allow_pos_inf=True)
        ends.append(e)
    n = _check_lengths(lengths, batch_shape, T, device=u.device)
    if n is not None:
        n = n.reshape(B)
        if bool((n < T).any()):
            u, p = _pad_identity(u, p, n)
        else:
            n = None
    _check_energies(u, "unary")  # after padding: the padding's content is never looked at
    return u, p, ends[0], ends[1], n, batch_shape


def _pad_identity(u, p, n):
    """Steps ``t >= n[b]`` get unary 0 and an identity transition into them (stay: 0, move: +inf)."""
    B, T, K = u.shape
    t = torch.arange(T, device=u.device)
    pad = t >= n.unsqueeze(-1)  # [B, T]
    u = torch.where(pad.unsqueeze(-1), torch.zeros((), dtype=u.dtype, device=u.device), u)
    eye = torch.full((K, K), math.inf, dtype=u.dtype, device=u.device).fill_diagonal_(0.0)
    p = torch.where(pad[:, 1:, None, None], eye, p if p.dim() == 4 else p.expand(B, T - 1, K, K))
    return u, p


def _pad_mask(n, B, T, device):
    return None if n is None else torch.arange(T, device=device) >= n.unsqueeze(-1)


# ----------------------------------------------------------------------------------------------------------
# the recursions
# ----------------------------------------------------------------------------------------------------------


def _step(p, t):
    return p if p.dim() == 2 else p[:, t]


def _shift(u, p, a, b):
    """Subtract from every factor its lowest energy: ``(u, p, a, b, total [B])``.

    Every labelling pays exactly one unary energy per step, one pairwise energy per transition, one initial
    and one final energy, so these constant shifts move every path's energy by the same ``total`` and leave
    the Gibbs distribution unchanged. Done in energy units, before multiplying by beta: energies of size
    1e6 with differences of size 1 become numbers of size 1, exact in float32 (neighbouring floats differ by
    0.06 at 1e6), instead of losing their differences in the recursion's sums.
    """
    B, T, K = u.shape

    def low(x, dims):  # the smallest entry (0 where every entry is +inf: such a factor forbids every path)
        return x.amin(dims, keepdim=True).nan_to_num(posinf=0.0)

    lu, lp, la, lb = low(u, -1), low(p, (-2, -1)), low(a, -1), low(b, -1)
    total = lu.sum((1, 2)) + la.squeeze(-1) + lb.squeeze(-1)
    total = total + (lp.sum((1, 2, 3)) if p.dim() == 4 else (T - 1) * lp.reshape(()))
    shifted = u.new_empty(T, B, K).transpose(0, 1)  # stored time-major: the recursions read one step at a time
    torch.sub(u, lu, out=shifted)
    return shifted, p - lp, a - la, b - lb, total


def _normalise(msg, out):
    """``out = msg - max_k msg`` for a message ``[B, K]`` over the states; returns the max ``[B, 1]``.

    A step that no path reaches (every entry ``-inf``) gives NaN: it ends in a NaN free energy, which
    :func:`_check_free` rejects as it rejects an infinite one, before any marginal is formed."""
    top = msg.amax(-1, keepdim=True)
    torch.sub(msg, top, out=out)
    return top


def _scan(sr: Semiring, u, p, a):
    """Forward messages in log-weight units (inputs too), normalised at every step: ``alphas[b, t, k]`` is
    the semiring sum over all paths ending in state ``k`` at time ``t`` (including ``u_t(k)``) minus
    ``norms[b, t]``, with ``max_k alphas[b, t, k] = 0``. Returns ``alphas [B, T, K]`` and the sum of the
    norms ``[B]``: ``log Z = norms + log_sum(alphas[:, -1] + final)``.

    Normalised messages stay of the size of the energy differences; unnormalised ones grow like ``t * beta *
    |E|``, and marginals formed from them lose every digit to cancellation in float32 at ``beta * |E| ~
    1e6``."""
    B, T, K = u.shape
    alphas = torch.empty_like(u)  # with the layout of u (time-major after _shift)
    norms = [_normalise(a + u[:, 0], alphas[:, 0])]
    for t in range(1, T):
        msg = sr._log_sum(alphas[:, t - 1].unsqueeze(-1) + _step(p, t - 1), -2).add_(u[:, t])
        norms.append(_normalise(msg, alphas[:, t]))
    return alphas, torch.cat(norms, -1).sum(-1)


def _log_forward(sr: Semiring, u, p, a, b):
    """Shift (:func:`_shift`), convert to log-weights and run the forward recursion: returns the inputs in
    log-weight units ``(u, p, a, b)``, the normalised forward messages ``alphas`` and the free energies
    ``[B]`` (not finite where every path is forbidden: ``+inf``, or NaN if no path reaches some step)."""
    u, p, a, b, total = _shift(u, p, a, b)
    for x in (u, p, a, b):  # energies -> log-weights (Semiring._to_log), in place: _shift made new tensors
        x.mul_(-sr.beta)
    alphas, norms = _scan(sr, u, p, a)
    log_z = norms + sr._log_sum(alphas[:, -1] + b, -1)
    return (u, p, a, b), alphas, total + sr._from_log(log_z)


def _viterbi(u, p, a, b):
    """Min-sum forward pass with back-pointers and backtracking: ``(energy [B], path [B, T])``."""
    B, T, K = u.shape
    msg = a + u[:, 0]
    pointers = []
    for t in range(1, T):
        val, idx = (msg.unsqueeze(-1) + _step(p, t - 1)).min(-2)
        msg = val + u[:, t]
        pointers.append(idx)
    energy, last = (msg + b).min(-1)
    path = u.new_empty(B, T, dtype=torch.long)
    path[:, -1] = last
    for t in range(T - 2, -1, -1):
        path[:, t] = pointers[t].gather(1, path[:, t + 1 : t + 2]).squeeze(1)
    return energy, path


def _forward_backward(sr: Semiring, u, p, b, alphas, edges=None, grad=None):
    """Gibbs marginals from the normalised forward messages (:func:`_scan`) and a backward sweep (the same
    recursion read backwards, normalised the same way); inputs in log-weight units.

    ``betas[b, t, k]`` is the log-weight of the continuations of state ``k`` at time ``t`` (the steps after
    ``t`` and the final energy, not ``u_t(k)``), up to a constant per step. Each marginal is a local softmax
    -- ``P(y_t = k) = softmax_k(alphas_t + betas_t)``, ``P(y_t = k, y_{t+1} = l) = softmax_{k, l}(alphas_t(k)
    + p_t(k, l) + u_{t+1}(l) + betas_{t+1}(l))`` -- so no log partition function of size ``T * beta * |E|``
    is subtracted, and the logits are sums of non-positive terms, without cancellation.

    ``edges``: ``None`` (node marginals only), ``"full"`` (pair marginals ``[B, T-1, K, K]``) or ``"sum"``
    (``sum_b grad[b] * pair marginals[b, t]`` summed over ``t`` as well: the gradient of a shared ``[K, K]``
    pairwise, accumulated over blocks of time steps so that no ``[B, T-1, K, K]`` tensor is built).
    """
    B, T, K = u.shape
    betas = torch.empty_like(u)
    betas[:, -1] = b
    for t in range(T - 2, -1, -1):
        s = _step(p, t) + (u[:, t + 1] + betas[:, t + 1]).unsqueeze(-2)  # [B, K, K], indexed (k, l)
        _normalise(sr._log_sum(s, -1), betas[:, t])
    node = _softmax_(torch.add(alphas, betas, out=u.new_empty(B, T, K)))
    if edges is None:
        return node, None
    ahead = u[:, 1:] + betas[:, 1:]  # u_{t+1} + betas_{t+1}
    # "full" fills its output in one block; "sum" goes by blocks of about 2^18 logits (1 MB in float32)
    block = max(1, 2**18 // (B * K * K)) if edges == "sum" else max(T - 1, 1)
    edge = u.new_zeros(K, K) if edges == "sum" else u.new_empty(B, 0, K, K)  # (T = 1 has no pairs)
    for lo in range(0, T - 1, block):
        hi = min(T - 1, lo + block)
        logits = u.new_empty(B, hi - lo, K, K)  # contiguous, so that the views below copy nothing
        torch.add(alphas[:, lo:hi, :, None], ahead[:, lo:hi, None, :], out=logits)  # the outer sum, then p:
        logits += p if p.dim() == 2 else p[:, lo:hi]  # much faster on CPU than one three-way broadcast
        _softmax_(logits.view(B, hi - lo, K * K))
        if edges == "sum":
            edge += (grad @ logits.view(B, -1)).view(hi - lo, K, K).sum(0)
        else:
            edge = logits
    return node, edge


def _softmax_(x):
    """Softmax over the last dimension, in place (``torch.softmax`` would allocate a second tensor of the
    size of ``x``; for the pair marginals that costs more than the arithmetic)."""
    x.sub_(x.amax(-1, keepdim=True)).exp_()
    return x.div_(x.sum(-1, keepdim=True))


def _path_indicators(path, K, dtype, edges: bool = True):
    node = torch.nn.functional.one_hot(path, K).to(dtype)
    if not edges:
        return node, None
    edge = node[:, :-1, :, None] * node[:, 1:, None, :]
    return node, edge


class _ChainFreeEnergy(torch.autograd.Function):
    """Free energy with the Gibbs marginals as its gradient (the path indicator at beta = inf)."""

    @staticmethod
    def forward(ctx, u, p, a, b, beta):
        sr = Semiring(beta)
        if sr.tropical:
            free, path = _viterbi(u, p, a, b)
            ctx.save_for_backward(path)
        else:
            (u, p, a, b), alphas, free = _log_forward(sr, u, p, a, b)
            ctx.save_for_backward(u, p, b, alphas)
        ctx.sr, ctx.p_shared, ctx.K = sr, p.dim() == 2, u.shape[-1]
        return free

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        sr = ctx.sr
        if sr.tropical:
            (path,) = ctx.saved_tensors
            node, edge = _path_indicators(path, ctx.K, grad.dtype, edges=ctx.needs_input_grad[1])
        else:
            u, p, b, alphas = ctx.saved_tensors
            mode = None if not ctx.needs_input_grad[1] else ("sum" if ctx.p_shared else "full")
            node, edge = _forward_backward(sr, u, p, b, alphas, edges=mode, grad=grad)
            if mode == "sum":
                return node * grad[:, None, None], edge, node[:, 0] * grad[:, None], node[:, -1] * grad[:, None], None
        g = grad[:, None, None]
        d_u = node * g
        d_p = None
        if edge is not None:
            d_p = torch.einsum("b,btij->ij", grad, edge) if ctx.p_shared else edge * g.unsqueeze(-1)
        return d_u, d_p, d_u[:, 0], d_u[:, -1], None


def _check_free(free, batch_shape):
    if not torch.isfinite(free.detach()).all():
        bad = int((~torch.isfinite(free.detach())).nonzero()[0, 0])
        raise ValueError(
            f"every path of sequence {bad} has infinite energy: pairwise/initial/final forbid all labellings"
        )
    return free.reshape(batch_shape)


# ----------------------------------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------------------------------


def chain_free_energy(unary, pairwise, beta=1.0, initial=None, final=None, lengths=None) -> torch.Tensor:
    r"""Free energy of a chain factor graph over all ``K^T`` labellings.

    .. math:: F_\beta = -\frac1\beta \log \sum_{y} e^{-\beta E(y)}, \qquad F_\infty = \min_y E(y)

    Its gradient with respect to ``unary[b, t, k]`` is the Gibbs marginal :math:`P_\beta(y_t = k)`
    (with respect to ``pairwise``: the pair marginals), computed by a backward recursion; at ``beta = inf``
    it is the indicator of the Viterbi path.

    :param unary: energies ``batch + (T, K)`` (finite).
    :param pairwise: transition energies ``[K, K]`` (``pairwise[k, l]``: from ``k`` at ``t`` to ``l`` at
        ``t + 1``) or ``batch + (T-1, K, K)``; ``+inf`` forbids a transition.
    :param beta: inverse temperature > 0, ``float("inf")`` for min-sum.
    :param initial: optional energies ``[K]`` or ``batch + (K,)`` of the first label (``+inf`` forbids).
    :param final: optional energies ``[K]`` or ``batch + (K,)`` of the last label (at ``lengths - 1``).
    :param lengths: optional integer tensor of shape ``batch`` with values in ``[1, T]``.
    :returns: free energies of shape ``batch``.

    Example::

        >>> import torch
        >>> from pyro_ebm.structured import chain_free_energy
        >>> unary = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])  # B = 1, T = 2, K = 2
        >>> pairwise = torch.tensor([[0.0, 2.0], [2.0, 0.0]])
        >>> chain_free_energy(unary, pairwise, beta=float("inf"))  # best path 0 -> 0 (or 1 -> 1): 1
        tensor([1.])
        >>> energies = torch.tensor([1.0, 2.0, 4.0, 1.0])  # the four paths 00, 01, 10, 11
        >>> torch.allclose(chain_free_energy(unary, pairwise), -torch.logsumexp(-energies, 0))
        True
    """
    check_beta(beta, allow_inf=True)
    u, p, a, b, _, batch_shape = _prepare(unary, pairwise, initial, final, lengths)
    return _check_free(_ChainFreeEnergy.apply(u, p, a, b, beta), batch_shape)


def chain_energy(path, unary, pairwise, initial=None, final=None, lengths=None) -> torch.Tensor:
    """Energy :math:`E(y)` of given labellings ``path`` (integers ``batch + (T,)``); shape ``batch``.

    Positions at or past ``lengths`` are ignored (they may hold ``-1``).

    Example::

        >>> import torch
        >>> from pyro_ebm.structured import chain_energy
        >>> unary = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
        >>> chain_energy(torch.tensor([[0, 1]]), unary, torch.tensor([[0.0, 2.0], [2.0, 0.0]]))
        tensor([2.])
    """
    u, p, a, b, n, batch_shape = _prepare(unary, pairwise, initial, final, lengths)
    B, T, K = u.shape
    if not isinstance(path, torch.Tensor) or path.is_floating_point() or path.dtype == torch.bool:
        raise TypeError("path must be an integer tensor of labels, shape batch + (T,)")
    try:
        y = path.expand(tuple(batch_shape) + (T,)).reshape(B, T)
    except RuntimeError:
        raise ValueError(f"path must have shape batch + (T,) = {tuple(batch_shape) + (T,)}, got {tuple(path.shape)}") from None
    pad = _pad_mask(n, B, T, u.device)
    if pad is not None:  # padded steps repeat the last label (identity transitions, zero unary)
        last = y.gather(1, (n - 1).unsqueeze(-1))
        y = torch.where(pad, last, y)
    if bool(((y < 0) | (y >= K)).any()):
        raise ValueError(f"path must hold labels in [0, {K}) at every position before its length")
    e = u.gather(-1, y.unsqueeze(-1)).squeeze(-1).sum(-1)
    if T > 1:
        if p.dim() == 2:
            e = e + p[y[:, :-1], y[:, 1:]].sum(-1)
        else:
            e = e + p.gather(-1, y[:, 1:, None, None].expand(B, T - 1, K, 1)).squeeze(-1).gather(
                -1, y[:, :-1, None]
            ).squeeze(-1).sum(-1)
    e = e + a.gather(-1, y[:, :1]).squeeze(-1) + b.gather(-1, y[:, -1:]).squeeze(-1)
    return e.reshape(batch_shape)


def viterbi(unary, pairwise, initial=None, final=None, lengths=None):
    """Minimum-energy labelling by min-sum dynamic programming.

    Arguments as :func:`chain_free_energy`. Returns ``(energy, path)``: ``energy`` of shape ``batch``
    (equal to ``chain_free_energy(..., beta=inf)``) and ``path`` of shape ``batch + (T,)`` (int64, ``-1``
    at padded positions). Ties go to the lowest label index at the latest position.

    Example::

        >>> import torch
        >>> from pyro_ebm.structured import viterbi
        >>> unary = torch.tensor([[[0.0, 3.0], [1.0, 0.0], [0.0, 3.0]]])
        >>> viterbi(unary, torch.tensor([[0.0, 2.0], [2.0, 0.0]]))
        (tensor([1.]), tensor([[0, 0, 0]]))
    """
    u, p, a, b, n, batch_shape = _prepare(unary, pairwise, initial, final, lengths)
    with torch.no_grad():
        energy, path = _viterbi(u, p, a, b)
    if not torch.isfinite(energy).all():
        _check_free(energy, batch_shape)
    pad = _pad_mask(n, *u.shape[:2], u.device)
    if pad is not None:
        path = path.masked_fill(pad, -1)
    T = u.shape[1]
    return energy.reshape(batch_shape), path.reshape(tuple(batch_shape) + (T,))


def chain_marginals(unary, pairwise, beta=1.0, initial=None, final=None, lengths=None, *, edges: bool = False):
    r"""Gibbs marginals :math:`P_\beta(y_t = k)` by the forward-backward recursion.

    Arguments as :func:`chain_free_energy`. Returns ``node`` of shape ``batch + (T, K)`` (zero at padded
    steps), and with ``edges=True`` also ``(node, edge)`` with ``edge[..., t, k, l] = P(y_t = k, y_{t+1}
    = l)`` of shape ``batch + (T-1, K, K)``. At ``beta = inf`` these are the indicators of the Viterbi path.

    Example::

        >>> import torch
        >>> from pyro_ebm.structured import chain_marginals
        >>> unary = torch.tensor([[[0.0, 0.0], [0.0, 5.0]]])
        >>> m = chain_marginals(unary, torch.zeros(2, 2), beta=1.0)
        >>> torch.allclose(m.sum(-1), torch.ones(1, 2))  # each step sums to one
        True
        >>> print(round(m[0, 1, 1].item(), 4))  # e^-5 / (1 + e^-5)
        0.0067
    """
    check_beta(beta, allow_inf=True)
    sr = Semiring(beta)
    u, p, a, b, n, batch_shape = _prepare(unary, pairwise, initial, final, lengths)
    B, T, K = u.shape
    with torch.no_grad():
        if sr.tropical:
            _, path = _viterbi(u, p, a, b)
            node, edge = _path_indicators(path, K, u.dtype, edges)
        else:
            (u, p, a, b), alphas, free = _log_forward(sr, u, p, a, b)
            _check_free(free, (B,))
            node, edge = _forward_backward(sr, u, p, b, alphas, "full" if edges else None)
    pad = _pad_mask(n, B, T, u.device)
    if pad is not None:
        node = node.masked_fill(pad.unsqueeze(-1), 0.0)
        if edge is not None:
            edge = edge.masked_fill(pad[:, 1:, None, None], 0.0)
    node = node.reshape(tuple(batch_shape) + (T, K))
    if not edges:
        return node
    if edge.dim() == 4 and edge.shape[0] != B:
        edge = edge.expand(B, *edge.shape[1:])
    return node, edge.reshape(tuple(batch_shape) + (T - 1, K, K))


def _gumbel_argmax(logits, generator):
    u = torch.rand(logits.shape, dtype=logits.dtype, device=logits.device, generator=generator)
    return (logits - torch.log(-torch.log(u))).argmax(-1)


def sample_chain(
    unary, pairwise, beta=1.0, initial=None, final=None, lengths=None, *, sample_shape=(), generator=None
) -> torch.Tensor:
    r"""Exact draws from the Gibbs distribution :math:`P_\beta(y) \propto e^{-\beta E(y)}` over labellings.

    Forward filtering (the free-energy recursion), then backward sampling: :math:`y_{T-1}` from its
    marginal, then each :math:`y_t` given :math:`y_{t+1}`. At ``beta = inf`` every draw is the Viterbi path.

    :param sample_shape: leading shape of the draws.
    :param generator: optional ``torch.Generator`` or integer seed for reproducible draws.
    :returns: integer labellings ``sample_shape + batch + (T,)`` (``-1`` at padded positions).

    Example::

        >>> import torch
        >>> from pyro_ebm.structured import sample_chain
        >>> g = torch.Generator().manual_seed(0)
        >>> y = sample_chain(torch.zeros(1, 3, 2), torch.zeros(2, 2), sample_shape=(1000,), generator=g)
        >>> tuple(y.shape), bool(abs(y.float().mean() - 0.5) < 0.05)
        ((1000, 1, 3), True)
    """
    check_beta(beta, allow_inf=True)
    sr = Semiring(beta)
    sample_shape = _as_size(sample_shape, "sample_shape")
    if isinstance(generator, int) and not isinstance(generator, bool):
        generator = torch.Generator(device=unary.device).manual_seed(check_seed(generator, "generator"))
    elif generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, an integer seed or None, got {type(generator).__name__}")
    u, p, a, b, n, batch_shape = _prepare(unary, pairwise, initial, final, lengths)
    B, T, K = u.shape
    S = int(math.prod(sample_shape))
    with torch.no_grad():
        if sr.tropical:
            _, path = _viterbi(u, p, a, b)
            y = path.expand(S, B, T).clone()
        else:
            (u, p, a, b), alphas, free = _log_forward(sr, u, p, a, b)
            _check_free(free, (B,))
            y = u.new_empty(S, B, T, dtype=torch.long)
            y[:, :, -1] = _gumbel_argmax((alphas[:, -1] + b).expand(S, B, K), generator)
            rows = torch.arange(B, device=u.device)
            for t in range(T - 2, -1, -1):
                pt = _step(p, t).transpose(-1, -2)  # [.., next, prev]
                col = pt[y[:, :, t + 1]] if pt.dim() == 2 else pt[rows, y[:, :, t + 1]]  # [S, B, K]
                y[:, :, t] = _gumbel_argmax(alphas[:, t] + col, generator)
    pad = _pad_mask(n, B, T, u.device)
    if pad is not None:
        y = y.masked_fill(pad, -1)
    return y.reshape(sample_shape + tuple(batch_shape) + (T,))


def kbest(unary, pairwise, k: int, initial=None, final=None, lengths=None):
    """The ``k`` lowest-energy labellings (list Viterbi: each trellis node keeps its ``k`` best partial paths).

    Arguments as :func:`chain_free_energy`. Returns ``(energies, paths)`` of shapes ``batch + (k,)``
    (ascending) and ``batch + (k, T)``. When fewer than ``k`` labellings exist, the missing ones have energy
    ``+inf`` (and meaningless paths). ``kbest(..., 1)`` is :func:`viterbi`.

    Example::

        >>> import torch
        >>> from pyro_ebm.structured import kbest
        >>> unary = torch.tensor([[[0.0, 1.0], [0.0, 2.0]]])
        >>> kbest(unary, torch.zeros(2, 2), 3)
        (tensor([[0., 1., 2.]]), tensor([[[0, 0],
                 [1, 0],
                 [0, 1]]]))
    """
    k = check_positive_int(k, "k")
    u, p, a, b, n, batch_shape = _prepare(unary, pairwise, initial, final, lengths)
    B, T, K = u.shape
    with torch.no_grad():
        msg = u.new_full((B, K, k), math.inf)
        msg[:, :, 0] = a + u[:, 0]
        pointers = []
        for t in range(1, T):
            cand = msg.unsqueeze(-1) + _step(p, t - 1).unsqueeze(-2)  # [B, K_prev, k, K_next]
            val, idx = cand.reshape(B, K * k, K).topk(k, dim=1, largest=False, sorted=True)  # [B, k, K]
            msg = val.transpose(1, 2) + u[:, t].unsqueeze(-1)
            pointers.append(idx.transpose(1, 2))  # [B, K_next, k] -> flat (prev state, prev rank)
        energies, flat = (msg + b.unsqueeze(-1)).reshape(B, K * k).topk(k, dim=1, largest=False, sorted=True)
        state, rank = flat // k, flat % k
        paths = u.new_empty(B, k, T, dtype=torch.long)
        paths[:, :, -1] = state
        for t in range(T - 2, -1, -1):
            prev = pointers[t].reshape(B, K * k).gather(1, state * k + rank)
            state, rank = prev // k, prev % k
            paths[:, :, t] = state
    pad = _pad_mask(n, B, T, u.device)
    if pad is not None:
        paths = paths.masked_fill(pad.unsqueeze(1), -1)
    return energies.reshape(tuple(batch_shape) + (k,)), paths.reshape(tuple(batch_shape) + (k, T))
