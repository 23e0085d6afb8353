"""Four 2-D densities learned by maximum likelihood with persistent HMC negatives, with sampler diagnostics.

The data sets are those of :mod:`pyro_ebm.datasets`: 8 Gaussians, two moons, concentric rings and a
checkerboard. For each, an energy :math:`F(y)` -- an MLP with two hidden layers of 128 SiLU units plus a
weak quadratic confinement :math:`0.01\\,\\lVert y\\rVert^2` (so that :math:`e^{-F}` is integrable even
where no data and no negatives ever were) -- is trained through :func:`pyro_ebm.ml.ml_fit`, which is
:func:`pyro_ebm.train.fit` with

* the loss :func:`pyro_ebm.losses.ml_sampled`, :math:`F(y) - \\overline{F(\\hat y)}` (its gradient is the
  negative log-likelihood gradient when :math:`\\hat y \\sim e^{-F}`);
* negatives from *persistent HMC chains* (:class:`pyro_ebm.negatives.PersistentNegatives` with
  ``kernel="hmc"``: a replay buffer of 4000 chains, 4 Metropolis-adjusted HMC transitions of 5 leapfrog
  steps of size 0.1 per training step, each drawn chain restarted from uniform noise on the box with
  probability 0.05);
* :class:`pyro_ebm.train.EnergyL2` (weight 0.1) against a drift of the energies' level;
* Adam with a cosine learning-rate schedule from 3e-3 down to 1.5e-4 (a callback steps the scheduler);
* a :class:`pyro_ebm.ml.SamplerDiagnostics` callback that every ``steps / 5`` steps runs 8 chains of the
  same HMC transition from buffer states for 100 draws (one per 4 transitions, as a training step does)
  and records R-hat, bulk ESS, acceptance, divergences and the negatives-minus-data energy gap.

The held-out negative log-likelihood (NLL, nats per point, lower is better) uses ``log Z`` from
Gauss-Legendre quadrature over :math:`[-4, 4]^2` (:func:`pyro_ebm.partition.log_partition` with
``method="quadrature"``). It is printed next to the NLL of the true density for the 8 Gaussians
(:func:`pyro_ebm.datasets.eight_gaussians_log_prob`) and, for every data set, next to the NLL of a
Gaussian kernel density estimate fitted to the same training points (bandwidth chosen on a validation
split) -- a strong non-parametric reference in two dimensions.

Run::

    python examples/densities_2d.py                  # full run, about 4 minutes on 2 CPU cores
    python examples/densities_2d.py --quick          # smoke run
    python examples/densities_2d.py --datasets eight_gaussians
"""

from __future__ import annotations

import math
import os
import time

import torch
from torch import nn

from pyro_ebm import Energy, datasets
from pyro_ebm.ml import ml_fit
from pyro_ebm.partition import log_likelihood, log_partition
from pyro_ebm.train import EnergyL2
from pyro_ebm.cli import example_parser, run_example

DATASETS = ("eight_gaussians", "two_moons", "rings", "checkerboard")
QUAD_BOX = 4.0  # log Z by quadrature over [-QUAD_BOX, QUAD_BOX]^2
NOISE_BOX = 3.0  # restarts of the persistent chains: uniform on [-NOISE_BOX, NOISE_BOX]^2


class MLPEnergy(Energy):
    """``F(y) = MLP(y) + confinement * |y|^2`` (SiLU MLP, two hidden layers)."""

    def __init__(self, width: int = 128, confinement: float = 0.01):
        super().__init__(event_shape=(2,))
        self.net = nn.Sequential(
            nn.Linear(2, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 1)
        )
        self.confinement = confinement

    def forward(self, y, x=None):
        return self.net(y).squeeze(-1) + self.confinement * (y**2).sum(-1)


def sample_data(name: str, n: int, seed: int) -> torch.Tensor:
    return getattr(datasets, name)(n, seed=seed)


def uniform_noise(n: int, generator: torch.Generator) -> torch.Tensor:
    return (2 * torch.rand(n, 2, generator=generator) - 1) * NOISE_BOX


@torch.no_grad()
def heldout_nll(energy, test: torch.Tensor) -> float:
    log_z = log_partition(energy, method="quadrature", low=[-QUAD_BOX] * 2, high=[QUAD_BOX] * 2, num_points=128)
    return float(-log_likelihood(energy, test, log_z).mean())


