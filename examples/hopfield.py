"""Hopfield nets: Hebbian storage of digits, recall from corruption, the 0.14 N capacity, spurious minima.

The lecture's Hopfield net (Hopfield 1982) is the energy :math:`E(y) = -\\frac12 y^\\top W y` over
:math:`\\pm 1` units with symmetric weights, trained by "digging holes around the training samples"
(Hebbian storage, :meth:`pyro_ebm.models.Hopfield.store`) with no contrastive term, "which is why it
doesn't work very well". Three experiments:

1. **Digits.** Prototypes of scikit-learn's 8x8 digits (each class's mean image, binarized at half the
   pixel range; 64 units) are stored: the sets {0, 1}, {3, 6, 7}, {0, 1, 7} and all ten. Each stored
   prototype is corrupted by flipping 10% of its pixels (20 corruptions per prototype) and recalled
   asynchronously. Reported: the fraction recalled exactly and the mean overlap. The prototypes are
   strongly correlated (overlaps 0.3 to 0.8: they share the background), far from the random patterns of
   the capacity theory: any pair is stored, but of the 120 triples only {3, 6, 7} and {2, 4, 9} are
   fixed points of their own Hebbian net, and ten fail entirely.
2. **Capacity.** ``P = alpha N`` random patterns in ``N`` units (1000; quick: 100), for ``alpha`` from 0.05
   to 0.25. Each stored pattern is the start of asynchronous recall; reported: the mean final overlap
   ``m`` with the pattern, and the estimated capacity, the smallest ``alpha`` whose mean overlap falls
   below 0.9. Theory (Amit, Gutfreund & Sompolinsky 1985): retrieval breaks down at ``alpha_c = 0.138``
   as ``N -> infinity``; at finite ``N`` the transition is smoothed and sits a little higher.
3. **Spurious minima.** Recall from random states of a net holding 3 random patterns (``N = 200``; quick:
   100): the fraction of runs that end at a stored pattern, at a negated one (the energy is even: ``-y`` is as low as
   ``y``), or at a spurious minimum -- e.g. the three-pattern mixture ``sign(y1 + y2 + y3)``, also a
   minimum nobody stored.

Run::

    python examples/hopfield.py            # full run, figure in outputs/
    python examples/hopfield.py --quick    # smoke run
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch

from pyro_ebm.cli import example_parser, run_example
from pyro_ebm.models import Hopfield


def digit_prototypes():
    from sklearn.datasets import load_digits

    d = load_digits()
    protos = np.stack([d.data[d.target == k].mean(0) for k in range(10)])
    return torch.tensor(np.where(protos > 7, 1.0, -1.0))


def corrupt(patterns, frac, reps, gen):
    x = patterns.repeat(reps, 1)
    flip = torch.rand(x.shape, generator=gen, dtype=x.dtype) < frac
    return torch.where(flip, -x, x)


def digits_experiment(protos, labels, reps, seed):
    gen = torch.Generator().manual_seed(seed)
    stored = protos[labels]
    net = Hopfield(64, dtype=torch.float64).store(stored)
    noisy = corrupt(stored, 0.1, reps, gen)
    res = net.recall(noisy, mode="async", seed=seed)
    target = stored.repeat(reps, 1)
    exact = (res.states == target).all(-1)
    return {"patterns": len(labels), "recalled_exactly": float(exact.double().mean()),
            "mean_overlap": float((res.states * target).mean(-1).mean())}, noisy, res.states


def capacity_sweep(n, alphas, trials, seed):
    gen = torch.Generator().manual_seed(seed)
    overlaps = []
    for alpha in alphas:
        p = max(1, int(round(alpha * n)))
        ms = []
        for _ in range(trials):
            pats = torch.where(torch.rand(p, n, generator=gen) < 0.5, -1.0, 1.0).double()
            net = Hopfield(n, dtype=torch.float64).store(pats)
            res = net.recall(pats, mode="async", max_sweeps=50, seed=gen)
            ms.append((res.states * pats).mean(-1))
        overlaps.append(float(torch.cat(ms).mean()))
    below = [a for a, m in zip(alphas, overlaps) if m < 0.9]
    return overlaps, (min(below) if below else float("nan"))


def spurious_experiment(n, runs, seed):
    gen = torch.Generator().manual_seed(seed)
    pats = torch.where(torch.rand(3, n, generator=gen) < 0.5, -1.0, 1.0).double()
    net = Hopfield(n, dtype=torch.float64).store(pats)
    start = torch.where(torch.rand(runs, n, generator=gen) < 0.5, -1.0, 1.0).double()
    res = net.recall(start, mode="async", max_sweeps=100, seed=seed)
    m = net.overlap(res.states, pats)  # [runs, 3]
    stored = (m == 1).any(-1)
    negated = (m == -1).any(-1)
    mixture = torch.sign(pats.sum(0))
    is_mix = (res.states == mixture).all(-1) | (res.states == -mixture).all(-1)
    spurious = ~(stored | negated)
    mix = net.recall(mixture, mode="async", seed=0)
    return {
        "stored": float(stored.double().mean()),
        "negated": float(negated.double().mean()),
        "spurious": float(spurious.double().mean()),
        "three_pattern_mixture": float(is_mix.double().mean()),
        "mixture_is_fixed_point": bool((mix.states == mixture).all()),
        "energy_stored": float(net(pats).mean()),
        "energy_mixture": float(net(mixture)),
        "energy_spurious_mean": float(res.energy[spurious].mean()) if bool(spurious.any()) else float("nan"),
    }


def make_figure(path, rows, alphas, overlaps, n):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(14, 5.6), layout="constrained")
    k = len(rows[0][1])
    grid = fig.add_gridspec(len(rows), 2 * k)
    for r, (title, images) in enumerate(rows):
        for j in range(k):
            ax = fig.add_subplot(grid[r, j])
            ax.imshow(images[j].numpy().reshape(8, 8), cmap="gray_r", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(title)
    ax = fig.add_subplot(grid[:, k:])
    ax.plot(alphas, overlaps, "o-", label=f"random patterns, N = {n}")
    ax.axvline(0.138, color="r", ls="--", label="alpha_c = 0.138 (large N)")
    ax.set_xlabel("alpha = P / N")
    ax.set_ylabel("mean overlap after recall from the pattern")
    ax.set_title("capacity")
    ax.legend(loc="lower left")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    return run_example(run, example_parser(__doc__), argv)


def run(args) -> dict:
    t0 = time.time()
    n, trials, reps = (100, 2, 5) if args.quick else (1000, 1, 20)
    alphas = [0.05, 0.08, 0.10, 0.12, 0.13, 0.14, 0.15, 0.16, 0.18, 0.20, 0.25]
    protos = digit_prototypes()
    digits = {}
    for labels in ([0, 1], [3, 6, 7], [0, 1, 7], list(range(10))):
        key = "".join(map(str, labels))
        digits[key], noisy, rec = digits_experiment(protos, labels, reps, args.seed)
        if key == "367":
            shown = [("stored", protos[labels]), ("corrupted", noisy[:3]), ("recalled", rec[:3])]
    overlaps, alpha_c = capacity_sweep(n, alphas, trials, args.seed)
    n_spurious = 100 if args.quick else 200
    spurious = spurious_experiment(n_spurious, 100 if args.quick else 400, args.seed)
    print("digits (10% of the pixels flipped, async recall):")
    for key, r in digits.items():
        print(f"  prototypes {{{', '.join(key)}}} stored: recalled exactly {r['recalled_exactly']:.2f}, "
              f"mean overlap {r['mean_overlap']:.2f}")
    print(f"capacity, N = {n}: " + ", ".join(f"{a:.2f}:{m:.2f}" for a, m in zip(alphas, overlaps)))
    print(f"  first alpha with mean overlap < 0.9: {alpha_c:.2f} (theory 0.138)")
    print(f"spurious minima (3 random patterns, N = {n_spurious}, recall from random states): "
          f"{json.dumps(spurious)}")
    os.makedirs(args.out, exist_ok=True)
    fig_path = os.path.join(args.out, "hopfield.png")
    make_figure(fig_path, shown, alphas, overlaps, n)
    result = {"digits": digits, "capacity_alphas": alphas, "capacity_overlaps": overlaps,
              "alpha_c": alpha_c, "spurious": spurious, "figure": fig_path, "seconds": round(time.time() - t0, 1)}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
