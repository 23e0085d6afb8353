r"""One training loop for contrastive energy-based learning: energy + loss + negatives + regularizers.

:func:`fit` is short on purpose; read it, copy it and change it. One step is::

    y, x   = next minibatch of the data (and conditioning)
    y_hat  = negatives(energy, y, x)                    # [n_neg, batch, *event], constants
    pos    = energy(y, x)                               # [batch]
    neg    = negative_energies(energy, y_hat, x)        # [batch, n_neg]
    loss   = loss_fn(pos, neg) + sum(reg(...) for reg in regularizers)
    optimizer.zero_grad(); loss.backward(); optimizer.step()

``loss_fn`` is any callable ``(pos, neg) -> scalar``: the pairwise losses of :mod:`pyro_ebm.losses`
directly (``functools.partial(losses.hinge, margin=0.5)`` for options), and the losses over a finite
set of outputs through :func:`set_loss`, which places the data's energy as candidate 0 in front of the
negatives (use it with :class:`~pyro_ebm.negatives.Exhaustive`, which returns every *other* candidate).

Everything needed to continue a run bit for bit goes into a checkpoint: the energy's and optimizer's
state, the negative generator's state (RNG, replay buffer, generator network), the data-order RNG and
the current epoch's permutation, torch's global RNG state, the step counter and the history.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
from torch import nn

from . import _distributed
from ._checkpoint import _check_checkpoint_path, _rank_state, load_checkpoint, save_checkpoint
from ._rng import check_seed
from ._validation import check_beta, check_finite, check_positive_int, check_real
from .energy import Energy, as_energy, batch_shape_of, check_energy_output
from .losses._common import _check_energy, _check_values
from .negatives import negative_energies

__all__ = [
    "fit",
    "History",
    "set_loss",
    "EnergyL2",
    "GradientPenalty",
    "spectral_norm",
    "DataOrder",
    "save_checkpoint",
    "load_checkpoint",
]


# ------------------------------------------------------------------------------------------------------
# losses over a finite set


def set_loss(fn: Callable, **kwargs) -> Callable:
    r"""Adapt a loss over a finite set of outputs to the loop's ``loss(pos, neg)``.

    The candidate set is the data followed by the negatives: ``energies = [pos, neg_1, ..., neg_p]`` and
    the target is candidate 0. With :class:`~pyro_ebm.negatives.Exhaustive` negatives (all outputs other
    than the data) this is exactly ``fn(energies of all K outputs, target)`` up to the order of the
    candidates, e.g. :func:`~pyro_ebm.losses.nll` over the whole output set (rows 1-2 of the loss zoo).

    :param fn: ``fn(energies [*batch, K], target [*batch], **kwargs)``, e.g. :func:`~pyro_ebm.losses.nll`,
        :func:`~pyro_ebm.losses.mee`, :func:`~pyro_ebm.losses.general_margin` (with a scalar margin).
    :param kwargs: passed to ``fn`` (e.g. ``beta=2.0``); ``beta`` is checked now.
    :returns: ``loss(pos [*batch], neg [*batch, p]) -> fn(cat([pos, neg]), 0)``.

    Example::

        >>> import torch
        >>> from pyro_ebm import losses
        >>> loss = set_loss(losses.nll)
        >>> E = torch.tensor([[0.0, 1.0, 2.0]])                      # all candidates, target 1
        >>> a = loss(E[:, 1], E[:, [0, 2]])
        >>> b = losses.nll(E, torch.tensor([1]))
        >>> torch.allclose(a, b)
        True
    """
    if not callable(fn):
        raise TypeError(f"fn must be a loss over a set, fn(energies, target, ...), got {type(fn).__name__}")
    if "beta" in kwargs:
        check_beta(kwargs["beta"], allow_inf=True)

    def loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        pos, neg = _check_energy(pos, "pos"), _check_energy(neg, "neg")
        if neg.shape[:-1] != pos.shape or neg.dim() != pos.dim() + 1:
            raise ValueError(
                f"neg must have the shape of pos {tuple(pos.shape)} plus a trailing dimension of "
                f"negatives, got {tuple(neg.shape)}"
            )
        _check_values(pos, neg)  # pos finite; neg finite or +inf (an excluded candidate)
        energies = torch.cat([pos.unsqueeze(-1), neg], dim=-1)  # candidate 0 is the data
        target = torch.zeros(pos.shape, dtype=torch.long, device=pos.device)
        out = fn(energies, target, **kwargs)
        if not isinstance(out, torch.Tensor) or out.shape not in (torch.Size(()), pos.shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"fn must return a scalar or one loss per example, shape {tuple(pos.shape)}, got {got}")
        if out.is_floating_point() and not bool(torch.isfinite(out.detach()).all()):
            bad = out.detach().flatten()[:4].tolist()
            raise ValueError(f"fn returned a non-finite loss for finite energies: {bad}")
        return out

    loss.__name__ = f"set_loss({getattr(fn, '__name__', 'fn')})"
    return loss


# ------------------------------------------------------------------------------------------------------
# regularizers: callables (energy, y, x, pos, neg) -> scalar


class EnergyL2:
    r"""L2 penalty on the energies (Du & Mordatch 2019): :math:`\alpha\,(\overline{F(y)^2} + \overline{F(\hat y)^2})`.

    Keeps the energies near zero, so that the contrastive loss cannot lower all of them without bound.

    :param alpha: weight ``>= 0``.
    """

    name = "l2_energy"

    def __init__(self, alpha: float = 1.0):
        self.alpha = check_real(alpha, "alpha", minimum=0)

    def __call__(self, energy, y, x, pos, neg) -> torch.Tensor:
        neg_term = 0.0 if neg is None else (neg**2).mean()
        return self.alpha * ((pos**2).mean() + neg_term)

    def __repr__(self) -> str:
        return f"EnergyL2(alpha={self.alpha})"


class GradientPenalty:
    r"""Gradient penalty at the data: :math:`\lambda\,\overline{\lVert \partial F(x, y) / \partial y \rVert^2}`.

    Makes the energy smooth around the data (a flat-bottomed, well-behaved landscape for MCMC).

    :param weight: ``lambda >= 0``.
    """

    name = "gradient_penalty"

    def __init__(self, weight: float = 1.0):
        self.weight = check_real(weight, "weight", minimum=0)

    def __call__(self, energy, y, x, pos, neg) -> torch.Tensor:
        y = y.detach().requires_grad_(True)
        f = energy(y) if x is None else energy(y, x)
        (g,) = torch.autograd.grad(f.sum(), y, create_graph=True)
        return self.weight * g.pow(2).reshape(g.shape[0], -1).sum(-1).mean()

    def __repr__(self) -> str:
        return f"GradientPenalty(weight={self.weight})"


def spectral_norm(
    module: nn.Module,
    types: Sequence[type] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d),
    n_power_iterations: int = 1,
) -> nn.Module:
    """Put spectral normalisation on the weight of every layer of the given types in ``module`` (in place).

    Uses :func:`torch.nn.utils.parametrizations.spectral_norm`; the energy becomes Lipschitz in ``y``
    (each layer's largest singular value is 1). Call it before creating the optimizer.

    :param module: the energy (or any module).
    :param types: layer classes to normalise.
    :param n_power_iterations: power iterations per forward pass.
    :returns: ``module``.

    Example::

        >>> import torch
        >>> net = spectral_norm(torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)))
        >>> torch.nn.utils.parametrize.is_parametrized(net[0], "weight")
        True
    """
    from torch.nn.utils import parametrize
    from torch.nn.utils.parametrizations import spectral_norm as _sn

    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    n_power_iterations = check_positive_int(n_power_iterations, "n_power_iterations")
    try:
        types = tuple(types)
    except TypeError:
        raise TypeError(f"types must be a sequence of module classes, got {types!r}") from None
    if not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise TypeError(f"types must be a sequence of module classes, got {types!r}")

    targets = [m for m in module.modules() if isinstance(m, tuple(types))]
    for m in targets:
        if not parametrize.is_parametrized(m, "weight"):
            _sn(m, n_power_iterations=n_power_iterations)
    return module


# ------------------------------------------------------------------------------------------------------
# history


def _iterable(value, name):
    try:
        return list(value)
    except TypeError:
        raise TypeError(f"{name} must be a list, got {type(value).__name__}") from None


class History:
    """Per-step records of a run: ``step``, ``loss``, ``energy_pos``, ``energy_neg``, ``gap`` and more.

    ``gap = energy_neg - energy_pos`` (mean energies of the negatives and of the data); positive means the
    data sit lower. Regularizer values are recorded under their ``name`` and the negative generator's
    :attr:`~pyro_ebm.negatives.Negatives.diagnostics` (e.g. ``acceptance_rate``) under their own names.

    ``history["loss"]`` is the list of values of one key (``nan`` where a step did not record it);
    ``history.records`` the list of dicts.

    Example::

        >>> h = History()
        >>> h.append({"step": 1, "loss": 0.5}); h.append({"step": 2, "loss": 0.25})
        >>> h["loss"], len(h), h.last["step"]
        ([0.5, 0.25], 2, 2)
    """

    def __init__(self, records: Optional[List[dict]] = None):
        if records is not None and (
            isinstance(records, (str, bytes, dict)) or not all(isinstance(r, dict) for r in _iterable(records, "records"))
        ):
            raise TypeError(f"records must be a list of dicts (one per step), got {records!r}")
        self.records: List[Dict[str, float]] = list(records or [])

    def append(self, record: Dict[str, float]) -> None:
        self.records.append(dict(record))

    def keys(self) -> List[str]:
        seen: Dict[str, None] = {}
        for r in self.records:
            for k in r:
                seen.setdefault(k)
        return list(seen)

    def __getitem__(self, key: str) -> List[float]:
        if key not in self.keys():
            raise KeyError(f"no {key!r} in the history; keys: {self.keys()}")
        return [r.get(key, math.nan) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def last(self) -> Dict[str, float]:
        """The latest record (empty dict before the first step)."""
        return self.records[-1] if self.records else {}

    def state_dict(self) -> dict:
        return {"records": [dict(r) for r in self.records]}

    def load_state_dict(self, state: dict) -> None:
        self.records = [dict(r) for r in state["records"]]

    def __repr__(self) -> str:
        if not self.records:
            return "History(0 steps)"
        last = ", ".join(f"{k}={v:.4g}" for k, v in self.last.items() if k != "step")
        return f"History({len(self)} steps; last: {last})"


# ------------------------------------------------------------------------------------------------------
# data order


class DataOrder:
    """Minibatch indices: a fresh random permutation of ``range(n)`` per epoch, last partial batch dropped.

    Its state (RNG, current permutation, position) is part of the checkpoint. The permutations are drawn
    on ``device`` (default: the CPU) with a generator there; a checkpoint continues on the same device type.

    Example::

        >>> order = DataOrder(6, batch_size=2, seed=0)
        >>> sorted(torch.cat([order.next() for _ in range(3)]).tolist())   # one epoch: each index once
        [0, 1, 2, 3, 4, 5]
    """

    def __init__(self, n: int, batch_size: int, seed=None, device=None):
        self.n = check_positive_int(n, "n")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        if self.batch_size > self.n:
            raise ValueError(f"batch_size must be <= the number of data points {self.n}, got {self.batch_size}")
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
            raise TypeError(f"seed must be an integer in [0, 2**64) or None, got {seed!r}")
        try:
            self.device = torch.device("cpu" if device is None else device)
        except (TypeError, RuntimeError):
            raise TypeError(f"device must be a torch.device or a device name, got {device!r}") from None
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))
        self.perm = torch.randperm(self.n, generator=self.generator, device=self.device)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n:
            self.perm = torch.randperm(self.n, generator=self.generator, device=self.device)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state_dict(self) -> dict:
        return {"rng": self.generator.get_state(), "perm": self.perm.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        perm, pos = state["perm"], state["pos"]
        if not isinstance(perm, torch.Tensor) or tuple(perm.shape) != (self.n,):
            got = tuple(perm.shape) if isinstance(perm, torch.Tensor) else type(perm).__name__
            raise ValueError(
                f"the saved data order is a permutation of shape {got}, but there are n={self.n} data points "
                "(resume with the data the checkpoint was written with)"
            )
        if isinstance(pos, bool) or not isinstance(pos, int) or not 0 <= pos <= self.n:
            raise ValueError(f"the saved data order's position must be an integer in [0, {self.n}], got {pos!r}")
        try:
            self.generator.set_state(state["rng"])
        except RuntimeError as exc:
            raise ValueError(
                f"the data order's random state does not fit a generator on {self.device} (a checkpoint "
                f"continues on the device type it was written on): {exc}"
            ) from None
        self.perm = state["perm"].to(self.device).clone()
        self.pos = int(state["pos"])


# ------------------------------------------------------------------------------------------------------
# the loop


def _check_fit_args(energy, data, x, loss, negatives, steps, regularizers, callbacks):
    if isinstance(energy, nn.parallel.DistributedDataParallel):
        energy = energy.module  # fit averages the gradients itself (see pyro_ebm._distributed)
    if not isinstance(energy, nn.Module):
        raise TypeError(f"energy must be an Energy (an nn.Module with parameters), got {type(energy).__name__}")
    if not isinstance(data, torch.Tensor) or not data.is_floating_point():
        raise TypeError("data must be a floating-point tensor [N, *event_shape]")
    if data.dim() == 0 or data.shape[0] == 0:
        raise ValueError(f"data must hold at least one data point [N >= 1, *event_shape], got shape {tuple(data.shape)}")
    check_finite(data.detach(), "data")
    energy = as_energy(energy, event_shape=None if isinstance(energy, Energy) else data.shape[1:])
    batch = batch_shape_of(data, energy.event_shape, "data")
    if len(batch) != 1:
        raise ValueError(
            f"data must have shape [N, *event_shape] = [N, {', '.join(map(str, energy.event_shape))}] "
            f"(one leading dimension of data points), got {tuple(data.shape)}"
        )
    if x is not None:
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] != data.shape[0]:
            raise ValueError(
                f"x must be a tensor [N, *x_event] with N = {data.shape[0]} rows like data, got "
                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        if x.is_floating_point():
            check_finite(x.detach(), "x")
    if not callable(loss):
        raise TypeError(f"loss must be a callable loss(pos, neg) -> scalar, got {type(loss).__name__}")
    if negatives is not None and not callable(negatives):
        raise TypeError(
            f"negatives must be a negative generator (energy, y, x) -> y_hat or None, got {type(negatives).__name__}"
        )
    steps = check_positive_int(steps, "steps", minimum=0)
    regularizers = list(regularizers)
    for r in regularizers:
        if not callable(r):
            raise TypeError(f"regularizers must be callables (energy, y, x, pos, neg) -> scalar, got {r!r}")
    callbacks = list(callbacks)
    for c in callbacks:
        if not callable(c):
            raise TypeError(f"callbacks must be callables (step, history) -> bool, got {c!r}")
    return energy, steps, regularizers, callbacks


def _cosine(s: int, steps: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * (s - 1) / steps))


def _lr_schedule(value):
    """``fit``'s ``lr_schedule`` as a callable ``factor(s, steps)`` (or ``None``)."""
    if value is None:
        return None
    if value == "cosine":
        return _cosine
    if callable(value) and not isinstance(value, str):
        return value
    raise ValueError(f"lr_schedule must be None, 'cosine' or a callable factor(step, steps), got {value!r}")


