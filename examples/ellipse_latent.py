"""The latent-variable generative EBM on the ellipse toy: train by pushing down, infer by minimizing over z.

The lecture's architecture slide, :math:`F(x, y) = \\min_z C(\\mathrm{Dec}(\\mathrm{Pred}(x), z), y) + R(z)`,
on its toy problem: ``y`` in 2-D lies on an ellipse whose radii depend on ``x`` (``a(x) = 1 + x``,
``b(x) = 1.5 - x``, ``x`` uniform in [0, 1]) and the latent ``z`` is the angle. The predictor (a small
network) maps ``x`` to two radii, the decoder turns radii and angle into a point, the cost is the squared
distance. The angle is one number, so for each ``x`` only a curve has low energy: the loss is the free
energy of the data alone (no contrastive term) and still the energy takes the right shape.

Printed and returned:

* the learned radii against the true ones at a few ``x``;
* inference of every compatible ``y``: gradient descent on ``y -> F(x, y)`` from a grid of starts, the
  fraction of end points on the true ellipse;
* the **volume diagnostic** (:func:`pyro_ebm.models.low_energy_volume`): the fraction of the box
  ``[-3, 3]^2`` whose energy is below the data's median, for this model and for a collapsed one whose
  latent is 2-D (``y_hat = z``: every ``y`` can be reconstructed, the energy is flat at zero);
* how ``beta`` smooths the free energy :math:`F_\\beta = -\\frac1\\beta \\log\\int e^{-\\beta E(x, y, z)} dz`
  along a ray through the ellipse (the minimum stays at the ellipse, the well gets wider and shallower).

Run::

    python examples/ellipse_latent.py            # full run, figure in outputs/
    python examples/ellipse_latent.py --quick    # smoke run
"""

from __future__ import annotations

import json
import math
import os
import time

import torch

from pyro_ebm import argmin_energy
from pyro_ebm.cli import example_parser, run_example
from pyro_ebm.models import LatentGenerativeEBM, low_energy_volume


def radii(x):
    return torch.cat([1.0 + x, 1.5 - x], -1)


def ellipse_data(n, gen, noise=0.02):
    x = torch.rand(n, 1, generator=gen)
    theta = 2 * math.pi * torch.rand(n, 1, generator=gen)
    y = radii(x) * torch.cat([torch.cos(theta), torch.sin(theta)], -1) + noise * torch.randn(n, 2, generator=gen)
    return x, y


def decoder(h, z):
    return h * torch.cat([torch.cos(z), torch.sin(z)], -1)


def distance_to_ellipse(y, x, n=720):
    t = torch.linspace(0, 2 * math.pi, n + 1)[:-1].unsqueeze(-1)
    pts = decoder(radii(x).unsqueeze(-2), t)  # [*batch, n, 2]
    return ((pts - y.unsqueeze(-2)) ** 2).sum(-1).min(-1).values.sqrt()


def make_model(n_grid):
    predictor = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2),
                                    torch.nn.Softplus())
    grid = torch.linspace(0, 2 * math.pi, n_grid + 1)[:-1].unsqueeze(-1)
    return LatentGenerativeEBM(decoder, predictor=predictor, event_shape=(2,), latent_shape=(1,), z_values=grid,
                               z_measure=2 * math.pi / n_grid)


def train(model, x, y, steps, gen):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=gen)
        loss = model.free_energy(y[idx], x[idx], beta=float("inf")).mean()  # push down on the data only
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def main(argv=None) -> dict:
    return run_example(run, example_parser(__doc__), argv)


