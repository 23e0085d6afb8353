r"""A2 of the lecture: a quantised latent carries at most ``log K`` nats, which bounds the volume of low energy.

* :class:`VectorQuantizer` -- ``E(y, z) = ||y - dec(z C)||^2`` with ``z`` one-hot over a codebook ``C``
  ``[K, m]``: low energy only near the ``K`` points ``dec(c_k)``. With identity encoder and decoder it is
  :class:`~pyro_ebm.models.KMeans`; with an encoder and a decoder it is the energy of a VQ-VAE
  (van den Oord et al. 2017), trained by :meth:`VectorQuantizer.loss` or by k-means steps on the codebook.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .._validation import check_real
from ..energy import LatentEnergy
from ..inference import argmin_latent, free_energy
from ._common import check_module, check_state, check_units, checked, joint_batch
from ._data import check_data, check_input, check_matrix

__all__ = ["VectorQuantizer"]


class VectorQuantizer(LatentEnergy):
    r"""Vector quantization as a latent-variable energy (A2): a codebook behind an optional encoder/decoder.

    .. math:: E(y, z) = \lVert y - \mathrm{dec}(z C) \rVert^2, \qquad z \in \{e_1, \dots, e_K\},

    with the codebook ``C`` ``[K, m]`` and ``dec`` ``[*, m] -> [*, d]`` (default: identity, ``d = m``). The free
    energy is exact enumeration over the ``K`` codes through :func:`pyro_ebm.free_energy`:
    :math:`F_\beta(y) = -\frac1\beta\log\sum_k e^{-\beta\lVert y - \mathrm{dec}(c_k)\rVert^2}`, the minimum at
    ``beta = inf``; :meth:`infer` is the exact minimiser. The encoder ``enc`` ``[*, d] -> [*, m]`` gives the
    VQ-VAE's amortised code, the codebook entry nearest to ``enc(y)`` (:meth:`encode`); its energy is an upper
    bound of ``F_inf(y)``. With both identity this is :class:`~pyro_ebm.models.KMeans` on the codebook.

    :param codebook: ``C`` ``[K, m]``.
    :param encoder: optional module ``[*batch, d] -> [*batch, m]`` (default identity).
    :param decoder: optional module ``[*batch, m] -> [*batch, d]`` (default identity).
    :param dim: ``d``, required with a decoder (default ``m``).

    Example::

        >>> import torch
        >>> from pyro_ebm.models import VectorQuantizer
        >>> vq = VectorQuantizer(torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
        >>> y = torch.tensor([[0.5, 0.0]])
        >>> vq.infer(y)  # one-hot: the nearest code
        tensor([[1., 0.]])
        >>> vq.free_energy(y, beta=float("inf")).detach()
        tensor([0.2500])
        >>> vq.free_energy(y, beta=1.0).detach()  # -log(exp(-0.25) + exp(-2.25))
        tensor([0.1231])
    """

    def __init__(self, codebook: torch.Tensor, *, encoder: Optional[nn.Module] = None,
                 decoder: Optional[nn.Module] = None, dim: Optional[int] = None):
        codebook = check_matrix(codebook, "codebook", "[K, m]")
        k, m = codebook.shape
        for name, mod in (("encoder", encoder), ("decoder", decoder)):
            if mod is not None and not isinstance(mod, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module or None, got {type(mod).__name__}")
        if dim is None:
            if decoder is not None:
                raise ValueError("dim (the dimension d of y) is required with a decoder")
            dim = m
        dim = check_units(dim, "dim")
        if decoder is None and dim != m:
            raise ValueError(f"dim = {dim} must equal the codebook's width m = {m} without a decoder")
        if encoder is not None:
            check_module(encoder, "encoder", (dim,), (m,), codebook.dtype)
        if decoder is not None:
            check_module(decoder, "decoder", (m,), (dim,), codebook.dtype)
        super().__init__(event_shape=(dim,), latent_shape=(k,))
        self.n_codes = k
        self.codebook = nn.Parameter(codebook.detach().clone())
        self.encoder = encoder if encoder is not None else nn.Identity()
        self.decoder = decoder if decoder is not None else nn.Identity()

    def forward(self, y, z, x=None):
        if x is not None:
            raise TypeError("VectorQuantizer takes no conditioning x")
        y = check_state(y, "y", self.event_shape)
        z = check_state(z, "z", self.latent_shape)
        joint_batch(y, z, self.event_shape, self.latent_shape)
        e = ((y - self.decoder(z @ self.codebook)) ** 2).sum(-1)
        return checked(e, "the vector quantizer's energy", [("y", y), ("z", z)], self)

    def codes(self) -> torch.Tensor:
        """The ``K`` one-hot latent values ``[K, K]``."""
        c = self.codebook
        return torch.eye(self.n_codes, dtype=c.dtype, device=c.device)

    def free_energy(self, y: torch.Tensor, beta=1.0) -> torch.Tensor:
        """``F_beta(y)`` ``[*batch]`` by enumeration over the ``K`` codes; ``beta = inf`` is the minimum."""
        y = check_input(y, self.event_shape, "y")
        return free_energy(self, y, self.codes(), beta=beta)

    def infer(self, y: torch.Tensor) -> torch.Tensor:
        """The exact minimiser ``argmin_z E(y, z)``, one-hot ``[*batch, K]``."""
        y = check_input(y, self.event_shape, "y")
        return argmin_latent(self, y, self.codes())[0]

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        """The encoder's output ``enc(y)`` ``[*batch, m]``."""
        y = check_input(y, self.event_shape, "y")
        h = self.encoder(y)
        m = self.codebook.shape[1]
        if not isinstance(h, torch.Tensor) or tuple(h.shape) != tuple(y.shape[:-1]) + (m,):
            raise ValueError(f"encoder must map y {tuple(y.shape)} to [*batch, {m}], got "
                             f"{tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__}")
        return h

    def _nearest(self, h: torch.Tensor) -> torch.Tensor:
        return ((h.unsqueeze(-2) - self.codebook) ** 2).sum(-1).argmin(-1)

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """The VQ-VAE's amortised code: the codebook entry nearest to ``enc(y)``, one-hot ``[*batch, K]``
        (equal to :meth:`infer` with identity encoder and decoder)."""
        idx = self._nearest(self.embed(y).detach())
        return nn.functional.one_hot(idx, self.n_codes).to(self.codebook.dtype)

    def reconstruct(self, y: torch.Tensor) -> torch.Tensor:
        """``dec(c_k)`` for the exact code ``k`` of each ``y``, ``[*batch, d]``."""
        return self.decoder(self.infer(y) @ self.codebook)

    def loss(self, y: torch.Tensor, commitment: float = 0.25) -> torch.Tensor:
        r"""The VQ-VAE loss, averaged over the batch ``y`` ``[*batch, d]``:

        .. math:: \lVert y - \mathrm{dec}(h + \mathrm{sg}[q - h])\rVert^2 + \lVert \mathrm{sg}[h] - q\rVert^2
                  + \gamma\,\lVert h - \mathrm{sg}[q]\rVert^2,

        ``h = enc(y)``, ``q`` its nearest codebook entry, ``sg`` the stop-gradient: the straight-through
        reconstruction trains decoder and encoder, the codebook term moves ``q`` towards ``h``, the
        commitment term (weight ``gamma = commitment``) keeps ``h`` near its code."""
        commitment = check_real(commitment, "commitment", minimum=0.0)
        h = self.embed(y)
        if h.numel() == 0:
            raise ValueError(f"y must hold at least one example to average over, got shape {tuple(y.shape)}")
        q = self.codebook[self._nearest(h.detach())]
        recon = ((y - self.decoder(h + (q - h).detach())) ** 2).sum(-1)
        codebook = ((h.detach() - q) ** 2).sum(-1)
        commit = ((h - q.detach()) ** 2).sum(-1)
        return (recon + codebook + commitment * commit).mean()

    def kmeans_step(self, Y) -> float:
        """One Lloyd step on the codebook in the encoder's space: assign each ``enc(y)`` (``Y`` ``[N, d]``) to
        its nearest code and move every used code to the mean of its points (unused codes stay). Returns the
        quantisation error ``sum ||enc(y) - q||^2`` before the step. With identity encoder this is K-means."""
        Y = check_data(Y, "Y", self.event_shape[0]).to(self.codebook)
        with torch.no_grad():
            h = self.embed(Y)
            idx = self._nearest(h)
            err = float(((h - self.codebook[idx]) ** 2).sum())
            onehot = nn.functional.one_hot(idx, self.n_codes).to(h.dtype)
            count = onehot.sum(0)
            new = (onehot.T @ h) / count.clamp(min=1)[:, None]
            self.codebook.copy_(torch.where(count[:, None] > 0, new, self.codebook))
        return err
