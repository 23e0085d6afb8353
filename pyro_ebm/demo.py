r"""``pyro-ebm demo``: the main job, end to end, on embedded data.

1. **Train** an energy :math:`F(y)` on the 8 Gaussians of :func:`pyro_ebm.datasets.eight_gaussians` by
   maximum likelihood (:func:`pyro_ebm.ml.ml_fit`: loss :func:`~pyro_ebm.losses.ml_sampled`, negatives
   from persistent, batched HMC chains, :class:`~pyro_ebm.ml.SamplerDiagnostics` probing them during
   training), with a progress bar.
2. **Check the negatives**: a final multi-chain run of the negatives' own HMC transition on the trained
   energy, summarised by :func:`~pyro_ebm.diagnostics.check_negatives` through ArviZ (R-hat, bulk and
   tail ESS, BFMI, divergences, acceptance), with trace, rank and energy plots.
3. **Estimate** :math:`\log Z` by annealed importance sampling next to Gauss-Legendre quadrature
   (:func:`pyro_ebm.partition.log_partition`), both on a float64 copy of the energy.
4. **Compare** the held-out negative log-likelihood with the true density's and with a normalized Pyro
   model, a mixture of 8 Gaussians fitted by SVI (``AutoDelta``, k-means start).

It writes ``report.md`` (the one-page report), ``results.json`` (every number) and the figures
``demo.png`` (landscape with data and negatives, learned density, training curves), ``trace.png``,
``rank.png`` and ``energy.png`` into ``out_dir``. The same seed gives the same numbers (on one device).

The energy is a SiLU MLP plus a wall outside radius 3.5, :math:`10\,\max(0, \lVert y\rVert - 3.5)^2`, so
that :math:`e^{-F}` is integrable and its mass outside the quadrature box :math:`[-6, 6]^2` is negligible:
AIS integrates over the whole plane, quadrature over the box, and the two must agree.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from typing import Optional

import numpy as np
import torch
from torch import nn

from ._validation import check_finite, check_positive_int, surely_finite
from .energy import Energy

__all__ = ["run_demo", "WallMLP"]

QUAD_BOX = 6.0  # quadrature over [-QUAD_BOX, QUAD_BOX]^2
WALL_RADIUS = 3.5
WIDTH = 64  # hidden units per layer of the energy (32 in a quick run)
STEPS = 4000  # training steps: ml_fit's defaults otherwise


class WallMLP(Energy):
    r"""``F(y) = MLP(y) + 10 max(0, |y| - 3.5)^2`` for 2-D ``y`` (two hidden SiLU layers of ``width``).

    Example::

        >>> import torch
        >>> F = WallMLP(width=8)
        >>> F(torch.zeros(5, 2)).shape
        torch.Size([5])
    """

    def __init__(self, width: int = 64):
        super().__init__(event_shape=(2,))
        width = check_positive_int(width, "width")
        self.net = nn.Sequential(nn.Linear(2, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, 1))

    def forward(self, y, x=None):
        if not isinstance(y, torch.Tensor) or not y.is_floating_point() or y.dim() < 1 or y.shape[-1] != 2:
            got = f"shape {tuple(y.shape)} dtype {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
            raise TypeError(f"y must be a floating-point tensor of shape [..., 2], got {got}")
        wall = torch.relu(y.norm(dim=-1) - WALL_RADIUS).pow(2)
        out = self.net(y).squeeze(-1) + 10.0 * wall
        if not surely_finite(out):  # one cheap check of the output
            check_finite(y, "y")
            check_finite(out, f"energy {type(self).__name__} output", allow_pos_inf=True)
        return out


def _device(device) -> torch.device:
    name = str(device)
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={name!r} was asked for, but CUDA is not available here (this torch is "
            f"{torch.__version__}, torch.cuda.is_available() is False): use --device cpu, or install a CUDA "
            "build of torch on a machine with an NVIDIA GPU"
        )
    return torch.device(name)


def _kmeans(data: torch.Tensor, k: int, generator: torch.Generator, iters: int = 20, restarts: int = 5):
    """k-means (k-means++ seeding, Lloyd's iterations), the best of ``restarts``; returns the centres ``[k, D]``."""
    best, best_cost = None, math.inf
    for _ in range(restarts):
        first = torch.randint(data.shape[0], (1,), generator=generator, device=generator.device).to(data.device)
        centers = data[first]
        while centers.shape[0] < k:  # k-means++: the next centre with probability proportional to d^2
            d2 = torch.cdist(data, centers).min(-1).values.pow(2)
            i = torch.multinomial(d2.to(generator.device), 1, generator=generator).to(data.device)
            centers = torch.cat([centers, data[i]])
        for _ in range(iters):
            assign = torch.cdist(data, centers).argmin(-1)
            for j in range(k):
                members = data[assign == j]
                if members.shape[0]:
                    centers[j] = members.mean(0)
        cost = float(torch.cdist(data, centers).min(-1).values.pow(2).sum())
        if cost < best_cost:
            best, best_cost = centers, cost
    return best


def fit_pyro_mixture(data: torch.Tensor, steps: int, seed: int, k: int = 8):
    """A mixture of ``k`` isotropic Gaussians as a Pyro model, MAP by SVI with ``AutoDelta``.

    Returns the fitted ``torch.distributions`` mixture (its ``log_prob`` is exact)."""
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, Trace_ELBO
    from pyro.infer.autoguide import AutoDelta, init_to_value

    dev, dtype = data.device, data.dtype

    def mixture(weights, locs, scales):
        return dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(locs, scales.unsqueeze(-1)).to_event(1))

    def model(y):
        weights = pyro.sample("weights", dist.Dirichlet(torch.ones(k, dtype=dtype, device=dev)))
        with pyro.plate("components", k):
            locs = pyro.sample("locs", dist.Normal(torch.zeros(2, dtype=dtype, device=dev), 3.0).to_event(1))
            scales = pyro.sample("scales", dist.LogNormal(torch.tensor(-1.0, dtype=dtype, device=dev), 1.0))
        with pyro.plate("data", y.shape[0], subsample_size=min(512, y.shape[0])) as i:
            pyro.sample("obs", mixture(weights, locs, scales), obs=y[i])

    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    gen = torch.Generator(device=dev).manual_seed(seed)
    guide = AutoDelta(model, init_loc_fn=init_to_value(values={"locs": _kmeans(data, k, gen)}))
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.02}), Trace_ELBO())
    for _ in range(steps):
        svi.step(data)
    with torch.no_grad():
        m = guide.median()
    return mixture(m["weights"], m["locs"], m["scales"])


