"""The energy landscape of a 2-D density before and after maximum-likelihood training with MCMC negatives.

The lecture's contrastive recipe -- push down on the energy of the data, pull up on the energy of
contrastive samples -- with maximum likelihood as the special case where the contrastive samples are
drawn from the model itself, :math:`\\hat y \\sim P(y) \\propto e^{-F(y)}`. The loss is
:func:`pyro_ebm.losses.ml_sampled`, ``F(y) - mean_j F(y_hat_j)``, whose gradient estimates the gradient of
the negative log-likelihood; the samples come from persistent Langevin chains
(:class:`pyro_ebm.negatives.PersistentNegatives`, a replay buffer continued at every step, restarted from
uniform noise over the plotting box with a small probability). A small L2 penalty on the energies
(:class:`pyro_ebm.train.EnergyL2`) keeps their level from drifting.

The data are the 8 Gaussians of :func:`pyro_ebm.datasets.eight_gaussians`, whose exact log density is
known, so the held-out log-likelihood of the trained EBM can be compared with the truth. The normalizer
``log Z`` of the EBM is computed by Gauss-Legendre quadrature over the box ``[-4, 4]^2``
(:func:`pyro_ebm.partition.log_partition`), i.e. the EBM is read as a density on that box.

The figure has the data (black) and the negatives (red crosses) over the energy's contours
(:func:`pyro_ebm.diagnostics.plot_negatives`): before training, Langevin chains on the random initial
energy wander anywhere; after training the persistent chains sit on the eight modes.

Printed numbers, before and after training:

* ``heldout_loglik``: mean log-likelihood of held-out data (``true_loglik``: the same under the true
  density);
* ``negatives_near_mode``: fraction of negatives within 3 standard deviations (0.6) of a mode centre
  (``1 - exp(-4.5) = 0.989`` for exact samples of the true density); after training also
  ``fresh_chains_near_mode``, the same for new Langevin chains started from uniform noise on the trained
  energy (the model itself, not the replay buffer);
* ``energy_gap``: mean energy of uniform points in the box minus mean energy of held-out data.

Run::

    python examples/energy_landscape.py            # full run, figure in outputs/
    python examples/energy_landscape.py --quick    # smoke run
"""

from __future__ import annotations

import json
import math
import os
import time

import torch
from torch import nn

from pyro_ebm import Energy, losses, mcmc
from pyro_ebm.datasets import eight_gaussians, eight_gaussians_log_prob
from pyro_ebm.negatives import PersistentNegatives
from pyro_ebm.partition import log_likelihood, log_partition
from pyro_ebm.train import EnergyL2, fit
from pyro_ebm.cli import example_parser, run_example

BOX = 3.0  # plotting box [-BOX, BOX]^2; restarts of the chains are uniform on it
QUAD_BOX = 4.0  # box of the quadrature for log Z
STEP_SIZE = 0.01  # Langevin step: noise sqrt(2 * 0.01) = 0.14 per step, against mode sd 0.2


class MLPEnergy(Energy):
    """``F(y) = MLP(y)`` for ``y`` of event shape ``(2,)``."""

    def __init__(self, width: int = 64):
        super().__init__(event_shape=(2,))
        self.net = nn.Sequential(
            nn.Linear(2, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 1)
        )

    def forward(self, y, x=None):
        return self.net(y).squeeze(-1)


def uniform_box(n: int, generator: torch.Generator) -> torch.Tensor:
    return (2 * torch.rand(n, 2, generator=generator) - 1) * BOX


def near_mode(points: torch.Tensor, radius: float = 2.0, std: float = 0.2) -> float:
    angle = torch.arange(8, dtype=points.dtype) * (2 * math.pi / 8)
    centers = radius * torch.stack([angle.cos(), angle.sin()], -1)
    d = torch.cdist(points.reshape(-1, 2), centers).min(-1).values
    return float((d < 3 * std).float().mean())


