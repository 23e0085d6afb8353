"""Tests of the loss zoo: values against independent float64 NumPy formulas, gradient signs against the
lecture's condition on H, limits (NLL -> perceptron), InfoNCE against cross-entropy, NCE's learned
log-partition against a closed form, and the error messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import assume, given, settings, strategies as st
from scipy.special import expit
from scipy.special import logsumexp as np_logsumexp

from pyro_ebm import losses as L

SETTINGS = settings(max_examples=60, deadline=None)


# ----------------------------------------------------------------------------------------------------------
# independent references (float64 NumPy)
# ----------------------------------------------------------------------------------------------------------


def np_pair(name, p, n, m=1.0, cap=1.0, beta=1.0):
    """Per-pair H(F+, F-, m) written from the lecture / LeCun et al. 2006, in NumPy."""
    with np.errstate(over="ignore"):
        if name == "hinge":
            return np.maximum(0.0, m + p - n)
        if name == "log_loss":
            return np.logaddexp(0.0, p - n)
        if name == "lvq2":
            return np.minimum(cap, np.maximum(0.0, p - n))
        if name == "mce":
            return expit(p - n)
        if name in ("square_square", "square_hinge"):
            return p**2 + np.maximum(0.0, m - n) ** 2
        if name == "square_exp":
            return p**2 + beta * np.exp(-n)
        if name == "simple":
            return np.maximum(0.0, p) + np.maximum(0.0, m - n)
        if name == "min_hinge":
            return p + np.maximum(0.0, m - n)
    raise KeyError(name)


PAIRWISE = ["hinge", "log_loss", "lvq2", "mce", "square_square", "square_hinge", "square_exp", "simple", "min_hinge"]
WITH_MARGIN = {"hinge", "square_square", "square_hinge", "simple", "min_hinge"}


def call_pair(name, pos, neg, m=1.0, cap=1.0, beta=1.0, reduction="none"):
    fn = getattr(L, name)
    if name in WITH_MARGIN:
        return fn(pos, neg, m, reduction=reduction)
    if name == "lvq2":
        return fn(pos, neg, cap, reduction=reduction)
    if name == "square_exp":
        return fn(pos, neg, beta, reduction=reduction)
    return fn(pos, neg, reduction=reduction)


def t64(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


# ----------------------------------------------------------------------------------------------------------
# values
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAIRWISE)
@pytest.mark.parametrize("scale", [1.0, 1e4])
@pytest.mark.parametrize("n_neg", [None, 4])
def test_pairwise_matches_numpy(name, scale, n_neg):
    rng = np.random.default_rng([PAIRWISE.index(name), int(scale), n_neg or 0])
    pos = rng.normal(size=7) * scale
    neg = rng.normal(size=(7,) if n_neg is None else (7, n_neg)) * scale
    if name in ("square_square", "square_hinge", "square_exp", "min_hinge"):
        pos = np.abs(pos)  # these losses are meant for non-negative energies
    if name == "square_exp":
        neg = np.abs(neg)  # exp(-F) of a very negative energy is beyond the floating-point range
    m, cap, beta = 0.7 * scale, 1.3 * scale, 0.4
    pb = pos if n_neg is None else pos[:, None]
    ref = np_pair(name, pb, neg, m=m, cap=cap, beta=beta)
    ref = ref if n_neg is None else ref.sum(-1)

    got = call_pair(name, t64(pos), t64(neg), m=m, cap=cap, beta=beta)
    assert got.dtype == torch.float64 and got.shape == (7,)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-12 * scale)

    got32 = call_pair(name, t64(pos).float(), t64(neg).float(), m=m, cap=cap, beta=beta)
    assert torch.isfinite(got32).all()
    np.testing.assert_allclose(got32.double().numpy(), ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max() + 1e-6)

    for red, f in (("mean", np.mean), ("sum", np.sum)):
        val = call_pair(name, t64(pos), t64(neg), m=m, cap=cap, beta=beta, reduction=red)
        assert val.shape == ()
        np.testing.assert_allclose(val.item(), f(ref), rtol=1e-12)


def test_default_reduction_is_mean():
    pos, neg = t64([0.0, 1.0, 3.0]), t64([0.5, 0.5, 0.5])
    assert L.hinge(pos, neg).item() == pytest.approx(np.mean([0.5, 1.5, 3.5]))
    assert L.log_loss(pos, neg).item() == pytest.approx(np.mean(np.logaddexp(0, [-0.5, 0.5, 2.5])))


def test_margin_per_example_and_per_pair():
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(size=5), rng.normal(size=(5, 3))
    m_ex = rng.uniform(0, 2, size=5)
    m_pair = rng.uniform(0, 2, size=(5, 3))
    got = L.hinge(t64(pos), t64(neg), t64(m_ex), reduction="none")
    np.testing.assert_allclose(got.numpy(), np.maximum(0, m_ex[:, None] + pos[:, None] - neg).sum(-1))
    got = L.hinge(t64(pos), t64(neg), t64(m_pair), reduction="none")
    np.testing.assert_allclose(got.numpy(), np.maximum(0, m_pair + pos[:, None] - neg).sum(-1))
    # a per-example margin with one negative per example
    got = L.simple(t64(pos), t64(neg[:, 0]), t64(m_ex), reduction="none")
    np.testing.assert_allclose(got.numpy(), np.maximum(0, pos) + np.maximum(0, m_ex - neg[:, 0]))


def test_square_exp_tensor_beta_multiplies_the_exponential():
    pos, neg = t64([1.0, 2.0]), t64([[0.0, 1.0], [2.0, 3.0]])
    beta = t64([0.5, 3.0])
    got = L.square_exp(pos, neg, beta, reduction="none")
    # per-pair H summed over the two negatives: the data term counts once per pair
    ref = np.array([2 * 1 + 0.5 * (1 + np.exp(-1)), 2 * 4 + 3.0 * (np.exp(-2) + np.exp(-3))])
    np.testing.assert_allclose(got.numpy(), ref)


def test_square_square_uses_plus_sign():
    # the lecture's table prints a minus; with the minus this would be 1 - 4 = -3
    got = L.square_square(t64([1.0]), t64([0.0]), 2.0, reduction="none")
    assert got.item() == pytest.approx(5.0)


def test_energy_loss_and_perceptron():
    rng = np.random.default_rng(2)
    E = rng.normal(size=(6, 5)) * 1e4
    pos = E[:, 0] + 3.0
    np.testing.assert_allclose(L.energy_loss(t64(pos), reduction="none").numpy(), pos)
    np.testing.assert_allclose(L.energy_loss(t64(pos), t64(E[:, 1])).item(), pos.mean())
    np.testing.assert_allclose(L.perceptron(t64(pos), t64(E), reduction="none").numpy(), pos - E.min(1))
    # a pre-minimized contrastive energy of the batch shape
    np.testing.assert_allclose(L.perceptron(t64(pos), t64(E.min(1)), reduction="sum").item(), (pos - E.min(1)).sum())


def np_nll(E, t, beta):
    logp = -beta * E - np_logsumexp(-beta * E, axis=-1, keepdims=True)
    return -np.take_along_axis(logp, t[:, None], -1)[:, 0] / beta


@pytest.mark.parametrize("scale", [1.0, 1e4])
@pytest.mark.parametrize("beta", [0.3, 1.0, 7.0])
def test_nll_matches_log_softmax(scale, beta):
    rng = np.random.default_rng(3)
    E = rng.normal(size=(8, 6)) * scale
    t = rng.integers(0, 6, size=8)
    got = L.nll(t64(E), torch.tensor(t), beta, reduction="none")
    np.testing.assert_allclose(got.numpy(), np_nll(E, t, beta), rtol=1e-10, atol=1e-10 * scale)
    got32 = L.nll(t64(E).float(), torch.tensor(t), beta, reduction="none")
    assert torch.isfinite(got32).all()
    np.testing.assert_allclose(got32.double().numpy(), np_nll(E, t, beta), rtol=1e-5, atol=1e-5 * scale)


def test_nll_tensor_beta_per_example():
    rng = np.random.default_rng(4)
    E, t = rng.normal(size=(3, 4)), np.array([0, 3, 1])
    beta = np.array([0.5, 1.0, 4.0])
    got = L.nll(t64(E), torch.tensor(t), t64(beta), reduction="none").numpy()
    ref = [np_nll(E[i : i + 1], t[i : i + 1], beta[i])[0] for i in range(3)]
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_nll_tends_to_perceptron():
    rng = np.random.default_rng(5)
    E = torch.tensor(rng.normal(size=(10, 7)), requires_grad=True)
    t = torch.tensor(rng.integers(0, 7, size=10))
    perc = (E.gather(1, t[:, None])[:, 0] - E.min(1).values).detach()
    big = L.nll(E, t, 1e6, reduction="none").detach()
    # the gap is (1/beta) log(#near-minimizers) <= log(7)/1e6, plus rounding
    assert (big - perc).abs().max() < math.log(7) / 1e6 + 1e-9
    assert not torch.equal(L.nll(E, t, 1.0, reduction="none").detach(), perc)
    limit = L.nll(E, t, float("inf"), reduction="none")
    torch.testing.assert_close(limit.detach(), perc, rtol=0, atol=0)
    pos = E.detach().gather(1, t[:, None])[:, 0]
    torch.testing.assert_close(limit.detach(), L.perceptron(pos, E.detach(), reduction="none"))
    # gradient of the limit: +1 on the target, -1 on the argmin
    (g,) = torch.autograd.grad(limit.sum(), E)
    expected = TF.one_hot(t, 7).double() - TF.one_hot(E.argmin(1), 7).double()
    torch.testing.assert_close(g, expected)
    # a tensor beta with infinite entries mixes both regimes
    beta = torch.tensor([1.0, float("inf")], dtype=torch.float64)
    mixed = L.nll(E[:2].detach(), t[:2], beta, reduction="none")
    torch.testing.assert_close(mixed[1], perc[1])
    torch.testing.assert_close(mixed[0], L.nll(E[:1].detach(), t[:1], 1.0, reduction="none")[0])


def test_infinite_energy_excludes_a_candidate():
    E = torch.tensor([[0.0, 1.0, math.inf]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0])
    for fn in (L.nll, L.mee):
        loss = fn(E, t, 2.0)
        ref = fn(E[:, :2].detach(), t, 2.0)
        torch.testing.assert_close(loss.detach(), ref)
        (g,) = torch.autograd.grad(loss, E)
        assert torch.isfinite(g).all() and g[0, 2] == 0


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_mee_matches_numpy(scale):
    rng = np.random.default_rng(6)
    E = rng.normal(size=(8, 5)) * scale
    t = rng.integers(0, 5, size=8)
    beta = 0.8
    p = np.exp(-beta * E - np_logsumexp(-beta * E, axis=-1, keepdims=True))
    ref = 1 - p[np.arange(8), t]
    got = L.mee(t64(E), torch.tensor(t), beta, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-12)
    assert torch.isfinite(L.mee(t64(E).float(), torch.tensor(t), beta)).all()


def test_mee_zero_temperature():
    E = t64([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [2.0, 0.0, 1.0]])
    t = torch.tensor([0, 2, 1])
    np.testing.assert_allclose(L.mee(E, t, float("inf"), reduction="none").numpy(), [0.5, 1.0, 0.0])
    np.testing.assert_allclose(L.mee(E, t, 1e6, reduction="none").numpy(), [0.5, 1.0, 0.0], atol=1e-12)
    # a tensor beta: row 0 at beta = 1, rows 1-2 at zero temperature
    beta = t64([1.0, math.inf, math.inf])
    p0 = np.exp(-E[0].numpy()) / np.exp(-E[0].numpy()).sum()
    np.testing.assert_allclose(L.mee(E, t, beta, reduction="none").numpy(), [1 - p0[0], 1.0, 0.0], rtol=1e-12)


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_general_margin_matches_loop(scale):
    rng = np.random.default_rng(7)
    K = 5
    E = rng.normal(size=(6, K)) * scale
    t = rng.integers(0, K, size=6)
    M = rng.uniform(0, 2, size=(K, K)) * scale  # not symmetric: m(y, y_hat) != m(y_hat, y)
    ref = np.zeros(6)
    for i in range(6):
        for j in range(K):
            if j != t[i]:
                ref[i] += max(0.0, E[i, t[i]] - E[i, j] + M[t[i], j])
    got = L.general_margin(t64(E), torch.tensor(t), t64(M), reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-12 * scale)
    # a scalar margin is the same margin for every pair, and the target itself never counts
    got = L.general_margin(t64(E), torch.tensor(t), 2.0, reduction="none")
    ref = np.array([sum(max(0.0, E[i, t[i]] - E[i, j] + 2.0) for j in range(K) if j != t[i]) for i in range(6)])
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-12 * scale)


@pytest.mark.parametrize("scale", [1.0, 1e4])
@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_info_nce_is_cross_entropy(scale, beta):
    rng = np.random.default_rng(8)
    pos, neg = rng.normal(size=9) * scale, rng.normal(size=(9, 6)) * scale
    got = L.info_nce(t64(pos), t64(neg), beta, reduction="none")
    logits = -beta * torch.cat([t64(pos)[:, None], t64(neg)], dim=1)
    ce = TF.cross_entropy(logits, torch.zeros(9, dtype=torch.long), reduction="none")
    torch.testing.assert_close(got, ce)
    # and the lecture's formula in NumPy
    ref = -(-beta * pos - np_logsumexp(np.concatenate([-beta * pos[:, None], -beta * neg], 1), axis=1))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-10 * scale)
    assert torch.isfinite(L.info_nce(t64(pos).float(), t64(neg).float(), beta)).all()
    # one negative per example: the log loss at inverse temperature beta
    np.testing.assert_allclose(
        L.info_nce(t64(pos), t64(neg[:, 0]), beta, reduction="none").numpy(),
        np.logaddexp(0, beta * (pos - neg[:, 0])),
        rtol=1e-10,
    )


def np_nce(pos, neg, lpn, lnn, c):
    nu = neg.shape[-1]
    g_pos = -pos - c - lpn
    g_neg = -neg - np.asarray(c)[..., None] - lnn
    # -log h(x) - sum log(1 - h(y)),  h = p_m / (p_m + nu p_n)
    return np.logaddexp(0, -(g_pos - np.log(nu))) + np.logaddexp(0, g_neg - np.log(nu)).sum(-1)


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_nce_matches_numpy(scale):
    rng = np.random.default_rng(9)
    pos, neg = rng.normal(size=5) * scale, rng.normal(size=(5, 3)) * scale
    lpn, lnn = rng.normal(size=5), rng.normal(size=(5, 3))
    c = rng.normal(size=5)
    got = L.nce(t64(pos), t64(neg), t64(lpn), t64(lnn), t64(c), reduction="none")
    np.testing.assert_allclose(got.numpy(), np_nce(pos, neg, lpn, lnn, c), rtol=1e-10, atol=1e-10 * scale)
    got32 = L.nce(t64(pos).float(), t64(neg).float(), t64(lpn).float(), t64(lnn).float(), 0.5)
    assert torch.isfinite(got32)
    # one noise sample per data point (nu = 1, log nu = 0)
    got1 = L.nce(t64(pos), t64(neg[:, 0]), t64(lpn), t64(lnn[:, 0]), 0.0, reduction="none")
    ref1 = np.logaddexp(0, pos + lpn) + np.logaddexp(0, -neg[:, 0] - lnn[:, 0])
    np.testing.assert_allclose(got1.numpy(), ref1, rtol=1e-10, atol=1e-10 * scale)


def test_nce_log_partition_gradient_vanishes_at_true_log_z():
    """Data N(0, 1) with energy y^2/2 (true log Z = log sqrt(2 pi)), noise N(0, 2^2), nu = 2 noise samples
    per data point. In expectation dL/dc = E_data[1 - h] - nu E_noise[h] = 0 exactly at c = log Z."""
    gen = torch.Generator().manual_seed(0)
    n, nu, s = 100_000, 2, 2.0
    x = torch.randn(n, generator=gen, dtype=torch.float64)
    y = s * torch.randn(n, nu, generator=gen, dtype=torch.float64)

    def log_noise(u):
        return -0.5 * (u / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))

    log_z = 0.5 * math.log(2 * math.pi)

    def grad_stats(c0):
        c = torch.full((n,), c0, dtype=torch.float64, requires_grad=True)
        loss = L.nce(0.5 * x**2, 0.5 * y**2, log_noise(x), log_noise(y), c, reduction="sum")
        (g,) = torch.autograd.grad(loss, c)  # per-example gradient
        return g.mean().item(), g.std().item() / math.sqrt(n)

    mean, se = grad_stats(log_z)
    assert abs(mean) < 4 * se, (mean, se)
    # away from log Z the gradient is clearly non-zero and points back towards log Z
    for delta in (-0.3, 0.3):
        m_off, se_off = grad_stats(log_z + delta)
        assert math.copysign(1.0, m_off) == math.copysign(1.0, delta)
        assert abs(m_off) > 10 * se_off
    # a learnable scalar log-partition gets the batch-mean of the same gradient
    c = torch.tensor(log_z, dtype=torch.float64, requires_grad=True)
    L.nce(0.5 * x**2, 0.5 * y**2, log_noise(x), log_noise(y), c).backward()
    assert c.grad.item() == pytest.approx(mean, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_nca_matches_numpy(scale):
    rng = np.random.default_rng(10)
    n = 6
    labels = np.array([0, 0, 1, 1, 2, 2])
    D = rng.uniform(0, 1, size=(n, n)) * scale
    beta = 1.5
    ref = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        lp = -beta * D[i, others] - np_logsumexp(-beta * D[i, others])
        same = [k for k, j in enumerate(others) if labels[j] == labels[i]]
        ref[i] = -np_logsumexp(lp[same])
    # candidates without the anchor: [n, n-1]
    idx = np.array([[j for j in range(n) if j != i] for i in range(n)])
    E = np.take_along_axis(D, idx, 1)
    same = labels[idx] == labels[:, None]
    got = L.nca(t64(E), torch.tensor(same), beta, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-10 * scale)
    # the same with the anchor kept in the candidates at energy +inf
    Dinf = D.copy()
    np.fill_diagonal(Dinf, np.inf)
    same_full = labels[None, :] == labels[:, None]
    np.fill_diagonal(same_full, False)
    got = L.nca(t64(Dinf), torch.tensor(same_full), beta, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-10 * scale)
    assert torch.isfinite(L.nca(t64(E).float(), torch.tensor(same), beta)).all()


def test_ml_sampled_value_and_gradient():
    rng = np.random.default_rng(11)
    pos, neg = rng.normal(size=4) * 1e4, rng.normal(size=(4, 5)) * 1e4
    got = L.ml_sampled(t64(pos), t64(neg), reduction="none")
    np.testing.assert_allclose(got.numpy(), pos - neg.mean(1), rtol=1e-12)


def test_ml_sampled_gradient_estimates_nll_gradient():
    """For a finite set of outputs with energies theta, the NLL gradient is onehot(y) - softmax(-theta).
    With negatives drawn exactly from the model, ml_sampled's gradient averages to it."""
    torch.manual_seed(0)
    K, n = 4, 200_000
    theta = torch.tensor([0.0, 1.0, -0.5, 2.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1])
    probs = torch.softmax(-theta.detach(), 0)
    samples = torch.multinomial(probs, n, replacement=True, generator=torch.Generator().manual_seed(1))
    loss = L.ml_sampled(theta[y], theta[samples][None, :])
    (g,) = torch.autograd.grad(loss, theta)
    (g_nll,) = torch.autograd.grad(L.nll(theta[None], y), theta)
    se = torch.sqrt(probs * (1 - probs) / n)
    assert ((g - g_nll).abs() < 5 * se).all(), (g, g_nll)
    # ... while its value is not the NLL
    assert abs(loss.item() - L.nll(theta[None].detach(), y).item()) > 0.5


