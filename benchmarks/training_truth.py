"""Maximum-likelihood training with the defaults a user gets, scored against the true density.

For every embedded 2-D toy density of :data:`pyro_ebm.datasets.TOY_2D` (each with an exact ``log_prob``)
and every seed, one cell:

* data: ``n_train`` points (``--n-train``, default 4000) drawn with ``seed``, and 2000 held-out points
  drawn with ``seed + 1000``, float32;
* the EBM: ``pyro_ebm.demo.WallMLP(64)`` (a SiLU MLP plus a wall outside radius 3.5, so it is
  normalizable), initialised after ``torch.manual_seed(seed)`` and trained by
  ``pyro_ebm.ml.ml_fit(energy, data, seed=seed, progress=False)`` -- every other option left at
  ``ml_fit``'s defaults (``steps`` only when ``--steps`` is given): the point is to measure what the
  defaults deliver;
* its held-out NLL in nats per point, :math:`\\overline{F(y)} + \\log Z`, with :math:`\\log Z` by
  Gauss-Legendre quadrature on :math:`[-6, 6]^2` on a float64 deep copy of the trained energy, next to
  the true density's held-out NLL, and the gap between the two (0 is perfect);
* two probabilistic baselines fitted in the same cell, on the same training data, by maximum likelihood:
  a Pyro mixture of isotropic Gaussians (:func:`pyro_ebm.demo.fit_pyro_mixture`, MAP by SVI; the number
  of components k in {4, 8, 16} picked by NLL on the last 20% of the training data after fitting on the
  first 80%, then refitted on all of it), and a Pyro normalizing flow (below); "best baseline" is the
  lower of their held-out NLLs, and the EBM's gap to it is reported too;
* the verdict of :func:`pyro_ebm.fit_check.check_fit` on the EBM (held-out data, the true density as the
  reference, the persistent replay buffer as the negatives when the sampler has one): ``ok``, ``problems``
  (the sentences are in the JSON) or ``error`` (it raised, e.g. an energy it finds not normalizable);
* the wall time of ``ml_fit``.

The flow: a standard normal base in 2-D, then 4 rational-quadratic spline coupling layers
(``pyro.distributions.transforms.spline_coupling``: 16 bins on [-4, 4], conditioner an MLP with two
hidden layers of 64), the two coordinates swapped between layers, and a fixed affine map to the training
data's mean and standard deviation; Adam (learning rate 5e-3, cosine decay to 0) on minibatches of 256
drawn with replacement, ``--flow-steps`` steps (default 3000), parameters initialised after
``torch.manual_seed(seed)``.

The cells run in ``--jobs`` worker processes (default 2), each with one torch thread and, when the process
may use at least that many cores, pinned to a core of its own. The script prints a markdown table, one row
per cell, then per dataset the median and the largest gap over the seeds, and writes every number to
``--json`` (default ``benchmarks/results/training_truth.json``; ``..._quick.json`` with ``--quick``).

Run: ``python benchmarks/training_truth.py [--datasets eight_gaussians,rings] [--seeds 0-4] [--steps N]
[--n-train 4000] [--jobs 2] [--json PATH]``; ``--quick`` is a smoke run (one seed, two datasets, a few
steps of everything) of well under a minute.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
N_TEST = 2000
TEST_SEED_OFFSET = 1000
WIDTH = 64
QUAD_BOX = 6.0
MIXTURE_KS = (4, 8, 16)
VALIDATION_FRACTION = 0.2
#: the normalizing flow: coupling layers, hidden units per layer of each conditioner (two layers), spline
#: bins, the spline's interval [-bound, bound] (in standardized units), minibatch size and learning rate
FLOW = dict(layers=4, hidden=64, bins=16, bound=4.0, batch_size=256, lr=5e-3)
DEFAULTS = dict(flow_steps=3000, mixture_steps=1000)
QUICK = dict(datasets=("eight_gaussians", "checkerboard"), seeds=(0,), steps=40, flow_steps=100,
             mixture_steps=40)


# ---------------------------------------------------------------------------------------------------
# the baselines
# ---------------------------------------------------------------------------------------------------


def make_flow(data: torch.Tensor):
    """The flow of the module docstring, standardized to ``data``; returns ``(distribution, modules)``."""
    import pyro.distributions as dist
    from pyro.distributions.transforms import AffineTransform, Permute, spline_coupling

    transforms, modules = [], []
    swap = torch.tensor([1, 0])
    for _ in range(FLOW["layers"]):
        layer = spline_coupling(2, hidden_dims=[FLOW["hidden"]] * 2, count_bins=FLOW["bins"], bound=FLOW["bound"])
        modules.append(layer)
        transforms += [layer, Permute(swap)]
    transforms.append(AffineTransform(data.mean(0), data.std(0), event_dim=1))
    base = dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1)
    return dist.TransformedDistribution(base, transforms), torch.nn.ModuleList(modules)


def fit_flow(data: torch.Tensor, steps: int, seed: int):
    """Maximum likelihood for the flow on ``data`` (Adam, cosine decay); returns the fitted distribution."""
    torch.manual_seed(seed)
    flow, modules = make_flow(data)
    optimizer = torch.optim.Adam(modules.parameters(), lr=FLOW["lr"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    order = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = data[torch.randint(0, data.shape[0], (FLOW["batch_size"],), generator=order)]
        loss = -flow.log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return flow


def fit_mixture(data: torch.Tensor, steps: int, seed: int):
    """The Gaussian mixture with k chosen on a validation split; returns ``(mixture, k, {k: val NLL})``."""
    from pyro_ebm.demo import fit_pyro_mixture

    n_val = max(1, int(round(VALIDATION_FRACTION * data.shape[0])))
    part, val = data[:-n_val], data[-n_val:]
    val_nll = {}
    for k in MIXTURE_KS:
        candidate = fit_pyro_mixture(part, steps, seed, k)
        with torch.no_grad():
            val_nll[k] = float(-candidate.log_prob(val).mean())
    finite = {k: v for k, v in val_nll.items() if math.isfinite(v)}
    best = min(finite, key=finite.get) if finite else MIXTURE_KS[0]
    return fit_pyro_mixture(data, steps, seed, best), best, val_nll


# ---------------------------------------------------------------------------------------------------
# one cell: a dataset and a seed
# ---------------------------------------------------------------------------------------------------


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def run_cell(dataset: str, seed: int, settings: dict) -> dict:
    """Train the EBM and the baselines on one dataset and seed; returns every number of the cell."""
    from pyro_ebm.datasets import TOY_2D
    from pyro_ebm.demo import WallMLP
    from pyro_ebm.ml import ml_fit
    from pyro_ebm.partition import log_likelihood, log_partition

    warnings.filterwarnings("ignore")
    t_cell = time.perf_counter()
    sampler, log_prob = TOY_2D[dataset]
    data = sampler(settings["n_train"], seed=seed).float()
    test = sampler(N_TEST, seed=seed + TEST_SEED_OFFSET).float()
    out = dict(dataset=dataset, seed=seed, n_train=int(data.shape[0]), n_test=int(test.shape[0]), errors={})
    with torch.no_grad():
        out["truth_nll"] = float(-log_prob(test.double()).mean())

    # the EBM, by ml_fit with its defaults
    torch.manual_seed(seed)
    energy = WallMLP(WIDTH)
    options = dict(seed=seed, progress=False)
    if settings["steps"] is not None:
        options["steps"] = settings["steps"]
    run = None
    t0 = time.perf_counter()
    try:
        run = ml_fit(energy, data, **options)
    except Exception as exc:  # a default that fails is a result too
        out["errors"]["train"] = _error(exc)
    out["train_s"] = time.perf_counter() - t0
    out["steps"] = settings["steps"] if settings["steps"] is not None else _steps_done(run)

    out["ebm_nll"] = out["log_z"] = out["log_z_error"] = math.nan
    if run is not None:
        try:
            energy64 = copy.deepcopy(energy).double()
            with torch.no_grad():
                log_z = log_partition(energy64, method="quadrature", low=[-QUAD_BOX] * 2, high=[QUAD_BOX] * 2)
                out["ebm_nll"] = float(-log_likelihood(energy64, test.double(), log_z).mean())
            out["log_z"], out["log_z_error"] = float(log_z.value), float(log_z.stderr)
        except Exception as exc:
            out["errors"]["log_z"] = _error(exc)
    out["gap_to_truth"] = out["ebm_nll"] - out["truth_nll"]

    # the model check, outside ml_fit whatever keywords it takes
    out["check_fit"], out["check_fit_problems"], out["check_fit_numbers"] = "error", [], {}
    if run is not None:
        try:
            from pyro_ebm.fit_check import check_fit

            buffer = getattr(run.negatives, "buffer", None)
            kwargs = dict(reference=log_prob, seed=seed)
            if isinstance(buffer, torch.Tensor) and buffer.dim() == 2 and buffer.shape[0] >= 2:
                kwargs["negatives"] = buffer.detach()
            report = check_fit(energy, test, **kwargs)
            out["check_fit"] = "ok" if report.ok else "problems"
            out["check_fit_problems"] = list(report.problems)
            out["check_fit_numbers"] = dict(
                mmd=report.mmd, p_value=report.p_value, negatives_mmd=report.negatives_mmd,
                negatives_p_value=report.negatives_p_value, heldout_nll=report.heldout_nll,
                nll_gap=report.nll_gap, log_z=report.log_z, bounds=report.bounds,
            )
        except Exception as exc:
            out["errors"]["check_fit"] = _error(exc)
            out["check_fit_problems"] = [out["errors"]["check_fit"]]

    # the baselines
    t0 = time.perf_counter()
    out["mixture_nll"] = math.nan
    try:
        mixture, k, val_nll = fit_mixture(data, settings["mixture_steps"], seed)
        with torch.no_grad():
            out["mixture_nll"] = float(-mixture.log_prob(test).mean())
        out["mixture_k"], out["mixture_validation_nll"] = k, {str(c): v for c, v in val_nll.items()}
    except Exception as exc:
        out["errors"]["mixture"] = _error(exc)
    out["mixture_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["flow_nll"] = math.nan
    try:
        flow = fit_flow(data, settings["flow_steps"], seed)
        with torch.no_grad():
            out["flow_nll"] = float(-flow.log_prob(test).mean())
    except Exception as exc:
        out["errors"]["flow"] = _error(exc)
    out["flow_s"] = time.perf_counter() - t0
    baselines = [v for v in (out["flow_nll"], out["mixture_nll"]) if math.isfinite(v)]
    out["best_baseline_nll"] = min(baselines) if baselines else math.nan
    out["gap_to_best_baseline"] = out["ebm_nll"] - out["best_baseline_nll"]
    out["cell_s"] = time.perf_counter() - t_cell
    return out


def _steps_done(run):
    """Optimizer steps of an ``ml_fit`` run with the default ``steps`` (from its history, when it has one)."""
    try:
        return int(run.history.last["step"])
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------------------------------


def _init_worker(cores) -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    if cores is not None:
        os.sched_setaffinity(0, {cores.get()})


def _usable_cores():
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return None


def run_cells(cells, settings: dict, jobs: int):
    """Run ``(dataset, seed)`` cells, ``jobs`` at a time; yields each result as it finishes."""
    jobs = max(1, min(jobs, len(cells)))
    if jobs == 1:
        torch.set_num_threads(1)
        for dataset, seed in cells:
            yield run_cell(dataset, seed, settings)
        return
    os.environ["OMP_NUM_THREADS"] = "1"  # read by the workers' torch when they start
    ctx = mp.get_context("spawn")
    cores = _usable_cores()
    queue = None
    if cores is not None and len(cores) >= jobs:
        queue = ctx.Queue()
        for core in cores[:jobs]:
            queue.put(core)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(queue,)) as pool:
        futures = [pool.submit(run_cell, dataset, seed, settings) for dataset, seed in cells]
        for future in as_completed(futures):
            yield future.result()


# ---------------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------------


def parse_seeds(text: str):
    """``"0-4"`` -> ``[0, 1, 2, 3, 4]``, ``"0,3"`` -> ``[0, 3]``, ``"0-2,7"`` -> ``[0, 1, 2, 7]``."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            values = range(int(lo), int(hi) + 1) if sep else [int(lo)]
        except ValueError:
            raise argparse.ArgumentTypeError(f"seeds must look like 0-4 or 0,3, got {text!r}") from None
        seeds += [s for s in values if s not in seeds]
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be non-negative and at least one, got {text!r}")
    return seeds


