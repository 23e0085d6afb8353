"""The one run loop: choose steps, step, adapt or record, swap.

:func:`run` drives a kernel -- :class:`HMCKernel` (HMC and MALA, with :class:`~pyro_ebm.mcmc.warmup.Warmup`),
:class:`ULAKernel` or :class:`GibbsKernel` -- over ``num_warmup + num_samples`` iterations of a batch of
chains ``[R, C, D]`` (``R`` tempering replicas), records the target replica's draws and statistics, and
swaps neighbouring replicas after every transition. :func:`pyro_ebm.mcmc.sample` and
:class:`pyro_ebm.mcmc.PersistentChains` both call it, so the same seed gives them the same draws.
"""

from __future__ import annotations

import math
import numbers

import torch

from .._validation import check_positive_int, check_real
from . import compiled, gibbs_binary, hmc, langevin, tempering as _tempering
from .warmup import Warmup, warmup_schedule

__all__ = ["run", "make_kernel", "HMCKernel", "ULAKernel", "GibbsKernel"]

#: options each kernel accepts
OPTIONS = {
    "hmc": {"step_size", "target_accept", "n_steps", "max_steps", "adapt_step_size", "adapt_mass",
            "trajectory_length", "max_delta_energy", "chees_lr", "compile"},
    "mala": {"step_size", "target_accept", "adapt_step_size", "adapt_mass", "max_delta_energy", "compile"},
    "ula": {"step_size", "noise", "clip_grad"},
    "gibbs": {"blocks"},
}


