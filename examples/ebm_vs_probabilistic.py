"""EBM vs probabilistic model on the same data: a margin-trained energy, maximum likelihood, a Pyro mixture.

The lecture ("Energy-Based Models vs Probabilistic Models"; "Max likelihood is (generally) a (bad)
contrastive method") says that an energy trained with a margin loss is good for *inference* -- its minima
sit where the data are -- but is not a density: only the ordering of the energies is trained, not how
they compare with :math:`\\log Z`. Here three models of the 8 Gaussians of
:func:`pyro_ebm.datasets.eight_gaussians` are compared on the same train/test points:

(a) **margin** -- the energy architecture of ``examples/densities_2d.py`` (SiLU MLP + weak quadratic
    confinement) trained with :func:`pyro_ebm.losses.hinge` (margin 1) and noise negatives
    (:class:`pyro_ebm.negatives.Corruption`, sigma 0.5) through :func:`pyro_ebm.train.fit`;
(b) **max likelihood** -- the same architecture trained by maximum likelihood with persistent HMC
    negatives (:func:`pyro_ebm.ml.ml_fit`, exactly as in ``densities_2d.py``);
(c) **Pyro GMM** -- a normalized Pyro model, a mixture of 8 isotropic Gaussians with a Dirichlet prior on
    the weights, fitted by SVI with an ``AutoDelta`` guide (MAP) and the mixture likelihood in closed
    form (``MixtureSameFamily``); the means start from k-means (best of 5 k-means++ restarts).

Columns of the table:

* ``nll`` -- held-out negative log-likelihood (nats per point): for (a) and (b) with ``log Z`` from
  quadrature over :math:`[-4, 4]^2` (:func:`pyro_ebm.partition.log_partition`), for (c) exact;
* ``argmin_acc`` -- inference: from each of 1000 held-out points plus N(0, 0.3^2) noise,
  :func:`pyro_ebm.argmin_energy` (gradient descent on the energy; :math:`-\\log p` for the GMM) must land
  within 0.2 (one standard deviation) of the true centre of the point's cluster;
* ``near_mode`` -- sample quality: fraction of 1000 samples within 0.6 (three standard deviations) of a
  centre (0.989 for exact samples); samples of (a) and (b) by batched HMC
  (:func:`pyro_ebm.mcmc.sample`, 1000 chains from uniform noise, 300 adaptation steps, the last state),
  of (c) exactly;
* ``mmd`` -- squared maximum mean discrepancy (RBF kernel, bandwidth 0.3, unbiased) between those samples
  and 1000 exact samples of the true density (about 0 for a perfect sampler);
* ``mode_mass`` -- smallest and largest probability that the normalized density gives to one centre's
  Voronoi cell (0.125 each for the truth), by a Riemann sum on a 240 x 240 grid over :math:`[-4, 4]^2`;
* ``train_s`` -- wall-clock training time in seconds.

Run::

    python examples/ebm_vs_probabilistic.py            # full run, about 3 minutes on 2 CPU cores
    python examples/ebm_vs_probabilistic.py --quick    # smoke run
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
from pyro.infer import SVI, Trace_ELBO  # noqa: E402
from pyro.infer.autoguide import AutoDelta, init_to_value  # noqa: E402

from densities_2d import MLPEnergy, train_ml  # noqa: E402
from pyro_ebm import argmin_energy, as_energy, losses, mcmc  # noqa: E402
from pyro_ebm.datasets import eight_gaussians, eight_gaussians_log_prob  # noqa: E402
from pyro_ebm.negatives import Corruption  # noqa: E402
from pyro_ebm.partition import log_likelihood, log_partition  # noqa: E402
from pyro_ebm.train import fit  # noqa: E402
from pyro_ebm.cli import example_parser, run_example

QUAD_BOX = 4.0
STD = 0.2
CENTERS = 2.0 * torch.stack(
    [torch.cos(torch.arange(8) * 2 * math.pi / 8), torch.sin(torch.arange(8) * 2 * math.pi / 8)], -1
)


# ------------------------------------------------------------------------------------------------------
# the three models


def train_margin(data, steps, seed):
    torch.manual_seed(seed)
    energy = MLPEnergy()
    fit(energy, data, functools.partial(losses.hinge, margin=1.0), Corruption(sigma=0.5, seed=seed),
        steps=steps, batch_size=128, lr=3e-3, seed=seed, progress=False)
    return energy


def kmeans(data, k, iters, generator, restarts=5):
    """Lloyd's k-means from k-means++ seeds, best of ``restarts`` (initial means of the mixture)."""
    best, best_cost = None, math.inf
    for _ in range(restarts):
        centers = data[torch.randint(len(data), (1,), generator=generator)]
        while len(centers) < k:  # k-means++: next seed with probability proportional to squared distance
            d2 = torch.cdist(data, centers).min(-1).values.pow(2)
            centers = torch.cat([centers, data[torch.multinomial(d2, 1, generator=generator)]])
        for _ in range(iters):
            assign = torch.cdist(data, centers).argmin(-1)
            for j in range(k):
                members = data[assign == j]
                if len(members):
                    centers[j] = members.mean(0)
        cost = float(torch.cdist(data, centers).min(-1).values.pow(2).sum())
        if cost < best_cost:
            best, best_cost = centers, cost
    return best


