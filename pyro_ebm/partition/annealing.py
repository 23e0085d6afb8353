r"""Annealing between a normalized base and :math:`e^{-\beta F}`: the path, and forward/reverse AIS.

The path of densities is :math:`\log q_b = (1 - b)\log \text{base} + b\,(-\beta F)`, ``b`` from 0 to 1.
Particles move at each ``b`` with the library's one HMC transition (:func:`pyro_ebm.mcmc.hmc.step`, on
:func:`pyro_ebm.mcmc.integrator.leapfrog`); :class:`PathPotential` presents ``-log q_b`` to it. Tempered
SMC (:mod:`pyro_ebm.partition.smc`) walks the same path with an adaptive schedule.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence

import pyro.distributions as dist
import torch

from .._rng import make_generator
from .._validation import check_positive_int
from ..energy import Energy, batch_shape_of
from ..mcmc import hmc
from ._common import _F64, LogPartition, _call_energy, _check_some_mass, _check_values, _energy_dtype_device, _resolve_energy, _weights_summary


def _schedule(schedule, num_temperatures: int, dtype=_F64) -> torch.Tensor:
    """``b_0 = 0 < b_1 < ... < b_T = 1``."""
    T = num_temperatures
    if isinstance(schedule, torch.Tensor) or (isinstance(schedule, Sequence) and not isinstance(schedule, str)):
        b = torch.as_tensor(schedule, dtype=dtype).reshape(-1)
        if b.numel() < 2 or float(b[0]) != 0.0 or float(b[-1]) != 1.0 or not bool((b[1:] > b[:-1]).all()):
            raise ValueError("schedule must be an increasing sequence from 0 to 1 (b_0 = 0, b_T = 1)")
        return b
    if schedule == "geometric":
        if T == 1:
            return torch.tensor([0.0, 1.0], dtype=dtype)
        b = torch.logspace(-4, 0, T, dtype=dtype)
        return torch.cat([torch.zeros(1, dtype=dtype), b])
    if schedule == "sigmoid":
        # Grosse, Maddison & Salakhutdinov (2013): a rescaled logistic in t, dense at both ends
        t = torch.linspace(-4.0, 4.0, T + 1, dtype=dtype)
        s = torch.sigmoid(t)
        return (s - s[0]) / (s[-1] - s[0])
    if schedule == "linear":
        return torch.linspace(0.0, 1.0, T + 1, dtype=dtype)
    raise ValueError(
        f"schedule must be 'geometric', 'sigmoid', 'linear' or an increasing tensor from 0 to 1, got {schedule!r}"
    )


class _Path:
    """The annealing path ``log q_b = (1 - b) log base + b (-beta F)`` on flat particles ``[N, D]``."""

    def __init__(self, energy: Energy, base, is_gauss: bool, beta: float, label: str):
        self.energy, self.base, self.beta, self.label = energy, base, beta, label
        self.event_shape = tuple(energy.event_shape)
        self.evals = 0
        self.checked = False
        self.safe = None  # a point inside the base's support (set from the first particle)
        self.gauss = None
        if is_gauss:  # closed-form log density and score of the default base (one backward pass less)
            normal = getattr(base, "base_dist", base)  # to_event(0) is the Normal itself
            loc, scale = normal.loc.reshape(-1), normal.scale.reshape(-1)
            norm = scale.log().sum() + 0.5 * loc.numel() * math.log(2 * math.pi)
            self.gauss = (loc, scale, norm)

    def components(self, x: torch.Tensor):
        """``F``, ``dF/dx``, ``log base``, ``d log base/dx`` at flat ``x`` ``[N, D]``."""
        n = x.shape[0]
        self.evals += n
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            y = x.reshape((n,) + self.event_shape)
            if self.checked:
                f = self.energy(y)
            else:  # the shape contract is checked once
                f = _call_energy(self.energy, y, self.label)
                self.checked = True
            gf = _grad(f, x)
            if self.gauss is None:
                lb = self._base_log_prob(y)
                glb = _grad(lb, x)
        if self.gauss is not None:
            loc, scale, norm = self.gauss
            z = (x.detach() - loc) / scale
            lb = -0.5 * (z**2).sum(-1) - norm
            glb = -z / scale
        return f.detach(), gf, lb.detach(), glb

    def _base_log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """``log base(y)``, ``-inf`` outside the base's support (without tripping argument validation)."""
        inside = self.base.support.check(y)
        if inside.dim() > 1:
            inside = inside.reshape(inside.shape[0], -1).all(-1)
        if bool(inside.all()):
            return self.base.log_prob(y)
        if self.safe is None:
            raise ValueError("the starting particles must lie in the support of base")
        mask = inside.reshape(inside.shape + (1,) * (y.dim() - 1))
        lb = self.base.log_prob(torch.where(mask, y, self.safe.to(y.dtype)))
        return torch.where(inside, lb, torch.full_like(lb, -math.inf))

    def potential(self, comps, b: torch.Tensor):
        """``U_b = -log q_b`` ``[R, C]`` and its gradient ``[R, C, D]`` from components shaped
        ``[R, C]`` / ``[R, C, D]``, ``b`` ``[R, 1]``; non-finite values mean zero density."""
        f, gf, lb, glb = comps
        b3 = b.unsqueeze(-1)
        u = -(1.0 - b) * lb + (b * self.beta) * f
        g = -(1.0 - b3) * glb + (b3 * self.beta) * gf
        # at b = 1 the base's support still bounds the path's support
        return torch.where(torch.isneginf(lb) & (b == 1.0), torch.full_like(u, math.inf), u), g


