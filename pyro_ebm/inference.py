"""Inference in energy-based models: minimising energies and free energies over latents.

* :func:`argmin_energy` — gradient-based ``y* = argmin_y F(y, x)`` from many restarts at once, keeping every
  distinct minimum ("there may be multiple solutions"); :func:`argmin_candidates` — exhaustive over a
  finite candidate set.
* :func:`free_energy` — ``F_beta(y, x) = -1/beta log sum_z exp(-beta E(y, z, x))`` over a finite latent, exact
  and differentiable; ``beta = inf`` is ``min_z E``. :func:`latent_posterior` is the Gibbs posterior over
  ``z`` and :func:`argmin_latent` its zero-temperature limit.
* Continuous latents: :func:`free_energy_min` (zero temperature, gradient descent on ``z`` with restarts)
  and :func:`free_energy_importance` (the beta-marginal by importance sampling, with a standard error).
* :func:`latent_energy_model` — the same free energy through Pyro's own enumeration machinery.
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch.distributions import biject_to

from ._weights import importance_summary
from ._validation import MAX_ENUMERATION, check_beta, check_beta_batch, check_finite, check_positive_int, check_real
from .energy import (
    Energy,
    LatentEnergy,
    _check_energy_call,
    as_energy,
    batch_shape_of,
    call_energy,
    check_energy_output,
    check_inputs_finite,
)
from .gibbs import DiscreteGibbs, _candidate_energies, energy_factor

__all__ = [
    "ArgminResult",
    "Minima",
    "Estimate",
    "argmin_energy",
    "argmin_candidates",
    "free_energy",
    "latent_posterior",
    "argmin_latent",
    "free_energy_min",
    "free_energy_importance",
    "latent_energy_model",
]


class Minima(NamedTuple):
    """Distinct minima found from several restarts, sorted by energy (lowest first).

    ``values``: ``[M, *event_shape]``; ``energies``: ``[M]``; ``counts``: ``[M]``, how many restarts
    converged to each.
    """

    values: torch.Tensor
    energies: torch.Tensor
    counts: torch.Tensor


class Estimate(NamedTuple):
    """A Monte Carlo estimate: ``value``, its ``stderr`` and the ``ess`` of the importance weights."""

    value: torch.Tensor
    stderr: torch.Tensor
    ess: torch.Tensor


class ArgminResult(NamedTuple):
    """Result of :func:`argmin_energy`.

    ``y``: the final point of each restart, ``[R, *batch, *event_shape]``; ``energy``: ``[R, *batch]``;
    ``grad_norm``: the gradient norm (in the unconstrained space) at the end, ``[R, *batch]``;
    ``steps``: how many optimisation steps ran.
    """

    y: torch.Tensor
    energy: torch.Tensor
    grad_norm: torch.Tensor
    steps: int

    @property
    def best(self) -> torch.Tensor:
        """The lowest-energy point per batch element, ``[*batch, *event_shape]``."""
        idx = self.energy.argmin(0)
        event_dim = self.y.dim() - self.energy.dim()
        idx = idx.reshape((1,) + idx.shape + (1,) * event_dim).expand((1,) + self.y.shape[1:])
        return self.y.gather(0, idx).squeeze(0)

    def distinct(self, tol: float = 1e-3) -> "Minima | List[Minima]":
        """Group restarts whose end points lie within Euclidean distance ``tol`` of each other.

        Returns a :class:`Minima` when there is no batch, else a list of them (batch flattened, C order).
        """
        tol = check_real(tol, "tol", minimum=0.0, strict=True)
        r = self.y.shape[0]
        batch = self.energy.shape[1:]
        event = self.y.shape[1 + len(batch) :]
        ys = self.y.reshape((r, -1) + tuple(event)).movedim(0, 1)  # [B, R, *event]
        es = self.energy.reshape(r, -1).movedim(0, 1)
        out = [_cluster(y_b, e_b, tol) for y_b, e_b in zip(ys, es)]
        return out[0] if len(batch) == 0 else out


def _cluster(y: torch.Tensor, e: torch.Tensor, tol: float) -> Minima:
    order = torch.argsort(e)
    flat = y.reshape(y.shape[0], -1)
    reps: List[int] = []
    counts: List[int] = []
    for i in order.tolist():
        if reps:
            d = torch.linalg.vector_norm(flat[reps] - flat[i], dim=-1)
            j = int(torch.argmin(d))
            if d[j] <= tol:
                counts[j] += 1
                continue
        reps.append(i)
        counts.append(1)
    idx = torch.tensor(reps, device=y.device)
    return Minima(y[idx], e[idx], torch.tensor(counts))


def _call(energy: Energy, y, x, z=None, names=("y", "x")):
    return call_energy(energy, y, x, z if energy.has_latent else None, names=names)


def _minimize(fn, u0: torch.Tensor, batch_ndim: int, steps: int, lr: float, tol: float):
    """Adam with a cosine-annealed learning rate on independent problems ``fn(u) -> [*batch]``."""
    u = u0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 1e-3)
    event_dims = tuple(range(batch_ndim, u.dim()))
    gnorm = torch.full(u.shape[:batch_ndim], math.inf, dtype=u.dtype, device=u.device)
    step = 0
    for step in range(1, steps + 1):
        with torch.enable_grad():
            f = fn(u)
            (g,) = torch.autograd.grad(f.sum(), u)
        if not torch.isfinite(g).all():
            bad = ~torch.isfinite(g)
            raise ValueError(
                f"the energy's gradient is not finite at {int(bad.sum())} entries during argmin "
                f"(first at index {tuple(bad.nonzero()[0].tolist())}); check the energy or lower lr"
            )
        u.grad = g
        opt.step()
        sched.step()
        if step % 25 == 0 or step == steps:
            gnorm = torch.linalg.vector_norm(g, dim=event_dims) if event_dims else g.abs()
            if bool((gnorm < tol).all()):
                break
    return u.detach(), gnorm.detach(), step


def argmin_energy(
    energy,
    y_init: torch.Tensor,
    x=None,
    *,
    event_shape: Optional[Sequence[int]] = None,
    support: constraints.Constraint = constraints.real,
    steps: int = 500,
    lr: float = 0.05,
    tol: float = 1e-5,
) -> ArgminResult:
    r"""Gradient-based inference :math:`\check y = \operatorname{argmin}_y F(y, x)` from many restarts.

    All restarts run at once (the restart dimension is a batch dimension of the energy) with Adam and a
    cosine-annealed learning rate, in the unconstrained space of ``support``. Stops early when every
    gradient norm is below ``tol``. The lecture: "there may be multiple solutions" — use
    :meth:`ArgminResult.distinct` to get each distinct minimum with its energy and how many restarts found it.

    :param energy: an :class:`~pyro_ebm.Energy` or callable ``F(y[, x])``.
    :param y_init: starting points ``[R, *batch, *event_shape]`` (``R`` restarts; ``batch`` must broadcast
        with ``x``).
    :param x: optional conditioning.
    :param event_shape: shape of one ``y`` (defaults to the energy's, or ``y_init.shape[1:]`` for callables
        when there is no batch).
    :param support: constraint of ``y`` (default real).
    :param steps: maximum number of optimisation steps.
    :param lr: Adam learning rate.
    :param tol: gradient-norm tolerance for early stopping.
    :returns: :class:`ArgminResult` (the points and energies are detached).

    Example::

        >>> import torch
        >>> from pyro_ebm import argmin_energy
        >>> F = lambda y: ((y ** 2 - 1) ** 2).sum(-1)
        >>> res = argmin_energy(F, torch.linspace(-2, 2, 8).reshape(8, 1), event_shape=(1,))
        >>> m = res.distinct(tol=1e-2)
        >>> m.values.squeeze(-1).sort().values.round(decimals=3), m.counts.sum().item()
        (tensor([-1.,  1.]), 8)
    """
    return _argmin(energy, y_init, x, event_shape, support, steps, lr, tol)


def _argmin(energy, y_init, x, event_shape, support, steps, lr, tol, init_name="y_init"):
    """:func:`argmin_energy` with its starting points called ``init_name`` in messages."""
    steps = check_positive_int(steps, "steps")
    lr = check_real(lr, "lr", minimum=0.0, strict=True)
    tol = check_real(tol, "tol", minimum=0.0)
    if not isinstance(y_init, torch.Tensor) or not y_init.is_floating_point():
        raise TypeError(f"{init_name} must be a floating-point tensor [restarts, *batch, *event_shape]")
    if event_shape is None and not isinstance(energy, Energy):
        event_shape = y_init.shape[1:]
    energy = as_energy(energy, event_shape=event_shape)
    if energy.has_latent:
        raise TypeError("energy has a latent z: use free_energy_min to minimise over z")
    batch = batch_shape_of(y_init, energy.event_shape, init_name)
    if len(batch) < 1 or batch[0] == 0:
        raise ValueError(
            f"{init_name} must have a leading restarts dimension of size >= 1: shape [R, *batch, "
            f"{tuple(energy.event_shape)}], got {tuple(y_init.shape)}"
        )
    check_finite(y_init, init_name)
    transform = biject_to(support)
    u0 = transform.inv(y_init)
    check_finite(u0, f"{init_name} (outside the support)")
    first = _call(energy, y_init, x, names=(init_name, "x"))
    _check_energy_call(first, batch, energy._label(), ((init_name, y_init), ("x", x)), energy.event_shape)

    def fn(u):
        return _call(energy, transform(u), x)

    u, gnorm, n = _minimize(fn, u0, len(batch), steps, lr, tol)
    y = transform(u)
    with torch.no_grad():
        e = _call(energy, y, x)
    return ArgminResult(y, e.detach(), gnorm, n)


def argmin_candidates(
    energy,
    candidates: torch.Tensor,
    x=None,
    *,
    batch_ndims: Optional[int] = None,
    max_candidates: int = MAX_ENUMERATION,
):
    """Exhaustive inference over a finite candidate set: ``argmin_k F(candidates[k], x)``.

    :param candidates: ``[K, *event_shape]``.
    :param batch_ndims: number of batch dims of the energy's output for one candidate (``x``'s batch rank);
        default: read off the energy's output at ``candidates[0]`` (see :class:`~pyro_ebm.DiscreteGibbs`).
    :returns: ``(values, energies, index, all_energies)`` with shapes ``[*batch, *event_shape]``,
        ``[*batch]``, ``[*batch]`` and ``[*batch, K]``.

    Example::

        >>> import torch
        >>> from pyro_ebm import argmin_candidates
        >>> F = lambda y, x: (y - x) ** 2
        >>> v, e, i, _ = argmin_candidates(F, torch.arange(5.0), x=torch.tensor([0.9, 3.2]))
        >>> v, i
        (tensor([1., 3.]), tensor([1, 3]))
    """
    _, energies = _candidate_energies(energy, candidates, 1.0, x, batch_ndims, max_candidates, "candidates")
    idx = energies.argmin(-1)
    return candidates[idx], energies.gather(-1, idx.unsqueeze(-1)).squeeze(-1), idx, energies


def _soft_min(e: torch.Tensor, beta) -> torch.Tensor:
    """``-1/beta logsumexp(-beta e)`` over the last dim; ``beta = inf`` gives the min. Overflow-free."""
    b = torch.as_tensor(beta, dtype=e.dtype, device=e.device)
    hard = e.min(-1).values
    if not torch.isinf(b).any():
        return -torch.logsumexp(-b.unsqueeze(-1) * e, dim=-1) / b
    finite_b = torch.where(torch.isinf(b), torch.ones_like(b), b)
    soft = -torch.logsumexp(-finite_b.unsqueeze(-1) * e, dim=-1) / finite_b
    return torch.where(torch.isinf(b), hard, soft)


def _latent_energy(energy) -> LatentEnergy:
    if not isinstance(energy, Energy) or not energy.has_latent:
        raise TypeError(
            "energy must be a LatentEnergy E(y, z[, x]); wrap a callable with "
            "as_energy(fn, event_shape=..., latent_shape=...)"
        )
    return energy


def _check_z_values(energy: LatentEnergy, z_values) -> None:
    if not isinstance(z_values, torch.Tensor):
        raise TypeError(f"z_values must be a tensor [K, *latent_shape], got {type(z_values).__name__}")
    latent = tuple(energy.latent_shape)
    if z_values.dim() != 1 + len(latent) or tuple(z_values.shape[1:]) != latent or z_values.shape[0] == 0:
        raise ValueError(
            f"z_values must have shape [K, *latent_shape] = [K, {', '.join(map(str, latent))}] with K >= 1, "
            f"got {tuple(z_values.shape)}"
        )
    if z_values.is_floating_point():
        check_finite(z_values, "z_values")


def _check_y_x(energy: LatentEnergy, y, x) -> torch.Size:
    """The batch shape of ``y``; ``y`` and a tensor ``x`` must be finite (the latent is inferred from them)."""
    batch = batch_shape_of(y, energy.event_shape, "y")
    check_inputs_finite((("y", y), ("x", x)))
    return batch


def _z_energy(energy: LatentEnergy, y: torch.Tensor, x) -> Energy:
    """The energy of ``z`` given ``y`` (and ``x``): ``z -> E(y, z, x)``."""

    def fn(z):
        return _call(energy, y, x, z)

    z_energy = as_energy(fn, event_shape=energy.latent_shape)
    z_energy._label = energy._label  # messages name the user's energy
    return z_energy


def latent_posterior(energy: LatentEnergy, y: torch.Tensor, z_values: torch.Tensor, x=None, beta=1.0) -> DiscreteGibbs:
    r"""The Gibbs posterior over a finite latent, :math:`P(z \mid y, x) \propto e^{-\beta E(y, z, x)}`.

    :param energy: a :class:`~pyro_ebm.LatentEnergy`.
    :param y: ``[*batch, *event_shape]``.
    :param z_values: ``[K, *latent_shape]``.
    :returns: a :class:`~pyro_ebm.DiscreteGibbs` over ``z`` with batch shape ``batch`` (``.probs`` is
        ``[*batch, K]``). Its probabilities are the derivative of :func:`free_energy` with respect to each
        ``E(y, z_k, x)``.
    """
    energy = _latent_energy(energy)
    _check_y_x(energy, y, x)
    _check_z_values(energy, z_values)
    return DiscreteGibbs(_z_energy(energy, y, x), z_values, beta=beta)


def free_energy(energy: LatentEnergy, y: torch.Tensor, z_values: torch.Tensor, x=None, beta=1.0) -> torch.Tensor:
    r"""Free energy over a finite latent: :math:`F_\beta(y, x) = -\frac{1}{\beta}\log\sum_z e^{-\beta E(y,z,x)}`.

    Exact (one energy evaluation per latent value, vectorised), differentiable with respect to the energy's
    parameters and ``y``, overflow-free for any ``beta`` (``1e6`` included). ``beta = inf`` is the
    zero-temperature limit ``min_z E(y, z, x)`` (see :func:`argmin_latent` for the minimiser).
    It satisfies ``min E - log(K)/beta <= F_beta <= min E`` and is non-decreasing in ``beta``.

    :param energy: a :class:`~pyro_ebm.LatentEnergy` ``E(y, z[, x])``.
    :param y: ``[*batch, *event_shape]``.
    :param z_values: the latent's values, ``[K, *latent_shape]``.
    :param beta: inverse temperature > 0, ``inf`` allowed; float or tensor broadcastable to ``batch``.
    :returns: ``[*batch]``.

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy, free_energy
        >>> E = as_energy(lambda y, z: (y - z) ** 2, latent_shape=())
        >>> z = torch.tensor([-1.0, 1.0])
        >>> free_energy(E, torch.tensor([0.0, 1.0]), z, beta=float("inf"))
        tensor([1., 0.])
        >>> free_energy(E, torch.tensor([0.0]), z, beta=1.0)  # 1 - log(2)
        tensor([0.3069])
    """
    beta = check_beta(beta, allow_inf=True)
    post = latent_posterior(energy, y, z_values, x, beta=1.0)
    check_beta_batch(beta, post.batch_shape, what="the batch shape of y (and x)")
    return _soft_min(post.energies, beta)


def argmin_latent(energy: LatentEnergy, y: torch.Tensor, z_values: torch.Tensor, x=None):
    r"""Zero-temperature inference of a finite latent: :math:`\check z = \operatorname{argmin}_z E(y, z, x)`.

    :returns: ``(z, energy)`` with shapes ``[*batch, *latent_shape]`` and ``[*batch]``; ``energy`` equals
        ``free_energy(..., beta=inf)`` and stays differentiable.
    """
    post = latent_posterior(energy, y, z_values, x, beta=1.0)
    idx = post.energies.argmin(-1)
    return z_values[idx], post.energies.gather(-1, idx.unsqueeze(-1)).squeeze(-1)


def free_energy_min(
    energy: LatentEnergy,
    y: torch.Tensor,
    z_init: torch.Tensor,
    x=None,
    *,
    support: constraints.Constraint = constraints.real,
    steps: int = 500,
    lr: float = 0.05,
    tol: float = 1e-5,
):
    r"""Zero-temperature free energy over a continuous latent, :math:`F_\infty(y) = \min_z E(y, z, x)`.

    Minimises over ``z`` by gradient descent from ``R`` restarts per ``y`` (all at once), keeps the best,
    and re-evaluates ``E(y, z*, x)`` with gradients so that, by the envelope theorem, the result is
    differentiable with respect to the energy's parameters and ``y`` (``z*`` itself is detached).

    :param z_init: ``[R, *latent_shape]`` or ``[R, *batch, *latent_shape]`` starting points.
    :returns: ``(F, z_star)``, shapes ``[*batch]`` and ``[*batch, *latent_shape]``.

    Example::

        >>> import torch
        >>> from pyro_ebm import as_energy, free_energy_min
        >>> E = as_energy(lambda y, z: (y - z ** 2) ** 2 + 0.1 * z ** 2, latent_shape=())
        >>> F, z = free_energy_min(E, torch.tensor([1.0]), torch.tensor([-1.0, 0.5]))
        >>> round(F.item(), 4), round(z.abs().item(), 4)  # z^2 = y - 0.05, F = 0.05^2 + 0.1 * 0.95
        (0.0975, 0.9747)
    """
    energy = _latent_energy(energy)
    batch = _check_y_x(energy, y, x)
    if not isinstance(z_init, torch.Tensor) or not z_init.is_floating_point():
        raise TypeError("z_init must be a floating-point tensor [restarts, *batch, *latent_shape]")
    zb = batch_shape_of(z_init, energy.latent_shape, "z_init")
    if len(zb) < 1 or zb[0] == 0:
        raise ValueError(
            f"z_init must have a leading restarts dimension of size >= 1, [R, *latent_shape], "
            f"got {tuple(z_init.shape)}"
        )
    r = zb[0]
    z0 = z_init.reshape((r,) + (1,) * (len(batch) - (len(zb) - 1)) + tuple(z_init.shape[1:]))
    z0 = z0.expand((r,) + tuple(torch.broadcast_shapes(batch, zb[1:])) + tuple(energy.latent_shape))
    y_det = y.detach()
    res = _argmin(_z_energy(energy, y_det, x), z0, None, energy.latent_shape, support, steps, lr, tol,
                  init_name="z_init")
    z_star = res.best
    return _call(energy, y, x, z_star), z_star


def free_energy_importance(
    energy: LatentEnergy,
    y: torch.Tensor,
    proposal: torch.distributions.Distribution,
    num_samples: int,
    x=None,
    beta=1.0,
    *,
    generator: Optional[torch.Generator] = None,
) -> Estimate:
    r"""Free energy over a continuous latent by importance sampling from ``proposal`` :math:`q(z)`.

    .. math:: \hat F_\beta(y) = -\frac{1}{\beta}\log \frac{1}{S}\sum_{s} \frac{e^{-\beta E(y, z_s, x)}}{q(z_s)},
              \quad z_s \sim q.

    Note the integral is over the latent's Lebesgue measure (``q`` is a density). The standard error comes
    from the delta method, ``std(w) / (sqrt(S) mean(w) beta)``, and ``ess = (sum w)^2 / sum w^2``; trust the
    estimate only when ``ess`` is large. Differentiable with respect to the energy's parameters.

    :param proposal: a distribution with event shape ``latent_shape`` (batch shape ``()`` or broadcasting
        with ``y``'s batch).
    :param num_samples: ``S``.
    :param generator: optional ``torch.Generator`` that seeds the proposal draws (without one, the global
        RNG is used: ``pyro.set_rng_seed`` makes it reproducible).
    :returns: :class:`Estimate` of shape ``[*batch]`` each.

    Example::

        >>> import torch, pyro.distributions as dist
        >>> from pyro_ebm import as_energy, free_energy_importance
        >>> E = as_energy(lambda y, z: 0.5 * (y - z) ** 2, latent_shape=())
        >>> g = torch.Generator().manual_seed(0)
        >>> est = free_energy_importance(E, torch.zeros(1), dist.Normal(0.0, 2.0), 20000, generator=g)
        >>> round(est.value.item(), 2), round(-0.5 * torch.log(torch.tensor(2 * torch.pi)).item(), 2)
        (-0.92, -0.92)
    """
    energy = _latent_energy(energy)
    beta = check_beta(beta)
    num_samples = check_positive_int(num_samples, "num_samples", minimum=2)
    if not isinstance(proposal, torch.distributions.Distribution):
        raise TypeError(f"proposal must be a torch/pyro Distribution, got {type(proposal).__name__}")
    if tuple(proposal.event_shape) != tuple(energy.latent_shape):
        raise ValueError(
            f"proposal must have event_shape {tuple(energy.latent_shape)} (the latent's), "
            f"got {tuple(proposal.event_shape)}"
        )
    batch = _check_y_x(energy, y, x)
    check_beta_batch(beta, torch.broadcast_shapes(batch, proposal.batch_shape), what="the batch shape of y")
    with torch.no_grad():
        if generator is None:
            z = proposal.sample((num_samples,))
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
                z = proposal.sample((num_samples,))
    pb = proposal.batch_shape
    z = z.reshape((num_samples,) + (1,) * max(len(batch) - len(pb), 0) + tuple(z.shape[1:]))
    e = _call(energy, y, x, z)
    check_energy_output(e, (num_samples,) + tuple(torch.broadcast_shapes(batch, pb)), name=energy._label())
    b = torch.as_tensor(beta, dtype=e.dtype, device=e.device)
    log_w = -b * e - proposal.log_prob(z).reshape(z.shape[: z.dim() - len(energy.latent_shape)])
    log_mean, rel_se, ess = importance_summary(log_w, 0)
    return Estimate(-log_mean / b, rel_se / b, ess)


def latent_energy_model(energy: LatentEnergy, y: torch.Tensor, z_values: torch.Tensor, x=None, beta=1.0):
    """A Pyro model whose enumerated marginal is the free energy over a finite latent.

    The model samples an index into ``z_values`` from a counting measure (a uniform categorical plus a
    ``log K`` factor), enumerates it in parallel, and adds :func:`~pyro_ebm.energy_factor` ``-beta E(y, z, x)``
    inside a plate per batch dimension of ``y``. Pyro's ``TraceEnum_ELBO`` then sums ``z`` out exactly
    (``loss / beta == free_energy(energy, y, z_values, x, beta).sum()``), also for an energy without
    parameters.

    ``y`` needs a non-empty batch, and a floating ``z_values`` must have ``y``'s dtype. Also usable with
    ``infer_discrete`` to draw ``z`` from its Gibbs posterior. Returns the model (a callable with no
    arguments).

    Example::

        >>> import torch
        >>> from pyro.infer import TraceEnum_ELBO
        >>> from pyro_ebm import as_energy, free_energy, latent_energy_model
        >>> E = as_energy(lambda y, z: (y - z) ** 2, latent_shape=())
        >>> y, z_values, beta = torch.tensor([0.0, 0.5, 2.0]), torch.tensor([-1.0, 1.0]), 2.0
        >>> model = latent_energy_model(E, y, z_values, beta=beta)
        >>> loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, lambda: None)
        >>> torch.allclose(loss / beta, free_energy(E, y, z_values, beta=beta).sum())
        True
    """
    energy = _latent_energy(energy)
    check_beta(beta)
    batch = _check_y_x(energy, y, x)
    if batch.numel() == 0:
        raise ValueError(f"y must have a non-empty batch [*batch, *event_shape], got shape {tuple(y.shape)}")
    if not y.is_floating_point():
        raise TypeError(f"y must be a floating-point tensor, got dtype {y.dtype}")
    _check_z_values(energy, z_values)
    if z_values.is_floating_point() and z_values.dtype != y.dtype:
        raise TypeError(f"z_values must have y's dtype {y.dtype}, got {z_values.dtype}")
    check_beta_batch(beta, batch, what="the batch shape of y")
    latent_posterior(energy, y.detach(), z_values, x)  # the energies at every z: checked once, here
    k = z_values.shape[0]

    def model():
        with pyro.plate_stack("batch", batch):
            uniform = dist.Categorical(logits=torch.zeros(k, dtype=y.dtype, device=y.device))
            idx = pyro.sample("z", uniform, infer={"enumerate": "parallel"})
            # undo the uniform prior's -log K: the free energy sums over z with counting measure
            # (a leaf that requires grad, so that the ELBO is differentiable for an energy without parameters)
            log_k = torch.tensor(math.log(k), dtype=y.dtype, device=y.device, requires_grad=True)
            pyro.factor("counting_measure", log_k)
            z = z_values[idx]
            energy_factor("energy", _call(energy, y, x, z), beta)
        return z

    return model