# ----------------------------------------------------------------------------------------------------------
# gradient signs: the lecture's condition on H
# ----------------------------------------------------------------------------------------------------------

energy = st.floats(-10.0, 10.0, allow_nan=False)
nonneg_energy = st.floats(0.0, 10.0, allow_nan=False)
margin_st = st.floats(0.0, 5.0, allow_nan=False)

# rule inside the margin: "both" = dL/dpos > 0 and dL/dneg < 0; "either" = at least one of the two
# (separable losses push each energy towards its own target, so at a point where one energy already
# sits at its target only the other one moves: the condition of LeCun et al. 2006 rather than the slide's
# literal "strictly increasing in F+ and strictly decreasing in F-").
SIGN_SPECS = {
    "hinge": (energy, "both", lambda p, n, m: n - p < m),
    "log_loss": (energy, "both", lambda p, n, m: True),
    "mce": (energy, "both", lambda p, n, m: True),
    "lvq2": (energy, "both", lambda p, n, m: 0 < p - n < 1.0 + m),  # margin 0, capped at M = 1 + m
    "simple": (energy, "either", lambda p, n, m: n - p < m),
    "min_hinge": (nonneg_energy, "either", lambda p, n, m: n - p < m),
    "square_square": (nonneg_energy, "either", lambda p, n, m: n - p < m),
    "square_hinge": (nonneg_energy, "either", lambda p, n, m: n - p < m),
    "square_exp": (nonneg_energy, "either", lambda p, n, m: True),
}


