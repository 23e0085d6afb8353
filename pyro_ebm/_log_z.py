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
The result is cached per site and energy code; Python's warning filters show the warning once per site.
"""

from __future__ import annotations

import sys
import warnings
from typing import Dict, Iterable, List, Optional, Tuple

import torch

__all__ = ["DoublyIntractableWarning"]


class DoublyIntractableWarning(UserWarning):
    """An energy site's log-density depends on latent sites or learnable parameters, so the model leaves out
    ``-log Z(theta)``: the posterior (or the fitted parameters) are those of the wrong model."""


#: (site name, energy code) -> names of the sites its log-factor was found to depend on (empty: none)
_RESULTS: Dict[tuple, Tuple[str, ...]] = {}
_MAX_NODES = 200_000


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
        warnings.warn(_message(what, name, deps), DoublyIntractableWarning, stacklevel=4)


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
