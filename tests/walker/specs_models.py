"""Valid calls of ``pyro_ebm.models`` and ``pyro_ebm.structured`` for the walker."""

from __future__ import annotations

import math

import torch
from torch import nn

import pyro_ebm.models as M
import pyro_ebm.structured as S

from . import Exempt, call, spec  # noqa: F401

# --------------------------------------------------------------------------------------------- reasons

EMPTY = "an empty batch gives an empty result"
X_INT = "x is the predictor's input: integer conditioning (class labels) is valid"
X_DIM = "x has no fixed event shape: [..., 1] is a larger batch of conditions, over which the energy broadcasts"
Z_DIM = "z [2, 1, 1] is a batch (2, 1) of latents of shape (1,), which broadcasts with y's batch"
INT_BINARY = "integer 0/1 (or +-1) units are converted to the model's floating dtype"
INT_PARAM = "integer parameter values are converted to the model's floating dtype"
SEED = "any non-negative integer is a valid seed"
BETA_INF = "beta = inf is the zero-temperature limit (a minimum), defined here"
NEG_REAL = "any real number is valid here"


def _t(*rows):
    return torch.tensor(rows if len(rows) > 1 else rows[0], dtype=torch.get_default_dtype())


# --------------------------------------------------------------------------------------------- Hopfield

def _spins():
    return _t([1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0])


def _hop_weight():
    y = _spins()
    w = y.T @ y / 4
    w.fill_diagonal_(0.0)
    return w


def _hop():
    return M.Hopfield(4).store(_spins())


# --------------------------------------------------------------------------------------------- Boltzmann machines

def _bits():
    return _t([1.0, 0.0, 1.0], [0.0, 1.0, 1.0])


def _bm():
    return M.BoltzmannMachine(3, 2, seed=0)


def _sym(n, value=0.1):
    w = torch.full((n, n), value)
    w.fill_diagonal_(0.0)
    return w


def _vbits():
    return _t([1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0])


def _hbits():
    return _t([1.0, 0.0, 1.0], [0.0, 1.0, 1.0])


def _rbm():
    return M.RBM(4, 3, seed=0, init_scale=0.1)


def _rbm_data():
    return torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])


# --------------------------------------------------------------------------------------------- regularized models

def _Y():
    return _t([0.0, 0.0, 0.1], [1.0, 1.1, 0.9], [2.0, 2.0, 2.1], [3.0, 3.1, 2.9], [0.5, 0.4, 0.6])


def _y3():
    return _t([0.5, 0.5, 0.4], [1.0, 0.0, 2.0])


def _pca():
    return M.PCA(2).fit(_Y())


def _km():
    return M.KMeans(2, n_init=1, max_iter=5, seed=0).fit(_Y())


def _gm():
    return M.GaussianMixture(_t([0.5, 0.5]), _t([0.0, 0.0], [1.0, 1.0]), torch.eye(2).repeat(2, 1, 1))


def _y2():
    return _t([0.5, 0.5], [1.0, -1.0])


def _onehot2():
    return _t([1.0, 0.0], [0.0, 1.0])


def _dict():
    return _t([1.0, 0.0, 0.0], [0.0, 0.6, 0.8])


def _sc():
    return M.SparseCoding(_dict(), lam=0.1)


def _z2():
    return _t([0.1, 0.0], [0.0, 0.3])


def _enc():
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def _sae():
    return M.SparseAutoEncoder(_dict(), _enc(), lam=0.1, alpha=1.0)


def _lista():
    return M.LISTA(_sc(), n_layers=2)


# --------------------------------------------------------------------------------------------- latent models

def _circle(h, z):
    r = 1.0 if h is None else h
    return r * torch.cat([torch.cos(z), torch.sin(z)], -1)


def _cost(y_hat, y):
    return ((y_hat - y) ** 2).sum(-1)


def _reg(z):
    return 0.01 * (z**2).sum(-1)


def _pred(x):
    return 2.0 * x


def _grid():
    return torch.linspace(0.0, 2 * math.pi, 9)[:-1].unsqueeze(-1)


def _lg(**kw):
    kw = {"z_values": _grid(), **kw}
    return M.LatentGenerativeEBM(_circle, event_shape=(2,), latent_shape=(1,), predictor=_pred, cost=_cost,
                                 regularizer=_reg, **kw)


def _lg_y():
    return _t([0.0, 1.5], [1.0, 1.0])


def _lg_x():
    return _t([0.5], [0.7])


