"""Structured prediction in float32 agrees with the same computation in float64.

Every float32 computation is compared with the float64 computation on the same inputs (the float32
tensors cast to float64) at ``beta * |E|`` of 1, 1e2, 1e4 and 1e6, reached both through the size of the
energies (``beta = 1``) and through ``beta`` (energies of size 1), and on near-ties: energies of size
``s`` whose differences are of size 1, the hard case, where every path's energy is about ``T * s`` and
the probabilities depend on differences 1e6 times smaller. Probabilities and gradients (both O(1)) must
agree to 1e-4 absolutely, free energies (which scale with ``beta * |E|``) to 1e-4 relatively.

Also: ``square_exp`` stays finite wherever its value is, pairwise energies of a wrong shape raise, and a
NaN arc energy raises instead of giving NaN, ``+inf`` or a zero loss.
"""

import math

import pytest
import torch

from pyro_ebm import losses
from pyro_ebm.structured import (
    Graph,
    LinearChainGibbs,
    chain_free_energy,
    chain_marginals,
    forward_score,
    graph_hinge,
    graph_nll,
    kbest,
    sample_chain,
    soft_dtw,
    viterbi,
    viterbi_path,
    viterbi_score,
)

SCALES = [1.0, 1e2, 1e4, 1e6]
# (kind, s): "energy" draws energies s * N(0, 1) at beta = 1, "beta" draws N(0, 1) at beta = s, "tie" draws
# s + N(0, 1) at beta = 1 (rounded to float32: spacing 0.06 at 1e6)
CASES = [(kind, s) for s in SCALES for kind in ("energy", "beta")] + [("tie", 1e4), ("tie", 1e6)]
IDS = [f"{kind}-{s:g}" for kind, s in CASES]
ATOL, RTOL = 1e-4, 1e-4


def draw(kind, s, shape, gen):
    """Float32 energies of ``shape`` and the beta for a case."""
    z = torch.randn(shape, generator=gen, dtype=torch.float64)
    if kind == "energy":
        return (s * z).float(), 1.0
    if kind == "beta":
        return z.float(), s
    return (s + z).float(), 1.0


def close_values(v32, v64):
    """Relative agreement of values that scale with beta * |E|."""
    err = (v32.double() - v64).abs().max().item()
    assert err <= RTOL * max(v64.abs().max().item(), 1.0), (err, v64)


def close_probs(p32, p64):
    err = (p32.double() - p64).abs().max().item()
    assert err <= ATOL, err


def grads(f, *xs):
    return torch.autograd.grad(f(*xs).sum(), xs)


# ----------------------------------------------------------------------------------------------------------
# chains
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, s", CASES, ids=IDS)
@pytest.mark.parametrize("per_step", [False, True], ids=["shared", "per_step"])
def test_chain_float32_agrees_with_float64(kind, s, per_step):
    B, T, K = 3, 9, 4
    gen = torch.Generator().manual_seed(int(math.log10(s)) + 10 * per_step)
    u32, beta = draw(kind, s, (B, T, K), gen)
    p32, _ = draw(kind, s, (B, T - 1, K, K) if per_step else (K, K), gen)
    a32, _ = draw(kind, s, (K,), gen)
    lengths = torch.tensor([T, 6, 1])
    u64, p64, a64 = u32.double(), p32.double(), a32.double()

    for n in (None, lengths):
        m32 = chain_marginals(u32, p32, beta, a32, lengths=n, edges=True)
        m64 = chain_marginals(u64, p64, beta, a64, lengths=n, edges=True)
        for x32, x64 in zip(m32, m64):
            assert x32.dtype == torch.float32 and torch.isfinite(x32).all()
            close_probs(x32, x64)
        node = m32[0] if n is None else m32[0][0]
        assert (node.sum(-1) - 1).abs().max() <= ATOL

        def free(u, p, a):
            return chain_free_energy(u, p, beta, a, lengths=n)

        x32 = [t.clone().requires_grad_() for t in (u32, p32, a32)]
        x64 = [t.clone().requires_grad_() for t in (u64, p64, a64)]
        close_values(free(*x32).detach(), free(*x64).detach())
        (gu32, gp32, ga32), (gu64, gp64, ga64) = grads(free, *x32), grads(free, *x64)
        close_probs(gu32, gu64)  # the node marginals
        close_probs(ga32, ga64)
        # a shared pairwise's gradient sums B * (T - 1) pair marginals: compare their mean
        scale = 1.0 if per_step else B * (T - 1)
        close_probs(gp32 / scale, gp64 / scale)


