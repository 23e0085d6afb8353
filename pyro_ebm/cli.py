"""The ``pyro-ebm`` command.

* ``pyro-ebm demo`` -- the main job on embedded data (no downloads): maximum-likelihood training with HMC
  negatives, ArviZ diagnostics of the negatives, log Z by AIS next to quadrature, held-out NLL next to the
  truth and a Pyro mixture; writes a one-page report and figures (:mod:`pyro_ebm.demo`).
* ``pyro-ebm tour`` -- a short tour of the first ideas: inference by energy minimisation, a
  Gibbs-Boltzmann site sampled with Pyro's NUTS and diagnosed with ArviZ, and free energies over a latent
  variable from high temperature to zero temperature.
* ``pyro-ebm examples`` -- lists the example scripts of ``examples/`` (each with the first paragraph of
  its docstring); ``pyro-ebm examples run NAME [--quick] [options]`` runs one.
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from typing import Dict, Optional

__all__ = ["main", "tour", "list_examples", "example_parser", "run_example"]


def tour(out_dir: str = "outputs", seed: int = 0, quick: bool = False, plots: bool = True) -> dict:
    """Run the tour (``pyro-ebm tour``); returns the numbers it printed (used by the tests)."""
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a path, got {type(out_dir).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TypeError(f"seed must be an integer >= 0, got {seed!r}")
    import pyro
    import torch
    from pyro.infer import MCMC, NUTS

    from . import GibbsBoltzmann, argmin_energy, as_energy, free_energy
    from .datasets import double_well_energy, multimodal_regression
    from .diagnostics import to_arviz

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    results = {}
    energy = as_energy(lambda y: double_well_energy(y, tilt=0.25), event_shape=(2,))

    print("== 1. Inference is minimisation: y* = argmin_y F(y) (the lecture: 'there may be multiple solutions')")
    starts = torch.stack([torch.linspace(-2, 2, 8), torch.zeros(8)], -1)
    minima = argmin_energy(energy, starts).distinct(tol=1e-2)
    for v, e, c in zip(minima.values, minima.energies, minima.counts):
        print(f"   minimum at ({v[0]:+.3f}, {v[1]:+.3f})  F = {e:+.4f}  found by {int(c)} of 8 restarts")
    results["minima"] = minima

    print("== 2. The Gibbs-Boltzmann distribution exp(-beta F) as a Pyro site, sampled by NUTS (2 chains)")
    beta = 1.0

    def model():
        return pyro.sample("y", GibbsBoltzmann(energy, beta=beta))

    n = 150 if quick else 500
    with warnings.catch_warnings():  # on small machines Pyro runs the chains one after the other
        warnings.filterwarnings("ignore", message="num_chains=2 is more than available_cpu")
        mcmc = MCMC(NUTS(model), num_samples=n, warmup_steps=n, num_chains=2, disable_progbar=True)
        mcmc.run()
    idata = to_arviz(mcmc)
    draws = mcmc.get_samples()["y"]
    right = (mcmc.get_samples(group_by_chain=True)["y"][..., 0] > 0).double().numpy()
    frac_right = float(right.mean())
    # exact mode weight of the right well by 2-D quadrature on a grid
    g = torch.linspace(-3, 3, 601, dtype=torch.float64)
    yy = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1)
    w = torch.exp(-beta * double_well_energy(yy, tilt=0.25))
    exact_right = (w[g > 0].sum() / w.sum()).item()
    import arviz as az

    rhat = float(az.rhat(idata)["y"].max())
    ess = float(az.ess(idata)["y"].min())
    se = math.sqrt(frac_right * (1 - frac_right) / float(az.ess(right)))
    print(f"   P(y0 > 0): NUTS {frac_right:.3f} +- {se:.3f} (MCSE)  vs quadrature {exact_right:.3f}")
    print(f"   diagnostics of the draws: max R-hat {rhat:.3f}, min bulk ESS {ess:.0f}")
    results.update(frac_right=frac_right, frac_right_se=se, exact_right=exact_right, rhat=rhat, ess=ess)

    print("== 3. Latent variables: the free energy F_beta(y) = -1/beta log sum_z exp(-beta E(y, z))")
    x, y = multimodal_regression(200, seed=seed)
    # E(y, z; x) = (y - z sqrt(x))^2 with z in {-1, +1} picking the branch
    latent = as_energy(lambda y, z, x: (y - z.unsqueeze(-1) * x.sqrt()).pow(2).squeeze(-1), event_shape=(1,), latent_shape=())
    z_values = torch.tensor([-1.0, 1.0])
    for b in [1.0, 10.0, 100.0, math.inf]:
        f = free_energy(latent, y, z_values, x=x, beta=b).mean().item()
        print(f"   beta = {b:>5}: mean free energy over the data {f:+.5f}")
        results[f"free_energy_beta_{b}"] = f
    mse_blurry = (y**2).mean().item()  # the MSE regressor's prediction is the average, 0
    print(f"   a single-output regressor predicts the average (0): its mean squared error is {mse_blurry:.3f};")
    print(f"   the zero-temperature free energy (the error of the best branch) is {results['free_energy_beta_inf']:.5f}")

    if plots:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        os.makedirs(out_dir, exist_ok=True)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        f_grid = double_well_energy(yy.float(), tilt=0.25)
        axes[0].contourf(g.numpy(), g.numpy(), f_grid.T.numpy(), levels=30, cmap="viridis")
        axes[0].scatter(draws[:, 0], draws[:, 1], s=3, c="white", alpha=0.5, label="NUTS draws")
        axes[0].scatter(minima.values[:, 0], minima.values[:, 1], c="red", marker="x", s=80, label="argmin")
        axes[0].set_title("double well: energy, draws at beta=1, minima")
        axes[0].legend(loc="lower left")
        axes[1].scatter(x.squeeze(-1), y.squeeze(-1), s=6, label="data")
        axes[1].axhline(0.0, color="gray", ls="--", label="MSE prediction (blurry)")
        xs = torch.linspace(0, 1, 100)
        axes[1].plot(xs, xs.sqrt(), "r", label="argmin_z branches")
        axes[1].plot(xs, -xs.sqrt(), "r")
        axes[1].set_title("the world is stochastic")
        axes[1].legend(loc="lower left")
        path = os.path.join(out_dir, "tour.png")
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        print(f"== figure written to {path}")
        results["figure"] = path
    print(f"== done in {time.perf_counter() - t0:.1f} s")
    return results


def example_parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every example script shares.

    ``--out`` (folder for figures, default ``outputs``), ``--quick`` (a smoke run of a few seconds),
    ``--seed`` and ``--threads`` (torch CPU threads; 1 is fastest for the examples' small models). Add the
    script's own flags to it, then call :func:`run_example`.
    """
    if not isinstance(doc, str) or not doc.strip():
        raise TypeError(f"doc must be the script's non-empty docstring, got {doc!r}")
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--out", default="outputs", help="folder for the figures (default: outputs)")
    parser.add_argument("--quick", action="store_true", help="fast smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    return parser


def run_example(run, parser: argparse.ArgumentParser, argv=None) -> dict:
    """Parse ``argv`` with ``parser`` and return ``run(args)``, with torch limited to ``--threads`` threads
    meanwhile (the previous setting is restored, so tests can call examples in-process)."""
    import torch

    if not callable(run):
        raise TypeError(f"run must be a callable run(args) -> dict, got {type(run).__name__}")
    if not isinstance(parser, argparse.ArgumentParser):
        raise TypeError(f"parser must be an argparse.ArgumentParser (see example_parser), got {type(parser).__name__}")
    args = parser.parse_args(argv)
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(previous)


# ------------------------------------------------------------------------------------------------------
# the examples


def examples_dir() -> Optional[str]:
    """The ``examples/`` folder of the source tree this package runs from (``None`` if there is none)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(here, "examples")
    return path if os.path.isdir(path) else None


def list_examples(folder: Optional[str] = None) -> Dict[str, str]:
    """``{name: summary}`` for every ``*.py`` script in ``folder`` (default: ``examples/``); the summary is the
    first paragraph of the script's docstring, on one line.

    The scripts are parsed, not imported, so listing is instant and a new script shows up by itself.

    Example::

        >>> import os, tempfile
        >>> d = tempfile.mkdtemp()
        >>> with open(os.path.join(d, "bowl.py"), "w") as f:
        ...     _ = f.write("'''A bowl.\\n\\nMore.'''\\n")
        >>> list_examples(d)
        {'bowl': 'A bowl.'}
    """
    if folder is not None and (not isinstance(folder, (str, os.PathLike)) or not os.path.isdir(folder)):
        raise ValueError(f"folder must be a folder of example scripts, got {folder!r} (not a folder)")
    folder = folder or examples_dir()
    if folder is None or not os.path.isdir(folder):
        raise FileNotFoundError(
            "no examples/ folder next to the package: the examples ship with the source tree "
            "(clone the repository and install it with `pip install -e .`)"
        )
    out = {}
    for fname in sorted(os.listdir(folder)):
        if not fname.endswith(".py") or fname.startswith("_"):
            continue
        with open(os.path.join(folder, fname), encoding="utf-8") as f:
            source = f.read()
        try:
            doc = ast.get_docstring(ast.parse(source)) or ""
        except SyntaxError:
            doc = ""
        summary = " ".join(doc.strip().split("\n\n")[0].split())
        out[fname[:-3]] = summary or "(no description)"
    return out


def _examples_command(args, run_parser: argparse.ArgumentParser) -> int:
    examples = list_examples(args.dir)
    if args.action is None:
        width = max(map(len, examples), default=0)
        columns = max(shutil.get_terminal_size().columns, width + 40)
        for name, line in examples.items():  # long summaries wrap under themselves
            print(textwrap.fill(line, columns - 1, initial_indent=f"{name:<{width}}  ",
                                subsequent_indent=" " * (width + 2), break_on_hyphens=False))
        print("\nrun one: pyro-ebm examples run NAME [--quick] [--out DIR] [--seed N]")
        return 0
    if args.name is None:
        run_parser.error("give the example's NAME, one of: " + ", ".join(examples))
    if args.name not in examples:
        print(f"pyro-ebm examples run: no example named {args.name!r}; the examples are: "
              + ", ".join(examples), file=sys.stderr)
        return 2
    folder = args.dir or examples_dir()
    cmd = [sys.executable, os.path.join(folder, args.name + ".py")] + (["--quick"] if args.quick else []) + args.rest
    print("running: " + " ".join(cmd), flush=True)
    return subprocess.call(cmd)


# ------------------------------------------------------------------------------------------------------
# the command


def _int_at_least(low: int, what: str):
    """An argparse ``type``: an integer >= ``low``; argparse names the flag in the message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, an integer >= {low}, got {text!r}")
        return value

    return parse


def _device_name(text: str) -> str:
    """An argparse ``type`` for ``--device``: ``cpu``, ``cuda`` or ``cuda:N``."""
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N (N the GPU's index), got {text!r}")
    return text


def _make_folder(parser: argparse.ArgumentParser, path: str) -> None:
    """Create the ``--out`` folder before the run, so a bad path fails at once and names the flag."""
    if os.path.exists(path) and not os.path.isdir(path):
        parser.error(f"argument --out: expected a folder, got the file {path!r}")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        parser.error(f"argument --out: cannot create the folder {path!r} ({exc.strerror or exc})")


def main(argv=None) -> int:
    seed = _int_at_least(0, "the seed")
    parser = argparse.ArgumentParser(prog="pyro-ebm", description="Energy-based models in Pyro.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser(
        "demo", help="the main job: train an energy by maximum likelihood with HMC negatives, check the "
        "negatives, estimate log Z, compare with the truth and a Pyro mixture; writes a report")
    p_demo.add_argument("--out", metavar="DIR", default="outputs",
                        help="folder for the report and figures (default: outputs)")
    p_demo.add_argument("--seed", metavar="N", type=seed, default=0, help="seed of everything (default 0)")
    p_demo.add_argument("--steps", metavar="N", type=_int_at_least(1, "the number of training steps"),
                        default=None, help="training steps (default 2500; 40 with --quick)")
    p_demo.add_argument("--device", metavar="{cpu,cuda,cuda:N}", type=_device_name, default="cpu",
                        help="where to train (default cpu)")
    p_demo.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    p_demo.add_argument("--threads", metavar="N", type=_int_at_least(1, "the number of torch CPU threads"),
                        default=1, help="torch CPU threads (default 1)")
    p_demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_tour = sub.add_parser("tour", help="a short tour: minimisation, one NUTS run, free energies")
    p_tour.add_argument("--out", metavar="DIR", default="outputs", help="folder for the figure (default: outputs)")
    p_tour.add_argument("--seed", metavar="N", type=seed, default=0, help="seed of everything (default 0)")
    p_tour.add_argument("--quick", action="store_true", help="fewer MCMC draws")
    p_tour.add_argument("--no-plots", action="store_true", help="do not write the figure")
    p_ex = sub.add_parser("examples", help="list the example scripts; `examples run NAME` runs one")
    p_ex.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    ex_sub = p_ex.add_subparsers(dest="action")
    p_run = ex_sub.add_parser("run", help="run one example")
    p_run.add_argument("name", metavar="NAME", nargs="?", help="the example's name (its file name without .py)")
    p_run.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    p_run.add_argument("rest", metavar="OPTIONS", nargs=argparse.REMAINDER,
                       help="more options for the script (--out DIR, --seed N, ...)")
    # unknown flags are reported by the subcommand they were given to, with its usage
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        owner = {"demo": p_demo, "tour": p_tour}.get(args.command) or (p_run if args.action == "run" else p_ex)
        owner.error("unrecognized arguments: " + " ".join(unknown))
    if args.command == "demo":
        import torch

        from .demo import run_demo

        if args.device.startswith("cuda") and not torch.cuda.is_available():
            p_demo.error(f"argument --device: CUDA is not available here (this torch is {torch.__version__}, "
                         "torch.cuda.is_available() is False): use --device cpu, or install a CUDA build of "
                         "torch on a machine with an NVIDIA GPU")
        _make_folder(p_demo, args.out)
        torch.set_num_threads(args.threads)
        run_demo(out_dir=args.out, seed=args.seed, steps=args.steps, device=args.device, quick=args.quick,
                 progress=not args.no_progress)
        return 0
    if args.command == "tour":
        if not args.no_plots:
            _make_folder(p_tour, args.out)
        tour(out_dir=args.out, seed=args.seed, quick=args.quick, plots=not args.no_plots)
        return 0
    return _examples_command(args, p_run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
