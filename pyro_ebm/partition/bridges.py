"""Bridges between the EBM and the probabilistic world: held-out log-likelihoods, normalized Pyro
distributions, and the energy of a Pyro model with its discrete latents summed out."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict

import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions import constraints
from pyro.infer import config_enumerate
from pyro.ops.contract import contract_to_tensor

from .._validation import check_beta, check_positive_int
from ..energy import Energy, _check_energy_call, as_energy, batch_shape_of, call_energy
from ..gibbs import GibbsBoltzmann
from ..mcmc.potential import _guess_max_plate_nesting, _is_subsample
from ._common import _as_log_z

__all__ = ["log_likelihood", "NormalizedGibbs", "normalized_distribution", "energy_from_model"]


def log_likelihood(energy, y: torch.Tensor, log_z, beta=1.0, x=None) -> torch.Tensor:
    r"""Held-out log-likelihood of an EBM: :math:`\log p(y) = -\beta F(y) - \log Z_\beta`, per example.

    :param energy: an :class:`~pyro_ebm.Energy` or callable ``F(y[, x])``.
    :param y: ``[*batch, *event_shape]``.
    :param log_z: :math:`\log Z_\beta` at the same ``beta``: a float, a tensor broadcasting to ``batch``
        (one normalizer per conditioning ``x``) or a :class:`LogPartition`.
    :param beta: inverse temperature ``> 0``.
    :param x: optional conditioning passed as ``F(y, x)``.
    :returns: ``[*batch]``, differentiable with respect to the energy's parameters (``log_z`` is taken as
        given). The uncertainty of an estimated ``log_z`` shifts every example by the same amount.

    Example::

        >>> import math, torch
        >>> from pyro_ebm.partition import log_likelihood
        >>> F = lambda y: 0.5 * y ** 2
        >>> log_likelihood(F, torch.tensor([0.0, 1.0]), 0.5 * math.log(2 * math.pi))
        tensor([-0.9189, -1.4189])
    """
    beta = check_beta(beta)
    log_z = _as_log_z(log_z)
    if not isinstance(energy, Energy) and not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a tensor, got {type(y).__name__}")
    energy = as_energy(energy) if not isinstance(energy, Energy) else energy
    batch = batch_shape_of(y, energy.event_shape, "y")
    f = call_energy(energy, y, x)
    _check_energy_call(f, batch, energy._label(), (("y", y), ("x", x)), energy.event_shape)
    b = torch.as_tensor(beta, dtype=f.dtype, device=f.device)
    return -b * f - log_z.to(dtype=f.dtype, device=f.device)


class NormalizedGibbs(GibbsBoltzmann):
    r"""A Gibbs-Boltzmann distribution with a known normalizer: ``log_prob(y) = -beta F(y) - log_z``.

    Use it to score an EBM as a proper density next to a probabilistic model (as an observed
    ``pyro.sample`` site, in ``Trace_ELBO``, in model comparison). It is a :class:`~pyro_ebm.GibbsBoltzmann`
    and inherits everything else from it, in particular **what** ``.sample()`` **returns**: draws from the
    initial distribution ``init``, *not* from :math:`e^{-\beta F}/Z` (exact draws need MCMC:
    :func:`pyro_ebm.mcmc.sample`). That keeps the site usable as a latent under NUTS/HMC and every
    ``init_to_*`` strategy; ``log_z`` is a constant there and does not change the posterior.

    :param energy: an :class:`~pyro_ebm.Energy` or callable ``F(y[, x])``.
    :param log_z: :math:`\log Z_\beta` at this ``beta`` (float, tensor broadcasting to the batch shape, or a
        :class:`LogPartition`).

    The other arguments (``beta``, ``x``, ``event_shape``, ``support``, ``init``, ``batch_shape``) are those of
    :class:`~pyro_ebm.GibbsBoltzmann`.
    """

    def __init__(self, energy, log_z, beta=1.0, x=None, event_shape=None, support=constraints.real, init=None,
                 batch_shape=(), validate_args=None):
        self.log_z = _as_log_z(log_z)
        super().__init__(energy, beta=beta, x=x, event_shape=event_shape, support=support, init=init,
                         batch_shape=batch_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(NormalizedGibbs, _instance)
        new.log_z = self.log_z
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``-beta F(value, x) - log_z``, shape ``sample + batch``."""
        lp = super().log_prob(value)
        return lp - self.log_z.to(dtype=lp.dtype, device=lp.device)

    def __repr__(self):
        return (
            f"NormalizedGibbs(energy={self.energy._label()}, beta={self.beta}, log_z={self.log_z.tolist()}, "
            f"event_shape={tuple(self.event_shape)}, batch_shape={tuple(self.batch_shape)})"
        )


