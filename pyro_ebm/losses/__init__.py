r"""The loss zoo of contrastive energy-based learning, as plain functions of energies.

Every loss here takes *energies* (tensors computed by an energy, never the model itself), returns one loss
per example with ``reduction="none"``, and averages (``"mean"``, the default) or adds (``"sum"``) them
otherwise, in the manner of :mod:`torch.nn.functional`.

Notation: ``pos`` is the energy of the desired answer :math:`F(x, y)`; ``neg`` is the energy of a
contrastive answer :math:`F(x, \hat y)`; ``margin`` is :math:`m(y, \hat y)`.

The functions come in four families.

* **Pairwise losses** :func:`energy_loss`, :func:`perceptron`, :func:`hinge`, :func:`log_loss`,
  :func:`lvq2`, :func:`mce`, :func:`square_square`, :func:`square_exp`, :func:`simple`,
  :func:`min_hinge`, :func:`square_hinge`. ``pos`` has the batch shape; ``neg`` has the same shape (one
  contrastive answer per example) or the batch shape plus one trailing dimension of ``p`` contrastive
  answers per example. With several contrastive answers the per-pair loss
  :math:`H(F(x, y), F(x, \hat y_j), m)` is **summed** over ``j``, which is the lecture's general margin
  loss :math:`\sum_{\hat y} H(F(x,y), F(x,\hat y), m(y,\hat y))` over a chosen set of outputs.
  ``margin`` is a non-negative float or tensor; a tensor broadcasts against the batch shape (one margin
  per example) or, when it has as many dimensions as ``neg``, against ``neg`` (one margin per pair).
  ``pos`` must be finite; ``neg`` may hold ``+inf``, the energy of an impossible answer, whose pair then
  adds nothing to the loss (except in :func:`ml_sampled`, whose negatives are samples and so finite). A
  NaN or ``-inf`` energy raises a ``ValueError`` that names the argument.
* **Losses over a finite set of outputs** :func:`nll`, :func:`mee`, :func:`general_margin` take the
  energies of all candidate outputs ``[*batch, K]`` and the indices ``target`` ``[*batch]`` of the
  desired ones. An energy of ``+inf`` excludes a candidate; the desired candidate's energy must be finite
  (in :func:`mee` it may be ``+inf``: probability 0, loss 1).
* **Group losses** :func:`info_nce`, :func:`nce`, :func:`nca`.
* **Maximum likelihood with sampled negatives** :func:`ml_sampled` (also contrastive divergence).

The "margin" quoted in every docstring is the column of the lecture's table: ``0`` (the loss can be zero
while a wrong answer has the same energy as the right one), ``m`` (the loss is zero only once the wrong
answers are at least ``m`` above the right one) or ``infinite`` (the loss keeps pushing the energies apart
however far apart they are).

Sources: the lecture (LeCun & Canziani, NYU 2023) and, where its slides disagree with each other,
LeCun, Chopra, Hadsell, Ranzato & Huang (2006), "A Tutorial on Energy-Based Learning".
"""

from ._common import _check_reduction, _reduce  # noqa: F401  (used by the structured losses)
from ._group import info_nce, nca, nce
from ._pairwise import (
    energy_loss,
    hinge,
    log_loss,
    lvq2,
    mce,
    min_hinge,
    perceptron,
    simple,
    square_exp,
    square_hinge,
    square_square,
)
from ._score import denoising_score_matching, score_matching, sliced_score_matching
from ._sets import general_margin, mee, ml_sampled, nll, pseudo_likelihood

__all__ = [
    "energy_loss",
    "perceptron",
    "hinge",
    "log_loss",
    "lvq2",
    "mce",
    "square_square",
    "square_exp",
    "simple",
    "min_hinge",
    "square_hinge",
    "nll",
    "mee",
    "general_margin",
    "info_nce",
    "nce",
    "nca",
    "ml_sampled",
    "pseudo_likelihood",
    "score_matching",
    "sliced_score_matching",
    "denoising_score_matching",
]
