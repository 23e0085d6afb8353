"""The library's one rule for random numbers: every stochastic entry point takes ``seed`` -- an int, a
``torch.Generator`` (used as is, so a caller can thread one generator through several calls) or ``None``
(a seed drawn from torch's global generator, so ``torch.manual_seed`` makes the call reproducible)."""

from __future__ import annotations

import numbers

import torch

__all__ = ["make_generator", "check_seed"]


def check_seed(seed, name: str = "seed"):
    """``seed`` unchanged if it is an int, a ``torch.Generator`` or ``None``; a TypeError naming ``name``
    otherwise."""
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an int, a torch.Generator or None, got {type(seed).__name__}")
    if int(seed) < 0:
        raise ValueError(f"{name} must be >= 0, got {seed}")
    return seed


def make_generator(seed, device=None, name: str = "seed") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` from ``seed`` (see the module docstring).

    >>> g = make_generator(0); make_generator(g) is g
    True
    >>> bool(torch.rand(1, generator=make_generator(3)) == torch.rand(1, generator=make_generator(3)))
    True
    """
    from ._validation import check_device

    seed = check_seed(seed, name)
    if isinstance(seed, torch.Generator):
        return seed
    gen = torch.Generator(device=check_device(device) if device is not None else "cpu")
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    gen.manual_seed(int(seed))
    return gen
