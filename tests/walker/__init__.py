"""The bad-input walker: every public callable and public method of ``pyro_ebm``, called once with valid
arguments (a *spec*), then once per mutation of each argument. Nothing is written by hand per bad case: the
mutations come from the type of each valid argument.

Mutation classes (:func:`mutations`):

* a floating tensor: a NaN entry (``nan``), an infinite entry (``inf``), an integer dtype (``int-dtype``),
  a trailing singleton dimension (``trailing-dim``: ``[..., 1]``, the wrong rank), an empty leading
  dimension (``empty``);
* an integer tensor (labels, indices): a float dtype, indices out of range, a trailing dimension, empty;
* a Python int (a count, a seed, a size): NaN, a non-integer, a negative value, a huge value (``2**62``);
* a Python float (a hyper-parameter): NaN, inf, a negative value;
* a string (an option): a value no option has;
* a list/tuple of numbers: a NaN element, empty;
* an energy (a function or an ``nn.Module`` returning a tensor): it returns NaN (``returns-nan``), it
  returns one dimension too many (``wrong-shape``), a parameter became NaN (``nan-param``).

Every case must be rejected by a ``ValueError``/``TypeError`` whose message names the argument, unless the
spec says the mutated value is legal (``accepts``: with the reason) or that the message is known not to name
it (``unclear``: counted against a budget of 3% of the cases). A call that returns counts as a *silent
accept*; one whose result holds NaN (or inf where the valid call's result had none) as a *silent NaN*; one
that runs past :data:`TIMEOUT` seconds as a *hang*. All three must be zero. (An inf in the result of an
accepted case is its legal answer: a point at infinity has energy +inf.)

``python -m walker`` (from ``tests/``) prints the totals.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import math
import numbers
import re
import signal
import warnings
from typing import Callable, Dict, List, Mapping, NamedTuple, Tuple

import numpy as np
import pyro
import torch

TIMEOUT = 20.0  # seconds a single case may run
HUGE = 2**62
SPEC_MODULES = ("specs_core", "specs_training", "specs_models")


class Spec(NamedTuple):
    make: Callable[[], Tuple[Callable, tuple, dict]]  # a fresh (callable, args, kwargs) at every call
    accepts: Mapping[str, str]  # "arg:mutation" -> why the mutated value is legal
    names: Mapping[str, str]  # arg -> regex the message must match instead of the argument's name
    unclear: Mapping[str, str]  # "arg:mutation" -> why the message cannot name the argument
    skip: Mapping[str, str]  # arg -> why it is not mutated (an option object, a callback, ...)


class Exempt(NamedTuple):
    reason: str


def spec(make, *, accepts=None, names=None, unclear=None, skip=None) -> Spec:
    return Spec(make, dict(accepts or {}), dict(names or {}), dict(unclear or {}), dict(skip or {}))


def call(fn, *args, **kwargs):
    """What a spec's ``make`` returns: the callable and its valid arguments."""
    return fn, args, kwargs


# --------------------------------------------------------------------------------------------- mutations


class _Hit:
    """Set when a mutated energy actually produced its bad output (else the case does not apply)."""

    def __init__(self):
        self.hit = False


def _wrap_output(fn, change, hit):
    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            hit.hit = True
            return change(out)
        return out

    return wrapped


def _nan_out(t):
    return t * math.nan


def _extra_dim(t):
    return t[..., None]


def _module_output(change):
    def mutate(m, hit):
        m = copy.deepcopy(m)
        m.forward = _wrap_output(m.forward, change, hit)  # an instance attribute: nn.Module.__call__ finds it
        return m

    return mutate


def _nan_param(m, hit):
    m = copy.deepcopy(m)
    with torch.no_grad():
        for p in m.parameters():
            if p.is_floating_point() and p.numel():
                p.view(-1)[0] = math.nan
                hit.hit = True
                break
    return m


def _tensor_set(value):
    def mutate(t, hit):
        t = t.clone()
        t.view(-1)[0] = value
        return t

    return mutate


