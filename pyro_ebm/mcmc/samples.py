"""The result of :func:`pyro_ebm.mcmc.sample`: draws, per-draw statistics and adaptation info."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Union

import torch

__all__ = ["Samples", "STAT_NAMES"]

#: per-draw statistics every kernel fills, with ArviZ's ``sample_stats`` names
STAT_NAMES = ("energy", "lp", "acceptance_rate", "step_size", "n_steps", "diverging")


@dataclass
class Samples:
    """Draws of a batch of chains with their per-draw statistics.

    :ivar draws: ``[chains, draws, *event_shape]`` tensor for an energy; for a Pyro model a dict
        ``{site: [chains, draws, *site_shape]}`` of constrained values.
    :ivar stats: dict of ``[chains, draws]`` tensors named as ArviZ expects: ``energy`` (the Hamiltonian,
        for BFMI), ``lp`` (log density ``-beta F`` up to a constant), ``acceptance_rate``, ``step_size``,
        ``n_steps`` (gradient evaluations / sites updated per draw) and ``diverging``.
    :ivar kernel: name of the kernel that made the draws.
    :ivar info: adaptation results and counters: ``step_size`` ``[chains]``, ``inv_mass`` ``[*event]``,
        ``trajectory_length``, ``num_divergent`` (post-warmup, per chain), ``num_divergent_warmup``,
        ``wall_time`` (seconds), ``grad_evals`` (batched gradient evaluations), with tempering
        ``betas`` (the ladder) and ``swap_rates`` (mean swap acceptance between neighbours ``[R-1]``).

    Example::

        >>> import torch
        >>> from pyro_ebm.mcmc import sample
        >>> F = lambda y: 0.5 * (y ** 2).sum(-1)
        >>> s = sample(F, torch.zeros(8, 2), num_warmup=50, num_samples=20, seed=0, progress=False)
        >>> s.draws.shape, s.stats["acceptance_rate"].shape
        (torch.Size([8, 20, 2]), torch.Size([8, 20]))
        >>> s.num_chains, s.num_draws
        (8, 20)
    """

    draws: Union[torch.Tensor, Dict[str, torch.Tensor]]
    stats: Dict[str, torch.Tensor]
    kernel: str = "hmc"
    beta: Any = 1.0
    info: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        """Draws are floating-point and finite, ``[chains, draws, ...]`` like every statistic; ``beta > 0``."""
        from .._validation import check_beta, check_finite

        if not isinstance(self.stats, dict) or not all(isinstance(v, torch.Tensor) for v in self.stats.values()):
            raise TypeError("stats must be a dict of [chains, draws] tensors")
        lead = {tuple(v.shape[:2]) for v in self.stats.values()}
        if len(lead) > 1 or any(v.dim() != 2 for v in self.stats.values()):
            raise ValueError(f"stats must all have shape [chains, draws], got "
                             f"{ {k: tuple(v.shape) for k, v in self.stats.items()} }")
        named = self.draws.items() if isinstance(self.draws, dict) else [(None, self.draws)]
        for site, d in named:
            name = "draws" if site is None else f"draws[{site!r}]"
            if not isinstance(d, torch.Tensor) or not d.is_floating_point():
                got = d.dtype if isinstance(d, torch.Tensor) else type(d).__name__
                raise TypeError(f"{name} must be a floating-point tensor [chains, draws, *event_shape], got {got}")
            if d.dim() < 2 or (lead and tuple(d.shape[:2]) not in lead):
                raise ValueError(f"{name} must have shape [chains, draws, *event_shape] with the [chains, draws] "
                                 f"of stats {next(iter(lead), None)}, got {tuple(d.shape)}")
            check_finite(d.detach(), name)
        check_beta(self.beta)

    @property
    def num_chains(self) -> int:
        return next(iter(self.stats.values())).shape[0]

    @property
    def num_draws(self) -> int:
        return next(iter(self.stats.values())).shape[1]

    def flat(self) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
        """Draws with chains and draws merged: ``[chains * draws, *event]`` (or a dict of those)."""
        if isinstance(self.draws, dict):
            return {k: v.reshape((-1,) + v.shape[2:]) for k, v in self.draws.items()}
        return self.draws.reshape((-1,) + self.draws.shape[2:])

    def posterior_dict(self, var_name: str = "y") -> Dict[str, torch.Tensor]:
        """Draws as ``{name: [chains, draws, ...]}`` (the model's site names, or ``var_name``)."""
        if isinstance(self.draws, dict):
            return dict(self.draws)
        return {var_name: self.draws}

    def to_arviz(self, var_name: str = "y"):
        """ArviZ ``InferenceData`` (0.x) / ``DataTree`` (1.x) with ``posterior`` and ``sample_stats``.

        :param var_name: posterior variable name for an energy's draws (a model keeps its site names).
        """
        from .. import _arviz  # the conversion layer (numpy and arviz only); lazy: arviz is slow to import

        posterior = {k: v.detach().cpu().numpy() for k, v in self.posterior_dict(var_name).items()}
        stats = {k: v.detach().cpu().numpy() for k, v in self.stats.items()}
        return _arviz.from_dict(posterior, stats)

    def summary(self, var_name: str = "y"):
        """ArviZ summary table (mean, sd, ESS, R-hat) of the draws."""
        from .. import _arviz

        return _arviz.summary(self.to_arviz(var_name))

    def __repr__(self) -> str:
        if isinstance(self.draws, dict):
            shapes = {k: tuple(v.shape) for k, v in self.draws.items()}
        else:
            shapes = tuple(self.draws.shape)
        acc = float(self.stats["acceptance_rate"].float().mean()) if "acceptance_rate" in self.stats else float("nan")
        div = int(self.stats["diverging"].sum()) if "diverging" in self.stats else 0
        return (
            f"Samples(kernel={self.kernel!r}, draws={shapes}, mean acceptance={acc:.3f}, divergences={div})"
        )
