"""The HMC transition, compiled: the same pieces as the eager one, traced once and compiled with Inductor.

:func:`pyro_ebm.mcmc.hmc.step` is three kinds of pieces -- :func:`~pyro_ebm.mcmc.hmc.begin` (momentum
and starting Hamiltonian), the leapfrog steps of :mod:`~pyro_ebm.mcmc.integrator` (drift, energy and
gradient, kick) and :func:`~pyro_ebm.mcmc.hmc.end` (Metropolis test). :func:`compile_ops` traces each of
those *same functions* for one potential and one set of shapes (``make_fx``, the energy's gradient by
``torch.func``) and compiles the graph with ``torch._inductor``; :func:`~pyro_ebm.mcmc.hmc.step` then
runs them in place of the eager ones. The random numbers are still drawn outside, from the same
generator in the same order, so a seed gives the same draws compiled or not (to float rounding).

Why not ``torch.compile`` of the whole transition: the number of leapfrog steps changes every iteration
(jittered trajectory lengths), so one graph per count would be compiled; and on a CPU a
``torch.compile``'d call costs ~40 us of guard and wrapper work, more than a compiled 256-chain gradient
of a small energy. The pieces here are called directly (~8-20 us) and compiled once per shape.

Compiled pieces are cached per energy (weakly: they go with it) and per input shapes, so persistent
chains in training and repeated :func:`~pyro_ebm.mcmc.sample` calls compile once. Tensors the energy
reads that are not its input -- an ``nn.Module``'s parameters and buffers, tensors a closure captured --
become inputs of the compiled graph read at every call, so training the energy in place (an optimizer
step) is seen at once. For a module, replacing a parameter object triggers a new trace; a closure that
rebinds a captured tensor to a new object is not detected (update it in place instead).

An energy that cannot be traced (Python control flow on tensor values, ``.item()``, in-place updates of
its input, a Pyro model) runs eager, with one :class:`CompileWarning` saying why.

``tanh`` is compiled as ``2 / (1 + exp(-2x)) - 1`` (Inductor's ``cpp.use_decompose_tanh``): 25% cheaper
steps for MLP energies, at an absolute error of float rounding (~1e-7 in float32; near 0 its relative
error is larger, which an energy summed over many terms does not see).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import warnings
import weakref

import torch

from . import hmc, integrator

__all__ = ["CompileWarning", "compile_ops", "CompiledOps"]


class CompileWarning(UserWarning):
    """The sampler was asked to compile but runs eager (the message says why)."""


def _lift_constants(gm: torch.fx.GraphModule):
    """Turn every tensor the traced graph holds as an attribute into a trailing input; return the graph
    and those tensors (the very objects the function read, so in-place updates are seen)."""
    graph = gm.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    last = placeholders[-1] if placeholders else None
    lifted, by_target = [], {}
    for node in list(graph.nodes):
        if node.op != "get_attr":
            continue
        if node.target not in by_target:
            value = getattr(gm, node.target)
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"a constant of type {type(value).__name__} in the traced energy")
            insert_after = last if last is not None else next(iter(graph.nodes))
            with graph.inserting_after(insert_after):
                ph = graph.placeholder(f"_const{len(lifted)}")
            last = ph
            by_target[node.target] = ph
            lifted.append(value)
        node.replace_all_uses_with(by_target[node.target])
        graph.erase_node(node)
    for target in by_target:  # else AOT autograd would pass them again, as the module's buffers
        gm._buffers.pop(target, None)
        gm._parameters.pop(target, None)
        gm.__dict__.pop(target, None)
    graph.lint()
    gm.recompile()
    return gm, lifted


#: a matrix product whose inner or outer dimension is at most this (a 2-d energy's first layer, the
#: gradient back to its input) is compiled as a broadcast product and a sum, fused with its neighbours,
#: instead of a BLAS call (~9 us each on a CPU, more than the product: a 2-d MLP's step 68 -> 58 us)
SMALL_MATMUL = 4


def _fuse_small_matmuls(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Replace ``mm(a, b)`` and ``addmm(c, a, b)`` (no ``alpha``/``beta``) of ``a [M, K]``, ``b [K, N]``
    with ``min(K, N) <= SMALL_MATMUL`` by ``(a[:, :, None] * b[None]).sum(1)`` (``+ c``)."""
    aten, graph = torch.ops.aten, gm.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in (aten.mm.default, aten.addmm.default) or node.kwargs:
            continue
        a, b = node.args[-2:]
        va, vb = getattr(a, "meta", {}).get("val"), getattr(b, "meta", {}).get("val")
        if not (isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor)) or min(vb.shape) > SMALL_MATMUL:
            continue
        with graph.inserting_before(node):
            prod = graph.call_function(aten.mul.Tensor, (graph.call_function(aten.unsqueeze.default, (a, 2)),
                                                         graph.call_function(aten.unsqueeze.default, (b, 0))))
            out = graph.call_function(aten.sum.dim_IntList, (prod, [1]))
            if node.target is aten.addmm.default:
                out = graph.call_function(aten.add.Tensor, (node.args[0], out))
        out.meta = dict(node.meta)
        node.replace_all_uses_with(out)
        graph.erase_node(node)
    graph.lint()
    gm.recompile()
    return gm


