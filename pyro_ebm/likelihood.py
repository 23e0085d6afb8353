r"""An energy as a likelihood: parameters :math:`\theta` of :math:`p(y \mid \theta) = e^{-\beta F(y; \theta)} / Z(\theta)`.

When the energy's parameters are what we infer, :math:`Z(\theta)` is part of the likelihood, and dropping
it (an observed :class:`~pyro_ebm.GibbsBoltzmann` site whose energy reads a latent ``theta``) targets the
wrong posterior; :class:`~pyro_ebm.DoublyIntractableWarning` says so. The posterior

.. math:: p(\theta \mid y) \propto p(\theta)\, \frac{e^{-\beta \sum_n F(y_n; \theta)}}{Z(\theta)^N}

is *doubly intractable*. This module has three treatments besides maximum likelihood
(:func:`pyro_ebm.ml.ml_fit`) and noise-contrastive estimation (:func:`pyro_ebm.losses.nce`):

* :func:`exchange` -- the exchange algorithm (Murray, Ghahramani & MacKay 2006): an MCMC over
  :math:`\theta` whose acceptance ratio needs auxiliary data :math:`w \sim p(\cdot \mid \theta')` instead of
  :math:`Z`; the :math:`Z`'s cancel. Vectorised over chains; the auxiliary draws come from exact
  enumeration (:class:`~pyro_ebm.DiscreteGibbs`), a user's exact sampler, or the library's samplers
  (:func:`pyro_ebm.mcmc.sample`, persistent from one iteration to the next).
* :func:`pseudo_likelihood_fit` -- Besag's pseudo-likelihood for discrete energies, with sandwich
  standard errors (the loss itself is :func:`pyro_ebm.losses.pseudo_likelihood`; :func:`site_conditionals`
  builds its candidate configurations).
* :func:`fisher_information` -- the information matrix of the exact likelihood at :math:`\theta` from model
  samples, for the standard errors of a maximum-likelihood estimate.

Energies here take the parameters as their conditioning argument: ``energy(y, theta)`` with ``y`` of shape
``batch + event`` and ``theta`` of shape ``batch' + theta_shape`` (the batches broadcast) returns the
broadcast batch shape.
"""

from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple, Optional, Union

import torch
from torch.distributions import biject_to

from . import mcmc
from ._rng import check_seed, make_generator
from ._validation import MAX_ENUMERATION, check_beta, check_finite, check_positive_int, check_real
from .gibbs import DiscreteGibbs
from .losses import pseudo_likelihood
from .mcmc.samples import Samples

__all__ = ["exchange", "site_conditionals", "pseudo_likelihood_fit", "PseudoLikelihoodFit", "fisher_information"]


def _check_energy_fn(energy):
    if not callable(energy):
        raise TypeError(f"energy must be a callable energy(y, theta), got {type(energy).__name__}")


def _check_data(data):
    if not isinstance(data, torch.Tensor) or not data.is_floating_point():
        got = data.dtype if isinstance(data, torch.Tensor) else type(data).__name__
        raise TypeError(f"data must be a floating-point tensor [N, *event_shape], got {got}")
    if data.dim() < 1 or data.shape[0] < 1:
        raise ValueError(f"data must have shape [N, *event_shape] with N >= 1, got {tuple(data.shape)}")
    if not bool(torch.isfinite(data).all()):
        raise ValueError("data must be finite")


def _total_energy(energy, y: torch.Tensor, theta: torch.Tensor, n_event: int) -> torch.Tensor:
    """``sum_n F(y[n, c], theta[c])`` per chain: ``y`` ``[N, C, *event]``, ``theta`` ``[C, *theta_shape]``."""
    f = energy(y, theta)
    want = (y.shape[0], theta.shape[0])
    if not isinstance(f, torch.Tensor) or tuple(f.shape) != want:
        got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
        raise ValueError(
            f"energy(y, theta) must return the broadcast batch shape {want} for y "
            f"{tuple(y.shape)} and theta {tuple(theta.shape)}, got {got}"
        )
    return f.sum(0)


