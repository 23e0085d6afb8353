r"""Auto-encoder energies and penalties (A3, C3) and a normalizing-flow energy (A1, ``log Z = 0``).

* :class:`DenoisingAutoEncoder` -- ``F(y) = ||y - g(y)||^2`` trained on corrupted ``y`` (C3: map points
  off the data manifold back onto it).
* :func:`contracting_penalty` -- the contracting auto-encoder's :math:`\lVert \partial h / \partial y
  \rVert_F^2` (A3: make the encoder as constant as possible in ``y``); :func:`saturating_penalty` -- the
  saturating auto-encoder's distance of each unit to the flat part of its activation.
* :class:`CouplingFlow` -- ``F(y) = -log p(y)`` of an affine-coupling normalizing flow: a tractable baseline
  whose partition function is 1 by construction.
* :class:`VAEEnergy` -- ``-log p(y, z)`` of a Gaussian-decoder VAE with its variational free energy (A2).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._rng import check_seed, make_generator
from .._validation import check_beta, check_finite, check_positive_int, check_real
from ..energy import Energy, LatentEnergy
from ..inference import free_energy_importance, free_energy_min
from ._common import check_module, check_state, check_units, checked, joint_batch
from ._data import check_input

__all__ = ["DenoisingAutoEncoder", "contracting_penalty", "saturating_penalty", "CouplingFlow", "VAEEnergy"]


def _dtype_of(module: nn.Module) -> torch.dtype:
    """The dtype of a module's first floating parameter (the default dtype if it has none)."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


class DenoisingAutoEncoder(Energy):
    r"""The denoising auto-encoder as an energy: :math:`F(y) = \lVert y - g(y) \rVert^2`.

    ``g`` is trained to map corrupted points :math:`\tilde y = y + \sigma\varepsilon` back to ``y``
    (:meth:`loss`), so that the energy, the squared distance moved by one denoising step, is low on the data
    manifold and grows off it. Every fixed point of ``g`` has zero energy, also an unstable one (the centre
    of a ring of data, by symmetry): the reconstruction energy is not a density.

    :param g: module ``[*batch, d] -> [*batch, d]``.
    :param dim: ``d``.

    Example::

        >>> import torch
        >>> from pyro_ebm.models import DenoisingAutoEncoder
        >>> dae = DenoisingAutoEncoder(torch.nn.Linear(2, 2, bias=False), 2)
        >>> with torch.no_grad():
        ...     _ = dae.g.weight.copy_(torch.diag(torch.tensor([1.0, 0.0])))
        >>> dae(torch.tensor([[3.0, 2.0]])).detach()  # the second coordinate is not reconstructed
        tensor([4.])
    """

    def __init__(self, g: nn.Module, dim: int):
        if not isinstance(g, nn.Module):
            raise TypeError(f"g must be a torch.nn.Module [*batch, d] -> [*batch, d], got {type(g).__name__}")
        dim = check_units(dim, "dim")
        check_module(g, "g", (dim,), (dim,), _dtype_of(g))
        super().__init__(event_shape=(dim,))
        self.g = g

    def forward(self, y, x=None):
        if x is not None:
            raise TypeError("DenoisingAutoEncoder takes no conditioning x")
        y = check_state(y, "y", self.event_shape)
        return checked(((y - self.g(y)) ** 2).sum(-1), "the denoising auto-encoder's energy", [("y", y)], self)

    def loss(self, y: torch.Tensor, sigma: float, *, seed=None, noise=None) -> torch.Tensor:
        r"""The denoising loss :math:`\lVert y - g(y + \sigma\varepsilon) \rVert^2`, averaged over the batch.

        :param sigma: corruption scale ``> 0``.
        :param noise: optional ``epsilon`` of ``y``'s shape (else drawn from ``seed``).
        """
        y = check_input(y, self.event_shape, "y")
        sigma = check_real(sigma, "sigma", minimum=0.0, strict=True)
        check_seed(seed)
        if noise is None:
            noise = torch.randn(y.shape, generator=make_generator(seed), dtype=y.dtype).to(y.device)
        elif not isinstance(noise, torch.Tensor) or noise.shape != y.shape:
            raise ValueError(f"noise must be a tensor of y's shape {tuple(y.shape)}")
        else:
            noise = check_input(noise, self.event_shape, "noise")
        return ((y - self.g(y + sigma * noise)) ** 2).sum(-1).mean()