def _lg_build(decoder, *, event_shape, latent_shape, predictor, cost, regularizer, z_values, z_measure, z_init,
              refine_steps):
    """The constructor, then one free energy: the callables it stores are only called when the model is
    used, so their mutations are checked there (a NaN or misshapen output must be blamed on them)."""
    m = M.LatentGenerativeEBM(decoder, event_shape=event_shape, latent_shape=latent_shape, predictor=predictor,
                              cost=cost, regularizer=regularizer, z_values=z_values, z_measure=z_measure,
                              z_init=z_init, refine_steps=refine_steps)
    m.free_energy(_lg_y(), _lg_x(), beta=1.0)
    return m


def _quad_energy(y):
    return ((y - 0.5) ** 2).sum(-1)


def _dae():
    torch.manual_seed(0)
    return M.DenoisingAutoEncoder(nn.Linear(2, 2), 2)


def _tanh_enc():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 3), nn.Tanh())


def _flow():
    torch.manual_seed(0)
    return M.CouplingFlow(2, n_layers=2, hidden=4)


def _vae_parts():
    torch.manual_seed(0)
    return nn.Linear(2, 2), nn.Linear(2, 4)


def _vae():
    dec, enc = _vae_parts()
    return M.VAEEnergy(dec, enc, dim=2, latent_dim=2, sigma=0.5)


def _z1():
    return _t([[0.1], [-0.2]])


def _codebook():
    return _t([0.0, 0.0], [2.0, 0.0], [0.0, 2.0])


def _vq():
    torch.manual_seed(0)
    return M.VectorQuantizer(_codebook(), encoder=nn.Linear(2, 2), decoder=nn.Linear(2, 2), dim=2)


def _onehot3():
    return _t([1.0, 0.0, 0.0], [0.0, 0.0, 1.0])


# --------------------------------------------------------------------------------------------- structured

def _unary():
    return _t([[0.0, 1.0], [1.0, 0.0], [0.5, 0.2]]).unsqueeze(0)  # [B=1, T=3, K=2]


def _pairwise():
    return _t([0.0, 2.0], [2.0, 0.0])


def _ends():
    return _t([0.0, 0.5])


def _lengths():
    return torch.tensor([3])


def _chain_kw(**kw):
    return {"initial": _ends(), "final": _ends(), "lengths": _lengths(), **kw}


def _semi_x():
    return _t([1.0, 2.0, math.inf])  # +inf is the semiring's zero (no path)


def _semi_cols():
    return _t([1.0, math.inf], [2.0, math.inf], [math.inf, math.inf])  # the second column has no path


def _semi_m():
    return _t([0.0, 1.0], [math.inf, 0.0])


def _lcg():
    return S.LinearChainGibbs(_unary(), _pairwise(), 1.0, _ends(), _ends(), max_support=100)


def _forbidding():
    return _t([0.0, 2.0], [math.inf, 0.0])  # the transition 1 -> 0 is forbidden


def _cost_mat():
    return _t([0.0, 1.0, 2.0, 1.0], [1.0, 0.0, 1.0, 2.0], [2.0, 1.0, 0.0, 1.0]).unsqueeze(0)  # [1, 3, 4]


def _dtw_lengths():
    return (torch.tensor([3]), torch.tensor([4]))


def _line(labels, energy):
    g = S.Graph()
    nodes = [g.add_node(start=k == 0, accept=k == len(labels)) for k in range(len(labels) + 1)]
    for k, lab in enumerate(labels):
        g.add_arc(nodes[k], nodes[k + 1], lab, energy=energy)
    return g


def _full():
    g = S.Graph()
    a, b, c = g.add_node(start=True), g.add_node(), g.add_node(accept=True)
    for lab, e in ((1, 0.5), (2, 1.0)):
        g.add_arc(a, b, lab, energy=e)
        g.add_arc(b, c, lab, energy=e)
    return g


def _target():
    return S.intersect(_full(), _line([1, 2], 0.0))


def _wrong():
    return S.intersect(_full(), _line([2, 2], 0.0))


def _spell():
    g = S.Graph()
    a, b = g.add_node(start=True), g.add_node(accept=True)
    g.add_arc(a, b, 1, 2, energy=0.5)
    g.add_arc(a, b, 2, 1, energy=0.25)
    return g


def _graph2():
    g = S.Graph()
    g.add_node(start=True)
    g.add_node(accept=True)
    return g


# --------------------------------------------------------------------------------------------- the specs

_M = "pyro_ebm.models."
_S = "pyro_ebm.structured."

