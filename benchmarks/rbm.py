"""Benchmark: RBM training with PCD-1, this library against scikit-learn's ``BernoulliRBM``, in one run.

Data: scikit-learn's 8x8 digits (1797 images shipped with scikit-learn), binarized at half the pixel
range (``pixel > 7``), shuffled with a fixed seed and split into 1497 training and 300 held-out images.
Both models: 64 visible and 256 hidden units, batch size 20, learning rate ``--lr`` (0.05), PCD with one
Gibbs sweep per minibatch and one chain per row of the minibatch (scikit-learn's scheme), ``--epochs`` epochs.

Reported:

* time per epoch of each (whole ``fit`` divided by the number of epochs; the median over ``--repeats``
  seeds), this library in float32 (its default dtype) and in float64 (scikit-learn's), and the ratio
  ``pyro_ebm / scikit-learn`` (below 1 is faster);
* for this library, the per-minibatch time beside that of the same arithmetic written as a naive torch
  loop (fresh tensors every minibatch, ``data[perm[...]]`` gathers): what preallocated buffers and in-place
  updates buy; and one epoch of the same PCD-1 through the generic pieces (``train.fit`` with
  ``losses.ml_sampled``, SGD and block-Gibbs negatives from ``mcmc.sample``), the overhead ``RBM.fit`` removes;
* the held-out log-likelihood of both trained models (every repeat), each scored by the same AIS
  estimator (:meth:`pyro_ebm.models.RBM.log_partition` with ``method="ais"``, base rates of the training
  data, ``--ais-temperatures`` temperatures, default 14500), as mean log p(v) per image in nats, with the
  AIS standard error of log Z; seed ``i`` of one trainer against seed ``i`` of the other, and the mean
  difference with its standard error over the seeds.

Run: ``python benchmarks/rbm.py [--epochs 10] [--lr 0.05] [--repeats 3] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")

NV, NH, BATCH = 64, 256, 20
LR = 0.05  # set by --lr


def digits(seed: int = 0):
    from sklearn.datasets import load_digits

    x = (load_digits().data > 7).astype(np.float64)
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    x = x[perm]
    return x[:-300], x[-300:]


def time_sklearn(train, epochs, seed):
    from sklearn.neural_network import BernoulliRBM

    est = BernoulliRBM(n_components=NH, batch_size=BATCH, learning_rate=LR, n_iter=epochs, random_state=seed)
    t0 = time.perf_counter()
    est.fit(train)
    return (time.perf_counter() - t0) / epochs, est


def time_ours(train, epochs, seed, dtype):
    from pyro_ebm.models import RBM

    rbm = RBM(NV, NH, seed=seed, dtype=dtype)
    data = torch.tensor(train, dtype=dtype)
    t0 = time.perf_counter()
    rbm.fit(data, epochs=epochs, batch_size=BATCH, lr=LR, k=1, persistent=True, seed=seed)
    return (time.perf_counter() - t0) / epochs, rbm


def bare_loop_time(train, epochs, dtype):
    """The same minibatch arithmetic as a naive torch loop (allocating every intermediate)."""
    g = torch.Generator().manual_seed(0)
    data = torch.tensor(train, dtype=dtype)
    W = torch.randn(NV, NH, generator=g, dtype=dtype) * 0.01
    b, c = torch.zeros(NV, dtype=dtype), torch.zeros(NH, dtype=dtype)
    chain = torch.zeros(BATCH, NH, dtype=dtype)
    s = LR / BATCH
    n = data.shape[0] // BATCH
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(epochs):
            perm = torch.randperm(data.shape[0], generator=g)
            for i in range(n):
                v = data[perm[i * BATCH:(i + 1) * BATCH]]
                hp = torch.sigmoid(torch.addmm(c, v, W))
                vn = torch.bernoulli(torch.sigmoid(torch.addmm(b, chain, W.T)), generator=g)
                hn = torch.sigmoid(torch.addmm(c, vn, W))
                W.addmm_(v.T, hp, alpha=s).addmm_(vn.T, hn, alpha=-s)
                b.add_(v.sum(0) - vn.sum(0), alpha=s)
                c.add_(hp.sum(0) - hn.sum(0), alpha=s)
                chain = torch.bernoulli(hn, generator=g)
    return (time.perf_counter() - t0) / epochs


def time_library_loop(train, seed):
    """One epoch of the same PCD-1 through the generic pieces: :func:`pyro_ebm.train.fit` with
    :func:`~pyro_ebm.losses.ml_sampled`, ``torch.optim.SGD`` and persistent block-Gibbs negatives drawn by
    :func:`pyro_ebm.mcmc.sample` on ``rbm.joint_state()``; what ``RBM.fit`` replaces."""
    from pyro_ebm import losses, mcmc
    from pyro_ebm.models import RBM
    from pyro_ebm.train import fit

    rbm = RBM(NV, NH, seed=seed)
    data = torch.tensor(train, dtype=torch.float32)
    gen = mcmc.make_generator(seed, "cpu")
    state = {"s": torch.zeros(BATCH, NV + NH)}

    def negatives(energy, y, x=None):
        s = mcmc.sample(rbm.joint_state(), state["s"], 0, 1, kernel="gibbs", seed=gen, progress=False)
        state["s"] = s.draws[:, -1]
        return state["s"][:, :NV].unsqueeze(0)

    opt = torch.optim.SGD(rbm.parameters(), lr=LR)  # (its first construction imports torch._dynamo: untimed)
    fit(rbm, data[:100], losses.ml_sampled, negatives, steps=2, batch_size=BATCH, optimizer=opt, seed=seed,
        progress=False)  # warm-up
    steps = data.shape[0] // BATCH
    t0 = time.perf_counter()
    fit(rbm, data, losses.ml_sampled, negatives, steps=steps, batch_size=BATCH, optimizer=opt, seed=seed,
        progress=False)
    return time.perf_counter() - t0


def heldout(rbm, base_logits, test, seed, num_temperatures):
    log_z = rbm.log_partition("ais", base_logits=base_logits, seed=seed, num_temperatures=num_temperatures)
    ll = rbm.log_likelihood(torch.tensor(test, dtype=rbm.weight.dtype), log_z)
    return float(ll.mean()), float(log_z.stderr), float(log_z.value)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.05, help="learning rate of both trainers")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ais-temperatures", type=int, default=14500)
    args = p.parse_args(argv)
    global LR
    LR = args.lr
    torch.set_num_threads(args.threads)
    import sklearn

    from pyro_ebm.models import RBM

    train, test = digits()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), scikit-learn {sklearn.__version__}")
    print(f"data: {train.shape[0]} train / {test.shape[0]} held-out binarized digits; {NV} visible, {NH} hidden, "
          f"batch {BATCH}, lr {LR}, PCD-1, {args.epochs} epochs, {args.repeats} repeats")
    # warm-up (imports, allocator)
    time_sklearn(train[:200], 1, 0)
    time_ours(train[:200], 1, 0, torch.float32)

    runs = {"sklearn": [], "float32": [], "float64": []}
    for seed in range(args.repeats):
        runs["sklearn"].append(time_sklearn(train, args.epochs, seed))
        runs["float32"].append(time_ours(train, args.epochs, seed, torch.float32))
        runs["float64"].append(time_ours(train, args.epochs, seed, torch.float64))
    med = {k: statistics.median(t for t, _ in v) for k, v in runs.items()}
    bare = {dt: bare_loop_time(train, args.epochs, dt) for dt in (torch.float32, torch.float64)}
    steps = train.shape[0] // BATCH
    print("\n| trainer | ms / epoch (median) | all repeats (ms) | ratio vs scikit-learn |")
    print("|---|---|---|---|")
    print(f"| scikit-learn BernoulliRBM (float64) | {1e3 * med['sklearn']:.1f} | "
          f"{', '.join(f'{1e3 * t:.1f}' for t, _ in runs['sklearn'])} | 1.00 |")
    for k in ("float32", "float64"):
        print(f"| pyro_ebm RBM.fit ({k}) | {1e3 * med[k]:.1f} | {', '.join(f'{1e3 * t:.1f}' for t, _ in runs[k])} | "
              f"{med[k] / med['sklearn']:.2f}x |")
    for dt, t in bare.items():
        name = str(dt).replace("torch.", "")
        print(f"[overhead] {name}: RBM.fit {1e6 * med[name] / steps:.0f} us / minibatch, naive torch loop "
              f"{1e6 * t / steps:.0f} us / minibatch ({med[name] / t:.2f}x)")
    lib = time_library_loop(train, 0)
    print(f"[generic loop] train.fit + ml_sampled + SGD + mcmc.sample block-Gibbs negatives (float32, one epoch): "
          f"{1e3 * lib:.1f} ms / epoch, {lib / med['sklearn']:.2f}x scikit-learn, {lib / med['float32']:.1f}x RBM.fit")
    print(f"RATIO pyro_ebm(float32) / scikit-learn time per epoch = {med['float32'] / med['sklearn']:.2f}")
    print(f"RATIO pyro_ebm(float64) / scikit-learn time per epoch = {med['float64'] / med['sklearn']:.2f}")

    # held-out log-likelihood of every repeat of both (seed i of one against seed i of the other), all scored
    # by the same AIS from the same base-rate model: the training data's smoothed marginals
    base = runs["float32"][0][1].base_logits.double()
    rows = []
    for seed in range(args.repeats):
        ours = heldout(runs["float32"][seed][1].double(), base, test, 100 + seed, args.ais_temperatures)
        theirs = heldout(RBM.from_sklearn(runs["sklearn"][seed][1]), base, test, 100 + seed, args.ais_temperatures)
        rows.append((seed, ours, theirs))
    print("\n| seed | pyro_ebm held-out log p(v) | scikit-learn held-out log p(v) | AIS stderr (ours, theirs) |")
    print("|---|---|---|---|")
    for seed, ours, theirs in rows:
        print(f"| {seed} | {ours[0]:.2f} | {theirs[0]:.2f} | {ours[1]:.3f}, {theirs[1]:.3f} |")
    diffs = np.array([o[0] - t[0] for _, o, t in rows])
    mo, mt = np.mean([o[0] for _, o, _ in rows]), np.mean([t[0] for _, _, t in rows])
    se = diffs.std(ddof=1) / np.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    print(f"mean held-out log p(v): pyro_ebm {mo:.2f}, scikit-learn {mt:.2f} nats per image")
    print(f"LOGLIK pyro_ebm - scikit-learn = {diffs.mean():+.2f} nats per image (standard error over seeds {se:.2f})")


if __name__ == "__main__":
    main()