def contracting_penalty(encoder, y: torch.Tensor) -> torch.Tensor:
    r"""The contracting auto-encoder penalty (Rifai et al. 2011): :math:`\lVert \partial h(y) / \partial y
    \rVert_F^2` per sample, exact (one backward pass per code unit), differentiable in the encoder's
    parameters.

    :param encoder: callable ``[*batch, d] -> [*batch, k]`` acting on each sample independently.
    :param y: ``[*batch, d]``.
    :returns: ``[*batch]``.

    Example::

        >>> import torch
        >>> A = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
        >>> contracting_penalty(lambda y: y @ A, torch.zeros(2, 2)).detach()  # ||A||_F^2
        tensor([14., 14.])
    """
    if not callable(encoder):
        raise TypeError(f"encoder must be callable [*batch, d] -> [*batch, k], got {type(encoder).__name__}")
    if not isinstance(y, torch.Tensor) or not y.is_floating_point() or y.dim() < 1:
        raise TypeError("y must be a floating-point tensor [*batch, d]")
    check_finite(y.detach(), "y")
    y = y.detach().requires_grad_(True)
    with torch.enable_grad():
        try:
            h = encoder(y)
        except RuntimeError as exc:
            raise ValueError(f"encoder failed on y of shape {tuple(y.shape)} ([*batch, d]): "
                             f"{str(exc).splitlines()[0]}") from exc
        if not isinstance(h, torch.Tensor) or h.shape[:-1] != y.shape[:-1]:
            raise ValueError(f"encoder must map y {tuple(y.shape)} to [*batch, k], got "
                             f"{tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__}")
        if not bool(torch.isfinite(h.detach()).all()):
            raise ValueError("encoder returned NaN or inf codes (check its parameters)")
        total = torch.zeros(y.shape[:-1], dtype=y.dtype, device=y.device)
        for j in range(h.shape[-1]):
            (gj,) = torch.autograd.grad(h[..., j].sum(), y, create_graph=True, allow_unused=True)
            if gj is not None:
                total = total + (gj**2).sum(-1)
    return total


def saturating_penalty(preactivation: torch.Tensor, activation: str = "relu", threshold: float = 1.0) -> torch.Tensor:
    r"""The saturating auto-encoder penalty (Goroshin & LeCun 2013): how far each unit is from the flat part
    of its activation, summed over units.

    * ``"relu"`` (flat for :math:`a < 0`): :math:`\sum_i \max(a_i, 0)`;
    * ``"shrink"`` (soft threshold, flat for :math:`|a| < t`): :math:`\sum_i \max(|a_i| - t, 0)`;
    * ``"hardtanh"`` (flat for :math:`|a| > t`): :math:`\sum_i \max(t - |a_i|, 0)`.

    :param preactivation: ``[*batch, k]``.
    :returns: ``[*batch]``.

    Example::

        >>> import torch
        >>> saturating_penalty(torch.tensor([[-1.0, 0.5, 2.0]]), "shrink", threshold=1.0)
        tensor([1.])
    """
    if not isinstance(preactivation, torch.Tensor) or not preactivation.is_floating_point():
        raise TypeError("preactivation must be a floating-point tensor [*batch, k]")
    check_finite(preactivation.detach(), "preactivation")
    threshold = check_real(threshold, "threshold", minimum=0.0)
    a = preactivation
    if activation == "relu":
        dist = torch.relu(a)
    elif activation == "shrink":
        dist = torch.relu(a.abs() - threshold)
    elif activation == "hardtanh":
        dist = torch.relu(threshold - a.abs())
    else:
        raise ValueError(f"activation must be 'relu', 'shrink' or 'hardtanh', got {activation!r}")
    return dist.sum(-1)


class _Coupling(nn.Module):
    def __init__(self, dim: int, hidden: int, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 2 * dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, y):
        """``(u, log|det J|)`` of ``u = m*y + (1-m)*(y * exp(s) + t)`` with ``s, t`` functions of ``m*y``."""
        s, t = self.net(y * self.mask).chunk(2, -1)
        s = torch.tanh(s) * (1 - self.mask)
        t = t * (1 - self.mask)
        return y * torch.exp(s) + t, s.sum(-1)


