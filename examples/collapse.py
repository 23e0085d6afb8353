"""Architectures that can collapse: a joint-embedding energy trained by pushing down only on positive pairs.

The lecture's joint-embedding (siamese) architecture measures the compatibility of two inputs through
the distance of their embeddings,

    F(y1, y2) = || enc(y1) - enc(y2) ||^2 .

Here ``y1`` and ``y2`` are two noisy views of the same 2-D point of :func:`pyro_ebm.datasets.eight_gaussians`
(``y_k = p + 0.1 * eps_k``). Trained with the energy loss alone (:func:`pyro_ebm.losses.energy_loss`: push
down on the energy of positive pairs, push up nothing) the encoder learns to ignore its input and to output
a constant: every pair, matching or not, gets energy ~0 -- the energy surface is flat. The same
architecture trained with a contrastive hinge loss (:func:`pyro_ebm.losses.hinge`, negatives = a view of
one point paired with a view of another point of the minibatch) keeps its embedding spread out and puts
negative pairs far above positive pairs.

**Shape contract.** The energy's ``y`` is the *pair*: ``event_shape = (2, 2)``, ``y[..., 0, :]`` is the
first view and ``y[..., 1, :]`` the second. The data set is a tensor ``[N, 2, 2]`` of positive pairs, and
a negative generator returns ``[n_neg, batch, 2, 2]`` pairs whose second view comes from another example
(:class:`ShuffledPairs`).

Printed numbers (on held-out pairs), for the energy-loss run and the hinge run side by side:

* ``embedding_std``: the per-dimension standard deviation of ``enc(y)`` over the data, averaged over the
  embedding dimensions (``embedding_std_min``: the smallest one);
* ``energy_pos`` / ``energy_neg``: mean energy of positive pairs and of negative pairs;
* ``energy_gap``: ``energy_neg - energy_pos``, how far the energy separates wrong pairs from right
  ones (~0 for a flat energy; the hinge asks for at least its margin, 1);
* ``energy_ratio``: ``energy_neg / energy_pos``. It is scale-free: a collapse that shrinks the embedding
  uniformly leaves it above 1 while every energy goes to 0, which is why the gap is the number to read.

Run::

    python examples/collapse.py            # full run, figure in outputs/
    python examples/collapse.py --quick    # smoke run
"""

from __future__ import annotations

import functools
import json
import os
import time

import torch
from torch import nn

from pyro_ebm import Energy, losses
from pyro_ebm.datasets import eight_gaussians
from pyro_ebm.negatives import Negatives
from pyro_ebm.train import fit
from pyro_ebm.cli import example_parser, run_example

VIEW_NOISE = 0.1


class JointEmbedding(Energy):
    """``F(y) = ||enc(y[..., 0, :]) - enc(y[..., 1, :])||^2`` for a pair ``y`` of event shape ``(2, d)``."""

    def __init__(self, d: int = 2, width: int = 64, dim: int = 8):
        super().__init__(event_shape=(2, d))
        self.enc = nn.Sequential(
            nn.Linear(d, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, dim)
        )

    def forward(self, y, x=None):
        h = self.enc(y)  # [..., 2, dim]: both views through the same encoder
        return (h[..., 0, :] - h[..., 1, :]).pow(2).sum(-1)


class ShuffledPairs(Negatives):
    """Negative pairs from a minibatch of positive pairs: ``(view 1 of b, view 2 of b + k)`` for ``k = 1..n_neg``.

    Deterministic (a cyclic shift of the batch), so it has no state to checkpoint. Returns
    ``[n_neg, batch, 2, d]``.
    """

    def __init__(self, n_neg: int = 8):
        super().__init__(None)
        self.n_neg = n_neg

    def __call__(self, energy, y, x=None):
        first = y[:, 0, :]
        out = [torch.stack([first, y.roll(-k, dims=0)[:, 1, :]], dim=1) for k in range(1, self.n_neg + 1)]
        return torch.stack(out).detach()


def make_pairs(n: int, seed: int):
    """``n`` positive pairs ``[n, 2, 2]`` (two noisy views of a point) and the points themselves."""
    p = eight_gaussians(n, seed=seed)
    g = torch.Generator().manual_seed(seed + 1000)
    views = p.unsqueeze(1) + VIEW_NOISE * torch.randn(n, 2, 2, generator=g)
    return views, p