def _fmt(value, signed=False):
    if value is None or not math.isfinite(value):
        return "nan" if value is None or math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def table(rows) -> str:
    lines = ["| dataset | seed | EBM NLL | truth | gap to truth | flow | mixture | gap to best baseline | "
             "check_fit | train s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['seed']} | {_fmt(r['ebm_nll'])} | {_fmt(r['truth_nll'])} | "
            f"{_fmt(r['gap_to_truth'], True)} | {_fmt(r['flow_nll'])} | {_fmt(r['mixture_nll'])} "
            f"(k={r.get('mixture_k', '-')}) | {_fmt(r['gap_to_best_baseline'], True)} | {r['check_fit']} | "
            f"{r['train_s']:.1f} |"
        )
    return "\n".join(lines)


def summarise(rows, datasets):
    out = {}
    for name in datasets:
        mine = [r for r in rows if r["dataset"] == name]
        if not mine:
            continue
        entry = dict(cells=len(mine), check_fit_ok=sum(r["check_fit"] == "ok" for r in mine))
        for key in ("gap_to_truth", "gap_to_best_baseline"):
            values = [r[key] for r in mine]
            finite = [v for v in values if math.isfinite(v)]
            entry[f"median_{key}"] = statistics.median(finite) if finite else math.nan
            entry[f"max_{key}"] = max(values) if all(math.isfinite(v) for v in values) else math.inf
        out[name] = entry
    return out


