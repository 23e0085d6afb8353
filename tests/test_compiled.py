"""The compiled sampler path (``compile=True``): the same draws as eager, cached compiles, training
updates seen, and a clear fallback where an energy cannot be compiled.

Compiling takes seconds, so the tests share a few energies (the compiled pieces are cached per energy and
shapes) and use short runs: over long runs float rounding differences between compiled and eager kernels
grow chaotically, as between any two builds of the same sampler.
"""

import warnings

import pytest
import torch

from pyro_ebm.mcmc import PersistentChains, sample
from pyro_ebm.mcmc import compiled
from pyro_ebm.mcmc.compiled import CompileWarning

torch.manual_seed(0)
# float64, so that rounding differences between compiled and eager kernels (~1e-16) stay far below the
# tolerances over a run's adaptation (in float32 they reach ~1e-3 after 50 adapted iterations, and an
# accept/reject decision can flip)
_NET = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()


@pytest.fixture(autouse=True, scope="module")
def _size_asserts():
    """Compile with Inductor's checks of every input's shape and strides at every call: a piece called
    with strides other than those it was compiled for fails here (the library turns the checks off)."""
    compiled.SIZE_ASSERTS = True
    compiled._SHARED.clear()
    compiled._CACHE.clear()
    yield
    compiled.SIZE_ASSERTS = False
    compiled._SHARED.clear()
    compiled._CACHE.clear()


def _net_energy(y):
    return _NET(y).squeeze(-1) + 0.25 * (y * y).sum(-1)


def _cond_energy(y, x):
    return 0.5 * ((y - x) ** 2).sum(-1)


def _run(F, compile, seed=0, chains=16, **kw):
    init = torch.randn(chains, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileWarning)
        return sample(F, init, num_warmup=30, num_samples=20, seed=seed, progress=False, compile=compile, **kw)


@pytest.mark.parametrize("kernel", ["hmc", "mala"])
def test_compiled_gives_the_eager_draws_to_float_tolerance(kernel):
    eager, comp = _run(_net_energy, False, kernel=kernel), _run(_net_energy, True, kernel=kernel)
    assert torch.allclose(comp.draws, eager.draws, atol=1e-4), (comp.draws - eager.draws).abs().max()
    assert torch.equal(comp.stats["n_steps"], eager.stats["n_steps"])
    assert comp.info["grad_evals"] == eager.info["grad_evals"]


@pytest.mark.slow
def test_float32_fixed_step_transitions_match_eager():
    F = lambda y: (y[..., 0] ** 2 - 1) ** 2 + 0.5 * y[..., 1] ** 2  # noqa: E731
    init = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    opts = dict(step_size=0.1, n_steps=6, adapt_step_size=False, adapt_mass=False, progress=False, seed=2)
    eager = sample(F, init, 0, 10, **opts)
    comp = sample(F, init, 0, 10, compile=True, **opts)
    assert torch.allclose(comp.draws, eager.draws, atol=1e-5)


def test_second_call_compiles_nothing(monkeypatch):
    _run(_net_energy, True)
    made = []
    original = compiled._Piece.__init__

    def counting(self, fn, example):
        made.append(fn)
        original(self, fn, example)

    monkeypatch.setattr(compiled._Piece, "__init__", counting)
    _run(_net_energy, True, seed=3)
    assert made == []


def test_a_bound_method_energy_is_cached_on_its_object(monkeypatch):
    class Model:
        def energy(self, y):
            return _net_energy(y)

    m = Model()
    _run(m.energy, True)  # a new bound-method object at every attribute access
    made = []
    original = compiled._Piece.__init__
    monkeypatch.setattr(compiled._Piece, "__init__", lambda self, fn, ex: (made.append(fn), original(self, fn, ex)))
    _run(m.energy, True, seed=3)
    assert made == []


def test_training_the_energy_in_place_is_seen_by_the_compiled_code():
    _run(_net_energy, True)
    with torch.no_grad():  # what an optimizer step does: update the parameters in place
        for p in _NET.parameters():
            p.mul_(1.5)
    try:
        eager, comp = _run(_net_energy, False, seed=5), _run(_net_energy, True, seed=5)
        assert torch.allclose(comp.draws, eager.draws, atol=1e-4)
    finally:
        with torch.no_grad():
            for p in _NET.parameters():
                p.div_(1.5)


@pytest.mark.slow
def test_conditioning_x_is_an_input_not_a_constant():
    x1, x2 = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([-3.0, 0.5], dtype=torch.float64)
    for x in (x1, x2):  # the second x reuses the compiled code and must move the draws with it
        eager, comp = _run(_cond_energy, False, x=x), _run(_cond_energy, True, x=x)
        assert torch.allclose(comp.draws, eager.draws, atol=1e-4)
        assert torch.allclose(comp.draws.reshape(-1, 2).mean(0), x, atol=0.3)


@pytest.mark.slow
def test_tempering_replicas_use_the_masked_compiled_step():
    eager = _run(_net_energy, False, tempering=3)
    comp = _run(_net_energy, True, tempering=3)
    assert torch.allclose(comp.draws, eager.draws, atol=1e-4)
    assert torch.allclose(comp.info["swap_rates"], eager.info["swap_rates"], atol=1e-4)


