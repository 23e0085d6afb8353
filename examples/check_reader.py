"""A check reader: a graph transformer network that reads strings of digits, trained globally.

The lecture's graph-transformer slides (LeCun, Bottou, Bengio & Haffner 1998): the answer is a string, the
latent variable is its segmentation, the energy of an answer is the free energy over the paths of a graph
that produce it, and the network is trained with the graph NLL (Bengio & LeCun 1994): push down the
paths of the desired answer, push up the paths of every answer.

Data: strings of 3 to 6 digits ("amounts": no leading zero) made by placing scikit-learn's 8 x 8 digit
images side by side with random gaps of 0 to 3 blank columns and a random left margin, in an image of
72 columns (nothing is downloaded; train and test strings use disjoint digit images).

Graphs (pyro_ebm.structured):

* the **recognizer**: one node per column boundary 0..72; a "space" arc ``i -> i+1`` for every column and
  ten digit arcs ``i -> i+8`` for every window of 8 columns, with energies computed by a small
  convolutional network sliding over the image (one energy per digit per window, one per column for space);
* the **grammar** of valid strings: 3 to 6 digits, the first one not 0, spaces anywhere (an acceptor with
  self-loops);
* ``full = intersect(recognizer, grammar)`` -- every segmentation of every valid answer;
  ``target = intersect(full, y)`` -- the segmentations of the desired answer ``y``.

Training: **global** -- ``graph_nll(target, full)``; **local** baseline -- the same network and graphs, but
the arc energies are normalized at each node (``-log softmax`` over the arcs leaving it, a
locally-normalized "per-segment softmax" model), trained by maximum likelihood of ``y`` with the
segmentation marginalised (``forward_score(target)``, its normalizer being 1 by construction).

Decoding: the Viterbi path of ``full`` gives the answer ``y*`` and its energy ``min_z E(x, y*, z)``; the best
wrong answer's energy is the Viterbi score of ``full`` intersected with an acceptor of every string but
``y*``. Rejecting the strings with the smallest energy gap gives the accuracy vs reject-rate curve.

Printed: string accuracy on held-out strings, digit-level accuracy, and the curve (correct / error at each
reject rate) for both trainings.

Run::

    python examples/check_reader.py            # full run, figure in outputs/
    python examples/check_reader.py --quick    # smoke run
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch
from torch import nn

from pyro_ebm.cli import example_parser, run_example
from pyro_ebm.structured import (
    Graph,
    forward_score,
    graph_nll,
    hamming_distance,
    intersect,
    viterbi_path,
    viterbi_score,
)

WIDTH, DIGIT, SPACE = 72, 8, 10  # image columns, digit width, the label of a blank column
N_WINDOWS = WIDTH - DIGIT + 1
REJECT_RATES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


# ------------------------------------------------------------------------------------------------- data


def digit_pools(seed: int):
    """scikit-learn's digits in [0, 1], split into disjoint train and test pools."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.tensor(d.images, dtype=torch.float32) / 16.0
    labels = torch.tensor(d.target)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    cut = int(0.67 * len(perm))
    return (images[perm[:cut]], labels[perm[:cut]]), (images[perm[cut:]], labels[perm[cut:]])


def make_strings(n: int, pool, seed: int):
    """``n`` images ``[n, 8, WIDTH]`` of random valid strings, and the strings (tuples of digits)."""
    g = torch.Generator().manual_seed(seed)
    images, labels = pool
    by_digit = [(labels == d).nonzero()[:, 0] for d in range(10)]
    x = torch.zeros(n, 8, WIDTH)
    strings = []
    for k in range(n):
        length = int(torch.randint(3, 7, (), generator=g))
        s = [int(torch.randint(1, 10, (), generator=g))] + torch.randint(0, 10, (length - 1,), generator=g).tolist()
        col = int(torch.randint(0, 4, (), generator=g))
        for d in s:
            idx = by_digit[d][int(torch.randint(0, len(by_digit[d]), (), generator=g))]
            x[k, :, col : col + DIGIT] = images[idx]
            col += DIGIT + int(torch.randint(0, 4, (), generator=g))
        strings.append(tuple(s))
    x = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, strings


# ----------------------------------------------------------------------------------------------- graphs


def recognizer() -> Graph:
    """Column boundaries 0..WIDTH; arc ``i`` is the space ``i -> i+1``; arc ``WIDTH + 10 w + d`` is digit
    ``d`` on the window ``w -> w + 8``. Energies are filled in per image with ``with_energy``."""
    g = Graph()
    nodes = [g.add_node(start=i == 0, accept=i == WIDTH) for i in range(WIDTH + 1)]
    for i in range(WIDTH):
        g.add_arc(nodes[i], nodes[i + 1], SPACE)
    for w in range(N_WINDOWS):
        for d in range(10):
            g.add_arc(nodes[w], nodes[w + DIGIT], d)
    return g


