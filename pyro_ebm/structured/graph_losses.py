r"""Structured losses over graphs: the lecture's graph transformer network losses.

The answer :math:`y` is a label sequence, the latent variable :math:`z` a path (a segmentation) that
produces it, and the energy of an answer is the free energy over its paths,
:math:`F_\beta(x, y) = -\frac1\beta\log\sum_{z} e^{-\beta E_w(x, y, z)}` (at ``beta = inf``:
:math:`\min_z E_w(x, y, z)`). With graphs this is the :func:`~pyro_ebm.structured.forward_score` of

* ``target`` -- the graph of the paths that produce the desired answer (typically
  ``intersect(full, acceptor of y)``);
* ``full`` -- the graph of all the paths of all the answers (the recognizer composed with the grammar);
* ``wrong`` -- the graph of the paths of the wrong answers only (``full`` intersected with an acceptor of
  every answer but ``y``), for the losses that need the best *wrong* answer.

Each loss returns one value per graph with ``reduction="none"``, else their mean or sum, and delegates to
:mod:`pyro_ebm.losses` where the formula is the same.
"""

from __future__ import annotations

import math
import numbers

import torch

from .. import losses
from .._validation import check_beta
from .graph import Graph, _as_list, _forward_score, viterbi_path

__all__ = ["graph_nll", "graph_perceptron", "graph_hinge", "hamming_distance"]


def _score(graphs, beta, name: str) -> torch.Tensor:
    if not isinstance(graphs, Graph) and not (
        isinstance(graphs, (list, tuple)) and graphs and all(isinstance(g, Graph) for g in graphs)
    ):
        raise TypeError(f"{name} must be a Graph or a non-empty list of Graphs, got {type(graphs).__name__}")
    return _forward_score(graphs, beta, name)


def _finite(value: torch.Tensor, name: str, what: str) -> torch.Tensor:
    bad = ~torch.isfinite(value.detach())
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0].tolist())
        raise ValueError(f"{name} has no accepting path (at batch index {idx}): {what}")
    return value


def _same_shape(pos, neg, pos_name, neg_name):
    if pos.shape != neg.shape:
        raise ValueError(f"{pos_name} and {neg_name} must give free energies of the same shape, got "
                         f"{tuple(pos.shape)} and {tuple(neg.shape)}")


def graph_nll(target, full, beta=1.0, *, reduction: str = "mean") -> torch.Tensor:
    r"""Negative log-likelihood of the desired answer with the segmentation marginalised (trained globally):

    .. math:: L = F_\beta(x, y) - F_\beta(x) = F_\beta(\text{target}) + \frac1\beta \log
              \sum_{y', z'} e^{-\beta E_w(x, y', z')} = -\frac1\beta \log P_\beta(y \mid x).

    **Margin: infinite** (it pushes down every path of the desired answer and up every path of every
    answer, in proportion to its probability). ``target``'s paths must be paths of ``full`` for ``L >= 0``.

    :param target: graph(s) of the desired answer's paths (a :class:`~pyro_ebm.structured.Graph` or a list).
    :param full: graph(s) of all answers' paths; their free energies have the shape of ``target``'s.
    :param beta: inverse temperature > 0 (finite).
    :returns: losses of the free energies' shape for ``reduction="none"``, else a scalar.

    Example::

        >>> import torch
        >>> from pyro_ebm.structured import Graph, intersect, graph_nll
        >>> full = Graph(); a, b = full.add_node(start=True), full.add_node(accept=True)
        >>> _ = full.add_arc(a, b, 0, energy=1.0); _ = full.add_arc(a, b, 1, energy=2.0)
        >>> y = Graph(); a, b = y.add_node(start=True), y.add_node(accept=True); _ = y.add_arc(a, b, 1)
        >>> loss = graph_nll(intersect(full, y), full)  # -log softmax(-[1, 2])[1]
        >>> torch.allclose(loss, -torch.log_softmax(-torch.tensor([1.0, 2.0]), 0)[1])
        True
    """
    check_beta(beta)
    losses._check_reduction(reduction)
    pos = _finite(_score(target, beta, "target"), "target", "the desired answer is not among the paths")
    free = _finite(_score(full, beta, "full"), "full", "no answer at all")
    _same_shape(pos, free, "target", "full")
    return losses._reduce(pos - free, reduction)