def _grads(name, p, n, m):
    pos = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    neg = torch.tensor(n, dtype=torch.float64, requires_grad=True)
    loss = call_pair(name, pos, neg, m=m, cap=1.0 + m, beta=0.5 + m, reduction="sum")
    gp, gn = torch.autograd.grad(loss, (pos, neg))
    return gp.item(), gn.item()


@pytest.mark.parametrize("name", sorted(SIGN_SPECS))
def test_pairwise_gradient_signs(name):
    pos_st, rule, inside = SIGN_SPECS[name]

    @SETTINGS
    @given(p=pos_st, n=energy, m=margin_st)
    def check(p, n, m):
        gp, gn = _grads(name, p, n, m)
        assert gp >= 0 and gn <= 0
        # away from the kinks (where a sub-gradient may legitimately be 0)
        kinks = [n - p - m, n - p, p, n - m, p - n - 1.0 - m]
        if inside(p, n, m) and min(abs(k) for k in kinks) > 1e-6:
            if rule == "both":
                assert gp > 0 and gn < 0, (gp, gn)
            else:
                assert gp > 0 or gn < 0, (gp, gn)

    check()


@SETTINGS
@given(p=energy, n=energy)
def test_energy_loss_gradient(p, n):
    pos = torch.tensor([p], dtype=torch.float64, requires_grad=True)
    neg = torch.tensor([n], dtype=torch.float64, requires_grad=True)
    gp, gn = torch.autograd.grad(L.energy_loss(pos, neg), (pos, neg), allow_unused=True)
    assert gp.item() > 0 and (gn is None or gn.item() == 0)  # no contrastive term: margin 0