@torch.no_grad()
def measure(energy: JointEmbedding, pairs: torch.Tensor, points: torch.Tensor, n_neg: int = 8) -> dict:
    std = energy.enc(points).std(0)
    pos = energy(pairs)
    neg = energy(ShuffledPairs(n_neg)(energy, pairs))
    return {
        "embedding_std": float(std.mean()),
        "embedding_std_min": float(std.min()),
        "energy_pos": float(pos.mean()),
        "energy_neg": float(neg.mean()),
        "energy_gap": float(neg.mean() - pos.mean()),
        "energy_ratio": float(neg.mean() / pos.mean().clamp_min(1e-30)),
    }


def train(loss, pairs, steps: int, seed: int):
    torch.manual_seed(seed)
    energy = JointEmbedding()
    history = fit(energy, pairs, loss, ShuffledPairs(8), steps=steps, batch_size=128, lr=3e-3, seed=seed,
                  progress=False)
    return energy, history


def make_figure(path, runs, points):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    angle = torch.atan2(points[:, 1], points[:, 0])
    fig, axes = plt.subplots(1, 3, figsize=(20, 5.8), layout="constrained")
    embeddings = {}
    for ax, (name, (energy, _)) in zip(axes[:2], runs.items()):
        with torch.no_grad():
            h = energy.enc(points)
        embeddings[name] = h
        points_drawn = ax.scatter(h[:, 0], h[:, 1], c=angle, cmap="hsv", s=5)
        ax.set_title(f"{name}: embedding (dims 0, 1)\nstd per dim ~ {float(h.std(0).mean()):.2g}")
        ax.set_xlabel("enc(y)[0]")
        ax.set_ylabel("enc(y)[1]")
    # the same scale on both panels: the collapsed embedding is a single dot
    both = torch.cat(list(embeddings.values()))[:, :2]
    lo, hi = both.min(0).values - 0.5, both.max(0).values + 0.5
    for ax in axes[:2]:
        ax.set_xlim(float(lo[0]), float(hi[0]))
        ax.set_ylim(float(lo[1]), float(hi[1]))
    fig.colorbar(points_drawn, ax=axes[:2], label="angle of the 2-D point y around the origin (radians)")
    ax = axes[2]
    colors = {"energy loss": "tab:red", "hinge": "tab:blue"}
    for name, (_, history) in runs.items():
        ax.plot(history["step"], history["energy_pos"], c=colors[name], label=f"{name}: positive pairs")
        ax.plot(history["step"], history["energy_neg"], c=colors[name], ls="--", label=f"{name}: negative pairs")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("mean energy F(y1, y2) (a.u.)")
    ax.set_title("energies during training")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    p = example_parser(__doc__)
    return run_example(run, p, argv)


def run(args) -> dict:
    t0 = time.time()

    n_train, steps = (1024, 300) if args.quick else (4096, 2000)
    pairs, _ = make_pairs(n_train, args.seed)
    test_pairs, test_points = make_pairs(1000, args.seed + 1)

    torch.manual_seed(args.seed)
    before = measure(JointEmbedding(), test_pairs, test_points)
    runs = {
        "energy loss": train(losses.energy_loss, pairs, steps, args.seed),
        "hinge": train(functools.partial(losses.hinge, margin=1.0), pairs, steps, args.seed),
    }
    after = {name: measure(e, test_pairs, test_points) for name, (e, _) in runs.items()}

    os.makedirs(args.out, exist_ok=True)
    fig_path = os.path.join(args.out, "collapse.png")
    make_figure(fig_path, runs, test_points)

    keys = list(before)
    print(f"{'':20s}{'untrained':>12s}{'energy loss':>14s}{'hinge':>12s}")
    for k in keys:
        print(f"{k:20s}{before[k]:12.3g}{after['energy loss'][k]:14.3g}{after['hinge'][k]:12.3g}")
    result = {
        "untrained": before,
        "energy_loss": after["energy loss"],
        "hinge": after["hinge"],
        "figure": fig_path,
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
