"""Diagnosing MCMC contrastive samples: are these negatives any good?

The negative phase of the maximum-likelihood gradient, ``E_{y ~ P}[dF(y)/dw]``, is only as good as the
samples ``y``. This example samples the tilted 2-D double well ``exp(-beta F)`` at ``beta = 4`` (barrier
height 4 nats between the wells) in two ways, with the same number of chains and draws:

* plain batched HMC (:func:`pyro_ebm.mcmc.sample`, ``kernel="hmc"``): each chain stays in the well it
  started in, so the chains disagree;
* HMC with parallel tempering over a ladder of 8 inverse temperatures (``tempering=8``): replicas at low
  ``beta`` cross the barrier and swaps carry the crossings down to ``beta = 4``.

For each it prints :func:`pyro_ebm.diagnostics.check_negatives` (R-hat, ESS, BFMI, divergences; a
``NegativesWarning`` when the chains have not mixed) and the weight of the right-hand well against the
exact value by quadrature, then saves trace, rank and energy plots and the negatives over the landscape.

Run::

    python examples/diagnose_negatives.py            # full run, figures in outputs/
    python examples/diagnose_negatives.py --quick    # smoke run
"""

from __future__ import annotations

import math
import os
import time
import warnings

import torch

from pyro_ebm import argmin_energy, as_energy
from pyro_ebm.datasets import double_well_energy
from pyro_ebm.diagnostics import NegativesWarning, check_negatives, plot_negatives, plot_rank
from pyro_ebm.mcmc import sample
from pyro_ebm.cli import example_parser, run_example

BETA = 8.0
TILT = 0.1


def exact_right_weight(beta: float = BETA) -> float:
    """P(y0 > 0) under exp(-beta F) by a 2-D Riemann sum on a fine grid (the energy is smooth)."""
    g = torch.linspace(-3, 3, 1201, dtype=torch.float64)
    yy = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1)
    w = torch.exp(-beta * double_well_energy(yy, tilt=TILT))
    return float(w[g > 0].sum() / w.sum())


def _report(name, s, exact):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NegativesWarning)
        report = check_negatives(s)
    right = (s.draws[..., 0] > 0).double()
    frac = float(right.mean())
    per_chain = right.mean(1)
    # chains that never left their starting well make the across-chain spread of this indicator large
    stuck = float(((per_chain == 0) | (per_chain == 1)).double().mean())
    print(f"-- {name}")
    print(f"   max R-hat {report.max_rhat:.3f}   min bulk ESS {report.min_ess_bulk:.0f}   "
          f"divergences {report.n_divergent}   acceptance {report.mean_acceptance:.2f}")
    print(f"   P(y0 > 0) = {frac:.3f} (exact {exact:.3f});   chains that never changed well: {stuck:.0%}")
    if caught:
        print(f"   NegativesWarning: {caught[0].message}")
    else:
        print("   no warning: the chains agree")
    if "swap_rates" in s.info:
        rates = ", ".join(f"{float(r):.2f}" for r in s.info["swap_rates"])
        print(f"   swap rates between neighbouring temperatures: {rates}")
    return {
        "max_rhat": report.max_rhat,
        "min_ess_bulk": report.min_ess_bulk,
        "frac_right": frac,
        "stuck_fraction": stuck,
        "warned": bool(caught),
    }


def main(argv=None) -> dict:
    return run_example(_run, example_parser(__doc__), argv)


def _run(args) -> dict:
    t0 = time.perf_counter()
    chains, warmup, draws = (32, 150, 150) if args.quick else (64, 500, 500)
    energy = as_energy(lambda y: double_well_energy(y, tilt=TILT), event_shape=(2,))
    g = torch.Generator().manual_seed(args.seed)
    init = torch.randn(chains, 2, generator=g) * 0.3 + torch.tensor([1.0, 0.0]) * torch.where(
        torch.rand(chains, 1, generator=g) < 0.5, -1.0, 1.0
    )
    exact = exact_right_weight()
    print(f"double well at beta = {BETA}: {chains} chains, {warmup} warmup + {draws} draws each")
    plain = sample(energy, init, warmup, draws, beta=BETA, seed=args.seed, progress=False)
    tempered = sample(energy, init, warmup, draws, beta=BETA, tempering=8, seed=args.seed, progress=False)
    results = {"exact_right": exact}
    results["plain"] = _report("plain HMC", plain, exact)
    results["tempered"] = _report("HMC + parallel tempering (8 temperatures)", tempered, exact)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(args.out, exist_ok=True)
    minima = argmin_energy(energy, init[:8]).distinct(tol=1e-2).values  # drawn as the "data" points
    fig, axes = plt.subplots(1, 2, figsize=(13, 6), layout="constrained")
    for ax, (name, s) in zip(axes, [("plain HMC", plain), ("parallel tempering", tempered)]):
        plot_negatives(minima, s.flat()[::4], energy=lambda y: BETA * energy(y), ax=ax, bounds=((-2, 2), (-2, 2)),
                       data_kwargs={"label": "minima", "marker": "x", "s": 60, "c": "k"},
                       negative_kwargs={"s": 2, "alpha": 0.3})
        ax.set_xlim(-2, 2)
        ax.set_ylim(-2, 2)
        frac = results["plain" if s is plain else "tempered"]["frac_right"]
        ax.set_title(f"{name}: P(y[0] > 0) = {frac:.2f} (exact {exact:.2f})")
    path = os.path.join(args.out, "diagnose_negatives.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    rank = plot_rank(plain.to_arviz())
    rank_path = os.path.join(args.out, "diagnose_negatives_rank.png")
    rank.savefig(rank_path, dpi=100)
    plt.close(rank)
    results["figures"] = [path, rank_path]
    results["seconds"] = time.perf_counter() - t0
    print(f"figures: {path}, {rank_path}   ({results['seconds']:.1f} s)")
    return results


if __name__ == "__main__":  # pragma: no cover
    main()
