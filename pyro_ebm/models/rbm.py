r"""The restricted Boltzmann machine: binary visible ``v`` and hidden ``h`` units, connections only between
the two layers (Smolensky 1986; Hinton 2002).

.. math::
    E(v, h) = -v^\top W h - b^\top v - c^\top h, \qquad
    F_\beta(v) = -b^\top v - \frac1\beta \sum_j \operatorname{softplus}\big(\beta\,(c_j + v^\top W_{:j})\big).

The hidden units are conditionally independent given ``v`` (and vice versa), which gives the closed-form
free energy above, two-block Gibbs sampling, an exact :math:`\log Z` by enumerating the smaller layer, and
AIS from a base-rate model (:mod:`pyro_ebm.models.ais`) when both layers are large.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as tf
from torch import nn

from .._validation import check_beta, check_finite, check_positive_int, check_real
from ..energy import Energy, as_energy
from ..gibbs import energy_factor, product_values
from ..mcmc import make_generator, sample as mcmc_sample
from ..partition import LogPartition, log_partition
from ..train import DataOrder, History
from ._common import JointState, check_binary, check_fit_finite, check_state, check_units, checked, joint_batch
from .ais import rbm_ais

__all__ = ["RBM"]

#: largest layer whose 2**n configurations :meth:`RBM.log_partition` enumerates by default
MAX_EXACT_UNITS = 20


class RBM(Energy):
    r"""A restricted Boltzmann machine; calling it gives the free energy :math:`F_\beta(v)` ``[*batch]``.

    :param n_visible: number of visible units.
    :param n_hidden: number of hidden units.
    :param beta: inverse temperature ``> 0`` (the model is :math:`p(v, h) \propto e^{-\beta E(v, h)}`).
    :param init_scale: standard deviation of the initial weights (biases start at 0).
    :param seed: seeds the initial weights.
    :param dtype: of the parameters (default: torch's default dtype).

    Parameters: ``weight`` ``[n_visible, n_hidden]``, ``visible_bias`` ``[n_visible]``, ``hidden_bias``
    ``[n_hidden]``. After :meth:`fit`, ``base_logits`` holds the logits of the training data's smoothed
    marginals, the default base-rate model of AIS.

    Example::

        >>> import torch
        >>> rbm = RBM(6, 3, seed=0)
        >>> v = torch.tensor([[1., 0., 1., 1., 0., 0.]])
        >>> bool(torch.allclose(rbm(v), rbm.free_energy_enumerated(v)))
        True
        >>> rbm.log_partition().method
        'exact'
    """

    def __init__(self, n_visible: int, n_hidden: int, beta: float = 1.0, *, init_scale: float = 0.01,
                 seed: Optional[int] = None, dtype=None):
        nv, nh = check_units(n_visible, "n_visible"), check_units(n_hidden, "n_hidden")
        super().__init__(event_shape=(nv,))
        self.n_visible, self.n_hidden = nv, nh
        self.beta = float(check_beta(beta))
        init_scale = check_real(init_scale, "init_scale", minimum=0.0)
        dtype = dtype or torch.get_default_dtype()
        gen = make_generator(seed, "cpu")
        self.weight = nn.Parameter(torch.randn(nv, nh, generator=gen, dtype=dtype) * float(init_scale))
        self.visible_bias = nn.Parameter(torch.zeros(nv, dtype=dtype))
        self.hidden_bias = nn.Parameter(torch.zeros(nh, dtype=dtype))
        self.register_buffer("base_logits", None)

    # -- energies -----------------------------------------------------------------------------------
    def forward(self, v, x=None):
        if x is not None:
            raise TypeError("RBM takes no conditioning x")
        v = check_state(v, "v", self.event_shape, like=self.weight)
        pre = torch.matmul(v, self.weight) + self.hidden_bias
        out = -(v * self.visible_bias).sum(-1) - tf.softplus(self.beta * pre).sum(-1) / self.beta
        return checked(out, "the RBM's free energy", [("v", v)], self)

    def joint_energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        r""":math:`E(v, h) = -v^\top W h - b^\top v - c^\top h` (``beta = 1``) of ``v`` ``[*batch, n_visible]`` and
        ``h`` ``[*batch', n_hidden]``, broadcasting the batch dims."""
        v = check_state(v, "v", (self.n_visible,), like=self.weight)
        h = check_state(h, "h", (self.n_hidden,), like=self.weight)
        joint_batch(v, h, (self.n_visible,), (self.n_hidden,), names=("v", "h"))
        e = -((v @ self.weight) * h).sum(-1) - (v * self.visible_bias).sum(-1) - (h * self.hidden_bias).sum(-1)
        return checked(e, "the RBM's energy", [("v", v), ("h", h)], self)

    def hidden_free_energy(self, h: torch.Tensor) -> torch.Tensor:
        r"""The free energy of ``h`` over the visible units, :math:`-c^\top h - \frac1\beta\sum_i
        \operatorname{softplus}(\beta(b_i + W_{i:} h))` of ``h`` ``[*batch, n_hidden]``, ``[*batch]``."""
        h = check_state(h, "h", (self.n_hidden,), like=self.weight)
        pre = torch.matmul(h, self.weight.T) + self.visible_bias
        out = -(h * self.hidden_bias).sum(-1) - tf.softplus(self.beta * pre).sum(-1) / self.beta
        return checked(out, "the RBM's hidden free energy", [("h", h)], self)

    def latent_energy(self):
        """:math:`E(v, h)` as a :class:`~pyro_ebm.LatentEnergy` sharing this model's parameters."""
        return as_energy(self.joint_energy, event_shape=(self.n_visible,), latent_shape=(self.n_hidden,))

    def free_energy_enumerated(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`F_\\beta(v)` by brute force over the ``2**n_hidden`` hidden configurations, through
        :func:`pyro_ebm.free_energy` (a check of the closed form; ``n_hidden <= 20``)."""
        from ..inference import free_energy

        v = check_state(v, "v", self.event_shape, like=self.weight)
        check_finite(v.detach(), "v")
        return free_energy(self.latent_energy(), v, self._layer_values(self.n_hidden), beta=self.beta)

    def _layer_values(self, n: int, limit: int = MAX_EXACT_UNITS) -> torch.Tensor:
        if n > limit:
            raise ValueError(f"a layer of {n} units has 2**{n} configurations, too many to enumerate "
                             f"(at most {limit} units); use method='ais'")
        w = self.weight
        return product_values(torch.tensor([0.0, 1.0], dtype=w.dtype, device=w.device), n)

    # -- conditionals and Gibbs ---------------------------------------------------------------------
    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`P(h_j = 1 \mid v) = \sigma(\beta (c_j + v^\top W_{:j}))` for ``v`` ``[*batch, n_visible]``,
        ``[*batch, n_hidden]``."""
        v = check_state(v, "v", self.event_shape, like=self.weight)
        check_finite(v.detach(), "v")
        return torch.sigmoid(self.beta * (torch.matmul(v, self.weight) + self.hidden_bias))

    def visible_probs(self, h: torch.Tensor) -> torch.Tensor:
        r""":math:`P(v_i = 1 \mid h) = \sigma(\beta (b_i + W_{i:} h))` for ``h`` ``[*batch, n_hidden]``,
        ``[*batch, n_visible]``."""
        h = check_state(h, "h", (self.n_hidden,), like=self.weight)
        check_finite(h.detach(), "h")
        return torch.sigmoid(self.beta * (torch.matmul(h, self.weight.T) + self.visible_bias))

    def joint_state(self) -> JointState:
        """The energy of the stacked state ``s = [v, h]`` with the two Gibbs blocks ``[visible, hidden]``,
        for :func:`pyro_ebm.mcmc.sample` (``kernel="gibbs"``, ``beta=rbm.beta``)."""
        nv, nh = self.n_visible, self.n_hidden

        def energy(s):
            return self.joint_energy(s[..., :nv], s[..., nv:])

        def logits(s, block):
            if int(block[0]) < nv:  # the visible block
                return s[..., nv:] @ self.weight.T + self.visible_bias
            return s[..., :nv] @ self.weight + self.hidden_bias

        return JointState(self, nv + nh, energy, logits, [torch.arange(nv), torch.arange(nv, nv + nh)])

    def sample(self, num_samples: int, *, num_sweeps: int = 1000, init=None, seed=None,
               return_hidden: bool = False) -> torch.Tensor:
        """Draws of :math:`p(v)`: ``num_samples`` independent block-Gibbs chains run ``num_sweeps`` sweeps
        by :func:`pyro_ebm.mcmc.sample`; returns their final visible states ``[num_samples, n_visible]``
        (with ``return_hidden``, the stacked ``[v, h]``).

        :param init: ``[num_samples, n_visible]`` binary starting visible states (default: Bernoulli of
            the base rates after :meth:`fit`, else of 0.5).
        :param seed: int or ``torch.Generator``.
        """
        num_samples = check_positive_int(num_samples, "num_samples")
        num_sweeps = check_positive_int(num_sweeps, "num_sweeps")
        w = self.weight
        gen = make_generator(seed, w.device)
        if init is None:
            p = torch.full((self.n_visible,), 0.5, dtype=w.dtype, device=w.device)
            if self.base_logits is not None:
                p = torch.sigmoid(self.base_logits)
            v0 = torch.bernoulli(p.expand(num_samples, -1), generator=gen)
        else:
            v0 = check_binary(init, "init", self.n_visible, min_dim=2, like=w)
            if v0.dim() != 2 or v0.shape[0] != num_samples:
                raise ValueError(f"init must have shape [num_samples={num_samples}, {self.n_visible}], "
                                 f"got {tuple(v0.shape)}")
        with torch.no_grad():
            h0 = torch.bernoulli(self.hidden_probs(v0), generator=gen)
            s = mcmc_sample(self.joint_state(), torch.cat([v0, h0], 1), num_sweeps - 1, 1, kernel="gibbs",
                            beta=self.beta, seed=gen, progress=False)
        out = s.draws[:, -1]
        return out if return_hidden else out[:, : self.n_visible]

    def reconstruct(self, v) -> torch.Tensor:
        """Mean-field reconstruction :math:`P(v' = 1 \\mid h = E[h \\mid v])`, ``[*batch, n_visible]``."""
        v = check_binary(v, "v", self.n_visible, like=self.weight)
        with torch.no_grad():
            return self.visible_probs(self.hidden_probs(v))

    # -- normalizer and likelihood ------------------------------------------------------------------
    def log_partition(self, method: str = "exact", **options) -> LogPartition:
        r""":math:`\log Z_\beta = \log \sum_{v, h} e^{-\beta E(v, h)}` as a
        :class:`~pyro_ebm.partition.LogPartition`.

        * ``"exact"`` -- enumerates the smaller layer (at most ``max_units``, default 20 units) with
          :func:`pyro_ebm.partition.log_partition`: the visible free energy over all ``v``, or the hidden
          free energy over all ``h``. Options: ``max_units``, ``chunk_size``.
        * ``"ais"`` -- annealed importance sampling from the base-rate model (Salakhutdinov & Murray
          2008), see :func:`pyro_ebm.models.ais.rbm_ais`; options ``num_particles`` (100),
          ``num_temperatures`` (14500), ``schedule``, ``base_logits`` (default: this model's
          ``base_logits`` from :meth:`fit`, else its visible biases) and ``seed``.
        """
        if method == "exact":
            max_units = options.pop("max_units", MAX_EXACT_UNITS)
            unknown = sorted(set(options) - {"chunk_size"})
            if unknown:
                raise TypeError(f"unknown option(s) {unknown} for method='exact'; expected max_units, chunk_size")
            with torch.no_grad():
                if self.n_hidden < self.n_visible:
                    hidden = as_energy(self.hidden_free_energy, event_shape=(self.n_hidden,))
                    values = self._layer_values(self.n_hidden, max_units)
                    return log_partition(hidden, self.beta, "exact", values=values, **options)
                values = self._layer_values(self.n_visible, max_units)
                return log_partition(self, self.beta, "exact", values=values, **options)
        if method == "ais":
            unknown = sorted(set(options) - {"num_particles", "num_temperatures", "schedule", "base_logits", "seed"})
            if unknown:
                raise TypeError(f"unknown option(s) {unknown} for method='ais'; expected num_particles, "
                                "num_temperatures, schedule, base_logits, seed")
            base = options.pop("base_logits", None)
            if base is None:
                base = self.base_logits if self.base_logits is not None else self.beta * self.visible_bias
            b = self.beta
            return rbm_ais(b * self.weight, b * self.visible_bias, b * self.hidden_bias, base_logits=base, **options)
        raise ValueError(f"method must be 'exact' or 'ais', got {method!r}")

    def log_likelihood(self, v, log_z=None) -> torch.Tensor:
        r""":math:`\log p(v) = -\beta F_\beta(v) - \log Z_\beta` per row of ``v`` ``[*batch, n_visible]``.

        :param log_z: a number, tensor or :class:`~pyro_ebm.partition.LogPartition`; default the exact one.
        """
        from ..partition import log_likelihood

        v = check_binary(v, "v", self.n_visible, like=self.weight)
        if log_z is None:
            log_z = self.log_partition("exact")
        return log_likelihood(self, v, log_z, beta=self.beta)

    # -- learning -----------------------------------------------------------------------------------
    def fit(self, data, *, epochs: int = 10, batch_size: int = 20, lr: float = 0.05, k: int = 1,
            persistent: bool = True, seed: Optional[int] = 0, callbacks: Iterable = (),
            progress: bool = False) -> History:
        r"""Maximum-likelihood training by CD-k or persistent CD (Hinton 2002; Tieleman 2008).

        Each minibatch ``v`` of ``batch_size`` rows (a fresh permutation per epoch, the last partial batch
        dropped, as :class:`pyro_ebm.train.DataOrder` does) takes one gradient step on the mean negative
        log-likelihood with the negative phase estimated by ``k`` block-Gibbs sweeps:

        .. math::
            W \mathrel{+}= \eta\,\beta\,\big(\overline{v\,P(h{=}1 \mid v)^\top} - \overline{\hat v\,P(h{=}1 \mid
            \hat v)^\top}\big),\quad b \mathrel{+}= \eta\,\beta\,(\bar v - \bar{\hat v}),\quad
            c \mathrel{+}= \eta\,\beta\,(\overline{P(h \mid v)} - \overline{P(h \mid \hat v)}),

        i.e. plain SGD on :func:`pyro_ebm.losses.ml_sampled` ``= mean F(v) - mean F(v_hat)`` (times
        :math:`\beta`) -- the update :func:`pyro_ebm.train.fit` would make with ``torch.optim.SGD`` and these
        negatives, written out so that a minibatch costs a handful of matrix products and no autograd.
        With ``persistent=True`` the negative chains (one per row of the minibatch, as in scikit-learn's
        ``BernoulliRBM``) continue from one minibatch to the next; otherwise each starts at the data (CD-k).

        :param data: ``[N, n_visible]`` of 0s and 1s (a tensor or an array).
        :param epochs: passes over the data.
        :param batch_size: rows per step (``<= N``).
        :param lr: learning rate ``eta > 0``.
        :param k: Gibbs sweeps per step.
        :param persistent: PCD (default) or CD-k.
        :param seed: seeds the data order and the Gibbs draws.
        :param callbacks: ``callback(epoch, history)`` after every epoch; returning ``True`` stops.
        :param progress: show a progress bar over epochs.
        :returns: :class:`~pyro_ebm.train.History`, one record per epoch: ``epoch``, ``reconstruction``
            (mean squared error of the mean-field reconstruction on up to 256 training rows) and ``gap``
            (mean free energy of the chains' visible states minus that of those rows).
        """
        w = self.weight
        data = check_binary(data, "data", self.n_visible, min_dim=2, like=w)
        if data.dim() != 2 or data.shape[0] == 0:
            raise ValueError(f"data must have shape [N, {self.n_visible}] with N >= 1, got {tuple(data.shape)}")
        epochs = check_positive_int(epochs, "epochs")
        k = check_positive_int(k, "k")
        lr = check_real(lr, "lr", minimum=0.0, strict=True)
        order = DataOrder(data.shape[0], check_positive_int(batch_size, "batch_size"), seed=seed)
        gen = make_generator(seed, w.device)
        callbacks = list(callbacks)
        n, B = data.shape[0], order.batch_size
        with torch.no_grad():
            p = (data.sum(0) + 1.0) / (n + 2.0)  # smoothed marginals: the base-rate model of AIS
            self.base_logits = torch.log(p) - torch.log1p(-p)
        monitor = data[:256]
        W, b, c, beta = w.data, self.visible_bias.data, self.hidden_bias.data, self.beta
        step = float(lr) * beta / B
        # preallocated minibatch buffers
        v_pos = torch.empty(B, self.n_visible, dtype=w.dtype, device=w.device)
        h_pos = torch.empty(B, self.n_hidden, dtype=w.dtype, device=w.device)
        v_neg = torch.empty_like(v_pos)
        h_neg = torch.empty_like(h_pos)
        u_v, u_h = torch.empty_like(v_pos), torch.empty_like(h_pos)  # uniforms for the Bernoulli draws
        chain = torch.zeros_like(h_pos)  # hidden states of the persistent chains (scikit-learn starts at 0)
        history = History()
        from tqdm.auto import tqdm

        bar = tqdm(range(1, epochs + 1), disable=not progress, desc="RBM.fit")
        with torch.no_grad():
            for epoch in bar:
                for _ in range(n // B):
                    torch.index_select(data, 0, order.next().to(data.device), out=v_pos)
                    _probs(torch.addmm(c, v_pos, W, out=h_pos), beta)
                    if not persistent:
                        _bernoulli(h_pos, u_h, gen, out=chain)
                    for _ in range(k):
                        _probs(torch.addmm(b, chain, W.T, out=v_neg), beta)
                        _bernoulli(v_neg, u_v, gen, out=v_neg)
                        _probs(torch.addmm(c, v_neg, W, out=h_neg), beta)
                        _bernoulli(h_neg, u_h, gen, out=chain)
                    _sgd_update(W, b, c, v_pos, h_pos, v_neg, h_neg, step)
                check_fit_finite(self, "RBM.fit", lr, epoch)
                recon = ((self.reconstruct(monitor) - monitor) ** 2).mean()
                gap = self(v_neg).mean() - self(monitor).mean()
                history.append({"epoch": epoch, "reconstruction": float(recon), "gap": float(gap)})
                if any([bool(cb(epoch, history)) for cb in callbacks]):
                    break
        bar.close()
        return history

    # -- scikit-learn -------------------------------------------------------------------------------
    @classmethod
    def from_sklearn(cls, estimator, beta: float = 1.0, dtype=torch.float64) -> "RBM":
        """The RBM of a fitted ``sklearn.neural_network.BernoulliRBM``: the same distribution
        :math:`e^{-\\beta E}` (its parameters divided by ``beta``)."""
        comps = getattr(estimator, "components_", None)
        if comps is None or not hasattr(estimator, "intercept_visible_"):
            raise TypeError("estimator must be a fitted sklearn BernoulliRBM (with components_, "
                            f"intercept_hidden_, intercept_visible_), got {type(estimator).__name__}")
        beta = float(check_beta(beta))
        nh, nv = comps.shape
        rbm = cls(nv, nh, beta=beta, dtype=dtype)
        with torch.no_grad():
            rbm.weight.copy_(torch.as_tensor(comps.T) / beta)
            rbm.visible_bias.copy_(torch.as_tensor(estimator.intercept_visible_) / beta)
            rbm.hidden_bias.copy_(torch.as_tensor(estimator.intercept_hidden_) / beta)
        return rbm

    def to_sklearn(self, **params):
        """A fitted ``sklearn.neural_network.BernoulliRBM`` with the same distribution (the parameters times
        ``beta``); ``params`` go to its constructor (``batch_size``, ``learning_rate``, ``random_state``...).
        Its persistent chains ``h_samples_`` start at zero, as after scikit-learn's own initialisation."""
        from sklearn.neural_network import BernoulliRBM

        est = BernoulliRBM(n_components=self.n_hidden, **params)
        b = self.beta
        est.components_ = (b * self.weight.detach().T).cpu().double().numpy().copy()
        est.intercept_hidden_ = (b * self.hidden_bias.detach()).cpu().double().numpy().copy()
        est.intercept_visible_ = (b * self.visible_bias.detach()).cpu().double().numpy().copy()
        est.h_samples_ = torch.zeros(est.batch_size, self.n_hidden, dtype=torch.float64).numpy()
        est.n_features_in_ = self.n_visible
        return est

    # -- Pyro ---------------------------------------------------------------------------------------
    def pyro_model(self, v):
        r"""The RBM as a Pyro program over the rows of ``v`` ``[N, n_visible]``, hidden units enumerated.

        Inside a plate over the rows, ``energy_factor`` adds :math:`e^{\beta b^\top v}`; inside a plate over
        the hidden units each :math:`h_j` is an enumerated Bernoulli site (with a ``log 2`` factor undoing
        its uniform prior: the sum over ``h`` is a plain sum) and ``energy_factor`` adds
        :math:`e^{\beta h_j (c_j + v^\top W_{:j})}`. Pyro's ``TraceEnum_ELBO(max_plate_nesting=2)`` sums the
        hidden units out exactly, unit by unit, so its loss equals ``beta * F(v).sum()``; ``infer_discrete``
        draws ``h`` from :math:`P(h \mid v)`.
        """
        v = check_binary(v, "v", self.n_visible, min_dim=2, like=self.weight)
        if v.dim() != 2:
            raise ValueError(f"v must have shape [N, {self.n_visible}], got {tuple(v.shape)}")
        N, nh = v.shape[0], self.n_hidden

        def model():
            with pyro.plate("data", N, dim=-2):
                energy_factor("visible", -(v @ self.visible_bias).unsqueeze(-1), self.beta)
                with pyro.plate("hidden", nh, dim=-1):
                    half = torch.full((), 0.5, dtype=v.dtype, device=v.device)
                    h = pyro.sample("h", dist.Bernoulli(half), infer={"enumerate": "parallel"})
                    pyro.factor("counting_measure", torch.full((N, nh), math.log(2.0), dtype=v.dtype, device=v.device))
                    energy_factor("interaction", -h * (v @ self.weight + self.hidden_bias), self.beta)
            return h

        return model


def _probs(pre: torch.Tensor, beta: float) -> torch.Tensor:
    """In place: ``pre <- sigmoid(beta * pre)``."""
    if beta != 1.0:
        pre.mul_(beta)
    return pre.sigmoid_()


def _bernoulli(p: torch.Tensor, u: torch.Tensor, gen: torch.Generator, out: torch.Tensor) -> torch.Tensor:
    """``out <- 1[u < p]`` with fresh uniforms ``u`` (about twice as fast as ``torch.bernoulli`` on a CPU);
    ``out`` may be ``p``."""
    torch.rand(u.shape, generator=gen, dtype=u.dtype, device=u.device, out=u)
    return torch.lt(u, p, out=out)


def _sgd_update(W, b, c, v_pos, h_pos, v_neg, h_neg, step: float) -> None:
    """In place: the CD/PCD step of :meth:`RBM.fit` (``step = lr * beta / batch``)."""
    W.addmm_(v_pos.T, h_pos, alpha=step).addmm_(v_neg.T, h_neg, alpha=-step)
    b.add_(v_pos.sum(0) - v_neg.sum(0), alpha=step)
    c.add_(h_pos.sum(0) - h_neg.sum(0), alpha=step)
