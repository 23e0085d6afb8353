"""Batched many-chain samplers for energies ``exp(-beta F)`` and Pyro models.

One entry point, :func:`sample`, drives pure kernel step functions (:mod:`~pyro_ebm.mcmc.hmc`,
:mod:`~pyro_ebm.mcmc.langevin`, :mod:`~pyro_ebm.mcmc.gibbs_binary`) with optional parallel tempering
(:mod:`~pyro_ebm.mcmc.tempering`) and returns :class:`Samples`. :class:`PersistentChains` keeps a replay
buffer for PCD-style training; :class:`RecordingNUTS`/:class:`RecordingHMC` add per-draw statistics to
stock ``pyro.infer.MCMC`` runs.
"""

from .api import KERNELS, make_generator, sample
from .persistent import PersistentChains
from .pyro_recording import RecordingHMC, RecordingNUTS, from_pyro_mcmc
from .samples import STAT_NAMES, Samples

__all__ = [
    "sample",
    "Samples",
    "KERNELS",
    "STAT_NAMES",
    "PersistentChains",
    "RecordingNUTS",
    "RecordingHMC",
    "from_pyro_mcmc",
    "make_generator",
]
