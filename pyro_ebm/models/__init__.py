"""The lecture's classic energy-based models, built on the library's energies, samplers and estimators.

* :class:`Hopfield` -- the Hopfield net (Hebbian storage, async/sync recall);
* :class:`BoltzmannMachine` -- visible and hidden units with all three weight blocks;
* :class:`RBM` -- the restricted Boltzmann machine (closed-form free energy, block Gibbs, CD/PCD,
  exact and AIS log Z, scikit-learn interop).
"""

from .boltzmann import BoltzmannMachine
from .hopfield import Hopfield, Recall
from .rbm import RBM
from .ais import rbm_ais

__all__ = ["Hopfield", "Recall", "BoltzmannMachine", "RBM", "rbm_ais"]