candidates = st.lists(energy, min_size=2, max_size=6)


@SETTINGS
@given(p=energy, es=candidates)
def test_perceptron_gradient(p, es):
    pos = torch.tensor([p], dtype=torch.float64, requires_grad=True)
    E = torch.tensor([es], dtype=torch.float64, requires_grad=True)
    gp, gE = torch.autograd.grad(L.perceptron(pos, E), (pos, E))
    assert gp.item() > 0 and (gE <= 0).all()
    assert gE.sum().item() == -1.0  # pushes up the best answer only


@SETTINGS
@given(es=candidates, data=st.data(), beta=st.floats(0.1, 2.0), loss=st.sampled_from(["nll", "mee"]))
def test_nll_mee_gradient_signs(es, data, beta, loss):
    t = data.draw(st.integers(0, len(es) - 1))
    # strictness is only representable while every Gibbs probability is far from 0 and 1 in float64
    assume(beta * (max(es) - min(es)) < 30)
    E = torch.tensor([es], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(getattr(L, loss)(E, torch.tensor([t]), beta), E)
    g = g[0]
    others = torch.arange(len(es)) != t
    # infinite margin: strictly increasing in F(y), strictly decreasing in every other energy
    assert g[t] > 0 and (g[others] < 0).all(), g


@SETTINGS
@given(es=candidates, data=st.data(), m=margin_st)
def test_general_margin_gradient_signs(es, data, m):
    t = data.draw(st.integers(0, len(es) - 1))
    E = torch.tensor([es], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(L.general_margin(E, torch.tensor([t]), m), E)
    g = g[0]
    others = torch.arange(len(es)) != t
    assert g[t] >= 0 and (g[others] <= 0).all()
    for j in range(len(es)):
        gap = es[j] - es[t]
        if j != t and gap < m - 1e-6:
            assert g[j] == -1 and g[t] >= 1


@SETTINGS
@given(p=energy, ns=candidates, beta=st.floats(0.1, 2.0))
def test_info_nce_gradient_signs(p, ns, beta):
    pos = torch.tensor([p], dtype=torch.float64, requires_grad=True)
    neg = torch.tensor([ns], dtype=torch.float64, requires_grad=True)
    gp, gn = torch.autograd.grad(L.info_nce(pos, neg, beta), (pos, neg))
    assert gp.item() > 0 and (gn < 0).all()


@SETTINGS
@given(p=energy, ns=candidates, lp=energy, c=energy)
def test_nce_gradient_signs(p, ns, lp, c):
    pos = torch.tensor([p], dtype=torch.float64, requires_grad=True)
    neg = torch.tensor([ns], dtype=torch.float64, requires_grad=True)
    ln = torch.full_like(neg, lp).detach()
    gp, gn = torch.autograd.grad(L.nce(pos, neg, torch.tensor([lp]).double(), ln, c), (pos, neg))
    assert gp.item() > 0 and (gn < 0).all()


@SETTINGS
@given(es=st.lists(energy, min_size=2, max_size=6), data=st.data(), beta=st.floats(0.1, 2.0))
def test_nca_gradient_signs(es, data, beta):
    same = data.draw(st.lists(st.booleans(), min_size=len(es), max_size=len(es)).filter(any))
    E = torch.tensor([es], dtype=torch.float64, requires_grad=True)
    s = torch.tensor([same])
    (g,) = torch.autograd.grad(L.nca(E, s, beta), E)
    g, s = g[0], s[0]
    assert (g[s] >= 0).all() and (g[~s] < 0).all()
    # With other-class candidates, same-class energies are pushed down: the gradient is
    # beta p_i P_other / P_same, strictly positive unless P_other is below float64 resolution next to 1.
    p = torch.softmax(-beta * E.detach()[0], 0)
    if p[~s].sum() > 1e-12:
        assert (g[s] > 0).all()


@SETTINGS
@given(p=energy, ns=candidates)
def test_ml_sampled_gradient_signs(p, ns):
    pos = torch.tensor([p], dtype=torch.float64, requires_grad=True)
    neg = torch.tensor([ns], dtype=torch.float64, requires_grad=True)
    gp, gn = torch.autograd.grad(L.ml_sampled(pos, neg), (pos, neg))
    assert gp.item() == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(gn, torch.full_like(gn, -1.0 / len(ns)))


# ----------------------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------------------

P3, N3 = torch.zeros(3), torch.ones(3)
E34, T3 = torch.zeros(3, 4), torch.tensor([0, 1, 3])


@pytest.mark.parametrize("name", PAIRWISE + ["ml_sampled", "info_nce", "energy_loss"])
def test_mismatched_shapes(name):
    with pytest.raises(ValueError, match=r"neg must have the shape of pos \(3,\)"):
        getattr(L, name)(P3, torch.ones(4))
    with pytest.raises(ValueError, match="neg must have the shape of pos"):
        getattr(L, name)(P3, torch.ones(4, 3))


@pytest.mark.parametrize("name", sorted(WITH_MARGIN))
def test_negative_or_bad_margin(name):
    fn = getattr(L, name)
    with pytest.raises(ValueError, match="margin must be >= 0, got -0.5"):
        fn(P3, N3, -0.5)
    with pytest.raises(ValueError, match="margin must be >= 0, got min -1"):
        fn(P3, N3, torch.tensor([1.0, -1.0, 0.0]))
    with pytest.raises(ValueError, match="margin must be >= 0, got nan"):
        fn(P3, N3, float("nan"))
    with pytest.raises(ValueError, match="margin must be finite"):
        fn(P3, N3, float("inf"))
    with pytest.raises(ValueError, match="margin must broadcast"):
        fn(P3, N3, torch.ones(5))
    with pytest.raises(TypeError, match="margin must be a non-negative number"):
        fn(P3, N3, "1")


def test_lvq2_cap():
    with pytest.raises(ValueError, match="cap must be > 0"):
        L.lvq2(P3, N3, 0.0)
    with pytest.raises(ValueError, match="cap must be >= 0"):
        L.lvq2(P3, N3, -1.0)
    assert L.lvq2(t64([5.0]), t64([0.0]), float("inf")).item() == 5.0


@pytest.mark.parametrize(
    "call",
    [
        lambda b: L.square_exp(P3, N3, b),
        lambda b: L.info_nce(P3, N3, b),
        lambda b: L.nca(E34, torch.ones(3, 4, dtype=torch.bool), b),
        lambda b: L.nll(E34, T3, b),
        lambda b: L.mee(E34, T3, b),
    ],
)
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), torch.tensor([1.0, 0.0, 1.0])])
def test_bad_beta(call, bad):
    with pytest.raises(ValueError, match="beta must be > 0"):
        call(bad)


