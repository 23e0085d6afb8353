r"""Benchmark of the default log-partition estimator against BlackJAX's adaptive tempered SMC.

``pyro_ebm.partition.log_partition(F)`` (adaptive tempered SMC, ``method="smc"``, default options) and
BlackJAX's ``adaptive_tempered_smc`` estimate :math:`\log Z = \log \int e^{-F(y)}\,dy` on the same targets,
in one run, both in float32 (the default of torch and of JAX), both with 2048 particles and both on the same
path from a standard-normal base, :math:`\log q_b = (1-b)\log N(y; 0, I) + b\,(-F(y))`: in BlackJAX's terms
the "prior" is ``N(0, I)`` and the "log-likelihood" is ``-F(y) - log N(y; 0, I)``. The targets:

* ``gauss20``, ``gauss50``: anisotropic Gaussian energies ``F(y) = 0.5 sum (y / sd)^2`` with ``sd``
  log-spaced from 0.1 to 3.2; truth ``0.5 D log(2 pi) + sum log sd``;
* ``mixture2d``: ``F(y) = -logsumexp_k(a_k - 0.5 |y - m_k|^2 / s_k^2)``, two well separated components;
  truth by Gauss-Legendre quadrature (``log_partition(F, method="quadrature")``), checked against the
  closed form ``logsumexp_k(a_k + log(2 pi s_k^2))``;
* ``rbm20``: a Gaussian-Bernoulli RBM, ``F(v) = 0.5 |v - b|^2 - sum_j softplus(c_j + v . W_j)`` with 20
  visible and 12 hidden units; summing the hidden units out of ``exp(-0.5|v - b|^2 + c.h + v.W h)`` leaves
  Gaussian integrals, so ``log Z = D/2 log(2 pi) - 0.5 |b|^2 + logsumexp_h (c.h + 0.5 |b + W h|^2)`` over
  the 4096 binary ``h``. The self-check compares this closed form with quadrature (1 visible, 2 hidden
  units) and with importance sampling from ``N(b, I)`` on the benchmark's own RBM.

BlackJAX is configured like the library's SMC as far as its API allows: target ESS 0.9 of the particles
per temperature (ours: conditional ESS 0.9), 3 HMC moves per temperature with 5 leapfrog steps, a diagonal
inverse mass matrix equal to the weighted variance of the particle cloud, and a step size that starts at
``1.2 D^-1/4``, is steered towards 0.75 acceptance by the mean acceptance of the previous temperature and is
jittered per particle by a factor in [0.5, 1.5] (the same rules as ours; BlackJAX's inner-kernel parameters
are passed to its kernel at every step). The differences that remain are BlackJAX's: it resamples
(systematic) at every temperature, keeps the number of leapfrog steps fixed, and runs one sampler, so it has
no error bar ("n/a"); ours splits the particles into 16 replicas (a pilot that tunes and 15 that estimate)
and reports ``stderr`` from their spread.

Reported per target and method over seeds 0-4: the median absolute error (nats), how often
``|error| <= 2 stderr``, the standard deviation of the estimates over the seeds, the median wall time (for
BlackJAX the compiled calls, seeds 1-4) and BlackJAX's first call (seed 0, JIT compilation included), the
number of temperatures and of energy+gradient evaluations (ours: ``LogPartition.num_evaluations``;
BlackJAX: particles x temperatures x (1 + moves x leapfrog steps), not counting the two gradient-free energy
evaluations per particle and temperature of its weights and its ESS search), and the time ratios.

Both run on one thread by default (``--threads``: torch's intra-op threads and XLA's CPU threads): on a
busy 2-core machine two torch threads made the same SMC run 10-20 times slower (OpenMP stalls on these
small tensors) and XLA's default pool made BlackJAX's compiled RBM run 3 times slower.

Run: ``python benchmarks/log_z.py [--quick] [--skip-blackjax] [--seeds 5] [--particles 2048]``.
``--quick``: one seed, 512 particles (BlackJAX still makes a second, compiled call for its timing).
Without ``jax``/``blackjax`` installed (or with ``--skip-blackjax``) only this library's estimator runs.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import warnings

import numpy as np
import torch

from pyro_ebm import as_energy
from pyro_ebm.partition import EstimateWarning, log_partition

LOG_2PI = math.log(2 * math.pi)
SD_RANGE = (0.1, 3.2)
# the mixture: log-weights a_k, means m_k, standard deviations s_k (isotropic)
MIX_A = (math.log(0.3), math.log(0.7))
MIX_M = ((-3.0, 2.5), (3.0, -2.0))
MIX_S = (0.5, 1.0)
MIX_BOX = ([-9.0, -9.0], [9.0, 9.0])
RBM_D, RBM_H, RBM_SEED = 20, 12, 1234
#: inner-kernel settings shared by both methods (the library's defaults)
N_MCMC, N_LEAPFROG, TARGET_ACCEPT, ESS_FRACTION = 3, 5, 0.75, 0.9


# ----------------------------------------------------------------------------------------------------
# targets: one numpy description, a torch energy and a JAX log-density built from it
# ----------------------------------------------------------------------------------------------------

def gauss_sds(D):
    return np.logspace(math.log10(SD_RANGE[0]), math.log10(SD_RANGE[1]), D)


def rbm_params(D=RBM_D, H=RBM_H, seed=RBM_SEED):
    g = np.random.default_rng(seed)
    return dict(W=g.normal(size=(D, H)) * 0.3 / math.sqrt(D), b=g.normal(size=D), c=g.normal(size=H))


def rbm_log_z(W, b, c):
    """Closed-form log Z of the Gaussian-Bernoulli RBM (float64, all 2^H hidden states enumerated)."""
    H = W.shape[1]
    h = ((np.arange(2**H)[:, None] >> np.arange(H)[None, :]) & 1).astype(np.float64)  # [2^H, H]
    s = h @ c + 0.5 * ((b[None, :] + h @ W.T) ** 2).sum(1)
    m = s.max()
    return 0.5 * len(b) * LOG_2PI - 0.5 * float(b @ b) + m + math.log(np.exp(s - m).sum())


def torch_energy(kind, p):
    dtype = torch.float32
    if kind == "gauss":
        inv_var = torch.tensor(1.0 / p["sd"] ** 2, dtype=dtype)
        return as_energy(lambda y: 0.5 * (y * y * inv_var).sum(-1), event_shape=(len(p["sd"]),))
    if kind == "mixture":
        a = torch.tensor(MIX_A, dtype=dtype)
        m = torch.tensor(MIX_M, dtype=dtype)
        s2 = torch.tensor(MIX_S, dtype=dtype) ** 2
        return as_energy(
            lambda y: -torch.logsumexp(a - 0.5 * ((y.unsqueeze(-2) - m) ** 2).sum(-1) / s2, -1), event_shape=(2,)
        )
    W, b, c = (torch.tensor(p[k], dtype=dtype) for k in ("W", "b", "c"))
    return as_energy(
        lambda v: 0.5 * ((v - b) ** 2).sum(-1) - torch.nn.functional.softplus(c + v @ W).sum(-1),
        event_shape=(W.shape[0],),
    )


def jax_log_density(kind, p):
    """``-F(y)`` for one ``y`` [D] in JAX (float32), the same function as :func:`torch_energy`."""
    import jax
    import jax.numpy as jnp

    if kind == "gauss":
        inv_var = jnp.asarray(1.0 / p["sd"] ** 2, dtype=jnp.float32)
        return lambda y: -0.5 * jnp.sum(y * y * inv_var)
    if kind == "mixture":
        a, m = jnp.asarray(MIX_A, jnp.float32), jnp.asarray(MIX_M, jnp.float32)
        s2 = jnp.asarray(MIX_S, jnp.float32) ** 2
        return lambda y: jax.scipy.special.logsumexp(a - 0.5 * jnp.sum((y - m) ** 2, -1) / s2)
    W, b, c = (jnp.asarray(p[k], jnp.float32) for k in ("W", "b", "c"))
    return lambda v: -0.5 * jnp.sum((v - b) ** 2) + jnp.sum(jax.nn.softplus(c + v @ W))


def make_targets():
    targets = {}
    for D in (20, 50):
        sd = gauss_sds(D)
        targets[f"gauss{D}"] = dict(kind="gauss", D=D, p=dict(sd=sd), truth=0.5 * D * LOG_2PI + float(np.log(sd).sum()))
    quad = log_partition(torch_energy("mixture", None), method="quadrature", low=MIX_BOX[0], high=MIX_BOX[1])
    targets["mixture2d"] = dict(kind="mixture", D=2, p=None, truth=float(quad.value), quad_err=float(quad.stderr))
    p = rbm_params()
    targets[f"rbm{RBM_D}"] = dict(kind="rbm", D=RBM_D, p=p, truth=rbm_log_z(**p))
    return targets


def self_check(targets, have_jax):
    """Independent checks of every truth and of the agreement of the two implementations of each energy."""
    # 1. the RBM closed form against quadrature with 1 visible and 2 hidden units
    small = rbm_params(D=1, H=2, seed=7)
    small["W"] = small["W"] * 8.0  # strong coupling, so the hidden units matter
    quad = log_partition(torch_energy("rbm", small), method="quadrature", low=-25.0, high=25.0)
    closed = rbm_log_z(**small)
    assert abs(float(quad.value) - closed) < 1e-5, (float(quad.value), closed)  # float32 energy
    print(f"self-check: RBM (1 visible, 2 hidden) closed form {closed:.8f}, quadrature {float(quad.value):.8f}")
    # 2. the benchmark's RBM: closed form against importance sampling from N(b, I), where
    #    Z = (2 pi)^(D/2) E[prod_j (1 + exp(c_j + v.W_j))] (float64, 200000 draws)
    p = targets[f"rbm{RBM_D}"]["p"]
    g = np.random.default_rng(0)
    v = p["b"] + g.normal(size=(200_000, RBM_D))
    log_w = np.logaddexp(0.0, p["c"] + v @ p["W"]).sum(1)
    m = log_w.max()
    w = np.exp(log_w - m)
    is_est = 0.5 * RBM_D * LOG_2PI + m + math.log(w.mean())
    is_se = w.std() / (math.sqrt(len(w)) * w.mean())
    truth = targets[f"rbm{RBM_D}"]["truth"]
    assert abs(is_est - truth) < 5 * is_se + 1e-9, (is_est, truth, is_se)
    no_coupling = 0.5 * RBM_D * LOG_2PI + float(np.logaddexp(0.0, p["c"]).sum())
    assert np.isfinite(truth) and abs(truth - no_coupling) > 0.05, (truth, no_coupling)
    print(f"self-check: rbm{RBM_D} log Z closed form {truth:.5f}, importance sampling {is_est:.5f} +- {is_se:.5f}; "
          f"the couplings W move it by {truth - no_coupling:+.3f} nats from the W = 0 value, |b| = "
          f"{np.linalg.norm(p['b']):.2f} (the base N(0, I) is that far from the target's centre)")
    # 3. the mixture's quadrature against its closed form
    mix = targets["mixture2d"]
    closed = float(np.logaddexp(*(a + math.log(2 * math.pi * s * s) for a, s in zip(MIX_A, MIX_S))))
    assert abs(mix["truth"] - closed) < 1e-4, (mix["truth"], closed)
    print(f"self-check: mixture2d log Z quadrature {mix['truth']:.6f} (refinement {mix['quad_err']:.1e}), "
          f"closed form {closed:.6f}")
    # 4. the torch and JAX energies agree
    if have_jax:
        import jax
        import jax.numpy as jnp

        for name, t in targets.items():
            y = np.random.default_rng(1).normal(size=(64, t["D"])).astype(np.float32) * 2
            f_t = torch_energy(t["kind"], t["p"])(torch.from_numpy(y)).numpy()
            f_j = -np.asarray(jax.vmap(jax_log_density(t["kind"], t["p"]))(jnp.asarray(y)))
            assert np.allclose(f_t, f_j, rtol=1e-5, atol=1e-4), (name, np.abs(f_t - f_j).max())
        print("self-check: the torch and JAX energies agree at 64 random points of every target")


# ----------------------------------------------------------------------------------------------------
# the two estimators
# ----------------------------------------------------------------------------------------------------

def run_ours(t, seed, particles):
    F = torch_energy(t["kind"], t["p"])
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EstimateWarning)
        est = log_partition(F, seed=seed, num_particles=particles)
    wall = time.perf_counter() - t0
    return dict(value=float(est.value), stderr=float(est.stderr), wall=wall, temps=len(est.betas) - 1,
                evals=int(est.num_evaluations), warned=any(issubclass(w.category, EstimateWarning) for w in caught))


def make_blackjax(t, particles):
    """A jitted ``run(key) -> (log Z, number of temperatures)`` of BlackJAX's adaptive tempered SMC."""
    import jax
    import jax.numpy as jnp
    import blackjax
    from blackjax.smc import resampling

    D = t["D"]
    log_target = jax_log_density(t["kind"], t["p"])

    def log_base(y):
        return -0.5 * jnp.sum(y * y) - 0.5 * D * LOG_2PI

    def log_likelihood(y):
        return log_target(y) - log_base(y)

    hmc = blackjax.hmc.build_kernel()

    def hmc_step(rng_key, state, logdensity_fn, step_size, inverse_mass_matrix):
        return hmc(rng_key, state, logdensity_fn, step_size, inverse_mass_matrix, N_LEAPFROG)

    kernel = blackjax.adaptive_tempered_smc.build_kernel(
        log_base, log_likelihood, hmc_step, blackjax.hmc.init, resampling.systematic, ESS_FRACTION
    )

    def params(key, eps, inv_mass):
        # per-particle step sizes (jittered), one shared inverse mass matrix (leading dimension 1)
        jitter = jax.random.uniform(key, (particles,), minval=0.5, maxval=1.5)
        return dict(step_size=eps * jitter, inverse_mass_matrix=inv_mass[None, :])

    def run(key):
        key, k0, k1 = jax.random.split(key, 3)
        state = blackjax.adaptive_tempered_smc.init(jax.random.normal(k0, (particles, D)))
        eps = jnp.asarray(1.2 * D ** -0.25, jnp.float32)
        carry = (state, eps, jnp.ones(D, jnp.float32), jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32), key)

        def cond(c):
            return (c[0].tempering_param < 1.0) & (c[4] < 5000)

        def body(c):
            state, eps, inv_mass, log_z, n, key = c
            key, k_par, k_step = jax.random.split(key, 3)
            state, info = kernel(k_step, state, N_MCMC, params(k_par, eps, inv_mass))
            acc = jnp.mean(info.update_info.acceptance_rate)
            eps = jnp.clip(eps * jnp.exp(2.0 * (acc - TARGET_ACCEPT)), 1e-6, 1e3)
            w = state.weights[:, None]
            mean = jnp.sum(w * state.particles, 0)
            inv_mass = jnp.sum(w * (state.particles - mean) ** 2, 0)
            inv_mass = jnp.where(jnp.isfinite(inv_mass) & (inv_mass > 0), inv_mass, 1.0)
            return state, eps, inv_mass, log_z + info.log_likelihood_increment, n + 1, key

        out = jax.lax.while_loop(cond, body, carry)
        return out[3], out[4]

    return jax.jit(run)