def exchange(
    energy: Callable,
    data: torch.Tensor,
    prior: torch.distributions.Distribution,
    *,
    num_chains: int = 8,
    num_warmup: int = 500,
    num_samples: int = 1000,
    aux: Union[str, Callable] = "exact",
    values: Optional[torch.Tensor] = None,
    aux_kernel: str = "gibbs",
    aux_steps: int = 20,
    aux_options: Optional[dict] = None,
    beta: float = 1.0,
    init: Optional[torch.Tensor] = None,
    proposal_scale: float = 0.1,
    target_accept: float = 0.3,
    seed=None,
) -> Samples:
    r"""Posterior draws of :math:`\theta` for the likelihood :math:`e^{-\beta F(y; \theta)}/Z(\theta)` by the
    exchange algorithm (Murray, Ghahramani & MacKay 2006), many chains at once.

    At each step every chain proposes :math:`\theta' = \theta + \epsilon` (a Gaussian random walk in the
    unconstrained space of the prior's support), draws auxiliary data :math:`w_1..w_N \sim p(\cdot \mid
    \theta')` (as many points as the data) and accepts with probability

    .. math:: \min\Big(1, \frac{p(\theta')\, f(y \mid \theta')\, f(w \mid \theta)}
                               {p(\theta)\, f(y \mid \theta)\, f(w \mid \theta')}\Big),
              \qquad f(y \mid \theta) = e^{-\beta \sum_n F(y_n; \theta)},

    in which :math:`Z(\theta)` and :math:`Z(\theta')` cancel. With exact auxiliary draws the chain leaves the
    exact posterior invariant. During warmup the proposal's scale is tuned towards ``target_accept`` and its
    covariance is set from the warmup draws of all chains; both are frozen afterwards.

    :param energy: ``energy(y, theta)`` (see the module docstring for shapes).
    :param data: observations ``[N, *event_shape]``, i.i.d. given :math:`\theta`.
    :param prior: a ``torch.distributions.Distribution`` over :math:`\theta` (batch shape ``()``); its
        ``event_shape`` is ``theta_shape``, its support gives the unconstrained space.
    :param num_chains, num_warmup, num_samples: chains, adaptation steps (discarded), kept draws per chain.
    :param aux: how the auxiliary data are drawn:

        * ``"exact"``: by enumeration of the finite candidate set ``values`` ``[K, *event_shape]``
          (:class:`~pyro_ebm.DiscreteGibbs`, one categorical per chain) -- exact;
        * ``"mcmc"``: :func:`pyro_ebm.mcmc.sample` with kernel ``aux_kernel`` (``"gibbs"`` for binary
          ``{0, 1}`` units, ``"hmc"``/``"mala"``/``"ula"`` for real ones), ``aux_steps`` transitions per
          exchange step, no adaptation (``aux_options`` go to the kernel, e.g. ``step_size``, ``n_steps``).
          The :math:`N \times` chains auxiliary states persist from step to step (starting at the data).
          This is an approximation: the draws are exact only as ``aux_steps`` grows; check that the
          posterior does not move when ``aux_steps`` is doubled. Defaults for ``"hmc"``: ``step_size=0.1``,
          ``n_steps=1``. Beware of a fixed longer trajectory: on a near-Gaussian target whose scale changes
          with ``theta``, ``n_steps * step_size`` close to half a period maps ``w`` to about ``-w`` and
          leaves ``F(w)`` unchanged, so the auxiliary draws do not follow ``theta`` and the posterior comes
          out too wide;
        * a callable ``aux(theta, n, generator) -> [n, chains, *event_shape]``: exact draws of the
          user's own (``theta`` is ``[chains, *theta_shape]``).
    :param beta: inverse temperature of the likelihood.
    :param init: initial :math:`\theta` ``[num_chains, *theta_shape]`` (default: prior draws).
    :param proposal_scale: initial random-walk standard deviation in unconstrained space.
    :param target_accept: acceptance rate the warmup aims at.
    :param seed: int or ``torch.Generator``.
    :returns: :class:`~pyro_ebm.mcmc.Samples` with ``draws`` ``[chains, num_samples, *theta_shape]`` and
        ``stats`` ``acceptance_rate`` (0/1 per draw), ``lp`` (log prior :math:`- \beta \sum_n F`, *without*
        :math:`Z`) and ``diverging``; ``info`` has ``proposal_cov``, ``wall_time``, ``energy_evals``
        (batched energy calls) and ``aux_draws`` (auxiliary points drawn). ``.summary("theta")`` gives ArviZ's
        R-hat and ESS.

    Example (Gaussian energy with unknown precision :math:`\tau`, exact auxiliary draws; the conjugate
    Gamma(2, 1) prior gives the exact posterior Gamma(2 + N/2, 1 + sum y^2 / 2))::

        >>> import torch
        >>> from pyro_ebm.likelihood import exchange
        >>> y = torch.randn(40, generator=torch.Generator().manual_seed(0)) / 2        # precision 4
        >>> F = lambda y, tau: 0.5 * tau * y ** 2
        >>> normal = lambda tau, n, g: torch.randn((n,) + tau.shape, generator=g) / tau.sqrt()
        >>> s = exchange(F, y, torch.distributions.Gamma(2.0, 1.0), aux=normal, num_warmup=200,
        ...              num_samples=300, seed=0)
        >>> s.draws.shape
        torch.Size([8, 300])
        >>> exact_mean = (2 + 40 / 2) / (1 + (y ** 2).sum() / 2)
        >>> bool(abs(s.draws.mean() - exact_mean) < 0.1 * exact_mean)
        True
    """
    _check_energy_fn(energy)
    _check_data(data)
    if not isinstance(prior, torch.distributions.Distribution):
        raise TypeError(f"prior must be a torch.distributions.Distribution over theta, got {type(prior).__name__}")
    if tuple(prior.batch_shape) != ():
        raise ValueError(f"prior must have batch_shape (), got {tuple(prior.batch_shape)}; use .to_event()")
    C = check_positive_int(num_chains, "num_chains")
    num_warmup = check_positive_int(num_warmup, "num_warmup", minimum=0)
    num_samples = check_positive_int(num_samples, "num_samples")
    beta = check_beta(beta)
    scale = check_real(proposal_scale, "proposal_scale", minimum=0.0, strict=True)
    target = check_real(target_accept, "target_accept", minimum=0.0, strict=True)
    if target >= 1:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")
    aux_steps = check_positive_int(aux_steps, "aux_steps")
    if aux_kernel not in mcmc.KERNELS:
        raise ValueError(f"aux_kernel must be one of {mcmc.KERNELS}, got {aux_kernel!r}")
    check_seed(seed)
    gen = make_generator(seed, data.device)
    dtype, device = data.dtype, data.device
    N, event = data.shape[0], tuple(data.shape[1:])
    n_event = len(event)
    theta_shape = tuple(prior.event_shape)
    D = max(1, math.prod(theta_shape))
    transform = biject_to(prior.support)
    draw_aux = _aux_sampler(energy, aux, values, aux_kernel, aux_steps, aux_options, beta, data, C)

    def unpack(u):  # [C, D] -> theta [C, *theta_shape]
        return transform(u.reshape((C,) + theta_shape))

    def log_prior(u):  # prior density of u (the unconstrained theta), [C]
        th = unpack(u)
        ladj = transform.log_abs_det_jacobian(u.reshape((C,) + theta_shape), th)
        ladj = ladj.reshape(C, -1).sum(-1) if ladj.dim() > 1 else ladj.reshape(C)
        return prior.log_prob(th).to(dtype) + ladj

    if init is None:
        theta0 = prior.sample((C,))  # prior draws use the global RNG; seed it for reproducibility
        theta0 = theta0.to(dtype=dtype, device=device)
    else:
        if not isinstance(init, torch.Tensor) or tuple(init.shape) != (C,) + theta_shape:
            raise ValueError(f"init must be a tensor [num_chains, *theta_shape] = {(C,) + theta_shape}")
        theta0 = init.to(dtype=dtype, device=device)
        check_finite(theta0, "init")
    u = transform.inv(theta0).reshape(C, D)
    lp = log_prior(u)
    if not bool(torch.isfinite(lp).all()):
        raise ValueError("init: the prior density is not finite at every chain's theta")
    y = data.unsqueeze(1)
    with torch.no_grad():
        f_data = _total_energy(energy, y, unpack(u), n_event)
    if not bool(torch.isfinite(f_data).all()):
        raise ValueError(
            f"energy(data, theta) must be finite at the initial theta of every chain, got {f_data.tolist()}"
        )
    chol = torch.eye(D, dtype=dtype, device=device)
    log_scale = math.log(scale)
    total = num_warmup + num_samples
    keep_u = torch.empty((C, num_samples, D), dtype=dtype, device=device)
    acc_all = torch.empty((C, num_samples), dtype=dtype, device=device)
    lp_all = torch.empty((C, num_samples), dtype=dtype, device=device)
    warm = []
    evals, t0 = 1, time.perf_counter()
    with torch.no_grad():
        for it in range(total):
            eps = torch.randn((C, D), generator=gen, dtype=dtype, device=device)
            u_new = u + math.exp(log_scale) * eps @ chol.T
            lp_new = log_prior(u_new)
            th, th_new = unpack(u), unpack(u_new)
            w = draw_aux(th_new, gen)  # [N, C, *event]
            f_data_new = _total_energy(energy, y, th_new, n_event)
            f_w_old = _total_energy(energy, w, th, n_event)
            f_w_new = _total_energy(energy, w, th_new, n_event)
            evals += 3
            log_a = lp_new - lp - beta * (f_data_new - f_data) - beta * (f_w_old - f_w_new)
            log_a = torch.where(torch.isnan(log_a), torch.full_like(log_a, -math.inf), log_a)
            accept = torch.log(torch.rand(C, generator=gen, dtype=dtype, device=device)) < log_a
            u = torch.where(accept.unsqueeze(-1), u_new, u)
            lp = torch.where(accept, lp_new, lp)
            f_data = torch.where(accept, f_data_new, f_data)
            if it < num_warmup:
                rate = float(torch.exp(log_a.clamp(max=0.0)).mean())
                log_scale += (rate - target) * 2.0 / math.sqrt(it + 1.0)
                if it >= num_warmup // 4:
                    warm.append(u.clone())
                if it == num_warmup // 2 and len(warm) > 10:
                    chol = _proposal_chol(torch.cat(warm), D)
                    log_scale = math.log(2.38 / math.sqrt(D))
            else:
                i = it - num_warmup
                keep_u[:, i], acc_all[:, i], lp_all[:, i] = u, accept.to(dtype), lp - beta * f_data
    theta = transform(keep_u.reshape((C, num_samples) + theta_shape))
    stats = {"acceptance_rate": acc_all, "lp": lp_all, "diverging": torch.zeros_like(acc_all, dtype=torch.bool)}
    info = {"proposal_cov": math.exp(2 * log_scale) * chol @ chol.T, "wall_time": time.perf_counter() - t0,
            "energy_evals": evals, "aux_draws": total * N * C}
    return Samples(draws=theta, stats=stats, kernel="exchange", beta=beta, info=info)


