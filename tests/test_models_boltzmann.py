"""Boltzmann machine: sequential Gibbs against the exact distribution, free energy, learning rule, Pyro."""

import numpy as np
import pytest
import torch
from scipy import stats

import pyro
from pyro.infer import TraceEnum_ELBO

from pyro_ebm.gibbs import product_values
from pyro_ebm.models import BoltzmannMachine

F64 = torch.float64


def machine(nv=4, nh=3, beta=1.0, seed=0, scale=1.0):
    bm = BoltzmannMachine(nv, nh, beta=beta, seed=seed, init_scale=scale, dtype=F64)
    g = torch.Generator().manual_seed(seed + 1)
    bm.set_weights(bias_y=torch.randn(nv, generator=g, dtype=F64) * 0.5,
                   bias_z=torch.randn(nh, generator=g, dtype=F64) * 0.5)
    return bm


def exact_joint(bm):
    """States ``s = [y, z]`` in product_values order and their probabilities, from the definition (numpy)."""
    n = bm.n_visible + bm.n_hidden
    S = product_values([0.0, 1.0], n).double().numpy()
    W = bm.full_weight().detach().numpy()
    b = bm.full_bias().detach().numpy()
    E = -0.5 * np.einsum("ki,ij,kj->k", S, W, S) - S @ b
    lw = -bm.beta * E
    return S, np.exp(lw - np.logaddexp.reduce(lw)), lw


def chi_square_pvalue(counts, probs):
    """Pearson chi-square, bins with expected count < 5 pooled into one."""
    expected = counts.sum() * probs
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return stats.chisquare(obs, exp).pvalue


@pytest.mark.parametrize("beta", [1.0, 0.7])
def test_sequential_gibbs_matches_the_exact_distribution_of_a_4_plus_3_machine(beta):
    bm = machine(beta=beta)
    S, p, _ = exact_joint(bm)
    M = 3000
    draws = bm.sample(M, num_sweeps=25, seed=0).numpy()  # independent chains: a multinomial sample
    idx = (draws * (2 ** np.arange(6, -1, -1))).sum(1).astype(int)
    pval = chi_square_pvalue(np.bincount(idx, minlength=128), p)
    assert pval > 1e-3, pval


def test_clamped_gibbs_samples_the_hidden_posterior():
    bm = machine(seed=2)
    S, p, _ = exact_joint(bm)
    y = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=F64)
    rows = np.all(S[:, :4] == y.numpy(), axis=1)
    post = p[rows] / p[rows].sum()  # P(z | y), z in product_values order
    M = 4000
    z = bm.clamped_hidden(y.expand(M, 4), num_sweeps=20, seed=0).numpy()
    idx = (z * (2 ** np.arange(2, -1, -1))).sum(1).astype(int)
    assert chi_square_pvalue(np.bincount(idx, minlength=8), post) > 1e-3


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_free_energy_and_log_partition_equal_brute_force(beta):
    bm = machine(beta=beta, seed=3)
    S, _, lw = exact_joint(bm)
    Y = product_values([0.0, 1.0], 4).double()
    ref = -np.logaddexp.reduce(lw.reshape(16, 8), axis=1) / beta  # rows: y, columns: z
    np.testing.assert_allclose(bm(Y).detach().numpy(), ref, atol=1e-12)
    assert abs(float(bm.log_partition().value) - np.logaddexp.reduce(lw)) < 1e-10