class PyroGMM:
    """Mixture of ``K`` isotropic Gaussians as a Pyro model, MAP by SVI with ``AutoDelta``."""

    def __init__(self, k: int = 8):
        self.k = k

    def model(self, data, subsample: int = 512):
        K = self.k
        weights = pyro.sample("weights", dist.Dirichlet(torch.ones(K)))
        with pyro.plate("components", K):
            locs = pyro.sample("locs", dist.Normal(torch.zeros(2), 3.0).to_event(1))
            scales = pyro.sample("scales", dist.LogNormal(-1.0, 1.0))
        with pyro.plate("data", len(data), subsample_size=min(subsample, len(data))) as idx:
            pyro.sample("obs", self._mixture(weights, locs, scales), obs=data[idx])

    @staticmethod
    def _mixture(weights, locs, scales):
        comp = dist.Normal(locs, scales.unsqueeze(-1)).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(weights), comp)

    def fit(self, data, steps, seed):
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        init = kmeans(data, self.k, 10, torch.Generator().manual_seed(seed))
        self.guide = AutoDelta(self.model, init_loc_fn=init_to_value(values={"locs": init}))
        svi = SVI(self.model, self.guide, pyro.optim.Adam({"lr": 0.02}), Trace_ELBO())
        for _ in range(steps):
            svi.step(data)
        with torch.no_grad():
            m = self.guide.median()
        self.distribution = self._mixture(m["weights"], m["locs"], m["scales"])
        return self

    def log_prob(self, y):
        return self.distribution.log_prob(y)


# ------------------------------------------------------------------------------------------------------
# the measurements


def nearest_center(y):
    return CENTERS[torch.cdist(y, CENTERS).argmin(-1)]


def argmin_accuracy(energy, test, generator, eps=0.2, noise=0.3):
    clean = test[:1000]
    start = clean + noise * torch.randn(clean.shape, generator=generator)
    res = argmin_energy(energy, start.unsqueeze(0), steps=300, lr=0.05)
    found = res.y[0]
    return float(((found - nearest_center(clean)).norm(dim=-1) < eps).float().mean())


def mode_masses(log_density, lim=QUAD_BOX, n=240):
    """Probability of each centre's Voronoi cell under a (log) density, by a Riemann sum on a grid."""
    g = torch.linspace(-lim, lim, n)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    grid = torch.stack([xx, yy], -1).reshape(-1, 2)
    with torch.no_grad():
        w = torch.softmax(log_density(grid).double(), 0)
    cell = torch.cdist(grid, CENTERS).argmin(-1)
    return torch.zeros(8, dtype=torch.float64).index_add_(0, cell, w)


def near_mode(samples, radius=3 * STD):
    return float((torch.cdist(samples, CENTERS).min(-1).values < radius).float().mean())


def mmd2(a, b, bandwidth=0.3):
    """Unbiased squared MMD with an RBF kernel."""
    def k(x, y):
        return torch.exp(-torch.cdist(x.double(), y.double()).pow(2) / (2 * bandwidth**2))

    n, m = len(a), len(b)
    kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
    return float((kaa.sum() - kaa.diag().sum()) / (n * (n - 1)) + (kbb.sum() - kbb.diag().sum()) / (m * (m - 1))
                 - 2 * kab.mean())


def hmc_samples(energy, n, warmup, seed):
    g = torch.Generator().manual_seed(seed)
    init = (2 * torch.rand(n, 2, generator=g) - 1) * 3.0
    s = mcmc.sample(energy, init, warmup, 1, kernel="hmc", seed=seed, progress=False)
    return s.draws[:, -1].detach()


def ebm_nll(energy, test):
    with torch.no_grad():
        log_z = log_partition(energy, method="quadrature", low=[-QUAD_BOX] * 2, high=[QUAD_BOX] * 2,
                              num_points=128)
        return float(-log_likelihood(energy, test, log_z).mean()), float(log_z.value)


# ------------------------------------------------------------------------------------------------------