def _proposal_chol(u: torch.Tensor, D: int) -> torch.Tensor:
    cov = torch.atleast_2d(torch.cov(u.T))
    cov = cov + 1e-8 * torch.eye(D, dtype=u.dtype, device=u.device) * (1 + cov.diagonal().mean())
    return torch.linalg.cholesky(cov)


def _aux_sampler(energy, aux, values, kernel, steps, options, beta, data, C):
    """``draw(theta [C, *theta_shape], generator) -> [N, C, *event]`` for :func:`exchange`."""
    N, event = data.shape[0], tuple(data.shape[1:])
    if callable(aux) and not isinstance(aux, str):
        def draw_user(theta, gen):
            w = aux(theta, N, gen)
            if not isinstance(w, torch.Tensor) or tuple(w.shape) != (N, C) + event:
                got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
                raise ValueError(f"aux(theta, n, generator) must return [n, chains, *event] = {(N, C) + event}, got {got}")
            return w.to(data.dtype)
        return draw_user
    if aux == "exact":
        if not isinstance(values, torch.Tensor) or values.dim() < 1 or tuple(values.shape[1:]) != event:
            got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ValueError(
                f"aux='exact' needs values, the finite support [K, *event_shape] with the event shape of data, "
                f"[K, *{event}]; got {got}"
            )
        if values.shape[0] * C > MAX_ENUMERATION:
            raise ValueError(
                f"values has {values.shape[0]} candidates for {C} chains, more than {MAX_ENUMERATION} energies: "
                "too large to enumerate; use aux='mcmc'"
            )
        vals = values.to(dtype=data.dtype, device=data.device)

        def draw_exact(theta, gen):
            probs = DiscreteGibbs(energy, vals, beta=beta, x=theta, batch_ndims=1).probs  # [C, K]
            idx = torch.multinomial(probs, N, replacement=True, generator=gen)  # [C, N]
            return vals[idx.T]

        return draw_exact
    if aux == "mcmc":
        steps = check_positive_int(steps, "aux_steps")
        if kernel not in mcmc.KERNELS:
            raise ValueError(f"aux_kernel must be one of {mcmc.KERNELS}, got {kernel!r}")
        opts = dict(options or {})
        if kernel in ("hmc", "mala"):
            opts.setdefault("adapt_step_size", False)
            opts.setdefault("adapt_mass", False)
            opts.setdefault("step_size", 0.1)
        if kernel == "hmc":
            opts.setdefault("n_steps", 1)
        state = {"w": data.unsqueeze(1).expand((N, C) + event).reshape((N * C,) + event).clone()}

        def draw_mcmc(theta, gen):
            x = theta.unsqueeze(0).expand((N,) + tuple(theta.shape)).reshape((N * C,) + tuple(theta.shape[1:]))
            s = mcmc.sample(energy, state["w"], 0, steps, kernel=kernel, beta=beta, seed=gen, progress=False,
                            x=x, **opts)
            state["w"] = s.draws[:, -1]
            return state["w"].reshape((N, C) + event)

        return draw_mcmc
    raise ValueError(f"aux must be 'exact', 'mcmc' or a callable aux(theta, n, generator), got {aux!r}")


