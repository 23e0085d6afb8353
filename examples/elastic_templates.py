"""Elastic templates with a trainable feature extractor: the 1-D constellation model (dynamic time warping).

The lecture's oldest example of structured prediction (Driancourt & Bottou 1991): each class of spoken
word is an *elastic template*, a short sequence of feature vectors; a word is recognised by aligning its
feature sequence to every template by dynamic time warping, and the energy of a class is the energy of the
best alignment (the alignment is the latent variable). The feature extractor and the templates are trained
together, end to end, through the alignment.

Synthetic "words": each of 4 classes is a sequence of 4 "phonemes" out of 3, a phoneme being a burst of
oscillation with its own period (4, 7 or 12 samples). Every example warps time (each phoneme lasts 6-18
samples, so lengths vary from 24 to 72), draws a random phase and amplitude per phoneme, adds a random
linear drift and noise. The raw signal is one channel.

Energy of class ``c`` for a sequence ``x``: :math:`F(x, c) = \\mathrm{DTW}_\\beta(\\| f(x)_i - w_{c,j} \\|^2)`
with ``f`` a small convolutional feature extractor and ``w_c`` the class's template (8 frames of 4 features).
Two trainings (:func:`pyro_ebm.train.fit`, the same architecture):

* **LVQ2** (Driancourt & Bottou): hard DTW (``beta = inf``), the most offending wrong class as the
  negative (:class:`~pyro_ebm.negatives.MostOffending`), :func:`pyro_ebm.losses.lvq2` with cap 10;
* **NLL** (Bengio 1992, Haffner 1993): soft-DTW at ``beta = 1`` (the free energy over alignments) and
  :func:`pyro_ebm.losses.nll` over the classes (:class:`~pyro_ebm.negatives.Exhaustive`), i.e. the exact
  negative log-likelihood of the class with the alignment marginalised out.

Baseline: nearest template on raw features -- DTW on the raw signal against 5 training exemplars per class,
the class of the closest one.

Printed: test accuracy of the baseline, LVQ2 and NLL (``accuracy_*``), and the training time.

Run::

    python examples/elastic_templates.py            # full run, figure in outputs/
    python examples/elastic_templates.py --quick    # smoke run
"""

from __future__ import annotations

import json
import math
import os
import time

import torch
from torch import nn

from pyro_ebm import Energy, losses
from pyro_ebm.cli import example_parser, run_example
from pyro_ebm.negatives import Exhaustive, MostOffending
from pyro_ebm.structured import dtw, pad_sequences, soft_dtw, squared_distances
from pyro_ebm.train import fit, set_loss

PERIODS = (4.0, 7.0, 12.0)
WORDS = ((0, 1, 2, 0), (2, 1, 0, 2), (1, 0, 1, 2), (0, 2, 0, 1))  # phonemes of each class
N_CLASSES = len(WORDS)


