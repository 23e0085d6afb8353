"""The world is stochastic: a regressor predicts the blurry average, an energy finds every answer.

The lecture's first slide: for one input ``x`` there are several plausible outputs ``y``. Here
``y = +sqrt(x)`` or ``y = -sqrt(x)`` with equal probability (plus a little noise,
:func:`pyro_ebm.datasets.multimodal_regression`).

* A small MLP trained with the mean-squared error predicts the conditional *mean*, which is ``~0`` for
  every ``x``: a blurry answer that is on neither branch.
* A conditional energy ``F(y, x)`` (an MLP on ``cat([y, x])``) is trained with the pairwise hinge loss
  against noise negatives (``y_hat = y + sigma * eps``, plus uniform draws over the output range) through
  :func:`pyro_ebm.train.fit`. Inference is ``argmin_y F(y, x)`` by gradient descent from several starting
  points (:func:`pyro_ebm.argmin_energy`); :meth:`~pyro_ebm.ArgminResult.distinct` groups the restarts
  into distinct minima, and for most ``x`` there are two, one on each branch.

Printed numbers (on held-out ``x``):

* ``mse_within_eps`` / ``ebm_within_eps``: fraction of predictions with ``| |y_pred| - sqrt(x) | < eps``
  (the EBM's prediction is its lowest-energy minimum);
* ``ebm_both_branches``: fraction of ``x`` for which two *distinct* minima are found, one within ``eps``
  of ``+sqrt(x)`` and one within ``eps`` of ``-sqrt(x)``.

Run::

    python examples/stochastic_world.py            # full run, figure in outputs/
    python examples/stochastic_world.py --quick    # smoke run
"""

from __future__ import annotations

import functools
import json
import os
import time

import torch
from torch import nn

from pyro_ebm import Energy, argmin_energy, losses
from pyro_ebm.datasets import multimodal_regression
from pyro_ebm.negatives import Corruption
from pyro_ebm.train import fit
from pyro_ebm.cli import example_parser, run_example

Y_RANGE = 1.5  # outputs live in [-1, 1]; negatives and restarts cover a little more


def mlp(n_in: int, width: int, n_out: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, n_out)
    )


class ConditionalEnergy(Energy):
    """``F(y, x) = MLP(cat([y, x]))`` with ``y`` of event shape ``(1,)`` and ``x`` of shape ``[*batch, 1]``.

    ``x`` broadcasts against ``y``'s batch dimensions, so ``argmin_energy`` can put its restarts in front
    (``y`` ``[R, B, 1]`` with ``x`` ``[B, 1]``).
    """

    def __init__(self, width: int = 64):
        super().__init__(event_shape=(1,))
        self.net = mlp(2, width)

    def forward(self, y, x=None):
        batch = torch.broadcast_shapes(y.shape[:-1], x.shape[:-1])
        yx = torch.cat([y.expand(batch + (1,)), x.expand(batch + (1,))], dim=-1)
        return self.net(yx).squeeze(-1)


def noise_and_uniform(sigma: float):
    """Corruption for the negatives: half ``y + sigma * eps``, half uniform on ``[-Y_RANGE, Y_RANGE]``."""

    def corrupt(y, generator):
        near = y + sigma * torch.randn(y.shape, generator=generator, dtype=y.dtype)
        far = (2 * torch.rand(y.shape, generator=generator, dtype=y.dtype) - 1) * Y_RANGE
        coin = torch.rand(y.shape[:1] + (1,) * (y.dim() - 1), generator=generator) < 0.5
        return torch.where(coin, near, far)

    return corrupt


