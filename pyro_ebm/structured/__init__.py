"""Structured prediction: energies over sequences, free energies over paths by dynamic programming.

* :class:`Semiring` -- the beta-soft-min semiring over energies (``beta = inf``: min-sum);
* chain factor graphs -- :func:`chain_free_energy`, :func:`chain_energy`, :func:`viterbi`,
  :func:`chain_marginals`, :func:`sample_chain`, :func:`kbest`, and :class:`LinearChainGibbs`, the
  chain's Gibbs distribution as a Pyro distribution;
* elastic matching -- :func:`dtw` and :func:`soft_dtw` (dynamic time warping, the 1-D constellation model).
"""

from .semiring import Semiring
from .chain import chain_energy, chain_free_energy, chain_marginals, kbest, pad_sequences, sample_chain, viterbi
from .dtw import dtw, soft_dtw, squared_distances
from .distribution import LinearChainGibbs

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
]