def _traced_value_and_grad(potential):
    """``q [R, C, D] (, x) -> (F [R, C], dF/dq)`` written with ``torch.func`` so it can be traced."""
    energy = potential.energy_fn()

    def total(q, x):
        y = potential._input(q)
        F = (energy(y) if x is None else energy(y, x)).reshape(q.shape[:2])
        return F.sum(), F

    grad_and_value = torch.func.grad_and_value(total, has_aux=True)

    def value_and_grad(q, x=None):
        g, (_, F) = grad_and_value(q, x)
        return F, g

    return value_and_grad


def _generated_call(wrapped):
    """``(call, prefix)``: the compiled module's own ``call`` inside the function ``torch._inductor.compile``
    returns (found in the closures of its wrappers) and the tensors those wrappers put before the inputs;
    ``None`` when this version of PyTorch wraps it differently."""
    found, prefix, stack, seen = None, None, [wrapped], set()
    while stack and len(seen) < 64:
        f = stack.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        code = getattr(f, "__code__", None)
        for name, cell in zip(code.co_freevars if code else (), getattr(f, "__closure__", None) or ()):
            try:
                v = cell.cell_contents
            except ValueError:
                continue
            if name == "params_buffers_flat" and isinstance(v, list):
                prefix = v
            elif inspect.isfunction(v):  # a wrapper (which may carry its callee's attributes)
                stack.append(v)
            elif callable(getattr(v, "current_callable", None)):  # the compiled graph object
                found = v.current_callable
    return None if found is None or prefix is None else (found, tuple(prefix))