def graph_perceptron(target, full, *, reduction: str = "mean") -> torch.Tensor:
    r"""Perceptron loss over graphs: the energy of the desired answer minus the energy of the best answer,
    :math:`L = \min_z E_w(x, y, z) - \min_{y', z'} E_w(x, y', z')` (Viterbi scores;
    :func:`pyro_ebm.losses.perceptron`). **Margin: 0.**

    Example::

        >>> from pyro_ebm.structured import Graph, intersect, graph_perceptron
        >>> full = Graph(); a, b = full.add_node(start=True), full.add_node(accept=True)
        >>> _ = full.add_arc(a, b, 0, energy=1.0); _ = full.add_arc(a, b, 1, energy=2.5)
        >>> y = Graph(); a, b = y.add_node(start=True), y.add_node(accept=True); _ = y.add_arc(a, b, 1)
        >>> graph_perceptron(intersect(full, y), full)
        tensor(1.5000)
    """
    losses._check_reduction(reduction)
    pos = _finite(_score(target, math.inf, "target"), "target", "the desired answer is not among the paths")
    best = _finite(_score(full, math.inf, "full"), "full", "no answer at all")
    _same_shape(pos, best, "target", "full")
    return losses.perceptron(pos, best, reduction=reduction)


def _unbatched(graphs):
    """The graphs one by one in the order of their free energies (a batched graph row by row)."""
    graphs, single = _as_list(graphs, "graph_hinge")
    if single:
        e = graphs[0].energy
        return graphs if e.dim() == 1 else [graphs[0].with_energy(row) for row in e.reshape(-1, e.shape[-1])]
    if any(g.energy.dim() != 1 for g in graphs):
        raise ValueError("wrong: a callable margin needs one Graph with a batched energy or a list of Graphs with "
                         "one energy per arc, not a list of batched Graphs")
    return graphs


def graph_hinge(target, wrong, margin=1.0, *, reduction: str = "mean") -> torch.Tensor:
    r"""Hinge loss over graphs with the most offending wrong answer :math:`\hat y`:

    .. math:: L = \left[\min_z E_w(x, y, z) - \min_{z} E_w(x, \hat y, z) + m(y, \hat y)\right]^+, \qquad
              \hat y = \operatorname{argmin}_{y' \ne y} \min_z E_w(x, y', z)

    (Viterbi scores; :func:`pyro_ebm.losses.hinge`). **Margin: m.**

    :param target: graph(s) of the desired answer's paths.
    :param wrong: graph(s) of the wrong answers' paths; a graph without accepting path (no wrong answer)
        contributes no loss.
    :param margin: a non-negative number or tensor (one per example), or a callable ``margin(labels) ->
        float`` given the output labels of the most offending wrong path (a list of ints), for example
        ``lambda labels: hamming_distance(y, labels)``.
    :returns: losses of the free energies' shape for ``reduction="none"``, else a scalar.

    Example::

        >>> from pyro_ebm.structured import Graph, graph_hinge, hamming_distance
        >>> def one(label, energy):
        ...     g = Graph(); a, b = g.add_node(start=True), g.add_node(accept=True)
        ...     _ = g.add_arc(a, b, label, energy=energy); return g
        >>> graph_hinge(one(3, 1.0), one(4, 1.5), margin=lambda labels: hamming_distance([3], labels))
        tensor(0.5000)
    """
    losses._check_reduction(reduction)
    pos = _finite(_score(target, math.inf, "target"), "target", "the desired answer is not among the paths")
    neg = _score(wrong, math.inf, "wrong")
    _same_shape(pos, neg, "target", "wrong")
    if callable(margin) and not isinstance(margin, torch.Tensor):
        graphs = _unbatched(wrong)
        ok = torch.isfinite(neg.detach()).reshape(-1).tolist()
        values = []
        for g, has_path in zip(graphs, ok):
            m = margin(viterbi_path(g).olabel.tolist()) if has_path else 0.0
            if isinstance(m, bool) or not isinstance(m, (numbers.Real, torch.Tensor)):
                raise TypeError(f"margin(labels) must return a number, got {type(m).__name__}")
            values.append(float(m))
        margin = torch.tensor(values, dtype=pos.dtype, device=pos.device).reshape(pos.shape)
    return losses.hinge(pos, neg, margin, reduction=reduction)


def hamming_distance(a, b) -> int:
    """Number of positions at which two label sequences differ, plus the difference of their lengths.

    Example::

        >>> from pyro_ebm.structured import hamming_distance
        >>> hamming_distance([1, 2, 3], [1, 5, 3, 4])
        2
    """
    seqs = []
    for name, s in (("a", a), ("b", b)):
        if isinstance(s, torch.Tensor):
            s = s.tolist()
        if isinstance(s, (str, bytes)) or not hasattr(s, "__len__"):
            raise TypeError(f"{name} must be a sequence of labels (a list, tuple or 1-D tensor), got {type(s).__name__}")
        s = list(s)
        bad = [v for v in s if isinstance(v, bool) or not isinstance(v, numbers.Integral)]
        if bad:
            raise TypeError(f"{name} must hold integer labels, got {bad[0]!r}")
        seqs.append(s)
    a, b = seqs
    return sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))
