"""The driver: :func:`sample` owns the loop; kernels are pure step functions (see the sibling modules)."""

from __future__ import annotations

import inspect
import math
import numbers
import time
from typing import Union

import torch

from .._validation import check_beta, check_positive_int
from ..energy import Energy, as_energy
from . import gibbs_binary, hmc, langevin, tempering as _tempering
from .adaptation import (
    BatchedDualAveraging,
    chees_gradient,
    chees_init,
    chees_update,
    moments_init,
    moments_update,
    moments_variance,
    warmup_windows,
)
from .potential import EnergyPotential, ModelPotential
from .samples import Samples

__all__ = ["sample", "KERNELS", "make_generator"]

#: dual-averaging ``gamma`` of the per-chain step-size schemes. Stan's 0.05 is tuned for one chain
#: averaging many iterations; per chain, with one noisy acceptance per iteration, it makes ``log eps``
#: jitter so much that the averaged step size overshoots the target acceptance (0.8 -> ~0.9, by Jensen's
#: inequality on the concave acceptance curve). 0.2 lands on the target.
_DA_GAMMA = 0.2

#: cost exponent ``a`` of the trajectory-length objective ``log ChEES - a log T`` (see
#: :func:`pyro_ebm.mcmc.adaptation.chees_update`)
_CHEES_COST = 0.5

#: kernel names accepted by :func:`sample`
KERNELS = ("hmc", "mala", "ula", "gibbs")

_OPTIONS = {
    "hmc": {"step_size", "target_accept", "n_steps", "max_steps", "adapt_step_size", "adapt_mass",
            "trajectory_length", "max_delta_energy", "chees_lr", "tempering_min_ratio"},
    "mala": {"step_size", "target_accept", "adapt_step_size", "adapt_mass", "max_delta_energy",
             "tempering_min_ratio"},
    "ula": {"step_size", "noise", "clip_grad", "tempering_min_ratio"},
    "gibbs": {"blocks", "tempering_min_ratio"},
}