def make_words(n: int, seed: int):
    """``n`` warped noisy words: ``x [n, T_max, 2]`` (channel 0 the signal, channel 1 = 1 on valid steps,
    0 on padding) and labels ``[n]``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, N_CLASSES, (n,), generator=g)
    seqs = []
    for c in labels.tolist():
        parts = []
        for ph in WORDS[c]:
            dur = int(torch.randint(6, 19, (), generator=g))
            t = torch.arange(dur, dtype=torch.float32)
            phase = 2 * math.pi * float(torch.rand((), generator=g))
            amp = 0.6 + 0.8 * float(torch.rand((), generator=g))
            parts.append(amp * torch.sin(2 * math.pi * t / PERIODS[ph] + phase))
        s = torch.cat(parts)
        drift = (2 * torch.rand(2, generator=g) - 1) * 1.0
        s = s + drift[0] + drift[1] * torch.linspace(-1, 1, len(s)) + 0.3 * torch.randn(len(s), generator=g)
        seqs.append(torch.stack([s, torch.ones_like(s)], -1))
    x, _ = pad_sequences(seqs)
    return x, labels


def lengths_of(x: torch.Tensor) -> torch.Tensor:
    return x[..., 1].sum(-1).round().long()


class ElasticTemplates(Energy):
    """``F(x, y) = DTW_beta(cost(f(x), template_y))`` for a one-hot class ``y`` (event shape ``(C,)``)."""

    def __init__(self, beta: float, n_frames: int = 8, n_features: int = 4, hidden: int = 16):
        super().__init__(event_shape=(N_CLASSES,))
        self.beta = beta
        self.features = nn.Sequential(
            nn.Conv1d(1, hidden, kernel_size=13, padding=6), nn.Tanh(), nn.Conv1d(hidden, n_features, 1), nn.Tanh()
        )
        self.templates = nn.Parameter(0.5 * torch.randn(N_CLASSES, n_frames, n_features))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Feature sequences ``[B, T, F]`` of words ``x [B, T, 2]``."""
        return self.features(x[..., :1].transpose(1, 2)).transpose(1, 2)

    def cost(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        template = torch.einsum("bc,cjf->bjf", y, self.templates)
        return squared_distances(self.embed(x), template)

    def forward(self, y: torch.Tensor, x: torch.Tensor = None) -> torch.Tensor:
        batch = y.shape[:-1]
        y, x = y.reshape(-1, N_CLASSES), x.expand(batch + x.shape[-2:]).reshape(-1, *x.shape[-2:])
        c = self.cost(x, y)
        n = (lengths_of(x), torch.full_like(lengths_of(x), c.shape[-1]))
        return soft_dtw(c, self.beta, lengths=n).reshape(batch)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(N_CLASSES)
        energies = torch.stack([self(eye[c].expand(len(x), N_CLASSES), x) for c in range(N_CLASSES)], -1)
        return energies.argmin(-1)


def nearest_template(train_x, train_y, test_x, per_class: int = 5) -> torch.Tensor:
    """Class of the raw-signal DTW-nearest of ``per_class`` training exemplars per class."""
    refs = torch.cat([(train_y == c).nonzero()[:per_class, 0] for c in range(N_CLASSES)])
    n_test, n_ref = len(test_x), len(refs)
    a = test_x[:, None, :, :1].expand(n_test, n_ref, -1, 1).reshape(n_test * n_ref, -1, 1)
    b = train_x[refs][None, :, :, :1].expand(n_test, n_ref, -1, 1).reshape(n_test * n_ref, -1, 1)
    n = lengths_of(test_x)[:, None].expand(n_test, n_ref).reshape(-1)
    m = lengths_of(train_x[refs])[None, :].expand(n_test, n_ref).reshape(-1)
    d = dtw(squared_distances(a, b), lengths=(n, m)).reshape(n_test, n_ref)
    return train_y[refs][d.argmin(-1)]


def train(kind: str, x, labels, steps: int, seed: int):
    torch.manual_seed(seed)
    eye = torch.eye(N_CLASSES)
    if kind == "lvq2":
        energy = ElasticTemplates(beta=math.inf)
        loss = lambda pos, neg: losses.lvq2(pos, neg, cap=10.0)  # noqa: E731
        negatives = MostOffending(eye)
    else:
        energy = ElasticTemplates(beta=1.0)
        loss = set_loss(losses.nll, beta=1.0)
        negatives = Exhaustive(eye)
    history = fit(energy, eye[labels], loss, negatives, x=x, steps=steps, batch_size=32, lr=3e-2, seed=seed,
                  progress=False)
    return energy, history


def make_figure(path, test_x, test_y, models, accuracies):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(22, 5.6), layout="constrained")
    ax = axes[0]
    for c in range(2):
        i = int((test_y == c).nonzero()[0, 0])
        n = int(lengths_of(test_x[i : i + 1]))
        ax.plot((test_x[i, :n, 0] + 4 * c).numpy(), label=f"class {c}: phonemes {WORDS[c]}")
    ax.set_title("two test words (raw signal, offset)")
    ax.set_xlabel("time step")
    ax.set_ylabel("signal (a.u.; class 1 shifted up by 4)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax = axes[1]
    energy = models["NLL"]
    i = int((test_y == 0).nonzero()[0, 0])
    n = int(lengths_of(test_x[i : i + 1]))
    y = torch.eye(N_CLASSES)[test_y[i : i + 1]]
    c = energy.cost(test_x[i : i + 1], y)[:, :n].detach().requires_grad_(True)
    (align,) = torch.autograd.grad(soft_dtw(c, 1.0).sum(), c)  # expected alignment = gradient of F
    im = ax.imshow(align[0].T.numpy(), aspect="auto", origin="lower", cmap="viridis")
    fig.colorbar(im, ax=ax, label="probability that (t, j) is on the path")
    ax.set_title("NLL model: expected alignment P((t, j) on path)")
    ax.set_xlabel("time step of the word")
    ax.set_ylabel("template frame")
    ax = axes[2]
    names = list(accuracies)
    ax.bar(names, [accuracies[k] for k in names], color=["gray", "tab:blue", "tab:green"])
    for k, name in enumerate(names):
        ax.text(k, accuracies[name] + 0.01, f"{accuracies[name]:.2f}", ha="center")
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("classifier")
    ax.set_ylabel(f"test accuracy ({N_CLASSES} classes)")
    ax.set_title("test accuracy")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    p = example_parser(__doc__)
    return run_example(run, p, argv)


def run(args) -> dict:
    t0 = time.time()
    n_train, n_test, steps = (128, 100, 60) if args.quick else (1024, 1000, 400)
    x, labels = make_words(n_train, args.seed)
    test_x, test_y = make_words(n_test, args.seed + 1)

    baseline = float((nearest_template(x, labels, test_x) == test_y).float().mean())
    models, accuracies = {}, {"nearest template (raw)": baseline}
    for kind, name in (("lvq2", "LVQ2"), ("nll", "NLL")):
        energy, _ = train(kind, x, labels, steps, args.seed)
        models[name] = energy
        accuracies[name] = float((energy.classify(test_x) == test_y).float().mean())

    os.makedirs(args.out, exist_ok=True)
    fig_path = os.path.join(args.out, "elastic_templates.png")
    make_figure(fig_path, test_x, test_y, models, accuracies)
    result = {
        "accuracy_baseline": baseline,
        "accuracy_lvq2": accuracies["LVQ2"],
        "accuracy_nll": accuracies["NLL"],
        "n_train": n_train,
        "n_test": n_test,
        "steps": steps,
        "figure": fig_path,
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
