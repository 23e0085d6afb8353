"""Data parallelism for :func:`pyro_ebm.train.fit` over ``torch.distributed`` (what DistributedDataParallel does).

When a default process group is initialised with more than one process (e.g. under ``torchrun``), ``fit``

* broadcasts the energy's parameters and buffers from rank 0 once, so every rank starts from the same model;
* splits every global minibatch into ``world_size`` equal, disjoint shards, one per rank (the data order is
  the same on every rank, so each epoch's permutation is partitioned among the ranks);
* averages the gradients over the ranks after every backward pass, with the step's scalars (loss, mean
  energies, regularizers, sampler statistics) in the same single all-reduce, so every rank takes the same
  optimizer step and keeps the same history;
* gathers every rank's random state and negative chains to rank 0, which alone writes the checkpoint.

The energy is not wrapped in ``torch.nn.parallel.DistributedDataParallel`` itself: MCMC negatives call
the energy many times per step (gradients with respect to ``y``, not to the parameters) and ``fit``
evaluates it on the data and on the negatives before one backward pass, which DDP's reducer does not
allow. Averaging the flattened gradients once per step is the same arithmetic.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

__all__ = ["world", "broadcast_module", "average", "any_rank", "gather_to_zero"]

#: sampler statistics that are counts: summed over the ranks instead of averaged
SUMMED = ("diverging",)


def world() -> Tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` when there is none."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (in place)."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            torch.distributed.broadcast(t.data, src=0)


def average(params, scalars: Dict[str, float], device) -> Dict[str, float]:
    """Average the gradients of ``params`` over the ranks (in place) and the ``scalars`` with them.

    One all-reduce of ``[grad_1, ..., grad_k, scalars]`` flattened; parameters without a gradient are
    skipped (every rank must have the same set). Keys in :data:`SUMMED` are summed, not averaged.
    """
    grads = [p.grad for p in params if p.grad is not None]
    keys = sorted(scalars)
    dtype = grads[0].dtype if grads else torch.get_default_dtype()
    values = torch.tensor([float(scalars[k]) for k in keys], dtype=dtype, device=device)
    flat = torch.cat([g.reshape(-1).to(dtype) for g in grads] + [values])
    torch.distributed.all_reduce(flat)
    _, size = world()
    flat /= size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n
    out = {k: float(v) for k, v in zip(keys, flat[offset:].tolist())}
    return {k: v * size if k in SUMMED else v for k, v in out.items()}


def any_rank(flag: bool, device) -> bool:
    """``True`` on every rank when ``flag`` is true on any rank."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_to_zero(obj) -> Optional[List]:
    """Every rank's ``obj`` as a list on rank 0 (``None`` on the other ranks)."""
    rank, size = world()
    out = [None] * size if rank == 0 else None
    torch.distributed.gather_object(obj, out, dst=0)
    return out