class CouplingFlow(Energy):
    r"""A normalizing flow (affine couplings, Dinh et al. 2017) as an energy :math:`F(y) = -\log p(y)`.

    .. math:: F(y) = \tfrac12\lVert f(y)\rVert^2 + \tfrac d2\log 2\pi - \log\lvert\det \partial f/\partial y\rvert

    with ``f`` invertible and the base density standard normal: :math:`\int e^{-F} dy = 1` for every value of
    the parameters (A1: the volume of low energy is fixed by construction), so maximum likelihood is just
    pushing down on :math:`F` at the data. Initialised to the identity map.

    :param dim: ``d >= 2``.
    :param n_layers: coupling layers (masks alternate).
    :param hidden: hidden units of each coupling's network.

    Example::

        >>> import math, torch
        >>> from pyro_ebm.models import CouplingFlow
        >>> CouplingFlow(2)(torch.zeros(1, 2)).detach()  # log(2 pi) at initialisation (a standard normal)
        tensor([1.8379])
    """

    def __init__(self, dim: int, n_layers: int = 4, hidden: int = 32):
        dim = check_units(dim, "dim")
        if dim < 2:
            raise ValueError(f"dim must be >= 2 for a coupling flow, got {dim}")
        super().__init__(event_shape=(dim,))
        n_layers = check_positive_int(n_layers, "n_layers")
        hidden = check_positive_int(hidden, "hidden")
        base = (torch.arange(dim) % 2).to(torch.get_default_dtype())
        self.layers = nn.ModuleList(_Coupling(dim, hidden, base if i % 2 == 0 else 1 - base) for i in range(n_layers))

    def forward(self, y, x=None):
        if x is not None:
            raise TypeError("CouplingFlow takes no conditioning x")
        y = check_state(y, "y", self.event_shape)
        logdet = torch.zeros(y.shape[:-1], dtype=y.dtype, device=y.device)
        u = y
        for layer in self.layers:
            u, ld = layer(u)
            logdet = logdet + ld
        d = y.shape[-1]
        out = 0.5 * (u**2).sum(-1) + 0.5 * d * math.log(2 * math.pi) - logdet
        return checked(out, "the flow's energy", [("y", y)], self)