SPECS = {
    # ---- Hopfield
    _M + "Hopfield": spec(lambda: call(M.Hopfield, 4, _hop_weight()), accepts={"weight:int-dtype": INT_PARAM}),
    _M + "Hopfield.forward": spec(lambda: call(_hop().forward, _spins()),
                                  accepts={"y:int-dtype": INT_BINARY, "y:empty": EMPTY}),
    _M + "Hopfield.set_weight": spec(lambda: call(_hop().set_weight, _hop_weight()),
                                     accepts={"weight:int-dtype": INT_PARAM}),
    _M + "Hopfield.store": spec(lambda: call(_hop().store, _spins()),
                                accepts={"patterns:int-dtype": INT_BINARY,
                                         "patterns:empty": "storing no patterns leaves the weights as they are"}),
    _M + "Hopfield.recall": spec(lambda: call(_hop().recall, _spins(), mode="async", max_sweeps=3, seed=0),
                                 accepts={"y:int-dtype": INT_BINARY, "y:empty": EMPTY, "seed:huge": SEED}),
    _M + "Hopfield.overlap": spec(lambda: call(_hop().overlap, _spins(), _spins()),
                                  accepts={"y:int-dtype": INT_BINARY, "y:empty": EMPTY,
                                           "patterns:int-dtype": INT_BINARY,
                                           "patterns:empty": "no patterns: an empty overlap per state"}),
    _M + "Recall": Exempt("a result record (NamedTuple) that Hopfield.recall fills from checked values"),
    # ---- BoltzmannMachine
    _M + "BoltzmannMachine": spec(lambda: call(M.BoltzmannMachine, 3, 2, 1.0, init_scale=0.1, seed=0),
                                  accepts={"seed:huge": SEED}),
    _M + "BoltzmannMachine.set_weights": spec(
        lambda: call(_bm().set_weights, w_yy=_sym(3), w_zz=_sym(2), w_yz=torch.full((3, 2), 0.2),
                     bias_y=_t([0.1, -0.1, 0.0]), bias_z=_t([0.2, 0.0])),
        accepts={f"{a}:int-dtype": INT_PARAM for a in ("w_yy", "w_zz", "w_yz", "bias_y", "bias_z")}),
    _M + "BoltzmannMachine.full_weight": spec(lambda: call(_bm().full_weight)),
    _M + "BoltzmannMachine.full_bias": spec(lambda: call(_bm().full_bias)),
    _M + "BoltzmannMachine.joint_energy": spec(lambda: call(_bm().joint_energy, _bits(), _t([1.0, 0.0], [1.0, 1.0])),
                                               accepts={"y:int-dtype": INT_BINARY, "z:int-dtype": INT_BINARY}),
    _M + "BoltzmannMachine.latent_energy": spec(lambda: call(_bm().latent_energy)),
    _M + "BoltzmannMachine.hidden_values": spec(lambda: call(_bm().hidden_values)),
    _M + "BoltzmannMachine.forward": spec(lambda: call(_bm().forward, _bits()),
                                          accepts={"y:int-dtype": INT_BINARY, "y:empty": EMPTY}),
    _M + "BoltzmannMachine.joint_state": spec(lambda: call(_bm().joint_state)),
    _M + "BoltzmannMachine.sample": spec(
        lambda: call(_bm().sample, 2, num_sweeps=2, init=_t([1.0, 0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0, 1.0]),
                     seed=0),
        accepts={"init:int-dtype": INT_BINARY, "seed:huge": SEED}),
    _M + "BoltzmannMachine.clamped_hidden": spec(lambda: call(_bm().clamped_hidden, _bits(), num_sweeps=2, seed=0),
                                                 accepts={"y:int-dtype": INT_BINARY, "y:empty": EMPTY,
                                                          "seed:huge": SEED}),
    _M + "BoltzmannMachine.fit": spec(
        lambda: call(_bm().fit, _bits(), epochs=1, batch_size=2, lr=0.05, num_sweeps=1, num_chains=2, seed=0),
        accepts={"data:int-dtype": INT_BINARY, "seed:huge": SEED}),
    _M + "BoltzmannMachine.log_partition": spec(lambda: call(_bm().log_partition)),
    _M + "BoltzmannMachine.exact_nll": spec(lambda: call(_bm().exact_nll, _bits()),
                                            accepts={"y:int-dtype": INT_BINARY}),
    _M + "BoltzmannMachine.pyro_model": spec(lambda: call(_bm().pyro_model, _bits()),
                                             accepts={"y:int-dtype": INT_BINARY}),
    # ---- RBM
    _M + "RBM": spec(lambda: call(M.RBM, 4, 3, 1.0, init_scale=0.01, seed=0), accepts={"seed:huge": SEED}),
    _M + "RBM.forward": spec(lambda: call(_rbm().forward, _vbits()),
                             accepts={"v:int-dtype": INT_BINARY, "v:empty": EMPTY}),
    _M + "RBM.joint_energy": spec(lambda: call(_rbm().joint_energy, _vbits(), _hbits()),
                                  accepts={"v:int-dtype": INT_BINARY, "h:int-dtype": INT_BINARY}),
    _M + "RBM.hidden_free_energy": spec(lambda: call(_rbm().hidden_free_energy, _hbits()),
                                        accepts={"h:int-dtype": INT_BINARY, "h:empty": EMPTY}),
    _M + "RBM.latent_energy": spec(lambda: call(_rbm().latent_energy)),
    _M + "RBM.free_energy_enumerated": spec(lambda: call(_rbm().free_energy_enumerated, _vbits()),
                                            accepts={"v:int-dtype": INT_BINARY, "v:empty": EMPTY}),
    _M + "RBM.hidden_probs": spec(lambda: call(_rbm().hidden_probs, _vbits()),
                                  accepts={"v:int-dtype": INT_BINARY, "v:empty": EMPTY}),
    _M + "RBM.visible_probs": spec(lambda: call(_rbm().visible_probs, _hbits()),
                                   accepts={"h:int-dtype": INT_BINARY, "h:empty": EMPTY}),
    _M + "RBM.joint_state": spec(lambda: call(_rbm().joint_state)),
    _M + "RBM.sample": spec(lambda: call(_rbm().sample, 2, num_sweeps=2, init=_vbits(), seed=0),
                            accepts={"init:int-dtype": INT_BINARY, "seed:huge": SEED}),
    _M + "RBM.reconstruct": spec(lambda: call(_rbm().reconstruct, _vbits()),
                                 accepts={"v:int-dtype": INT_BINARY, "v:empty": EMPTY}),
    _M + "RBM.log_partition": spec(lambda: call(_rbm().log_partition, "exact")),
    _M + "RBM.log_likelihood": spec(lambda: call(_rbm().log_likelihood, _vbits(), log_z=5.0),
                                    accepts={"v:int-dtype": INT_BINARY, "v:empty": EMPTY,
                                             "log_z:negative": "log Z may be any real number"}),
    _M + "RBM.fit": spec(
        lambda: call(_rbm().fit, _rbm_data(), epochs=1, batch_size=2, lr=0.05, k=1, persistent=True, seed=0,
                     callbacks=(), progress=False),
        accepts={"data:int-dtype": INT_BINARY, "seed:huge": SEED}),
    _M + "RBM.to_sklearn": spec(lambda: call(_rbm().to_sklearn)),
    _M + "RBM.pyro_model": spec(lambda: call(_rbm().pyro_model, _vbits()),
                                accepts={"v:int-dtype": INT_BINARY,
                                         "v:empty": "a model over no rows (a plate of size 0)"}),
    _M + "rbm_ais": spec(
        lambda: call(M.rbm_ais, torch.full((4, 3), 0.1), _t([0.1, 0.0, -0.1, 0.2]), _t([0.0, 0.1, 0.2]),
                     base_logits=_t([0.0, 0.1, 0.0, -0.1]), num_particles=4, num_temperatures=5,
                     schedule=None, seed=0),
        accepts={"seed:huge": SEED, "weight:int-dtype": INT_PARAM, "visible_bias:int-dtype": INT_PARAM,
                 "hidden_bias:int-dtype": INT_PARAM, "base_logits:int-dtype": INT_PARAM}),
    # ---- PCA, KMeans, GaussianMixture
    _M + "PCA": spec(lambda: call(M.PCA, 2)),
    _M + "PCA.set_params": spec(lambda: call(M.PCA(2).set_params, _dict(), _t([0.0, 1.0, 0.5])),
                                accepts={"mean:int-dtype": INT_PARAM}),
    _M + "PCA.fit": spec(lambda: call(M.PCA(2).fit, _Y()), accepts={"Y:int-dtype": "integer data are converted"}),
    _M + "PCA.forward": spec(lambda: call(_pca().forward, _y3(), _z2())),
    _M + "PCA.infer": spec(lambda: call(_pca().infer, _y3()), accepts={"y:empty": EMPTY}),
    _M + "PCA.free_energy": spec(lambda: call(_pca().free_energy, _y3(), beta=1.0),
                                 accepts={"y:empty": EMPTY, "beta:inf": BETA_INF}),
    _M + "PCA.reconstruct": spec(lambda: call(_pca().reconstruct, _y3()), accepts={"y:empty": EMPTY}),
    _M + "KMeans": spec(lambda: call(M.KMeans, 2, n_init=1, max_iter=5, seed=0), accepts={"seed:huge": SEED}),
    _M + "KMeans.set_centers": spec(lambda: call(M.KMeans(2).set_centers, _t([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]))),
    _M + "KMeans.fit": spec(lambda: call(M.KMeans(2, n_init=1, max_iter=5, seed=0).fit, _Y()),
                            accepts={"Y:int-dtype": "integer data are converted"}),
    _M + "KMeans.forward": spec(lambda: call(_km().forward, _y3(), _onehot2())),
    _M + "KMeans.predict": spec(lambda: call(_km().predict, _y3()), accepts={"y:empty": EMPTY}),
    _M + "GaussianMixture": spec(lambda: call(M.GaussianMixture, _t([0.5, 0.5]), _t([0.0, 0.0], [1.0, 1.0]),
                                              torch.eye(2).repeat(2, 1, 1)),
                                 accepts={"covariances:int-dtype": INT_PARAM}),
    _M + "GaussianMixture.log_joint": spec(lambda: call(_gm().log_joint, _y2()), accepts={"y:empty": EMPTY}),
    _M + "GaussianMixture.forward": spec(lambda: call(_gm().forward, _y2(), _onehot2())),
    # ---- sparse models
    _M + "SparseCoding": spec(lambda: call(M.SparseCoding, _dict(), lam=0.1)),
    _M + "SparseCoding.forward": spec(lambda: call(_sc().forward, _y3(), _z2())),
    _M + "SparseCoding.lipschitz": spec(lambda: call(_sc().lipschitz)),
    _M + "SparseCoding.infer": spec(lambda: call(_sc().infer, _y3(), "fista", steps=5, tol=1e-8, z_init=_z2())),
    _M + "SparseCoding.free_energy": spec(lambda: call(_sc().free_energy, _y3(), 1.0, num_samples=8, seed=0),
                                          accepts={"y:empty": EMPTY, "beta:inf": BETA_INF, "seed:huge": SEED}),
    _M + "SparseCoding.fit": spec(lambda: call(_sc().fit, _Y(), n_iter=1, infer_steps=5),
                                  accepts={"Y:int-dtype": "integer data are converted"}),
    _M + "SparseAutoEncoder": spec(lambda: call(M.SparseAutoEncoder, _dict(), _enc(), lam=0.1, alpha=1.0)),
    _M + "SparseAutoEncoder.predict": spec(lambda: call(_sae().predict, _y3()), accepts={"y:empty": EMPTY}),
    _M + "SparseAutoEncoder.forward": spec(lambda: call(_sae().forward, _y3(), _z2())),
    _M + "SparseAutoEncoder.augmented_dictionary": spec(lambda: call(_sae().augmented_dictionary)),
    _M + "SparseAutoEncoder.augmented_input": spec(lambda: call(_sae().augmented_input, _y3()),
                                                   accepts={"y:empty": EMPTY}),
    _M + "SparseAutoEncoder.infer": spec(lambda: call(_sae().infer, _y3(), "ista", steps=5, tol=1e-8, z_init=_z2())),
    _M + "SparseAutoEncoder.free_energy": spec(lambda: call(_sae().free_energy, _y3(), 1.0, num_samples=8, seed=0),
                                               accepts={"y:empty": EMPTY, "beta:inf": BETA_INF, "seed:huge": SEED}),
    _M + "SparseAutoEncoder.fit": spec(
        lambda: call(_sae().fit, _Y(), epochs=1, lr=0.01, batch_size=2, seed=0, infer_steps=5, learn_dictionary=True),
        accepts={"Y:int-dtype": "integer data are converted", "seed:huge": SEED}),
    _M + "LISTA": spec(lambda: call(M.LISTA, _sc(), n_layers=2)),
    _M + "LISTA.forward": spec(lambda: call(_lista().forward, _y3()), accepts={"y:empty": EMPTY}),
    _M + "LISTA.fit": spec(lambda: call(_lista().fit, _Y(), epochs=1, lr=0.001, batch_size=2, seed=0, target_steps=5),
                           accepts={"Y:int-dtype": "integer data are converted", "seed:huge": SEED}),
    _M + "soft_threshold": spec(lambda: call(M.soft_threshold, _t([-2.0, 0.5, 3.0]), 1.0),
                                accepts={"u:trailing-dim": "elementwise: any shape", "u:empty": EMPTY}),
    # ---- latent-variable generative EBM
    _M + "LatentGenerativeEBM": spec(
        lambda: call(_lg_build, _circle, event_shape=(2,), latent_shape=(1,), predictor=_pred, cost=_cost,
                     regularizer=_reg, z_values=_grid(), z_measure=0.5, z_init=_t([[0.0], [3.0]]), refine_steps=0),
        accepts={"predictor:wrong-shape": "the predictor's output only has to suit the decoder: one more "
                                          "trailing dimension is a larger batch of predictions, over which the "
                                          "energy broadcasts"}),
    _M + "LatentGenerativeEBM.predict": spec(lambda: call(_lg().predict, _lg_x()),
                                             accepts={"x:empty": EMPTY, "x:int-dtype": X_INT, "x:trailing-dim": X_DIM}),
    _M + "LatentGenerativeEBM.generate": spec(lambda: call(_lg().generate, _z1(), _lg_x()),
                                              accepts={"x:int-dtype": X_INT, "x:trailing-dim": X_DIM,
                                                       "z:trailing-dim": Z_DIM}),
    _M + "LatentGenerativeEBM.forward": spec(lambda: call(_lg().forward, _lg_y(), _z1(), _lg_x()),
                                             accepts={"x:int-dtype": X_INT, "x:trailing-dim": X_DIM,
                                                      "z:trailing-dim": Z_DIM}),
    _M + "LatentGenerativeEBM.infer": spec(lambda: call(_lg().infer, _lg_y(), _lg_x()),
                                           accepts={"x:int-dtype": X_INT, "x:trailing-dim": X_DIM}),
    _M + "LatentGenerativeEBM.free_energy": spec(lambda: call(_lg().free_energy, _lg_y(), _lg_x(), 1.0),
                                                 accepts={"beta:inf": BETA_INF, "x:int-dtype": X_INT,
                                                          "x:trailing-dim": X_DIM}),
    _M + "LatentGenerativeEBM.energy_of_y": spec(lambda: call(_lg().energy_of_y, _lg_x(), 1.0),
                                                 accepts={"x:empty": EMPTY, "beta:inf": BETA_INF, "x:int-dtype": X_INT,
                                                          "x:trailing-dim": X_DIM}),
    _M + "low_energy_volume": spec(
        lambda: call(M.low_energy_volume, _quad_energy, _y2(), -1.0, 2.0, num_points=64, quantile=0.5, atol=1e-6,
                     seed=0),
        accepts={"low:negative": "a box corner may be negative", "seed:huge": SEED,
                 "data:int-dtype": "integer data are converted"}),
    # ---- auto-encoders and flows
    _M + "DenoisingAutoEncoder": spec(lambda: call(M.DenoisingAutoEncoder, nn.Linear(2, 2), 2)),
    _M + "DenoisingAutoEncoder.forward": spec(lambda: call(_dae().forward, _y2()), accepts={"y:empty": EMPTY}),
    _M + "DenoisingAutoEncoder.loss": spec(lambda: call(_dae().loss, _y2(), 0.1, seed=0, noise=_y2()),
                                           accepts={"seed:huge": SEED}),
    _M + "contracting_penalty": spec(lambda: call(M.contracting_penalty, _tanh_enc(), _y2()),
                                     accepts={"y:empty": EMPTY}),
    _M + "saturating_penalty": spec(lambda: call(M.saturating_penalty, _t([[-1.0, 0.5, 2.0]]), "shrink", 1.0),
                                    accepts={"preactivation:empty": EMPTY,
                                             "preactivation:trailing-dim": "[1, 3, 1] is a batch (1, 3) of single "
                                                                           "units"}),
    _M + "CouplingFlow": spec(lambda: call(M.CouplingFlow, 2, n_layers=2, hidden=4)),
    _M + "CouplingFlow.forward": spec(lambda: call(_flow().forward, _y2()), accepts={"y:empty": EMPTY}),
    _M + "VAEEnergy": spec(lambda: call(M.VAEEnergy, *_vae_parts(), dim=2, latent_dim=2, sigma=0.5)),
    _M + "VAEEnergy.forward": spec(lambda: call(_vae().forward, _y2(), _z2())),
    _M + "VAEEnergy.posterior": spec(lambda: call(_vae().posterior, _y2()), accepts={"y:empty": EMPTY}),
    _M + "VAEEnergy.infer": spec(lambda: call(_vae().infer, _y2()), accepts={"y:empty": EMPTY}),
    _M + "VAEEnergy.variational_free_energy": spec(
        lambda: call(_vae().variational_free_energy, _y2(), num_samples=2, seed=0),
        accepts={"y:empty": EMPTY, "seed:huge": SEED}),
    _M + "VAEEnergy.free_energy": spec(lambda: call(_vae().free_energy, _y2(), 1.0, num_samples=8, seed=0),
                                       accepts={"y:empty": EMPTY, "beta:inf": BETA_INF, "seed:huge": SEED}),
    # ---- vector quantization
    _M + "VectorQuantizer": spec(lambda: call(M.VectorQuantizer, _codebook(), encoder=nn.Linear(2, 2),
                                              decoder=nn.Linear(2, 2), dim=2)),
    _M + "VectorQuantizer.forward": spec(lambda: call(_vq().forward, _y2(), _onehot3())),
    _M + "VectorQuantizer.codes": spec(lambda: call(_vq().codes)),
    _M + "VectorQuantizer.free_energy": spec(lambda: call(_vq().free_energy, _y2(), 1.0),
                                             accepts={"y:empty": EMPTY, "beta:inf": BETA_INF}),
    _M + "VectorQuantizer.infer": spec(lambda: call(_vq().infer, _y2()), accepts={"y:empty": EMPTY}),
    _M + "VectorQuantizer.embed": spec(lambda: call(_vq().embed, _y2()), accepts={"y:empty": EMPTY}),
    _M + "VectorQuantizer.encode": spec(lambda: call(_vq().encode, _y2()), accepts={"y:empty": EMPTY}),
    _M + "VectorQuantizer.reconstruct": spec(lambda: call(_vq().reconstruct, _y2()), accepts={"y:empty": EMPTY}),
    _M + "VectorQuantizer.loss": spec(lambda: call(_vq().loss, _y2(), 0.25)),
    _M + "VectorQuantizer.kmeans_step": spec(lambda: call(_vq().kmeans_step, _y2()),
                                             accepts={"Y:int-dtype": "integer data are converted"}),
    # ---- structured: the semiring
    _S + "Semiring": spec(lambda: call(S.Semiring, math.inf),
                          accepts={"beta:inf": "beta = inf is the min-sum semiring"}),
    _S + "Semiring.sum": spec(lambda: call(S.Semiring(1.0).sum, _semi_cols(), 0),
                              accepts={"x:trailing-dim": "a sum over dim 0 of any shape",
                                       "x:empty": "the empty sum is the semiring's zero (+inf)",
                                       "x:inf": "+inf is the semiring's zero",
                                       "dim:negative": "dim -1 is the last one"}),
    _S + "Semiring.plus": spec(lambda: call(S.Semiring(1.0).plus, _semi_x(), _t([0.0, 1.0, 2.0])),
                               accepts={"a:trailing-dim": "elementwise, broadcasting",
                                        "b:trailing-dim": "elementwise, broadcasting",
                                        "a:inf": "+inf is the semiring's zero",
                                        "b:inf": "+inf is the semiring's zero"}),
    _S + "Semiring.matmul": spec(lambda: call(S.Semiring(1.0).matmul, _semi_m(), _semi_m()),
                                 accepts={"a:inf": "+inf is the semiring's zero",
                                          "b:inf": "+inf is the semiring's zero",
                                          "a:empty": "no rows: an empty product",
                                          "b:trailing-dim": "b [2, 2, 1] is a batch of two [2, 1] matrices "
                                                            "(batch dimensions broadcast)"}),
    _S + "Semiring.weights": spec(lambda: call(S.Semiring(1.0).weights, _t([0.0, 1.0, math.inf])),
                                  accepts={"x:empty": EMPTY, "x:trailing-dim": "elementwise: any shape",
                                           "x:inf": "+inf has weight 0"}),
    # ---- structured: chains
    _S + "chain_free_energy": spec(lambda: call(S.chain_free_energy, _unary(), _pairwise(), 1.0, **_chain_kw()),
                                   accepts={"beta:inf": BETA_INF, "initial:inf": "+inf forbids a first label",
                                            "final:inf": "+inf forbids a last label",
                                            "pairwise:inf": "+inf forbids a transition"}),
    _S + "chain_energy": spec(lambda: call(S.chain_energy, torch.tensor([[0, 1, 1], [1, 1, 0]]),
                                           _unary().expand(2, 3, 2).clone(), _forbidding(), initial=_ends(),
                                           final=_ends(), lengths=torch.tensor([3, 3])),
                              accepts={"initial:inf": "+inf forbids a first label: a path starting there has "
                                                      "energy +inf",
                                       "final:inf": "+inf forbids a last label: a path ending there has energy +inf",
                                       "pairwise:inf": "+inf forbids a transition: a path using it has energy +inf"}),
    _S + "viterbi": spec(lambda: call(S.viterbi, _unary(), _pairwise(), **_chain_kw()),
                         accepts={"initial:inf": "+inf forbids a first label", "final:inf": "+inf forbids a last label",
                                  "pairwise:inf": "+inf forbids a transition"}),
    _S + "chain_marginals": spec(lambda: call(S.chain_marginals, _unary(), _pairwise(), 1.0, **_chain_kw(),
                                              edges=False),
                                 accepts={"beta:inf": BETA_INF, "initial:inf": "+inf forbids a first label",
                                          "final:inf": "+inf forbids a last label",
                                          "pairwise:inf": "+inf forbids a transition"}),
    _S + "sample_chain": spec(lambda: call(S.sample_chain, _unary(), _pairwise(), 1.0, **_chain_kw(),
                                           sample_shape=(2,), generator=0),
                              accepts={"beta:inf": BETA_INF, "initial:inf": "+inf forbids a first label",
                                       "final:inf": "+inf forbids a last label",
                                       "pairwise:inf": "+inf forbids a transition",
                                       "sample_shape:empty": "sample_shape () is a single draw",
                                       "generator:huge": SEED}),
    _S + "kbest": spec(lambda: call(S.kbest, _unary(), _pairwise(), 2, **_chain_kw()),
                       accepts={"initial:inf": "+inf forbids a first label", "final:inf": "+inf forbids a last label",
                                "pairwise:inf": "+inf forbids a transition"}),
    _S + "pad_sequences": spec(lambda: call(S.pad_sequences, [torch.ones(2, 3), torch.ones(4, 3)], value=0.0),
                               accepts={"value:negative": NEG_REAL}),
    _S + "LinearChainGibbs": spec(lambda: call(S.LinearChainGibbs, _unary(), _forbidding(), 1.0, _ends(), _ends(),
                                               max_support=100),
                                  accepts={"beta:inf": BETA_INF, "initial:inf": "+inf forbids a first label",
                                           "final:inf": "+inf forbids a last label",
                                           "pairwise:inf": "+inf forbids a transition",
                                           "unary:empty": "a distribution with an empty batch shape"}),
    _S + "LinearChainGibbs.expand": spec(lambda: call(_lcg().expand, (2, 1))),
    _S + "LinearChainGibbs.log_prob": spec(lambda: call(_lcg().log_prob, torch.tensor([[0, 1, 1]])),
                                           accepts={"value:empty": EMPTY,
                                                    "value:float-dtype": "labels given as floats are converted"}),
    _S + "LinearChainGibbs.sample": spec(lambda: call(_lcg().sample, (2,)),
                                         accepts={"sample_shape:empty": "sample_shape () is a single draw"}),
    _S + "LinearChainGibbs.enumerate_support": spec(lambda: call(_lcg().enumerate_support, True)),
    # ---- structured: dynamic time warping
    _S + "dtw": spec(lambda: call(S.dtw, _cost_mat(), lengths=_dtw_lengths(), band=2, return_path=False),
                     accepts={"band:huge": "a band wider than the matrix excludes nothing"}),
    _S + "soft_dtw": spec(lambda: call(S.soft_dtw, _cost_mat(), 1.0, lengths=_dtw_lengths(), band=2),
                          accepts={"band:huge": "a band wider than the matrix excludes nothing", "beta:inf": BETA_INF}),
    _S + "squared_distances": spec(lambda: call(S.squared_distances, _t([0.0, 1.0], [1.0, 2.0], [3.0, 0.0]),
                                                _t([0.0, 0.0], [1.0, 1.0])),
                                   accepts={"x:empty": EMPTY, "y:empty": "no points in y: an empty column set"}),
    # ---- structured: graphs
    _S + "Graph": spec(lambda: call(S.Graph)),
    _S + "Graph.add_node": spec(lambda: call(_graph2().add_node, start=False, accept=True)),
    _S + "Graph.add_arc": spec(lambda: call(_graph2().add_arc, 0, 1, 3, 4, energy=0.5),
                               accepts={"ilabel:huge": "any non-negative int64 label",
                                        "olabel:huge": "any non-negative int64 label",
                                        "energy:negative": "arc energies may be negative"}),
    _S + "Graph.with_energy": spec(lambda: call(_full().with_energy, _t([0.1, 0.2, 0.3, 0.4]))),
    _S + "compose": spec(lambda: call(S.compose, _spell(), _line([2], 1.0))),
    _S + "intersect": spec(lambda: call(S.intersect, _full(), _line([1, 2], 0.0))),
    _S + "forward_score": spec(lambda: call(S.forward_score, _full(), 1.0),
                               accepts={"beta:inf": "beta = inf is the Viterbi score"}),
    _S + "viterbi_score": spec(lambda: call(S.viterbi_score, _full())),
    _S + "viterbi_path": spec(lambda: call(S.viterbi_path, _full())),
    _S + "graph_nll": spec(lambda: call(S.graph_nll, _target(), _full(), 1.0, reduction="mean")),
    _S + "graph_perceptron": spec(lambda: call(S.graph_perceptron, _target(), _full(), reduction="mean")),
    _S + "graph_hinge": spec(lambda: call(S.graph_hinge, _target(), _wrong(), 1.0, reduction="mean")),
    _S + "hamming_distance": spec(lambda: call(S.hamming_distance, [1, 2, 3], [1, 5, 3, 4]),
                                  accepts={"a:empty": "an empty sequence: the distance is the other's length",
                                           "b:empty": "an empty sequence: the distance is the other's length"}),
}