def test_beta_inf_only_where_defined():
    for call in (lambda: L.square_exp(P3, N3, math.inf), lambda: L.info_nce(P3, N3, math.inf),
                 lambda: L.nca(E34, torch.ones(3, 4, dtype=torch.bool), math.inf)):
        with pytest.raises(ValueError, match="beta = inf"):
            call()
    assert torch.isfinite(L.nll(E34, T3, math.inf)) and torch.isfinite(L.mee(E34, T3, math.inf))


@pytest.mark.parametrize("bad", ["avg", None, "Mean"])
def test_unknown_reduction(bad):
    for call in (lambda: L.hinge(P3, N3, reduction=bad), lambda: L.nll(E34, T3, reduction=bad),
                 lambda: L.nca(E34, torch.ones(3, 4, dtype=torch.bool), reduction=bad),
                 lambda: L.nce(P3, N3, P3, N3, reduction=bad)):
        with pytest.raises(ValueError, match="reduction must be one of 'none', 'mean' or 'sum'"):
            call()


@pytest.mark.parametrize("name", ["nll", "mee", "general_margin"])
def test_bad_target(name):
    fn = getattr(L, name)
    with pytest.raises(ValueError, match=r"target indices must be in \[0, 4\).*got 4"):
        fn(E34, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"target indices must be in \[0, 4\).*got -1"):
        fn(E34, torch.tensor([0, -1, 1]))
    with pytest.raises(ValueError, match=r"target must have the batch shape of energies \(3,\)"):
        fn(E34, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="target must be a tensor of integer indices"):
        fn(E34, torch.tensor([0.0, 1.0, 2.0]))