def _positive(value, name: str, *, allow_zero: bool = False) -> float:
    """A finite number ``> 0`` (``>= 0`` with ``allow_zero``; a one-element tensor is read as its value),
    or an error naming ``name``."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = float(value)
    return check_real(value, name, minimum=0, strict=not allow_zero)


class _Recorder:
    """Writes each draw into a preallocated ``[draws, chains, D]`` tensor (one contiguous block per
    draw; returned as ``[chains, draws, D]``) and keeps references to each iteration's statistics --
    numbers, ``[C]`` tensors or ``[R, C]`` tensors of all replicas, of which the first (the target) is
    kept -- stacked once at the end and multiplied by ``scale[name]`` where given."""

    def __init__(self, C, S, D, dtype, device, scale=None):
        self.C, self.dtype, self.device = C, dtype, device
        self.scale = scale or {}
        self.draws = torch.empty((S, C, D), dtype=dtype, device=device)
        self.values = {k: [] for k in ("energy", "lp", "acceptance_rate", "step_size", "n_steps", "diverging")}

    def put(self, j, q, **values):
        self.draws[j] = q
        for k, v in values.items():
            self.values[k].append(v)

    def finish(self):
        stats = {}
        dtypes = {"n_steps": torch.long, "diverging": torch.bool}
        for k, vs in self.values.items():
            dt = dtypes.get(k, self.dtype)
            if not any(isinstance(v, torch.Tensor) for v in vs):
                stat = torch.tensor(vs, dtype=dt, device=self.device).expand(self.C, len(vs)).clone()
            elif all(isinstance(v, torch.Tensor) and v.shape == vs[0].shape for v in vs):
                stacked = torch.stack(vs)  # [S, C] or [S, R, C]
                stat = (stacked if stacked.dim() == 2 else stacked[:, 0]).to(dt).T.contiguous()
            else:
                cols = [(v if v.dim() == 1 else v[0]).to(dt) if isinstance(v, torch.Tensor)
                        else torch.full((self.C,), v, dtype=dt, device=self.device) for v in vs]
                stat = torch.stack(cols, 1)
            stats[k] = stat * self.scale[k] if k in self.scale else stat
        return self.draws.transpose(0, 1).contiguous(), stats


class _Swapper:
    """Replica exchange after every transition, with the swap acceptance rates of neighbours."""

    def __init__(self, betas, gen):
        self.betas = betas
        self.gen = gen
        R = betas.numel()
        self.sum = torch.zeros(max(R - 1, 0), dtype=betas.dtype, device=betas.device)
        self.count = torch.zeros_like(self.sum)
        self.parity = 0

    def __call__(self, state):
        out, probs = _tempering.swap(tuple(state), state.F, self.betas, self.parity, self.gen)
        self.parity ^= 1
        tried = ~torch.isnan(probs)
        self.sum += torch.where(tried, probs, torch.zeros_like(probs)).sum(-1)
        self.count += tried.sum(-1)
        return type(state)(*out)

    def rates(self):
        return self.sum / self.count.clamp_min(1)


class HMCKernel:
    """HMC (``mala=False``) or MALA (one leapfrog step) with per-chain step sizes, a cross-chain diagonal
    mass matrix and ChEES trajectory lengths, tuned by :class:`~pyro_ebm.mcmc.warmup.Warmup`."""

    def __init__(self, opts: dict, *, mala: bool = False):
        self.name = "mala" if mala else "hmc"
        self.target = float(opts.get("target_accept", 0.574 if mala else 0.8))
        if not 0 < self.target < 1:
            raise ValueError(f"target_accept must be in (0, 1), got {opts.get('target_accept')}")
        self.adapt_step = bool(opts.get("adapt_step_size", True))
        self.adapt_mass = bool(opts.get("adapt_mass", True))
        self.max_dE = _positive(opts.get("max_delta_energy", 1000.0), "max_delta_energy")
        fixed_L = 1 if mala else opts.get("n_steps", None)
        self.fixed_L = None if fixed_L is None else check_positive_int(fixed_L, "n_steps")
        self.max_steps = check_positive_int(opts.get("max_steps", 256), "max_steps")
        self.chees_lr = _positive(opts.get("chees_lr", 0.05), "chees_lr")
        self.step_size = opts.get("step_size")
        if self.step_size is not None:
            if isinstance(self.step_size, bool) or not isinstance(self.step_size, (numbers.Real, torch.Tensor)):
                raise TypeError(f"step_size must be a number or a tensor [chains], got {type(self.step_size).__name__}")
            eps = torch.as_tensor(self.step_size, dtype=torch.float64)
            if not bool(torch.isfinite(eps).all()) or not bool((eps > 0).all()):
                raise ValueError(f"step_size must be finite and > 0, got {self.step_size}")
        self.compile = opts.get("compile", False)
        if not isinstance(self.compile, bool):
            raise TypeError(f"compile must be True or False, got {self.compile!r}")
        self.T0 = opts.get("trajectory_length")
        if self.T0 is not None:
            self.T0 = _positive(self.T0, "trajectory_length")

    def init(self, pot, q, beta_rc, gen, num_warmup, num_samples):
        R, C, D = q.shape
        self.pot, self.beta_rc, self.gen = pot, beta_rc, gen
        self.state = hmc.init(pot, q)
        self.grad_evals = 1
        inv_mass = torch.ones((R, 1, D), dtype=q.dtype, device=q.device)
        self.ops = compiled.compile_ops(pot, q, beta_rc, inv_mass, self.max_dE) if self.compile else None
        if self.step_size is not None:
            eps = torch.as_tensor(self.step_size, dtype=q.dtype, device=q.device).expand(R, C).clone()
        else:
            eps, trials = hmc.find_initial_step_size(self.state, pot, beta_rc, inv_mass, gen, target=self.target,
                                                     ops=self.ops)
            self.grad_evals += trials
        T0 = None
        if self.fixed_L is None:
            med = eps.log().median(dim=1).values.tolist()
            T0 = [max(4 * math.exp(m), 1e-6) for m in med] if self.T0 is None else [self.T0] * R
            # the trajectory-length jitter of every iteration, drawn at once (one number per iteration)
            self.jitter = torch.rand(num_warmup + num_samples, generator=gen, dtype=q.dtype, device=q.device).tolist()
        self.warmup = Warmup(warmup_schedule(num_warmup, self.adapt_mass), eps, inv_mass, target=self.target,
                             adapt_step=self.adapt_step, trajectory_length=T0, chees_lr=self.chees_lr,
                             max_steps=self.max_steps, ops=self.ops)
        self.eps, self.inv_mass, self.log_T = eps, inv_mass, self.warmup.log_trajectory_length
        self._div_warm = []  # each warmup transition's divergent flags [R, C], summed once at the end
        self._L_tensors = {}
        self.noise = hmc.Noise(gen, q, num_warmup + num_samples)

    def _num_steps(self, i):
        """Leapfrog steps of iteration ``i``: an int, or ``[R, C]`` when the replicas differ; and the max."""
        if self.fixed_L is not None:
            return self.fixed_L, self.fixed_L
        u = self.jitter[i]
        med = self.warmup.log_median_step
        # one number of steps per replica (no chain waits for another); each chain's trajectory length is
        # L * its own step size
        Ls = self._Ls = tuple(min(self.max_steps, max(1, math.ceil(u * math.exp(lt - ml))))
                              for lt, ml in zip(self.log_T, med))
        if all(n == Ls[0] for n in Ls):
            return Ls[0], Ls[0]
        return self._steps_tensor(Ls), max(Ls)

    def _steps_tensor(self, Ls):
        """Each replica's number of leapfrog steps ``Ls`` as a long tensor ``[R, C]``, cached, of one layout
        whether or not the replicas' counts differ (a compiled piece is bound to its inputs' strides)."""
        R, C = self.eps.shape
        L = self._L_tensors.get(Ls)
        if L is None:
            L = self._L_tensors[Ls] = torch.tensor(Ls, device=self.eps.device).unsqueeze(-1).expand(R, C)
        return L

    def transition(self, i):
        L, L_max = self._num_steps(i)
        self.q_prev = self.state.q
        self.state, info = hmc.step(self.state, self.pot, self.eps, L, self.beta_rc, self.inv_mass, self.noise,
                                    max_delta_energy=self.max_dE, ops=self.ops)
        self.grad_evals += L_max
        return info

    def adapt(self, i, info):
        self._div_warm.append(info.diverging)
        n_steps = None if self.fixed_L is not None else self._steps_tensor(self._Ls)
        w = self.warmup
        if w.update(i, self.q_prev, self.state.q, info, self.eps, n_steps):
            self.inv_mass = w.inv_mass
            if self.adapt_step:
                eps, trials = hmc.find_initial_step_size(self.state, self.pot, self.beta_rc, self.inv_mass, self.gen,
                                                         start=w.step_size, target=w.target, ops=self.ops)
                self.grad_evals += trials
                w.restart_step_size(eps)
        self.eps = w.step_size
        self.log_T = w.log_trajectory_length

    def end_warmup(self):
        self.eps, log_T, self.inv_mass = self.warmup.finish()
        if log_T is not None:
            self.log_T = log_T

    def stats(self, info):
        # all replicas' tensors, as they are (the recorder keeps the target's); lp = -beta F, scaled once
        return dict(energy=info.energy, lp=self.state.F, acceptance_rate=info.accept_prob, step_size=self.eps,
                    n_steps=info.n_steps, diverging=info.diverging)

    def stat_scale(self):
        return {"lp": -float(self.beta_rc[0, 0])}

    def info(self, pot):
        out = {
            "step_size": self.eps[0].clone(),
            "inv_mass": pot.unflatten(self.inv_mass[0, 0]) if not pot.is_model else self.inv_mass[0, 0],
            "num_divergent_warmup": (torch.stack(self._div_warm).sum(0)[0] if self._div_warm
                                     else torch.zeros_like(self.eps[0], dtype=torch.long)),
            "grad_evals": self.grad_evals,
            "target_accept": self.warmup.target,
        }
        if self.fixed_L is None:
            out["trajectory_length"] = torch.tensor([math.exp(lt) for lt in self.log_T], dtype=self.eps.dtype,
                                                    device=self.eps.device)
        if self.eps.shape[0] > 1:
            out["step_size_replicas"] = self.eps.clone()
        return out


class ULAKernel:
    """Unadjusted Langevin (see :mod:`pyro_ebm.mcmc.langevin`); NaN/inf proposals are rejected and
    counted as divergent."""

    name = "ula"

    def __init__(self, opts: dict):
        self.step_size = _positive(opts.get("step_size", 0.01), "step_size")
        noise = opts.get("noise")
        self.noise = None if noise is None else _positive(noise, "noise", allow_zero=True)
        clip = opts.get("clip_grad")
        self.clip = None if clip is None else _positive(clip, "clip_grad")

    def init(self, pot, q, beta_rc, gen, num_warmup, num_samples):
        self.pot, self.beta_rc, self.gen = pot, beta_rc, gen
        beta3 = beta_rc.unsqueeze(-1)
        self.noise_t = torch.sqrt(2 * self.step_size / beta3) if self.noise is None else torch.full_like(beta3, self.noise)
        self.state = hmc.init(pot, q)
        self.grad_evals = 1
        C = q.shape[1]
        self.div_warm = torch.zeros(C, dtype=torch.long, device=q.device)

    def transition(self, i):
        self.state, info = langevin.ula_step(self.state, self.pot, self.step_size, self.noise_t, self.gen,
                                             clip_grad=self.clip)
        self.grad_evals += 1
        return info

    def adapt(self, i, info):
        self.div_warm += info.diverging[0]

    def end_warmup(self):
        pass

    def stat_scale(self):
        b = float(self.beta_rc[0, 0])
        return {"energy": b, "lp": -b}

    def stats(self, info):
        # as HMCKernel.stats: all replicas' F, scaled once by the recorder (energy = beta F, lp = -beta F)
        return dict(energy=self.state.F, lp=self.state.F, acceptance_rate=1.0, step_size=self.step_size,
                    n_steps=1, diverging=info.diverging)

    def info(self, pot):
        return {"step_size": self.step_size, "noise": self.noise_t.flatten(), "num_divergent_warmup": self.div_warm,
                "grad_evals": self.grad_evals}


class GibbsKernel:
    """Binary Gibbs sweeps (see :mod:`pyro_ebm.mcmc.gibbs_binary`)."""

    name = "gibbs"

    def __init__(self, opts: dict):
        self.blocks = opts.get("blocks")

    def init(self, pot, q, beta_rc, gen, num_warmup, num_samples):
        self.pot, self.beta_rc, self.gen = pot, beta_rc, gen
        energy = pot.energy
        blocks = self.blocks
        if blocks is None and hasattr(energy, "conditional_logits"):
            blocks = getattr(energy, "gibbs_blocks", None)
        if blocks is not None:
            if not hasattr(energy, "conditional_logits"):
                raise ValueError("blocks were given but the energy has no conditional_logits(y, block) method")
            blocks = [torch.as_tensor(b, dtype=torch.long, device=q.device).flatten() for b in blocks]
        self.blocks_t = blocks
        self.state = gibbs_binary.init(pot, q)

    def transition(self, i):
        self.state, self.n = gibbs_binary.step(self.state, self.pot, self.beta_rc, self.gen, blocks=self.blocks_t)
        return None

    def adapt(self, i, info):
        pass

    def end_warmup(self):
        pass

    def stat_scale(self):
        b = float(self.beta_rc[0, 0])
        return {"energy": b, "lp": -b}

    def stats(self, info):
        return dict(energy=self.state.F, lp=self.state.F, acceptance_rate=1.0, step_size=0.0, n_steps=self.n,
                    diverging=False)

    def info(self, pot):
        return {}


def make_kernel(name: str, opts: dict):
    """The kernel object for ``name`` (one of ``OPTIONS``) with its options (validated here)."""
    unknown = set(opts) - OPTIONS[name]
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)} for kernel {name!r}; known: {sorted(OPTIONS[name])}")
    if name in ("hmc", "mala"):
        return HMCKernel(opts, mala=name == "mala")
    return ULAKernel(opts) if name == "ula" else GibbsKernel(opts)


def run(kernel, pot, q, betas, num_warmup: int, num_samples: int, gen, progress: bool = False):
    """Run ``kernel`` on chains ``q`` ``[R, C, D]`` (replica ``r`` at inverse temperature ``betas[r]``).

    :returns: ``(draws [C, num_samples, D], stats {name: [C, num_samples]}, info)`` for the target
        replica ``betas[0]``; ``info`` has the kernel's adaptation results, ``num_divergent`` and, with
        tempering, ``swap_rates``.
    """
    R, C, D = q.shape
    beta_rc = betas.unsqueeze(-1)
    kernel.init(pot, q, beta_rc, gen, num_warmup, num_samples)
    swapper = _Swapper(betas, gen) if R > 1 else None
    rec = _Recorder(C, num_samples, D, q.dtype, q.device, scale=kernel.stat_scale())
    n_iter = num_warmup + num_samples
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_iter, desc=f"{kernel.name} warmup", leave=False)
    with torch.no_grad():
        for i in range(n_iter):
            if i == num_warmup:
                kernel.end_warmup()
                if bar is not None:
                    bar.set_description(f"{kernel.name} sample")
            info = kernel.transition(i)
            if i < num_warmup:
                kernel.adapt(i, info)
            else:
                rec.put(i - num_warmup, kernel.state.q[0], **kernel.stats(info))
            if swapper is not None:
                kernel.state = swapper(kernel.state)
            if bar is not None:
                bar.update(1)
                if i % 50 == 0 and info is not None and hasattr(info, "accept_prob"):
                    bar.set_postfix(acc=f"{float(info.accept_prob[0].mean()):.2f}", refresh=False)
    if bar is not None:
        bar.close()
    draws, stats = rec.finish()
    out = kernel.info(pot)
    out["num_divergent"] = stats["diverging"].sum(1)
    if swapper is not None:
        out["swap_rates"] = swapper.rates()
    return draws, stats, out
