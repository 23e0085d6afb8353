"""Structured prediction: energies over sequences, free energies over paths by dynamic programming.

* :class:`Semiring` -- the beta-soft-min semiring over energies (``beta = inf``: min-sum);
* chain factor graphs -- :func:`chain_free_energy`, :func:`chain_energy`, :func:`viterbi`,
  :func:`chain_marginals`, :func:`sample_chain`, :func:`kbest`, and :class:`LinearChainGibbs`, the
  chain's Gibbs distribution as a Pyro distribution;
* elastic matching -- :func:`dtw` and :func:`soft_dtw` (dynamic time warping, the 1-D constellation model);
* graph transformer networks -- :class:`Graph` (weighted acceptors and transducers with arc energies),
  :func:`compose`, :func:`intersect`, :func:`forward_score`, :func:`viterbi_score`, :func:`viterbi_path`,
  and the structured losses over graphs :func:`graph_nll`, :func:`graph_perceptron`, :func:`graph_hinge`.
"""

from .semiring import Semiring
from .chain import chain_energy, chain_free_energy, chain_marginals, kbest, pad_sequences, sample_chain, viterbi
from .dtw import dtw, soft_dtw, squared_distances
from .distribution import LinearChainGibbs
from .graph import Graph, compose, forward_score, intersect, viterbi_path, viterbi_score
from .graph_losses import graph_hinge, graph_nll, graph_perceptron, hamming_distance

__all__ = [
    "Semiring",
    "chain_free_energy",
    "chain_energy",
    "viterbi",
    "chain_marginals",
    "sample_chain",
    "kbest",
    "pad_sequences",
    "LinearChainGibbs",
    "dtw",
    "soft_dtw",
    "squared_distances",
    "Graph",
    "compose",
    "intersect",
    "forward_score",
    "viterbi_score",
    "viterbi_path",
    "graph_nll",
    "graph_perceptron",
    "graph_hinge",
    "hamming_distance",
]