def fit(
    energy: nn.Module,
    data: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    negatives: Optional[Callable],
    *,
    x: Optional[torch.Tensor] = None,
    steps: int = 1000,
    batch_size: int = 128,
    optimizer: Optional[torch.optim.Optimizer] = None,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    regularizers: Iterable[Callable] = (),
    seed: Optional[int] = 0,
    checkpoint=None,
    checkpoint_every: Optional[int] = None,
    resume=None,
    callbacks: Iterable[Callable] = (),
    progress: bool = True,
    lr_schedule=None,
) -> History:
    r"""Train ``energy`` on ``data`` with a contrastive ``loss`` and ``negatives``; returns the :class:`History`.

    :param energy: an :class:`~pyro_ebm.Energy` (an ``nn.Module``; a plain module is wrapped with
        ``event_shape = data.shape[1:]``).
    :param data: the examples ``y``, ``[N, *event_shape]``, on the energy's device.
    :param loss: ``loss(pos [batch], neg [batch, n_neg]) -> scalar``: a pairwise loss of
        :mod:`pyro_ebm.losses` or a set loss adapted by :func:`set_loss`.
    :param negatives: a :class:`~pyro_ebm.negatives.Negatives` (or any callable
        ``(energy, y, x) -> y_hat [n_neg, batch, *event]``), or ``None`` for losses without contrastive
        terms (regularized and architectural methods, or :func:`~pyro_ebm.losses.energy_loss` alone): then
        ``loss(pos, None)`` is called and regularizers get ``neg=None``.
    :param x: optional conditioning ``[N, *x_event]``, row ``i`` belongs to ``data[i]``.
    :param steps: total number of optimizer steps (counting those of a resumed run).
    :param batch_size: examples per step (``<= N``); each epoch is a fresh random permutation.
    :param optimizer: an optimizer over the energy's parameters; default
        ``torch.optim.Adam(energy.parameters(), lr, weight_decay=weight_decay)``.
    :param lr: learning rate of the default optimizer.
    :param weight_decay: weight decay of the default optimizer.
    :param regularizers: callables ``reg(energy, y, x, pos, neg) -> scalar`` added to the loss, e.g.
        :class:`EnergyL2`, :class:`GradientPenalty`; recorded in the history under ``reg.name``.
    :param seed: seeds the data order and torch's global RNG (dropout, spectral norm, ...); ``None``
        leaves the global RNG alone. The negative generators have their own seeds.
    :param checkpoint: path to write a checkpoint to, at the end (and every ``checkpoint_every`` steps).
    :param checkpoint_every: save every this many steps.
    :param resume: path of a checkpoint to continue from; continuing gives bit-for-bit the run that was
        never interrupted (same arguments, CPU).
    :param callbacks: ``callback(step, history)``, called after every step; returning ``True`` stops
        training (after the checkpoint, if any, is written). A callback with ``state_dict()`` and
        ``load_state_dict()`` is checkpointed and resumed with the rest.
    :param progress: show a tqdm progress bar (on rank 0 only, in a data-parallel run).
    :param lr_schedule: ``None`` (the optimizer's learning rates throughout), ``"cosine"`` (update ``s``
        of ``steps`` uses ``lr * (1 + cos(pi (s - 1) / steps)) / 2``: full at the start, towards 0 at the
        end, which averages out the last updates' noise) or a callable ``factor(s, steps) -> float``
        multiplying every parameter group's initial learning rate. The factor is a function of the step
        and of ``steps``, so a run resumed with the same ``steps`` follows the same schedule (one resumed
        with more steps than it was started with does not: use ``None`` to extend runs); the history
        records ``lr`` (of the first group).
    :returns: the :class:`History` (of the whole run, including resumed steps).

    **Data parallel** (``torch.distributed``, e.g. under ``torchrun``): when a process group with more
    than one process is initialised, ``fit`` runs unchanged in every process. ``batch_size`` is then the
    *global* batch (a multiple of the number of processes): every rank takes its own equal shard of it,
    draws its own negatives (give each rank's generator its own seed; :func:`pyro_ebm.ml.ml_fit` does),
    and the gradients and the step's scalars are averaged over the ranks in one all-reduce, so the
    parameters move exactly as in one process training on the whole global batch. The parameters are
    broadcast from rank 0 at the start; rank 0 alone writes the checkpoint, holding every rank's chains and
    random state; it can be resumed on any number of processes (an extra rank starts fresh chains, the
    chains of a missing rank are dropped; the same number continues bit for bit). See :doc:`/distributed`.

    Example::

        >>> import torch
        >>> from pyro_ebm import Energy, losses
        >>> from pyro_ebm.negatives import Corruption
        >>> class Bowl(Energy):
        ...     def __init__(self):
        ...         super().__init__(event_shape=(2,))
        ...         self.center = torch.nn.Parameter(torch.zeros(2))
        ...     def forward(self, y, x=None):
        ...         return ((y - self.center) ** 2).sum(-1)
        >>> data = torch.randn(256, 2) * 0.1 + 1.0
        >>> h = fit(Bowl(), data, losses.log_loss, Corruption(sigma=0.5, seed=0),
        ...         steps=100, batch_size=64, lr=0.05, progress=False)
        >>> h.last["gap"] > 0
        True
    """
    energy, steps, regularizers, callbacks = _check_fit_args(
        energy, data, x, loss, negatives, steps, regularizers, callbacks
    )
    if checkpoint_every is not None:
        checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
    if checkpoint is not None:
        checkpoint = _check_checkpoint_path(checkpoint)
    rank, world = _distributed.world()
    batch_size = check_positive_int(batch_size, "batch_size")
    if batch_size % world:
        raise ValueError(
            f"batch_size must be a multiple of the number of processes {world} (it is the global batch, "
            f"split evenly among them), got {batch_size}"
        )
    check_seed(seed)
    if optimizer is None:
        lr = check_real(lr, "lr", minimum=0)
        weight_decay = check_real(weight_decay, "weight_decay", minimum=0)
        optimizer = torch.optim.Adam(energy.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = _lr_schedule(lr_schedule)
    base_lrs = [group["lr"] for group in optimizer.param_groups]  # before a resumed optimizer state loads
    if seed is not None and resume is None:
        torch.manual_seed(seed)
    # a resumed run restores the data order's state: seed it without drawing from the global RNG, which a
    # failed resume must leave as it was
    order_seed = 0 if seed is None and resume is not None else seed
    order = DataOrder(data.shape[0], batch_size, seed=order_seed, device=data.device)
    history = History()
    step = 0
    if resume is not None:
        step = load_checkpoint(
            resume, energy=energy, optimizer=optimizer, negatives=negatives, order=order, history=history,
            callbacks=callbacks, rank=rank,
        )
    params = [p for p in energy.parameters() if p.requires_grad]
    if world > 1:
        _distributed.broadcast_module(energy)
    shard = slice(rank * (batch_size // world), (rank + 1) * (batch_size // world))

    def save():
        ranks = None
        if world > 1:
            ranks = _distributed.gather_to_zero(_rank_state(negatives, callbacks))
            if rank != 0:
                return
        save_checkpoint(checkpoint, step=step, energy=energy, optimizer=optimizer, negatives=negatives,
                        order=order, history=history, callbacks=callbacks, ranks=ranks)

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=min(step, steps), disable=not progress or rank != 0, desc="fit")
    while step < steps:
        idx = order.next()[shard]  # this rank's shard of the global batch
        y = data[idx]
        xb = None if x is None else x[idx]

        pos = energy(y) if xb is None else energy(y, xb)  # [batch]
        check_energy_output(pos, y.shape[:1], name=energy._label())
        neg = None
        if negatives is not None:
            y_hat = negatives(energy, y, xb)  # [n_neg, batch, *event]
            if not isinstance(y_hat, torch.Tensor) or y_hat.shape[1:] != y.shape:
                got = tuple(y_hat.shape) if isinstance(y_hat, torch.Tensor) else type(y_hat).__name__
                raise ValueError(
                    f"negatives must return y_hat of shape [n_neg, *y.shape] = [n_neg, {', '.join(map(str, y.shape))}], "
                    f"got {got}"
                )
            neg = negative_energies(energy, y_hat.detach(), xb)  # [batch, n_neg]

        value = loss(pos, neg)
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise ValueError("loss must return a scalar tensor (use reduction='mean' or 'sum')")
        penalties = {getattr(r, "name", f"reg{i}"): r(energy, y, xb, pos, neg) for i, r in enumerate(regularizers)}
        total = value + sum(penalties.values()) if penalties else value

        optimizer.zero_grad(set_to_none=True)
        total.backward()
        scalars = {"loss": float(value.detach()), "energy_pos": float(pos.detach().mean()),
                   "_total": float(total.detach())}
        if neg is not None:
            scalars["energy_neg"] = float(neg.detach().mean())
        scalars.update({k: float(v.detach()) for k, v in penalties.items()})
        scalars.update(getattr(negatives, "diagnostics", None) or {})
        if world > 1:  # average gradients and scalars over the ranks (one all-reduce)
            scalars = _distributed.average(params, scalars, data.device)
        if not math.isfinite(scalars.pop("_total")):  # after the all-reduce: every rank stops together
            parts = {"loss": scalars["loss"], **{k: scalars[k] for k in penalties}}
            bad = ", ".join(f"{k} = {v}" for k, v in parts.items() if not math.isfinite(v))
            raise ValueError(
                f"the training objective is not finite at step {step + 1} ({bad}): check the loss and "
                "regularizers, or lower lr if the energies grew without bound"
            )
        if schedule is not None:
            factor = float(schedule(step + 1, steps))
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * factor
        optimizer.step()
        step += 1

        record = {"step": step, "loss": scalars.pop("loss"), "energy_pos": scalars.pop("energy_pos")}
        if schedule is not None:
            record["lr"] = optimizer.param_groups[0]["lr"]
        if neg is not None:
            record["energy_neg"] = scalars.pop("energy_neg")
            record["gap"] = record["energy_neg"] - record["energy_pos"]
        record.update(scalars)
        history.append(record)
        bar.update(1)
        bar.set_postfix({k: f"{record[k]:.4g}" for k in ("loss", "gap") if k in record}, refresh=False)

        stop = any([bool(cb(step, history)) for cb in callbacks])
        if world > 1 and callbacks:
            stop = _distributed.any_rank(stop, data.device)
        if checkpoint is not None and (
            stop or step == steps or (checkpoint_every is not None and step % checkpoint_every == 0)
        ):
            save()
        if stop:
            break
    bar.close()
    return history