def summary_table(summary) -> str:
    lines = ["| dataset | cells | median gap to truth | max gap to truth | median gap to best baseline | "
             "max gap to best baseline | check_fit ok |", "|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {s['cells']} | {_fmt(s['median_gap_to_truth'], True)} | {_fmt(s['max_gap_to_truth'], True)} "
            f"| {_fmt(s['median_gap_to_best_baseline'], True)} | {_fmt(s['max_gap_to_best_baseline'], True)} | "
            f"{s['check_fit_ok']}/{s['cells']} |"
        )
    return "\n".join(lines)


def rst_tables(record) -> str:
    """The per-cell and per-dataset tables of a result ``record`` (as written to ``--json``) in
    reStructuredText, for the docs (``--rst``); ``tests/test_benchmarks.py`` checks that the docs' copy
    is this function of the committed JSON."""
    def num(v, signed=False):
        return "nan" if v is None else _fmt(v, signed)

    s = record["settings"]
    head = (f"{len(record['cells'])} fits: ml_fit steps {s['steps'] if s['steps'] is not None else 'default'}, "
            f"{s['n_train']} training points, flow {s['flow_steps']} steps, mixture {s['mixture_steps']} SVI steps "
            f"a fit; torch {record['machine']['torch']}, {record['wall_s'] / 60:.0f} min on "
            f"{s['jobs']} core(s).")
    lines = [head, "", ".. list-table:: held-out NLL, nats per point (gaps: EBM minus the other)", "   :header-rows: 1", "",
             "   * - dataset", "     - seed", "     - EBM", "     - truth", "     - gap to truth", "     - flow",
             "     - mixture", "     - gap to best baseline", "     - check_fit", "     - train s"]
    for r in record["cells"]:
        lines += [f"   * - {r['dataset']}", f"     - {r['seed']}", f"     - {num(r['ebm_nll'])}",
                  f"     - {num(r['truth_nll'])}", f"     - {num(r['gap_to_truth'], True)}", f"     - {num(r['flow_nll'])}",
                  f"     - {num(r['mixture_nll'])} (k={r.get('mixture_k', '-')})",
                  f"     - {num(r['gap_to_best_baseline'], True)}", f"     - {r['check_fit']}",
                  f"     - {r['train_s']:.0f}"]
    lines += ["", ".. list-table:: per data set, over the seeds", "   :header-rows: 1", "",
              "   * - dataset", "     - median gap to truth", "     - largest gap to truth",
              "     - median gap to best baseline", "     - check_fit ok"]
    for name, e in record["summary"].items():
        lines += [f"   * - {name}", f"     - {num(e['median_gap_to_truth'], True)}",
                  f"     - {num(e['max_gap_to_truth'], True)}", f"     - {num(e['median_gap_to_best_baseline'], True)}",
                  f"     - {e['check_fit_ok']}/{e['cells']}"]
    return "\n".join(lines) + "\n"