def mutations(value) -> List[Tuple[str, Callable]]:
    """``[(mutation name, mutate(value, hit) -> bad value)]`` for one valid argument (see the module doc)."""
    out = []
    if isinstance(value, torch.nn.Module):
        out += [("returns-nan", _module_output(_nan_out)), ("wrong-shape", _module_output(_extra_dim))]
        if any(p.is_floating_point() for p in value.parameters()):
            out.append(("nan-param", _nan_param))
    elif isinstance(value, torch.Tensor):
        if value.is_floating_point():
            if value.numel():
                out += [("nan", _tensor_set(math.nan)), ("inf", _tensor_set(math.inf))]
            out.append(("int-dtype", lambda t, hit: t.long()))
        elif value.dtype != torch.bool:
            if value.numel():
                out.append(("out-of-range", lambda t, hit: t + 10**6))
            out.append(("float-dtype", lambda t, hit: t.float()))
        if value.dim() >= 1:
            out.append(("trailing-dim", lambda t, hit: t[..., None]))
            if value.shape[0] > 0:
                out.append(("empty", lambda t, hit: t[:0]))
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, numbers.Integral):
        out += [("nan", lambda v, hit: math.nan), ("non-integer", lambda v, hit: v + 0.5),
                ("negative", lambda v, hit: -1 - abs(v)), ("huge", lambda v, hit: HUGE)]
    elif isinstance(value, numbers.Real):
        out += [("nan", lambda v, hit: math.nan), ("inf", lambda v, hit: math.inf),
                ("negative", lambda v, hit: -abs(v) - 1.0)]
    elif isinstance(value, str):
        out.append(("unknown-option", lambda v, hit: "no_such_option"))
    elif isinstance(value, (list, tuple)) and value and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value
    ):
        out += [("nan-element", lambda v, hit: type(v)([math.nan, *v[1:]])), ("empty", lambda v, hit: type(v)())]
    elif inspect.isfunction(value) or inspect.ismethod(value) or isinstance(value, __import__("functools").partial):
        out += [("returns-nan", lambda f, hit: _wrap_output(f, _nan_out, hit)),
                ("wrong-shape", lambda f, hit: _wrap_output(f, _extra_dim, hit))]
    return out


# --------------------------------------------------------------------------------------------- running


class Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise Hang()


def _nonfinite(obj, depth=0, seen=None) -> Tuple[bool, bool]:
    """(holds NaN, holds inf) anywhere in a result: tensors, numbers, arrays, containers, modules, objects."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 4:
        return False, False
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        if not (obj.is_floating_point() or obj.is_complex()) or obj.numel() == 0:
            return False, False
        o = obj.detach()
        return bool(torch.isnan(o).any()), bool(torch.isinf(o).any())
    if isinstance(obj, bool):
        return False, False
    if isinstance(obj, numbers.Real):
        return math.isnan(obj), math.isinf(obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind != "f":
            return False, False
        return bool(np.isnan(obj).any()), bool(np.isinf(obj).any())
    if isinstance(obj, torch.nn.Module):
        items = list(obj.parameters()) + list(obj.buffers())
    elif isinstance(obj, (list, tuple)):
        items = list(obj)
    elif isinstance(obj, dict):
        items = list(obj.values())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    elif type(obj).__module__.startswith("pyro_ebm") and hasattr(obj, "__dict__"):
        items = list(vars(obj).values())
    else:
        return False, False
    nan = inf = False
    for item in items:
        a, b = _nonfinite(item, depth + 1, seen)
        nan, inf = nan or a, inf or b
    return nan, inf


def _run(fn, args, kwargs):
    """(outcome, detail): ("returned", result) or ("raised", exception) or ("hang", None)."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    dtype = torch.get_default_dtype()
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fn(*args, **kwargs)
        return "returned", result
    except Hang:
        return "hang", None
    except Exception as exc:  # noqa: BLE001 -- every exception is classified by the caller
        return "raised", exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        torch.set_default_dtype(dtype)


def _mutable_args(fn, args, kwargs, skip) -> List[Tuple[str, object]]:
    sig = inspect.signature(fn)
    bound = sig.bind(*args, **kwargs)
    out = []
    for name, value in bound.arguments.items():
        kind = sig.parameters[name].kind
        if kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD) or name in skip:
            continue
        out.append((name, value))
    return out


class Case(NamedTuple):
    target: str
    arg: str
    mutation: str

    @property
    def key(self):
        return f"{self.arg}:{self.mutation}"


class Outcome(NamedTuple):
    case: Case
    verdict: str  # clear | accepted-legal | unclear | silent-accept | silent-nan | hang | n/a
    detail: str


def cases(target: str, s: Spec) -> List[Case]:
    fn, args, kwargs = s.make()
    out = []
    for name, value in _mutable_args(fn, args, kwargs, s.skip):
        for mutation, _ in mutations(value):
            out.append(Case(target, name, mutation))
    return out


def run_base(s: Spec):
    """Call the spec's valid arguments: (result, has inf) -- raises AssertionError when the valid call fails."""
    fn, args, kwargs = s.make()
    outcome, detail = _run(fn, args, kwargs)
    if outcome != "returned":
        raise AssertionError(f"the valid call did not return ({outcome}): {detail!r}")
    nan, inf = _nonfinite(detail)
    if nan:
        raise AssertionError("the valid call returned NaN")
    return detail, inf