def run_blackjax(fn, seed, particles):
    import jax

    t0 = time.perf_counter()
    log_z, n = fn(jax.random.key(seed))
    value, temps = float(log_z), int(n)  # waits for the result
    wall = time.perf_counter() - t0
    return dict(value=value, wall=wall, temps=temps, evals=particles * temps * (1 + N_MCMC * N_LEAPFROG))


# ----------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------

def fmt(x):
    return "-" if math.isnan(x) else f"{x:.3f}"


def summarize(runs, truth):
    err = np.array([r["value"] - truth for r in runs])
    out = dict(med_abs=float(np.median(np.abs(err))), errors=err,
               sd=float(np.std([r["value"] for r in runs], ddof=1)) if len(runs) > 1 else float("nan"),
               temps=float(np.median([r["temps"] for r in runs])), evals=float(np.median([r["evals"] for r in runs])))
    if "stderr" in runs[0]:
        se = np.array([r["stderr"] for r in runs])
        out["covered"] = int((np.abs(err) <= 2 * se).sum())
        out["med_se"] = float(np.median(se))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one seed, 512 particles")
    ap.add_argument("--skip-blackjax", action="store_true", help="run only this library's estimator")
    ap.add_argument("--seeds", type=int, default=None, help="seeds 0 .. n-1 (default 5; 1 with --quick)")
    ap.add_argument("--particles", type=int, default=None, help="particles of both methods (default 2048)")
    ap.add_argument("--only", default=None, help="one target: gauss20, gauss50, mixture2d or rbm20")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads of torch and, at 1, of XLA (default 1: on a busy machine more threads stall on "
                         "these small tensors; at more than 1 XLA keeps its own default pool)")
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 5)))
    particles = args.particles or (512 if args.quick else 2048)
    torch.set_num_threads(args.threads)
    if args.threads == 1:  # read when jax is first imported, below
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()

    have_jax, why = False, "--skip-blackjax"
    if not args.skip_blackjax:
        try:
            import blackjax
            import jax

            have_jax = True
        except ImportError as e:
            why = f"not installed ({e})"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores (load average {load:.1f}), torch "
          f"{torch.__version__} with {torch.get_num_threads()} threads"
          + (f", jax {jax.__version__} ({jax.devices()[0].platform}, "
             f"{'1 thread' if args.threads == 1 else 'default threads'}), blackjax {blackjax.__version__}"
             if have_jax else ""))
    if not have_jax:
        print(f"BlackJAX skipped: {why}")
    print(f"{particles} particles, seeds {seeds[0]}-{seeds[-1]}, float32, base N(0, I); pyro_ebm: "
          f"log_partition(F, seed=s, num_particles={particles}) (16 replicas)"
          + (f"; BlackJAX: adaptive_tempered_smc, target ESS {ESS_FRACTION}, {N_MCMC} HMC moves x {N_LEAPFROG} "
             "leapfrog steps, systematic resampling" if have_jax else ""))

    targets = make_targets()
    self_check(targets, have_jax)
    if args.only:
        if args.only not in targets:
            raise ValueError(f"--only must be one of {sorted(targets)}, got {args.only!r}")
        targets = {args.only: targets[args.only]}

    rows = []
    for name, t in targets.items():
        ours = [run_ours(t, s, particles) for s in seeds]
        for s, r in zip(seeds, ours):
            print(f"[{name}] pyro_ebm seed {s}: {r['value']:.4f} +- {r['stderr']:.4f} (truth {t['truth']:.4f}, "
                  f"error {r['value'] - t['truth']:+.4f}), {r['temps']} temperatures, {r['wall']:.2f} s"
                  + (" [EstimateWarning]" if r["warned"] else ""))
        row = dict(name=name, t=t, ours=summarize(ours, t["truth"]), ours_wall=float(np.median([r["wall"] for r in ours])))
        if have_jax:
            fn = make_blackjax(t, particles)
            bj = [run_blackjax(fn, s, particles) for s in seeds]
            timing = bj[1:] if len(bj) > 1 else [run_blackjax(fn, seeds[-1] + 1, particles)]
            for s, r in zip(seeds, bj):
                print(f"[{name}] BlackJAX seed {s}: {r['value']:.4f} (error {r['value'] - t['truth']:+.4f}), "
                      f"{r['temps']} temperatures, {r['wall']:.2f} s" + (" (JIT compilation included)" if s == seeds[0] else ""))
            if len(bj) == 1:
                print(f"[{name}] BlackJAX seed {seeds[-1] + 1} (timing only, compiled): {timing[0]['wall']:.2f} s")
            row.update(bj=summarize(bj, t["truth"]), bj_first=bj[0]["wall"],
                       bj_wall=float(np.median([r["wall"] for r in timing])))
        rows.append(row)

    n = len(seeds)
    print(f"\n| target | truth log Z | method (float32) | median abs error (nats) | abs error <= 2 stderr | "
          f"sd over seeds | median stderr | median time (s) | first call (s) | temperatures | energy+grad evals |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        o = r["ours"]
        print(f"| {r['name']} | {r['t']['truth']:.3f} | pyro_ebm smc | {o['med_abs']:.3f} | {o['covered']}/{n} | "
              f"{fmt(o['sd'])} | {o['med_se']:.3f} | {r['ours_wall']:.2f} | - | {o['temps']:.0f} | {o['evals']:.3g} |")
        if "bj" in r:
            b = r["bj"]
            print(f"| {r['name']} | {r['t']['truth']:.3f} | BlackJAX adaptive_tempered_smc | {b['med_abs']:.3f} | n/a | "
                  f"{fmt(b['sd'])} | n/a | {r['bj_wall']:.2f} | {r['bj_first']:.2f} | {b['temps']:.0f} | {b['evals']:.3g} |")
    if any("bj" in r for r in rows):
        print("\n| target | time pyro_ebm / BlackJAX first call | time pyro_ebm / BlackJAX compiled |")
        print("|---|---|---|")
        for r in rows:
            print(f"| {r['name']} | {r['ours_wall'] / r['bj_first']:.2f} | {r['ours_wall'] / r['bj_wall']:.2f} |")
        timed = f"seeds {seeds[1]}-{seeds[-1]}" if n > 1 else f"seed {seeds[-1] + 1}, for timing only"
        print(f"\n(BlackJAX's median time is over its compiled calls ({timed}); its first call, seed {seeds[0]}, "
              "includes the JIT compilation)")


if __name__ == "__main__":
    main()