def _fake(inputs):
    """``inputs`` as fake tensors of static shapes in a mode with a shape environment: Inductor only uses
    its on-disk graph cache with one ("No shape env"), and with it a later process compiles in a
    fraction of the time."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    mode = FakeTensorMode(shape_env=ShapeEnv())
    return [mode.from_tensor(t, static_shapes=True) if isinstance(t, torch.Tensor) else t for t in inputs]


def _same(a, b) -> bool:
    a = a if isinstance(a, (tuple, list)) else (a,)
    b = b if isinstance(b, (tuple, list)) else (b,)
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and torch.equal(x.nan_to_num(), y.nan_to_num())
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) else x == y
        for x, y in zip(a, b))


#: Inductor's checks of every input's shape and strides at every call (~0.8 us each, a fifth of a small
#: energy's transition). Off: a piece is looked up by its inputs' shapes and strides (:func:`_spec`) once
#: per run, the tensors it is then called with come from the same producers (compiled pieces, or eager
#: ones made contiguous: :func:`pyro_ebm.mcmc.hmc.init`), and the energy's own tensors are checked when a
#: run binds the piece. The tests of the compiled path turn them on, so a changed stride fails there.
SIZE_ASSERTS = False


class _Piece:
    """One compiled function: called with its inputs, it appends the lifted tensors.

    It calls the generated code directly when it can (the wrappers around it -- autograd's runtime
    wrapper, the compiled-graph object, the dynamo guard context -- cost ~5 us a call on a CPU, a third
    of a small energy's leapfrog step), after checking on the example inputs that both give the same
    outputs."""

    __slots__ = ("call", "consts", "const_specs")

    def __init__(self, fn, example):
        from torch.fx.experimental.proxy_tensor import make_fx

        # one tensor passed as two arguments (a full kick also given as the last kick) would be traced
        # as one input, and the graph would read it for both at every later call: trace copies
        example = [a.clone() if isinstance(a, torch.Tensor) and any(a is b for b in example[:i]) else a
                   for i, a in enumerate(example)]
        with torch.no_grad():
            gm = make_fx(fn)(*example)
        gm, consts = _lift_constants(_fuse_small_matmuls(gm))
        inductor = importlib.import_module("torch._inductor")
        inputs = list(example) + [c.detach() for c in consts]
        with inductor.config.patch({"cpp.use_decompose_tanh": True, "size_asserts": SIZE_ASSERTS}):
            wrapped = inductor.compile(gm, _fake(inputs))
        self.consts = tuple(consts)
        self.const_specs = tuple(map(_spec, consts))
        self.call = lambda args: wrapped(*args)  # noqa: E731
        direct = _generated_call(wrapped)
        if direct is not None:
            generated, prefix = direct
            with torch.no_grad():
                if _same(wrapped(*inputs), generated([*prefix, *inputs])):
                    self.call = generated if not prefix else (lambda args: generated([*prefix, *args]))

    def __call__(self, *args):
        # the wrappers ran the graph without autograd; called directly it must be too (a module's
        # parameters require grad, and the generated code writes into preallocated outputs)
        if not torch.is_grad_enabled():
            return self.call([*args, *self.consts])
        torch._C._set_grad_enabled(False)
        try:
            return self.call([*args, *self.consts])
        finally:
            torch._C._set_grad_enabled(True)


def _spec(t):
    """What a compiled piece assumes of an input: shape, strides (those of size-1 dimensions do not
    matter), dtype and device."""
    if not isinstance(t, torch.Tensor):
        return t
    strides = tuple(s if n > 1 else 0 for n, s in zip(t.shape, t.stride()))
    return tuple(t.shape), strides, t.dtype, t.device


#: energy -> {function: {key: _Piece}} (see :func:`_energy_key`); weak, so compiled code goes away with
#: its energy
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
#: the pieces that do not call the energy (momentum, Metropolis test), by input shapes
_SHARED: dict = {}


def _energy_key(potential):
    """``(owner, function)``: the cache is kept on ``owner`` (weakly), under ``function``. For a wrapped
    callable the owner is the user's function -- or, for a bound method (a new object at every attribute
    access), the object it is bound to -- and for an energy module the module itself."""
    e = potential.energy
    fn = getattr(e, "fn", e) if type(e).__name__ == "_CallableEnergy" else e
    if inspect.ismethod(fn):
        return fn.__self__, fn.__func__
    return fn, None


def _pieces(potential) -> dict:
    owner, fn = _energy_key(potential)
    return _CACHE.setdefault(owner, {}).setdefault(fn, {})


def _module_tensors(potential):
    e = potential.energy
    if isinstance(e, torch.nn.Module):
        return tuple(map(id, e.parameters())) + tuple(map(id, e.buffers()))
    return ()


#: most leapfrog steps unrolled into one compiled call: a trajectory of L steps is made of calls of 4, 2
#: and 1 steps (L = 7: 4 + 2 + 1), fewer calls -- each costs ~10-20 us on a CPU whatever it computes --
#: against graphs up to CHUNK times longer to compile
CHUNK = 4


class CompiledOps:
    """:class:`~pyro_ebm.mcmc.hmc.EagerOps`' interface with every piece compiled on first use (and
    cached); ``steps`` are the leapfrog steps. Build with :func:`compile_ops`."""

    def __init__(self, potential):
        self.potential = potential
        self.x = potential.x
        self._cache = _pieces(potential)
        ids = _module_tensors(potential)
        if self._cache.get("_module_tensors", ids) != ids:  # a parameter was replaced: trace again
            self._cache.clear()
        self._cache["_module_tensors"] = ids
        self.stepper = self
        self._k = {}
        self._bound = {}

    def _get(self, name, make_fn, args, shared=False):
        """Call the compiled piece ``name`` on ``args``: looked up in the cache (``make_fn()`` gives the
        function to compile on a miss; ``shared``: a piece that does not call the energy, cached for all
        energies) on the first call, then bound, since the shapes of one run do not change."""
        piece = self._bound.get(name)
        if piece is None:
            key = (name,) + tuple(_spec(a) for a in args)
            cache = _SHARED if shared else self._cache
            piece = cache.get(key)
            if piece is not None and piece.const_specs != tuple(map(_spec, piece.consts)):
                piece = None  # a tensor the energy reads changed shape or strides in place: trace again
            if piece is None:
                piece = cache[key] = _Piece(make_fn(), args)
            self._bound[name] = piece
        return piece(*args)

    def _bind_x(self, step_fn):
        """``step_fn(vg, *args)`` as a function of ``(*args, x)``, the conditioning ``x`` an input."""
        vg = _traced_value_and_grad(self.potential)
        if self.x is None:
            return functools.partial(step_fn, vg)
        return lambda *a: step_fn(lambda z: vg(z, a[-1]), *a[:-1])

    compiled = True

    # -- hmc.EagerOps interface --------------------------------------------------------------------
    def call(self, name, fn, args):
        """``fn(*args)`` compiled, for a function that does not call the energy (the warmup's update)."""
        return self._get(name, lambda: fn, args, shared=True)

    def begin(self, xi, inv_mass, step_size, beta, F, grad):
        return self._get("begin", lambda: hmc.begin, (xi, inv_mass, step_size, beta, F, grad), shared=True)

    def end(self, q, F, grad, q1, p1, F1, g1, H0, beta, inv_mass, u, max_delta_energy):
        fn = lambda: functools.partial(hmc.end, max_delta_energy=max_delta_energy)  # noqa: E731
        args = (q, F, grad, q1, p1, F1, g1, H0, beta, inv_mass, u)
        return self._get(("end", float(max_delta_energy)), fn, args, shared=True)

    # -- integrator steps --------------------------------------------------------------------------
    #: steps per compiled call of :meth:`steps` (1 or ``CHUNK``)
    chunk = CHUNK

    def steps(self, q, p, drift, full, last_kick, n):
        args = (q, p, drift, full, last_kick) + (() if self.x is None else (self.x,))
        make = lambda: self._bind_x(lambda vg, *a: integrator.leapfrog_steps(vg, *a, n))  # noqa: E731
        return self._get(("steps", n), make, args)

    def masked_step(self, q, p, F, grad, drift, half, full, n_steps, k):
        kt = self._k.get(k)
        if kt is None:
            kt = self._k[k] = torch.tensor(k, dtype=n_steps.dtype, device=n_steps.device)
        args = (q, p, F, grad, drift, half, full, n_steps, kt) + (() if self.x is None else (self.x,))
        return self._get("masked", lambda: self._bind_x(integrator.masked_leapfrog_step), args)


def compile_ops(potential, q, beta, inv_mass, max_delta_energy: float = 1000.0):
    """Compiled pieces of :func:`pyro_ebm.mcmc.hmc.step` for ``potential`` and chains ``q`` ``[R, C, D]``,
    or ``None`` (with a :class:`CompileWarning` naming the reason) when the energy cannot be compiled.

    The pieces that run every transition (momentum, one leapfrog step, Metropolis test) are traced and
    compiled here, with ``q``, ``beta`` ``[R, 1]`` and ``inv_mass`` ``[R, 1, D]`` as examples, so a
    failure shows now rather than mid-run; the masked step (tempering replicas with different numbers
    of steps) compiles on first use.
    """
    if getattr(potential, "is_model", False):
        warnings.warn("compile=True: Pyro models run eager (the model's Python code cannot be traced once "
                      "for all calls); compile an Energy instead", CompileWarning, stacklevel=4)
        return None
    try:
        ops = CompiledOps(potential)
        checked = ("checked", _spec(q), _spec(beta), _spec(inv_mass), _spec(potential.x), float(max_delta_energy))
        if checked in ops._cache:  # compiled and checked by an earlier call with these shapes
            return ops
        with torch.no_grad():
            R, C, D = q.shape
            q, F, grad = hmc.init(potential, q)
            step_size = torch.full((R, C), 1e-3, dtype=q.dtype, device=q.device)
            p, H0, half, full, drift = ops.begin(torch.zeros_like(q), inv_mass, step_size, beta, F, grad)
            q1, p1, F1, g1 = ops.steps(q, p, drift, full, half, 1)
            ops.end(q, F, grad, q1, p1, F1, g1, H0, beta, inv_mass, torch.zeros_like(F), max_delta_energy)
            # a traced graph that disagrees with the energy (e.g. a branch on tensor values that tracing
            # fixed) is caught here
            F_eager, g_eager = potential.value_and_grad(q1)
            if not (torch.allclose(F1, F_eager, rtol=1e-4, atol=1e-5, equal_nan=True)
                    and torch.allclose(g1, g_eager, rtol=1e-4, atol=1e-5, equal_nan=True)):
                raise RuntimeError("the compiled energy and gradient differ from the eager ones")
        ops._cache[checked] = True
    except Exception as err:  # noqa: BLE001 - any failure to trace or compile means: run eager
        owner, fn = _energy_key(potential)
        _CACHE.get(owner, {}).pop(fn, None)
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        warnings.warn(f"compile=True: the energy could not be compiled ({type(err).__name__}: {msg[:200]}); "
                      "running eager", CompileWarning, stacklevel=4)
        return None
    return ops
