"""The entry point :func:`sample`: it checks its arguments, builds the potential and hands the chains to
the one run loop, :func:`pyro_ebm.mcmc.loop.run`."""

from __future__ import annotations

import inspect
import time
from typing import Union

import torch

from .._rng import check_seed, make_generator
from .._validation import check_beta, check_positive_int
from ..energy import Energy, as_energy, call_energy
from . import tempering as _tempering
from .loop import make_kernel, run
from .potential import EnergyPotential, ModelPotential
from .samples import Samples

__all__ = ["sample", "KERNELS", "make_generator"]

#: kernel names accepted by :func:`sample`
KERNELS = ("hmc", "mala", "ula", "gibbs")


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
        out = call_energy(energy, init.detach(), x, names=("init", "x"))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (init.shape[0],):
        raise ValueError(
            f"the energy must map init [chains, *event] = {tuple(init.shape)} to one value per chain, "
            f"shape ({init.shape[0]},), got {tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}"
            " (init must be [chains, *event_shape])"
        )
    # mixed precision (float32 init, float64 x or parameters): run the chains in the promoted dtype
    dtype = torch.promote_types(init.dtype, out.dtype) if out.is_floating_point() else init.dtype
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        dtype = torch.promote_types(dtype, x.dtype)
    pot = EnergyPotential(energy, init.shape[1:], x)
    return pot, pot.to_flat(init.detach().to(dtype)), False


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
        across chains, trajectory length by ChEES with a ``sqrt(T)`` cost penalty and jitter; the warmup
        schedule of :func:`pyro_ebm.mcmc.warmup.warmup_schedule` tunes them at any ``num_warmup`` from 20
        on and warns with :class:`~pyro_ebm.mcmc.TuningWarning` when it could not), ``"mala"``, ``"ula"``
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
        ``hmc``: ``step_size`` (initial; found by a doubling search if omitted), ``target_accept`` (0.8;
        the warmup raises it where transitions diverge, see ``info["target_accept"]``), ``n_steps`` (fix
        the number of leapfrog steps, disabling trajectory-length adaptation),
        ``trajectory_length`` (initial, default 4 step sizes; its adaptation compares chains, so with
        one chain it is not adapted), ``max_steps`` (256), ``adapt_step_size``, ``adapt_mass`` (True),
        ``max_delta_energy`` (1000, divergence threshold), ``chees_lr`` (0.05), ``compile`` (False: run
        the transition compiled, see :mod:`pyro_ebm.mcmc.compiled`; worth it when the same energy and
        shapes are sampled many times, as in training; the first call compiles for seconds);
        ``mala``: ``step_size``, ``target_accept`` (0.574), ``adapt_step_size``, ``adapt_mass``, ``compile``;
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
    kernel_options = dict(kernel_options)
    min_ratio = kernel_options.pop("tempering_min_ratio", 0.05)
    kern = make_kernel(kernel, kernel_options)
    num_warmup = check_positive_int(num_warmup, "num_warmup", minimum=0)
    num_samples = check_positive_int(num_samples, "num_samples", minimum=1)
    if isinstance(beta, torch.Tensor):
        if beta.numel() != 1:
            raise ValueError("beta must be a scalar here; use tempering= for a ladder")
        beta = float(beta)
    beta = check_beta(beta)
    check_seed(seed)

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
    if tempering is None:
        betas = torch.tensor([beta], dtype=dtype, device=device)
    else:
        betas = _tempering.make_ladder(tempering, beta, min_ratio=min_ratio, dtype=dtype, device=device)
    R = betas.numel()
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
    draws_flat, stats, info = run(kern, pot, q, betas, num_warmup, num_samples, gen, progress)
    info["wall_time"] = time.perf_counter() - t_start
    info["betas"] = betas
    if is_model:
        draws = pot.unpack(draws_flat)
        info["unconstrained_draws"] = draws_flat
    else:
        draws = pot.unflatten(draws_flat)
    return Samples(draws=draws, stats=stats, kernel=kernel, beta=beta, info=info)
