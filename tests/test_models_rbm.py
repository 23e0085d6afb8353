"""RBM: closed forms against brute force and scikit-learn, exact and AIS log Z, training, Pyro program."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import pyro
from pyro.infer import TraceEnum_ELBO

from pyro_ebm import losses
from pyro_ebm.gibbs import product_values
from pyro_ebm.models import RBM, rbm_ais
from pyro_ebm.models.rbm import _sgd_update
from pyro_ebm.train import fit

sklearn = pytest.importorskip("sklearn")
from sklearn.neural_network import BernoulliRBM  # noqa: E402

F64 = torch.float64


def random_rbm(nv, nh, beta=1.0, scale=1.0, seed=0):
    rbm = RBM(nv, nh, beta=beta, seed=seed, init_scale=scale, dtype=F64)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        rbm.visible_bias.copy_(torch.randn(nv, generator=g, dtype=F64) * scale)
        rbm.hidden_bias.copy_(torch.randn(nh, generator=g, dtype=F64) * scale)
    return rbm


def brute_joint_log_weights(rbm):
    """``-beta E(v, h)`` for every (v, h), ``[2**nv, 2**nh]``, straight from the definition (numpy)."""
    V = product_values([0.0, 1.0], rbm.n_visible).double().numpy()
    H = product_values([0.0, 1.0], rbm.n_hidden).double().numpy()
    W, b, c = (t.detach().double().numpy() for t in (rbm.weight, rbm.visible_bias, rbm.hidden_bias))
    E = -(V @ W @ H.T) - (V @ b)[:, None] - (H @ c)[None, :]
    return V, H, -rbm.beta * E


def digits_binary():
    from sklearn.datasets import load_digits

    x = (load_digits().data > 7).astype(np.float64)
    perm = np.random.default_rng(0).permutation(x.shape[0])
    return torch.tensor(x[perm])


# ------------------------------------------------------------------------------------------ free energy


@pytest.mark.parametrize("beta", [1.0, 0.6, 2.5])
def test_free_energy_equals_brute_force(beta):
    rbm = random_rbm(5, 4, beta=beta)
    V, _, lw = brute_joint_log_weights(rbm)
    ref = -np.logaddexp.reduce(lw, axis=1) / beta
    got = rbm(torch.tensor(V)).detach().numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    # the library's free_energy over the latent view agrees too
    np.testing.assert_allclose(rbm.free_energy_enumerated(torch.tensor(V)).detach().numpy(), ref, atol=1e-12)


def test_free_energy_equals_sklearn_free_energy_both_ways():
    rbm = random_rbm(7, 5, beta=0.8)
    est = rbm.to_sklearn()
    v = product_values([0.0, 1.0], 7).double()
    # the same distribution: beta * F_ours = F_sklearn
    np.testing.assert_allclose(rbm.beta * rbm(v).detach().numpy(), est._free_energy(v.numpy()), atol=1e-12)
    np.testing.assert_allclose(rbm.hidden_probs(v).detach().numpy(), est._mean_hiddens(v.numpy()), atol=1e-14)
    # and back from a fitted scikit-learn model
    sk = BernoulliRBM(n_components=6, n_iter=3, random_state=0).fit(digits_binary()[:200, :10].numpy())
    back = RBM.from_sklearn(sk)
    x = digits_binary()[200:260, :10]
    np.testing.assert_allclose(back(x).detach().numpy(), sk._free_energy(x.numpy()), atol=1e-12)


def test_one_gibbs_sweep_has_sklearns_distribution():
    """``sample(init=v, num_sweeps=1)`` and scikit-learn's ``gibbs(v)`` both draw v' ~ sum_h p(h|v) p(v'|h)."""
    rbm = random_rbm(6, 4, scale=1.0, seed=3)
    est = rbm.to_sklearn(random_state=0)
    v0 = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0], dtype=F64)
    H = product_values([0.0, 1.0], 4).double()
    ph = rbm.hidden_probs(v0).detach()
    p_h = torch.prod(torch.where(H == 1, ph, 1 - ph), -1)  # [16]
    exact = (p_h[:, None] * rbm.visible_probs(H).detach()).sum(0).numpy()  # E[v'_i | v0]
    M = 4000
    ours = rbm.sample(M, num_sweeps=1, init=v0.expand(M, 6), seed=0).numpy().mean(0)
    theirs = np.mean([est.gibbs(np.tile(v0.numpy(), (M, 1)))], axis=(0, 1))
    se = np.sqrt(exact * (1 - exact) / M)
    assert np.all(np.abs(ours - exact) < 4.5 * se), (ours, exact)
    assert np.all(np.abs(theirs - exact) < 4.5 * se), (theirs, exact)


# ------------------------------------------------------------------------------------------ log Z


