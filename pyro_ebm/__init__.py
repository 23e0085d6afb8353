"""pyro_ebm: energy-based models as first-class citizens of Pyro.

An energy ``F(y[, x])`` (or ``E(y, z[, x])`` with latents) becomes an unnormalized Pyro factor
``exp(-beta F)``; Gibbs-Boltzmann conditionals, free energies over latents, MCMC negatives and ArviZ
diagnostics all reuse Pyro's machinery.
"""

from .energy import Energy, LatentEnergy, as_energy
from .inference import (
    ArgminResult,
    Estimate,
    Minima,
    argmin_candidates,
    argmin_energy,
    argmin_latent,
    free_energy,
    free_energy_importance,
    free_energy_min,
    latent_energy_model,
    latent_posterior,
)
from .gibbs import DiscreteGibbs, DoublyIntractableWarning, GibbsBoltzmann, energy_factor, product_values

__version__ = "0.1.0"

#: submodules loaded on first attribute access (``pyro_ebm.losses.hinge`` works after ``import pyro_ebm``)
_SUBMODULES = {"datasets", "diagnostics", "likelihood", "losses", "mcmc", "ml", "negatives", "partition", "train"}


def __getattr__(name):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Energy",
    "LatentEnergy",
    "as_energy",
    "GibbsBoltzmann",
    "DiscreteGibbs",
    "energy_factor",
    "DoublyIntractableWarning",
    "product_values",
    "argmin_energy",
    "argmin_candidates",
    "ArgminResult",
    "Minima",
    "Estimate",
    "free_energy",
    "latent_posterior",
    "argmin_latent",
    "free_energy_min",
    "free_energy_importance",
    "latent_energy_model",
    "__version__",
]
