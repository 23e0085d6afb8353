r"""Boltzmann machines (Hinton & Sejnowski 1983) and restricted Boltzmann machines, on binary {0, 1} units.

Both are latent-variable energies :math:`E(v, h)` over visible units ``v`` and hidden units ``h`` with the
Gibbs-Boltzmann joint :math:`p(v, h) \propto e^{-\beta E(v, h)}`. As :class:`~pyro_ebm.Energy` objects they
evaluate the **free energy** over the hidden units,

.. math:: F_\beta(v) = -\frac{1}{\beta} \log \sum_h e^{-\beta E(v, h)}, \qquad p(v) = e^{-\beta F_\beta(v)} / Z_\beta,

so the library's machinery (``log_partition``, ``log_likelihood``, ``train.fit``, the negative generators)
applies to them as to any energy of ``v``. Each model also offers the two other views:

* ``latent_energy()`` -- the :class:`~pyro_ebm.LatentEnergy` :math:`E(v, h)` (for
  :func:`~pyro_ebm.free_energy`, :func:`~pyro_ebm.latent_posterior`, ...);
* ``joint_state()`` -- an energy of the stacked state ``s = [v, h]`` carrying the model's exact
  conditionals, so :func:`pyro_ebm.mcmc.sample` with ``kernel="gibbs"`` runs block Gibbs (RBM: two blocks)
  or sequential Gibbs (BM: one unit at a time) on it;
* ``pyro_model(v)`` -- the model as a Pyro program whose hidden units Pyro enumerates exactly.

The restricted machine, :class:`~pyro_ebm.models.RBM`, lives in :mod:`pyro_ebm.models.rbm` (imported
here too) to keep each file small.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .._validation import check_beta, check_finite, check_positive_int, check_real
from ..energy import Energy, as_energy
from ..gibbs import product_values
from ..inference import free_energy, latent_energy_model
from ..mcmc import make_generator, sample as mcmc_sample
from ..partition import log_partition
from ..train import DataOrder, History
from ._common import (JointState, check_binary, check_fit_finite, check_state, check_units,
                      checked, joint_batch)
from .rbm import RBM

__all__ = ["BoltzmannMachine", "RBM"]

#: largest number of hidden units whose 2**n configurations the exact free energy enumerates
MAX_EXACT_HIDDEN = 20
#: largest number of units (visible + hidden) for the exact log Z and likelihood of a Boltzmann machine
MAX_EXACT_STATES = 22


def _check_symmetric(w: torch.Tensor, name: str, n: int) -> torch.Tensor:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{name} must be a tensor [{n}, {n}], got {type(w).__name__}")
    if w.dim() != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"{name} must be a square matrix [{n}, {n}], got shape {tuple(w.shape)}")
    if w.shape[0] != n:
        raise ValueError(f"{name} must have shape [{n}, {n}], got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"{name} must be finite")
    if not torch.allclose(w, w.T, atol=1e-6 * (1 + float(w.abs().max()) if w.numel() else 1)):
        raise ValueError(f"{name} must be symmetric (w[i, j] == w[j, i]); its largest asymmetry is "
                         f"{float((w - w.T).abs().max()):g}")
    if bool((w.diagonal() != 0).any()):
        raise ValueError(f"{name} must have a zero diagonal (no self-connections)")
    return w


class BoltzmannMachine(Energy):
    r"""A Boltzmann machine: a Hopfield net on {0, 1} units with hidden units (Hinton & Sejnowski 1983).

    .. math::
        E(y, z) = -\tfrac12 y^\top W^{yy} y - \tfrac12 z^\top W^{zz} z - y^\top W^{yz} z - a^\top y - b^\top z

    with symmetric, zero-diagonal :math:`W^{yy}` ``[n_visible, n_visible]`` and :math:`W^{zz}`
    ``[n_hidden, n_hidden]``, and :math:`W^{yz}` ``[n_visible, n_hidden]``: the three weight blocks of the
    lecture (whose :math:`\sum_{ij}` counts every symmetric pair twice, hence the :math:`\frac12`). Calling
    the module gives the free energy :math:`F_\beta(y)`, exact by enumerating the ``2**n_hidden`` hidden
    configurations (up to ``MAX_EXACT_HIDDEN = 20`` hidden units) with :func:`pyro_ebm.free_energy`.

    Sampling is sequential Gibbs, one unit at a time,
    :math:`P(s_i = 1 \mid s_{-i}) = \sigma(\beta\,(\sum_j W_{ij} s_j + \text{bias}_i))` over the stacked
    state ``s = [y, z]``, run by :func:`pyro_ebm.mcmc.sample` (``kernel="gibbs"``) on :meth:`joint_state`.

    :param n_visible: number of visible units ``y``.
    :param n_hidden: number of hidden units ``z`` (``>= 0``).
    :param beta: inverse temperature ``> 0``.
    :param init_scale: standard deviation of the random initial weights.
    :param seed: seeds the initial weights.

    Example::

        >>> import torch
        >>> bm = BoltzmannMachine(4, 3, seed=0)
        >>> y = torch.tensor([[1., 0., 1., 1.]])
        >>> bm(y).shape
        torch.Size([1])
    """

    def __init__(self, n_visible: int, n_hidden: int, beta: float = 1.0, *, init_scale: float = 0.1,
                 seed: Optional[int] = None, dtype=None):
        nv = check_units(n_visible, "n_visible")
        nh = check_positive_int(n_hidden, "n_hidden", minimum=0)
        super().__init__(event_shape=(nv,))
        self.n_visible, self.n_hidden = nv, nh
        self.beta = float(check_beta(beta))
        init_scale = check_real(init_scale, "init_scale", minimum=0.0)
        dtype = dtype or torch.get_default_dtype()
        gen = make_generator(seed, "cpu")
        n = nv + nh
        w = torch.randn(n, n, generator=gen, dtype=dtype) * float(init_scale)
        w = torch.triu(w, 1)
        w = w + w.T
        self.w_yy = nn.Parameter(w[:nv, :nv].clone())
        self.w_zz = nn.Parameter(w[nv:, nv:].clone())
        self.w_yz = nn.Parameter(w[:nv, nv:].clone())
        self.bias_y = nn.Parameter(torch.zeros(nv, dtype=dtype))
        self.bias_z = nn.Parameter(torch.zeros(nh, dtype=dtype))

    # -- parameters ---------------------------------------------------------------------------------
    def set_weights(self, w_yy=None, w_zz=None, w_yz=None, bias_y=None, bias_z=None) -> "BoltzmannMachine":
        """Set any of the weight blocks and biases (checked: symmetric zero-diagonal ``w_yy``/``w_zz``,
        shapes). Returns ``self``."""
        nv, nh = self.n_visible, self.n_hidden
        new = {}
        if w_yy is not None:
            new["w_yy"] = _check_symmetric(torch.as_tensor(w_yy), "w_yy", nv)
        if w_zz is not None:
            new["w_zz"] = _check_symmetric(torch.as_tensor(w_zz), "w_zz", nh)
        for name, value, shape in (("w_yz", w_yz, (nv, nh)), ("bias_y", bias_y, (nv,)), ("bias_z", bias_z, (nh,))):
            if value is not None:
                value = torch.as_tensor(value)
                if tuple(value.shape) != shape:
                    raise ValueError(f"{name} must have shape {list(shape)}, got {tuple(value.shape)}")
                if value.is_complex() or value.dtype == torch.bool:
                    raise TypeError(f"{name} must be a real tensor, got dtype {value.dtype}")
                check_finite(value, name)
                new[name] = value
        with torch.no_grad():
            for name, value in new.items():
                getattr(self, name).copy_(value)
        return self

    def full_weight(self) -> torch.Tensor:
        """The symmetric weight matrix of the stacked state ``s = [y, z]``, ``[n, n]``."""
        top = torch.cat([self.w_yy, self.w_yz], 1)
        bottom = torch.cat([self.w_yz.T, self.w_zz], 1)
        return torch.cat([top, bottom], 0)

    def full_bias(self) -> torch.Tensor:
        return torch.cat([self.bias_y, self.bias_z])

    # -- energies -----------------------------------------------------------------------------------
    def joint_energy(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r""":math:`E(y, z)` at ``beta = 1``; ``y`` ``[*batch, n_visible]``, ``z`` ``[*batch', n_hidden]``
        broadcasting to ``[*batch]``."""
        y = check_state(y, "y", (self.n_visible,), like=self.bias_y)
        z = check_state(z, "z", (self.n_hidden,), like=self.bias_y)
        joint_batch(y, z, (self.n_visible,), (self.n_hidden,))
        e = -0.5 * ((y @ self.w_yy) * y).sum(-1) - (y * self.bias_y).sum(-1)
        if self.n_hidden:
            e = e - 0.5 * ((z @ self.w_zz) * z).sum(-1) - ((y @ self.w_yz) * z).sum(-1) - (z * self.bias_z).sum(-1)
        return checked(e, "the Boltzmann machine's energy", [("y", y), ("z", z)], self)

    def latent_energy(self):
        """:math:`E(y, z)` as a :class:`~pyro_ebm.LatentEnergy` sharing this model's parameters."""
        return as_energy(self.joint_energy, event_shape=(self.n_visible,), latent_shape=(self.n_hidden,))

    def hidden_values(self) -> torch.Tensor:
        """All ``2**n_hidden`` hidden configurations ``[2**n_hidden, n_hidden]``."""
        if self.n_hidden > MAX_EXACT_HIDDEN:
            raise ValueError(
                f"n_hidden = {self.n_hidden}: 2**{self.n_hidden} hidden configurations are too many to "
                f"enumerate (at most {MAX_EXACT_HIDDEN} hidden units); sample them with pyro_ebm.mcmc "
                "(kernel='gibbs' on joint_state())"
            )
        like = self.bias_y
        if self.n_hidden == 0:
            return torch.zeros(1, 0, dtype=like.dtype, device=like.device)
        return product_values(torch.tensor([0.0, 1.0], dtype=like.dtype, device=like.device), self.n_hidden)

    def forward(self, y, x=None):
        """The free energy :math:`F_\\beta(y)` ``[*batch]``, exact (enumerating the hidden units)."""
        if x is not None:
            raise TypeError("BoltzmannMachine takes no conditioning x")
        y = check_state(y, "y", self.event_shape, like=self.bias_y)
        check_finite(y.detach(), "y")
        return free_energy(self.latent_energy(), y, self.hidden_values(), beta=self.beta)

    # -- Gibbs --------------------------------------------------------------------------------------
    def joint_state(self) -> JointState:
        """The energy of ``s = [y, z]`` with single-unit Gibbs blocks in the order ``y_1..y_n, z_1..z_m``,
        for :func:`pyro_ebm.mcmc.sample` (``kernel="gibbs"``); the ``blocks`` option restricts the sweep
        (e.g. to the hidden units: the clamped phase)."""
        nv, n = self.n_visible, self.n_visible + self.n_hidden

        def energy(s):
            return self.joint_energy(s[..., :nv], s[..., nv:])

        def logits(s, block):
            # E(s_i = 0) - E(s_i = 1) = sum_j W_ij s_j + bias_i (zero diagonal)
            w = self.full_weight()[:, block]
            return s @ w + self.full_bias()[block]

        blocks = [torch.tensor([i]) for i in range(n)]
        return JointState(self, n, energy, logits, blocks)

    def sample(self, num_samples: int, *, num_sweeps: int = 1000, init=None, seed=None) -> torch.Tensor:
        """``num_samples`` independent chains of sequential Gibbs, ``num_sweeps`` sweeps each; returns
        their final states ``[num_samples, n_visible + n_hidden]`` (``[y, z]``).

        :param init: ``[num_samples, n_visible + n_hidden]`` binary starting states (default random).
        """
        num_samples = check_positive_int(num_samples, "num_samples")
        num_sweeps = check_positive_int(num_sweeps, "num_sweeps")
        n = self.n_visible + self.n_hidden
        like = self.bias_y
        if init is None:
            gen = make_generator(seed, like.device)
            half = torch.full((num_samples, n), 0.5, dtype=like.dtype, device=like.device)
            init = torch.bernoulli(half, generator=gen)
            seed = gen
        else:
            init = check_binary(init, "init", n, min_dim=2, like=like)
            if init.shape[0] != num_samples or init.dim() != 2:
                raise ValueError(f"init must have shape [num_samples={num_samples}, {n}], got {tuple(init.shape)}")
        with torch.no_grad():
            s = mcmc_sample(self.joint_state(), init, num_sweeps - 1, 1, kernel="gibbs", beta=self.beta,
                            seed=seed, progress=False)
        return s.draws[:, -1]

    def clamped_hidden(self, y: torch.Tensor, *, num_sweeps: int = 10, seed=None) -> torch.Tensor:
        """Samples of :math:`P(z \\mid y)` for each row of ``y`` ``[N, n_visible]``: Gibbs over the hidden
        units only, visible units clamped (the positive phase). Returns ``[N, n_hidden]``."""
        y = check_binary(y, "y", self.n_visible, min_dim=2, like=self.bias_y)
        if y.dim() != 2:
            raise ValueError(f"y must have shape [N, {self.n_visible}], got {tuple(y.shape)}")
        num_sweeps = check_positive_int(num_sweeps, "num_sweeps")
        gen = make_generator(seed, y.device)
        if y.shape[0] == 0:  # an empty batch
            return y.new_zeros(0, self.n_hidden)
        half = torch.full((y.shape[0], self.n_hidden), 0.5, dtype=y.dtype, device=y.device)
        z0 = torch.bernoulli(half, generator=gen)
        nv = self.n_visible
        blocks = [torch.tensor([nv + j]) for j in range(self.n_hidden)]
        with torch.no_grad():
            s = mcmc_sample(self.joint_state(), torch.cat([y, z0], 1), num_sweeps - 1, 1, kernel="gibbs",
                            beta=self.beta, seed=gen, progress=False, blocks=blocks)
        return s.draws[:, -1, nv:]

    # -- learning -----------------------------------------------------------------------------------
    def fit(self, data, *, epochs: int = 10, batch_size: int = 20, lr: float = 0.05, num_sweeps: int = 5,
            num_chains: int = 100, seed: int = 0) -> History:
        r"""Maximum likelihood with MCMC samples in both phases and the lecture's rule
        :math:`w_{ij} \leftarrow w_{ij} + \eta\,\beta\,(\langle s_i s_j\rangle_{\text{data}} -
        \langle \hat s_i \hat s_j\rangle_{\text{model}})`.

        The positive phase samples :math:`\check z \sim P(z \mid y)` for each example of the minibatch
        (``num_sweeps`` sweeps of clamped Gibbs from random hidden units); the negative phase continues
        ``num_chains`` persistent fantasy chains :math:`(\hat y, \hat z)` by ``num_sweeps`` sweeps. The
        update is a stochastic gradient step on the mean negative log-likelihood (``lr`` times
        :math:`-\partial/\partial w` of it), applied to all three weight blocks and both biases; the
        diagonals stay zero.

        :param data: ``[N, n_visible]`` of 0s and 1s.
        :returns: a :class:`~pyro_ebm.train.History` with one record per epoch (``epoch`` and, while the
            model is small enough to enumerate, the exact mean ``nll`` of the data).
        """
        data = check_binary(data, "data", self.n_visible, min_dim=2, like=self.bias_y)
        if data.dim() != 2 or data.shape[0] == 0:
            raise ValueError(f"data must have shape [N, {self.n_visible}] with N >= 1, got {tuple(data.shape)}")
        epochs = check_positive_int(epochs, "epochs")
        num_sweeps = check_positive_int(num_sweeps, "num_sweeps")
        num_chains = check_positive_int(num_chains, "num_chains")
        lr = check_real(lr, "lr", minimum=0.0, strict=True)
        order = DataOrder(data.shape[0], check_positive_int(batch_size, "batch_size"), seed=seed)
        gen = make_generator(seed, data.device)
        nv, n = self.n_visible, self.n_visible + self.n_hidden
        half = torch.full((num_chains, n), 0.5, dtype=data.dtype, device=data.device)
        fantasy = torch.bernoulli(half, generator=gen)
        history = History()
        steps = max(1, data.shape[0] // order.batch_size)
        for epoch in range(1, epochs + 1):
            for _ in range(steps):
                y = data[order.next()]
                s_pos = torch.cat([y, self.clamped_hidden(y, num_sweeps=num_sweeps, seed=gen)], 1)
                with torch.no_grad():
                    res = mcmc_sample(self.joint_state(), fantasy, num_sweeps - 1, 1, kernel="gibbs",
                                      beta=self.beta, seed=gen, progress=False)
                fantasy = res.draws[:, -1]
                self._update(s_pos, fantasy, lr)
                check_fit_finite(self, "BoltzmannMachine.fit", lr, epoch)
            record = {"epoch": epoch}
            if n <= MAX_EXACT_STATES:
                record["nll"] = float(self.exact_nll(data))
            history.append(record)
        return history

    def _update(self, s_pos: torch.Tensor, s_neg: torch.Tensor, lr: float) -> None:
        """One step of the rule on the stacked states of the two phases (``[B, n]`` and ``[C, n]``)."""
        nv = self.n_visible
        step = lr * self.beta
        with torch.no_grad():
            corr = s_pos.T @ s_pos / s_pos.shape[0] - s_neg.T @ s_neg / s_neg.shape[0]
            corr.fill_diagonal_(0.0)
            mean = s_pos.mean(0) - s_neg.mean(0)
            self.w_yy.add_(corr[:nv, :nv], alpha=step)
            self.w_zz.add_(corr[nv:, nv:], alpha=step)
            self.w_yz.add_(corr[:nv, nv:], alpha=step)
            self.bias_y.add_(mean[:nv], alpha=step)
            self.bias_z.add_(mean[nv:], alpha=step)

    # -- exact quantities (small machines) ----------------------------------------------------------
    def log_partition(self):
        """Exact :math:`\\log Z_\\beta` by enumerating all visible and hidden units (at most
        ``MAX_EXACT_STATES = 22`` units), a :class:`~pyro_ebm.partition.LogPartition`."""
        n = self.n_visible + self.n_hidden
        if n > MAX_EXACT_STATES:
            raise ValueError(f"n_visible + n_hidden = {n} units are too many to enumerate exactly (at most "
                             f"{MAX_EXACT_STATES}); estimate log Z another way")
        like = self.bias_y
        ys = product_values(torch.tensor([0.0, 1.0], dtype=like.dtype, device=like.device), self.n_visible)
        return log_partition(self, self.beta, "exact", values=ys)

    def exact_nll(self, y: torch.Tensor) -> torch.Tensor:
        """Mean exact negative log-likelihood of the rows of ``y`` ``[*batch, n_visible]`` (small machines only)."""
        y = check_binary(y, "y", self.n_visible, like=self.bias_y)
        if y.numel() == 0:
            raise ValueError(f"y must hold at least one row to average over, got shape {tuple(y.shape)}")
        with torch.no_grad():
            log_z = self.log_partition().value.to(y.dtype)
            return (self.beta * self(y) + log_z).mean()

    # -- Pyro ---------------------------------------------------------------------------------------
    def pyro_model(self, y: torch.Tensor):
        r"""The machine as a Pyro program over the batch ``y`` ``[*batch, n_visible]``: the hidden units are
        one enumerated site (an index into the ``2**n_hidden`` configurations, counting measure) and the
        energy enters through :func:`~pyro_ebm.energy_factor` ``exp(-beta E(y, z))``. Under
        ``TraceEnum_ELBO(max_plate_nesting=len(batch))`` the loss equals ``beta * F(y).sum()``. (Built by
        :func:`pyro_ebm.latent_energy_model`.)"""
        y = check_binary(y, "y", self.n_visible, like=self.bias_y)
        return latent_energy_model(self.latent_energy(), y, self.hidden_values(), beta=self.beta)