@pytest.mark.parametrize("nv,nh,beta", [(6, 3, 1.0), (3, 7, 0.7), (5, 5, 1.8)])
def test_exact_log_partition_equals_brute_force(nv, nh, beta):
    rbm = random_rbm(nv, nh, beta=beta, seed=nv)
    _, _, lw = brute_joint_log_weights(rbm)
    est = rbm.log_partition("exact")
    assert est.method == "exact" and float(est.stderr) == 0.0
    assert abs(float(est.value) - np.logaddexp.reduce(lw.ravel())) < 1e-10


def test_log_likelihood_normalizes():
    rbm = random_rbm(5, 3, beta=1.3)
    ll = rbm.log_likelihood(product_values([0.0, 1.0], 5).double())
    assert abs(float(torch.logsumexp(ll.detach(), 0))) < 1e-10


def test_ais_small_rbm_matches_exact_and_zero_weights_are_exact():
    rbm = random_rbm(8, 6, beta=0.9, scale=1.0)
    exact = float(rbm.log_partition().value)
    est = rbm.log_partition("ais", num_temperatures=500, num_particles=200, seed=0)
    assert est.method == "ais" and est.log_weights.shape == (200,) and est.samples.shape == (200, 8)
    assert abs(float(est.value) - exact) < 3 * float(est.stderr) + 0.02, (float(est.value), exact, est)
    # a base equal to the target (no weights, base = visible biases): every weight is Z / Z_0 = 1
    flat = rbm_ais(torch.zeros(8, 6), rbm.visible_bias, torch.zeros(6), num_temperatures=10, seed=0)
    ref = 6 * math.log(2) + float(torch.nn.functional.softplus(rbm.visible_bias.detach()).sum())
    assert abs(float(flat.value) - ref) < 1e-10 and float(flat.stderr) < 1e-10


@pytest.fixture(scope="module")
def trained16():
    torch.manual_seed(0)
    x = digits_binary()
    rbm = RBM(64, 16, seed=0, dtype=F64)
    rbm.fit(x[:1500], epochs=10, batch_size=20, lr=0.05, seed=0)
    return rbm, x


def test_ais_trained_digits_rbm_quick(trained16):
    """64 visible, 16 hidden, trained on digits: a short AIS run is within its error bars of exact."""
    rbm, _ = trained16
    exact = float(rbm.log_partition().value)
    est = rbm.log_partition("ais", num_temperatures=1000, seed=1)
    err = abs(float(est.value) - exact)
    assert err < 3 * float(est.stderr) + 0.05 and err < 0.1, (float(est.value), exact, float(est.stderr))


@pytest.mark.slow
@pytest.mark.parametrize("nh", [16, 20])
def test_ais_default_settings_within_3_se_and_01_nats(nh):
    """The acceptance criterion: 64 visible, 16-20 hidden units, default AIS settings."""
    x = digits_binary()
    rbm = RBM(64, nh, seed=nh, dtype=F64)
    rbm.fit(x[:1500], epochs=20, batch_size=20, lr=0.05, seed=nh)
    exact = float(rbm.log_partition().value)
    est = rbm.log_partition("ais", seed=0)
    err = abs(float(est.value) - exact)
    assert err < 3 * float(est.stderr) and err < 0.1, (float(est.value), exact, float(est.stderr))


# ------------------------------------------------------------------------------------------ training


def test_fit_update_equals_sgd_on_ml_sampled_in_the_library_loop():
    """The closed-form PCD update is SGD on losses.ml_sampled through train.fit, for the same negatives."""
    g = torch.Generator().manual_seed(0)
    rbm = random_rbm(9, 5, beta=1.5, scale=0.5)
    twin = random_rbm(9, 5, beta=1.5, scale=0.5)
    v_pos = torch.bernoulli(torch.full((20, 9), 0.4, dtype=F64), generator=g)
    v_neg = torch.bernoulli(torch.full((20, 9), 0.6, dtype=F64), generator=g)
    lr = 0.3
    with torch.no_grad():
        W, b, c = rbm.weight.data, rbm.visible_bias.data, rbm.hidden_bias.data
        _sgd_update(W, b, c, v_pos, rbm.hidden_probs(v_pos), v_neg, rbm.hidden_probs(v_neg), lr * rbm.beta / 20)
    opt = torch.optim.SGD(twin.parameters(), lr=lr * twin.beta)
    fit(twin, v_pos, losses.ml_sampled, lambda E, y, x: v_neg.unsqueeze(0), steps=1, batch_size=20,
        optimizer=opt, progress=False)
    for p, q in zip(rbm.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


def test_pcd_and_cd_raise_heldout_likelihood(trained16):
    rbm, x = trained16
    test = x[1500:]
    untrained = RBM(64, 16, seed=0, dtype=F64)
    ll0 = float(untrained.log_likelihood(test).detach().mean())
    ll_pcd = float(rbm.log_likelihood(test).detach().mean())
    cd = RBM(64, 16, seed=0, dtype=F64)
    h = cd.fit(x[:1500], epochs=5, k=2, persistent=False, seed=0)
    ll_cd = float(cd.log_likelihood(test).detach().mean())
    # an untrained RBM is ~uniform: 64 log 2 = 44.4 nats per image
    assert abs(ll0 + 64 * math.log(2)) < 0.5
    assert ll_pcd > ll0 + 15 and ll_cd > ll0 + 10, (ll0, ll_pcd, ll_cd)
    assert len(h) == 5 and h["epoch"] == [1, 2, 3, 4, 5]
    assert h["reconstruction"][-1] < 0.15
    # reconstructions are probabilities close to the data
    rec = rbm.reconstruct(test)
    assert rec.shape == test.shape and bool(((rec >= 0) & (rec <= 1)).all())
    rec_err = float(((rec > 0.5).double() != test).double().mean())
    marginal = (x[:1500].mean(0) > 0.5).double()  # the best image-independent guess of each pixel
    base_err = float((marginal != test).double().mean())
    assert rec_err < 0.8 * base_err, (rec_err, base_err)


def test_fit_is_reproducible_and_callbacks_stop():
    x = digits_binary()[:200, :16]
    a, b = RBM(16, 8, seed=1, dtype=F64), RBM(16, 8, seed=1, dtype=F64)
    a.fit(x, epochs=2, seed=5)
    h = b.fit(x, epochs=5, seed=5, callbacks=[lambda epoch, hist: epoch >= 2])
    assert len(h) == 2
    torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)