def normalized_distribution(
    energy, log_z, beta=1.0, event_shape=None, support=constraints.real, **kwargs
) -> NormalizedGibbs:
    r"""The normalized Pyro distribution :math:`p(y) = e^{-\beta F(y)} / Z` of an EBM, given ``log Z``.

    A thin constructor of :class:`NormalizedGibbs` (see there for what ``.sample()`` returns).

    :param energy: an :class:`~pyro_ebm.Energy` or callable ``F(y[, x])``.
    :param log_z: :math:`\log Z_\beta` (e.g. ``log_partition(energy, beta, ...)``).
    :param beta: inverse temperature ``> 0``.
    :param event_shape: shape of one ``y`` (default: the energy's).
    :param support: constraint of ``y`` (default real).
    :param kwargs: ``x``, ``init``, ``batch_shape``, ``validate_args``.

    Example::

        >>> import math, torch, pyro
        >>> from pyro_ebm.partition import normalized_distribution
        >>> p = normalized_distribution(lambda y: 0.5 * y ** 2, 0.5 * math.log(2 * math.pi))
        >>> y = torch.tensor([0.0, 1.0])
        >>> torch.allclose(p.log_prob(y), pyro.distributions.Normal(0.0, 1.0).log_prob(y))
        True
    """
    return NormalizedGibbs(energy, log_z, beta=beta, event_shape=event_shape, support=support, **kwargs)


# ---------------------------------------------------------------------------------------------------
# from a Pyro model to an energy
# ---------------------------------------------------------------------------------------------------


class _ModelEnergy(Energy):
    """``F(y) = -log p(y)`` of a Pyro model's site, other discrete latents enumerated (see
    :func:`energy_from_model`)."""

    _PLATE = "_ebm_examples"

    def __init__(self, model, site, args, kwargs, data, max_plate_nesting):
        self.model, self.site = model, site
        self.args, self.kwargs, self.data = tuple(args), dict(kwargs or {}), dict(data or {})
        with torch.no_grad(), poutine.block():
            trace = poutine.trace(poutine.condition(model, self.data)).get_trace(*self.args, **self.kwargs)
        if site not in trace.nodes or trace.nodes[site]["type"] != "sample":
            names = [n for n, s in trace.nodes.items() if s["type"] == "sample"]
            raise ValueError(f"site {site!r} is not a sample site of the model; its sample sites are {names}")
        node = trace.nodes[site]
        for name, s in trace.nodes.items():
            if s["type"] != "sample" or name == site or s["is_observed"] or _is_subsample(s):
                continue
            if not getattr(s["fn"], "has_enumerate_support", False):
                raise ValueError(
                    f"site {name!r} is a continuous latent (its distribution {type(s['fn']).__name__} cannot be "
                    "enumerated), so -log p(y) would need an integral over it: condition it (pass "
                    f"data={{{name!r}: value}} or poutine.condition the model), or use a model whose other "
                    "latents are discrete"
                )
        value = node["value"]
        mpn = _guess_max_plate_nesting(trace) if max_plate_nesting is None else int(max_plate_nesting)
        self.max_plate_nesting = mpn
        self.site_batch_ndim = value.dim() - node["fn"].event_dim
        super().__init__(event_shape=tuple(value.shape))
        # remembers the site's dtype and device, so estimators work in the model's precision
        like = value if value.is_floating_point() else torch.zeros((), device=value.device)
        self.register_buffer("_like", torch.zeros((), dtype=like.dtype, device=like.device), persistent=False)

    def forward(self, y, x=None):
        if x is not None:
            raise TypeError("an energy built from a model takes the model's arguments via args/kwargs, not x")
        batch = y.shape[: y.dim() - len(self.event_shape)]
        n = int(math.prod(batch))
        mpn = self.max_plate_nesting
        pad = mpn - self.site_batch_ndim
        yy = y.reshape((n,) + (1,) * max(pad, 0) + tuple(self.event_shape))
        data = dict(self.data)
        data[self.site] = yy
        # the examples get their own plate left of the model's plates; enumeration goes further left
        conditioned = poutine.condition(config_enumerate(self.model, default="parallel"), data)
        with poutine.block(), pyro.validation_enabled(False):
            enum = poutine.enum(first_available_dim=-(mpn + 2))
            with poutine.trace() as tr, enum:
                with pyro.plate(self._PLATE, n, dim=-(mpn + 1)):
                    conditioned(*self.args, **self.kwargs)
        trace = tr.trace
        trace.compute_log_prob(site_filter=lambda name, s: not _is_subsample(s))
        trace.pack_tensors()
        outer = trace.plate_to_symbol[self._PLATE]
        tree: Dict[frozenset, list] = OrderedDict()
        for name, s in trace.nodes.items():
            if s["type"] != "sample" or _is_subsample(s):
                continue
            ordinal = frozenset(trace.plate_to_symbol[f.name] for f in s["cond_indep_stack"] if f.vectorized)
            tree.setdefault(ordinal, []).append(s["packed"]["log_prob"])
        sum_dims = set(trace.symbol_to_dim) - set(trace.plate_to_symbol.values())
        # with one example the size-1 plate is packed away: then there is nothing to keep
        kept = any(outer in t._pyro_dims for terms in tree.values() for t in terms)
        log_p = contract_to_tensor(tree, sum_dims, target_ordinal=frozenset({outer}) if kept else frozenset())
        dims = getattr(log_p, "_pyro_dims", "")
        if outer in dims:
            log_p = log_p.reshape(n)
        else:
            log_p = log_p.reshape(()).expand(n)
        return (-log_p).reshape(batch)

    def _label(self) -> str:
        return f"energy -log p({self.site})"