class VAEEnergy(LatentEnergy):
    r"""A VAE-style latent energy (A2): reconstruction plus the KL information limit on ``z``.

    .. math:: E(y, z) = \frac{\lVert y - \mathrm{Dec}(z)\rVert^2}{2\sigma^2} + \frac{\lVert z\rVert^2}{2}
              + \frac d2\log 2\pi\sigma^2 + \frac k2 \log 2\pi = -\log p(y, z),

    so that the free energy at ``beta = 1`` is :math:`-\log p(y)`. The encoder gives a Gaussian
    :math:`q(z\mid y) = \mathcal N(\mu(y), \operatorname{diag} e^{\ell(y)})`, and :meth:`variational_free_energy`
    is the VAE loss, reconstruction plus :math:`\mathrm{KL}(q \,\Vert\, \mathcal N(0, I))` (an upper bound of
    :math:`-\log p(y)`, tight when ``q`` is the posterior): the KL term charges for the information ``z``
    carries about ``y``, which is what keeps the volume of low energy small.

    :param decoder: module ``[*batch, k] -> [*batch, d]``.
    :param encoder: module ``[*batch, d] -> [*batch, 2k]`` (mean and log-variance).
    :param dim: ``d``; :param latent_dim: ``k``; :param sigma: observation noise ``> 0``.

    Example::

        >>> import torch
        >>> from pyro_ebm.models import VAEEnergy
        >>> dec, enc = torch.nn.Linear(1, 2), torch.nn.Linear(2, 2)
        >>> vae = VAEEnergy(dec, enc, dim=2, latent_dim=1, sigma=0.5)
        >>> vae.variational_free_energy(torch.zeros(3, 2), num_samples=4, seed=0).shape
        torch.Size([3])
    """

    def __init__(self, decoder: nn.Module, encoder: nn.Module, *, dim: int, latent_dim: int, sigma: float = 1.0):
        for name, m in (("decoder", decoder), ("encoder", encoder)):
            if not isinstance(m, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module, got {type(m).__name__}")
        d, k = check_units(dim, "dim"), check_units(latent_dim, "latent_dim")
        check_module(decoder, "decoder", (k,), (d,), _dtype_of(decoder))
        check_module(encoder, "encoder", (d,), (2 * k,), _dtype_of(encoder))
        super().__init__(event_shape=(d,), latent_shape=(k,))
        self.decoder, self.encoder = decoder, encoder
        self.sigma = check_real(sigma, "sigma", minimum=0.0, strict=True)

    def forward(self, y, z, x=None):
        if x is not None:
            raise TypeError("VAEEnergy takes no conditioning x")
        y = check_state(y, "y", self.event_shape)
        z = check_state(z, "z", self.latent_shape)
        joint_batch(y, z, self.event_shape, self.latent_shape)
        d, k = self.event_shape[0], self.latent_shape[0]
        recon = ((y - self.decoder(z)) ** 2).sum(-1) / (2 * self.sigma**2)
        e = recon + 0.5 * (z**2).sum(-1) + 0.5 * d * math.log(2 * math.pi * self.sigma**2) \
            + 0.5 * k * math.log(2 * math.pi)
        return checked(e, "the VAE energy", [("y", y), ("z", z)], self)

    def posterior(self, y: torch.Tensor) -> torch.distributions.Distribution:
        """The encoder's ``q(z | y)``, a diagonal Gaussian with batch shape ``batch``."""
        y = check_input(y, self.event_shape, "y")
        mu, log_var = self.encoder(y).chunk(2, -1)
        return torch.distributions.Independent(torch.distributions.Normal(mu, torch.exp(0.5 * log_var)), 1)

    def infer(self, y: torch.Tensor) -> torch.Tensor:
        """The encoder's mean ``[*batch, k]`` (amortised inference)."""
        return self.posterior(y).mean

    def variational_free_energy(self, y: torch.Tensor, *, num_samples: int = 1, seed=None) -> torch.Tensor:
        r"""The VAE loss per sample, ``[*batch]``: :math:`\mathbb E_q[-\log p(y \mid z)] + \mathrm{KL}(q \Vert
        \mathcal N(0, I))`, the expectation by ``num_samples`` reparameterised draws."""
        num_samples = check_positive_int(num_samples, "num_samples")
        q = self.posterior(y)
        eps = torch.randn((num_samples,) + tuple(q.mean.shape), generator=make_generator(seed),
                          dtype=q.mean.dtype).to(q.mean.device)
        z = q.mean + q.base_dist.scale * eps
        d = self.event_shape[0]
        nll = ((y - self.decoder(z)) ** 2).sum(-1) / (2 * self.sigma**2) + 0.5 * d * math.log(2 * math.pi * self.sigma**2)
        mu, var = q.mean, q.base_dist.scale**2
        kl = 0.5 * (var + mu**2 - 1 - torch.log(var)).sum(-1)
        return nll.mean(0) + kl

    def free_energy(self, y: torch.Tensor, beta=1.0, *, num_samples: int = 1000, seed=0) -> torch.Tensor:
        r"""``F_beta(y)`` ``[*batch]``: at finite ``beta`` by importance sampling from the encoder's ``q``
        (:func:`pyro_ebm.free_energy_importance`; at ``beta = 1`` an estimate of ``-log p(y)``); at
        ``beta = inf`` the minimum over ``z`` by :func:`pyro_ebm.free_energy_min` from the encoder's mean."""
        y = check_input(y, self.event_shape, "y")
        beta = check_beta(beta, allow_inf=True)
        if isinstance(beta, float) and math.isinf(beta):
            return free_energy_min(self, y, self.infer(y).detach().unsqueeze(0), steps=500, lr=0.05)[0]
        if y.numel() == 0:  # an empty batch
            return y.new_zeros(y.shape[:-1])
        q = self.posterior(y)
        q = torch.distributions.Independent(torch.distributions.Normal(q.mean.detach(), q.base_dist.scale.detach()), 1)
        return free_energy_importance(self, y, q, num_samples, beta=beta, generator=make_generator(seed)).value