def test_other_bad_inputs():
    with pytest.raises(TypeError, match="pos must be a torch.Tensor"):
        L.hinge([0.0], N3)
    with pytest.raises(TypeError, match="neg must be a floating-point tensor"):
        L.hinge(P3, torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="energies must have the shape of pos"):
        L.perceptron(P3, torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"margin must be a scalar or a \[K, K\] = \[4, 4\] matrix"):
        L.general_margin(E34, T3, torch.ones(3, 3))
    with pytest.raises(ValueError, match="margin must be >= 0"):
        L.general_margin(E34, T3, -torch.ones(4, 4))
    with pytest.raises(ValueError, match=r"log_noise_pos must have the shape of pos \(3,\)"):
        L.nce(P3, torch.ones(3, 2), torch.zeros(2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"log_noise_neg must have the shape of neg \(3, 2\)"):
        L.nce(P3, torch.ones(3, 2), P3, torch.zeros(3))
    with pytest.raises(ValueError, match="log_partition must be finite"):
        L.nce(P3, N3, P3, N3, float("nan"))
    with pytest.raises(ValueError, match="log_partition must broadcast"):
        L.nce(P3, N3, P3, N3, torch.zeros(2))
    with pytest.raises(TypeError, match="same must be a boolean tensor"):
        L.nca(E34, torch.ones(3, 4))
    with pytest.raises(ValueError, match="same must have the shape of energies"):
        L.nca(E34, torch.ones(3, 3, dtype=torch.bool))
    same = torch.ones(3, 4, dtype=torch.bool)
    same[1] = False
    with pytest.raises(ValueError, match=r"same must mark at least one same-class candidate.*anchor \(1,\)"):
        L.nca(E34, same)
