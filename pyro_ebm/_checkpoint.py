"""Checkpoints of :func:`pyro_ebm.train.fit`: everything needed to continue a run bit for bit, written atomically.

A data-parallel run's checkpoint also holds every rank's negative chains and random state (``ranks``)."""

from __future__ import annotations

import os

import torch

__all__ = ["save_checkpoint", "load_checkpoint"]


def _rank_state(negatives, callbacks) -> dict:
    """What differs between the processes of a data-parallel run: chains, random states, callbacks."""
    return {
        "negatives": negatives.state_dict() if hasattr(negatives, "state_dict") else {},
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # callbacks with state (e.g. pyro_ebm.ml.SamplerDiagnostics: its RNG and reports), in order
        "callbacks": [cb.state_dict() if hasattr(cb, "state_dict") else None for cb in callbacks],
    }


def save_checkpoint(path, *, step, energy, optimizer, negatives, order, history, callbacks=(), ranks=None) -> None:
    """Write everything :func:`fit` needs to continue bit for bit (atomically: temp file, then rename).

    ``ranks`` (data-parallel runs): the list of every process's chains and random states, in rank order,
    as gathered by :func:`fit`; rank ``r`` of a resumed run takes entry ``r``.
    """
    state = {
        "step": int(step),
        "energy": energy.state_dict(),
        "optimizer": optimizer.state_dict(),
        "data_order": order.state_dict(),
        "history": history.state_dict(),
        **_rank_state(negatives, callbacks),
    }
    if ranks is not None:
        state["ranks"] = list(ranks)
    path = _check_checkpoint_path(path, "path")
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, *, energy, optimizer, negatives, order, history, callbacks=(), rank: int = 0) -> int:
    """Restore a :func:`save_checkpoint` into the given objects; returns the step counter.

    ``rank``: the process of a data-parallel run being restored. The model, optimizer, data order and
    history are shared; the negatives, random states and callbacks are those saved for this rank. A rank
    the checkpoint has no entry for (resuming on more processes than wrote it) keeps its fresh negative
    chains and random state.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"resume: no checkpoint at {path!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"resume: {path!r} is not a checkpoint written by fit ({type(exc).__name__}: {exc})") from exc
    keys = ("step", "energy", "optimizer", "negatives", "data_order", "torch_rng", "cuda_rng", "history")
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"resume: {path!r} is not a checkpoint written by fit (missing {missing})")
    energy.load_state_dict(state["energy"])
    optimizer.load_state_dict(state["optimizer"])
    order.load_state_dict(state["data_order"])
    history.load_state_dict(state["history"])
    ranks = state.get("ranks", [state])
    if rank >= len(ranks):
        return int(state["step"])
    own = ranks[rank]
    if hasattr(negatives, "load_state_dict"):
        negatives.load_state_dict(own["negatives"])
    torch.set_rng_state(own["torch_rng"])
    if own["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(own["cuda_rng"])
    for cb, cb_state in zip(callbacks, own.get("callbacks", [])):
        if cb_state is not None and hasattr(cb, "load_state_dict"):
            cb.load_state_dict(cb_state)
    return int(state["step"])


def _check_checkpoint_path(checkpoint, name: str = "checkpoint") -> str:
    """Fail before training, not after it, when the checkpoint cannot be written."""
    try:
        path = os.fspath(checkpoint)
    except TypeError:
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(checkpoint).__name__}") from None
    if not isinstance(path, str):
        path = os.fsdecode(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{name} must be a file path, got the directory {path!r}")
    if not os.path.isdir(folder):
        raise ValueError(f"{name}: the directory {folder!r} of {path!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{name}: the directory {folder!r} of {path!r} is not writable")
    return path