# ------------------------------------------------------------------------------------------------------
# pseudo-likelihood


def site_conditionals(y: torch.Tensor, choices, event_ndim: int = 1):
    r"""The candidate configurations of Besag's pseudo-likelihood: ``y`` with one site set to each choice.

    :param y: discrete configurations ``[*batch, *event]`` whose entries are among ``choices``.
    :param choices: the values one site can take, e.g. ``[0., 1.]`` or ``[-1., 1.]`` (``K`` of them).
    :param event_ndim: number of event dimensions of ``y`` (``D`` = their number of entries, the sites).
    :returns: ``(configs, target)``: ``configs`` ``[*batch, D, K, *event]`` (site ``d`` set to choice ``k``,
        the others as in ``y``) and ``target`` ``[*batch, D]`` (the index of ``y``'s own value at each site),
        ready for :func:`pyro_ebm.losses.pseudo_likelihood` ``(F(configs), target)``.

    Example::

        >>> import torch
        >>> from pyro_ebm.likelihood import site_conditionals
        >>> configs, target = site_conditionals(torch.tensor([[1., 0.]]), [0., 1.])
        >>> configs.shape, target.tolist()
        (torch.Size([1, 2, 2, 2]), [[1, 0]])
        >>> configs[0, 0].tolist()        # site 0 set to 0, then to 1
        [[0.0, 0.0], [1.0, 0.0]]
    """
    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        got = y.dtype if isinstance(y, torch.Tensor) else type(y).__name__
        raise TypeError(f"y must be a floating-point tensor of discrete configurations, got {got}")
    choices = torch.as_tensor(choices, dtype=y.dtype, device=y.device)
    if choices.dim() != 1 or choices.numel() < 2:
        raise ValueError(f"choices must be a 1-D sequence of at least 2 values, got shape {tuple(choices.shape)}")
    check_finite(choices, "choices")
    if isinstance(event_ndim, bool) or not isinstance(event_ndim, int) or not 0 < event_ndim <= y.dim():
        raise ValueError(f"event_ndim must be an integer in [1, y.dim()={y.dim()}], got {event_ndim!r}")
    event = tuple(y.shape[y.dim() - event_ndim:])
    batch = tuple(y.shape[: y.dim() - event_ndim])
    flat = y.reshape(batch + (math.prod(event),))
    D, K = flat.shape[-1], choices.numel()
    match = flat.unsqueeze(-1) == choices
    if not bool(match.any(-1).all()):
        raise ValueError("y has entries that are not among choices")
    target = match.to(torch.uint8).argmax(-1)
    configs = flat.unsqueeze(-2).unsqueeze(-2).expand(batch + (D, K, D)).clone()
    eye = torch.eye(D, dtype=torch.bool, device=y.device).unsqueeze(-2).expand(D, K, D)
    configs = torch.where(eye, choices.reshape(K, 1).expand(D, K, D), configs)
    return configs.reshape(batch + (D, K) + event), target


