"""pyro_ebm: energy-based models as first-class citizens of Pyro.

An energy ``F(y[, x])`` (or ``E(y, z[, x])`` with latents) becomes an unnormalized Pyro factor
``exp(-beta F)``; Gibbs-Boltzmann conditionals, free energies over latents, MCMC negatives and ArviZ
diagnostics all reuse Pyro's machinery.
"""

from .energy import Energy, LatentEnergy, as_energy

__version__ = "0.1.0"

__all__ = ["Energy", "LatentEnergy", "as_energy", "__version__"]