def _grad(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if not out.requires_grad:  # e.g. a constant energy
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


class PathPotential:
    """``U_b(x) = -log q_b(x)`` on particles ``[R, C, D]`` for :func:`pyro_ebm.mcmc.hmc.step` (run with
    ``beta = 1``): replica ``r`` sits at ``b[r]`` (``b`` ``[R, 1]``). ``last`` keeps the path's components
    ``(F, dF/dx, log base, d log base/dx)`` at the last point evaluated -- the end of the leapfrog
    trajectory, i.e. the proposal -- so moves and weights need no extra energy evaluation."""

    is_model = False

    def __init__(self, path: "_Path", b: torch.Tensor):
        self.path, self.b = path, b
        self.last = None

    def value_and_grad(self, q: torch.Tensor):
        R, C, D = q.shape
        f, gf, lb, glb = self.path.components(q.reshape(R * C, D))
        comps = (f.reshape(R, C), gf.reshape(R, C, D), lb.reshape(R, C), glb.reshape(R, C, D))
        self.last = (q, comps)
        return self.path.potential(comps, self.b)


def move(pot: PathPotential, x, comps, eps, inv_mass, n_leapfrog: int, gen):
    """One Metropolis-adjusted HMC transition (:func:`pyro_ebm.mcmc.hmc.step`) of particles ``x``
    ``[R, C, D]`` with their path components ``comps`` (see :class:`PathPotential`), leaving each ``q_b``
    invariant; ``eps`` ``[R, C]``, ``inv_mass`` ``[R, 1, D]``. Returns ``(x, comps, acceptance
    probability [R, C])``."""
    u, g = pot.path.potential(comps, pot.b)
    ones = torch.ones((x.shape[0], 1), dtype=x.dtype, device=x.device)
    new, info = hmc.step(hmc.HMCState(x, u, g), pot, eps, n_leapfrog, ones, inv_mass, gen)
    q_end, c_end = pot.last
    assert q_end is info.q_prop  # every particle made n_leapfrog steps: the last evaluation is the proposal
    acc = info.accepted
    comps = tuple(torch.where(acc.reshape(acc.shape + (1,) * (a.dim() - 2)), a, b) for a, b in zip(c_end, comps))
    return new.q, comps, info.accept_prob


def log_target_ratio(path: "_Path", comps) -> torch.Tensor:
    """``d log q_b / db = -beta F - log base`` at the particles, float64 ``[R, C]``; zero density under
    both ends (``F = +inf`` outside the base) gives ``-inf``, never NaN."""
    f, _, lb, _ = comps
    g = (-path.beta * f).to(_F64) - lb.to(_F64)
    return torch.where(torch.isnan(g), torch.full_like(g, -math.inf), g)


def _make_base(base, loc, scale, event_shape, dtype, device):
    if base is None:
        loc = torch.as_tensor(0.0 if loc is None else loc, dtype=dtype, device=device)
        scale = torch.as_tensor(1.0 if scale is None else scale, dtype=dtype, device=device)
        if not bool((scale > 0).all()):
            raise ValueError(f"scale must be > 0 (the base Gaussian's standard deviation), got {scale}")
        try:
            loc = loc.expand(event_shape)
            scale = scale.expand(event_shape)
        except RuntimeError:
            raise ValueError(
                f"loc {tuple(loc.shape)} and scale {tuple(scale.shape)} must broadcast to event_shape "
                f"{tuple(event_shape)}"
            ) from None
        return dist.Normal(loc, scale).to_event(len(event_shape)), True
    if loc is not None or scale is not None:
        raise ValueError("loc and scale set the default Gaussian base; do not pass them together with base")
    if not isinstance(base, torch.distributions.Distribution):
        raise TypeError(f"base must be a torch/Pyro Distribution, got {type(base).__name__}")
    if tuple(base.event_shape) != tuple(event_shape) or tuple(base.batch_shape) != ():
        hint = ""
        if tuple(base.batch_shape) + tuple(base.event_shape) == tuple(event_shape):
            hint = f"; use base.to_event({len(base.batch_shape)})"
        raise ValueError(
            f"base must have event_shape {tuple(event_shape)} (the energy's) and batch_shape (), got "
            f"event_shape {tuple(base.event_shape)} and batch_shape {tuple(base.batch_shape)}{hint}"
        )
    if getattr(base.support, "is_discrete", False):
        raise ValueError("base must be a continuous distribution (AIS moves particles with gradients)")
    return base, False


def _sample_base(base, n, gen, is_gauss):
    if is_gauss:
        normal = getattr(base, "base_dist", base)
        loc, scale = normal.loc, normal.scale
        eps = torch.randn((n,) + tuple(loc.shape), generator=gen, dtype=loc.dtype, device=loc.device)
        return loc + scale * eps
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
        return base.sample((n,)).detach()


def _precond(base, event_shape, dtype, device):
    d = int(math.prod(event_shape))
    try:
        sd = base.stddev.detach()
        sd = sd.to(dtype=dtype, device=device).expand(tuple(event_shape)).reshape(d)
        if bool(torch.isfinite(sd).all()) and bool((sd > 0).all()):
            return sd
    except (NotImplementedError, RuntimeError, AttributeError):
        pass
    return torch.ones(d, dtype=dtype, device=device)


def _run_ais(path: _Path, x0, betas, *, n_mcmc, n_leapfrog, step_size, target_accept, precond, gen, method):
    """Anneal flat particles ``x0`` ``[N, D]`` along ``betas`` (increasing: forward; decreasing: reverse).

    Log-weights accumulate ``log q_{b_{t}}(x) - log q_{b_{t-1}}(x) = (b_t - b_{t-1}) (-beta F(x) - log base(x))``
    before each transition at ``b_t`` (none at the last ``b``).
    """
    n, d = x0.shape
    T = betas.numel() - 1
    interior = T - 1
    if step_size is not None:
        fixed = torch.as_tensor(step_size).to(_F64).reshape(-1).cpu()
        if fixed.numel() == 1:
            fixed = fixed.expand(max(interior, 1))
        elif fixed.numel() != interior:
            raise ValueError(
                f"step_size must be a float or have one entry per interior temperature ({interior}), "
                f"got {fixed.numel()}"
            )
        if interior and not bool((fixed > 0).all()):
            raise ValueError("step_size must be > 0")
        if method == "reverse_ais":
            fixed = fixed.flip(0)
        eps, adapt = None, False
    else:
        fixed, adapt = None, True
        # MALA's optimal step shrinks like D^(-1/3) (HMC's like D^(-1/4)) in units of the base's scale
        eps = 1.6 * d ** (-1 / 3) if n_leapfrog == 1 else 1.2 * d ** (-0.25)
    if path.gauss is None:
        first = x0[:1].reshape((1,) + path.event_shape)
        if bool(path.base.support.check(first).all()):
            path.safe = first[0].detach()
    pot = PathPotential(path, torch.zeros((1, 1), dtype=x0.dtype, device=x0.device))
    x = x0.unsqueeze(0)
    pot.value_and_grad(x)
    comps = pot.last[1]
    _check_values(comps[0][0], x0.reshape((n,) + path.event_shape), "a starting particle", path.label)
    if method == "ais":
        _check_some_mass(comps[0][0], path.label, "starting particles (drawn from the base)",
                         "move the base (loc, scale, or base=) over the region where the energy is finite")
    else:
        _check_some_mass(comps[0][0], path.label, "samples", "samples must be draws of exp(-beta F)")
    inv_mass = (precond ** 2).reshape(1, 1, d)
    log_w = torch.zeros(n, dtype=_F64, device=x0.device)
    used = torch.empty(interior, dtype=_F64)
    acc = torch.empty(interior, dtype=_F64)
    for t in range(1, T + 1):
        b_prev, b = float(betas[t - 1]), float(betas[t])
        log_w = log_w + (b - b_prev) * log_target_ratio(path, comps)[0]
        if t == T:
            break
        e = float(fixed[t - 1]) if fixed is not None else eps
        pot.b = torch.full((1, 1), b, dtype=x.dtype, device=x.device)
        eps_t = torch.full((1, n), e, dtype=x.dtype, device=x.device)
        rates = []
        for _ in range(n_mcmc):
            x, comps, a = move(pot, x, comps, eps_t, inv_mass, n_leapfrog, gen)
            rates.append(a.mean())
        rate = float(torch.stack(rates).mean()) if rates else float("nan")
        used[t - 1], acc[t - 1] = e, rate
        if adapt and rates:
            # the next temperature's step depends on the particles only through this average
            eps = min(max(eps * math.exp(2.0 * (rate - target_accept)), 1e-6), 1e3)
    x = x[0]
    if method == "reverse_ais":
        used, acc = used.flip(0), acc.flip(0)
    return x, log_w, used, acc


def _ais_common(energy, event_shape, base, loc, scale, dtype, schedule, num_temperatures, num_mcmc_steps,
                transition, num_leapfrog, step_size, target_accept, like=None):
    if event_shape is None and not isinstance(energy, Energy):
        if isinstance(base, torch.distributions.Distribution):
            event_shape = base.event_shape
        elif like is not None:
            event_shape = like
        else:
            raise ValueError(
                "event_shape is needed for a callable energy (or pass an Energy, or a base distribution)"
            )
    energy = _resolve_energy(energy, event_shape)
    e_dtype, device = _energy_dtype_device(energy, loc if isinstance(loc, torch.Tensor) else None)
    if dtype is None:
        dtype = e_dtype
    base, is_gauss = _make_base(base, loc, scale, energy.event_shape, dtype, device)
    T = check_positive_int(num_temperatures, "num_temperatures")
    betas = _schedule(schedule, T)
    n_mcmc = check_positive_int(num_mcmc_steps, "num_mcmc_steps", minimum=0)
    if transition == "mala":
        n_leapfrog = 1
    elif transition == "hmc":
        n_leapfrog = check_positive_int(num_leapfrog, "num_leapfrog")
    else:
        raise ValueError(f"transition must be 'mala' or 'hmc', got {transition!r}")
    if target_accept is None:
        target_accept = 0.6 if n_leapfrog == 1 else 0.7
    if not 0.0 < float(target_accept) < 1.0:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")
    if step_size is not None and not isinstance(step_size, torch.Tensor):
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Real) or not step_size > 0:
            raise ValueError(
                f"step_size must be > 0 (a float, or a tensor of one step per temperature), got {step_size!r}"
            )
    d = int(math.prod(energy.event_shape))
    precond = _precond(base, energy.event_shape, dtype, device)
    return energy, base, is_gauss, betas, n_mcmc, n_leapfrog, float(target_accept), d, precond, dtype, device