class PseudoLikelihoodFit(NamedTuple):
    """Result of :func:`pseudo_likelihood_fit`: the estimate ``theta``, its sandwich covariance ``cov`` and
    standard errors ``stderr``, and the mean loss per data point at the estimate."""

    theta: torch.Tensor
    cov: torch.Tensor
    stderr: torch.Tensor
    loss: float


def pseudo_likelihood_fit(
    energy: Callable, data: torch.Tensor, choices, theta0: torch.Tensor, *, beta: float = 1.0,
    max_iter: int = 100,
) -> PseudoLikelihoodFit:
    r"""Maximum pseudo-likelihood estimate (Besag 1975) of ``theta`` for a discrete energy, with standard errors.

    Minimises :math:`\sum_n \sum_d -\log p_\theta(y_{n,d} \mid y_{n,\setminus d})` (L-BFGS), each
    conditional being a softmax over the ``K`` choices of one site: no :math:`Z(\theta)` is needed. The
    estimate is consistent; its covariance is the sandwich :math:`H^{-1} J H^{-1}` (``H`` the Hessian of the
    summed loss, ``J`` the sum of outer products of the per-point gradients), since the pseudo-likelihood
    is not a likelihood and the information equality does not hold.

    :param energy: ``energy(y, theta)``; ``theta`` is passed with shape ``theta0.shape`` (unbatched).
    :param data: ``[N, *event]`` with entries among ``choices``.
    :param choices: the values of one site (e.g. ``[0., 1.]``).
    :param theta0: initial parameters (a real tensor; the estimate has its shape).
    :param beta: inverse temperature.
    :param max_iter: L-BFGS iterations.

    Example (independent binary units with energy :math:`-\theta y`: the estimate is the logit of the mean)::

        >>> import torch
        >>> from pyro_ebm.likelihood import pseudo_likelihood_fit
        >>> y = (torch.rand(2000, 3, generator=torch.Generator().manual_seed(0)) < 0.7).double()
        >>> fit = pseudo_likelihood_fit(lambda y, th: -th * y.sum(-1), y, [0., 1.], torch.zeros((), dtype=torch.float64))
        >>> bool(abs(fit.theta - torch.logit(y.mean())) < 1e-4), fit.stderr.shape
        (True, torch.Size([]))
    """
    _check_energy_fn(energy)
    _check_data(data)
    if not isinstance(theta0, torch.Tensor) or not theta0.is_floating_point():
        raise TypeError("theta0 must be a floating-point tensor (the initial parameters)")
    check_finite(theta0, "theta0")
    beta = check_beta(beta)
    max_iter = check_positive_int(max_iter, "max_iter")
    configs, target = site_conditionals(data, choices, event_ndim=data.dim() - 1)
    shape = tuple(theta0.shape)
    with torch.no_grad():
        f0 = energy(configs, theta0.detach().to(data.dtype))
    want = tuple(configs.shape[: target.dim() + 1])  # [N, D, K]
    if not isinstance(f0, torch.Tensor) or tuple(f0.shape) != want:
        got = tuple(f0.shape) if isinstance(f0, torch.Tensor) else type(f0).__name__
        raise ValueError(
            f"energy(configs, theta) must return [N, D, K] = {want} (N points of data {tuple(data.shape)}, D sites, "
            f"K choices), got {got}"
        )
    if not bool(torch.isfinite(f0).all()):
        raise ValueError("energy(configs, theta0) must be finite at the candidate configurations of data")

    def per_point(th_flat):
        th = th_flat.reshape(shape)
        return pseudo_likelihood(energy(configs, th), target, beta, reduction="none")

    theta = theta0.detach().reshape(-1).clone().to(data.dtype).requires_grad_(True)
    opt = torch.optim.LBFGS([theta], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-10,
                            tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = per_point(theta).mean()
        loss.backward()
        return loss

    opt.step(closure)
    th = theta.detach()
    H = torch.autograd.functional.hessian(lambda t: per_point(t).sum(), th)
    G = torch.autograd.functional.jacobian(per_point, th, vectorize=True, strategy="forward-mode")  # [N, P]
    J = G.T @ G
    Hinv = torch.linalg.inv(H)
    cov = Hinv @ J @ Hinv
    with torch.no_grad():
        loss = float(per_point(th).mean())
    return PseudoLikelihoodFit(th.reshape(shape), cov, cov.diagonal().sqrt().reshape(shape), loss)


def fisher_information(
    energy: Callable, theta: torch.Tensor, data: torch.Tensor, samples: torch.Tensor, *, beta: float = 1.0
) -> torch.Tensor:
    r"""Observed information of the exact log-likelihood :math:`\sum_n [-\beta F(y_n;\theta)] - N \log Z(\theta)`
    at ``theta``, with :math:`\nabla^2 \log Z` estimated from model samples.

    .. math:: I = N\Big(\beta\, \overline{\nabla^2 F}_{\rm data} - \beta\, \mathbb E_\theta[\nabla^2 F]
              + \beta^2 \operatorname{Cov}_\theta[\nabla F]\Big)

    (for an energy linear in :math:`\theta`, an exponential family, only the covariance term remains). The
    standard errors of a maximum-likelihood estimate are ``fisher_information(...).inverse().diagonal().sqrt()``.

    :param energy: ``energy(y, theta)``.
    :param theta: the parameters (a flat or shaped real tensor; the result is ``[P, P]`` with ``P`` its size).
    :param data: ``[N, *event]``.
    :param samples: draws of :math:`p(\cdot \mid \theta)`, ``[M, *event]`` (exact, or MCMC at equilibrium).
    :param beta: inverse temperature.

    Example (independent binary units, :math:`F = -\theta \sum_i y_i`: :math:`I = 3N p(1-p)`)::

        >>> import torch
        >>> from pyro_ebm.likelihood import fisher_information
        >>> from pyro_ebm import product_values
        >>> allv = product_values([0., 1.], 3).double()
        >>> p = torch.sigmoid(torch.tensor(0.5, dtype=torch.float64))
        >>> w = torch.distributions.Bernoulli(p).log_prob(allv).sum(-1).exp()   # exact weights as samples:
        >>> samples = allv[torch.multinomial(w, 100000, replacement=True, generator=torch.Generator().manual_seed(0))]
        >>> info = fisher_information(lambda y, th: -th * y.sum(-1), torch.tensor(0.5, dtype=torch.float64),
        ...                           allv, samples)
        >>> bool(abs(info / (8 * 3 * p * (1 - p)) - 1) < 0.02)
        True
    """
    _check_energy_fn(energy)
    _check_data(data)
    if (not isinstance(samples, torch.Tensor) or samples.dim() < 1 or tuple(samples.shape[1:]) != tuple(data.shape[1:])
            or len(samples) < 2):
        got = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        raise ValueError(
            f"samples must be a tensor [M >= 2, *event] with the event shape of data, [M, *{tuple(data.shape[1:])}]; "
            f"got {got}"
        )
    if samples.is_floating_point():
        check_finite(samples, "samples")
    if not isinstance(theta, torch.Tensor) or not theta.is_floating_point():
        raise TypeError("theta must be a floating-point tensor")
    check_finite(theta, "theta")
    beta = check_beta(beta)
    shape, th = tuple(theta.shape), theta.detach().reshape(-1).to(data.dtype)
    N = data.shape[0]
    s = samples.to(data.dtype)
    with torch.no_grad():
        for what, y in (("data", data), ("samples", s)):
            f = energy(y, theta.detach().to(data.dtype))
            if not isinstance(f, torch.Tensor) or tuple(f.shape) != (y.shape[0],):
                got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
                raise ValueError(
                    f"energy(y, theta) must return one value per point of {what}, ({y.shape[0]},), got {got}"
                )
            if not bool(torch.isfinite(f).all()):
                raise ValueError(f"energy(y, theta) must be finite at every point of {what}")

    def mean_f(y):
        return lambda t: energy(y, t.reshape(shape)).mean()

    h_data = torch.autograd.functional.hessian(mean_f(data), th)
    h_model = torch.autograd.functional.hessian(mean_f(s), th)
    g = torch.autograd.functional.jacobian(lambda t: energy(s, t.reshape(shape)), th, vectorize=True,
                                          strategy="forward-mode")  # [M, P], one forward pass per parameter
    cov_g = torch.atleast_2d(torch.cov(g.T))
    info = N * (beta * h_data - beta * h_model + beta**2 * cov_g)
    if not bool(torch.isfinite(info).all()):
        raise ValueError("the energy's derivatives in theta are not finite at data or samples: the information "
                         "is undefined there")
    return info
