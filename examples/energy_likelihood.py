"""An energy as a likelihood: one Ising model fitted four ways, and a Gaussian precision done right.

When the parameters :math:`\\theta` of an energy are what we infer, the likelihood is
:math:`e^{-F(y;\\theta)}/Z(\\theta)` and :math:`Z(\\theta)` cannot be dropped. Part 1 fits the coupling
:math:`J` and field :math:`h` of a 3 x 3 Ising model, :math:`F(y; J, h) = -J \\sum_{\\langle ij\\rangle} s_i s_j
- h \\sum_i s_i` with spins :math:`s = 2y - 1`, to N exact draws at J = 0.3, h = 0.2, four ways:

* **ML** -- :func:`pyro_ebm.ml.ml_fit` with persistent block-Gibbs negatives; standard errors from
  :func:`pyro_ebm.likelihood.fisher_information` on the negatives;
* **PL** -- Besag's pseudo-likelihood, :func:`pyro_ebm.likelihood.pseudo_likelihood_fit` (sandwich errors);
* **NCE** -- :func:`pyro_ebm.losses.nce` against uniform noise, learning log Z as a parameter (no errors);
* **exchange** -- the posterior under a N(0, 1) prior by :func:`pyro_ebm.likelihood.exchange` with exact
  auxiliary draws by enumeration (mean, sd, 95% interval, R-hat, bulk ESS).

The 512 states make everything checkable: the exact MLE and its standard errors (log Z by enumeration) and
the exact posterior by quadrature on a grid. Part 2 is the issue that started it: a Gaussian energy
:math:`\\tfrac12 \\tau y^2` with a Gamma(2, 1) prior on the precision. The naive model (an observed
``GibbsBoltzmann`` site whose energy reads ``tau``) gets a ``DoublyIntractableWarning`` and a posterior far
from the exact conjugate one; the exchange algorithm matches it.

Run::

    python examples/energy_likelihood.py            # about 2 minutes on 2 shared CPU cores
    python examples/energy_likelihood.py --quick    # smoke run
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS

from pyro_ebm import DoublyIntractableWarning, Energy, GibbsBoltzmann, losses, product_values
from pyro_ebm.cli import example_parser, run_example
from pyro_ebm.likelihood import exchange, fisher_information, pseudo_likelihood_fit
from pyro_ebm.ml import ml_fit

SIDE = 3
EDGES = [(r * SIDE + c, r * SIDE + c + 1) for r in range(SIDE) for c in range(SIDE - 1)] + [
    (r * SIDE + c, (r + 1) * SIDE + c) for r in range(SIDE - 1) for c in range(SIDE)
]
ADJ = torch.zeros(SIDE * SIDE, SIDE * SIDE, dtype=torch.float64)
for i, j in EDGES:
    ADJ[i, j] = 1.0
TRUE = torch.tensor([0.3, 0.2], dtype=torch.float64)
STATES = product_values([0.0, 1.0], SIDE * SIDE).double()


def ising(y, theta):
    """``F(y; theta)``, ``y`` in {0, 1}^9 ``[..., 9]``, ``theta = (J, h)`` ``[..., 2]``."""
    s = 2 * y - 1
    pair = ((s @ ADJ.to(s.dtype)) * s).sum(-1)
    return -theta[..., 0] * pair - theta[..., 1] * s.sum(-1)


class IsingEnergy(Energy):
    """The same energy as a module with parameter ``theta``, for :func:`~pyro_ebm.ml.ml_fit`."""

    def __init__(self):
        super().__init__(event_shape=(SIDE * SIDE,))
        self.theta = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))

    def forward(self, y, x=None):
        return ising(y, self.theta)


def log_z(theta):
    return torch.logsumexp(-ising(STATES, theta.unsqueeze(-2)), -1)


def exact_mle(data):
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ising(data, theta).mean() + log_z(theta)
        loss.backward()
        return loss

    opt.step(closure)
    th = theta.detach()
    p = torch.softmax(-ising(STATES, th), 0)
    info = fisher_information(ising, th, data, STATES[torch.multinomial(p, 100000, replacement=True,
                                                                         generator=torch.Generator().manual_seed(0))])
    return th, info.inverse().diagonal().sqrt()


def quadrature_posterior(data, prior_sd=1.0, n=201):
    """Posterior mean and sd of (J, h) by quadrature: a coarse grid, then a fine one around the mode."""
    lo, hi = torch.tensor([-0.5, -0.5], dtype=torch.float64), torch.tensor([1.0, 1.0], dtype=torch.float64)
    for _ in range(2):
        gx = torch.linspace(float(lo[0]), float(hi[0]), n, dtype=torch.float64)
        gy = torch.linspace(float(lo[1]), float(hi[1]), n, dtype=torch.float64)
        th = torch.stack(torch.meshgrid(gx, gy, indexing="ij"), -1)
        log_post = (-ising(data, th.unsqueeze(-2)).sum(-1) - len(data) * log_z(th)
                    - 0.5 * (th**2).sum(-1) / prior_sd**2)
        w = torch.softmax(log_post.reshape(-1), 0).reshape(log_post.shape)
        mean = (w.unsqueeze(-1) * th).sum((0, 1))
        sd = (w.unsqueeze(-1) * (th - mean) ** 2).sum((0, 1)).sqrt()
        lo, hi = mean - 8 * sd, mean + 8 * sd
    return mean, sd, (gx, gy), w


def fit_ml(data, quick, seed):
    energy = IsingEnergy()
    t = time.perf_counter()
    run = ml_fit(energy, data, sampler="persistent",
                 sampler_options=dict(kernel="gibbs", buffer_size=2000, steps=2, reinit_prob=0.0),
                 diagnose_every=None, steps=150 if quick else 1500, batch_size=len(data), lr=0.02,
                 seed=seed, progress=False)
    seconds = time.perf_counter() - t
    theta = energy.theta.detach().clone()
    info = fisher_information(ising, theta, data, run.negatives.buffer.detach().double())
    return theta, info.inverse().diagonal().sqrt(), seconds


def fit_nce(data, seed):
    """NCE against uniform noise on {0, 1}^9: theta and c = log Z both learned (full batch, L-BFGS)."""
    g = torch.Generator().manual_seed(seed)
    nu = 4
    noise = (torch.rand((len(data), nu, SIDE * SIDE), generator=g) < 0.5).double()
    log_pn = -SIDE * SIDE * math.log(2.0)
    params = torch.zeros(3, dtype=torch.float64, requires_grad=True)  # J, h, c
    opt = torch.optim.LBFGS([params], max_iter=200, line_search_fn="strong_wolfe")
    t = time.perf_counter()

    def closure():
        opt.zero_grad()
        pos, neg = ising(data, params[:2]), ising(noise, params[:2])
        loss = losses.nce(pos, neg, torch.full_like(pos, log_pn), torch.full_like(neg, log_pn), params[2])
        loss.backward()
        return loss

    opt.step(closure)
    return params.detach()[:2], params.detach()[2], time.perf_counter() - t


def gaussian_part(quick, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(50, generator=g, dtype=torch.float64) * 0.5  # precision 4
    a, b = 2.0 + len(y) / 2, 1.0 + float((y**2).sum()) / 2
    exact = {"mean": a / b, "sd": math.sqrt(a) / b}

    def naive(y):
        tau = pyro.sample("tau", dist.Gamma(torch.tensor(2.0, dtype=torch.float64), 1.0))
        with pyro.plate("n", len(y)):
            pyro.sample("y", GibbsBoltzmann(lambda v: 0.5 * tau * v**2), obs=y)

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        pyro.set_rng_seed(seed)
        mcmc = MCMC(NUTS(naive), num_samples=60 if quick else 500, warmup_steps=60 if quick else 300,
                    disable_progbar=True)
        mcmc.run(y)
    flagged = any(issubclass(w.category, DoublyIntractableWarning) for w in rec)
    tau_naive = mcmc.get_samples()["tau"]

    def normal(tau, n, gen):
        return torch.randn((n,) + tuple(tau.shape), generator=gen, dtype=tau.dtype) / tau.sqrt()

    torch.manual_seed(seed)
    s = exchange(lambda v, tau: 0.5 * tau * v**2, y, dist.Gamma(torch.tensor(2.0, dtype=torch.float64), 1.0),
                 aux=normal, num_chains=16, num_warmup=200 if quick else 300,
                 num_samples=300 if quick else 2000, seed=seed)
    summ = s.summary("tau")
    return {
        "exact": exact,
        "naive": {"mean": float(tau_naive.mean()), "sd": float(tau_naive.std()), "warned": flagged},
        "exchange": {"mean": float(s.draws.mean()), "sd": float(s.draws.std()),
                     "r_hat": float(np.asarray(summ["r_hat"])[0]), "ess_bulk": float(np.asarray(summ["ess_bulk"])[0])},
    }


def run(args) -> dict:
    t_all = time.time()
    quick, seed = args.quick, args.seed
    n = 500 if quick else 2000
    p_true = torch.softmax(-ising(STATES, TRUE), 0)
    data = STATES[torch.multinomial(p_true, n, replacement=True, generator=torch.Generator().manual_seed(seed))]

    mle, mle_se = exact_mle(data)
    post_mean, post_sd, grid, weights = quadrature_posterior(data)
    rows = {}
    ml_theta, ml_se, ml_s = fit_ml(data, quick, seed)
    rows["ML (ml_fit)"] = (ml_theta, ml_se, ml_s)
    t = time.perf_counter()
    pl = pseudo_likelihood_fit(ising, data, [0.0, 1.0], torch.zeros(2, dtype=torch.float64))
    rows["pseudo-likelihood"] = (pl.theta, pl.stderr, time.perf_counter() - t)
    nce_theta, nce_c, nce_s = fit_nce(data, seed)
    rows["NCE"] = (nce_theta, None, nce_s)
    init = 0.3 * torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    ex = exchange(ising, data, dist.Normal(torch.zeros(2, dtype=torch.float64), 1.0).to_event(1), aux="exact",
                  values=STATES, num_chains=16, num_warmup=200 if quick else 300,
                  num_samples=200 if quick else 1500, init=init, seed=seed)
    flat = ex.draws.reshape(-1, 2)
    summ = ex.summary("theta")
    rows["exchange (posterior)"] = (flat.mean(0), flat.std(0), ex.info["wall_time"])

    print(f"3 x 3 Ising, N = {n} exact draws at J = {TRUE[0]:.2f}, h = {TRUE[1]:.2f}")
    print(f"{'method':24s}{'J':>9s}{'+-':>8s}{'h':>9s}{'+-':>8s}{'seconds':>9s}")
    print(f"{'exact MLE (enumeration)':24s}{mle[0]:9.4f}{mle_se[0]:8.4f}{mle[1]:9.4f}{mle_se[1]:8.4f}{'':>9s}")
    print(f"{'exact posterior (quad.)':24s}{post_mean[0]:9.4f}{post_sd[0]:8.4f}{post_mean[1]:9.4f}{post_sd[1]:8.4f}")
    result = {"n": n, "true": TRUE.tolist(), "exact_mle": mle.tolist(), "exact_mle_se": mle_se.tolist(),
              "exact_posterior_mean": post_mean.tolist(), "exact_posterior_sd": post_sd.tolist(), "methods": {}}
    for name, (th, se, secs) in rows.items():
        se_txt = [f"{v:8.4f}" for v in se.tolist()] if se is not None else ["     n/a"] * 2
        print(f"{name:24s}{th[0]:9.4f}{se_txt[0]}{th[1]:9.4f}{se_txt[1]}{secs:9.2f}")
        result["methods"][name] = {"theta": th.tolist(), "se": None if se is None else se.tolist(),
                                   "seconds": round(secs, 3)}
    lo, hi = torch.quantile(flat, 0.025, dim=0), torch.quantile(flat, 0.975, dim=0)
    result["methods"]["exchange (posterior)"].update(
        interval_95=[[float(lo[k]), float(hi[k])] for k in range(2)],
        r_hat=[float(v) for v in np.asarray(summ["r_hat"])], ess_bulk=[float(v) for v in np.asarray(summ["ess_bulk"])],
        acceptance=float(ex.stats["acceptance_rate"].mean()), aux_draws=ex.info["aux_draws"])
    result["methods"]["NCE"]["log_z"] = float(nce_c)
    result["exact_log_z_true"] = float(log_z(TRUE))
    print(f"exchange: 95% intervals J [{lo[0]:.3f}, {hi[0]:.3f}], h [{lo[1]:.3f}, {hi[1]:.3f}]; R-hat "
          f"{max(result['methods']['exchange (posterior)']['r_hat']):.3f}; "
          f"{ex.info['aux_draws']} auxiliary configurations drawn")
    print(f"NCE log Z {float(nce_c):.3f} (exact at the truth {result['exact_log_z_true']:.3f})")

    gauss = gaussian_part(quick, seed)
    result["gaussian"] = gauss
    print("\nGaussian precision tau (truth 4), Gamma(2, 1) prior, N = 50")
    print(f"  exact posterior    mean {gauss['exact']['mean']:.3f}  sd {gauss['exact']['sd']:.3f}")
    print(f"  naive NUTS         mean {gauss['naive']['mean']:.3f}  sd {gauss['naive']['sd']:.3f}  "
          f"(DoublyIntractableWarning: {gauss['naive']['warned']})")
    print(f"  exchange           mean {gauss['exchange']['mean']:.3f}  sd {gauss['exchange']['sd']:.3f}  "
          f"R-hat {gauss['exchange']['r_hat']:.3f}  ESS {gauss['exchange']['ess_bulk']:.0f}")

    os.makedirs(args.out, exist_ok=True)
    fig_path = os.path.join(args.out, "energy_likelihood.png")
    make_figure(fig_path, flat, grid, weights, rows, mle)
    result["figure"] = fig_path
    result["seconds"] = round(time.time() - t_all, 1)
    print(json.dumps({k: v for k, v in result.items() if k != "gaussian"}, indent=2))
    return result


def make_figure(path, flat, grid, weights, rows, mle):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    gx, gy = grid
    ax.contour(gx.numpy(), gy.numpy(), weights.T.numpy(), levels=6, colors="0.3", linewidths=0.8)
    ax.scatter(flat[::10, 0], flat[::10, 1], s=2, alpha=0.3, label="exchange draws")
    marks = {"ML (ml_fit)": "o", "pseudo-likelihood": "s", "NCE": "^"}
    for name, (th, se, _) in rows.items():
        if name in marks:
            xerr = None if se is None else [[2 * float(se[0])]]
            yerr = None if se is None else [[2 * float(se[1])]]
            ax.errorbar([float(th[0])], [float(th[1])], xerr=xerr, yerr=yerr, fmt=marks[name], label=name, capsize=3)
    ax.plot([float(TRUE[0])], [float(TRUE[1])], "k*", ms=12, label="truth")
    ax.plot([float(mle[0])], [float(mle[1])], "rx", ms=9, label="exact MLE")
    lo, hi = flat.min(0).values - 0.02, flat.max(0).values + 0.02
    ax.set_xlim(float(lo[0]), float(hi[0]))
    ax.set_ylim(float(lo[1]), float(hi[1]))
    ax.set_xlabel("coupling J")
    ax.set_ylabel("field h")
    ax.set_title("3 x 3 Ising: exact posterior (contours) and four fits")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    return run_example(run, example_parser(__doc__), argv)


if __name__ == "__main__":
    main()