def _ais(
    energy,
    beta,
    *,
    event_shape=None,
    base=None,
    loc=None,
    scale=None,
    num_particles: int = 512,
    num_temperatures: int = 500,
    schedule="sigmoid",
    transition: str = "mala",
    num_mcmc_steps: int = 2,
    num_leapfrog: int = 5,
    step_size=None,
    target_accept: Optional[float] = None,
    dtype=None,
    seed=None,
):
    (energy, base, is_gauss, betas, n_mcmc, n_leapfrog, target_accept, d, precond, dtype, device) = _ais_common(
        energy, event_shape, base, loc, scale, dtype, schedule, num_temperatures, num_mcmc_steps, transition,
        num_leapfrog, step_size, target_accept,
    )
    n = check_positive_int(num_particles, "num_particles", minimum=2)
    gen = make_generator(seed, device)
    path = _Path(energy, base, is_gauss, beta, energy._label())
    with torch.no_grad():
        x0 = _sample_base(base, n, gen, is_gauss).to(dtype).reshape(n, d)
        x, log_w, used, acc = _run_ais(
            path, x0, betas, n_mcmc=n_mcmc, n_leapfrog=n_leapfrog, step_size=step_size,
            target_accept=target_accept, precond=precond, gen=gen, method="ais",
        )
    value, stderr, ess = _weights_summary(log_w)
    return LogPartition(
        value, stderr, ess, "ais", log_w, x.reshape((n,) + tuple(energy.event_shape)), betas, used, acc, path.evals
    )