def grammar() -> Graph:
    """Valid amounts: 3 to 6 digits, the first not 0; spaces anywhere."""
    g = Graph()
    state = [g.add_node(start=k == 0, accept=k >= 3) for k in range(7)]
    for k in range(7):
        g.add_arc(state[k], state[k], SPACE)
        if k < 6:
            for d in range(1 if k == 0 else 0, 10):
                g.add_arc(state[k], state[k + 1], d)
    return g


def string_acceptor(s) -> Graph:
    """The string ``s`` with spaces anywhere."""
    g = Graph()
    state = [g.add_node(start=k == 0, accept=k == len(s)) for k in range(len(s) + 1)]
    for k in range(len(s) + 1):
        g.add_arc(state[k], state[k], SPACE)
        if k < len(s):
            g.add_arc(state[k], state[k + 1], s[k])
    return g


def other_strings(s) -> Graph:
    """Every digit string except ``s``, with spaces anywhere (``same[k]``: read the first ``k`` digits of
    ``s``; ``other``: left ``s``)."""
    g = Graph()
    same = [g.add_node(start=k == 0, accept=0 < k < len(s) or k == 0) for k in range(len(s) + 1)]
    other = g.add_node(accept=True)
    for k in range(len(s) + 1):
        g.add_arc(same[k], same[k], SPACE)
        for d in range(10):
            g.add_arc(same[k], same[k + 1] if k < len(s) and d == s[k] else other, d)
    g.add_arc(other, other, SPACE)
    for d in range(10):
        g.add_arc(other, other, d)
    return g


class Graphs:
    """The fixed structures: ``full`` and, per string, ``target``; ``*_arcs`` map their arcs to the
    recognizer's arcs (the grammar's arcs carry no energy)."""

    def __init__(self):
        self.full = intersect(recognizer(), grammar())
        self.full_arcs = self.full.origin[0]
        self._targets = {}

    def target(self, s):
        if s not in self._targets:
            t = intersect(self.full, string_acceptor(s))
            self._targets[s] = (t, self.full_arcs[t.origin[0]])
        return self._targets[s]


def answer(path: Graph):
    labels = path.ilabel.tolist()
    return tuple(l for l in labels if l != SPACE)


# ---------------------------------------------------------------------------------------------- network


class Recognizer(nn.Module):
    """Arc energies of the recognizer graph for images ``[B, 8, WIDTH]``: ``[B, A]`` in its arc order."""

    def __init__(self, local: bool):
        super().__init__()
        self.local = local
        self.conv = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.digit = nn.Sequential(nn.Conv1d(128, 64, DIGIT), nn.ReLU(), nn.Conv1d(64, 10, 1))
        self.space = nn.Sequential(nn.Conv1d(128, 16, 3, padding=1), nn.ReLU(), nn.Conv1d(16, 1, 1))

    def forward(self, x):
        h = self.conv(x.unsqueeze(1)).flatten(1, 2)  # [B, 128, WIDTH]
        space, digit = self.space(h)[:, 0], self.digit(h).transpose(1, 2)  # [B, W], [B, N_WINDOWS, 10]
        if self.local:  # -log softmax over the arcs leaving each node (space, and digits where one fits)
            e = torch.cat([space.unsqueeze(-1), nn.functional.pad(digit, (0, 0, 0, WIDTH - N_WINDOWS), value=1e4)], -1)
            e = -torch.log_softmax(-e, -1)
            space, digit = e[:, :, 0], e[:, :N_WINDOWS, 1:]
        return torch.cat([space, digit.flatten(1)], -1)