def test_learning_rule_is_the_exact_nll_gradient_with_exact_phase_samples():
    """With samples of P(z | y) and of P(y, z), the rule's step is -lr * grad of the mean NLL (in
    expectation); the gradient comes from autograd through the exact NLL."""
    bm = machine(seed=4, scale=0.7)
    S, p, _ = exact_joint(bm)
    data = torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 0]], dtype=F64)
    # exact NLL by autograd on a twin with the same weights; each pair w_ij = w_ji is one parameter
    twin = machine(seed=4, scale=0.7)
    St = torch.tensor(S)
    lw = -twin.beta * twin.joint_energy(St[:, :4], St[:, 4:])
    nll = (twin.beta * twin(data)).mean() + torch.logsumexp(lw, 0)
    nll.backward()
    g = {k: v.grad for k, v in twin.named_parameters()}
    g["w_yy"] = g["w_yy"] + g["w_yy"].T  # d/d(pair) = d/dw_ij + d/dw_ji
    g["w_zz"] = g["w_zz"] + g["w_zz"].T
    for k in ("w_yy", "w_zz"):  # no self-connections: the diagonal is not a parameter
        g[k] = g[k] - torch.diag(g[k].diagonal())
    # exact samples: the positive phase from P(z | y) per data row, the negative from P(y, z)
    rng = np.random.default_rng(0)
    n = 200_000
    pos = []
    for y in data.numpy():
        rows = np.all(S[:, :4] == y, axis=1)
        pos.append(S[rows][rng.choice(8, size=n // 3, p=p[rows] / p[rows].sum())])
    s_pos = torch.tensor(np.concatenate(pos))
    s_neg = torch.tensor(S[rng.choice(128, size=n, p=p)])
    before = {k: v.detach().clone() for k, v in bm.named_parameters()}
    bm._update(s_pos, s_neg, lr=1.0)
    for k, v in bm.named_parameters():
        torch.testing.assert_close(v.detach() - before[k], -g[k], atol=0.01, rtol=0)
    assert float(bm.w_yy.detach().diagonal().abs().max()) == 0.0


def test_fit_lowers_the_exact_nll():
    target = machine(seed=5, scale=2.0)
    S, p, _ = exact_joint(target)
    rng = np.random.default_rng(1)
    data = torch.tensor(S[rng.choice(128, size=400, p=p), :4])
    bm = BoltzmannMachine(4, 3, seed=0, dtype=F64)
    nll0 = float(bm.exact_nll(data))
    h = bm.fit(data, epochs=3, batch_size=40, lr=0.1, num_sweeps=3, num_chains=100, seed=0)
    # the entropy of the data's empirical distribution bounds any model's NLL from below
    freq = np.bincount((data.numpy() * (2 ** np.arange(3, -1, -1))).sum(1).astype(int), minlength=16) / 400
    entropy = -np.sum(freq[freq > 0] * np.log(freq[freq > 0]))
    assert h["nll"][-1] < nll0 - 0.1 and h["nll"][-1] > entropy, (nll0, h["nll"], entropy)
    assert bm.w_yy.detach().allclose(bm.w_yy.detach().T) and float(bm.w_zz.detach().diagonal().abs().max()) == 0


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_pyro_program_with_enumerated_hidden_units_gives_the_free_energy(beta):
    bm = machine(beta=beta, seed=6)
    y = product_values([0.0, 1.0], 4).double()
    pyro.clear_param_store()
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(bm.pyro_model(y), lambda: None)
    torch.testing.assert_close(loss, beta * bm(y).sum(), rtol=1e-10, atol=1e-10)


def test_bad_input_names_the_argument():
    bm = BoltzmannMachine(4, 3)
    with pytest.raises(ValueError, match="w_yy must be symmetric"):
        bm.set_weights(w_yy=torch.triu(torch.ones(4, 4), 1))
    with pytest.raises(ValueError, match="w_zz must have a zero diagonal"):
        bm.set_weights(w_zz=torch.eye(3))
    with pytest.raises(ValueError, match="w_zz must be a square"):
        bm.set_weights(w_zz=torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"w_yz must have shape \[4, 3\]"):
        bm.set_weights(w_yz=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="beta"):
        BoltzmannMachine(4, 3, beta=-1.0)
    with pytest.raises(ValueError, match="data must be binary"):
        bm.fit(torch.full((5, 4), 0.3))
    with pytest.raises(ValueError, match=r"y must have shape \[N, 4\]"):
        bm.clamped_hidden(torch.ones(5, 3))
    with pytest.raises(ValueError, match="too many to enumerate"):
        BoltzmannMachine(3, 21)(torch.ones(1, 3))
