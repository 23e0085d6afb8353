r"""Weighted finite-state graphs with energies on their arcs: the objects of graph transformer networks.

A :class:`Graph` is a weighted acceptor or transducer: nodes (some of them *start* nodes, some *accept*
nodes) and arcs ``src -> dst`` carrying an input label, an output label (equal to the input label for an
acceptor) and an **energy** (lower is better; a float or a tensor that may require grad). A path runs from
a start node to an accept node; its energy is the sum of its arcs' energies, and its labels are read along
it. The free energy of a graph is the beta-soft-min over its accepting paths,

.. math:: F_\beta(g) = -\frac1\beta \log \sum_{\pi \in \text{paths}(g)} e^{-\beta E(\pi)}, \qquad
          F_\infty(g) = \min_\pi E(\pi),

computed by :func:`forward_score` with the semiring of :class:`~pyro_ebm.structured.Semiring`
(:func:`viterbi_score` is ``beta = inf``, :func:`viterbi_path` the minimising path). Its gradient with
respect to an arc's energy is the Gibbs probability that a path uses the arc (the arc posterior; at
``beta = inf`` the indicator of the Viterbi path), computed by one backward sweep.

:func:`compose` and :func:`intersect` build new graphs whose paths are the matching pairs of paths of their
inputs, with the energies added, so that "the energy of an answer" -- the free energy over the paths that
produce it -- is the forward score of a composition. There are no epsilon (empty-label) arcs: every arc
consumes one label; a symbol such as "space" with self-loops in a grammar takes their place.

The dynamic program runs over the nodes grouped by topological level (the longest path reaching them), one
vectorised step per level over every arc entering the level, and over a whole batch at once: a list of
graphs of different shapes is evaluated as one disjoint union, and a graph whose energy tensor has leading
batch dimensions (:meth:`Graph.with_energy`) is many graphs of the same shape.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .._validation import check_finite
from .semiring import Semiring, _wide_dtype

__all__ = ["Graph", "compose", "intersect", "forward_score", "viterbi_score", "viterbi_path"]


def _check_int(value, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        rng = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return int(value)


class Graph:
    r"""A weighted acceptor or transducer whose arcs carry energies.

    Build it with :meth:`add_node` and :meth:`add_arc`; read it with :attr:`energy`, :attr:`src`,
    :attr:`dst`, :attr:`ilabel`, :attr:`olabel`, :attr:`start_nodes`, :attr:`accept_nodes`. Graphs made
    by :func:`compose`, :func:`intersect`, :func:`viterbi_path` and :meth:`with_energy` have a fixed
    structure (adding to them raises); their :attr:`origin` holds, for each arc, the indices of the arcs
    of the inputs it was made from, so that a structure can be re-evaluated with new input energies
    (``g.with_energy(e1[..., g.origin[0]] + e2[..., g.origin[1]])`` for a composition).

    Example::

        >>> import torch
        >>> from pyro_ebm.structured import Graph, forward_score
        >>> g = Graph()
        >>> a, b = g.add_node(start=True), g.add_node(accept=True)
        >>> w = torch.tensor(1.0, requires_grad=True)
        >>> g.add_arc(a, b, 0, energy=w), g.add_arc(a, b, 1, energy=1.0)
        (0, 1)
        >>> f = forward_score(g)  # -log(2 e^-1) = 1 - log 2
        >>> print(round(f.item(), 4))
        0.3069
        >>> f.backward(); w.grad  # the arc posterior
        tensor(0.5000)
    """

    def __init__(self):
        self._start, self._accept = [], []
        self._src, self._dst, self._il, self._ol, self._items = [], [], [], [], []
        self._s = None  # the structure as numpy arrays (built lazily, shared by with_energy copies)
        self._energy = None
        self._frozen = None  # reason the structure is fixed
        self.origin = None

    # ------------------------------------------------------------------------------------------ building

    def _check_mutable(self, verb):
        if self._frozen:
            raise ValueError(f"{verb}: this graph's structure is fixed ({self._frozen}); build a new Graph instead")

    def add_node(self, start: bool = False, accept: bool = False) -> int:
        """Add a node (optionally a start and/or accept node); returns its index."""
        self._check_mutable("add_node")
        for name, v in (("start", start), ("accept", accept)):
            if not isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {v!r}")
        self._start.append(bool(start))
        self._accept.append(bool(accept))
        self._s = None
        return len(self._start) - 1

    def add_arc(self, src, dst, ilabel, olabel=None, energy=0.0) -> int:
        """Add an arc ``src -> dst`` with input label ``ilabel`` (an integer >= 0), output label ``olabel``
        (default: ``ilabel``, an acceptor arc) and a finite ``energy`` (a float or a one-element tensor,
        which may require grad); returns the arc's index."""
        self._check_mutable("add_arc")
        n = len(self._start)
        if n == 0:
            raise ValueError("add_arc: the graph has no nodes yet; add them with add_node() first")
        src, dst = (_check_node(v, name, n) for name, v in (("src", src), ("dst", dst)))
        ilabel = _check_int(ilabel, "ilabel")
        olabel = ilabel if olabel is None else _check_int(olabel, "olabel")
        if isinstance(energy, torch.Tensor):
            if energy.numel() != 1 or not energy.is_floating_point():
                raise TypeError(f"energy must be a float or a one-element floating-point tensor, got {tuple(energy.shape)} {energy.dtype}")
            if not bool(torch.isfinite(energy.detach()).all()):
                raise ValueError(f"energy of the arc {src} -> {dst} must be finite, got {energy.item()}")
            energy = energy.reshape(())
        else:
            if isinstance(energy, bool) or not isinstance(energy, numbers.Real):
                raise TypeError(f"energy must be a real number or a one-element tensor, got {type(energy).__name__}")
            if not math.isfinite(energy):
                raise ValueError(f"energy of the arc {src} -> {dst} must be finite, got {energy}")
            energy = float(energy)
        self._src.append(src)
        self._dst.append(dst)
        self._il.append(ilabel)
        self._ol.append(olabel)
        self._items.append(energy)
        self._s = None
        return len(self._src) - 1

    def with_energy(self, energy: torch.Tensor) -> "Graph":
        """The same structure with arc energies ``energy`` of shape ``batch + (num_arcs,)`` (finite); a
        leading batch shape makes it a batch of graphs of the same shape (:func:`forward_score` then
        returns that batch shape)."""
        if not isinstance(energy, torch.Tensor) or not energy.is_floating_point():
            raise TypeError(f"energy must be a floating-point tensor batch + ({self.num_arcs},)")
        if energy.dim() == 0 or energy.shape[-1] != self.num_arcs:
            raise ValueError(f"energy must have shape batch + ({self.num_arcs},) (one per arc), got {tuple(energy.shape)}")
        check_finite(energy.detach(), "energy")
        return _frozen(self._arrays(), energy, "made by with_energy", self.origin)

    # ------------------------------------------------------------------------------------------- reading

    def _arrays(self) -> dict:
        if self._s is None:
            as_long = lambda x: np.asarray(x, dtype=np.int64).reshape(-1)  # noqa: E731
            self._s = dict(src=as_long(self._src), dst=as_long(self._dst), il=as_long(self._il),
                           ol=as_long(self._ol), start=np.asarray(self._start, dtype=bool).reshape(-1),
                           accept=np.asarray(self._accept, dtype=bool).reshape(-1))
        return self._s

    @property
    def num_nodes(self) -> int:
        return len(self._arrays()["start"])

    @property
    def num_arcs(self) -> int:
        return len(self._arrays()["src"])

    @property
    def start_nodes(self) -> list:
        return np.flatnonzero(self._arrays()["start"]).tolist()

    @property
    def accept_nodes(self) -> list:
        return np.flatnonzero(self._arrays()["accept"]).tolist()

    src = property(lambda self: torch.from_numpy(self._arrays()["src"].copy()), doc="Source node of each arc [A].")
    dst = property(lambda self: torch.from_numpy(self._arrays()["dst"].copy()), doc="Destination of each arc [A].")
    ilabel = property(lambda self: torch.from_numpy(self._arrays()["il"].copy()), doc="Input label of each arc [A].")
    olabel = property(lambda self: torch.from_numpy(self._arrays()["ol"].copy()), doc="Output label of each arc [A].")

    @property
    def is_acceptor(self) -> bool:
        """Whether every arc has equal input and output labels."""
        s = self._arrays()
        return bool((s["il"] == s["ol"]).all())

    @property
    def energy(self) -> torch.Tensor:
        """Arc energies, shape ``batch + (num_arcs,)`` (differentiable with respect to the energies given)."""
        if self._energy is not None:
            return self._energy
        tensors = [e for e in self._items if isinstance(e, torch.Tensor)]
        if not tensors:
            return torch.tensor(self._items, dtype=torch.get_default_dtype()).reshape(-1)
        dtype, device = tensors[0].dtype, tensors[0].device
        for e in tensors[1:]:
            dtype = torch.promote_types(dtype, e.dtype)
        return torch.stack([torch.as_tensor(e, dtype=dtype, device=device) for e in self._items])

    def __repr__(self):
        kind = "acceptor" if self.is_acceptor else "transducer"
        return (f"Graph({kind}, {self.num_nodes} nodes, {self.num_arcs} arcs, start={self.start_nodes}, "
                f"accept={self.accept_nodes})")


