"""Benchmark of the batched sampler, eager and compiled, against BlackJAX's ChEES-HMC, NumPyro's vectorised
NUTS and Pyro's stock NUTS.

Energies: an ill-conditioned 50-d Gaussian (standard deviations log-spaced from 0.1 to 10), a 2-d double
well at beta = 4, a small random-MLP energy in 2-d, and a larger one in 64-d (two hidden layers of 256,
the size of a small image EBM's energy). Every sampler does 500 warmup + 500 draws with 256 chains (Pyro:
``--pyro-chains``, one after another). ESS per second = min over coordinates of the bulk ESS
(``arviz.ess``) of ``y`` and of ``y**2``, summed over chains, divided by the wall time including warmup.

Each sampler is called ``--seeds`` times in one process with the same shapes (seeds 0, 1, ...): the first
call is reported on its own -- it includes compiling, for this library's ``compile=True`` (from an empty
Inductor cache unless ``--warm-cache``), for BlackJAX (``jax.jit`` of ChEES warmup + sampling) and NumPyro
-- and the median of the later calls is the steady state that training lives in. BlackJAX runs
``chees_adaptation`` (Adam at 0.025, diagonal mass matrix across chains) then jittered ``dynamic_hmc``.

Also reported: the in-loop cost of one batched energy + gradient (eager: this library's
``value_and_grad``; compiled: one compiled leapfrog step; BlackJAX: a jitted loop of gradients) and the
overhead = wall time / (batched gradients x that cost); ESS per batched gradient, which separates how well
a sampler tunes itself from what each gradient costs (BlackJAX's count: the longest of the vmapped chains'
trajectories at each warmup and sampling iteration); and the cores each sampler used (process CPU time /
wall time). ``--threads N`` (default 1) confines the whole process to N cores (its CPU affinity) and sets
torch's intra-op threads to N: XLA's flags alone do not keep it on one thread (with them it still used
~1.7 cores for the 64-d MLP's gradient on a 2-core machine).

Run: ``python benchmarks/sampler.py [--only NAME] [--skip-pyro] [--skip-numpyro] [--skip-blackjax]
[--skip-compiled]``.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")

D_GAUSS = 50
SCALES = np.logspace(-1, 1, D_GAUSS)
BETA_WELL = 4.0
#: the larger MLP energy: 64 inputs, two hidden layers of 256 (a small image EBM's size on a CPU)
MLP64 = dict(seed=1, hidden=256, d_in=64)


def mlp_weights(seed=0, hidden=32, d_in=2):
    g = np.random.default_rng(seed)
    return dict(
        W1=g.normal(size=(d_in, hidden)) * 1.5 / math.sqrt(d_in / 2), b1=g.normal(size=hidden),
        W2=g.normal(size=(hidden, hidden)) / math.sqrt(hidden), b2=g.normal(size=hidden) * 0.5,
        w3=g.normal(size=hidden) / math.sqrt(hidden),
    )


def torch_energies():
    scales = torch.tensor(SCALES, dtype=torch.float32)
    inv_var = 1.0 / scales**2

    def gauss(y):
        return 0.5 * (y * y * inv_var).sum(-1)

    def well(y):  # beta is applied by the sampler
        return (y[..., 0] ** 2 - 1.0) ** 2 + 0.5 * y[..., 1] ** 2

    def mlp_energy(**shape):
        w = {k: torch.tensor(v, dtype=torch.float32) for k, v in mlp_weights(**shape).items()}

        def mlp(y):
            h = torch.tanh(y @ w["W1"] + w["b1"])
            h = torch.tanh(h @ w["W2"] + w["b2"])
            return h @ w["w3"] + 0.125 * (y * y).sum(-1)

        return mlp

    return {
        "gauss50": (gauss, D_GAUSS, 1.0),
        "double_well": (well, 2, BETA_WELL),
        "mlp2d": (mlp_energy(), 2, 1.0),
        "mlp64": (mlp_energy(**MLP64), 64, 1.0),
    }


def min_ess(draws: np.ndarray) -> float:
    """min over coordinates of bulk ESS of y and y^2; draws [chains, draws, d]."""
    import arviz as az

    out = []
    for arr in (draws, draws**2):
        e = az.ess(az.convert_to_dataset({"y": arr}), method="bulk")["y"].values
        out.append(np.min(e))
    return float(min(out))


def init_for(name, D, chains, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(chains, D, generator=g) * (torch.tensor(SCALES, dtype=torch.float32) if name == "gauss50" else 1.0)


def grad_time(fn, blocks=40, per_block=25):
    """Median over blocks of the time of one call of ``fn`` (after 50 warm-up calls)."""
    for _ in range(50):
        fn()
    times = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(per_block):
            fn()
        times.append((time.perf_counter() - t0) / per_block)
    return float(np.median(times))


def summarise(runs, t_grad):
    """A sampler's calls: each run's overhead (wall time / (batched gradients x ``t_grad``)), the first
    call, and the steady state (the later call with the median ESS/s)."""
    for r in runs:
        r["overhead"] = r["wall"] / (r["grads"] * t_grad)
    first, later = runs[0], sorted(runs[1:], key=lambda r: r["ess_s"])
    return dict(first=first, steady=later[len(later) // 2] if later else first, runs=runs, t_grad=t_grad)


def run_ours(name, F, D, beta, chains, warmup, draws, seeds=3, compile=False):
    """This library's sampler, called ``seeds`` times (seeds 0, 1, ...) with the same shapes in one process.

    The first call is reported on its own (for ``compile=True`` it includes tracing and compiling, from
    an empty compile cache); the later calls are the steady state, the call with the median ESS/s reported.
    """
    from pyro_ebm.mcmc import sample
    from pyro_ebm.mcmc.potential import EnergyPotential
    from pyro_ebm import as_energy

    init = init_for(name, D, chains, 0)
    pot = EnergyPotential(as_energy(F, event_shape=(D,)), (D,))
    q = init.unsqueeze(0)
    # the gradients timed inside the run (eager only: two clock reads per call)
    in_grad = [0.0]
    plain = EnergyPotential.value_and_grad

    def timed(self, q):
        t0 = time.perf_counter()
        out = plain(self, q)
        in_grad[0] += time.perf_counter() - t0
        return out

    runs = []
    if not compile:
        EnergyPotential.value_and_grad = timed
    try:
        for seed in range(seeds):
            in_grad[0] = 0.0
            t0, c0 = time.perf_counter(), time.process_time()
            s = sample(F, init, warmup, draws, beta=beta, seed=seed, progress=False, compile=compile)
            wall = time.perf_counter() - t0
            cores = (time.process_time() - c0) / wall
            ess = min_ess(s.draws.numpy())
            runs.append(dict(seed=seed, s=s, wall=wall, cores=cores, ess=ess, ess_s=ess / wall,
                             overhead_in_run=wall / in_grad[0] if in_grad[0] else float("nan"),
                             div=int(s.info["num_divergent"].sum()), eps=float(s.info["step_size"].median()),
                             T=float(s.info["trajectory_length"][0]), grads=s.info["grad_evals"],
                             acc=float(s.stats["acceptance_rate"].mean()),
                             steps=float(s.stats["n_steps"].float().mean())))
    finally:
        EnergyPotential.value_and_grad = plain
    # the cost of one batched energy + gradient (measured after the runs, so the first call compiles)
    if compile:
        from pyro_ebm.mcmc.compiled import compile_ops

        ops = compile_ops(pot, q, torch.ones(1, 1), torch.ones(1, 1, D))
        step = torch.full((1, chains, 1), 1e-3)
        drift, p = step.expand(1, chains, D).contiguous(), torch.zeros_like(q)
        t_grad = grad_time(lambda: ops.steps(q, p, drift, step, step, 1))  # one compiled leapfrog step
    else:
        t_grad = grad_time(lambda: pot.value_and_grad(q))
    return summarise(runs, t_grad)


def make_blackjax(name, chains, warmup, draws):
    """A jitted ``run(key, init) -> (draws [chains, draws, D], divergences)``: BlackJAX's ChEES warmup
    (Adam, learning rate 0.025, diagonal mass matrix estimated across chains) then jittered dynamic HMC."""
    import jax
    import jax.numpy as jnp
    import blackjax
    import optax

    F, D, beta = jax_energies()[name]
    logdensity = lambda y: -beta * F(y)  # noqa: E731

    def run(key, init):
        k1, k2 = jax.random.split(key)
        adapt = blackjax.chees_adaptation(logdensity, chains, mass_matrix_estimation="diagonal")
        (states, params), adapt_info = adapt.run(k1, init, 0.1, optax.adam(0.025), warmup)
        step = blackjax.dynamic_hmc(logdensity, **params).step

        def one(st, k):
            st, info = jax.vmap(step)(jax.random.split(k, chains), st)
            return st, (st.position, info.is_divergent, info.num_integration_steps)

        _, (pos, div, n) = jax.lax.scan(one, states, jax.random.split(k2, draws))
        # batched gradients: the vmapped chains step together until the longest trajectory ends
        grads = adapt_info.info.num_integration_steps.max(axis=1).sum() + n.max(axis=1).sum()
        return jnp.swapaxes(pos, 0, 1), div.sum(), grads

    def grad_loop(y, n):
        g = jax.vmap(jax.grad(lambda z: beta * F(z)))
        return jax.lax.fori_loop(0, n, lambda i, z: z - 1e-6 * g(z), y)

    return jax.jit(run), jax.jit(grad_loop, static_argnums=1), D


def run_blackjax(name, chains, warmup, draws, seeds=3):
    import jax
    import jax.numpy as jnp

    fn, grad_loop, D = make_blackjax(name, chains, warmup, draws)
    init = jnp.asarray(init_for(name, D, chains, 0).numpy())
    runs = []
    for seed in range(seeds):
        t0, c0 = time.perf_counter(), time.process_time()
        pos, div, grads = fn(jax.random.PRNGKey(seed), init)
        pos = np.asarray(pos)
        wall = time.perf_counter() - t0
        cores = (time.process_time() - c0) / wall
        ess = min_ess(pos)
        runs.append(dict(seed=seed, wall=wall, cores=cores, ess=ess, ess_s=ess / wall, div=int(div), grads=int(grads)))
    # the in-loop cost of one batched gradient: a compiled loop of 1000 of them, minus one of 10
    n_big, n_small = 1000, 10
    grad_loop(init, n_big).block_until_ready()
    grad_loop(init, n_small).block_until_ready()
    t_big = grad_time(lambda: grad_loop(init, n_big).block_until_ready(), blocks=5, per_block=1)
    t_small = grad_time(lambda: grad_loop(init, n_small).block_until_ready(), blocks=5, per_block=1)
    return summarise(runs, (t_big - t_small) / (n_big - n_small))


def run_pyro(name, F, D, beta, chains, warmup, draws):
    import pyro
    from pyro.infer import MCMC, NUTS

    def potential_fn(params):
        return beta * F(params["y"])

    pyro.set_rng_seed(0)
    init = init_for(name, D, chains, 0)
    t0 = time.perf_counter()
    kernel = NUTS(potential_fn=potential_fn)
    mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, num_chains=chains,
                initial_params={"y": init}, disable_progbar=True)
    mcmc.run()
    wall = time.perf_counter() - t0
    y = mcmc.get_samples(group_by_chain=True)["y"].numpy()
    ess = min_ess(y)
    return dict(ess=ess, wall=wall, ess_s=ess / wall)


def jax_energies():
    """The same energies in JAX (one chain: ``y`` is ``[D]``)."""
    import jax.numpy as jnp

    inv_var = jnp.asarray(1.0 / SCALES**2, dtype=jnp.float32)

    def mlp_energy(**shape):
        w = {k: jnp.asarray(v, dtype=jnp.float32) for k, v in mlp_weights(**shape).items()}

        def F(y):
            h = jnp.tanh(y @ w["W1"] + w["b1"])
            h = jnp.tanh(h @ w["W2"] + w["b2"])
            return h @ w["w3"] + 0.125 * jnp.sum(y * y)

        return F

    return {
        "gauss50": (lambda y: 0.5 * jnp.sum(y * y * inv_var), D_GAUSS, 1.0),
        "double_well": (lambda y: (y[0] ** 2 - 1.0) ** 2 + 0.5 * y[1] ** 2, 2, BETA_WELL),
        "mlp2d": (mlp_energy(), 2, 1.0),
        "mlp64": (mlp_energy(**MLP64), 64, 1.0),
    }


def run_numpyro(name, chains, warmup, draws):
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS

    F, D, beta = jax_energies()[name]
    potential_fn = lambda p: beta * F(p["y"])
    init = jnp.asarray(init_for(name, D, chains, 0).numpy())
    results = []
    for attempt in range(2):  # first run includes JIT compilation, the second reuses it
        mcmc = MCMC(NUTS(potential_fn=potential_fn), num_warmup=warmup, num_samples=draws, num_chains=chains,
                    chain_method="vectorized", progress_bar=False)
        t0 = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(0), init_params={"y": init})
        y = np.asarray(mcmc.get_samples(group_by_chain=True)["y"])
        wall = time.perf_counter() - t0
        results.append(wall)
        if attempt == 0:
            ess = min_ess(y)
    return dict(ess=ess, wall=results[0], ess_s=ess / results[0], wall_warm=results[1],
                ess_s_warm=ess / results[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chains", type=int, default=256)
    ap.add_argument("--pyro-chains", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--skip-pyro", action="store_true")
    ap.add_argument("--skip-numpyro", action="store_true")
    ap.add_argument("--skip-blackjax", action="store_true")
    ap.add_argument("--skip-compiled", action="store_true", help="run this library's sampler eager only")
    ap.add_argument("--warm-cache", action="store_true",
                    help="keep Inductor's on-disk cache (default: a fresh one, so the first compiled call compiles)")
    ap.add_argument("--seeds", type=int, default=3,
                    help="calls per sampler (seeds 0, 1, ...): the first is reported alone, the median of the rest "
                         "is the steady state")
    ap.add_argument("--only", default=None, help="run one energy: gauss50, double_well, mlp2d or mlp64")
    ap.add_argument("--threads", type=int, default=1,
                    help="cores for the whole process (its CPU affinity) and torch's intra-op threads; at 1 XLA is "
                         "also told to use one thread")
    args = ap.parse_args()
    import os
    import tempfile

    if hasattr(os, "sched_setaffinity"):  # before jax starts its threads, which inherit it
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])
    if args.threads == 1:  # read when jax is first imported
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()

    if not args.warm_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-bench-")
    torch.set_num_threads(args.threads)

    def available(module, skip):
        if skip:
            return False
        try:
            __import__(module)
            return True
        except ImportError:
            return False

    have_numpyro = available("numpyro", args.skip_numpyro)
    have_blackjax = available("blackjax", args.skip_blackjax) and available("optax", False)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {cores} used (load average {load:.1f}), "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"{args.chains} chains (pyro_ebm, BlackJAX, NumPyro), {args.pyro_chains} chains (Pyro NUTS, sequential), "
          f"{args.warmup} warmup + {args.draws} draws; {args.seeds} calls per sampler")
    rows = []
    for name, (F, D, beta) in torch_energies().items():
        if args.only and name != args.only:
            continue
        row = dict(name=name)
        modes = [("eager", False)] + ([] if args.skip_compiled else [("compiled", True)])
        for label, flag in modes:
            o = row[label] = run_ours(name, F, D, beta, args.chains, args.warmup, args.draws, args.seeds, flag)
            st = o["steady"]
            print(f"\n[{name}] pyro_ebm hmc ({label}): ESS {st['ess']:.0f} in {st['wall']:.2f}s -> {st['ess_s']:.0f} ESS/s "
                  f"(first call {o['first']['wall']:.2f}s -> {o['first']['ess_s']:.0f} ESS/s); accept {st['acc']:.2f}, "
                  f"mean leapfrog steps {st['steps']:.1f}, {st['grads']} batched gradients x {o['t_grad'] * 1e6:.0f} us, "
                  f"overhead {st['overhead']:.2f} (in-run {st['overhead_in_run']:.2f}); step size {st['eps']:.3f}, "
                  f"trajectory length {st['T']:.2f}; divergent transitions per call "
                  f"{', '.join(str(r['div']) for r in o['runs'])} of {args.chains * args.draws}; {st['cores']:.2f} cores used")
        if not args.skip_pyro:
            py = row["pyro"] = run_pyro(name, F, D, beta, args.pyro_chains, args.warmup, args.draws)
            print(f"[{name}] Pyro NUTS ({args.pyro_chains} chains): ESS {py['ess']:.0f} in {py['wall']:.1f}s "
                  f"-> {py['ess_s']:.1f} ESS/s")
        if have_blackjax:
            bj = row["blackjax"] = run_blackjax(name, args.chains, args.warmup, args.draws, args.seeds)
            print(f"[{name}] BlackJAX ChEES: ESS {bj['steady']['ess']:.0f} in {bj['steady']['wall']:.2f}s -> "
                  f"{bj['steady']['ess_s']:.0f} ESS/s compiled (first call {bj['first']['wall']:.2f}s -> "
                  f"{bj['first']['ess_s']:.0f} ESS/s); {bj['steady']['grads']} batched gradients x {bj['t_grad'] * 1e6:.1f} us, "
                  f"overhead {bj['steady']['overhead']:.2f}; divergent "
                  f"transitions per call {', '.join(str(r['div']) for r in bj['runs'])}; {bj['steady']['cores']:.2f} cores used")
        if have_numpyro:
            npy = row["numpyro"] = run_numpyro(name, args.chains, args.warmup, args.draws)
            print(f"[{name}] NumPyro vectorised NUTS: ESS {npy['ess']:.0f} in {npy['wall']:.2f}s incl. JIT "
                  f"({npy['ess_s']:.0f} ESS/s), {npy['wall_warm']:.2f}s compiled ({npy['ess_s_warm']:.0f} ESS/s)")
        rows.append(row)

    def cell(d, key="steady"):
        return f"{d[key]['ess_s']:,.0f}" if d else "-"

    def ratio(a, b):
        return f"{a / b:.2f}x" if a and b else "-"

    print("\nESS/s (first call / later calls: the median); ratios of this library's compiled sampler to BlackJAX")
    print("| energy | eager 1st | eager later | compiled 1st (compile incl.) | compiled later | BlackJAX 1st | "
          "BlackJAX later | NumPyro (JIT incl. / compiled) | Pyro NUTS | later: compiled / BlackJAX | "
          "1st: compiled / BlackJAX | 1st: eager / BlackJAX |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        e, c, b, n, p = (r.get(k) for k in ("eager", "compiled", "blackjax", "numpyro", "pyro"))
        es = lambda d, k: d[k]["ess_s"] if d else None  # noqa: E731
        npy = f"{n['ess_s']:,.0f} / {n['ess_s_warm']:,.0f}" if n else "-"
        pyro = f"{p['ess_s']:.1f}" if p else "-"
        print(f"| {r['name']} | {cell(e, 'first')} | {cell(e)} | {cell(c, 'first')} | {cell(c)} | {cell(b, 'first')} | "
              f"{cell(b)} | {npy} | {pyro} | {ratio(es(c, 'steady'), es(b, 'steady'))} | "
              f"{ratio(es(c, 'first'), es(b, 'first'))} | {ratio(es(e, 'first'), es(b, 'first'))} |")
    print("\nIn-loop cost of one batched energy + gradient (us) and overhead = wall / (gradients x that cost); "
          "divergent transitions and cores used (process CPU time / wall time) in the later calls' median run")
    print("| energy | eager gradient | compiled leapfrog step | BlackJAX gradient | overhead (eager / compiled / "
          "BlackJAX) | ESS per batched gradient (eager / compiled / BlackJAX) | divergent (eager / compiled / BlackJAX) | "
          "cores used (eager / compiled / BlackJAX) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        e, c, b = r.get("eager"), r.get("compiled"), r.get("blackjax")
        us = lambda d: f"{d['t_grad'] * 1e6:.1f}" if d else "-"  # noqa: E731
        ov = lambda d: f"{d['steady']['overhead']:.2f}" if d else "-"  # noqa: E731
        dv = lambda d: str(d["steady"]["div"]) if d else "-"  # noqa: E731
        cu = lambda d: f"{d['steady']['cores']:.2f}" if d else "-"  # noqa: E731
        pg = lambda d: f"{d['steady']['ess'] / d['steady']['grads']:.3g}" if d else "-"  # noqa: E731
        print(f"| {r['name']} | {us(e)} | {us(c)} | {us(b)} | {ov(e)} / {ov(c)} / {ov(b)} | {pg(e)} / {pg(c)} / {pg(b)} | "
              f"{dv(e)} / {dv(c)} / {dv(b)} | {cu(e)} / {cu(c)} / {cu(b)} |")


if __name__ == "__main__":
    main()
