"""Checkpoints of :func:`pyro_ebm.train.fit`: everything needed to continue a run bit for bit, written atomically.

A data-parallel run's checkpoint also holds every rank's negative chains and random state (``ranks``).

The file is ``torch.save``'s archive followed by a one-line integrity record,
``b"\\nPYRO_EBM_CHECKPOINT 1 sha256:<64 hex digits>\\n"``: magic string, format version and the SHA-256
of the archive and of the record's own magic and version. Reading checks the record first, so a damaged
file (any changed byte) is refused instead of continuing a different run. ``torch.load`` still reads the
file (it ignores what follows the archive).

Writing goes to a temporary file of its own in the checkpoint's directory, renamed over the checkpoint
when complete: concurrent writers of one path never collide, and the survivor is a complete checkpoint.
A resume checks the whole checkpoint against the objects it restores (on copies of them) before it
changes any of them.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import secrets

import torch

from ._validation import check_positive_int

__all__ = ["save_checkpoint", "load_checkpoint"]

_MAGIC = b"PYRO_EBM_CHECKPOINT"
_VERSION = 1
_HEAD = b"\n" + _MAGIC + b" %d sha256:" % _VERSION  # then the 64 hex digits of the digest and b"\n"
_RECORD_LEN = len(_HEAD) + 64 + 1


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
    """Write everything :func:`fit` needs to continue bit for bit, with its SHA-256 digest (atomically: a
    temporary file of this writer's own in the same directory, then a rename over ``path``).

    ``ranks`` (data-parallel runs): the list of every process's chains and random states, in rank order,
    as gathered by :func:`fit`; rank ``r`` of a resumed run takes entry ``r``.
    """
    step = check_positive_int(step, "step", minimum=0)
    bad = _bad_energy_values(energy.state_dict(), energy)
    if bad:
        raise ValueError(f"energy holds NaN or infinite values in {bad}: a checkpoint of it could not be resumed")
    state = {
        "step": step,
        "energy": energy.state_dict(),
        "optimizer": optimizer.state_dict(),
        "data_order": order.state_dict(),
        "history": history.state_dict(),
        **_rank_state(negatives, callbacks),
    }
    if ranks is not None:
        state["ranks"] = list(ranks)
    path = _check_checkpoint_path(path, "path")
    _write_atomic(path, _encode(state))


def _record(archive: bytes) -> bytes:
    """The integrity record that follows the archive: magic, version and the digest of both."""
    digest = hashlib.sha256(archive + _HEAD).hexdigest().encode("ascii")
    return _HEAD + digest + b"\n"


def _encode(state: dict) -> bytes:
    """The bytes of a checkpoint file: ``torch.save``'s archive of ``state``, then its integrity record."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    archive = buffer.getvalue()
    return archive + _record(archive)


def _write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a uniquely named temporary file in the same directory and
    ``os.replace``: readers see the old or the new file, never a partial one, and concurrent writers each
    have their own temporary file (the last rename wins). The temporary file is removed on failure."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = f"{path}.{os.getpid()}-{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)  # the usual permissions of a new file (umask applies)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_checkpoint(path, what: str = "checkpoint") -> dict:
    """The contents of a checkpoint file written by :func:`save_checkpoint`, after checking its digest.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming ``path``) for a file that is
    corrupt (any byte changed since it was written, or truncated) or not a pyro_ebm checkpoint (no integrity
    record, e.g. a plain ``torch.save`` file). ``what`` starts the messages.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what}: no checkpoint at {path!r}")
    with open(path, "rb") as f:
        data = f.read()
    return _decode(data, path, what)


def _decode(data: bytes, path: str, what: str) -> dict:
    """The contents of the checkpoint file ``path`` whose bytes are ``data`` (see :func:`read_checkpoint`)."""
    archive, record = data[:-_RECORD_LEN], data[-_RECORD_LEN:]
    if len(data) <= _RECORD_LEN or not record.startswith(b"\n" + _MAGIC + b" "):
        raise ValueError(
            f"{what}: {path!r} is corrupt or not a pyro_ebm checkpoint: it does not end with the integrity "
            "record (magic, format version, SHA-256) that fit writes; plain torch.save files and checkpoints "
            "of pyro_ebm versions before the record cannot be resumed"
        )
    if not record.startswith(_HEAD):
        version = record[len(_MAGIC) + 2 : len(_HEAD) - len(b" sha256:")]
        raise ValueError(
            f"{what}: {path!r} is corrupt or not a pyro_ebm checkpoint of format version {_VERSION}: its "
            f"integrity record reads version {version!r} (damaged, or written by a newer pyro_ebm)"
        )
    if record != _record(archive):
        raise ValueError(
            f"{what}: checkpoint {path!r} is corrupt: its SHA-256 digest does not match its contents (the file "
            "was damaged or changed after it was written)"
        )
    try:
        state = torch.load(io.BytesIO(archive), map_location="cpu", weights_only=True)
    except Exception as exc:  # the digest matches: written this way, e.g. by a changed torch
        raise ValueError(f"{what}: checkpoint {path!r} cannot be read ({type(exc).__name__}: {exc})") from exc
    return state


def load_checkpoint(path, *, energy, optimizer, negatives, order, history, callbacks=(), rank: int = 0) -> int:
    """Restore a :func:`save_checkpoint` into the given objects; returns the step counter.

    ``rank``: the process of a data-parallel run being restored. The model, optimizer, data order and
    history are shared; the negatives, random states and callbacks are those saved for this rank. A rank
    the checkpoint has no entry for (resuming on more processes than wrote it) keeps its fresh negative
    chains and random state.

    Nothing is changed unless everything fits: the file's digest is checked (:func:`read_checkpoint`), then
    the saved energy against ``energy`` (the same parameter and buffer names and shapes; finite parameters,
    no NaN in buffers), the optimizer's and negatives' states (finite; a replay buffer of states of the
    energy's ``event_shape``) and the random states, and the whole checkpoint is loaded into deep copies of
    the objects. Only then are the objects themselves and torch's random states restored. A ``ValueError``
    names the path and what did not match; the objects and random states are then as they were.
    """
    path = os.fspath(path)
    rank = check_positive_int(rank, "rank", minimum=0)
    state = read_checkpoint(path, "resume")
    keys = ("step", "energy", "optimizer", "negatives", "data_order", "torch_rng", "cuda_rng", "history")
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"resume: {path!r} is not a checkpoint written by fit (missing {missing})")
    ranks = state.get("ranks", [state])
    own = ranks[rank] if rank < len(ranks) else None
    per_rank = ("negatives", "torch_rng", "cuda_rng")
    if own is not None and (not isinstance(own, dict) or any(k not in own for k in per_rank)):
        raise ValueError(f"resume: {path!r} has no negatives and random states for rank {rank}")
    problem = _mismatch(state, own, energy, negatives)
    if problem:
        raise ValueError(f"resume: {path!r} does not fit this run, nothing was restored: {problem}")
    objects = (energy, optimizer, negatives, order, history, list(callbacks))
    try:
        trial = copy.deepcopy(objects)
    except Exception:  # an object that cannot be copied: the checks above are all there is
        trial = None
    if trial is not None:
        try:
            _restore(state, own, *trial, rng=False)
        except _LoadError as exc:
            raise ValueError(
                f"resume: {path!r} does not fit this run, nothing was restored: loading {exc.what} failed "
                f"({type(exc.__cause__).__name__}: {exc.__cause__})"
            ) from exc.__cause__
    try:
        _restore(state, own, *objects, rng=True)
    except _LoadError as exc:
        raise ValueError(
            f"resume: {path!r}: loading {exc.what} failed ({type(exc.__cause__).__name__}: {exc.__cause__})"
        ) from exc.__cause__
    return int(state["step"])


class _LoadError(Exception):
    """A ``load_state_dict`` that failed; ``what`` names the object."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


def _restore(state, own, energy, optimizer, negatives, order, history, callbacks, *, rng: bool) -> None:
    """Load a checkpoint's contents into the objects (and with ``rng``, into torch's random states)."""
    loads = [
        ("the energy", energy.load_state_dict, state["energy"]),
        ("the optimizer", optimizer.load_state_dict, state["optimizer"]),
        ("the data order", order.load_state_dict, state["data_order"]),
        ("the history", history.load_state_dict, state["history"]),
    ]
    if own is not None:
        if hasattr(negatives, "load_state_dict"):
            loads.append(("the negatives", negatives.load_state_dict, own["negatives"]))
        for i, (cb, cb_state) in enumerate(zip(callbacks, own.get("callbacks", []))):
            if cb_state is not None and hasattr(cb, "load_state_dict"):
                loads.append((f"callbacks[{i}]", cb.load_state_dict, cb_state))
    for what, load, value in loads:
        try:
            load(value)
        except Exception as exc:
            raise _LoadError(what) from exc
    if rng and own is not None:
        torch.set_rng_state(own["torch_rng"])
        if own["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(own["cuda_rng"])


def _bad_values(tree, name: str, finite: bool = True):
    """Names of the floating-point tensors in a nested dict/list that hold NaN (with ``finite``: or +-inf)."""
    if isinstance(tree, torch.Tensor):
        if not tree.is_floating_point():
            return []
        bad = ~torch.isfinite(tree) if finite else torch.isnan(tree)
        return [name] if bool(bad.any()) else []
    if isinstance(tree, dict):
        return [n for k, v in tree.items() for n in _bad_values(v, f"{name}[{k!r}]", finite)]
    if isinstance(tree, (list, tuple)):
        return [n for i, v in enumerate(tree) for n in _bad_values(v, f"{name}[{i}]", finite)]
    return []


def _bad_energy_values(state_dict: dict, energy) -> list:
    """Names of the entries of an energy's ``state_dict`` that hold NaN, or +-inf for a parameter (a buffer
    may hold inf, e.g. a mask)."""
    params = {n for n, _ in energy.named_parameters()}
    return [n for k, v in state_dict.items() for n in _bad_values(v, k, finite=k in params)]


def _mismatch(state, own, energy, negatives) -> str:
    """What in the checkpoint does not fit the objects it is to be restored into ('' if nothing)."""
    saved = state["energy"]
    if not isinstance(saved, dict):
        return f"its energy state is a {type(saved).__name__}, not a state_dict"
    current = energy.state_dict()
    missing = [k for k in current if k not in saved]
    unexpected = [k for k in saved if k not in current]
    shapes = [
        f"{k} {tuple(saved[k].shape)} saved, {tuple(v.shape)} here"
        for k, v in current.items()
        if k in saved and isinstance(v, torch.Tensor) and isinstance(saved[k], torch.Tensor)
        and saved[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = [f"{label} {names}" for label, names in
                 (("missing", missing), ("unexpected", unexpected), ("other shapes:", shapes)) if names]
        return (f"the saved energy does not match this {type(energy).__name__} (a checkpoint of another "
                f"architecture?): {'; '.join(parts)}")
    bad = _bad_energy_values(saved, energy)
    bad += _bad_values(state["optimizer"], "optimizer")
    if own is not None:
        bad += _bad_values(own["negatives"], "negatives")
    if bad:
        return f"it holds NaN or infinite values (a run that diverged before it was saved?) in {bad}"
    if own is None:
        return ""
    from .negatives import PersistentNegatives

    buffer = own["negatives"].get("buffer") if isinstance(own["negatives"], dict) else None
    event = tuple(getattr(energy, "event_shape", ()))
    if isinstance(negatives, PersistentNegatives) and isinstance(buffer, torch.Tensor) \
            and tuple(buffer.shape[1:]) != event:
        return (f"the negatives' replay buffer holds states of shape {tuple(buffer.shape[1:])} "
                f"({tuple(buffer.shape)} in all), but the energy's event_shape is {event}")
    try:
        torch.Generator().set_state(own["torch_rng"])
    except (RuntimeError, TypeError) as exc:
        return f"its saved torch random state is not one ({exc})"
    cuda = own["cuda_rng"]
    if cuda and torch.cuda.is_available() and len(cuda) > torch.cuda.device_count():
        return (f"it holds the random states of {len(cuda)} CUDA devices, this machine has "
                f"{torch.cuda.device_count()}")
    return ""


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
