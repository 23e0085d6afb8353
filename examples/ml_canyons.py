"""Max likelihood makes canyons: unregularized ML on data near a manifold, with and without regularization.

The lecture ("Problem with Max Likelihood / Probabilistic Methods"): when the data lie on a thin
manifold, the maximum-likelihood density concentrates on it, so the energy :math:`F = -\\log p + c`
becomes an *infinitely deep canyon* -- arbitrarily low on the manifold, arbitrarily high just off it --
and useless for inference (no gradient leads into the canyon from outside, and no sampler can move in it).

Data: 4000 points on the unit circle with radial noise of standard deviation 0.01. The energy is the
architecture of ``examples/densities_2d.py`` (SiLU MLP + weak quadratic confinement). Two runs of
:func:`pyro_ebm.ml.ml_fit` (loss :func:`pyro_ebm.losses.ml_sampled`, persistent HMC negatives: 2000 chains,
4 transitions of 5 leapfrog steps of size 0.02 per step, restarts from uniform noise on
:math:`[-2, 2]^2`; constant learning rate 3e-3), identical except for the regularizer:

* **unregularized**: nothing but the ML loss;
* **regularized**: :class:`pyro_ebm.train.EnergyL2` with weight 1 (Du & Mordatch's penalty
  :math:`\\alpha(\\overline{F(y)^2} + \\overline{F(\\hat y)^2})`), which bounds how far apart the energies of
  the data and of the negatives can be pushed.

At a few training steps the script records the *canyon depth*: the mean energy of "surrounding" points
(uniform on :math:`[-2, 2]^2`, farther than 0.2 from the circle) minus the mean energy of held-out data,
and the steepness of the walls (the median norm of :math:`\\partial F/\\partial y` at the held-out data),
together with the :class:`pyro_ebm.ml.SamplerDiagnostics` probe of the negatives' HMC transition
(acceptance rate, R-hat of :math:`F`).

Run::

    python examples/ml_canyons.py            # full run, about 3 minutes on 2 CPU cores
    python examples/ml_canyons.py --quick    # smoke run
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from densities_2d import MLPEnergy  # noqa: E402
from pyro_ebm.ml import ml_fit  # noqa: E402
from pyro_ebm.train import EnergyL2  # noqa: E402
from pyro_ebm.cli import example_parser, run_example

BOX = 2.0
NOISE = 0.01


def circle(n: int, generator: torch.Generator, noise: float = NOISE) -> torch.Tensor:
    angle = 2 * math.pi * torch.rand(n, generator=generator)
    radius = 1.0 + noise * torch.randn(n, generator=generator)
    return torch.stack([radius * angle.cos(), radius * angle.sin()], -1)


def surroundings(n: int, generator: torch.Generator) -> torch.Tensor:
    u = (2 * torch.rand(4 * n, 2, generator=generator) - 1) * BOX
    return u[(u.norm(dim=-1) - 1).abs() > 0.2][:n]


def uniform_noise(n: int, generator: torch.Generator) -> torch.Tensor:
    return (2 * torch.rand(n, 2, generator=generator) - 1) * BOX


def wall_steepness(energy, y: torch.Tensor) -> float:
    y = y.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(energy(y).sum(), y)
    return float(g.norm(dim=-1).median())


def train(data, test, around, *, regularized: bool, steps: int, checkpoints, seed: int, quick: bool, lr: float):
    torch.manual_seed(seed)
    energy = MLPEnergy()
    trajectory = []
    t0 = time.time()

    def record(step, history):
        if step in checkpoints:
            with torch.no_grad():
                f_data, f_around = float(energy(test).mean()), float(energy(around).mean())
            last = history.last
            trajectory.append({
                "step": step, "gap": f_around - f_data, "energy_data": f_data, "energy_around": f_around,
                "steepness": wall_steepness(energy, test[:500]),
                "acceptance": last.get("diag_acceptance", math.nan),
                "rhat_energy": last.get("diag_rhat_energy", math.nan),
                "seconds": round(time.time() - t0, 1),
            })
        return False

    run = ml_fit(
        energy, data, sampler="persistent",
        # the fixed small step and restarts from noise of the classic persistent recipe, without ml_fit's
        # adapted step size, jumps and learning-rate decay: the canyons are what that recipe does
        sampler_options=dict(buffer_size=1000 if quick else 2000, steps=4, step_size=0.02, n_leapfrog=5,
                             reinit_prob=0.05, noise=uniform_noise, target_accept=None, jump=None),
        lr_schedule=None,
        # probe at the checkpoints (ml_fit runs the probe before `record`, which reads its numbers)
        diagnose_every=checkpoints[0],
        diagnostics_options=dict(num_chains=8, num_draws=30 if quick else 50, warn=False, check=("energy",)),
        steps=steps, batch_size=128, lr=lr, regularizers=[EnergyL2(1.0)] if regularized else [],
        callbacks=[record], seed=seed, progress=False,
    )
    return energy, trajectory, run


def radial_profile(energy, angle: float, r: torch.Tensor) -> torch.Tensor:
    y = torch.stack([r * math.cos(angle), r * math.sin(angle)], -1)
    with torch.no_grad():
        return energy(y)


def make_figure(path, data, runs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 11), layout="constrained")
    axes = [axes[0, 0], axes[1, 0], axes[1, 1], axes[0, 1]]  # the two curves on top, the two maps below
    colors = ("tab:red", "tab:blue")
    ax = axes[0]
    for (label, (_, traj)), color in zip(runs.items(), colors):
        ax.plot([t["step"] for t in traj], [max(t["gap"], 1e-3) for t in traj], "o-", color=color, label=label)
    ax.set_yscale("log")
    ax.set_xticks([t["step"] for t in next(iter(runs.values()))[1]])
    ax.set_xlabel("training step")
    ax.set_ylabel("F(surroundings) - F(data) (nats)")
    ax.set_title("canyon depth during ML training")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.12), ncol=2)
    n, lim = 400, 1.6  # grid spacing 0.008, finer than the data's radial spread 0.01
    g = torch.linspace(-lim, lim, n)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    grid = torch.stack([xx, yy], -1).reshape(-1, 2)
    for ax, (label, (energy, traj)) in zip(axes[1:3], runs.items()):
        with torch.no_grad():
            f = energy(grid).reshape(n, n)
        low = grid[int(f.argmin())]
        f = f - f.min()
        im = ax.imshow(torch.log10(1 + f).numpy(), origin="lower", extent=(-lim, lim, -lim, lim), cmap="magma")
        first = ax is axes[1]  # one legend for both maps
        ax.scatter(data[:200, 0], data[:200, 1], s=2, c="c", label="data" if first else None)
        ax.plot([float(low[0])], [float(low[1])], "x", color="lime", ms=7, label="grid minimum of F" if first else None)
        ax.set_title(f"{label}: F - min F on the grid, range {float(f.max()):.3g} nats")
        ax.set(xlabel="y[0]", ylabel="y[1]")
        fig.colorbar(im, ax=ax, shrink=0.85, label="log10(1 + F - min F)")
    ax = axes[3]
    r = torch.linspace(0.7, 1.3, 1201)
    for (label, (energy, _)), color in zip(runs.items(), colors):
        for angle, style in ((0.0, "-"), (math.pi / 2, "--")):
            prof = radial_profile(energy, angle, r)
            ax.plot(r.numpy(), (prof - prof.min()).numpy(), style, color=color, lw=1,
                    label=f"{label}, angle {angle:.2f}")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("radius r")
    ax.set_ylabel("F - min F along the ray (nats)")
    ax.set_title("radial profiles: the canyon at r = 1")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.12), ncol=2)
    fig.legend(*axes[1].get_legend_handles_labels(), loc="outside lower center", ncol=2,
               facecolor="0.85")
    fig.savefig(path, dpi=100, pil_kwargs={"optimize": True})
    plt.close(fig)


def main(argv=None) -> dict:
    p = example_parser(__doc__)
    p.add_argument("--steps", type=int, default=None, help="training steps (default 2000, quick 160)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 3e-3, quick 1e-2)")
    return run_example(run, p, argv)


def run(args) -> dict:
    t_all = time.time()
    steps = args.steps or (160 if args.quick else 2000)
    unit = steps // 8
    checkpoints = [unit * k for k in (1, 2, 4, 6, 8)]
    g = torch.Generator().manual_seed(args.seed)
    data = circle(2000 if args.quick else 4000, g)
    test = circle(1000, g)
    around = surroundings(2000, g)

    runs = {}
    for label, regularized in (("unregularized", False), ("EnergyL2(1.0)", True)):
        energy, traj, _ = train(data, test, around, regularized=regularized, steps=steps,
                                checkpoints=checkpoints, seed=args.seed, quick=args.quick,
                                lr=args.lr or (1e-2 if args.quick else 3e-3))
        runs[label] = (energy, traj)

    os.makedirs(args.out, exist_ok=True)
    fig_path = os.path.join(args.out, "ml_canyons.png")
    make_figure(fig_path, data, runs)

    result = {"checkpoints": checkpoints, "figure": fig_path}
    for label, (_, traj) in runs.items():
        print(f"\n{label}")
        print(f"{'step':>6s}{'gap':>14s}{'F(data)':>14s}{'F(around)':>14s}{'|dF/dy|':>12s}{'accept':>8s}{'Rhat(F)':>10s}")
        for t in traj:
            print(f"{t['step']:6d}{t['gap']:14.4g}{t['energy_data']:14.4g}{t['energy_around']:14.4g}"
                  f"{t['steepness']:12.4g}{t['acceptance']:8.3f}{t['rhat_energy']:10.4g}")
        result[label] = traj
    result["seconds"] = round(time.time() - t_all, 1)
    print(json.dumps({k: v for k, v in result.items() if k not in runs}, indent=2))
    return result


if __name__ == "__main__":
    main()
