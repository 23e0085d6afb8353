"""The lecture's classic energy-based models, built on the library's energies, samplers and estimators.

* :class:`Hopfield` -- the Hopfield net (Hebbian storage, async/sync recall);
* :class:`BoltzmannMachine` -- visible and hidden units with all three weight blocks;
* :class:`RBM` -- the restricted Boltzmann machine (closed-form free energy, block Gibbs, CD/PCD,
  exact and AIS log Z, scikit-learn interop).

Regularized and architectural EBMs (the lecture's A1-A4 and C3), each a latent-variable energy:

* A1: :class:`PCA`, :class:`KMeans`, :class:`GaussianMixture`;
* A1: the normalizing flow :class:`CouplingFlow` (``log Z = 0``);
* A2: :class:`SparseCoding`, :class:`SparseAutoEncoder`, :class:`LISTA`, :class:`VAEEnergy`,
  :class:`VectorQuantizer`;
* A3: :func:`contracting_penalty`, :func:`saturating_penalty`; C3: :class:`DenoisingAutoEncoder`;
* the latent-variable generative EBM :class:`LatentGenerativeEBM` and the diagnostic
  :func:`low_energy_volume`.
"""

from .boltzmann import BoltzmannMachine
from .hopfield import Hopfield, Recall
from .rbm import RBM
from .ais import rbm_ais
from .regularized import PCA, GaussianMixture, KMeans
from .sparse import LISTA, SparseAutoEncoder, SparseCoding, soft_threshold
from .quantize import VectorQuantizer
from .latent import LatentGenerativeEBM, low_energy_volume
from .autoencoders import CouplingFlow, DenoisingAutoEncoder, VAEEnergy, contracting_penalty, saturating_penalty

__all__ = ["Hopfield", "Recall", "BoltzmannMachine", "RBM", "rbm_ais",
           "PCA", "KMeans", "GaussianMixture", "SparseCoding", "SparseAutoEncoder", "LISTA", "soft_threshold",
           "LatentGenerativeEBM", "low_energy_volume",
           "DenoisingAutoEncoder", "contracting_penalty", "saturating_penalty", "CouplingFlow", "VAEEnergy",
           "VectorQuantizer"]
