"""Maximum-likelihood training steps per second with persistent HMC negatives: eager against compiled.

Two energies, both trained by :func:`pyro_ebm.ml.ml_fit` with ``sampler="persistent"`` (the replay buffer of
:class:`~pyro_ebm.negatives.PersistentNegatives`, HMC kernel, 4 transitions of 5 leapfrog steps per training
step, 128 chains = the batch): the densities example's energy (``examples/densities_2d.py``: an MLP with two
hidden layers of 128 SiLU units, on the eight Gaussians) and a 64-d MLP energy (two hidden layers of 256,
data from a 64-d Gaussian). For each, a first ``ml_fit`` call of ``--first`` steps (which, compiled,
includes tracing and compiling) and then ``--repeats`` calls of ``--steps`` steps on the same energy (the
compiled code is reused); reported: the first call's time and the median steps per second of the later
calls, and their ratio compiled / eager.

Run: ``python benchmarks/training.py [--steps 100] [--repeats 3] [--only densities|mlp64]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
warnings.filterwarnings("ignore", category=DeprecationWarning)


def energies():
    from densities_2d import MLPEnergy

    from pyro_ebm import datasets
    from pyro_ebm.energy import Energy

    class MLP64(Energy):
        def __init__(self):
            super().__init__(event_shape=(64,))
            self.net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.SiLU(), torch.nn.Linear(256, 256),
                                           torch.nn.SiLU(), torch.nn.Linear(256, 1))

        def forward(self, y, x=None):
            return self.net(y).squeeze(-1) + 0.01 * (y * y).sum(-1)

    g = torch.Generator().manual_seed(0)
    return {
        "densities": (MLPEnergy, datasets.eight_gaussians(2000, seed=0), 0.1),
        "mlp64": (MLP64, torch.randn(2000, 64, generator=g) * 0.5, 0.05),
    }


def train(energy, data, steps, step_size, compile, seed):
    from pyro_ebm.ml import ml_fit

    t0 = time.perf_counter()
    ml_fit(energy, data, sampler="persistent",
           sampler_options=dict(buffer_size=2000, steps=4, step_size=step_size, n_leapfrog=5, compile=compile),
           diagnose_every=None, steps=steps, batch_size=128, lr=1e-3, seed=seed, progress=False)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--first", type=int, default=10, help="steps of the first call (compiles)")
    ap.add_argument("--steps", type=int, default=100, help="steps of each later call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-bench-")
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores (load average {load:.1f}), "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    rows = []
    for name, (make, data, step_size) in energies().items():
        if args.only and name != args.only:
            continue
        row = {"name": name}
        for label, flag in (("eager", False), ("compiled", True)):
            torch.manual_seed(0)
            energy = make()
            first = train(energy, data, args.first, step_size, flag, seed=0)
            rates = [args.steps / train(energy, data, args.steps, step_size, flag, seed=r + 1)
                     for r in range(args.repeats)]
            row[label] = (first, float(np.median(rates)))
            print(f"[{name}] {label}: first call ({args.first} steps) {first:.2f}s; later calls "
                  f"{', '.join(f'{r:.1f}' for r in rates)} steps/s")
        rows.append(row)
    print("\n| energy | eager: first call (s) | eager steps/s | compiled: first call incl. compile (s) | "
          "compiled steps/s | compiled / eager |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        (ef, er), (cf, cr) = r["eager"], r["compiled"]
        print(f"| {r['name']} | {ef:.2f} | {er:.1f} | {cf:.2f} | {cr:.1f} | {cr / er:.2f}x |")


if __name__ == "__main__":
    main()