def kde_log_prob(train: torch.Tensor, y: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Log density of an isotropic Gaussian KDE on ``train`` at ``y`` (chunked)."""
    out = []
    for chunk in y.split(500):
        d2 = torch.cdist(chunk.double(), train.double()).pow(2)
        out.append(torch.logsumexp(-0.5 * d2 / bandwidth**2, -1))
    log_norm = math.log(train.shape[0]) + math.log(2 * math.pi * bandwidth**2)
    return torch.cat(out) - log_norm


def kde_nll(train: torch.Tensor, test: torch.Tensor) -> dict:
    """NLL of a Gaussian KDE whose bandwidth is chosen on a validation split of ``train``."""
    n_val = train.shape[0] // 5
    fit_part, val = train[n_val:], train[:n_val]
    grid = [0.02, 0.03, 0.05, 0.07, 0.1, 0.14, 0.2, 0.3]
    scores = [float(kde_log_prob(fit_part, val, h).mean()) for h in grid]
    best = grid[max(range(len(grid)), key=lambda i: scores[i])]
    return {"kde_nll": float(-kde_log_prob(train, test, best).mean()), "kde_bandwidth": best}


def train_ml(data: torch.Tensor, *, steps: int, seed: int, lr: float = 3e-3, buffer_size: int = 4000,
             chain_steps: int = 4, step_size: float = 0.1, diagnose_every=None, width: int = 128,
             probe_draws: int = 100):
    """Maximum likelihood with persistent HMC negatives through :func:`pyro_ebm.ml.ml_fit`.

    Returns ``(energy, run)`` where ``run`` is the :class:`pyro_ebm.ml.MLRun`.
    """
    torch.manual_seed(seed)
    energy = MLPEnergy(width)
    optimizer = torch.optim.Adam(energy.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=0.05 * lr)

    def step_schedule(step, history):
        schedule.step()
        return False

    every = diagnose_every or max(steps // 5, 1)
    # check=("energy",): the coordinates' R-hat is recorded but does not warn, since on a multimodal
    # target each chain stays in its mode (see docs/ml.rst)
    run = ml_fit(
        energy, data, sampler="persistent",
        # the classic persistent recipe (fixed step, restarts from noise), without ml_fit's adapted step
        # size and jumps between modes: docs/training_truth.rst measures those defaults
        sampler_options=dict(buffer_size=buffer_size, steps=chain_steps, step_size=step_size, n_leapfrog=5,
                             reinit_prob=0.05, noise=uniform_noise, target_accept=None, jump=None),
        diagnose_every=every,
        diagnostics_options=dict(num_chains=8, num_draws=probe_draws, check=("energy",)),
        steps=steps, batch_size=128, optimizer=optimizer, regularizers=[EnergyL2(0.1)],
        callbacks=[step_schedule], seed=seed, progress=False,
    )
    return energy, run


def make_figure(path, results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(2, len(names), figsize=(5.2 * len(names), 9.6), squeeze=False, layout="constrained")
    lim = 3.0
    g = torch.linspace(-lim, lim, 100)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    grid = torch.stack([xx, yy], -1).reshape(-1, 2)
    for j, name in enumerate(names):
        r = results[name]
        ax = axes[0, j]
        d = r["_data"][:1000]
        ax.scatter(d[:, 0], d[:, 1], s=0.5, c="k")
        ax.set_title(f"{name}: data")
        ax = axes[1, j]
        with torch.no_grad():
            dens = torch.exp(-r["_energy"](grid) - r["_log_z"]).reshape(100, 100)
        im = ax.imshow(dens.numpy(), origin="lower", extent=(-lim, lim, -lim, lim), cmap="viridis",
                       interpolation="bilinear")
        fig.colorbar(im, ax=ax, label="density (per unit area)", shrink=0.8)
        ax.set_title(f"{name}: EBM density, NLL {r['nll']:.2f} nats")
        for a in axes[:, j]:
            a.set_xlim(-lim, lim)
            a.set_ylim(-lim, lim)
            a.set_aspect("equal")
            a.set_xlabel("y[0]")
            a.set_ylabel("y[1]")
    fig.savefig(path, dpi=100, pil_kwargs={"optimize": True})
    plt.close(fig)


def main(argv=None) -> dict:
    p = example_parser(__doc__)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--steps", type=int, default=None,
                   help="training steps per data set (default 4000 for 8 Gaussians, 2500 otherwise; quick 60)")
    p.add_argument("--step-size", type=float, default=0.1, help="leapfrog step size of the persistent HMC chains")
    return run_example(run, p, argv)


def run(args) -> dict:
    t_all = time.time()
    n_train, n_test = (1000, 1000) if args.quick else (8000, 2000)
    results = {}
    for k, name in enumerate(args.datasets):
        t0 = time.time()
        steps = args.steps or (60 if args.quick else (4000 if name == "eight_gaussians" else 2500))
        data = sample_data(name, n_train, args.seed)
        test = sample_data(name, n_test, args.seed + 1)
        energy, ml = train_ml(data, steps=steps, seed=args.seed + 10 * k,
                              buffer_size=1000 if args.quick else 4000, step_size=args.step_size,
                              diagnose_every=steps // 2 if args.quick else None,
                              probe_draws=40 if args.quick else 100)
        train_seconds = time.time() - t0
        with torch.no_grad():
            log_z = log_partition(energy, method="quadrature", low=[-QUAD_BOX] * 2, high=[QUAD_BOX] * 2,
                                  num_points=128)
        r = {"steps": steps, "nll": heldout_nll(energy, test), "train_seconds": round(train_seconds, 1)}
        if name == "eight_gaussians":
            r["true_nll"] = float(-datasets.eight_gaussians_log_prob(test).mean())
        r.update(kde_nll(data, test))
        r["diagnostics"] = [
            {k2: (round(v, 4) if isinstance(v, float) else v) for k2, v in rep.items()
             if k2 in ("step", "diag_rhat", "diag_rhat_energy", "diag_ess_bulk", "diag_ess_bulk_energy",
                       "diag_acceptance", "diag_divergences", "diag_energy_gap")}
            for rep in ml.diagnostics.reports
        ]
        r["_data"], r["_energy"], r["_log_z"] = data, energy, float(log_z.value)
        results[name] = r

    os.makedirs(args.out, exist_ok=True)
    fig_path = os.path.join(args.out, "densities_2d.png")
    make_figure(fig_path, results)

    print(f"{'data set':18s}{'steps':>7s}{'EBM NLL':>10s}{'true NLL':>10s}{'KDE NLL':>10s}{'train s':>9s}")
    for name, r in results.items():
        true = f"{r['true_nll']:10.3f}" if "true_nll" in r else f"{'-':>10s}"
        print(f"{name:18s}{r['steps']:7d}{r['nll']:10.3f}{true}{r['kde_nll']:10.3f}{r['train_seconds']:9.1f}")
    print("\nsampler diagnostics during training (probe: 8 chains x 100 draws of the negatives' HMC transition)")
    print(f"{'data set':18s}{'step':>6s}{'Rhat(y)':>9s}{'Rhat(F)':>9s}{'ESS(y)':>8s}{'ESS(F)':>8s}"
          f"{'accept':>8s}{'div':>5s}{'gap':>8s}")
    for name, r in results.items():
        for d in r["diagnostics"]:
            print(f"{name:18s}{d['step']:6d}{d['diag_rhat']:9.3f}{d['diag_rhat_energy']:9.3f}"
                  f"{d['diag_ess_bulk']:8.0f}{d['diag_ess_bulk_energy']:8.0f}{d['diag_acceptance']:8.3f}"
                  f"{int(d['diag_divergences']):5d}{d['diag_energy_gap']:8.3f}")
    clean = {name: {k: v for k, v in r.items() if not k.startswith("_")} for name, r in results.items()}
    result = {"results": clean, "figure": fig_path, "seconds": round(time.time() - t_all, 1)}
    if "eight_gaussians" in clean:
        g8 = clean["eight_gaussians"]
        result["eight_gaussians_nll_excess"] = g8["nll"] - g8["true_nll"]
        print(f"\n8 Gaussians: EBM NLL {g8['nll']:.3f} vs true {g8['true_nll']:.3f} "
              f"(excess {result['eight_gaussians_nll_excess']:.3f} nats)")
    print(f"total {result['seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