@torch.no_grad()
def measure(energy, test, negatives, uniform) -> dict:
    log_z = log_partition(energy, method="quadrature", low=[-QUAD_BOX] * 2, high=[QUAD_BOX] * 2, num_points=128)
    ll = log_likelihood(energy, test, log_z)
    return {
        "heldout_loglik": float(ll.mean()),
        "negatives_near_mode": near_mode(negatives),
        "energy_gap": float(energy(uniform).mean() - energy(test).mean()),
        "log_z": float(log_z.value),
    }


def langevin_negatives(energy, n: int, steps: int, seed: int) -> torch.Tensor:
    """``n`` chains from uniform noise on the box, ``steps`` unadjusted Langevin steps; the final states."""
    g = torch.Generator().manual_seed(seed)
    s = mcmc.sample(energy, uniform_box(n, g), steps, 1, kernel="ula", step_size=STEP_SIZE, seed=seed,
                    progress=False)
    return s.draws[:, -1]


def make_figure(path, data, panels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pyro_ebm.diagnostics import plot_negatives

    fig, axes = plt.subplots(1, len(panels), figsize=(6.8 * len(panels), 6.2), layout="constrained")
    for ax, (title, energy, neg) in zip(axes, panels):
        # plot_negatives labels the axes y[0], y[1] and puts the legend below them
        plot_negatives(data[:300], neg[:300], energy, ax, bounds=((-BOX, BOX), (-BOX, BOX)), grid_size=80,
                       data_kwargs={"s": 4}, negative_kwargs={"s": 10})
        ax.set_xlim(-BOX, BOX)  # chains on a flat energy diffuse out of the box; show the box only
        ax.set_ylim(-BOX, BOX)
        ax.set_title(title)
        ax.set_aspect("equal")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    p = example_parser(__doc__)
    p.add_argument("--steps", type=int, default=None, help="training steps (default 3000, quick 300)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--width", type=int, default=128, help="hidden units of the energy MLP")
    return run_example(run, p, argv)


def run(args) -> dict:
    t0 = time.time()

    n_train, steps, chain_steps = (2000, 300, 10) if args.quick else (8000, 3000, 20)
    steps = args.steps or steps
    data = eight_gaussians(n_train, seed=args.seed)
    test = eight_gaussians(2000, seed=args.seed + 1)
    g = torch.Generator().manual_seed(args.seed + 2)
    uniform = uniform_box(2000, g)

    torch.manual_seed(args.seed)
    energy = MLPEnergy(args.width)
    before_neg = langevin_negatives(energy, 500, 200, args.seed)
    before = measure(energy, test, before_neg, uniform)
    # a frozen copy of the initial energy for the "before" panel
    initial = MLPEnergy(args.width)
    initial.load_state_dict(energy.state_dict())

    negatives = PersistentNegatives(
        buffer_size=2000, steps=chain_steps, step_size=STEP_SIZE, reinit_prob=0.05, noise=uniform_box,
        seed=args.seed,
    )
    history = fit(energy, data, losses.ml_sampled, negatives, steps=steps, batch_size=128, lr=args.lr,
                  regularizers=[EnergyL2(0.1)], seed=args.seed, progress=False)
    after_neg = negatives.buffer.clone()
    after = measure(energy, test, after_neg, uniform)
    # fresh chains from noise on the trained energy: does the model itself (not the buffer) sit on the modes?
    fresh = langevin_negatives(energy, 500, 200, args.seed + 3)
    after["fresh_chains_near_mode"] = near_mode(fresh)

    os.makedirs(args.out, exist_ok=True)
    fig_path = os.path.join(args.out, "energy_landscape.png")
    make_figure(fig_path, data, [
        ("before training: F and Langevin samples", initial, before_neg),
        (f"after {steps} steps: F and persistent negatives", energy, after_neg),
    ])

    true_ll = float(eight_gaussians_log_prob(test).mean())
    print(f"{'':24s}{'before':>10s}{'after':>10s}")
    for k in ("heldout_loglik", "negatives_near_mode", "energy_gap"):
        print(f"{k:24s}{before[k]:10.3f}{after[k]:10.3f}")
    print(f"{'true_loglik':24s}{true_ll:10.3f}")
    result = {
        "before": before,
        "after": after,
        "true_loglik": true_ll,
        "final_history": history.last,
        "figure": fig_path,
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
