"""Regularized and architectural EBMs on two moons: each bounds the volume of low energy (and collapse
without it).

The lecture's A1/A2 methods train by pushing down on the energy of the data alone; what stops the energy
from becoming flat is the architecture (a latent of bounded dimension, a one-hot latent, a normalized
density) or a regularizer on the latent (sparsity). On the two-moons data (2-D), each model is fitted and
its zero-temperature (or ``beta = 1``) free energy is drawn; the **volume diagnostic**
(:func:`pyro_ebm.models.low_energy_volume`) is the fraction of the box ``[-3, 3]^2`` whose energy is below
the data's median energy.

* ``PCA(1)``: a line (A1); ``PCA(2)``: the latent has the data's dimension, every point is reconstructed,
  the energy is flat at zero -- collapse.
* ``KMeans(12)``: low energy near 12 prototypes (A1); ``GaussianMixture`` (12 components, fitted by
  scikit-learn): ``-log p(y)`` (A1, normalized).
* ``SparseCoding`` with 4 atoms in 2-D (an overcomplete dictionary): with ``lam = 0`` every point is
  reconstructed (collapse); with ``lam = 0.5`` the L1 term makes far points expensive (A2).

Run::

    python examples/regularized_volume.py            # full run, figure in outputs/
    python examples/regularized_volume.py --quick    # smoke run
"""

from __future__ import annotations

import json
import math
import os
import time

import torch

from pyro_ebm.cli import example_parser, run_example
from pyro_ebm.datasets import two_moons
from pyro_ebm.models import PCA, GaussianMixture, KMeans, SparseCoding, low_energy_volume

INF = float("inf")


def build(data, seed):
    from sklearn.mixture import GaussianMixture as SkGMM

    atoms = torch.tensor([[1.0, 0.0], [0.0, 1.0], [math.sqrt(0.5), math.sqrt(0.5)], [math.sqrt(0.5), -math.sqrt(0.5)]],
                         dtype=data.dtype)
    gmm = GaussianMixture.from_sklearn(SkGMM(12, random_state=seed).fit(data.numpy()))
    return {
        "PCA(1)": PCA(1).fit(data),
        "PCA(2), collapsed": PCA(2).fit(data),
        "KMeans(12)": KMeans(12, seed=seed).fit(data),
        "GMM(12), beta = 1": gmm,
        "sparse coding, lam = 0": SparseCoding(atoms, lam=0.0),
        "sparse coding, lam = 0.5": SparseCoding(atoms, lam=0.5),
    }


def energy_fn(model):
    beta = 1.0 if isinstance(model, GaussianMixture) else INF
    if isinstance(model, SparseCoding):
        return lambda y: model.free_energy(y, beta=INF, steps=300).detach()
    return lambda y: model.free_energy(y, beta=beta).detach()


def main(argv=None) -> dict:
    return run_example(run, example_parser(__doc__), argv)


def run(args) -> dict:
    t0 = time.time()
    data = two_moons(400 if args.quick else 1000, noise=0.05, seed=args.seed).double()
    models = build(data, args.seed)
    n_points = 2000 if args.quick else 20000
    volumes = {}
    with torch.no_grad():
        for name, model in models.items():
            volumes[name] = low_energy_volume(energy_fn(model), data, -3.0, 3.0, num_points=n_points, seed=args.seed)
    for name, v in volumes.items():
        print(f"  {name:26s} low-energy volume of [-3, 3]^2: {v:.3f}")
    os.makedirs(args.out, exist_ok=True)
    fig_path = os.path.join(args.out, "regularized_volume.png")
    make_figure(fig_path, models, data, volumes, 40 if args.quick else 100)
    result = {"volumes": volumes, "figure": fig_path, "seconds": round(time.time() - t0, 1)}
    print(json.dumps(result, indent=2))
    return result


def make_figure(path, models, data, volumes, n):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = torch.linspace(-3, 3, n, dtype=data.dtype)
    grid = torch.cartesian_prod(g, g)
    fig, axes = plt.subplots(2, 3, figsize=(17, 11), layout="constrained")
    for ax, (name, model) in zip(axes.flat, models.items()):
        with torch.no_grad():
            f = energy_fn(model)(grid)
            thr = torch.quantile(energy_fn(model)(data), 0.5)
        f = (f.reshape(n, n) / 1e-6).round() * 1e-6  # rounding noise of a flat energy is not structure
        thr = (thr / 1e-6).round() * 1e-6
        shown = torch.log1p(f - f.min())
        flat = not bool((shown > 0).any())  # one band, not a colorbar of rounding noise
        cs = ax.contourf(g, g, shown.T, levels=[0.0, 1.0] if flat else 30, cmap="viridis")
        fig.colorbar(cs, ax=ax, shrink=0.8, label="log(1 + F - min F)")
        if bool((f > thr).any()):
            ax.contour(g, g, (f <= thr).double().T, levels=[0.5], colors="r", linewidths=1)
        ax.plot(data[:, 0], data[:, 1], ".", color="purple", ms=1.5)
        ax.set_title(f"{name}\nlow-energy volume {volumes[name]:.3f}")
        ax.set(xlabel="y[0]", ylabel="y[1]", aspect="equal")
    handles = [plt.Line2D([], [], ls="", marker=".", color="purple", label="data"),
               plt.Line2D([], [], color="r", lw=1, label="F = median energy of the data (low energy inside)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=2)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
