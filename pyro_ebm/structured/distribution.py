"""The Gibbs distribution of a chain factor graph as a Pyro distribution (a linear-chain CRF).

:class:`LinearChainGibbs` is normalized through :func:`~pyro_ebm.structured.chain_free_energy`, so
``log_prob``, ``sample`` and (for short chains) ``enumerate_support`` are exact, and a ``pyro.sample`` site
with this distribution lets a CRF sit inside any Pyro model: observed, it contributes the CRF's
log-likelihood; latent, it can be sampled or enumerated.
"""

from __future__ import annotations

import itertools
import math

import torch
from pyro.distributions import TorchDistribution, constraints

from .._validation import check_beta, check_positive_int
from ..energy import _as_size
from .chain import _prepare, chain_energy, chain_free_energy, sample_chain, viterbi

__all__ = ["LinearChainGibbs"]


class LinearChainGibbs(TorchDistribution):
    r"""Exact Gibbs distribution :math:`P_\beta(y) = e^{-\beta (E(y) - F_\beta)}` over labellings ``y`` of a
    chain factor graph (energies as in :func:`~pyro_ebm.structured.chain_free_energy`).

    ``batch_shape = unary.shape[:-2]``, ``event_shape = (T,)``, values are integer labels in ``[0, K)``.
    ``log_prob`` uses the free energy (differentiable in the potentials, so an observed site trains a CRF),
    ``sample`` draws exact labellings by forward filtering - backward sampling, ``mode`` is the Viterbi
    path, and ``enumerate_support`` lists all ``K^T`` labellings when there are at most ``max_support``.
    ``beta = inf`` puts all the mass on the Viterbi path (``log_prob`` 0 on minimizers, ``-inf`` elsewhere).
    Sequences share one length ``T`` (pad with a zero-energy label for ragged data).

    :param unary: energies ``batch + (T, K)``.
    :param pairwise: ``[K, K]`` or ``batch + (T-1, K, K)``.
    :param beta: inverse temperature > 0 or ``inf``.
    :param initial: optional ``[K]`` or ``batch + (K,)``.
    :param final: optional ``[K]`` or ``batch + (K,)``.
    :param max_support: largest number of labellings ``enumerate_support`` will list.

    Example::

        >>> import torch, pyro
        >>> from pyro_ebm.structured import LinearChainGibbs
        >>> d = LinearChainGibbs(torch.zeros(2, 3, 2), torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
        >>> d.batch_shape, d.event_shape
        (torch.Size([2]), torch.Size([3]))
        >>> y = d.enumerate_support()  # all 2^3 labellings, [8, 2, 3]
        >>> torch.allclose(d.log_prob(y).exp().sum(0), torch.ones(2))
        True
        >>> def model():
        ...     return pyro.sample("y", LinearChainGibbs(torch.zeros(3, 2), torch.zeros(2, 2)))
        >>> model().shape
        torch.Size([3])
    """

    arg_constraints = {}
    has_enumerate_support = True

    def __init__(self, unary, pairwise, beta=1.0, initial=None, final=None, *, max_support: int = 100_000,
                 validate_args=None):
        self.beta = check_beta(beta, allow_inf=True)
        if isinstance(self.beta, torch.Tensor):
            self.beta = float(self.beta)
        _prepare(unary, pairwise, initial, final)  # validates
        self.unary, self.pairwise, self.initial, self.final = unary, pairwise, initial, final
        self.max_support = check_positive_int(max_support, "max_support")
        self.free = chain_free_energy(unary, pairwise, self.beta, initial, final)
        batch_shape, (T, self.num_labels) = unary.shape[:-2], unary.shape[-2:]
        super().__init__(batch_shape, torch.Size([T]), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return constraints.independent(constraints.integer_interval(0, self.num_labels - 1), 1)

    def _args(self, shape):
        """The potentials broadcast to ``shape + (T, K)`` (and friends)."""
        T, K = self.event_shape[0], self.num_labels
        u = self.unary.expand(shape + (T, K))
        p = self.pairwise
        if p.dim() > 2:
            p = p.expand(shape + (T - 1, K, K))
        ends = [None if e is None else (e if e.dim() == 1 else e.expand(shape + (K,))) for e in (self.initial, self.final)]
        return u, p, ends[0], ends[1]

    def expand(self, batch_shape, _instance=None):
        batch_shape = _as_size(batch_shape, "batch_shape")
        try:
            ok = torch.broadcast_shapes(batch_shape, self.batch_shape) == batch_shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"batch_shape {tuple(batch_shape)} must be an expansion of the batch shape "
                             f"{tuple(self.batch_shape)} (same or more dimensions, sizes 1 expanded)")
        new = self._get_checked_instance(LinearChainGibbs, _instance)
        u, p, a, b = self._args(batch_shape)
        new.unary, new.pairwise, new.initial, new.final = u, p, a, b
        new.beta, new.num_labels, new.max_support = self.beta, self.num_labels, self.max_support
        new.free = self.free.expand(batch_shape)
        super(LinearChainGibbs, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = self._check_value(value)
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        if shape.numel() == 0:  # an empty batch
            return self.free.new_zeros(shape)
        if self._validate_args:
            self._validate_sample(value)
        energy = chain_energy(value.expand(shape + self.event_shape), *self._args(shape))
        free = self.free.expand(shape)
        if math.isinf(self.beta):
            tol = 1e-6 * (1.0 + free.detach().abs())
            return torch.where(energy - free <= tol, torch.zeros_like(energy), torch.full_like(energy, -math.inf))
        return -self.beta * (energy - free)

    def _check_value(self, value) -> torch.Tensor:
        """Labellings ``[..., T]`` (integers in ``[0, K)``, or floats holding such integers) as int64."""
        T, K = self.event_shape[0], self.num_labels
        if not isinstance(value, torch.Tensor) or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"value must be an integer tensor of labels [..., {T}], got "
                            f"{value.dtype if isinstance(value, torch.Tensor) else type(value).__name__}")
        if value.dim() < 1 or value.shape[-1] != T:
            raise ValueError(f"value must have shape [..., T] = [..., {T}], got {tuple(value.shape)}")
        try:
            torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        except RuntimeError:
            raise ValueError(f"value of shape {tuple(value.shape)} must broadcast with the batch shape "
                             f"{tuple(self.batch_shape)} + ({T},)") from None
        if value.is_floating_point() and not bool((value == value.round()).all()):
            raise ValueError("value must hold integer labels")
        value = value.long()
        if value.numel() and bool(((value < 0) | (value >= K)).any()):
            raise ValueError(f"value must hold labels in [0, {K}), got values in "
                             f"[{int(value.min())}, {int(value.max())}]")
        return value

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return sample_chain(self.unary, self.pairwise, self.beta, self.initial, self.final,
                            sample_shape=sample_shape).detach()

    @property
    def mode(self) -> torch.Tensor:
        """The Viterbi labelling, ``batch + (T,)``."""
        return viterbi(self.unary.detach(), self.pairwise.detach(),
                       *(None if e is None else e.detach() for e in (self.initial, self.final)))[1]

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        T, K = self.event_shape[0], self.num_labels
        n = K**T
        if n > self.max_support:
            raise ValueError(
                f"enumerate_support would list K^T = {K}^{T} = {n} labellings, more than max_support="
                f"{self.max_support}; sample instead (LinearChainGibbs.sample or pyro_ebm.structured.sample_chain)"
            )
        values = torch.tensor(list(itertools.product(range(K), repeat=T)), dtype=torch.long,
                              device=self.unary.device)
        values = values.reshape((n,) + (1,) * len(self.batch_shape) + (T,))
        if expand:
            values = values.expand((n,) + tuple(self.batch_shape) + (T,))
        return values
