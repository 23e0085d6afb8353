"""An RBM on binarized digits: held-out log-likelihood by AIS, reconstructions, samples, and scikit-learn.

Data: scikit-learn's 8x8 digits (1797 images, shipped with scikit-learn), binarized at half the pixel range
(``pixel > 7``), shuffled with a fixed seed, 1497 for training and 300 held out.

Two RBMs with the same settings -- 64 visible and ``--hidden`` hidden units (64; quick: 32), batch 20,
learning rate 0.05, PCD with one Gibbs sweep per minibatch, ``--epochs`` epochs (30; quick: 10) -- one
trained by :meth:`pyro_ebm.models.RBM.fit`, one by scikit-learn's ``BernoulliRBM`` and converted with
:meth:`~pyro_ebm.models.RBM.from_sklearn`. Both are scored by the same estimator: :math:`\\log Z` by AIS from
the base-rate model of the training data (Salakhutdinov & Murray 2008; 14500 temperatures, 100 runs;
quick: 1000), and the held-out log-likelihood :math:`\\frac1N\\sum_n [-F(v_n)] - \\log Z` per image, with two
error bars: the AIS standard error of :math:`\\log Z` (shared by every image) and the standard error of the
mean over the held-out images. For scale: independent pixels with the training marginals (the base-rate
model itself) score ``base_rate_loglik``.

Figure: held-out images, their mean-field reconstructions :math:`P(v' \\mid E[h \\mid v])`, and samples of
the trained model (independent block-Gibbs chains, 1000 sweeps from the base-rate model).

Run::

    python examples/rbm_digits.py            # full run, figure in outputs/
    python examples/rbm_digits.py --quick    # smoke run
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import torch

from pyro_ebm.cli import example_parser, run_example
from pyro_ebm.models import RBM

BATCH, LR = 20, 0.05


def digits(seed: int = 0):
    from sklearn.datasets import load_digits

    x = (load_digits().data > 7).astype(np.float64)
    x = x[np.random.default_rng(seed).permutation(x.shape[0])]
    return torch.tensor(x[:-300]), torch.tensor(x[-300:])


def score(rbm, base_logits, test, num_temperatures, seed):
    log_z = rbm.log_partition("ais", base_logits=base_logits, num_temperatures=num_temperatures, seed=seed)
    with torch.no_grad():
        neg_f = -rbm.beta * rbm(test)
    return {
        "heldout_loglik": float(neg_f.mean() - log_z.value),
        "ais_stderr": float(log_z.stderr),
        "images_stderr": float(neg_f.std() / math.sqrt(test.shape[0])),
        "log_z": float(log_z.value),
        "ais_ess": float(log_z.ess),
    }


def make_figure(path, test, recon, samples):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("held-out", test), ("reconstruction", recon), ("samples", samples)]
    k = test.shape[0]
    fig, axes = plt.subplots(len(rows), k, figsize=(1.2 * k + 1.5, 4.8), layout="constrained")
    for r, (title, images) in enumerate(rows):
        for j in range(k):
            ax = axes[r, j]
            im = ax.imshow(images[j].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(title)
    fig.colorbar(im, ax=axes, shrink=0.8, label="pixel value (ink)")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    p = example_parser(__doc__)
    p.add_argument("--hidden", type=int, default=None, help="hidden units (default 64, quick 32)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 30, quick 10)")
    return run_example(run, p, argv)


def run(args) -> dict:
    from sklearn.neural_network import BernoulliRBM

    t0 = time.time()
    hidden = args.hidden or (32 if args.quick else 64)
    epochs = args.epochs or (10 if args.quick else 30)
    temps = 1000 if args.quick else 14500
    train, test = digits(args.seed)

    rbm = RBM(64, hidden, seed=args.seed, dtype=torch.float64)
    t = time.perf_counter()
    history = rbm.fit(train, epochs=epochs, batch_size=BATCH, lr=LR, k=1, persistent=True, seed=args.seed)
    ours_s = time.perf_counter() - t
    est = BernoulliRBM(n_components=hidden, batch_size=BATCH, learning_rate=LR, n_iter=epochs,
                       random_state=args.seed)
    t = time.perf_counter()
    est.fit(train.numpy())
    sk_s = time.perf_counter() - t
    theirs = RBM.from_sklearn(est)

    base = rbm.base_logits  # smoothed training marginals: the same AIS base for both
    results = {"pyro_ebm": score(rbm, base, test, temps, args.seed + 1),
               "sklearn": score(theirs, base, test, temps, args.seed + 1)}
    results["pyro_ebm"]["fit_seconds"], results["sklearn"]["fit_seconds"] = round(ours_s, 2), round(sk_s, 2)
    p = torch.sigmoid(base)
    results["base_rate_loglik"] = float((test * p.log() + (1 - test) * (1 - p).log()).sum(-1).mean())

    shown = test[:10]
    recon = rbm.reconstruct(shown)
    samples = rbm.sample(10, num_sweeps=200 if args.quick else 1000, seed=args.seed)
    results["reconstruction_error"] = float(((rbm.reconstruct(test) > 0.5).double() != test).double().mean())
    os.makedirs(args.out, exist_ok=True)
    fig_path = os.path.join(args.out, "rbm_digits.png")
    make_figure(fig_path, shown.numpy(), recon.numpy(), samples.numpy())

    print(f"{hidden} hidden units, {epochs} epochs, batch {BATCH}, lr {LR}, PCD-1; AIS {temps} temperatures")
    print(f"{'':10s}{'held-out log p(v)':>20s}{'AIS se':>9s}{'images se':>11s}{'log Z':>10s}{'fit s':>8s}")
    for name in ("pyro_ebm", "sklearn"):
        r = results[name]
        print(f"{name:10s}{r['heldout_loglik']:20.2f}{r['ais_stderr']:9.3f}{r['images_stderr']:11.2f}"
              f"{r['log_z']:10.2f}{r['fit_seconds']:8.2f}")
    print(f"base-rate model: {results['base_rate_loglik']:.2f}; reconstruction error (pixels): "
          f"{results['reconstruction_error']:.3f}")
    results.update({"hidden": hidden, "epochs": epochs, "final_history": history.last, "figure": fig_path,
                    "seconds": round(time.time() - t0, 1)})
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
