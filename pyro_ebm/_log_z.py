"""Detection of a silently missing ``log Z(theta)``: an energy site whose normalizer moves with inference.

``GibbsBoltzmann.log_prob`` and :func:`~pyro_ebm.energy_factor` return ``-beta F`` without ``-log Z``. That is
right when ``Z`` is a constant of the inference (the energy reads only the site's own value and data), and
wrong when the energy also reads a latent sample site or a learnable parameter ``theta``: the model then
lacks ``-log Z(theta)``, a *doubly-intractable* likelihood, and MCMC, SVI or MAP silently target the wrong
posterior.

The check is structural and cheap. When a log-density is evaluated with gradients (every MCMC potential
gradient, every ELBO), the autograd graph of the log-factor is walked back to its inputs; if it reaches
the value of another sample site that carries gradients (a latent being inferred: NUTS/HMC conditions it
on a tensor that requires grad, SVI replays the guide's reparameterised draw) or a ``pyro.param`` /
``pyro.module`` parameter of the same trace, a :class:`DoublyIntractableWarning` names the site and the
sites it depends on. An ``energy_factor`` has no variable of its own: over latent sites it is a potential
(an unnormalized joint density), which is how energies enter Pyro programs, so only its dependence on
parameters is flagged. A theta-free energy never reaches them. Evaluations without gradients (``Predictive``
runs under ``torch.no_grad``; ``log_prob`` called outside a trace) carry no graph and are not checked.
The result is cached per site and energy code.

The warning is given once per site (with its energy code and what it depends on) per inference: per
``pyro.infer`` object (``MCMC``, ``SVI``, an ELBO, ...), the outermost one among the calls evaluating the
log-density, and once per process for evaluations outside any (``log_prob_sum`` called by hand). Pyro
re-traces the model at every potential or ELBO evaluation, so leaving the repetition to Python's warning
filters would repeat it thousands of times in one NUTS run under ``warnings.simplefilter("always")``.

The same missing normalizer rules out ancestral sampling: ``pyro.infer.Predictive`` runs the model forward,
drawing every site it has no samples of from its distribution, and a Gibbs-Boltzmann site has no sampler
(its ``sample()`` only gives the point that starts inference). :func:`refuse_ancestral_sample` and
:func:`refuse_ancestral_factor` make such a run raise instead of returning those points, or draws that
leave out an ``energy_factor``.
"""

from __future__ import annotations

import sys
import warnings
import weakref
from typing import Dict, Iterable, List, Optional, Tuple

import torch

__all__ = ["DoublyIntractableWarning"]


class DoublyIntractableWarning(UserWarning):
    """An energy site's log-density depends on latent sites or learnable parameters, so the model leaves out
    ``-log Z(theta)``: the posterior (or the fitted parameters) are those of the wrong model."""


#: (site name, energy code) -> names of the sites its log-factor was found to depend on (empty: none)
_RESULTS: Dict[tuple, Tuple[str, ...]] = {}
_MAX_NODES = 200_000
#: inference object -> the warnings (what, site, energy code, dependencies) already given during it
_WARNED_IN: "weakref.WeakKeyDictionary[object, set]" = weakref.WeakKeyDictionary()
#: the same for evaluations outside any inference object
_WARNED: set = set()


def code_key(energy) -> object:
    """What identifies an energy across executions of a model: its function's code (a closure built anew
    at every execution keeps its code object), or its class for a module."""
    fn = getattr(energy, "fn", energy)
    return getattr(fn, "__code__", None) or type(fn)


def _targets(trace, skip: str) -> List[Tuple[str, str, torch.Tensor]]:
    """``(name, kind, value)`` of the sites a log-factor must not depend on: other sample sites whose value
    carries gradients (latents being inferred) and parameters."""
    out = []
    for name, site in trace.nodes.items():
        if name == skip:
            continue
        if site["type"] == "param":
            kind = "parameter"
        elif site["type"] == "sample" and not site.get("infer", {}).get("is_auxiliary"):
            kind = "latent site"
        else:
            continue
        value = site.get("value")
        if isinstance(value, torch.Tensor) and value.requires_grad:
            out.append((name, kind, value))
    return out


