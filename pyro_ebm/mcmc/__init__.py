"""Batched many-chain samplers for energies ``exp(-beta F)`` and Pyro models.

One entry point, :func:`sample`, checks its arguments and hands the chains to the one run loop
(:mod:`~pyro_ebm.mcmc.loop`), which drives pure transition functions (:mod:`~pyro_ebm.mcmc.hmc` on the one
integrator :mod:`~pyro_ebm.mcmc.integrator`, :mod:`~pyro_ebm.mcmc.langevin`,
:mod:`~pyro_ebm.mcmc.gibbs_binary`), adapts them in one warmup (:mod:`~pyro_ebm.mcmc.warmup`), swaps
tempering replicas (:mod:`~pyro_ebm.mcmc.tempering`) and returns :class:`Samples`.
:class:`PersistentChains` keeps a replay buffer for PCD-style training and runs the same loop;
:class:`RecordingNUTS`/:class:`RecordingHMC` add per-draw statistics to stock ``pyro.infer.MCMC`` runs.
With ``compile=True`` the HMC/MALA transition runs compiled (:mod:`~pyro_ebm.mcmc.compiled`).
"""

from .api import KERNELS, make_generator, sample
from .warmup import TuningWarning
from .compiled import CompileWarning
from .persistent import PersistentChains
from .proposals import DataProposal, independence_jump
from .pyro_recording import RecordingHMC, RecordingNUTS, from_pyro_mcmc
from .samples import STAT_NAMES, Samples

__all__ = [
    "sample",
    "Samples",
    "KERNELS",
    "STAT_NAMES",
    "PersistentChains",
    "DataProposal",
    "independence_jump",
    "RecordingNUTS",
    "RecordingHMC",
    "from_pyro_mcmc",
    "make_generator",
    "TuningWarning",
    "CompileWarning",
]
