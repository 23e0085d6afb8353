"""Per-chain potentials ``U(q) = beta * U0(q)`` over a flat chain batch ``q`` of shape ``[R, C, D]``.

``R`` is the number of tempering replicas (1 without tempering), ``C`` the number of chains and ``D``
the flattened event size. Two sources of ``U0``:

* an :class:`~pyro_ebm.Energy` ``F(y[, x])``: ``U0 = F`` evaluated on ``y = q.reshape(..., *event)``;
* a Pyro model (:class:`ModelPotential`): ``U0 = -log p(constrained(q)) - log|det J|`` over the
  model's latent sites, run under an outer plate over chains so each chain gets its own value.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch

import pyro
import pyro.poutine as poutine
from torch.distributions import biject_to

from ..energy import _CallableEnergy

__all__ = ["EnergyPotential", "ModelPotential"]


class EnergyPotential:
    """``U0(q) = F(q)`` for an energy; see the module docstring for shapes."""

    is_model = False
    _ones = None

    def __init__(self, energy, event_shape: torch.Size, x=None):
        self.energy = energy
        self.event_shape = torch.Size(event_shape)
        self.dim = int(math.prod(self.event_shape))
        self.x = x

    def to_flat(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(y.shape[: y.dim() - len(self.event_shape)] + (self.dim,))

    def unflatten(self, q: torch.Tensor) -> torch.Tensor:
        return q.reshape(q.shape[:-1] + self.event_shape)

    def value(self, q: torch.Tensor) -> torch.Tensor:
        """``F`` at ``q`` ``[R, C, D]`` -> ``[R, C]``, no gradient."""
        with torch.no_grad():
            try:
                return self._call(q)
            except ValueError as exc:
                bad = _off_the_reals(q, exc)
                return self.value(q.masked_fill(bad[..., None], 0.0)).masked_fill(bad, math.inf)

    def _input(self, q: torch.Tensor) -> torch.Tensor:
        """``q`` ``[R, C, D]`` reshaped to the energy's input (a view)."""
        R, C = q.shape[:2]
        if self.x is None:
            return q.reshape((R * C,) + self.event_shape)
        if R == 1:
            return q.reshape((C,) + self.event_shape)
        return q.reshape((R, C) + self.event_shape)

    def energy_fn(self):
        """The function called on ``y`` (and ``x``): a plain callable wrapped by ``as_energy`` directly
        (the wrapper's forward only forwards to it), unless someone hooked the wrapper module."""
        e = self.energy
        if type(e) is _CallableEnergy and not (e._forward_hooks or e._forward_pre_hooks or _global_hooks()):
            return e.fn
        return e

    def _energy(self, y: torch.Tensor) -> torch.Tensor:
        f = self.energy_fn()
        return f(y) if self.x is None else f(y, self.x)

    def _call(self, q: torch.Tensor) -> torch.Tensor:
        return self._energy(self._input(q)).reshape(q.shape[:2])

    def value_and_grad(self, q: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``F`` ``[R, C]`` and ``dF/dq`` ``[R, C, D]`` (gradient w.r.t. ``q`` only).

        The reshapes between the flat chain batch and the energy's input/output are done outside the
        autograd graph, so the backward pass is the energy's own.
        """
        y = self._input(q.detach())
        try:
            F, g = _value_and_grad(self._energy, y, self)
        except ValueError as exc:
            bad = _off_the_reals(q, exc)
            F, g = self.value_and_grad(q.masked_fill(bad[..., None], 0.0))
            return F.masked_fill(bad, math.inf), g.masked_fill(bad[..., None], 0.0)
        return F.reshape(q.shape[:2]), g.reshape(q.shape)


def _off_the_reals(q: torch.Tensor, exc: ValueError) -> torch.Tensor:
    """The chains ``[R, C]`` whose position ``q`` ``[R, C, D]`` holds NaN or inf (a diverging trajectory).

    An energy that refuses such points (the library's own energies raise a ``ValueError`` naming ``y``) is
    called again at the other chains only: those chains get energy ``+inf`` and gradient 0, so the proposal
    is rejected as a divergence, as it is for an energy that returns NaN. Looked for only after the energy
    raised (no cost on the usual path); a ``ValueError`` at finite points is the energy's own (``exc``) and
    is raised again."""
    bad = ~torch.isfinite(q.detach()).all(-1)
    if not bool(bad.any()):
        raise exc
    return bad


def _global_hooks() -> bool:
    m = torch.nn.modules.module
    return bool(
        getattr(m, "_global_forward_hooks", None) or getattr(m, "_global_forward_pre_hooks", None)
        or getattr(m, "_global_forward_hooks_always_called", None)
    )


try:  # the engine call behind torch.autograd.grad, without its per-call argument checks
    _ENGINE = torch.autograd.Variable._execution_engine
except AttributeError:  # pragma: no cover - very old or future torch
    _ENGINE = None


def _value_and_grad(fn, q, owner):
    """``fn(q)`` and its gradient w.r.t. ``q`` only (parameters get no ``.grad``)."""
    with torch.enable_grad():
        q = q.detach().requires_grad_(True)
        f = fn(q)
        if not f.requires_grad:  # an energy that does not depend on y
            return f.detach(), torch.zeros_like(q)
        ones = owner._ones
        if ones is None or ones.shape != f.shape or ones.dtype != f.dtype or ones.device != f.device:
            ones = owner._ones = torch.ones_like(f)
        g = None
        if _ENGINE is not None:
            try:
                (g,) = _ENGINE.run_backward((f,), (ones,), False, False, (q,), True, False)
            except (TypeError, RuntimeError):
                g = None
        if g is None:
            (g,) = torch.autograd.grad(f, q, grad_outputs=ones, allow_unused=True)
        if g is None:
            g = torch.zeros_like(q)
    return f.detach(), g


def _is_subsample(site) -> bool:
    return type(site["fn"]).__name__ == "_Subsample"


def _guess_max_plate_nesting(trace) -> int:
    depth = 0
    for site in trace.nodes.values():
        if site["type"] != "sample":
            continue
        for frame in site["cond_indep_stack"]:
            if frame.vectorized and frame.dim is not None:
                depth = max(depth, -frame.dim)
    return depth


class ModelPotential:
    """``U0(q) = -log p(T(q)) - log|det dT/dq|`` for a Pyro model with continuous latent sites.

    ``q`` packs every latent site's unconstrained value (``biject_to(site.support).inv``) into one flat
    vector per chain; :meth:`unpack` maps a chain batch back to a dict of constrained values. The model
    runs once per evaluation for all chains at once, under a ``pyro.plate`` over chains placed to the
    left of the model's own plates.

    :param model: a Pyro model; observed sites (``obs=``) and ``pyro.factor`` sites contribute to the
        log density, unobserved sample sites are sampled.
    :param args: positional arguments of ``model``.
    :param kwargs: keyword arguments of ``model``.
    """

    is_model = True
    _ones = None

    def __init__(self, model: Callable, args: tuple = (), kwargs: Optional[dict] = None):
        self.model = model
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        with torch.no_grad(), poutine.block():
            trace = poutine.trace(model).get_trace(*self.args, **self.kwargs)
        self.max_plate_nesting = _guess_max_plate_nesting(trace)
        self.sites: Dict[str, dict] = {}
        offset = 0
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or _is_subsample(site):
                continue
            fn = site["fn"]
            if fn.support.is_discrete if hasattr(fn.support, "is_discrete") else False:
                raise ValueError(f"site {name!r} is discrete; the samplers here need continuous latents")
            transform = biject_to(fn.support)
            value = site["value"].detach()
            u = transform.inv(value)
            self.sites[name] = dict(
                shape=value.shape, ushape=u.shape, transform=transform, offset=offset, size=u.numel(),
                event_dim=fn.event_dim,
            )
            offset += u.numel()
        if not self.sites:
            raise ValueError("the model has no latent sample sites to sample")
        self.dim = offset
        self.event_shape = torch.Size((offset,))
        self._example = {k: trace.nodes[k]["value"].detach() for k in self.sites}

    # -- packing ---------------------------------------------------------------------------------
    def _split(self, q: torch.Tensor):
        batch = q.shape[:-1]
        for name, s in self.sites.items():
            yield name, s, q[..., s["offset"] : s["offset"] + s["size"]].reshape(batch + s["ushape"])

    def unpack(self, q: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Constrained values ``{site: [*batch, *site_shape]}`` of flat unconstrained ``q [*batch, D]``."""
        return {name: s["transform"](u) for name, s, u in self._split(q)}

    def pack(self, values: Dict[str, torch.Tensor], batch_shape) -> torch.Tensor:
        """Flat unconstrained ``[*batch, D]`` from constrained values ``{site: [*batch, *site_shape]}``."""
        parts = []
        for name, s in self.sites.items():
            if name not in values:
                raise ValueError(f"init is missing the latent site {name!r}")
            v = torch.as_tensor(values[name])
            if tuple(v.shape) != tuple(batch_shape) + tuple(s["shape"]):
                raise ValueError(
                    f"init[{name!r}] must have shape {tuple(batch_shape) + tuple(s['shape'])}, got {tuple(v.shape)}"
                )
            parts.append(s["transform"].inv(v).reshape(tuple(batch_shape) + (s["size"],)))
        return torch.cat(parts, -1)

    def random_init(self, num_chains: int, generator: torch.Generator, dtype, device, radius: float = 2.0):
        """Uniform(-radius, radius) in unconstrained space, like ``init_to_uniform``: ``[chains, D]``."""
        u = torch.rand((num_chains, self.dim), generator=generator, dtype=dtype, device=device)
        return (2 * u - 1) * radius

    # -- evaluation ------------------------------------------------------------------------------
    def _call(self, q: torch.Tensor) -> torch.Tensor:
        R, C = q.shape[:2]
        N = R * C
        flat = q.reshape(N, self.dim)
        n_model = self.max_plate_nesting
        data = {}
        log_jac = torch.zeros(N, dtype=q.dtype, device=q.device)
        for name, s, u in self._split(flat):
            value = s["transform"](u)
            ladj = s["transform"].log_abs_det_jacobian(u, value)
            log_jac = log_jac + ladj.reshape(N, -1).sum(-1)
            # put the chain dim to the left of the model's plates
            site_batch = len(s["shape"]) - s["event_dim"]
            pad = n_model - site_batch
            data[name] = value.reshape((N,) + (1,) * max(pad, 0) + tuple(s["shape"]))
        # NaNs from a diverging trajectory must be rejected by the sampler, not raised by validation
        with pyro.validation_enabled(False), poutine.block(), poutine.trace() as tr:
            with pyro.plate("_ebm_chains", N, dim=-(n_model + 1)):
                poutine.condition(self.model, data)(*self.args, **self.kwargs)
        log_p = torch.zeros(N, dtype=q.dtype, device=q.device)
        chain_dim_from_right = n_model + 1
        for name, site in tr.trace.nodes.items():
            if site["type"] != "sample" or _is_subsample(site):
                continue
            with pyro.validation_enabled(False):
                lp = site["fn"].log_prob(site["value"])
            scale = site.get("scale", 1.0)
            mask = site.get("mask", None)
            if mask is not None and mask is not True:
                lp = torch.where(torch.as_tensor(mask, device=lp.device), lp, torch.zeros_like(lp))
            if not isinstance(scale, float) or scale != 1.0:
                lp = lp * scale
            if lp.dim() >= chain_dim_from_right and lp.shape[lp.dim() - chain_dim_from_right] == N:
                lp = lp.movedim(lp.dim() - chain_dim_from_right, 0).reshape(N, -1).sum(-1)
            else:
                lp = lp.sum().expand(N)
            log_p = log_p + lp
        return (-(log_p + log_jac)).reshape(R, C)

    def value(self, q: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._call(q)

    def value_and_grad(self, q: torch.Tensor):
        """``U0`` ``[R, C]`` and its gradient ``[R, C, D]`` w.r.t. the unconstrained ``q``."""
        return _value_and_grad(self._call, q, self)