def _reached(out: torch.Tensor, targets, stop: Optional[torch.Tensor] = None) -> Tuple[str, ...]:
    """Names of the targets whose values the autograd graph of ``out`` reaches (not through ``stop``)."""
    by_node, by_leaf = {}, {}
    for name, kind, v in targets:
        if v.grad_fn is not None:
            by_node[id(v.grad_fn)] = (name, kind, v.grad_fn)
        else:
            by_leaf[id(v)] = (name, kind, v)
    stop_ids = set()
    if isinstance(stop, torch.Tensor) and stop.requires_grad:
        stop_ids.add(id(stop.grad_fn) if stop.grad_fn is not None else id(stop))
    found, seen, stack = [], {}, [out.grad_fn]
    while stack and len(seen) < _MAX_NODES:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node  # keep it alive: ids stay unique during the walk
        if id(node) in by_node:
            found.append(by_node[id(node)])
            continue
        if id(node) in stop_ids:
            continue
        var = getattr(node, "variable", None)
        if var is not None:
            if id(var) in by_leaf:
                found.append(by_leaf[id(var)])
            continue
        stack.extend(n for n, _ in node.next_functions)
    return tuple(f"{kind} {name!r}" for name, kind, _ in found)


def _message(what: str, name: str, deps: Iterable[str]) -> str:
    return (
        f"{what} {name!r} is a doubly-intractable likelihood: its log-density -beta*F depends on "
        f"{', '.join(deps)}, but log Z of its energy is left out, so inference targets the wrong model "
        "(the missing -log Z(theta) moves with them). Treatments: pyro_ebm.likelihood.exchange (Bayesian "
        "posterior, Murray et al. 2006), pyro_ebm.ml.ml_fit (maximum likelihood), "
        "pyro_ebm.likelihood.pseudo_likelihood_fit (discrete energies), pyro_ebm.losses.nce, or an exact "
        "normalizer (DiscreteGibbs, partition.NormalizedGibbs with log_z(theta)). If log Z does not depend on "
        "them (e.g. a location family F(y - mu)), pass constant_log_z=True to silence this warning."
    )


def _check(key, trace_targets, out, stop, what: str, name: str) -> None:
    deps = _RESULTS.get(key)
    if deps is None:
        targets = trace_targets()
        if not targets:
            return  # nothing inferred carries gradients here: no information, check again next time
        deps = _reached(out, targets, stop)
        _RESULTS[key] = deps
    if deps:
        _warn_once((what, *key, deps), _message(what, name, deps))


def _inference_object():
    """The outermost ``pyro.infer`` object (``MCMC``, ``SVI``, an ELBO, ...) whose method is among the
    calls on the stack, or ``None``."""
    found, frame = None, sys._getframe(1)
    while frame is not None:
        if "self" in frame.f_code.co_varnames:
            obj = frame.f_locals.get("self")
            if obj is not None and any(c.__module__.startswith("pyro.infer") for c in type(obj).__mro__):
                found = obj
        frame = frame.f_back
    return found


def _warn_once(key: tuple, message: str) -> None:
    """Warn unless this ``key`` was warned about during the same inference (see the module docstring)."""
    owner = _inference_object()
    seen = _WARNED
    if owner is not None:
        try:
            seen = _WARNED_IN.setdefault(owner, set())
        except TypeError:  # cannot be weakly referenced: once per process
            pass
    if key in seen:
        return
    seen.add(key)
    warnings.warn(message, DoublyIntractableWarning, stacklevel=5)


def _contains(fn, dist_obj) -> bool:
    while fn is not None:
        if fn is dist_obj:
            return True
        fn = getattr(fn, "base_dist", None)
    return False


def _enclosing_site(dist_obj, max_depth: int = 12):
    """The trace and site name whose distribution is (or wraps) ``dist_obj``, found in the frames that are
    computing its log-density (``Trace.compute_log_prob``, ``log_prob_sum``, an MCMC potential)."""
    from pyro.poutine.trace_messenger import TraceMessenger
    from pyro.poutine.trace_struct import Trace

    frame = sys._getframe(2)
    for _ in range(max_depth):
        if frame is None:
            return None
        for v in list(frame.f_locals.values()):
            tr = v.trace if isinstance(v, TraceMessenger) else v
            if isinstance(tr, Trace):
                for name, site in tr.nodes.items():
                    if site["type"] == "sample" and _contains(site.get("fn"), dist_obj):
                        return tr, name
        frame = frame.f_back
    return None


def check_distribution(dist_obj, value: torch.Tensor, lp: torch.Tensor) -> None:
    """Called by ``GibbsBoltzmann.log_prob`` when ``lp`` carries gradients."""
    found = _enclosing_site(dist_obj)
    if found is None:
        return
    trace, name = found
    key = (name, code_key(dist_obj.energy))
    _check(key, lambda: _targets(trace, name), lp, value, "GibbsBoltzmann site", name)