def test_a_tensor_passed_as_two_arguments_is_traced_as_two_inputs():
    # a trajectory's first chunk of steps passes the full kick as its last kick too; traced as one input,
    # the compiled chunk would later kick by half steps throughout when it ends a trajectory
    from pyro_ebm import as_energy
    from pyro_ebm.mcmc import integrator
    from pyro_ebm.mcmc.potential import EnergyPotential

    def quartic(y):  # its own function: compiled here, not found in the cache
        return (y ** 4).sum(-1) + 0.5 * (y * y).sum(-1)

    pot = EnergyPotential(as_energy(quartic, event_shape=(2,)), (2,))
    ops = compiled.CompiledOps(pot)
    g = torch.Generator().manual_seed(0)
    q, p = (torch.randn(1, 8, 2, generator=g, dtype=torch.float64) for _ in range(2))
    full = torch.full((1, 8, 1), 0.2, dtype=torch.float64)
    half, drift = 0.5 * full, full.expand(1, 8, 2).clone()
    ops.steps(q, p, drift, full, full, 2)  # compiled from a call with one tensor in both places
    got = ops.steps(q, p, drift, full, half, 2)
    want = integrator.leapfrog_steps(pot.value_and_grad, q, p, drift, full, half, 2)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_small_matrix_products_are_fused_and_exact():
    from torch.fx.experimental.proxy_tensor import make_fx

    def f(y, w1, b1, w2, w3):  # a 2-d input's first layer (K = 2), a wide product, a thin one (N = 3)
        h = torch.tanh(torch.addmm(b1, y, w1))
        return (h @ w2) @ w3

    g = torch.Generator().manual_seed(0)
    args = [torch.randn(*s, generator=g, dtype=torch.float64) for s in ((16, 2), (2, 8), (8,), (8, 8), (8, 3))]
    gm = compiled._fuse_small_matmuls(make_fx(f)(*args))
    products = [(n.args[-2].meta["val"].shape, n.args[-1].meta["val"].shape) for n in gm.graph.nodes
                if n.op == "call_function" and n.target in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default)]
    assert products == [((16, 8), (8, 8))]  # only the product with no small dimension is left to BLAS
    torch.testing.assert_close(gm(*args), f(*args))


def test_inputs_with_other_strides_get_their_own_compiled_piece():
    # the library compiles without Inductor's per-call stride checks: a piece is looked up by its inputs'
    # strides, so a transposed momentum is not read as if it were contiguous
    from pyro_ebm import as_energy
    from pyro_ebm.mcmc import integrator
    from pyro_ebm.mcmc.potential import EnergyPotential

    def sextic(y):  # its own function: compiled here, not found in the cache
        return (y ** 6).sum(-1) + 0.5 * (y * y).sum(-1)

    pot = EnergyPotential(as_energy(sextic, event_shape=(3,)), (3,))
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 8, 3, generator=g, dtype=torch.float64)
    p_t = torch.randn(1, 3, 8, generator=g, dtype=torch.float64).transpose(1, 2)  # [1, 8, 3], not contiguous
    full = torch.full((1, 8, 1), 0.1, dtype=torch.float64)
    half, drift = 0.5 * full, full.expand(1, 8, 3).clone()
    compiled.CompiledOps(pot).steps(q, p_t.contiguous(), drift, full, half, 1)
    got = compiled.CompiledOps(pot).steps(q, p_t, drift, full, half, 1)  # a new run: looked up again
    want = integrator.leapfrog_steps(pot.value_and_grad, q, p_t, drift, full, half, 1)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert compiled._spec(p_t) != compiled._spec(p_t.contiguous())
    # strides of size-1 dimensions do not matter (no new piece for them)
    assert compiled._spec(torch.ones(1, 4)) == compiled._spec(torch.ones(4, 1).T)


@pytest.mark.parametrize("n_leapfrog", [5, 8])  # 8 = 4 + 4: one compiled chunk in and at the end of a trajectory
def test_persistent_chains_compile_once_and_match_eager(n_leapfrog):
    def chains(compile):
        return PersistentChains(_net_energy, 64, event_shape=(2,), kernel="hmc", step_size=0.2,
                                n_leapfrog=n_leapfrog, seed=0, compile=compile, dtype=torch.float64)

    eager, comp = chains(False), chains(True)
    for _ in range(3):
        a, b = eager.sample(32, steps=4), comp.sample(32, steps=4)
        assert torch.allclose(a, b, atol=1e-4)


# torch.compile's import of inductor calls torch.jit.script itself; pytest.warns re-emits that deprecation
# from this module, where pyproject's filter (by torch's module) no longer matches it
@pytest.mark.filterwarnings("ignore:`torch\\.jit\\.script(_method)?` is deprecated:DeprecationWarning")
def test_an_energy_that_cannot_be_traced_runs_eager_with_one_warning():
    def branchy(y):  # Python control flow on tensor values: tracing cannot follow it
        return (y * y).sum(-1) if float(y.detach().sum()) > 0 else 2 * (y * y).sum(-1)

    init = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    with pytest.warns(CompileWarning, match="could not be compiled.*running eager"):
        comp = sample(branchy, init, 10, 10, seed=0, progress=False, compile=True)
    eager = sample(branchy, init, 10, 10, seed=0, progress=False)
    assert torch.equal(comp.draws, eager.draws)


def test_a_pyro_model_runs_eager_with_a_warning():
    import pyro
    import pyro.distributions as dist

    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.warns(CompileWarning, match="Pyro models run eager"):
        s = sample(model, 4, 10, 10, seed=0, progress=False, compile=True)
    assert s.draws["z"].shape == (4, 10)


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_compile_must_be_a_bool(bad):
    with pytest.raises(TypeError, match="compile must be True or False"):
        sample(_net_energy, torch.zeros(4, 2, dtype=torch.float64), 5, 5, progress=False, compile=bad)
