r"""Contrastive answers :math:`\hat y`: the "y-hat generation" column of the lecture's loss zoo.

Every generator is a :class:`Negatives` and is called the same way::

    y_hat = negatives(energy, y, x)     # y: [*batch, *event]  ->  y_hat: [n_neg, *batch, *event]

``y_hat[j, b]`` is the ``j``-th contrastive answer for the example ``y[b]`` (conditioned on ``x[b]``).
The leading ``n_neg`` dimension is always there, even when it is 1, and ``y_hat`` is detached (a
constant for the loss). :func:`negative_energies` turns it into the ``[*batch, n_neg]`` energies that the
pairwise losses of :mod:`pyro_ebm.losses` take as ``neg``::

    pos = energy(y, x)                                  # [*batch]
    neg = negative_energies(energy, y_hat, x)           # [*batch, n_neg]
    loss = losses.hinge(pos, neg, margin=1.0)

Conditioning ``x`` has shape ``[*batch, *x_event]`` (the same leading dimensions as ``y``). Generators
and :func:`negative_energies` call the energy on *flattened* batches, ``F(y [M, *event], x [M, *x_event])``,
so an energy only has to handle one batch dimension (an MLP on ``torch.cat([y, x], -1)`` works).

================================  =====================================  ============================
lecture's loss zoo row            y-hat generation                       generator
================================  =====================================  ============================
1-2 max likelihood (exhaustive)   all outputs                            :class:`Exhaustive`
3 max likelihood                  MC or MCMC                             :class:`MCMCNegatives`
3 (stock Pyro NUTS, a reference)  MCMC with ``pyro.infer.MCMC``          :class:`PyroNUTSNegatives`
4 contrastive divergence          truncated MCMC from the data           :class:`ContrastiveDivergence`
4 (persistent CD, replay buffer)  MCMC continued across steps            :class:`PersistentNegatives`
5-8 hinge, square-square, ...     most offending                         :class:`MostOffending`
9 GAN                             :math:`\hat y = g_u(z)`                :class:`LearnedGenerator`
10 denoising                      :math:`\hat y = N(y)` (corruption)     :class:`Corruption`
================================  =====================================  ============================

Stochastic generators take ``seed`` (an int or a ``torch.Generator``); the same seed gives the same
numbers. Generators with state (random-number generator, replay buffer, generator network and its
optimizer) have :meth:`~Negatives.state_dict` / :meth:`~Negatives.load_state_dict`, which
:func:`pyro_ebm.train.fit` stores in its checkpoints so training resumes bit for bit. Generators that
run a sampler put its per-call statistics in :attr:`~Negatives.diagnostics` (the training loop records
them in its history). Generators that run MCMC have :meth:`~Negatives.probe`, a short multi-chain
run of their own sampler that :class:`pyro_ebm.ml.SamplerDiagnostics` checks for R-hat and ESS.

The generators live in ``base`` (the interface and shapes),
``search`` (rows 1-2, 5-8), ``sampled`` (rows 3-4) and
``generated`` (rows 9-10); import them from ``pyro_ebm.negatives``.
"""

from .base import Negatives, negative_energies
from .generated import Corruption, LearnedGenerator
from .sampled import ContrastiveDivergence, MCMCNegatives, PersistentNegatives, PyroNUTSNegatives
from .search import Exhaustive, MostOffending

__all__ = [
    "Negatives",
    "negative_energies",
    "Exhaustive",
    "MCMCNegatives",
    "ContrastiveDivergence",
    "PersistentNegatives",
    "PyroNUTSNegatives",
    "MostOffending",
    "Corruption",
    "LearnedGenerator",
]