def test_chain_near_ties_are_not_trivial():
    """At 1e6 the near-tie marginals are far from one-hot (so the test above compares real numbers) and
    agree with the brute-force enumeration of all labellings."""
    import itertools

    B, T, K = 1, 4, 3
    gen = torch.Generator().manual_seed(5)
    u, _ = draw("tie", 1e6, (B, T, K), gen)
    p, _ = draw("tie", 1e6, (K, K), gen)
    node = chain_marginals(u, p)[0]
    assert 0.05 < node.max(-1).values.min() and node.max(-1).values.max() < 0.95
    ud, pd = u.double(), p.double()
    paths = list(itertools.product(range(K), repeat=T))
    e = torch.stack([sum(ud[0, t, y[t]] for t in range(T)) + sum(pd[y[t], y[t + 1]] for t in range(T - 1))
                     for y in paths])
    w = torch.softmax(-(e - e.min()), 0)
    ref = torch.zeros(T, K, dtype=torch.float64)
    for y, q in zip(paths, w):
        ref[range(T), list(y)] += q
    close_probs(node, ref)


# ----------------------------------------------------------------------------------------------------------
# soft-DTW and graphs
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, s", CASES, ids=IDS)
def test_soft_dtw_float32_agrees_with_float64(kind, s):
    gen = torch.Generator().manual_seed(int(math.log10(s)) + 100)
    c32, beta = draw(kind, s, (3, 7, 9), gen)
    lengths = (torch.tensor([7, 5, 2]), torch.tensor([9, 9, 3]))
    for n in (None, lengths):
        x32, x64 = c32.clone().requires_grad_(), c32.double().requires_grad_()
        v32, v64 = soft_dtw(x32, beta, lengths=n), soft_dtw(x64, beta, lengths=n)
        assert v32.dtype == torch.float32
        close_values(v32.detach(), v64.detach())
        (g32,), (g64,) = torch.autograd.grad(v32.sum(), x32), torch.autograd.grad(v64.sum(), x64)
        assert g32.dtype == torch.float32
        close_probs(g32, g64)  # the expected alignment matrix


def lattice(levels=6, width=3):
    """All arcs between consecutive levels, plus arcs that skip a level: paths have different lengths."""
    g = Graph()
    nodes = [[g.add_node(start=level == 0, accept=level == levels) for _ in range(width)]
             for level in range(levels + 1)]
    for level in range(levels):
        for i in range(width):
            for j in range(width):
                g.add_arc(nodes[level][i], nodes[level + 1][j], j)
            if level + 2 <= levels:
                g.add_arc(nodes[level][i], nodes[level + 2][i], i)
    return g


@pytest.mark.parametrize("kind, s", CASES, ids=IDS)
def test_forward_score_float32_agrees_with_float64(kind, s):
    g = lattice()
    gen = torch.Generator().manual_seed(int(math.log10(s)) + 200)
    e32, beta = draw(kind, s, (4, g.num_arcs), gen)
    x32, x64 = e32.clone().requires_grad_(), e32.double().requires_grad_()
    v32, v64 = forward_score(g.with_energy(x32), beta), forward_score(g.with_energy(x64), beta)
    assert v32.dtype == torch.float32
    close_values(v32.detach(), v64.detach())
    (g32,), (g64,) = torch.autograd.grad(v32.sum(), x32), torch.autograd.grad(v64.sum(), x64)
    assert g32.dtype == torch.float32
    close_probs(g32, g64)  # the arc posteriors


# ----------------------------------------------------------------------------------------------------------
# square_exp
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "neg, beta",
    [(-100.0, 1e-10), (-100.0, 1e-30), (-80.0, 1.0), (80.0, 1.0), (100.0, 1e30), (110.0, 1e30), (3.0, 0.5)],
)
def test_square_exp_is_finite_and_correct_in_float32(neg, beta):
    """``beta * exp(-F)`` is computed as ``exp(log beta - F)``: finite whenever the value fits in float32
    (``1e-10 * e^100 = 2.7e33``), and a large beta does not multiply an underflowed ``e^-F``."""
    pos = torch.tensor([2.0, 0.0])
    n32 = torch.tensor([neg, neg], requires_grad=True)
    loss = losses.square_exp(pos, n32, beta, reduction="none")
    (g,) = torch.autograd.grad(loss.sum(), n32)
    ref = beta * math.exp(-neg)
    assert torch.isfinite(loss).all() and torch.isfinite(g).all()
    assert loss[1].item() == pytest.approx(ref, rel=1e-5, abs=0)
    assert loss[0].item() == pytest.approx(4.0 + ref, rel=1e-5, abs=0)
    assert g[0].item() == pytest.approx(-ref, rel=1e-5, abs=0)