def _json_ready(value):
    """JSON without NaN/Infinity: a non-finite float becomes ``None`` (its string is kept by the table)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def main(argv=None):
    from pyro_ebm.datasets import TOY_2D

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=None,
                    help=f"comma-separated names (default: all of {', '.join(TOY_2D)}; two with --quick)")
    ap.add_argument("--seeds", type=parse_seeds, default=None, help="e.g. 0-4 (the default; 0 with --quick) or 0,3")
    ap.add_argument("--steps", type=int, default=None,
                    help="ml_fit's steps (default: not passed, ml_fit's own default; 40 with --quick)")
    ap.add_argument("--n-train", type=int, default=4000, help="training points per cell")
    ap.add_argument("--flow-steps", type=int, default=None,
                    help=f"Adam steps of the flow (default {DEFAULTS['flow_steps']}; {QUICK['flow_steps']} with --quick)")
    ap.add_argument("--mixture-steps", type=int, default=None,
                    help=f"SVI steps of each mixture fit (default {DEFAULTS['mixture_steps']}; "
                         f"{QUICK['mixture_steps']} with --quick)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes, one cell each at a time")
    ap.add_argument("--json", default=None, help="where to write every number (default benchmarks/results/"
                                                 "training_truth.json, or training_truth_quick.json with --quick)")
    ap.add_argument("--quick", action="store_true", help="smoke run: one seed, two datasets, a few steps")
    ap.add_argument("--rst", default=None, help="also write the tables in reStructuredText here (for the docs)")
    args = ap.parse_args(argv)

    names = [n.strip() for n in args.datasets.split(",") if n.strip()] if args.datasets else \
        list(QUICK["datasets"] if args.quick else TOY_2D)
    unknown = [n for n in names if n not in TOY_2D]
    if unknown or not names:
        ap.error(f"unknown dataset(s) {unknown}; choose from {', '.join(TOY_2D)}")
    seeds = args.seeds or list(QUICK["seeds"] if args.quick else range(5))
    for flag, value in (("--steps", args.steps), ("--n-train", args.n_train), ("--flow-steps", args.flow_steps),
                        ("--mixture-steps", args.mixture_steps), ("--jobs", args.jobs)):
        if value is not None and value < 1:
            ap.error(f"{flag} must be at least 1, got {value}")
    if args.n_train < 2 * max(MIXTURE_KS):
        ap.error(f"--n-train must be at least {2 * max(MIXTURE_KS)} (the mixture's validation split)")
    pick = QUICK if args.quick else DEFAULTS
    settings = dict(
        steps=args.steps if args.steps is not None else (QUICK["steps"] if args.quick else None),
        n_train=args.n_train,
        flow_steps=args.flow_steps or pick["flow_steps"],
        mixture_steps=args.mixture_steps or pick["mixture_steps"],
    )
    json_path = Path(args.json) if args.json else RESULTS / ("training_truth_quick.json" if args.quick
                                                             else "training_truth.json")

    cells = [(name, seed) for name in names for seed in seeds]
    jobs = max(1, min(args.jobs, len(cells)))
    cores = _usable_cores()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores ({len(cores) if cores else '?'} usable, load "
          f"average {load:.1f}), torch {torch.__version__}; {len(cells)} cells in {jobs} process(es), "
          f"1 torch thread each{', pinned' if cores and jobs > 1 and len(cores) >= jobs else ''}")
    print(f"ml_fit steps: {settings['steps'] if settings['steps'] is not None else 'its default'}; flow "
          f"{settings['flow_steps']} steps, mixture {settings['mixture_steps']} SVI steps per fit", flush=True)

    t_start = time.perf_counter()
    rows = []
    for r in run_cells(cells, settings, jobs):
        rows.append(r)
        errors = "; ".join(f"{k}: {v}" for k, v in r["errors"].items())
        print(f"[{r['dataset']} seed {r['seed']}] EBM {_fmt(r['ebm_nll'])} truth {_fmt(r['truth_nll'])} flow "
              f"{_fmt(r['flow_nll'])} mixture {_fmt(r['mixture_nll'])} check_fit {r['check_fit']}"
              f"{'  ERRORS ' + errors if errors else ''}\n    cell time {r['cell_s']:.1f} s", flush=True)
    wall = time.perf_counter() - t_start
    order = {name: i for i, name in enumerate(names)}
    rows.sort(key=lambda r: (order[r["dataset"]], r["seed"]))
    summary = summarise(rows, names)

    print("\nheld-out NLL, nats per point (lower is better); gaps are EBM minus the other\n")
    print(table(rows))
    print("\nper dataset, over the seeds\n")
    print(summary_table(summary))
    for r in rows:
        for problem in r["check_fit_problems"]:
            print(f"check_fit [{r['dataset']} seed {r['seed']}]: {problem}")
    print(f"\n{len(cells)} cells in {wall:.1f} s")

    json_path.parent.mkdir(parents=True, exist_ok=True)
    record = dict(
        settings=dict(settings, datasets=names, seeds=seeds, jobs=jobs, quick=args.quick, n_test=N_TEST,
                      test_seed_offset=TEST_SEED_OFFSET, energy=f"WallMLP({WIDTH})", quadrature_box=QUAD_BOX,
                      flow=FLOW, mixture_ks=list(MIXTURE_KS), validation_fraction=VALIDATION_FRACTION),
        machine=dict(arch=platform.machine(), cpu_count=os.cpu_count(), torch=torch.__version__, load_average=load),
        wall_s=wall, cells=rows, summary=summary,
    )
    with open(json_path, "w") as f:
        json.dump(_json_ready(record), f, indent=1)
    print(f"wrote {json_path}")
    if args.rst:
        with open(args.rst, "w") as f:
            f.write(rst_tables(json.loads(json.dumps(_json_ready(record)))))
        print(f"wrote {args.rst}")
    return record


if __name__ == "__main__":
    main()