def _moving_average(values, window):
    values = np.asarray(values, dtype=float)
    return np.convolve(values, np.ones(window) / window, mode="valid")


def _figure(path, energy, data, negatives, log_z, history, dpi):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .diagnostics import _legend_below, plot_negatives

    with plt.rc_context({"font.size": 12}):
        fig, axes = plt.subplots(1, 3, figsize=(20, 6.2), layout="constrained")
        lim = 3.2
        plot_negatives(data[:600].cpu(), negatives[:600].cpu(), energy, ax=axes[0], grid_size=120,
                       bounds=((-lim, lim), (-lim, lim)), data_kwargs={"s": 4},
                       negative_kwargs={"s": 10, "label": "HMC negatives (replay buffer)"})
        axes[0].set_title("trained energy F with data and negatives")
        g = torch.linspace(-lim, lim, 200, dtype=data.dtype, device=data.device)
        grid = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
        with torch.no_grad():
            dens = torch.exp(-energy(grid) - log_z).reshape(200, 200).cpu()
        im = axes[1].imshow(dens.numpy(), origin="lower", extent=(-lim, lim, -lim, lim), cmap="magma")
        fig.colorbar(im, ax=axes[1], label="density (per unit area)")
        axes[1].set(title="learned density exp(-F)/Z (Z by quadrature)", xlabel="y[0]", ylabel="y[1]")

        ax = axes[2]
        steps = np.asarray(history["step"])
        window = max(1, len(steps) // 50)
        curves = (("loss F(data) - F(negatives)", "loss", "C0"), ("mean F(data)", "energy_pos", "C1"),
                  ("mean F(negatives)", "energy_neg", "C2"))
        for label, key, color in curves:
            ax.plot(steps, history[key], color=color, lw=0.5, alpha=0.25)
            ax.plot(steps[window - 1:], _moving_average(history[key], window), color=color, lw=1.8, label=label)
        ax.set(xlabel="training step", ylabel="energy (nats)",
               title=f"training curves (moving average of {window} steps; raw faint)" if window > 1
               else "training curves")
        probed = [(s, r) for s, r in zip(steps, history["diag_rhat_energy"]) if not math.isnan(r)] \
            if "diag_rhat_energy" in history.keys() else []
        handles = ax.get_legend_handles_labels()[0]
        if probed:
            twin = ax.twinx()
            twin.plot(*zip(*probed), "ko--", ms=5, lw=1, label="R-hat of F(negatives) at a probe")
            twin.set_ylabel("R-hat of F(negatives)")
            handles += twin.get_legend_handles_labels()[0]
        _legend_below(ax, handles=handles)
        fig.savefig(path, dpi=dpi)
        plt.close(fig)


def _diagnostic_figures(out_dir, samples):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .diagnostics import plot_energy, plot_rank, plot_trace

    paths = {}
    for name, fig in (("trace", plot_trace(samples, max_chains=4)), ("rank", plot_rank(samples, max_chains=4)),
                      ("energy", plot_energy(samples))):
        path = os.path.join(out_dir, f"{name}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths[name] = path
    return paths


def run_demo(out_dir: str = "outputs", seed: int = 0, steps: Optional[int] = None, device: str = "cpu",
             quick: bool = False, progress: bool = True, plots: bool = True) -> dict:
    """Run the main job (see the module docstring) and write its report; returns every number.

    :param out_dir: folder for ``report.md``, ``results.json`` and the figures (created if missing).
    :param seed: seeds the data, the model, the chains, AIS and SVI.
    :param steps: training steps (default 2500; 40 with ``quick``).
    :param device: ``"cpu"`` or ``"cuda"``; a ``ValueError`` when CUDA is asked for and absent.
    :param quick: a smoke run of a few seconds (fewer data, steps, draws and particles).
    :param progress: show the training progress bar.
    :param plots: draw the figures (``False``: the numbers and the report only).
    :returns: dict of the numbers in the report (``results.json``), with ``report`` and ``figure`` paths.
    """
    from . import ml
    from .datasets import eight_gaussians, eight_gaussians_log_prob
    from .diagnostics import check_negatives
    from .partition import log_likelihood, log_partition

    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a path, got {type(out_dir).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TypeError(f"seed must be an integer >= 0, got {seed!r}")
    if steps is not None:
        steps = check_positive_int(steps, "steps")
    dev = _device(device)
    steps = steps or (40 if quick else STEPS)
    n_train, n_test = (500, 500) if quick else (4000, 2000)
    t_start = time.perf_counter()
    timings = {}

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.1f} s] {msg}", flush=True)

    # 1. training ---------------------------------------------------------------------------------------
    data = eight_gaussians(n_train, seed=seed).to(dev)
    test = eight_gaussians(n_test, seed=seed + 1).to(dev)
    torch.manual_seed(seed)
    energy = WallMLP(32 if quick else WIDTH).to(dev)

    log(f"training an energy on {n_train} points of the 8 Gaussians by maximum likelihood with ml_fit's "
        f"defaults: persistent HMC negatives with jumps between modes ({steps} steps, device {dev})")
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # the verdict is reported below, in words
        warnings.simplefilter("ignore", ml.FitWarning)
        run = ml.ml_fit(energy, data, steps=steps, heldout=test, reference=eight_gaussians_log_prob, seed=seed,
                        progress=progress, **({"batch_size": 128, "diagnostics_options": {"num_draws": 20}}
                                              if quick else {}))
    timings["train_s"] = time.perf_counter() - t0
    history = run.history
    verdict = run.check

    # 2. the negatives, checked -------------------------------------------------------------------------
    log("checking the negatives: 8 chains of the negatives' own HMC transition on the trained energy")
    t0 = time.perf_counter()
    samples = run.negatives.probe(energy, num_chains=8, num_draws=40 if quick else 200, seed=seed + 7, data=data)
    report = check_negatives(samples, warn=False)
    measured = run.diagnostics.measure(samples)  # R-hat/ESS of the coordinates and of F(y), energy gap
    timings["diagnostics_s"] = time.perf_counter() - t0

    # 3. log Z: AIS next to quadrature ------------------------------------------------------------------
    log("log Z by annealed importance sampling and by quadrature")
    t0 = time.perf_counter()
    # in float64: AIS accumulates a thousand small log-weight increments, and in float32 it drifts by about
    # 0.01 nats (measured on the exactly normalized 8 Gaussians: -0.011 +- 0.005 in float32, -0.001 in float64)
    energy64 = copy.deepcopy(energy).double()
    with torch.no_grad():
        quad = log_partition(energy64, method="quadrature", low=[-QUAD_BOX] * 2, high=[QUAD_BOX] * 2,
                             num_points=64 if quick else 160)
        ais = log_partition(energy64, method="ais", scale=2.5, num_particles=256 if quick else 1024,
                            num_temperatures=50 if quick else 1000, seed=seed)
    timings["log_z_s"] = time.perf_counter() - t0

    # 4. held-out NLL: EBM, truth, Pyro mixture by SVI --------------------------------------------------
    log("held-out NLL: the EBM, the true density and a Pyro mixture of 8 Gaussians fitted by SVI")
    t0 = time.perf_counter()
    with torch.no_grad():
        nll_ebm = float(-log_likelihood(energy64, test.double(), quad).mean())
        nll_ebm_ais = float(-log_likelihood(energy64, test.double(), ais).mean())
        nll_true = float(-eight_gaussians_log_prob(test).mean())
    mixture = fit_pyro_mixture(data, 50 if quick else 600, seed)
    with torch.no_grad():
        nll_gmm = float(-mixture.log_prob(test).mean())
    timings["compare_s"] = time.perf_counter() - t0

    # figures and report --------------------------------------------------------------------------------
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    fig_path = os.path.join(out_dir, "demo.png")
    if plots:
        _figure(fig_path, energy, data, run.negatives.buffer, float(quad.value), history, dpi=100)
        _diagnostic_figures(out_dir, samples)
    timings["figures_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start

    def num(x):
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)

    results = {
        "seed": seed, "steps": steps, "device": str(dev), "quick": quick,
        "n_train": n_train, "n_test": n_test,
        "final_loss": num(history.last["loss"]),
        "final_gap": num(history.last["gap"]),
        "probes": [{k: (v if k == "step" else list(v) if k == "problems" else num(v)) for k, v in r.items()}
                   for r in run.diagnostics.reports],
        "negatives": {
            "chains": report.n_chains, "draws": report.n_draws,
            "max_rhat_y": num(report.max_rhat), "rhat_energy": num(measured["diag_rhat_energy"]),
            "min_ess_bulk_y": num(report.min_ess_bulk), "min_ess_tail_y": num(report.min_ess_tail),
            "ess_bulk_energy": num(measured["diag_ess_bulk_energy"]),
            "min_bfmi": None if report.bfmi is None else num(float(min(report.bfmi))),
            "divergences": report.n_divergent, "mean_acceptance": num(report.mean_acceptance),
            "energy_gap": num(measured["diag_energy_gap"]), "energy_gap_se": num(measured["diag_energy_gap_se"]),
            "problems": list(report.problems),
        },
        "log_z": {
            "quadrature": num(quad.value), "quadrature_error": float(quad.stderr),
            "ais": num(ais.value), "ais_stderr": num(ais.stderr), "ais_ess": num(ais.ess),
            "ais_particles": int(ais.log_weights.numel()),
        },
        "heldout_nll": {"ebm": num(nll_ebm), "ebm_with_ais_log_z": num(nll_ebm_ais), "true": num(nll_true),
                        "pyro_mixture_svi": num(nll_gmm)},
        "verdict": {
            "ok": bool(verdict.ok), "problems": list(verdict.problems),
            "mmd_p_value": num(verdict.p_value), "negatives_p_value": num(verdict.negatives_p_value),
            "nll_gap_to_truth": num(verdict.nll_gap), "nll_tolerance": verdict.nll_tolerance,
            "alpha": verdict.alpha,
        },
    }
    diff = results["log_z"]["ais"] - results["log_z"]["quadrature"]
    results["log_z"]["ais_minus_quadrature"] = num(diff)
    results["log_z"]["z_score"] = num(diff / max(results["log_z"]["ais_stderr"], 1e-12))
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({**results, "seconds": {k: round(v, 1) for k, v in timings.items()}}, f, indent=1)
    report_path = os.path.join(out_dir, "report.md")
    with open(report_path, "w") as f:
        f.write(_markdown(results, timings))
    log(f"done in {timings['total_s']:.0f} s")
    print(f"\nverdict: {_verdict_sentence(results['verdict'])}")
    print(f"held-out NLL (nats/point): EBM {nll_ebm:.3f}   true density {nll_true:.3f}   "
          f"Pyro mixture (SVI) {nll_gmm:.3f}")
    print(f"log Z: AIS {results['log_z']['ais']:.4f} +- {results['log_z']['ais_stderr']:.4f}   "
          f"quadrature {results['log_z']['quadrature']:.4f}")
    print(f"negatives: R-hat of F {results['negatives']['rhat_energy']:.3f}, max R-hat of y "
          f"{report.max_rhat:.3f}, divergences {report.n_divergent}")
    print(f"\nresults in {os.path.abspath(out_dir)}: report.md (open it first), results.json, demo.png, "
          "trace.png, rank.png, energy.png")
    return {**results, "seconds": timings, "report": report_path, "figure": fig_path}


def _verdict_sentence(v) -> str:
    """The fit's verdict in words (from ``check_fit``)."""
    if v["ok"]:
        return (f"GOOD FIT -- the model's samples and the held-out data agree (MMD test p = {v['mmd_p_value']:.3f}), "
                f"the training negatives agree with the model's own samples (p = {v['negatives_p_value']:.3f}) "
                f"and the held-out NLL is {v['nll_gap_to_truth']:+.3f} nats from the true density's "
                f"(tolerance {v['nll_tolerance']}).")
    return "FAILED FIT -- " + "; ".join(v["problems"]) + "."


def _markdown(r, timings) -> str:
    lz, nll, ng = r["log_z"], r["heldout_nll"], r["negatives"]

    def f(x, fmt=".3f"):
        return "n/a" if x is None else format(x, fmt)

    lines = [
        "# pyro-ebm demo: maximum likelihood with HMC negatives on the 8 Gaussians", "",
        f"Seed {r['seed']}, {r['steps']} training steps, {r['n_train']} training and {r['n_test']} held-out "
        f"points, device {r['device']}{' (quick run)' if r['quick'] else ''}. "
        f"Wall time {timings['total_s']:.0f} s (training {timings['train_s']:.0f} s).", "",
        "![energy landscape, learned density and training curves](demo.png)", "",
        "Left: the trained energy with the data (black) and the persistent HMC negatives (red). Middle: the "
        "learned density exp(-F)/Z. Right: the loss and the mean energies of data and negatives during "
        "training (moving averages; the raw values faint), and the R-hat of F(negatives) at each probe "
        "(right axis).", "",
        "## Verdict", "",
        _verdict_sentence(r["verdict"]), "",
        "From `pyro_ebm.ml.check_fit`: exact samples of the trained model (from its quadrature grid) against "
        "the held-out data and against the replay buffer of training (kernel two-sample tests at level "
        f"{r['verdict']['alpha']} split between them), and the held-out NLL against the true density's.", "",
        "## Held-out negative log-likelihood (nats per point, lower is better)", "",
        "| model | NLL |", "| --- | --- |",
        f"| EBM, log Z by quadrature | {f(nll['ebm'])} |",
        f"| EBM, log Z by AIS | {f(nll['ebm_with_ais_log_z'])} |",
        f"| true density | {f(nll['true'])} |",
        f"| Pyro mixture of 8 Gaussians (SVI, AutoDelta) | {f(nll['pyro_mixture_svi'])} |", "",
        "## log Z", "",
        "| estimator | log Z | error |", "| --- | --- | --- |",
        f"| Gauss-Legendre quadrature on [-6, 6]^2 | {f(lz['quadrature'], '.4f')} | {f(lz['quadrature_error'], '.1e')} (refinement) |",
        f"| AIS ({lz['ais_particles']} particles) | {f(lz['ais'], '.4f')} | {f(lz['ais_stderr'], '.4f')} (std. error; ESS {f(lz['ais_ess'], '.0f')}) |",
        "", f"AIS minus quadrature: {f(lz['ais_minus_quadrature'], '.4f')} "
        f"({f(lz['z_score'], '.2f')} standard errors).", "",
        "## Are the negatives trustworthy?", "",
        f"A final run of the negatives' own HMC transition from {ng['chains']} replay-buffer states, "
        f"{ng['draws']} draws each, summarised with ArviZ:", "",
        "| check | value |", "| --- | --- |",
        f"| R-hat of F(y) | {f(ng['rhat_energy'])} |",
        f"| max R-hat of y (coordinates) | {f(ng['max_rhat_y'])} |",
        f"| bulk ESS of F(y) | {f(ng['ess_bulk_energy'], '.0f')} |",
        f"| min bulk / tail ESS of y | {f(ng['min_ess_bulk_y'], '.0f')} / {f(ng['min_ess_tail_y'], '.0f')} |",
        f"| min BFMI over chains | {f(ng['min_bfmi'])} |",
        f"| divergent transitions | {ng['divergences']} |",
        f"| mean acceptance | {f(ng['mean_acceptance'])} |",
        f"| energy gap F(negatives) - F(data) | {f(ng['energy_gap'])} +- {f(ng['energy_gap_se'])} |", "",
        "ArviZ's checks (R-hat <= 1.05, ESS >= 400, BFMI >= 0.3, no divergences) on the coordinates: "
        + ("all pass." if not ng["problems"] else "; ".join(ng["problems"]) + "."),
        "The chains are the sampler of training: HMC transitions and, after each pair, one independence "
        "jump proposed from the data's kernel density estimate, which lets a chain change modes; these "
        "numbers say whether that sampler mixes on the trained energy, not whether the energy is right "
        "(the verdict above says that).", "",
        "![trace plot of the negatives](trace.png)", "",
        f"Trace plot of 4 of the {ng['chains']} chains: for each coordinate of the negatives, y[0] and y[1], "
        "a histogram of each chain's draws (left) and the draws in order (right). Chains that mix overlap "
        "and look alike.", "",
        "![rank plot of the negatives](rank.png)", "",
        "Rank plot of the same 4 chains: each chain's histogram of the ranks of its draws among all their "
        "draws, divided by the count expected for mixed chains; mixed chains stay near 1, inside the grey "
        "95% band.", "",
        "![energy plot of the negatives' HMC](energy.png)", "",
        f"The Hamiltonian's energy over all {ng['chains']} chains: the marginal energy and the energy "
        "transitions between successive draws (left), and the BFMI of each chain (right); a BFMI below 0.3 "
        "means that the sampler explores the energy slowly.", "",
        "## Sampler probes during training", "",
        "| step | R-hat F | R-hat y | ESS F | ESS y | acceptance | divergences | energy gap |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in r["probes"]:
        lines.append(
            f"| {p['step']} | {f(p['diag_rhat_energy'])} | {f(p['diag_rhat'])} | {f(p['diag_ess_bulk_energy'], '.0f')} "
            f"| {f(p['diag_ess_bulk'], '.0f')} | {f(p['diag_acceptance'])} | {f(p['diag_divergences'], '.0f')} "
            f"| {f(p['diag_energy_gap'])} |")
    lines += ["", "Every number is also in `results.json`."]
    return "\n".join(lines) + "\n"
