"""Benchmark of the batched samplers against Pyro's stock NUTS and NumPyro's vectorised NUTS.

Energies: an ill-conditioned 50-d Gaussian (standard deviations log-spaced from 0.1 to 10), a 2-d double
well at beta = 4, a small random-MLP energy in 2-d, and a larger one in 64-d (two hidden layers of 256,
the size of a small image EBM's energy; ``--only mlp64``). Every sampler does 500 warmup + 500 draws.
Reported: ESS per second = min over coordinates of the bulk ESS (``arviz.ess``) of ``y`` and of ``y**2``,
summed over chains, divided by the wall time including warmup (and, for NumPyro, with and without the
JIT compilation). For this library also the sampler overhead = wall time / (batched gradient
evaluations x time of one batched energy+gradient); that time is the median over blocks of repeated,
warmed-up calls, the faster of the sampler's own ``value_and_grad`` and a plain
``torch.autograd.grad(F(y).sum(), y)``.

This library's sampler runs with seeds 0, 1, 2 (``--seeds``) and the run with the median ESS/s is reported,
with the other two. The overhead is also reported against the gradient time measured inside the run
(the sampler's gradient calls timed where they happen), with the rest of the time per transition (momentum
draw, Metropolis test, adaptation, Python): the overhead is about ``1 + rest / (leapfrog steps x gradient)``.

Run: ``python benchmarks/sampler.py [--chains 256] [--pyro-chains 2] [--skip-pyro] [--skip-numpyro]``.
Pyro's chains run one after another (as ``pyro.infer.MCMC`` does when it has no spare cores).
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


def run_ours(name, F, D, beta, chains, warmup, draws, seeds=3):
    from pyro_ebm.mcmc import sample
    from pyro_ebm.mcmc.potential import EnergyPotential
    from pyro_ebm import as_energy

    init = init_for(name, D, chains, 0)
    # time of one batched energy + gradient, measured two ways: with the function the sampler calls, and
    # as a user would write it (autograd.grad of the summed energy); the overhead divides by the faster
    pot = EnergyPotential(as_energy(F, event_shape=(D,)), (D,))
    q = init.unsqueeze(0)

    def user_grad():
        y = init.detach().requires_grad_(True)
        e = F(y)
        (g,) = torch.autograd.grad(e.sum(), y)
        return e.detach(), g

    t_grads = {}
    for label, fn in (("sampler", lambda: pot.value_and_grad(q)), ("user", user_grad)):
        for _ in range(50):  # warm up
            fn()
        blocks = []
        for _ in range(40):  # median over blocks of 25 calls
            t0 = time.perf_counter()
            for _ in range(25):
                fn()
            blocks.append((time.perf_counter() - t0) / 25)
        t_grads[label] = float(np.median(blocks))
    t_grad = min(t_grads.values())
    # the same gradients timed inside the run (two clock reads per call): between them the sampler's other
    # work evicts caches, so an in-run gradient costs more than one in a tight loop
    in_grad = [0.0]
    plain = EnergyPotential.value_and_grad

    def timed(self, q):
        t0 = time.perf_counter()
        out = plain(self, q)
        in_grad[0] += time.perf_counter() - t0
        return out

    runs = []
    EnergyPotential.value_and_grad = timed
    try:
        for seed in range(seeds):
            in_grad[0] = 0.0
            t0 = time.perf_counter()
            s = sample(F, init, warmup, draws, beta=beta, seed=seed, progress=False)
            wall = time.perf_counter() - t0
            ess = min_ess(s.draws.numpy())
            # the time that is not gradients, per transition (warmup included)
            fixed = (wall - in_grad[0]) / (warmup + draws)
            runs.append(dict(seed=seed, s=s, wall=wall, ess=ess, ess_s=ess / wall,
                             overhead=wall / (s.info["grad_evals"] * t_grad), overhead_in_run=wall / in_grad[0],
                             fixed=fixed, t_grad_in_run=in_grad[0] / s.info["grad_evals"]))
    finally:
        EnergyPotential.value_and_grad = plain
    # the run with the median ESS/s (the adapted trajectory length, hence the cost, varies with the seed)
    runs.sort(key=lambda r: r["ess_s"])
    r = runs[len(runs) // 2]
    s, wall, ess, overhead = r["s"], r["wall"], r["ess"], r["overhead"]
    return dict(ess=ess, wall=wall, ess_s=ess / wall, overhead=overhead, grads=s.info["grad_evals"], fixed=r["fixed"],
                overhead_in_run=r["overhead_in_run"], t_grad_in_run=r["t_grad_in_run"],
                all_overhead_in_run=[x["overhead_in_run"] for x in runs],
                T=float(s.info["trajectory_length"][0]), all_T=[float(x["s"].info["trajectory_length"][0]) for x in runs],
                seed=r["seed"], all_ess_s=[x["ess_s"] for x in runs], all_overhead=[x["overhead"] for x in runs],
                all_grads=[x["s"].info["grad_evals"] for x in runs],
                t_grad=t_grad, t_grad_sampler=t_grads["sampler"], t_grad_user=t_grads["user"], acc=float(s.stats["acceptance_rate"].mean()),
                steps=float(s.stats["n_steps"].float().mean()))


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


def run_numpyro(name, D, beta, chains, warmup, draws):
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS

    if name == "gauss50":
        inv_var = jnp.asarray(1.0 / SCALES**2, dtype=jnp.float32)
        F = lambda y: 0.5 * jnp.sum(y * y * inv_var)
    elif name == "double_well":
        F = lambda y: (y[0] ** 2 - 1.0) ** 2 + 0.5 * y[1] ** 2
    else:
        w = {k: jnp.asarray(v, dtype=jnp.float32)
             for k, v in (mlp_weights(**MLP64) if name == "mlp64" else mlp_weights()).items()}

        def F(y):
            h = jnp.tanh(y @ w["W1"] + w["b1"])
            h = jnp.tanh(h @ w["W2"] + w["b2"])
            return h @ w["w3"] + 0.125 * jnp.sum(y * y)

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
    ap.add_argument("--seeds", type=int, default=3,
                    help="seeds of pyro_ebm's sampler; the run with the median ESS/s is reported")
    ap.add_argument("--only", default=None, help="run one energy: gauss50, double_well, mlp2d or mlp64")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1 avoids OpenMP stalls on small tensors on a busy machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    try:
        import numpyro  # noqa: F401

        have_numpyro = not args.skip_numpyro
    except ImportError:
        have_numpyro = False
    import os

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores (load average {load:.1f}), "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"{args.chains} chains (pyro_ebm, NumPyro), {args.pyro_chains} chains (Pyro NUTS, sequential), "
          f"{args.warmup} warmup + {args.draws} draws")
    rows = []
    for name, (F, D, beta) in torch_energies().items():
        if args.only and name != args.only:
            continue
        ours = run_ours(name, F, D, beta, args.chains, args.warmup, args.draws, args.seeds)
        print(f"\n[{name}] pyro_ebm hmc: ESS {ours['ess']:.0f} in {ours['wall']:.2f}s -> {ours['ess_s']:.0f} ESS/s; "
              f"accept {ours['acc']:.2f}, mean leapfrog steps {ours['steps']:.1f}, "
              f"{ours['grads']} batched gradients x {ours['t_grad']*1e6:.0f} us (median; sampler's value_and_grad "
              f"{ours['t_grad_sampler']*1e6:.0f} us, autograd.grad of the summed energy {ours['t_grad_user']*1e6:.0f} us), "
              f"overhead {ours['overhead']:.2f}; in the run a gradient took {ours['t_grad_in_run']*1e6:.0f} us, overhead "
              f"against that {ours['overhead_in_run']:.2f}, the rest {ours['fixed']*1e6:.0f} us per transition "
              f"(= {ours['fixed'] / ours['t_grad_in_run']:.2f} in-run gradients); trajectory length {ours['T']:.2f} "
              f"(seed {ours['seed']}, the median of seeds 0-{len(ours['all_grads']) - 1}: "
              f"ESS/s {', '.join(f'{x:.0f}' for x in ours['all_ess_s'])}, overhead "
              f"{', '.join(f'{x:.2f}' for x in ours['all_overhead'])} (in-run "
              f"{', '.join(f'{x:.2f}' for x in ours['all_overhead_in_run'])}), gradients {ours['all_grads']}, "
              f"trajectory lengths {', '.join(f'{x:.2f}' for x in ours['all_T'])})")
        row = dict(name=name, ours=ours)
        if not args.skip_pyro:
            py = run_pyro(name, F, D, beta, args.pyro_chains, args.warmup, args.draws)
            print(f"[{name}] Pyro NUTS ({args.pyro_chains} chains): ESS {py['ess']:.0f} in {py['wall']:.1f}s "
                  f"-> {py['ess_s']:.1f} ESS/s")
            row["pyro"] = py
        if have_numpyro:
            npy = run_numpyro(name, D, beta, args.chains, args.warmup, args.draws)
            print(f"[{name}] NumPyro vectorised NUTS: ESS {npy['ess']:.0f} in {npy['wall']:.2f}s incl. JIT "
                  f"({npy['ess_s']:.0f} ESS/s), {npy['wall_warm']:.2f}s compiled ({npy['ess_s_warm']:.0f} ESS/s)")
            row["numpyro"] = npy
        rows.append(row)

    print("\n| energy | pyro_ebm ESS/s | overhead (in-run) | Pyro NUTS ESS/s | ratio | NumPyro ESS/s (incl. JIT / compiled) | ratio (incl. / compiled) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        o = r["ours"]
        p = r.get("pyro")
        n = r.get("numpyro")
        pyro_cols = f"{p['ess_s']:.1f} | {o['ess_s'] / p['ess_s']:.0f}x" if p else "- | -"
        np_cols = (f"{n['ess_s']:.0f} / {n['ess_s_warm']:.0f} | {o['ess_s'] / n['ess_s']:.2f}x / "
                   f"{o['ess_s'] / n['ess_s_warm']:.2f}x") if n else "- | -"
        print(f"| {r['name']} | {o['ess_s']:.0f} | {o['overhead']:.2f} ({o['overhead_in_run']:.2f}) | {pyro_cols} | {np_cols} |")


if __name__ == "__main__":
    main()