def train_mse(x, y, steps: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = mlp(1, 64)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (128,), generator=g)
        loss = ((net(x[idx]) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def branch_error(y_pred: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Distance of a prediction to the nearest true branch, ``| |y| - sqrt(x) |``."""
    return (y_pred.abs() - x.sqrt()).abs()


def evaluate_ebm(energy, x_test, restarts: int, steps: int, eps: float):
    """Argmin from ``restarts`` evenly spread starts; returns (best [B], minima per x, both-found [B])."""
    starts = torch.linspace(-Y_RANGE, Y_RANGE, restarts).reshape(restarts, 1, 1).expand(-1, x_test.shape[0], 1)
    res = argmin_energy(energy, starts.contiguous(), x_test, steps=steps, lr=0.05)
    minima = res.distinct(tol=0.05)  # one Minima per test x
    both = []
    for m, r in zip(minima, x_test.squeeze(-1).sqrt().tolist()):
        v = m.values.squeeze(-1)
        up = set(((v - r).abs() < eps).nonzero().flatten().tolist())
        down = set(((v + r).abs() < eps).nonzero().flatten().tolist())
        # two *different* minima, one on each branch (for tiny x one minimum near 0 does not count)
        both.append(any(i != j for i in up for j in down))
    return res.best.squeeze(-1), minima, torch.tensor(both)


def make_figure(path, x, y, x_grid, mse_pred, energy, x_test, minima):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 5.6), layout="constrained")
    ax = axes[0]
    ax.scatter(x[:400, 0], y[:400, 0], s=4, c="0.6", label="data")
    ax.plot(x_grid, mse_pred, c="tab:blue", lw=2.5, label="MSE regressor (the average)")
    first = True
    for xi, m in zip(x_test[:, 0].tolist(), minima):
        v = m.values.squeeze(-1)
        ax.scatter([xi] * len(v), v, s=10, c="tab:red", label="EBM minima of F(y, x)" if first else None)
        first = False
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("predictions of y given x")

    ax = axes[1]
    xs = torch.linspace(0, 1, 120)
    ys = torch.linspace(-Y_RANGE, Y_RANGE, 120)
    Y, X = torch.meshgrid(ys, xs, indexing="ij")
    with torch.no_grad():
        E = energy(Y.reshape(-1, 1), X.reshape(-1, 1)).reshape(Y.shape)
    # per column shift, so that each conditional landscape F(., x) is visible
    # on a log scale, so that both the wells and the walls are visible
    E = torch.log1p(E - E.min(0, keepdim=True).values)
    cs = ax.contourf(X, Y, E, levels=20, cmap="viridis_r")
    fig.colorbar(cs, ax=ax, label="log(1 + F(y, x) - min_y F(y, x))")
    ax.plot(xs, xs.sqrt(), "k--", lw=1)
    ax.plot(xs, -xs.sqrt(), "k--", lw=1, label="true branches y = +-sqrt(x)")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("energy landscape F(y, x)")
    fig.legend(loc="outside lower center", ncol=4)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    p = example_parser(__doc__)
    p.add_argument("--eps", type=float, default=0.1)
    return run_example(run, p, argv)


def run(args) -> dict:
    t0 = time.time()

    n_train, ebm_steps, mse_steps, n_test = (1000, 400, 200, 40) if args.quick else (4000, 3000, 2000, 200)
    x, y = multimodal_regression(n_train, noise=0.05, seed=args.seed)
    x_test, y_test = multimodal_regression(n_test, noise=0.05, seed=args.seed + 1)

    # 1. the regressor: mean-squared error -> conditional mean
    reg = train_mse(x, y, mse_steps, args.seed)
    with torch.no_grad():
        mse_pred = reg(x_test).squeeze(-1)
    mse_within = float((branch_error(mse_pred, x_test.squeeze(-1)) < args.eps).float().mean())

    # 2. the energy: hinge against noise negatives
    torch.manual_seed(args.seed)
    energy = ConditionalEnergy()
    negatives = Corruption(n_neg=8, corrupt=noise_and_uniform(sigma=0.3), seed=args.seed)
    history = fit(
        energy, y, functools.partial(losses.hinge, margin=1.0), negatives, x=x,
        steps=ebm_steps, batch_size=128, lr=2e-3, seed=args.seed, progress=False,
    )
    best, minima, both = evaluate_ebm(energy, x_test, restarts=8, steps=150 if args.quick else 500, eps=args.eps)
    ebm_within = float((branch_error(best, x_test.squeeze(-1)) < args.eps).float().mean())

    os.makedirs(args.out, exist_ok=True)
    fig_path = os.path.join(args.out, "stochastic_world.png")
    x_grid = torch.linspace(0, 1, 100).reshape(-1, 1)
    with torch.no_grad():
        grid_pred = reg(x_grid).squeeze(-1)
    make_figure(fig_path, x, y, x_grid.squeeze(-1), grid_pred, energy, x_test, minima)

    result = {
        "eps": args.eps,
        "mse_within_eps": mse_within,
        "mse_mean_abs_prediction": float(mse_pred.abs().mean()),
        "ebm_within_eps": ebm_within,
        "ebm_both_branches": float(both.float().mean()),
        "ebm_mean_minima_per_x": sum(len(m.energies) for m in minima) / len(minima),
        "ebm_final_gap": history.last["gap"],
        "figure": fig_path,
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