def run(args) -> dict:
    t0 = time.time()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    steps, n_grid = (250, 64) if args.quick else (1500, 128)
    x, y = ellipse_data(2000, gen)
    model = make_model(n_grid)
    final_loss = train(model, x, y, steps, gen)
    xs = torch.tensor([[0.1], [0.5], [0.9]])
    with torch.no_grad():
        learned = model.predict(xs)
    radius_error = float((learned - radii(xs)).abs().max())

    # inference of every compatible y: descend F(x, .) from a grid of starts
    starts = torch.cartesian_prod(torch.linspace(-2.5, 2.5, 9), torch.linspace(-2.5, 2.5, 9)).unsqueeze(1)
    on_ellipse = {}
    ends = {}
    for xv in (0.1, 0.5, 0.9):
        xt = torch.tensor([[xv]])
        res = argmin_energy(model.energy_of_y(xt), starts, event_shape=(2,), steps=150 if args.quick else 300,
                            lr=0.05)
        end = res.y.reshape(-1, 2)
        ends[xv] = end
        on_ellipse[xv] = float((distance_to_ellipse(end, xt.expand(len(end), 1)) < 0.05).float().mean())

    # volume diagnostic: this model against a collapsed one whose 2-D latent reconstructs anything
    x_mid = torch.full((400, 1), 0.5)
    y_mid = decoder(radii(x_mid), 2 * math.pi * torch.rand(400, 1, generator=gen))
    zz = torch.cartesian_prod(torch.linspace(-3, 3, 31), torch.linspace(-3, 3, 31))
    collapsed = LatentGenerativeEBM(lambda h, z: z, event_shape=(2,), latent_shape=(2,), z_values=zz)
    with torch.no_grad():
        vol = low_energy_volume(model.energy_of_y(x_mid[:1]), y_mid, -3.0, 3.0, num_points=4000, seed=args.seed)
        vol_collapsed = low_energy_volume(collapsed.energy_of_y(), y_mid, -3.0, 3.0, num_points=4000,
                                          seed=args.seed)

    # beta smooths the free energy: a ray through the ellipse at angle 0 for x = 0.5 (true radius 1.5)
    r = torch.linspace(0.0, 3.0, 121)
    ray = torch.stack([r, torch.zeros_like(r)], -1)
    xr = torch.full((len(r), 1), 0.5)
    curves = {}
    with torch.no_grad():
        for beta in (1.0, 10.0, 100.0, float("inf")):
            curves[str(beta)] = model.free_energy(ray, xr, beta=beta)
    argmins = {b: float(r[c.argmin()]) for b, c in curves.items()}
    depth = {b: float(c[0] - c.min()) for b, c in curves.items()}

    print(f"trained {steps} steps on F(x, y) of the data only: final loss {final_loss:.4f}")
    for xv, lr_, tr in zip(xs.squeeze(-1).tolist(), learned.tolist(), radii(xs).tolist()):
        print(f"  x = {xv:.1f}: learned radii ({lr_[0]:.3f}, {lr_[1]:.3f}), true ({tr[0]:.3f}, {tr[1]:.3f})")
    print("inference of y by minimizing F(x, y) from 81 starts, fraction ending on the true ellipse: "
          + ", ".join(f"x={k}: {v:.2f}" for k, v in on_ellipse.items()))
    print(f"low-energy volume of the box [-3, 3]^2 at x = 0.5: 1-D angle latent {vol:.3f}, "
          f"collapsed 2-D latent {vol_collapsed:.3f}")
    print("free energy along the ray (x = 0.5, true radius 1.5): argmin "
          + ", ".join(f"beta={b}: {v:.3f}" for b, v in argmins.items())
          + "; barrier F(centre) - min F: " + ", ".join(f"beta={b}: {v:.3f}" for b, v in depth.items()))

    os.makedirs(args.out, exist_ok=True)
    fig_path = os.path.join(args.out, "ellipse_latent.png")
    make_figure(fig_path, model, x, y, ends, r, curves)
    result = {"final_loss": final_loss, "radius_error": radius_error, "on_ellipse": on_ellipse,
              "volume": vol, "volume_collapsed": vol_collapsed, "ray_argmin": argmins, "ray_barrier": depth,
              "figure": fig_path, "seconds": round(time.time() - t0, 1)}
    print(json.dumps(result, indent=2))
    return result


def make_figure(path, model, x, y, ends, r, curves):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 11), layout="constrained")
    axes = axes.ravel()
    g = torch.linspace(-2.6, 2.6, 80)
    grid = torch.cartesian_prod(g, g)
    t = torch.linspace(0, 2 * math.pi, 200).unsqueeze(-1)
    for ax, xv in zip(axes[:3], (0.1, 0.5, 0.9)):
        xt = torch.tensor([[xv]])
        with torch.no_grad():
            f = model.free_energy(grid, xt.expand(len(grid), 1), beta=float("inf")).reshape(80, 80)
            curve = model.generate(t, xt)
        cs = ax.contourf(g, g, f.sqrt().T, levels=30, cmap="viridis")
        fig.colorbar(cs, ax=ax, label="sqrt F(x, y) (a.u.)", shrink=0.85)
        near = (x.squeeze(-1) - xv).abs() < 0.03
        ax.plot(y[near, 0], y[near, 1], ".", color="purple", ms=3, label="data with x within 0.03")
        ax.plot(curve[:, 0], curve[:, 1], "w-", lw=1, label="Dec(Pred(x), z), all z")
        ax.plot(ends[xv][:, 0], ends[xv][:, 1], "r.", ms=4, label="argmin_y F(x, y)")
        ax.set_title(f"sqrt F(x = {xv}, y), beta = inf")
        ax.set(xlabel="y[0]", ylabel="y[1]", aspect="equal")
    for b, c in curves.items():
        axes[3].plot(r, c, label=f"beta = {b}")
    axes[3].axvline(1.5, color="k", ls=":", lw=1, label="true radius a(0.5) = 1.5")
    axes[3].set_xlabel("r, along the ray y = (r, 0) at x = 0.5")
    axes[3].set_ylabel("free energy F_beta(x, y) (a.u.)")
    axes[3].set_title("beta smooths the free energy")
    handles = axes[0].get_legend_handles_labels()[0] + axes[3].get_legend_handles_labels()[0]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, markerscale=2, facecolor="0.85")
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