def energy_from_model(model, site: str = "y", *, args=(), kwargs=None, data=None, max_plate_nesting=None) -> Energy:
    r"""The energy :math:`F(y) = -\log p(y)` of the site ``site`` of a Pyro model.

    :math:`p(y)` is the model's joint density of ``y`` and its observed sites, with the model's other
    **discrete** latent sites summed out exactly by Pyro's parallel enumeration (the same contraction as
    ``TraceEnum_ELBO``, so local discrete latents inside plates are handled). With ``beta = 1`` the energy's
    ``log Z`` is 0 (up to the mass the model puts outside the region you integrate over): a handy check of
    :func:`log_partition`, and the way to put a probabilistic model and an EBM on the same footing.

    :param model: a Pyro model (a callable). ``pyro.param`` values are used as they are in the param store.
    :param site: name of the sample site that plays ``y``; the energy's ``event_shape`` is the site's full
        value shape in one run of the model (its plates included: ``F`` is then the joint over the plate).
    :param args: positional arguments of the model.
    :param kwargs: keyword arguments of the model.
    :param data: ``{site: value}`` to condition other sites (e.g. continuous latents at fixed values).
    :param max_plate_nesting: the model's plate depth (guessed from one run by default).
    :returns: an :class:`~pyro_ebm.Energy`; ``F(y)`` takes ``y`` ``[*batch, *event_shape]`` and returns
        ``[*batch]`` (all examples in one vectorised run under an extra plate). Differentiable with respect
        to ``y`` and the model's parameters.
    :raises ValueError: if ``site`` is not a sample site, or another latent site is continuous and not
        conditioned.

    Example::

        >>> import torch, pyro, pyro.distributions as dist
        >>> from pyro_ebm.partition import energy_from_model
        >>> def mixture():
        ...     z = pyro.sample("z", dist.Categorical(torch.tensor([0.3, 0.7])))
        ...     return pyro.sample("y", dist.Normal(torch.tensor([-2.0, 2.0])[z], 1.0))
        >>> F = energy_from_model(mixture, "y")
        >>> y = torch.tensor([-2.0, 0.0, 2.0])
        >>> ref = torch.logsumexp(torch.stack([torch.tensor(0.3).log() + dist.Normal(-2.0, 1.0).log_prob(y),
        ...                                    torch.tensor(0.7).log() + dist.Normal(2.0, 1.0).log_prob(y)]), 0)
        >>> torch.allclose(F(y), -ref)
        True
    """
    if not callable(model):
        raise TypeError(f"model must be a callable Pyro model, got {type(model).__name__}")
    if not isinstance(site, str):
        raise TypeError(f"site must be a site name (str), got {type(site).__name__}")
    if max_plate_nesting is not None:
        max_plate_nesting = check_positive_int(max_plate_nesting, "max_plate_nesting", minimum=0, maximum=64)
    return _ModelEnergy(model, site, args, kwargs, data, max_plate_nesting)