def make_generator(seed, device) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` from an int seed, a generator (returned as is) or ``None``."""
    if isinstance(seed, torch.Generator):
        return seed
    gen = torch.Generator(device=device)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    elif isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, a torch.Generator or None, got {type(seed).__name__}")
    gen.manual_seed(int(seed))
    return gen


def _is_model(obj) -> bool:
    if isinstance(obj, (Energy, torch.nn.Module)):
        return False
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    required = [
        p for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(required) == 0


def _build_potential(energy_or_model, init, x):
    """Returns (potential, q0 [C, D], is_model)."""
    if not callable(energy_or_model):
        raise TypeError(
            f"energy_or_model must be an Energy, a callable F(y[, x]) or a Pyro model, "
            f"got {type(energy_or_model).__name__}"
        )
    init_is_count = isinstance(init, (dict, int)) and not isinstance(init, bool)
    if _is_model(energy_or_model) or init_is_count:
        if x is None:
            args = ()
        elif isinstance(x, tuple):
            args = x
        else:
            args = (x,)
        pot = ModelPotential(energy_or_model, args)
        return pot, init, True
    if not isinstance(init, torch.Tensor):
        raise TypeError(f"init must be a tensor [chains, *event_shape], got {type(init).__name__}")
    if not init.is_floating_point():
        raise TypeError(f"init must be a floating-point tensor, got dtype {init.dtype}")
    if init.dim() < 1 or init.shape[0] < 1:
        raise ValueError(f"init must have shape [chains, *event_shape] with chains >= 1, got {tuple(init.shape)}")
    if isinstance(energy_or_model, Energy):
        if tuple(energy_or_model.event_shape) != tuple(init.shape[1:]):
            raise ValueError(
                f"init must have shape [chains, *event_shape] = [chains, "
                f"{', '.join(map(str, energy_or_model.event_shape))}] for this energy, got {tuple(init.shape)}"
            )
        energy = energy_or_model
    else:
        energy = as_energy(energy_or_model, event_shape=init.shape[1:])
    # check the shape contract once, with a clear message
    with torch.no_grad():
        out = energy(init.detach()) if x is None else energy(init.detach(), x)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (init.shape[0],):
        raise ValueError(
            f"the energy must map init [chains, *event] = {tuple(init.shape)} to one value per chain, "
            f"shape ({init.shape[0]},), got {tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}"
            " (init must be [chains, *event_shape])"
        )
    pot = EnergyPotential(energy, init.shape[1:], x)
    return pot, pot.to_flat(init.detach()), False


def sample(
    energy_or_model,
    init,
    num_warmup: int,
    num_samples: int,
    *,
    kernel: str = "hmc",
    beta: float = 1.0,
    tempering=None,
    seed: Union[int, torch.Generator, None] = None,
    progress: bool = True,
    x=None,
    **kernel_options,
) -> Samples:
    r"""Run a batch of chains on ``exp(-beta F)`` (or a Pyro model's posterior) and return :class:`Samples`.

    All chains move together: one batched energy/gradient evaluation per leapfrog step (or site), with
    per-chain accept/reject. A chain whose proposal is NaN/inf is rejected (it restarts from its last
    finite state) and counted as divergent; it never affects the other chains.

    :param energy_or_model: an :class:`~pyro_ebm.Energy`, a callable ``F(y[, x])`` returning one energy
        per batch element, or a Pyro model (a callable with no required positional arguments; ``x`` is
        then passed as its argument, a tuple as its arguments) with ``pyro.sample``/``pyro.factor``
        sites. Model latents are sampled in unconstrained space and returned constrained. A model
        with required arguments is recognised as a model only when ``init`` is an int or a dict.
    :param init: initial states ``[chains, *event_shape]``; the number of chains, device and dtype come
        from it. For a model: an int (number of chains, uniform(-2, 2) in unconstrained space), a dict
        ``{site: [chains, *site_shape]}`` of constrained values, or a flat unconstrained tensor
        ``[chains, D]``.
    :param num_warmup: adaptation (HMC/MALA) or burn-in (ULA/Gibbs) iterations, discarded.
    :param num_samples: draws kept per chain (>= 1).
    :param kernel: ``"hmc"`` (default: per-chain dual-averaging step size, diagonal mass matrix adapted
        across chains in Stan's windows, trajectory length by ChEES with a ``sqrt(T)`` cost penalty and
        jitter; see :func:`pyro_ebm.mcmc.adaptation.chees_update`), ``"mala"``, ``"ula"``
        (unadjusted Langevin, see :mod:`pyro_ebm.mcmc.langevin` for its bias) or ``"gibbs"``
        (binary units, see :mod:`pyro_ebm.mcmc.gibbs_binary`).
    :param beta: target inverse temperature (``log p = -beta F``).
    :param tempering: ``None``, a number of replicas (geometric ladder from ``beta`` down to
        ``tempering_min_ratio * beta``, default 0.05) or an explicit decreasing ladder starting at
        ``beta``. Draws are those of the target ``beta``; ``info["swap_rates"]`` has the swap rates.
    :param seed: int or ``torch.Generator``; the same seed gives the same numbers.
    :param progress: show a tqdm progress bar.
    :param x: conditioning passed to the energy ``F(y, x)`` (or the model's arguments).
    :param kernel_options: per kernel --
        ``hmc``: ``step_size`` (initial; found by a doubling search if omitted), ``target_accept`` (0.8),
        ``n_steps`` (fix the number of leapfrog steps, disabling trajectory-length adaptation),
        ``trajectory_length`` (initial, default 4 step sizes; its adaptation compares chains, so with
        one chain it is not adapted), ``max_steps`` (256), ``adapt_step_size``, ``adapt_mass`` (True),
        ``max_delta_energy`` (1000, divergence threshold), ``chees_lr`` (0.05);
        ``mala``: ``step_size``, ``target_accept`` (0.574), ``adapt_step_size``, ``adapt_mass``;
        ``ula``: ``step_size`` (0.01), ``noise`` (default ``sqrt(2 step / beta)``), ``clip_grad``;
        ``gibbs``: ``blocks`` (list of index tensors for an energy with ``conditional_logits``).
    :returns: :class:`Samples` with ``draws [chains, num_samples, *event]`` and ``stats``.

    Example::

        >>> import torch
        >>> from pyro_ebm.mcmc import sample
        >>> F = lambda y: 0.5 * (y ** 2).sum(-1)          # standard normal at beta = 1
        >>> s = sample(F, torch.zeros(64, 3), num_warmup=100, num_samples=50, seed=1, progress=False)
        >>> s.draws.shape
        torch.Size([64, 50, 3])
        >>> bool(abs(s.draws.mean()) < 0.1), bool(abs(s.draws.var() - 1) < 0.15)
        (True, True)
    """
    if not isinstance(kernel, str) or kernel.lower() not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(repr(k) for k in KERNELS)}, got {kernel!r}")
    kernel = kernel.lower()
    unknown = set(kernel_options) - _OPTIONS[kernel]
    if unknown:
        raise TypeError(
            f"unknown option(s) {sorted(unknown)} for kernel {kernel!r}; known: {sorted(_OPTIONS[kernel])}"
        )
    num_warmup = check_positive_int(num_warmup, "num_warmup", minimum=0)
    num_samples = check_positive_int(num_samples, "num_samples", minimum=1)
    if isinstance(beta, torch.Tensor):
        if beta.numel() != 1:
            raise ValueError("beta must be a scalar here; use tempering= for a ladder")
        beta = float(beta)
    beta = check_beta(beta)
    if seed is not None and not isinstance(seed, (torch.Generator, numbers.Integral)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, a torch.Generator or None, got {type(seed).__name__}")

    pot, q0, is_model = _build_potential(energy_or_model, init, x)
    if is_model:
        if isinstance(q0, torch.Tensor):
            dtype, device = q0.dtype, q0.device
        else:
            dtype, device = torch.get_default_dtype(), torch.device("cpu")
    else:
        dtype, device = q0.dtype, q0.device
    gen = make_generator(seed, device)
    if is_model:
        if isinstance(q0, bool):
            raise TypeError("init must be an int, a dict or a tensor for a model")
        if isinstance(q0, int):
            n = check_positive_int(q0, "init")
            q0 = pot.random_init(n, gen, dtype, device)
        elif isinstance(q0, dict):
            first = next(iter(q0.values()))
            n = torch.as_tensor(first).shape[0]
            q0 = pot.pack(q0, (n,)).to(dtype=dtype, device=device)
        else:
            if q0.dim() != 2 or q0.shape[1] != pot.dim:
                raise ValueError(f"init for this model must be [chains, {pot.dim}] (unconstrained), got {tuple(q0.shape)}")
    if kernel == "gibbs" and is_model:
        raise ValueError("kernel 'gibbs' needs an energy over {0, 1}^n, not a model")

    C, D = q0.shape
    min_ratio = kernel_options.pop("tempering_min_ratio", 0.05)
    if tempering is None:
        betas = torch.tensor([beta], dtype=dtype, device=device)
    else:
        betas = _tempering.make_ladder(tempering, beta, min_ratio=min_ratio, dtype=dtype, device=device)
    R = betas.numel()
    beta_rc = betas.unsqueeze(-1)  # [R, 1]
    q = q0.to(dtype=dtype, device=device).unsqueeze(0).expand(R, C, D).contiguous()

    F_init = pot.value(q[:1])
    bad = ~torch.isfinite(F_init[0])
    if bool(bad.any()):
        idx = bad.nonzero().flatten()[:10].tolist()
        raise ValueError(
            f"init: the energy is not finite at {int(bad.sum())} of {C} chains (first chains: {idx}); "
            "start every chain where F is finite"
        )

    t_start = time.perf_counter()
    runner = {"hmc": _run_hmc, "mala": _run_hmc, "ula": _run_ula, "gibbs": _run_gibbs}[kernel]
    result = runner(
        kernel, pot, q, beta_rc, betas, num_warmup, num_samples, gen, progress, dict(kernel_options)
    )
    draws_flat, stats, info = result
    info["wall_time"] = time.perf_counter() - t_start
    info["betas"] = betas
    if is_model:
        draws = pot.unpack(draws_flat)
        info["unconstrained_draws"] = draws_flat
    else:
        draws = pot.unflatten(draws_flat)
    return Samples(draws=draws, stats=stats, kernel=kernel, beta=beta, info=info)


# ------------------------------------------------------------------------------------------------------
# shared pieces of the loops


def _progress(total, progress, kernel):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{kernel} warmup", leave=False)


class _Recorder:
    """Writes each draw into a preallocated ``[chains, draws, D]`` tensor and keeps references to each
    iteration's (fresh) statistics tensors, stacked once at the end; numbers (the same for every chain)
    are kept as numbers."""

    def __init__(self, C, S, D, dtype, device, replicas=False):
        # replicas: the statistics are put as [R, C] tensors; the first replica's are kept
        self.C, self.dtype, self.device, self.replicas = C, dtype, device, replicas
        self.draws = torch.empty((C, S, D), dtype=dtype, device=device)
        self.values = {k: [] for k in ("energy", "lp", "acceptance_rate", "step_size", "n_steps", "diverging")}

    def put(self, j, q, **values):
        self.draws[:, j] = q
        for k, v in values.items():
            self.values[k].append(v)

    def finish(self, scale=None):
        stats = {}
        dtypes = {"n_steps": torch.long, "diverging": torch.bool}
        for k, vs in self.values.items():
            dt = dtypes.get(k, self.dtype)
            if not any(isinstance(v, torch.Tensor) for v in vs):
                stats[k] = torch.tensor(vs, dtype=dt, device=self.device).expand(self.C, len(vs)).clone()
                continue
            if self.replicas and all(isinstance(v, torch.Tensor) for v in vs):
                stats[k] = torch.stack(vs, -1)[0].to(dt)
                continue
            cols = [(v[0] if self.replicas else v).to(dt) if isinstance(v, torch.Tensor)
                    else torch.full((self.C,), v, dtype=dt, device=self.device) for v in vs]
            stats[k] = torch.stack([c.expand(self.C) for c in cols], 1)
        for k, c in (scale or {}).items():
            stats[k] = stats[k] * c
        return self.draws, stats


class _Swapper:
    def __init__(self, betas, gen):
        self.betas = betas
        self.gen = gen
        R = betas.numel()
        self.sum = torch.zeros(max(R - 1, 0), dtype=betas.dtype, device=betas.device)
        self.count = torch.zeros_like(self.sum)
        self.parity = 0

    def __call__(self, tensors, F):
        if self.betas.numel() < 2:
            return tensors
        out, probs = _tempering.swap(tensors, F, self.betas, self.parity, self.gen)
        self.parity ^= 1
        tried = ~torch.isnan(probs)
        self.sum += torch.where(tried, probs, torch.zeros_like(probs)).sum(-1)
        self.count += tried.sum(-1)
        return out

    def rates(self):
        return self.sum / self.count.clamp_min(1)


def _step_sizes(log_eps: torch.Tensor):
    """Per-chain step sizes ``[R, C]`` from their logs, and each replica's log median step size (floats):
    a trajectory of length ``T`` runs ``L = ceil(u T / median eps)`` leapfrog steps."""
    return torch.exp(log_eps), log_eps.median(dim=1).values.tolist()


def _run_hmc(kernel, pot, q, beta_rc, betas, num_warmup, num_samples, gen, progress, opts):
    R, C, D = q.shape
    is_mala = kernel == "mala"
    target = float(opts.get("target_accept", 0.574 if is_mala else 0.8))
    if not 0 < target < 1:
        raise ValueError(f"target_accept must be in (0, 1), got {target}")
    adapt_step = bool(opts.get("adapt_step_size", True))
    adapt_mass = bool(opts.get("adapt_mass", True))
    max_dE = float(opts.get("max_delta_energy", 1000.0))
    fixed_L = 1 if is_mala else opts.get("n_steps", None)
    if fixed_L is not None:
        fixed_L = check_positive_int(fixed_L, "n_steps")
    max_steps = check_positive_int(opts.get("max_steps", 256), "max_steps")
    chees_lr = float(opts.get("chees_lr", 0.05))
    use_chees = fixed_L is None

    state = hmc.init(pot, q)
    inv_mass = torch.ones((R, 1, D), dtype=q.dtype, device=q.device)
    grad_evals = 1
    if opts.get("step_size") is not None:
        eps = torch.as_tensor(opts["step_size"], dtype=q.dtype, device=q.device)
        if bool((eps <= 0).any()):
            raise ValueError(f"step_size must be > 0, got {opts['step_size']}")
        eps = eps.expand(R, C).clone()
    else:
        eps = hmc.find_initial_step_size(state, pot, beta_rc, inv_mass, gen, target=target)
        grad_evals += 16
    da = BatchedDualAveraging(prox_center=torch.log(10 * eps), gamma=_DA_GAMMA)
    windows = set(warmup_windows(num_warmup)) if adapt_mass else set()
    win_start = 75 if num_warmup >= 150 else int(0.15 * num_warmup)
    moments = None
    first_window = True
    n_iter = num_warmup + num_samples
    eps_run = eps
    med_log = eps.log().median(dim=1).values.tolist()  # the log of the median is the median of the logs
    if use_chees:
        T0 = opts.get("trajectory_length")
        if T0 is None:
            T0 = [max(4 * math.exp(m), 1e-6) for m in med_log]
        elif not float(T0) > 0:
            raise ValueError(f"trajectory_length must be > 0, got {T0}")
        else:
            T0 = [float(T0)] * R
        chees = chees_init(T0)
        log_T = chees.log_T
        # the trajectory-length jitter of every iteration, drawn at once (one number per iteration)
        jitter = torch.rand(n_iter, generator=gen, dtype=q.dtype, device=q.device).tolist()
        log_max_steps = math.log(max_steps)
    swapper = _Swapper(betas, gen)
    rec = _Recorder(C, num_samples, D, q.dtype, q.device, replicas=True)
    div_warm = torch.zeros((R, C), dtype=torch.long, device=q.device)
    bar = _progress(n_iter, progress, kernel)
    cache = hmc.StepCache()
    metric = 1.0 / inv_mass
    target_t = torch.tensor(target, dtype=q.dtype, device=q.device)
    L_t = {}  # per-replica step counts as [R, C] tensors, by tuple of counts
    with torch.no_grad():
        for i in range(n_iter):
            warm = i < num_warmup
            if i == num_warmup:
                if adapt_step and num_warmup > 0:
                    log_eps = da.get_state()[1]
                    eps_run, med_log = _step_sizes(log_eps)
                if use_chees and num_warmup > 0:
                    log_T = chees.log_T_avg
                if bar is not None:
                    bar.set_description(f"{kernel} sample")
            if use_chees:
                u = jitter[i]
                # one number of steps per replica (no chain waits for another); each chain's trajectory
                # length is L * its own step size
                Ls = tuple(min(max_steps, max(1, math.ceil(u * math.exp(lt - ml))))
                           for lt, ml in zip(log_T, med_log))
                L = Ls[0]
                if R > 1 and any(l != L for l in Ls):
                    L = L_t.get(Ls)
                    if L is None:
                        L = L_t[Ls] = torch.tensor(Ls, device=q.device).unsqueeze(-1).expand(R, C)
                L_max = max(Ls)
            else:
                L = L_max = fixed_L
            state_prev = state
            eps_step = eps_run
            state, info = hmc.step(state, pot, eps_step, L, beta_rc, inv_mass, gen, max_delta_energy=max_dE,
                                   cache=cache)
            grad_evals += L_max
            if warm:
                div_warm += info.diverging
                if adapt_step:
                    da.step(target_t - info.accept_prob)
                    log_eps = da.get_state()[0]
                    eps_run, med_log = _step_sizes(log_eps)
                if use_chees:
                    traj = eps_step * (L if isinstance(L, int) else L.to(eps_step.dtype))
                    grads = chees_gradient(state_prev.q, info.q_prop, info.p_prop, info.accept_prob, traj, metric,
                                           _CHEES_COST)
                    chees = chees_update(chees, grads, lr=chees_lr,
                                         max_log_T=[m + log_max_steps for m in med_log])
                    log_T = chees.log_T
                if adapt_mass and i >= win_start and windows:
                    if moments is None:
                        moments = moments_init(state.q)
                    moments = moments_update(moments, state.q)
                if i + 1 in windows:
                    inv_mass = moments_variance(moments)
                    metric = 1.0 / inv_mass
                    moments = None
                    if adapt_step:
                        # restart dual averaging (as Stan does) from the window's averaged step size
                        log_eps = da.get_state()[1]
                        eps_run, med_log = _step_sizes(log_eps)
                        da = BatchedDualAveraging(prox_center=log_eps + math.log(10), gamma=_DA_GAMMA)
                    if use_chees and first_window:
                        # the first metric replaces the identity, so T's units changed: restart the
                        # adaptation from below (at most 4 step sizes), where the first optimum met is the
                        # shortest good trajectory (from above, T can stop at a later, worse local optimum)
                        first_window = False
                        chees = chees_init([min(math.exp(lt), 4 * math.exp(m)) for lt, m in zip(log_T, med_log)])
                        log_T = chees.log_T
            else:
                rec.put(
                    i - num_warmup, state.q[0],
                    energy=info.energy, lp=state.F, acceptance_rate=info.accept_prob,
                    step_size=eps_run, n_steps=info.n_steps, diverging=info.diverging,
                )
            if R > 1:
                state = hmc.HMCState(*swapper((state.q, state.F, state.grad), state.F))
            if bar is not None:
                bar.update(1)
                if i % 50 == 0:
                    bar.set_postfix(acc=f"{float(info.accept_prob[0].mean()):.2f}", steps=L_max, refresh=False)
    if bar is not None:
        bar.close()
    draws, stats = rec.finish(scale={"lp": -beta_rc[0]})  # lp = -beta F
    info_out = {
        "step_size": eps_run[0].clone(),
        "inv_mass": pot.unflatten(inv_mass[0, 0]) if not pot.is_model else inv_mass[0, 0],
        "num_divergent": stats["diverging"].sum(1),
        "num_divergent_warmup": div_warm[0],
        "grad_evals": grad_evals,
    }
    if use_chees:
        info_out["trajectory_length"] = torch.tensor([math.exp(lt) for lt in log_T], dtype=q.dtype, device=q.device)
    if R > 1:
        info_out["swap_rates"] = swapper.rates()
        info_out["step_size_replicas"] = eps_run.clone()
    return draws, stats, info_out


def _run_ula(kernel, pot, q, beta_rc, betas, num_warmup, num_samples, gen, progress, opts):
    R, C, D = q.shape
    step_size = float(opts.get("step_size", 0.01))
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    noise = opts.get("noise")
    beta3 = beta_rc.unsqueeze(-1)
    if noise is None:
        noise_t = torch.sqrt(2 * step_size / beta3)
    else:
        if float(noise) < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        noise_t = torch.full_like(beta3, float(noise))
    clip = opts.get("clip_grad")
    state = langevin.init(pot, q)
    swapper = _Swapper(betas, gen)
    rec = _Recorder(C, num_samples, D, q.dtype, q.device)
    div_warm = torch.zeros(C, dtype=torch.long, device=q.device)
    bar = _progress(num_warmup + num_samples, progress, kernel)
    ones = torch.ones(C, dtype=q.dtype, device=q.device)
    for i in range(num_warmup + num_samples):
        state, info = langevin.ula_step(state, pot, step_size, noise_t, gen, clip_grad=clip)
        if i < num_warmup:
            div_warm += info.diverging[0]
        else:
            U = beta_rc[0] * state.F[0]
            rec.put(i - num_warmup, state.q[0], energy=U, lp=-U, acceptance_rate=ones,
                    step_size=step_size * ones, n_steps=1, diverging=info.diverging[0])
        if R > 1:
            state = hmc.HMCState(*swapper((state.q, state.F, state.grad), state.F))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    draws, stats = rec.finish()
    out = {"step_size": step_size, "noise": noise_t.flatten(), "num_divergent": stats["diverging"].sum(1),
           "num_divergent_warmup": div_warm, "grad_evals": num_warmup + num_samples + 1}
    if R > 1:
        out["swap_rates"] = swapper.rates()
    return draws, stats, out


def _run_gibbs(kernel, pot, q, beta_rc, betas, num_warmup, num_samples, gen, progress, opts):
    R, C, D = q.shape
    blocks = opts.get("blocks")
    energy = pot.energy
    if blocks is None and hasattr(energy, "conditional_logits"):
        blocks = getattr(energy, "gibbs_blocks", None)
    if blocks is not None:
        if not hasattr(energy, "conditional_logits"):
            raise ValueError("blocks were given but the energy has no conditional_logits(y, block) method")
        blocks = [torch.as_tensor(b, dtype=torch.long, device=q.device).flatten() for b in blocks]
    state = gibbs_binary.init(pot, q)
    swapper = _Swapper(betas, gen)
    rec = _Recorder(C, num_samples, D, q.dtype, q.device)
    bar = _progress(num_warmup + num_samples, progress, kernel)
    ones = torch.ones(C, dtype=q.dtype, device=q.device)
    for i in range(num_warmup + num_samples):
        state, n = gibbs_binary.step(state, pot, beta_rc, gen, blocks=blocks)
        if i >= num_warmup:
            U = beta_rc[0] * state.F[0]
            rec.put(i - num_warmup, state.q[0], energy=U, lp=-U, acceptance_rate=ones,
                    step_size=0 * ones, n_steps=n, diverging=False)
        if R > 1:
            state = gibbs_binary.GibbsState(*swapper((state.q, state.F), state.F))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    draws, stats = rec.finish()
    out = {"num_divergent": stats["diverging"].sum(1)}
    if R > 1:
        out["swap_rates"] = swapper.rates()
    return draws, stats, out