def test_square_exp_tensor_beta_and_out_of_range():
    neg = torch.tensor([-100.0, -100.0, 50.0])
    beta = torch.tensor([1e-12, 1e-20, 2.0], dtype=torch.float64)  # tiny betas kept in their own precision
    got = losses.square_exp(torch.zeros(3), neg, beta, reduction="none")
    ref = [b * math.exp(-n) for b, n in zip(beta.tolist(), neg.tolist())]
    assert got.dtype == torch.float32
    assert got.tolist() == pytest.approx(ref, rel=1e-5, abs=0)
    # beta = 1 at F = -100: the value, e^100 = 2.7e43, exceeds float32 (max 3.4e38); float64 holds it
    assert losses.square_exp(torch.zeros(1), torch.tensor([-100.0]), 1.0).item() == math.inf
    f64 = losses.square_exp(torch.zeros(1, dtype=torch.float64), torch.tensor([-100.0], dtype=torch.float64), 1.0)
    assert f64.item() == pytest.approx(math.exp(100.0), rel=1e-12)


# ----------------------------------------------------------------------------------------------------------
# shapes and NaN arc energies
# ----------------------------------------------------------------------------------------------------------


CHAIN_CALLS = {
    "chain_free_energy": lambda u, p: chain_free_energy(u, p),
    "viterbi": lambda u, p: viterbi(u, p),
    "chain_marginals": lambda u, p: chain_marginals(u, p),
    "sample_chain": lambda u, p: sample_chain(u, p, generator=0),
    "kbest": lambda u, p: kbest(u, p, 2),
    "LinearChainGibbs": lambda u, p: LinearChainGibbs(u, p),
}


@pytest.mark.parametrize("name", sorted(CHAIN_CALLS))
def test_pairwise_with_a_trailing_dimension_raises(name):
    # K = T - 1: a [K, K, 1] pairwise broadcasts to batch + (T-1, K, K), so a shape check on broadcasting
    # alone would let it through with its axes mixed up
    T, K = 4, 3
    u = torch.randn(2, T, K)
    p = torch.randn(K, K)
    CHAIN_CALLS[name](u, p)  # the right shape works
    with pytest.raises(ValueError, match=r"pairwise must have shape \[K, K\] = \[3, 3\] or batch \+ \(T-1, K, K\)"):
        CHAIN_CALLS[name](u, p[..., None])
    with pytest.raises(ValueError, match="pairwise must have shape"):
        CHAIN_CALLS[name](u, torch.randn(2, T - 1, K, 1))


def test_initial_with_a_trailing_dimension_raises():
    u = torch.randn(2, 4, 3)
    with pytest.raises(ValueError, match=r"initial must have shape \[K\] = \[3\]"):
        chain_free_energy(u, torch.zeros(3, 3), initial=torch.zeros(3, 1))
    # broadcastable leading dimensions stay legal: one pairwise per sequence, shared over time
    f = chain_free_energy(u, torch.zeros(2, 1, 3, 3))
    assert torch.allclose(f, chain_free_energy(u, torch.zeros(3, 3)))


def two_arcs(energy):
    g = Graph()
    a, b = g.add_node(start=True), g.add_node(accept=True)
    g.add_arc(a, b, 0, energy=energy)
    g.add_arc(a, b, 1, energy=2.0)
    return g


def test_nan_arc_energy_raises():
    w = torch.tensor(1.0, requires_grad=True)
    g = two_arcs(w)
    with torch.no_grad():
        w.fill_(math.nan)  # a learnable energy that diverged after the graph was built
    for call in (lambda: forward_score(g), lambda: viterbi_score(g), lambda: viterbi_path(g)):
        with pytest.raises(ValueError, match=r"graphs has an arc energy that is NaN \(arc 0"):
            call()
    with pytest.raises(ValueError, match=r"graphs\[1\] has an arc energy that is NaN"):
        forward_score([two_arcs(0.5), g])
    ok = two_arcs(0.5)
    with pytest.raises(ValueError, match="target has an arc energy that is NaN"):
        graph_hinge(g, ok)
    with pytest.raises(ValueError, match="wrong has an arc energy that is NaN"):
        graph_hinge(ok, g)
    with pytest.raises(ValueError, match="full has an arc energy that is NaN"):
        graph_nll(ok, g)
    e = torch.zeros(3, 2)
    batched = ok.with_energy(e)
    e[1, 1] = math.nan  # changed in place after with_energy checked it
    with pytest.raises(ValueError, match=r"arc 1 at batch index \(1,\)"):
        forward_score(batched)


def test_inf_arc_energy_still_forbids_the_arc():
    w = torch.tensor(1.0, requires_grad=True)
    g = two_arcs(w)
    with torch.no_grad():
        w.fill_(math.inf)
    f = forward_score(g)
    f.backward()
    assert f.item() == 2.0 and w.grad.item() == 0.0
    assert viterbi_score(g).item() == 2.0
    assert graph_hinge(two_arcs(0.5), g, margin=1.0).item() == 0.0