def test_block_gibbs_sampler_matches_exact_distribution():
    rbm = random_rbm(4, 3, scale=1.0, seed=7)
    V, _, lw = brute_joint_log_weights(rbm)
    p = np.exp(np.logaddexp.reduce(lw, axis=1) - np.logaddexp.reduce(lw.ravel()))
    M = 4000
    draws = rbm.sample(M, num_sweeps=30, seed=0).numpy()  # independent chains: an exact multinomial test
    idx = (draws * (2 ** np.arange(3, -1, -1))).sum(1).astype(int)  # product_values order
    counts = np.bincount(idx, minlength=16)
    stat, pval = stats.chisquare(counts, M * p)
    assert pval > 1e-3, (stat, pval)


# ------------------------------------------------------------------------------------------ Pyro


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_pyro_program_with_enumerated_hidden_units_gives_the_free_energy(beta):
    rbm = random_rbm(6, 5, beta=beta, scale=0.8)
    v = product_values([0.0, 1.0], 6).double()[::5]
    pyro.clear_param_store()
    elbo = TraceEnum_ELBO(max_plate_nesting=2)
    loss = elbo.differentiable_loss(rbm.pyro_model(v), lambda: None)
    ref = beta * rbm(v).sum()
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-10)
    # and the same gradient with respect to the weights
    (g1,) = torch.autograd.grad(loss, rbm.weight)
    (g2,) = torch.autograd.grad(ref, rbm.weight)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-10)


def test_infer_discrete_on_the_pyro_program_draws_the_hidden_posterior():
    from pyro.infer import infer_discrete

    rbm = random_rbm(6, 4, beta=0.8, seed=2)
    M = 4000
    v = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0, 1.0]], dtype=F64).expand(M, 6)
    pyro.set_rng_seed(0)
    h = infer_discrete(rbm.pyro_model(v), first_available_dim=-3, temperature=1)()
    p = rbm.hidden_probs(v[0]).detach()
    assert h.shape == (M, 4)
    se = (p * (1 - p) / M).sqrt()
    assert bool(((h.mean(0) - p).abs() < 4.5 * se).all()), (h.mean(0), p)


# ------------------------------------------------------------------------------------------ bad input


def test_bad_input_names_the_argument():
    rbm = RBM(4, 3)
    with pytest.raises(ValueError, match="beta"):
        RBM(4, 3, beta=0.0)
    with pytest.raises(ValueError, match="n_visible"):
        RBM(0, 3)
    with pytest.raises(TypeError, match="n_hidden"):
        RBM(4, 2.5)
    with pytest.raises(ValueError, match="data must be binary"):
        rbm.fit(torch.full((10, 4), 0.5))
    with pytest.raises(ValueError, match=r"data must have shape \[N, 4\]"):
        rbm.fit(torch.ones(10, 5))
    with pytest.raises(ValueError, match="lr"):
        rbm.fit(torch.ones(10, 4), lr=-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        rbm.fit(torch.ones(10, 4), batch_size=11)
    with pytest.raises(ValueError, match="v must be binary"):
        rbm.reconstruct(torch.tensor([[0.0, 2.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="init must have shape"):
        rbm.sample(3, init=torch.ones(2, 4))
    with pytest.raises(ValueError, match="method must be"):
        rbm.log_partition("quadrature")
    with pytest.raises(ValueError, match="too many to enumerate"):
        RBM(30, 25).log_partition("exact")
    with pytest.raises(TypeError, match="unknown option"):
        rbm.log_partition("ais", num_steps=3)
    with pytest.raises(TypeError, match="fitted sklearn BernoulliRBM"):
        RBM.from_sklearn(BernoulliRBM())
    with pytest.raises(ValueError, match="base_logits"):
        rbm.log_partition("ais", base_logits=torch.zeros(3))