def make_figure(path, data, panels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lim = 3.0
    g = torch.linspace(-lim, lim, 150)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    grid = torch.stack([xx, yy], -1).reshape(-1, 2)
    fig, axes = plt.subplots(2, len(panels), figsize=(5.4 * len(panels), 10), squeeze=False, layout="constrained")
    for j, (title, log_density, samples) in enumerate(panels):
        with torch.no_grad():
            dens = log_density(grid).exp().reshape(150, 150)
        ax = axes[0, j]
        im = ax.imshow(dens.numpy(), origin="lower", extent=(-lim, lim, -lim, lim), cmap="viridis")
        fig.colorbar(im, ax=ax, label="density (per unit area)", shrink=0.8)
        ax.set_title(f"{title}\nnormalized density")
        ax = axes[1, j]
        first = j == 0  # one legend for the row
        ax.scatter(data[:1000, 0], data[:1000, 1], s=1, c="0.6", label="data" if first else None)
        s = samples[:1000]
        ax.scatter(s[:, 0], s[:, 1], s=2, c="tab:red", label="samples of the model" if first else None)
        ax.set_title(f"{title}\nsamples over data")
        for a in axes[:, j]:
            a.set_xlim(-lim, lim)
            a.set_ylim(-lim, lim)
            a.set_aspect("equal")
            a.set_xlabel("y[0]")
            a.set_ylabel("y[1]")
    fig.legend(loc="outside lower center", ncol=2, markerscale=4)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    p = example_parser(__doc__)
    return run_example(run, p, argv)


def run(args) -> dict:
    t_all = time.time()
    quick = args.quick
    n_train = 2000 if quick else 8000
    steps_margin, steps_ml, steps_svi = (600, 100, 200) if quick else (3000, 4000, 2000)
    n_eval, warmup = (400, 80) if quick else (1000, 300)
    data = eight_gaussians(n_train, seed=args.seed)
    test = eight_gaussians(2000, seed=args.seed + 1)
    truth = eight_gaussians(n_eval, seed=args.seed + 2)
    gen = torch.Generator().manual_seed(args.seed + 3)
    rows = {}

    t0 = time.time()
    margin = train_margin(data, steps_margin, args.seed)
    t_margin = time.time() - t0
    t0 = time.time()
    ml, _ = train_ml(data, steps=steps_ml, seed=args.seed, buffer_size=1000 if quick else 4000,
                     diagnose_every=steps_ml, probe_draws=40 if quick else 100)
    t_ml = time.time() - t0
    t0 = time.time()
    gmm = PyroGMM(8).fit(data, steps_svi, args.seed)
    t_gmm = time.time() - t0

    panels = []
    for name, energy, seconds in (("margin (hinge + noise)", margin, t_margin), ("max likelihood (HMC)", ml, t_ml)):
        nll, log_z = ebm_nll(energy, test)
        acc = argmin_accuracy(energy, test[:n_eval], torch.Generator().manual_seed(args.seed + 4))
        samples = hmc_samples(energy, n_eval, warmup, args.seed + 5)
        masses = mode_masses(lambda y, e=energy: -e(y))
        rows[name] = {"nll": nll, "log_z": log_z, "argmin_acc": acc, "near_mode": near_mode(samples),
                      "mmd": mmd2(samples, truth), "mode_mass_min": float(masses.min()),
                      "mode_mass_max": float(masses.max()), "train_s": round(seconds, 1)}
        panels.append((name, (lambda e, lz: (lambda y: -e(y) - lz))(energy, log_z), samples))

    gmm_energy = as_energy(lambda y: -gmm.log_prob(y), event_shape=(2,))
    with torch.no_grad():
        nll = float(-gmm.log_prob(test).mean())
        samples = gmm.distribution.sample((n_eval,))
    acc = argmin_accuracy(gmm_energy, test[:n_eval], torch.Generator().manual_seed(args.seed + 4))
    masses = mode_masses(gmm.log_prob)
    rows["Pyro GMM (SVI)"] = {"nll": nll, "log_z": 0.0, "argmin_acc": acc, "near_mode": near_mode(samples),
                              "mmd": mmd2(samples, truth), "mode_mass_min": float(masses.min()),
                              "mode_mass_max": float(masses.max()), "train_s": round(t_gmm, 1)}
    panels.append(("Pyro GMM (SVI, AutoDelta)", gmm.log_prob, samples))
    true_nll = float(-eight_gaussians_log_prob(test).mean())
    exact = near_mode(truth)

    os.makedirs(args.out, exist_ok=True)
    fig_path = os.path.join(args.out, "ebm_vs_probabilistic.png")
    make_figure(fig_path, data, panels)

    print(f"{'model':26s}{'nll':>8s}{'argmin_acc':>12s}{'near_mode':>11s}{'mmd':>9s}{'mode_mass':>15s}"
          f"{'train_s':>9s}")
    for name, r in rows.items():
        print(f"{name:26s}{r['nll']:8.3f}{r['argmin_acc']:12.3f}{r['near_mode']:11.3f}{r['mmd']:9.4f}"
              f"{r['mode_mass_min']:8.3f}-{r['mode_mass_max']:.3f}{r['train_s']:9.1f}")
    print(f"{'true density':26s}{true_nll:8.3f}{'':12s}{exact:11.3f}{'':9s}{0.125:8.3f}-{0.125:.3f}")
    result = {"rows": rows, "true_nll": true_nll, "true_near_mode": exact, "figure": fig_path,
              "seconds": round(time.time() - t_all, 1)}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