def run_case(case: Case, s: Spec, base_inf: bool) -> Outcome:
    fn, args, kwargs = s.make()
    bound = inspect.signature(fn).bind(*args, **kwargs)
    value = bound.arguments[case.arg]
    mutate = dict(mutations(value))[case.mutation]
    hit = _Hit()
    bound.arguments[case.arg] = mutate(value, hit)
    outcome, detail = _run(fn, bound.args, bound.kwargs)
    energy_mutation = case.mutation in ("returns-nan", "wrong-shape", "nan-param")
    if outcome == "hang":
        return Outcome(case, "hang", f"ran past {TIMEOUT:.0f} s")
    if outcome == "returned":
        nan, inf = _nonfinite(detail)
        if nan or (inf and not base_inf and case.key not in s.accepts):
            return Outcome(case, "silent-nan", "the result holds " + ("NaN" if nan else "inf"))
        if energy_mutation and not hit.hit:
            return Outcome(case, "n/a", "the mutated callable never returned a floating tensor")
        if case.key in s.accepts:
            return Outcome(case, "accepted-legal", s.accepts[case.key])
        return Outcome(case, "silent-accept", "returned without an error")
    exc = detail
    text = f"{type(exc).__name__}: {exc}"
    if case.key in s.accepts:
        return Outcome(case, "clear", text)  # a legal value may still be refused for another reason
    pattern = s.names.get(case.arg, rf"(?<![A-Za-z0-9_]){re.escape(case.arg)}(?![A-Za-z0-9_])")
    if isinstance(exc, (ValueError, TypeError)) and re.search(pattern, str(exc)):
        return Outcome(case, "clear", text)
    return Outcome(case, "unclear", text[:300])


# --------------------------------------------------------------------------------------------- registry


def registry() -> Dict[str, object]:
    """Every spec module's ``SPECS``, merged: ``{public qualified name: Spec | Exempt}``."""
    out = {}
    for modname in SPEC_MODULES:
        mod = importlib.import_module(f"walker.{modname}")
        for key, value in mod.SPECS.items():
            assert key not in out, f"{key} has specs in two modules"
            out[key] = value
    return out


def public_names() -> Dict[str, object]:
    """``{qualified public name: object}`` for ``pyro_ebm.__all__`` and every public module's ``__all__``
    (one level of submodules and subpackages: ``pyro_ebm.losses``, ``pyro_ebm.mcmc``, ...)."""
    import pkgutil

    import pyro_ebm

    out = {}
    modules = ["pyro_ebm"] + sorted(
        f"pyro_ebm.{m.name}" for m in pkgutil.iter_modules(pyro_ebm.__path__) if not m.name.startswith("_")
    )
    for modname in modules:
        mod = importlib.import_module(modname)
        for name in getattr(mod, "__all__", ()):
            out[f"{modname}.{name}"] = getattr(mod, name)
    return out


def public_targets() -> Dict[str, object]:
    """``{qualified name: object}``: every public callable of :func:`public_names` (one name per object, the
    shortest), and every public method a public class defines (``Class.method``)."""
    names = {}
    for path, obj in public_names().items():
        names.setdefault(id(obj), []).append((path, obj))
    out = {}
    for paths in names.values():
        path, obj = min(paths, key=lambda p: len(p[0]))
        if not callable(obj):
            continue
        out[path] = obj
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for mname, member in vars(obj).items():
                if not mname.startswith("_") and inspect.isfunction(member):
                    out[f"{path}.{mname}"] = member
    return out


def run_target(target: str, s: Spec) -> List[Outcome]:
    _, base_inf = run_base(s)
    return [run_case(c, s, base_inf) for c in cases(target, s)]


def totals(outcomes: List[Outcome]) -> Dict[str, int]:
    out = {}
    for o in outcomes:
        out[o.verdict] = out.get(o.verdict, 0) + 1
    return out


def main():  # pragma: no cover -- a report for people, the tests check the same
    import sys

    reg = registry()
    only = sys.argv[1:]
    outcomes = []
    for target, s in sorted(reg.items()):
        if isinstance(s, Exempt) or (only and not any(target.startswith(o) for o in only)):
            continue
        try:
            res = run_target(target, s)
        except AssertionError as exc:
            print(f"BASE FAILS {target}: {exc}")
            continue
        outcomes += res
        for o in res:
            if o.verdict not in ("clear", "accepted-legal") and o.case.key not in s.unclear:
                print(f"{o.verdict:15s} {target} {o.case.key}: {o.detail[:200]}")
    t = totals(outcomes)
    must = sum(v for k, v in t.items() if k not in ("accepted-legal", "n/a"))
    print(t, f"clear {t.get('clear', 0)}/{must} = {t.get('clear', 0) / max(must, 1):.4f}")


if __name__ == "__main__":  # pragma: no cover
    main()