def _check_node(value, name: str, n: int) -> int:
    value = _check_int(value, name)
    if value >= n:
        raise ValueError(f"{name} = {value} is not a node of this graph (it has {n} nodes, 0..{n - 1}); add it with add_node() first")
    return value


def _frozen(arrays: dict, energy: torch.Tensor, why: str, origin=None) -> Graph:
    g = Graph()
    g._s, g._energy, g._frozen, g.origin = arrays, energy, why, origin
    return g


def _check_graph(g, name: str) -> Graph:
    if not isinstance(g, Graph):
        raise TypeError(f"{name} must be a pyro_ebm.structured.Graph, got {type(g).__name__}")
    return g


# ---------------------------------------------------------------------------------------------- compose


def _reach(n: int, src: np.ndarray, dst: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Nodes reachable from ``seeds`` (a boolean mask) along the arcs ``src -> dst``."""
    seen = seeds.copy()
    frontier = seeds.copy()
    while frontier.any():
        new = np.zeros(n, dtype=bool)
        new[dst[frontier[src]]] = True
        frontier = new & ~seen
        seen |= new
    return seen


def _join(keys1: np.ndarray, keys2: np.ndarray):
    """All pairs ``(i, j)`` with ``keys1[i] == keys2[j]``, vectorised (sort ``keys2``, then ranges)."""
    order = np.argsort(keys2, kind="stable")
    sorted2 = keys2[order]
    lo = np.searchsorted(sorted2, keys1, "left")
    count = np.searchsorted(sorted2, keys1, "right") - lo
    i = np.repeat(np.arange(len(keys1)), count)
    first = np.repeat(np.cumsum(count) - count, count)
    j = order[np.repeat(lo, count) + np.arange(len(i)) - first]
    return i, j


def compose(first: Graph, second: Graph) -> Graph:
    r"""Composition of two transducers: a path of the result is a pair of paths, one of ``first`` and one
    of ``second``, whose output labels (of ``first``) equal the input labels (of ``second``); it reads the
    input labels of ``first``, writes the output labels of ``second``, and its energy is the sum of the
    two paths' energies. Its nodes are the pairs of nodes that lie on such a pair of paths (start: pairs of
    start nodes, accept: pairs of accept nodes); nodes that no accepting path visits are removed.

    The arc energies of the result are ``first.energy[..., o1] + second.energy[..., o2]`` with ``(o1, o2)
    = result.origin`` (batch dimensions broadcast), so gradients flow to both inputs. The inputs may have
    cycles (a grammar with self-loops); the result is acyclic when one of them is. When no pair of paths
    matches, the result has a start node, an accept node and no arcs (free energy ``+inf``).

    Example::

        >>> from pyro_ebm.structured import Graph, compose
        >>> spell = Graph()  # a transducer reading label 1 and writing label 0
        >>> a, b = spell.add_node(start=True), spell.add_node(accept=True)
        >>> _ = spell.add_arc(a, b, 1, 0, energy=0.5)
        >>> g = Graph()
        >>> a, b = g.add_node(start=True), g.add_node(accept=True)
        >>> _ = g.add_arc(a, b, 0, energy=2.0)
        >>> c = compose(spell, g)
        >>> c.ilabel.tolist(), c.olabel.tolist(), c.energy.tolist()
        ([1], [0], [2.5])
    """
    _check_graph(first, "first")
    _check_graph(second, "second")
    return _compose(first, second, "compose")


def intersect(first: Graph, second: Graph) -> Graph:
    r"""Intersection of two acceptors: the paths of the result are the pairs of paths with the same label
    sequence, with the energies added (the composition of acceptors). ``origin`` as in :func:`compose`.

    Example::

        >>> from pyro_ebm.structured import Graph, intersect, forward_score
        >>> def line(labels, energy):  # an acceptor of one string
        ...     g = Graph()
        ...     nodes = [g.add_node(start=k == 0, accept=k == len(labels)) for k in range(len(labels) + 1)]
        ...     for k, l in enumerate(labels):
        ...         _ = g.add_arc(nodes[k], nodes[k + 1], l, energy=energy)
        ...     return g
        >>> i = intersect(line([1, 2], 0.5), line([1, 2], 1.0))
        >>> i.num_arcs, forward_score(i).item()
        (2, 3.0)
        >>> intersect(line([1, 2], 0.5), line([2, 1], 1.0)).num_arcs  # no common string
        0
    """
    for name, g in (("first", first), ("second", second)):
        if not _check_graph(g, name).is_acceptor:
            raise ValueError(f"{name} must be an acceptor (input label = output label on every arc) for intersect; use compose for transducers")
    return _compose(first, second, "intersect")


def _compose(g1: Graph, g2: Graph, what: str) -> Graph:
    s1, s2 = g1._arrays(), g2._arrays()
    n2 = len(s2["start"])
    i1, i2 = _join(s1["ol"], s2["il"])
    psrc = s1["src"][i1] * n2 + s2["src"][i2]
    pdst = s1["dst"][i1] * n2 + s2["dst"][i2]
    starts = (np.flatnonzero(s1["start"])[:, None] * n2 + np.flatnonzero(s2["start"])[None, :]).reshape(-1)
    accepts = (np.flatnonzero(s1["accept"])[:, None] * n2 + np.flatnonzero(s2["accept"])[None, :]).reshape(-1)
    ids = np.unique(np.concatenate([psrc, pdst, starts, accepts]))
    src, dst = np.searchsorted(ids, psrc), np.searchsorted(ids, pdst)
    n = len(ids)
    is_start, is_accept = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    is_start[np.searchsorted(ids, starts)] = True
    is_accept[np.searchsorted(ids, accepts)] = True
    fwd = _reach(n, src, dst, is_start)
    bwd = _reach(n, dst, src, is_accept)
    keep_node = fwd & bwd
    keep_arc = fwd[src] & bwd[dst]
    e1, e2 = g1.energy, g2.energy
    if not keep_node.any():  # empty language: a start node, an accept node, no arcs
        arrays = dict(src=np.zeros(0, np.int64), dst=np.zeros(0, np.int64), il=np.zeros(0, np.int64),
                      ol=np.zeros(0, np.int64), start=np.array([True, False]), accept=np.array([False, True]))
        batch = torch.broadcast_shapes(e1.shape[:-1], e2.shape[:-1])
        dtype = torch.promote_types(e1.dtype, e2.dtype)
        empty = torch.zeros(batch + (0,), dtype=dtype, device=e1.device)
        return _frozen(arrays, empty, f"made by {what}", (torch.zeros(0, dtype=torch.long),) * 2)
    new_id = np.cumsum(keep_node) - 1
    i1, i2 = i1[keep_arc], i2[keep_arc]
    arrays = dict(src=new_id[src[keep_arc]], dst=new_id[dst[keep_arc]], il=s1["il"][i1], ol=s2["ol"][i2],
                  start=is_start[keep_node], accept=is_accept[keep_node])
    o1, o2 = torch.from_numpy(i1), torch.from_numpy(i2)
    energy = e1[..., o1.to(e1.device)] + e2[..., o2.to(e2.device)]
    return _frozen(arrays, energy, f"made by {what}", (o1, o2))


# ------------------------------------------------------------------------------------------ the program


def _levels(s: dict, what: str) -> np.ndarray:
    """Topological level of every node (the longest path from a node without incoming arcs), cached in the
    structure; raises if the graph has a cycle."""
    if "level" in s:
        return s["level"]
    n, src, dst = len(s["start"]), s["src"], s["dst"]
    indeg = np.bincount(dst, minlength=n)
    level = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    frontier = indeg == 0
    order = np.argsort(src, kind="stable")
    first = np.searchsorted(src[order], np.arange(n + 1))
    depth = 0
    while frontier.any():
        level[frontier] = depth
        done |= frontier
        nodes = np.flatnonzero(frontier)
        cnt = first[nodes + 1] - first[nodes]
        arcs = order[np.repeat(first[nodes], cnt) + np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)]
        np.subtract.at(indeg, dst[arcs], 1)
        frontier = np.zeros(n, dtype=bool)
        frontier[dst[arcs]] = True
        frontier &= (indeg == 0) & ~done
        depth += 1
    if not done.all():
        bad = np.flatnonzero(~done)[:8].tolist()
        raise ValueError(f"{what} needs an acyclic graph, but this graph has a cycle (nodes on or after it: {bad}...)")
    s["level"] = level
    return level


class _Plan:
    """The union of a list of structures, arcs sorted by the level of their destination, as tensors."""

    def __init__(self, arrays, what: str, device):
        srcs, dsts, levels, starts, accepts, comps = [], [], [], [], [], []
        off = 0
        for k, s in enumerate(arrays):
            where = f" (graph {k})" if len(arrays) > 1 else ""
            if not s["start"].any():
                raise ValueError(f"{what}: the graph{where} has no start node; mark one with add_node(start=True)")
            if not s["accept"].any():
                raise ValueError(f"{what}: the graph{where} has no accept node; mark one with add_node(accept=True)")
            levels.append(_levels(s, what))
            srcs.append(s["src"] + off)
            dsts.append(s["dst"] + off)
            starts.append(np.flatnonzero(s["start"]) + off)
            acc = np.flatnonzero(s["accept"])
            accepts.append(acc + off)
            comps.append(np.full(len(acc), k))
            off += len(s["start"])
        src, dst, level = np.concatenate(srcs), np.concatenate(dsts), np.concatenate(levels)
        self.num_nodes, self.num_graphs = off, len(arrays)
        dl = level[dst]
        perm = np.argsort(dl, kind="stable")
        src, dst, dl = src[perm], dst[perm], dl[perm]
        T = lambda x: torch.as_tensor(x, dtype=torch.long, device=device)  # noqa: E731
        self.perm, self.src = T(perm), T(src)
        self.steps = []
        bounds = np.searchsorted(dl, np.arange(1, (dl.max() if len(dl) else 0) + 2))
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            if hi > lo:
                nodes, local = np.unique(dst[lo:hi], return_inverse=True)
                self.steps.append((int(lo), int(hi), T(nodes), T(local), T(src[lo:hi]), T(np.arange(lo, hi))))
        self.start = T(np.concatenate(starts))
        self.accept, self.comp = T(np.concatenate(accepts)), T(np.concatenate(comps))


def _scatter_best(v, index, n: int, tropical: bool):
    """Semiring sum of ``v [B, a]`` (log-weights) into ``n`` bins by ``index [a]``; -inf for empty bins."""
    idx = index.expand(v.shape[0], -1)
    m = v.new_full((v.shape[0], n), -math.inf).scatter_reduce(1, idx, v, "amax", include_self=True)
    if tropical:
        return m
    safe = torch.where(torch.isfinite(m), m, torch.zeros((), dtype=m.dtype, device=m.device))
    total = v.new_zeros(v.shape[0], n).scatter_add(1, idx, torch.exp(v - safe.gather(1, idx)))
    return safe + torch.log(total)


def _first_hit(hit, pos, index, n: int):
    """For each bin, the smallest ``pos`` among entries with ``hit`` (``-1`` if none)."""
    big = torch.iinfo(torch.long).max
    p = torch.where(hit, pos.expand_as(hit), torch.full((), big, dtype=torch.long, device=hit.device))
    out = torch.full((hit.shape[0], n), big, dtype=torch.long, device=hit.device)
    out = out.scatter_reduce(1, index.expand_as(hit), p, "amin", include_self=True)
    return torch.where(out == big, torch.full((), -1, dtype=torch.long, device=out.device), out)


def _forward(sr: Semiring, s: torch.Tensor, plan: _Plan):
    """Forward messages ``alpha [B, N]`` (log-weights of all paths from a start node to each node), the
    per-graph ``logz [B, C]``, and at beta = inf back-pointers (sorted arc position, -1: the path starts
    here) and the chosen accept node of each graph."""
    B = s.shape[0]
    alpha = s.new_full((B, plan.num_nodes), -math.inf)
    alpha[:, plan.start] = 0.0
    bp = torch.full((B, plan.num_nodes), -1, dtype=torch.long, device=s.device) if sr.tropical else None
    for lo, hi, nodes, local, src, pos in plan.steps:
        v = alpha[:, src] + s[:, lo:hi]
        best = _scatter_best(v, local, len(nodes), sr.tropical)
        cur = alpha[:, nodes]
        if sr.tropical:
            take = best > cur  # a start node keeps its empty start on ties
            arc = _first_hit(v == best.gather(1, local.expand(B, -1)), pos, local, len(nodes))
            alpha[:, nodes] = torch.where(take, best, cur)
            bp[:, nodes] = torch.where(take, arc, bp[:, nodes])
        else:
            alpha[:, nodes] = torch.logaddexp(cur, best)
    va = alpha[:, plan.accept]
    logz = _scatter_best(va, plan.comp, plan.num_graphs, sr.tropical)
    chosen = None
    if sr.tropical:
        hit = (va == logz.gather(1, plan.comp.expand(B, -1))) & (va > -math.inf)
        chosen = _first_hit(hit, torch.arange(len(plan.accept), device=s.device), plan.comp, plan.num_graphs)
    return alpha, logz, bp, chosen


def _backward(sr: Semiring, s, plan: _Plan, alpha, logz, bp, chosen, grad):
    """Arc posteriors times the incoming gradient ``grad [B, C]`` (sorted arc order): one reverse sweep of
    the flow ``G[n] = d logZ / d alpha[n]``."""
    B = s.shape[0]
    G = torch.zeros_like(alpha)
    if sr.tropical:
        ok = chosen >= 0
        node = plan.accept[chosen.clamp_min(0)]
        G.scatter_add_(1, node, torch.where(ok, grad, torch.zeros_like(grad)))
    else:
        w = torch.exp(alpha[:, plan.accept] - logz.gather(1, plan.comp.expand(B, -1))).nan_to_num_(nan=0.0)
        G[:, plan.accept] += grad.gather(1, plan.comp.expand(B, -1)) * w
    out = torch.zeros_like(s)
    for lo, hi, nodes, local, src, pos in reversed(plan.steps):
        idx = local.expand(B, -1)
        g_dst = G[:, nodes].gather(1, idx)
        if sr.tropical:
            w = (bp[:, nodes].gather(1, idx) == pos).to(s.dtype)
        else:
            a_dst = alpha[:, nodes].gather(1, idx)
            w = torch.exp(alpha[:, src] + s[:, lo:hi] - a_dst).nan_to_num_(nan=0.0)
        flow = g_dst * w
        out[:, lo:hi] = flow
        G.index_add_(1, src, flow)
    return out


class _ForwardScore(torch.autograd.Function):
    @staticmethod
    def forward(ctx, energy, beta, plan):
        sr = Semiring(beta)
        s = sr._to_log(energy[:, plan.perm].to(_wide_dtype(energy)))  # paths differ in length: see _wide_dtype
        alpha, logz, bp, chosen = _forward(sr, s, plan)
        ctx.sr, ctx.plan, ctx.dtype = sr, plan, energy.dtype
        ctx.save_for_backward(s, alpha, logz, *((bp, chosen) if sr.tropical else ()))
        return sr._from_log(logz).to(energy.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        s, alpha, logz, *rest = ctx.saved_tensors
        bp, chosen = rest if rest else (None, None)
        flow = _backward(ctx.sr, s, ctx.plan, alpha, logz, bp, chosen, grad.to(s.dtype))
        out = torch.empty_like(flow, dtype=ctx.dtype)
        out[:, ctx.plan.perm] = flow.to(ctx.dtype)
        return out, None, None


def _as_list(graphs, what: str):
    if isinstance(graphs, Graph):
        return [graphs], True
    if isinstance(graphs, (list, tuple)) and graphs and all(isinstance(g, Graph) for g in graphs):
        return list(graphs), False
    raise TypeError(f"graphs must be a Graph or a non-empty list of Graphs for {what}, got {type(graphs).__name__}")


def _energies(graphs, single: bool, name: str):
    """The arc energies of ``graphs`` concatenated, ``batch + (total arcs,)``, and the batch shape. Raises
    if an energy is NaN (a learnable energy that diverged); ``+inf`` is kept: it forbids the arc."""
    es = [g.energy for g in graphs]
    for k, e in enumerate(es):
        nan = torch.isnan(e.detach())
        if bool(nan.any()):
            where = nan.nonzero()[0].tolist()
            arc = f"arc {where[-1]}" + (f" at batch index {tuple(where[:-1])}" if len(where) > 1 else "")
            raise ValueError(
                f"{name if single else f'{name}[{k}]'} has an arc energy that is NaN ({arc}, "
                f"{int(nan.sum())} NaN in all); arc energies must be numbers or +inf (a forbidden arc)"
            )
    dtype = es[0].dtype
    for e in es[1:]:
        dtype = torch.promote_types(dtype, e.dtype)
    batch = torch.broadcast_shapes(*(e.shape[:-1] for e in es))
    es = [e.to(dtype).expand(batch + e.shape[-1:]) for e in es]
    return torch.cat(es, -1), batch


def forward_score(graphs, beta=1.0) -> torch.Tensor:
    r"""Free energy over the accepting paths: :math:`-\frac1\beta \log\sum_\pi e^{-\beta E(\pi)}`.

    :param graphs: an acyclic :class:`Graph` (energy ``batch + (A,)``), or a list of them (evaluated
        together as one disjoint union; their batch shapes broadcast).
    :param beta: inverse temperature > 0; ``float("inf")`` gives the minimum path energy
        (:func:`viterbi_score`).
    :returns: shape ``batch`` for one graph, ``batch + (len(graphs),)`` for a list; ``+inf`` where no
        accepting path exists. Differentiable: the gradient with respect to each arc energy is the
        probability that a path uses the arc (at ``beta = inf``, the indicator of the Viterbi path).
        The dtype is that of the energies; the recursion accumulates in float64 (paths of different lengths
        leave no exact normalisation per level, and float32 would lose the differences of size 1 between
        path energies of size 1e6). An arc energy may be ``+inf`` (a forbidden arc); a NaN raises.

    Example::

        >>> import torch
        >>> from pyro_ebm.structured import Graph, forward_score
        >>> g = Graph()
        >>> n = [g.add_node(start=True), g.add_node(), g.add_node(accept=True)]
        >>> for e, (u, v) in zip([1.0, 2.0, 0.5], [(0, 1), (1, 2), (0, 2)]):
        ...     _ = g.add_arc(u, v, 0, energy=e)
        >>> # two paths, energies 3 and 0.5
        >>> torch.allclose(forward_score(g, beta=2.0), -torch.logsumexp(-2 * torch.tensor([3.0, 0.5]), 0) / 2)
        True
        >>> forward_score(g, beta=float("inf"))
        tensor(0.5000)
    """
    return _forward_score(graphs, beta, "graphs")


def _forward_score(graphs, beta, name: str) -> torch.Tensor:
    """:func:`forward_score`, with ``name`` for the graphs in error messages."""
    sr = Semiring(beta)
    graphs, single = _as_list(graphs, "forward_score")
    energy, batch = _energies(graphs, single, name)
    plan = _Plan([g._arrays() for g in graphs], "forward_score", energy.device)
    B = int(math.prod(batch))
    out = _ForwardScore.apply(energy.reshape(B, energy.shape[-1]), sr.beta, plan)
    out = out.reshape(batch + (len(graphs),))
    return out.squeeze(-1) if single else out


def viterbi_score(graphs) -> torch.Tensor:
    """Minimum energy of an accepting path: :func:`forward_score` at ``beta = inf`` (same arguments and
    shapes; the gradient is the indicator of the minimising path).

    Example::

        >>> from pyro_ebm.structured import Graph, viterbi_score
        >>> g = Graph(); a, b = g.add_node(start=True), g.add_node(accept=True)
        >>> _ = g.add_arc(a, b, 0, energy=3.0); _ = g.add_arc(a, b, 1, energy=-1.0)
        >>> viterbi_score(g)
        tensor(-1.)
    """
    return forward_score(graphs, math.inf)


def viterbi_path(graphs):
    """The minimum-energy accepting path, as a linear graph (its arcs in path order).

    :param graphs: an acyclic :class:`Graph` with one energy per arc (energy of shape ``(A,)``), or a list
        of them (decoded together).
    :returns: a :class:`Graph` (a list of them for a list): nodes ``0..k`` in a line, start ``0``, accept
        ``k``, the arcs of the path with their labels and energies (differentiable), and ``origin =
        (arc indices in the input,)``. ``forward_score`` of it equals :func:`viterbi_score` of the input.
        Ties go to the arc added first. Raises if a graph has no accepting path.

    Example::

        >>> from pyro_ebm.structured import Graph, viterbi_path
        >>> g = Graph(); n = [g.add_node(start=True), g.add_node(), g.add_node(accept=True)]
        >>> for l, e, (u, v) in zip([5, 6, 7], [1.0, 2.0, 4.0], [(0, 1), (1, 2), (0, 2)]):
        ...     _ = g.add_arc(u, v, l, energy=e)
        >>> p = viterbi_path(g)
        >>> p.ilabel.tolist(), p.energy.tolist(), p.origin[0].tolist()
        ([5, 6], [1.0, 2.0], [0, 1])
    """
    graphs, single = _as_list(graphs, "viterbi_path")
    for k, g in enumerate(graphs):
        if g.energy.dim() != 1:
            raise ValueError(f"graphs{'' if single else f'[{k}]'} must have one energy per arc (shape (A,)) for "
                             f"viterbi_path, got energy of shape {tuple(g.energy.shape)}; decode a batch as a list")
    energy, _ = _energies(graphs, single, "graphs")
    plan = _Plan([g._arrays() for g in graphs], "viterbi_path", energy.device)
    sr = Semiring(math.inf)
    with torch.no_grad():
        s = sr._to_log(energy[plan.perm].unsqueeze(0).to(_wide_dtype(energy)))  # as in forward_score
        alpha, logz, bp, chosen = _forward(sr, s, plan)
    bp, chosen = bp[0].cpu().numpy(), chosen[0].cpu().numpy()
    perm, src = plan.perm.cpu().numpy(), plan.src.cpu().numpy()
    accept = plan.accept.cpu().numpy()
    out, offset = [], 0
    for k, g in enumerate(graphs):
        if chosen[k] < 0:
            raise ValueError(f"graphs{'' if single else f'[{k}]'} has no accepting path, so it has no Viterbi path")
        node, arcs = accept[chosen[k]], []
        while bp[node] >= 0:
            arcs.append(perm[bp[node]] - offset)
            node = src[bp[node]]
        arcs = np.asarray(arcs[::-1], dtype=np.int64)
        s_ = g._arrays()
        m = len(arcs)
        arrays = dict(src=np.arange(m, dtype=np.int64), dst=np.arange(1, m + 1, dtype=np.int64), il=s_["il"][arcs],
                      ol=s_["ol"][arcs], start=np.arange(m + 1) == 0, accept=np.arange(m + 1) == m)
        idx = torch.from_numpy(arcs)
        out.append(_frozen(arrays, g.energy[idx.to(g.energy.device)], "made by viterbi_path", (idx,)))
        offset += g.num_arcs
    return out[0] if single else out