def _reverse_ais(
    energy,
    beta,
    *,
    samples,
    event_shape=None,
    base=None,
    loc=None,
    scale=None,
    num_temperatures: int = 500,
    schedule="sigmoid",
    transition: str = "mala",
    num_mcmc_steps: int = 2,
    num_leapfrog: int = 5,
    step_size=None,
    target_accept: Optional[float] = None,
    dtype=None,
    seed=None,
):
    if not isinstance(samples, torch.Tensor) or not samples.is_floating_point():
        raise TypeError("samples must be a floating-point tensor [N, *event_shape] of draws from exp(-beta F)")
    like = samples.shape[1:] if samples.dim() >= 1 else None
    (energy, base, is_gauss, betas, n_mcmc, n_leapfrog, target_accept, d, precond, dtype, device) = _ais_common(
        energy, event_shape, base, loc, scale, dtype, schedule, num_temperatures, num_mcmc_steps, transition,
        num_leapfrog, step_size, target_accept, like=like,
    )
    batch = batch_shape_of(samples, energy.event_shape, "samples")
    if len(batch) != 1 or batch[0] < 2:
        raise ValueError(
            f"samples must have shape [N, *event_shape] with N >= 2, event_shape {tuple(energy.event_shape)}; "
            f"got {tuple(samples.shape)}"
        )
    n = batch[0]
    gen = make_generator(seed, device)
    path = _Path(energy, base, is_gauss, beta, energy._label())
    with torch.no_grad():
        x0 = samples.detach().to(dtype=dtype, device=device).reshape(n, d)
        x, log_w, used, acc = _run_ais(
            path, x0, betas.flip(0), n_mcmc=n_mcmc, n_leapfrog=n_leapfrog, step_size=step_size,
            target_accept=target_accept, precond=precond, gen=gen, method="reverse_ais",
        )
    # mean(w) estimates 1/Z: log Z_hat = -log mean(w); the delta-method error is the same on the log scale
    log_inv, stderr, ess = _weights_summary(log_w)
    return LogPartition(
        -log_inv, stderr, ess, "reverse_ais", log_w, x.reshape((n,) + tuple(energy.event_shape)), betas, used,
        acc, path.evals,
    )
