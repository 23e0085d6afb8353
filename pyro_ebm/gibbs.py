"""The bridge into Pyro: Gibbs-Boltzmann distributions and energy factors.

``P(y | x) = exp(-beta F(y, x)) / Z(x)``. Inverse temperature ``beta`` always sits *inside* the log-factor
(``log_factor = -beta * F``); it is never implemented with ``poutine.scale`` because under enumeration
Pyro applies a scale outside the log-sum-exp, which is a different quantity.

* :class:`GibbsBoltzmann` — continuous (or constrained) ``y``, unnormalized ``log_prob``; a full Pyro citizen
  (tracing, plates, every ``init_to_*``, NUTS/HMC, ``Predictive``, SVI autoguides).
* :class:`DiscreteGibbs` — ``y`` in a finite candidate set, exact and normalized: ``log_prob``, ``sample``,
  ``enumerate_support``, ``entropy``; ``beta = inf`` is the argmin.
* :func:`energy_factor` — ``pyro.factor(name, -beta * energy)`` for energies already evaluated in a model.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.distributions.util import is_validation_enabled
from torch.distributions import biject_to

from . import _log_z
from ._log_z import DoublyIntractableWarning
from ._validation import (
    MAX_ENUMERATION,
    check_beta,
    check_beta_batch,
    check_finite,
    check_positive_int,
    check_some_finite,
    surely_finite,
)
from .energy import (
    Energy,
    _as_size,
    _check_energy_call,
    as_energy,
    batch_shape_of,
    call_energy,
    check_energy_output,
    check_inputs_finite,
)

__all__ = ["GibbsBoltzmann", "DiscreteGibbs", "energy_factor", "product_values", "DoublyIntractableWarning"]


def _beta_tensor(beta, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(beta, dtype=like.dtype, device=like.device)


class GibbsBoltzmann(TorchDistribution):
    r"""Unnormalized Gibbs-Boltzmann distribution :math:`p(y \mid x) \propto \exp(-\beta F(y, x))`.

    ``log_prob(y) = -beta * F(y, x)``: the log partition function is *not* subtracted (it is intractable
    in general; :mod:`pyro_ebm.partition` estimates it). That is exactly what MCMC, MAP and SVI need, so a
    ``pyro.sample`` site with this distribution works with NUTS/HMC, ``Predictive`` on posterior samples,
    autoguides (``AutoDelta``, ``AutoNormal``, ...), plates, ``max_plate_nesting`` guessing and every
    ``init_to_*`` strategy.

    **What** ``.sample()`` **returns.** Exact sampling needs MCMC (:func:`pyro_ebm.mcmc.sample` or Pyro's
    ``MCMC``). Outside MCMC, ``.sample()`` returns draws from the *initial distribution* ``init``: if
    ``init`` is a distribution, fresh draws from it; if it is a tensor, that point (broadcast to the
    requested shape); by default the point ``biject_to(support)(0)`` (the origin for real ``y``, ``1`` for a
    positive ``y``, ...). This is what Pyro uses to start inference (``init_to_sample``, ``init_to_median``);
    it is **not** a draw from ``exp(-beta F)``. So ``pyro.infer.Predictive``, which draws every site it has
    no samples of by running the model forward, raises ``NotImplementedError`` for this site instead of
    returning those points: run MCMC and give ``Predictive(model, posterior_samples=mcmc.get_samples())``
    (an observed site, ``obs=``, needs no draws). ``.mean`` raises ``NotImplementedError`` (so
    ``init_to_mean`` falls back to the median).

    :param energy: an :class:`~pyro_ebm.Energy` or a callable ``F(y[, x])`` returning shape ``batch``.
    :param beta: inverse temperature, a positive float or a tensor broadcastable to the batch shape
        (a ladder of temperatures for tempering). ``inf`` is not allowed here: the zero-temperature limit
        of a continuous density is a point mass at the argmin (:func:`pyro_ebm.argmin_energy`).
    :param x: optional conditioning passed to the energy as ``F(y, x)``.
    :param event_shape: shape of one ``y``; defaults to the energy's own ``event_shape``.
    :param support: a ``torch.distributions.constraints`` constraint (default ``real``). Inference runs
        in the unconstrained space of ``biject_to(support)``.
    :param init: initial distribution (a distribution with the same event shape) or an initial point (a
        finite floating-point tensor ``[*batch, *event_shape]``).
    :param batch_shape: batch shape of the distribution (Pyro's plates expand it automatically). The
        distribution's ``batch_shape`` is this broadcast with a tensor ``beta``'s shape and with ``x``'s
        batch shape; ``x``'s batch shape is read off the energy's output at one unbatched ``y`` (one extra
        energy evaluation when ``x`` is given, and one more at two points when that output has a batch, to
        check that the energy reduces over the event), never guessed from ``x.dim()``.
    :param constant_log_z: ``True`` asserts that :math:`\log Z` does not depend on the latent sites or
        parameters the energy reads (a location family :math:`F(y - \mu)`, say), which silences the
        check below. Default ``False``.

    **A missing** :math:`\log Z(\theta)`. When this site's energy reads another latent site or a
    learnable parameter :math:`\theta` (through ``x`` or a closure), the model lacks
    :math:`-\log Z(\theta)`: an observed site is then a *doubly-intractable* likelihood and MCMC, SVI or
    MAP target the wrong posterior. Whenever ``log_prob`` is evaluated with gradients inside a trace (every
    MCMC potential gradient, every ELBO), its autograd graph is checked for such a dependence, and a
    :class:`DoublyIntractableWarning` names the site and what it depends on (see :doc:`/likelihood` for the
    treatments: :func:`pyro_ebm.likelihood.exchange`, maximum likelihood, pseudo-likelihood, NCE).

    Shapes: ``log_prob(y)`` takes ``y`` of shape ``sample + batch + event_shape`` and returns
    ``sample + batch``.

    Example::

        >>> import torch, pyro
        >>> from pyro.infer import MCMC, NUTS
        >>> from pyro_ebm import GibbsBoltzmann
        >>> def double_well(y):
        ...     return ((y ** 2 - 1) ** 2).sum(-1)
        >>> def model():
        ...     return pyro.sample("y", GibbsBoltzmann(double_well, beta=2.0, event_shape=(2,)))
        >>> GibbsBoltzmann(double_well, event_shape=(2,)).log_prob(torch.zeros(3, 2))
        tensor([-2., -2., -2.])
        >>> pyro.set_rng_seed(0)
        >>> mcmc = MCMC(NUTS(model), num_samples=20, warmup_steps=20, disable_progbar=True)
        >>> mcmc.run()
        >>> mcmc.get_samples()["y"].shape
        torch.Size([20, 2])
    """

    arg_constraints = {}
    has_rsample = False

    def __init__(
        self,
        energy,
        beta=1.0,
        x=None,
        event_shape: Optional[Sequence[int]] = None,
        support: constraints.Constraint = constraints.real,
        init=None,
        batch_shape: Sequence[int] = (),
        validate_args=None,
        *,
        constant_log_z: bool = False,
    ):
        if not isinstance(constant_log_z, bool):
            raise TypeError(f"constant_log_z must be True or False, got {constant_log_z!r}")
        self.constant_log_z = constant_log_z
        if event_shape is None:
            event_shape = energy.event_shape if isinstance(energy, Energy) else ()
        self.energy = as_energy(energy, event_shape=event_shape)
        if self.energy.has_latent:
            raise TypeError(
                "energy has a latent variable z; wrap its free energy instead "
                "(pyro_ebm.free_energy over z), or sample z as its own site"
            )
        self.beta = check_beta(beta)
        if not isinstance(support, constraints.Constraint):
            raise TypeError(f"support must be a torch.distributions constraint, got {type(support).__name__}")
        try:
            biject_to(support)
        except NotImplementedError:
            raise ValueError(f"support {support} has no bijection to the reals (biject_to); pick another") from None
        self._support = support
        self.x = x
        event_shape = self.energy.event_shape
        batch_shape = _as_size(batch_shape, "batch_shape")
        if x is not None:
            batch_shape = _broadcast_or_raise(batch_shape, self._x_batch(), "batch_shape", "x's batch shape")
        batch_shape = check_beta_batch(self.beta, batch_shape)
        if init is not None and not isinstance(init, (torch.Tensor, torch.distributions.Distribution)):
            raise TypeError(f"init must be a tensor or a distribution, got {type(init).__name__}")
        if isinstance(init, torch.distributions.Distribution) and tuple(init.event_shape) != tuple(event_shape):
            raise ValueError(
                f"init distribution must have event_shape {tuple(event_shape)}, got {tuple(init.event_shape)}"
            )
        if isinstance(init, torch.Tensor):
            if not init.is_floating_point():
                raise TypeError(f"init must be a floating-point tensor (a point of y), got dtype {init.dtype}")
            batch_shape_of(init, event_shape, "init")
            check_finite(init, "init")
        self.init = init
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    def _x_batch(self) -> torch.Size:
        """The batch shape ``x`` contributes: the shape of ``F(y0, x)`` at one point ``y0`` without batch."""
        like = self._like()
        y0 = biject_to(self._support)(torch.zeros(self.energy.event_shape, dtype=like.dtype, device=like.device))
        label, inputs = self.energy._label(), (("x", self.x),)
        with torch.no_grad():
            f0 = call_energy(self.energy, y0, self.x)
            if not isinstance(f0, torch.Tensor):
                raise TypeError(f"{label} must return a torch.Tensor, got {type(f0).__name__}")
            _check_energy_call(f0, f0.shape, label, inputs, None)
            if f0.dim():
                # at two points the output must gain exactly that leading batch dimension (an energy that does
                # not reduce over the event would otherwise pass for one whose x has an extra batch dimension)
                y2 = y0.expand((2,) + (1,) * f0.dim() + tuple(y0.shape))
                f2 = call_energy(self.energy, y2, self.x)
                check_energy_output(f2, (2,) + tuple(f0.shape), name=label, check_finite_values=False,
                                    inputs=(("y", y2),) + inputs, event_shape=self.energy.event_shape)
        return f0.shape

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.independent(self._support, len(self.event_shape)) if self.event_shape else self._support

    def expand(self, batch_shape, _instance=None):
        batch_shape = _check_expand(batch_shape, self.batch_shape)
        new = self._get_checked_instance(GibbsBoltzmann, _instance)
        new.energy, new.beta, new.x, new._support, new.init = self.energy, self.beta, self.x, self._support, self.init
        new.constant_log_z = self.constant_log_z
        super(GibbsBoltzmann, new).__init__(torch.Size(batch_shape), self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``-beta * F(value, x)``, shape ``sample + batch``. Validates the energy's output shape, and with
        validation on (Pyro's default) that it has no NaN or ``-inf``."""
        batch = batch_shape_of(value, self.event_shape, "value")
        if not value.is_floating_point():
            raise TypeError(
                f"value must be a floating-point tensor (GibbsBoltzmann is a density over real y), got dtype "
                f"{value.dtype}; use DiscreteGibbs for a finite set of values"
            )
        _broadcast_or_raise(batch, self.batch_shape, "value's batch shape", "the distribution's batch_shape")
        f = call_energy(self.energy, value, self.x, names=("value", "x"))
        check_energy_output(f, batch, name=self.energy._label(), check_finite_values=bool(self._validate_args),
                            inputs=(("value", value), ("x", self.x)), event_shape=self.event_shape)
        lp = -_beta_tensor(self.beta, f) * f
        if lp.requires_grad and not self.constant_log_z and torch.is_grad_enabled():
            log_z = getattr(self, "log_z", None)  # a subclass whose normalizer moves with theta is complete
            if not (isinstance(log_z, torch.Tensor) and log_z.requires_grad):
                _log_z.check_distribution(self, value, lp)
        shape = torch.broadcast_shapes(lp.shape, self.batch_shape)
        return lp.expand(shape) if lp.shape != shape else lp

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Draws from the initial distribution (see the class docstring), **not** from ``exp(-beta F)``;
        ``NotImplementedError`` when ``pyro.infer.Predictive`` draws the site."""
        _log_z.refuse_ancestral_sample(self)
        sample_shape = _as_size(sample_shape, "sample_shape")
        shape = sample_shape + self.batch_shape + self.event_shape
        with torch.no_grad():
            if isinstance(self.init, torch.distributions.Distribution):
                init = self.init.expand(torch.broadcast_shapes(self.init.batch_shape, self.batch_shape))
                return init.sample(sample_shape).expand(shape)
            if isinstance(self.init, torch.Tensor):
                return self.init.expand(shape).clone()
            like = self._like()
            return biject_to(self._support)(torch.zeros(shape, dtype=like.dtype, device=like.device))

    def _like(self) -> torch.Tensor:
        for p in self.energy.parameters():
            return p
        if isinstance(self.x, torch.Tensor) and self.x.is_floating_point():
            return self.x
        return torch.zeros(())

    @property
    def mean(self):
        raise NotImplementedError("the mean of an unnormalized Gibbs-Boltzmann distribution needs MCMC")

    def __repr__(self):
        return (
            f"GibbsBoltzmann(energy={self.energy._label()}, beta={self.beta}, "
            f"event_shape={tuple(self.event_shape)}, batch_shape={tuple(self.batch_shape)})"
        )


def _check_expand(batch_shape, old: torch.Size) -> torch.Size:
    """``batch_shape`` as a ``torch.Size``, which the distribution's own batch shape ``old`` must broadcast to."""
    batch_shape = _as_size(batch_shape, "batch_shape")
    k = len(batch_shape) - len(old)
    if k < 0 or any(o not in (1, n) for o, n in zip(old, batch_shape[k:])):
        raise ValueError(f"batch_shape {tuple(batch_shape)} must be an expansion of the batch shape {tuple(old)}")
    return batch_shape


def _broadcast_or_raise(a, b, a_name: str, b_name: str) -> torch.Size:
    try:
        return torch.broadcast_shapes(a, b)
    except RuntimeError:
        raise ValueError(f"{a_name} {tuple(a)} does not broadcast with {b_name} {tuple(b)}") from None


class _FiniteSet(constraints.Constraint):
    """Membership in a finite set of candidate values (rows of ``values``)."""

    is_discrete = True

    def __init__(self, values: torch.Tensor, event_dim: int):
        self.values = values
        self.event_dim = event_dim
        super().__init__()

    def check(self, value):
        return _match(value, self.values, self.event_dim) >= 0

    def __repr__(self):
        return f"FiniteSet({self.values.shape[0]} values)"


def _match(value: torch.Tensor, values: torch.Tensor, event_dim: int) -> torch.Tensor:
    """Index of ``value`` in the rows of ``values`` (``-1`` where absent). Shape: ``value``'s batch."""
    if event_dim == 0:
        eq = value.unsqueeze(-1) == values
    else:
        v = value.unsqueeze(-1 - event_dim)
        eq = (v == values).flatten(-event_dim).all(-1)
    hit = eq.any(-1)
    idx = torch.argmax(eq.to(torch.uint8), dim=-1)
    return torch.where(hit, idx, torch.full_like(idx, -1))


class DiscreteGibbs(TorchDistribution):
    r"""Exact Gibbs distribution over a finite set of candidate outputs.

    :math:`P(y_k \mid x) = \exp(-\beta F(y_k, x)) / \sum_j \exp(-\beta F(y_j, x))` for the ``K`` rows
    ``y_k = values[k]``. Normalized, so ``log_prob``, ``sample``, ``entropy`` and ``enumerate_support`` are
    exact, and Pyro's enumeration (``TraceEnum_ELBO``, ``infer_discrete``) works on it.
    ``beta = inf`` is the zero-temperature limit: all mass on the minimizer (split equally between exact
    ties).

    :param energy: an :class:`~pyro_ebm.Energy` or callable ``F(y[, x])``.
    :param values: candidate outputs, shape ``[K, *event_shape]``.
    :param beta: inverse temperature > 0 (``inf`` allowed), float or tensor broadcastable to the batch.
    :param x: optional conditioning; its batch dimensions become the distribution's ``batch_shape``.
    :param batch_ndims: how many batch dimensions the energy's output has for one candidate (``x``'s batch
        rank). Default: read off the energy's output at ``values[0]`` (one extra evaluation), never guessed
        from ``x.dim()`` (``x`` may have event dimensions of its own).
    :param max_candidates: refuse (with a ``ValueError``) to evaluate more than this many energies.

    The energy is called on ``values`` reshaped to ``[K, 1, ..., 1, *event_shape]`` so that it
    broadcasts against ``x``; it must return ``[K, *batch]``. A tensor ``beta`` broadcasts with the batch
    and its shape is part of ``batch_shape``. Integer candidates are fine (an integer-valued energy is
    promoted to floating point); a batch row where every candidate has energy ``+inf`` is an error.

    Example::

        >>> import torch
        >>> from pyro_ebm import DiscreteGibbs
        >>> values = torch.tensor([0.0, 1.0, 2.0])
        >>> d = DiscreteGibbs(lambda y: (y - 1.0) ** 2, values, beta=1.0)
        >>> d.probs
        tensor([0.2119, 0.5761, 0.2119])
        >>> d.log_prob(torch.tensor(1.0)).exp()
        tensor(0.5761)
        >>> DiscreteGibbs(lambda y: (y - 1.0) ** 2, values, beta=float("inf")).probs
        tensor([0., 1., 0.])
    """

    arg_constraints = {}
    has_enumerate_support = True

    def __init__(
        self,
        energy,
        values: torch.Tensor,
        beta=1.0,
        x=None,
        *,
        batch_ndims: Optional[int] = None,
        max_candidates: int = MAX_ENUMERATION,
        validate_args=None,
    ):
        self.energy, self.energies = _candidate_energies(energy, values, beta, x, batch_ndims, max_candidates)
        self.beta = check_beta(beta, allow_inf=True)
        self.values, self.x = values, x
        event_shape = values.shape[1:]
        self.logits = _gibbs_logits(self.energies, self.beta)
        super().__init__(self.energies.shape[:-1], event_shape, validate_args=validate_args)

    @property
    def probs(self) -> torch.Tensor:
        """Probabilities of the candidates, shape ``[*batch, K]``."""
        return self.logits.exp()

    @property
    def _categorical(self):
        return dist.Categorical(logits=self.logits, validate_args=False)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return _FiniteSet(self.values, len(self.event_shape))

    def expand(self, batch_shape, _instance=None):
        batch_shape = _check_expand(batch_shape, self.batch_shape)
        new = self._get_checked_instance(DiscreteGibbs, _instance)
        new.energy, new.beta, new.values, new.x = self.energy, self.beta, self.values, self.x
        k = self.values.shape[0]
        new.energies = self.energies.expand(batch_shape + (k,))
        new.logits = self.logits.expand(batch_shape + (k,))
        super(DiscreteGibbs, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def index_of(self, value: torch.Tensor) -> torch.Tensor:
        """Index of each ``value`` among the candidates (``-1`` if absent); shape ``value``'s batch."""
        batch_shape_of(value, self.event_shape, "value")
        return _match(value, self.values, len(self.event_shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        idx = self.index_of(value)
        if self._validate_args and (idx < 0).any():
            raise ValueError("value is not one of the candidate values of this DiscreteGibbs")
        lp = self._categorical.log_prob(idx.clamp(min=0))
        return torch.where(idx >= 0, lp, torch.full_like(lp, -math.inf))

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        sample_shape = _as_size(sample_shape, "sample_shape")
        with torch.no_grad():
            idx = self._categorical.sample(sample_shape)
            return self.values[idx]

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        k = self.values.shape[0]
        out = self.values.reshape((k,) + (1,) * len(self.batch_shape) + tuple(self.event_shape))
        if expand:
            out = out.expand((k,) + tuple(self.batch_shape) + tuple(self.event_shape))
        return out

    def entropy(self) -> torch.Tensor:
        p = self.probs
        return -(p * torch.where(p > 0, self.logits, torch.zeros_like(self.logits))).sum(-1)

    @property
    def mode(self) -> torch.Tensor:
        """The minimum-energy candidate, shape ``batch + event_shape``."""
        return self.values[self.energies.argmin(-1)]

    @property
    def mean(self) -> torch.Tensor:
        p = self.probs
        v = self.values.to(p.dtype)
        return torch.tensordot(p, v, dims=([p.dim() - 1], [0]))

    @property
    def variance(self) -> torch.Tensor:
        p = self.probs
        v = self.values.to(p.dtype)
        second = torch.tensordot(p, v**2, dims=([p.dim() - 1], [0]))
        return second - self.mean**2


def _candidate_energies(energy, values, beta, x, batch_ndims, max_candidates, values_name: str = "values"):
    """``(energy, energies)``: the energy as an :class:`Energy` and its values at the candidates,
    ``[*batch, K]``, with every argument of :class:`DiscreteGibbs` checked (``values_name``: how the caller
    calls ``values``)."""
    if not isinstance(values, torch.Tensor):
        raise TypeError(
            f"{values_name} must be a tensor of candidates [K, *event_shape], got {type(values).__name__}"
        )
    if values.dim() == 0 or values.shape[0] == 0:
        raise ValueError(f"{values_name} must have shape [K, *event_shape] with K >= 1, got {tuple(values.shape)}")
    if values.is_floating_point():
        check_finite(values, values_name)
    max_candidates = check_positive_int(max_candidates, "max_candidates", maximum=math.inf)
    event_shape = values.shape[1:]
    energy = as_energy(energy, event_shape=event_shape if not isinstance(energy, Energy) else None)
    if energy.event_shape != event_shape:
        raise ValueError(
            f"{values_name} must have shape [K, *event_shape] = [K, {', '.join(map(str, energy.event_shape))}], "
            f"got {tuple(values.shape)}"
        )
    beta = check_beta(beta, allow_inf=True)
    label, names = energy._label(), (values_name, "x")
    k = values.shape[0]
    if k > max_candidates:
        raise ValueError(
            f"{values_name} has {k} candidates, more than max_candidates={max_candidates}: too large to "
            "enumerate exactly; use MCMC (pyro_ebm.mcmc.sample) instead"
        )
    # Evaluate all candidates in one call, broadcasting against x's batch dimensions.
    if batch_ndims is None:
        with torch.no_grad():
            f0 = call_energy(energy, values[0], x, names=names)
        if not isinstance(f0, torch.Tensor):
            raise TypeError(f"{label} must return a torch.Tensor, got {type(f0).__name__}")
        batch_ndims = f0.dim()
    else:
        batch_ndims = check_positive_int(batch_ndims, "batch_ndims", minimum=0, maximum=64)
    y = values.reshape((k,) + (1,) * batch_ndims + tuple(event_shape))
    f = call_energy(energy, y, x, names=names)
    inputs = ((values_name, values), ("x", x))
    check_energy_output(f, y.shape[: 1 + batch_ndims], name=label, check_finite_values=False, inputs=inputs,
                        event_shape=event_shape)
    if not surely_finite(f) and not bool(torch.isfinite(f).all()):
        check_inputs_finite(inputs)
        check_finite(f, f"{label} output", allow_pos_inf=True)
    batch = check_beta_batch(beta, f.shape[1:], what="the batch shape of the energies")
    f = f.reshape((k,) + (1,) * (len(batch) - f.dim() + 1) + tuple(f.shape[1:])).expand((k,) + tuple(batch))
    if f.numel() > max_candidates:
        raise ValueError(
            f"enumerating {k} candidates over batch {tuple(f.shape[1:])} needs {f.numel()} energies, more "
            f"than max_candidates={max_candidates}; use MCMC (pyro_ebm.mcmc.sample) instead"
        )
    energies = f.movedim(0, -1)  # [*batch, K]
    check_some_finite(energies, label)
    return energy, energies


def _gibbs_logits(energies: torch.Tensor, beta) -> torch.Tensor:
    """Normalized log-probabilities ``log softmax(-beta E)`` over the last dim; ``beta = inf`` -> argmin."""
    b = torch.as_tensor(beta, dtype=energies.dtype, device=energies.device)
    if b.dim() > 0:
        b = b.unsqueeze(-1)
    if torch.isinf(b).any():
        emin = energies.min(-1, keepdim=True).values
        at_min = energies == emin
        logits_inf = torch.where(at_min, torch.zeros_like(energies), torch.full_like(energies, -math.inf))
        logits_inf = logits_inf - at_min.sum(-1, keepdim=True).to(energies.dtype).log()
        if b.dim() == 0:
            return logits_inf
        finite_b = torch.where(torch.isinf(b), torch.ones_like(b), b)
        finite = torch.log_softmax(-finite_b * energies, dim=-1)
        return torch.where(torch.isinf(b), logits_inf, finite)
    return torch.log_softmax(-b * energies, dim=-1)


def energy_factor(
    name: str, energy: torch.Tensor, beta=1.0, *, has_rsample: Optional[bool] = None, constant_log_z: bool = False
):
    """Add ``exp(-beta * energy)`` to the joint density of a Pyro model: ``pyro.factor(name, -beta * energy)``.

    ``beta`` goes inside the factor; never temper with ``poutine.scale`` (under enumeration Pyro applies the
    scale outside the log-sum-exp).

    :param name: site name.
    :param energy: an already evaluated energy tensor; its dims are batch dims of the factor. Inside
        plates its dim at each plate's position must have the plate's size (a ``[B, 1]`` energy
        inside ``plate(B)`` is rejected: it would count the factor ``B`` times). An integer energy is
        promoted to the default floating dtype.
    :param beta: inverse temperature > 0 (float or tensor broadcastable to ``energy``).
    :param constant_log_z: ``True`` asserts that the factor's normalizer does not move with the parameters
        it reads. A factor over latent sites is a potential (an unnormalized joint density) and is never
        flagged; when the energy depends on a ``pyro.param``/``pyro.module`` parameter while gradients
        flow (SVI, MAP), a :class:`DoublyIntractableWarning` says that ``-log Z(theta)`` is missing. To
        model data with an energy whose parameters are latent, observe a :class:`GibbsBoltzmann` site.
    :returns: the log-factor ``-beta * energy``.

    Example::

        >>> import torch, pyro
        >>> import pyro.distributions as dist
        >>> from pyro_ebm import energy_factor
        >>> def model():
        ...     y = pyro.sample("y", dist.Normal(0., 1.))
        ...     energy_factor("well", (y ** 2 - 1) ** 2, beta=4.0)
        >>> tr = pyro.poutine.trace(pyro.poutine.condition(model, {"y": torch.tensor(0.)})).get_trace()
        >>> tr.compute_log_prob()
        >>> tr.nodes["well"]["log_prob"]
        tensor(-4.)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    if not isinstance(energy, torch.Tensor):
        raise TypeError(f"energy must be a tensor (an evaluated energy), got {type(energy).__name__}")
    if energy.is_complex():
        raise TypeError(f"energy must be real, got dtype {energy.dtype}")
    if not energy.is_floating_point():
        energy = energy.to(torch.get_default_dtype())
    check_beta(beta)
    if not isinstance(constant_log_z, bool):
        raise TypeError(f"constant_log_z must be True or False, got {constant_log_z!r}")
    if is_validation_enabled():
        check_finite(energy.detach(), "energy", allow_pos_inf=True)
    _check_plate_dims(energy)
    check_beta_batch(beta, energy.shape, what="the energy's shape")
    if not constant_log_z:
        _log_z.check_factor(name, energy)
    _log_z.refuse_ancestral_factor(name)
    log_factor = -_beta_tensor(beta, energy) * energy
    pyro.factor(name, log_factor, has_rsample=has_rsample)
    return log_factor


def _check_plate_dims(energy: torch.Tensor) -> None:
    """Inside plates, each of the energy's dims at a plate's position must have the plate's size.

    A size-1 dim there (e.g. an energy ``[B, 1]`` inside ``plate(B)``) would broadcast over the plate and
    count the factor ``B`` times; another size is a mismatch. Dims left of every plate (enumeration) and
    energies outside plates are not checked.
    """
    from pyro.poutine.runtime import get_plates

    for frame in get_plates():
        if frame.dim is None or -frame.dim > energy.dim():
            continue
        size = energy.shape[frame.dim]
        if size != frame.size:
            raise ValueError(
                f"energy has size {size} at dim {frame.dim}, where plate {frame.name!r} has size {frame.size}; "
                f"an energy inside plates must have one value per plate element, got shape {tuple(energy.shape)}"
                + (" (did it keep a trailing dimension of size 1?)" if size == 1 else "")
            )


def product_values(choices, n: int, *, max_candidates: int = MAX_ENUMERATION) -> torch.Tensor:
    """All ``len(choices) ** n`` vectors with entries from ``choices``, shape ``[len(choices)**n, n]``.

    The candidate set of an ``n``-dimensional discrete ``y`` (e.g. ``choices=[0., 1.]`` for binary units,
    ``[-1., 1.]`` for spins). Raises a ``ValueError`` with the size when it exceeds ``max_candidates``.

    Example::

        >>> product_values([0., 1.], 2)
        tensor([[0., 0.],
                [0., 1.],
                [1., 0.],
                [1., 1.]])
    """
    try:
        choices = torch.as_tensor(choices)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"choices must be a 1-D sequence of numbers, got {choices!r}") from None
    if choices.dim() != 1 or choices.numel() == 0:
        raise ValueError(f"choices must be a non-empty 1-D sequence, got shape {tuple(choices.shape)}")
    if choices.is_floating_point():
        check_finite(choices, "choices")
    n = check_positive_int(n, "n")
    max_candidates = check_positive_int(max_candidates, "max_candidates", maximum=math.inf)
    k = choices.numel()
    # k**n > max_candidates as soon as 2**n > max_candidates (k >= 2): never form a huge power
    if (k == 1 and n > max_candidates) or (k > 1 and (n > max_candidates.bit_length() or k**n > max_candidates)):
        size = f"{k**n}" if n <= 64 else f"more than 2**{n}"
        raise ValueError(
            f"{k}**{n} = {size} candidates is more than max_candidates={max_candidates}: "
            "too large to enumerate; use MCMC (pyro_ebm.mcmc.sample, block Gibbs) instead"
        )
    if k == 1:
        return choices.expand(1, n).clone()
    grids = torch.cartesian_prod(*([choices] * n)) if n > 1 else choices.unsqueeze(-1)
    return grids.reshape(k**n, n)