def train(local: bool, x, strings, graphs: Graphs, steps: int, seed: int, batch: int = 32, lr: float = 3e-3):
    torch.manual_seed(seed)
    net = Recognizer(local)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    history = []
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g).tolist()
        e = net(x[idx])
        targets = []
        for b, i in enumerate(idx):
            t, arcs = graphs.target(strings[i])
            targets.append(t.with_energy(e[b, arcs]))
        if local:  # -log P(y | x) of a locally normalized model: the target's free energy alone
            loss = forward_score(targets).mean()
        else:
            loss = graph_nll(targets, graphs.full.with_energy(e[:, graphs.full_arcs]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    return net, history


# --------------------------------------------------------------------------------------------- decoding


@torch.no_grad()
def decode(net, x, graphs: Graphs, batch: int = 100):
    """Answers, their energies and the energy gap to the best wrong answer, and the best paths."""
    answers, gaps, paths = [], [], []
    for lo in range(0, len(x), batch):
        e = net(x[lo : lo + batch])[:, graphs.full_arcs]
        fulls = [graphs.full.with_energy(row) for row in e]
        best = viterbi_path(fulls)
        ys = [answer(p) for p in best]
        second = viterbi_score([intersect(f, other_strings(y)) for f, y in zip(fulls, ys)])
        first = torch.stack([p.energy.sum() for p in best])
        answers += ys
        gaps += (second - first).tolist()
        paths += best
    return answers, torch.tensor(gaps), paths


def reject_curve(answers, truth, gaps):
    """Correct / error / reject fractions of all strings when rejecting the smallest energy gaps."""
    correct = torch.tensor([a == t for a, t in zip(answers, truth)])
    order = torch.argsort(gaps, descending=True)
    n, out = len(truth), []
    for r in REJECT_RATES:
        kept = order[: n - int(round(r * n))]
        c = int(correct[kept].sum())
        out.append({"reject": r, "correct": c / n, "error": (len(kept) - c) / n})
    ok = [p["reject"] for p in out if p["error"] <= 0.01]
    return out, (min(ok) if ok else None)


def evaluate(net, x, strings, graphs):
    answers, gaps, paths = decode(net, x, graphs)
    acc = float(np.mean([a == s for a, s in zip(answers, strings)]))
    digits = sum(len(s) - hamming_distance(a, s) for a, s in zip(answers, strings)) / sum(len(s) for s in strings)
    curve, reject_for_1pct = reject_curve(answers, strings, gaps)
    return {"string_accuracy": acc, "digit_accuracy": max(0.0, digits), "curve": curve,
            "reject_for_1pct_error": reject_for_1pct}, answers, paths


def make_figure(path, x, strings, answers, paths, results, histories):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplot_mosaic([["check", "check"], ["reject", "train"]], figsize=(14, 8.5),
                                   height_ratios=[1, 2.6], layout="constrained")
    ax = axes["check"]
    k = 0
    ax.imshow(x[k].numpy(), cmap="gray_r", aspect="equal")
    col = 0
    for lab in paths[k].ilabel.tolist():
        if lab != SPACE:
            ax.add_patch(plt.Rectangle((col - 0.5, -0.5), DIGIT, 8, fill=False, color="tab:red"))
            ax.text(col + DIGIT / 2 - 0.5, -1.2, str(lab), color="tab:red", ha="center")
            col += DIGIT
        else:
            col += 1
    ax.set_title(f"test string {''.join(map(str, strings[k]))}: Viterbi segmentation (global NLL)", pad=18)
    ax.set_xticks([])
    ax.set_yticks([])
    ax = axes["reject"]
    for name, color in (("global", "tab:green"), ("local", "tab:orange")):
        c = results[name]["curve"]
        ax.plot([p["reject"] for p in c], [p["error"] for p in c], "o-", color=color, label=f"{name}: error")
        ax.plot([p["reject"] for p in c], [p["correct"] for p in c], "s--", color=color, label=f"{name}: correct")
    ax.axhline(0.01, color="gray", lw=0.7, label="1% error")
    ax.set_xlabel("reject rate (smallest energy gap first)")
    ax.set_ylabel("fraction of all test strings")
    ax.set_title("errors and correct answers vs reject rate")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax = axes["train"]
    for name, color in (("global", "tab:green"), ("local", "tab:orange")):
        ax.plot(histories[name], color=color, lw=0.6, alpha=0.3)
        h = np.convolve(histories[name], np.ones(10) / 10, mode="valid")
        ax.plot(np.arange(9, len(histories[name])), h, color=color,
                label=f"{name} (string acc. {results[name]['string_accuracy']:.2f})")
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss -log P(y|x) (nats)")
    ax.set_title("training loss (moving average of 10 steps; raw faint)")
    ax.legend(loc="upper right")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    p = example_parser(__doc__)
    return run_example(run, p, argv)


def run(args) -> dict:
    t0 = time.time()
    n_train, n_test, steps, lr = (256, 40, 50, 1e-2) if args.quick else (2000, 500, 600, 3e-3)
    train_pool, test_pool = digit_pools(args.seed)
    x, strings = make_strings(n_train, train_pool, args.seed)
    test_x, test_strings = make_strings(n_test, test_pool, args.seed + 1)
    graphs = Graphs()
    results, histories, shown = {}, {}, None
    for name in ("global", "local"):
        net, histories[name] = train(name == "local", x, strings, graphs, steps, args.seed, lr=lr)
        results[name], answers, paths = evaluate(net, test_x, test_strings, graphs)
        results[name]["seconds"] = round(time.time() - t0, 1)
        shown = shown or (answers, paths)
    os.makedirs(args.out, exist_ok=True)
    fig_path = os.path.join(args.out, "check_reader.png")
    make_figure(fig_path, test_x, test_strings, *shown, results, histories)
    result = {"global": results["global"], "local": results["local"], "n_train": n_train, "n_test": n_test,
              "steps": steps, "full_graph_arcs": graphs.full.num_arcs, "figure": fig_path,
              "seconds": round(time.time() - t0, 1)}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