def check_factor(name: str, energy: torch.Tensor) -> None:
    """Called by :func:`~pyro_ebm.energy_factor` inside a model, before the factor site is recorded."""
    if not (energy.requires_grad and torch.is_grad_enabled()):
        return
    from pyro.poutine.runtime import _PYRO_STACK
    from pyro.poutine.trace_messenger import TraceMessenger

    traces = [m.trace for m in _PYRO_STACK if isinstance(m, TraceMessenger) and not m.param_only]
    if not traces:
        return
    key = (name, sys._getframe(2).f_code)

    def targets():
        # a factor has no variable of its own: over latent sites it is a potential (an unnormalized joint,
        # the way energies enter Pyro programs), whose normalizer is a constant; only parameters learned
        # through it (SVI, MAP) make a missing log Z(theta) matter
        out, names = [], set()
        for tr in traces:
            for t in _targets(tr, name):
                if t[1] == "parameter" and t[0] not in names:
                    names.add(t[0])
                    out.append(t)
        return out

    _check(key, targets, energy, None, "energy_factor", name)


# ------------------------------------------------------------------------------------------------------
# ancestral sampling (pyro.infer.Predictive)


def _predictive_draws() -> bool:
    """Whether ``pyro.infer.Predictive`` is running the model forward to draw its sites: its functions are
    on the stack and no ``InitMessenger`` sets the values (Predictive's own shape discovery and every
    ``init_to_*`` strategy draw initial points, which is what ``GibbsBoltzmann.sample`` is for)."""
    if torch.is_grad_enabled():  # Predictive runs the model under torch.no_grad
        return False
    from pyro.infer import predictive
    from pyro.infer.autoguide.initialization import InitMessenger
    from pyro.poutine.runtime import _PYRO_STACK

    if any(isinstance(m, InitMessenger) for m in _PYRO_STACK):
        return False
    codes = {f.__code__ for f in (getattr(predictive, n, None) for n in ("_predictive", "_predictive_sequential"))
             if callable(f)}
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


_INSTEAD = (
    "run MCMC on the model (pyro.infer.MCMC with NUTS) and pass its samples as "
    "pyro.infer.Predictive(model, posterior_samples=mcmc.get_samples()), which then draws only the other "
    "sites; for an energy alone, pyro_ebm.mcmc.sample draws from exp(-beta F)"
)


def refuse_ancestral_sample(dist_obj) -> None:
    """Called by ``GibbsBoltzmann.sample``: raise ``NotImplementedError`` when ``Predictive`` draws the site."""
    if not _predictive_draws():
        return
    name, frame = None, sys._getframe(1)
    for _ in range(8):  # the Pyro message being sampled names the site
        if frame is None:
            break
        msg = frame.f_locals.get("msg") if "msg" in frame.f_code.co_varnames else None
        if isinstance(msg, dict) and _contains(msg.get("fn"), dist_obj):
            name = msg.get("name")
            break
        frame = frame.f_back
    site = f"GibbsBoltzmann site {name!r}" if name else "a GibbsBoltzmann site"
    raise NotImplementedError(
        f"pyro.infer.Predictive cannot draw {site} by ancestral sampling: exp(-beta F) is unnormalized and "
        "has no direct sampler (GibbsBoltzmann.sample() only gives the point that starts inference, e.g. "
        f"zeros). To draw it, {_INSTEAD}."
    )


def _is_delta(fn) -> bool:
    while fn is not None:
        if isinstance(fn, torch.distributions.Distribution) and type(fn).__name__ == "Delta":
            return True
        fn = getattr(fn, "base_dist", None)
    return False


def refuse_ancestral_factor(name: str) -> None:
    """Called by :func:`~pyro_ebm.energy_factor`: raise ``NotImplementedError`` when ``Predictive`` has
    drawn sites before this factor, whose draws then leave the factor out."""
    if not _predictive_draws():
        return
    from pyro.poutine.runtime import _PYRO_STACK
    from pyro.poutine.trace_messenger import TraceMessenger

    drawn = []
    for m in _PYRO_STACK:
        if not isinstance(m, TraceMessenger):
            continue
        for site_name, site in m.trace.nodes.items():
            if (site["type"] == "sample" and not site["is_observed"] and site_name not in drawn
                    and type(site["fn"]).__name__ != "_Subsample" and not _is_delta(site["fn"])
                    and not site.get("infer", {}).get("is_auxiliary")):
                drawn.append(site_name)
    if drawn:
        raise NotImplementedError(
            f"pyro.infer.Predictive drew the sites {drawn} by ancestral sampling, from their own distributions, "
            f"which leaves out energy_factor {name!r}: the factor exp(-beta F) reweights the model's density "
            f"and a forward run cannot. To draw them, {_INSTEAD}; for discrete sites, "
            "pyro.infer.infer_discrete draws them exactly."
        )
