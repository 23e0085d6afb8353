"""Chain factor graphs: every number against brute-force enumeration of all K^T labellings, finite
differences, and pytorch-crf (an established CRF implementation; scores = minus energies)."""

import itertools
import math

import pytest
import torch

from pyro_ebm.structured import (
    Semiring,
    chain_energy,
    chain_free_energy,
    chain_marginals,
    kbest,
    pad_sequences,
    sample_chain,
    viterbi,
)

INF = math.inf
BETAS = [0.3, 1.0, 4.0, 1e6]


def random_chain(B=3, T=4, K=3, seed=0, per_time=False, ends=True, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    unary = torch.randn(B, T, K, generator=g, dtype=dtype)
    pairwise = torch.randn((B, T - 1, K, K) if per_time else (K, K), generator=g, dtype=dtype)
    initial = torch.randn(K, generator=g, dtype=dtype) if ends else None
    final = torch.randn(B, K, generator=g, dtype=dtype) if ends else None
    return unary, pairwise, initial, final


def brute_energies(unary, pairwise, initial=None, final=None, lengths=None):
    """Energies of all labellings of each sequence by explicit loops: a list of (paths, energies)."""
    B, T, K = unary.shape
    out = []
    for b in range(B):
        n = T if lengths is None else int(lengths[b])
        paths, energies = [], []
        for y in itertools.product(range(K), repeat=n):
            e = sum(float(unary[b, t, y[t]]) for t in range(n))
            for t in range(n - 1):
                p = pairwise if pairwise.dim() == 2 else pairwise[b, t]
                e += float(p[y[t], y[t + 1]])
            if initial is not None:
                e += float(initial[..., y[0]].reshape(-1)[0] if initial.dim() == 1 else initial[b, y[0]])
            if final is not None:
                e += float(final[y[-1]] if final.dim() == 1 else final[b, y[-1]])
            paths.append(y)
            energies.append(e)
        out.append((paths, torch.tensor(energies, dtype=torch.float64)))
    return out


def brute_free(energies, beta):
    if math.isinf(beta):
        return float(energies.min())
    return float(-torch.logsumexp(-beta * energies, 0) / beta)


def brute_marginals(paths, energies, beta, T, K):
    w = torch.softmax(-beta * energies, 0)
    node = torch.zeros(T, K, dtype=torch.float64)
    edge = torch.zeros(max(T - 1, 0), K, K, dtype=torch.float64)
    for y, p in zip(paths, w):
        for t in range(len(y)):
            node[t, y[t]] += p
        for t in range(len(y) - 1):
            edge[t, y[t], y[t + 1]] += p
    return node, edge


def test_semiring_sum_is_soft_min_and_tropical_limit():
    x = torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64)
    for beta in BETAS:
        expect = -math.log(sum(math.exp(-beta * (v + 1.0)) for v in x.tolist())) / beta - 1.0
        assert Semiring(beta).sum(x, 0).item() == pytest.approx(expect, abs=1e-12)
    assert Semiring(INF).sum(x, 0).item() == -1.0
    a, b = torch.tensor([1.0, INF]), torch.tensor([INF, INF])
    assert Semiring(2.0).plus(a, b).tolist() == [1.0, INF]  # +inf is the semiring zero
    m = torch.randn(2, 3, 4, dtype=torch.float64)
    n = torch.randn(4, 5, dtype=torch.float64)
    ref = -torch.logsumexp(-2.0 * (m[..., :, :, None] + n[None, :, :]), dim=-2) / 2.0
    assert torch.allclose(Semiring(2.0).matmul(m, n), ref)


@pytest.mark.parametrize("per_time", [False, True])
@pytest.mark.parametrize("beta", BETAS + [INF])
def test_free_energy_equals_brute_force(beta, per_time):
    unary, pairwise, initial, final = random_chain(per_time=per_time, seed=int(per_time))
    f = chain_free_energy(unary, pairwise, beta=beta, initial=initial, final=final)
    for b, (_, e) in enumerate(brute_energies(unary, pairwise, initial, final)):
        assert f[b].item() == pytest.approx(brute_free(e, beta), abs=1e-10)


@pytest.mark.parametrize("beta", [1.0, 1e6, INF])
def test_variable_lengths_equal_brute_force_of_each_prefix(beta):
    unary, pairwise, initial, final = random_chain(B=4, T=5, K=2, per_time=True, seed=3)
    lengths = torch.tensor([5, 1, 3, 2])
    f = chain_free_energy(unary, pairwise, beta=beta, initial=initial, final=final, lengths=lengths)
    ev, path = viterbi(unary, pairwise, initial=initial, final=final, lengths=lengths)
    for b, (paths, e) in enumerate(brute_energies(unary, pairwise, initial, final, lengths)):
        assert f[b].item() == pytest.approx(brute_free(e, beta), abs=1e-9)
        n = int(lengths[b])
        assert ev[b].item() == pytest.approx(float(e.min()), abs=1e-12)
        assert tuple(path[b, :n].tolist()) == paths[int(e.argmin())]
        assert (path[b, n:] == -1).all()
    # padding content is ignored
    noisy = unary.clone()
    noisy[1, 1:] = math.nan
    assert torch.allclose(chain_free_energy(noisy, pairwise, beta=1.0, initial=initial, final=final, lengths=lengths),
                          chain_free_energy(unary, pairwise, beta=1.0, initial=initial, final=final, lengths=lengths))


def test_viterbi_equals_brute_force_argmin_and_beta_to_inf_limit():
    unary, pairwise, initial, final = random_chain(B=5, T=5, K=3, seed=7)
    energy, path = viterbi(unary, pairwise, initial, final)
    for b, (paths, e) in enumerate(brute_energies(unary, pairwise, initial, final)):
        assert energy[b].item() == pytest.approx(float(e.min()), abs=1e-12)
        assert tuple(path[b].tolist()) == paths[int(e.argmin())]
    assert torch.allclose(chain_energy(path, unary, pairwise, initial, final), energy)
    # F_beta <= min E, and min E - F_beta <= log(K^T) / beta
    for beta in [1.0, 10.0, 1e3, 1e6]:
        gap = energy - chain_free_energy(unary, pairwise, beta, initial, final)
        assert (gap >= -1e-12).all() and (gap <= 5 * math.log(3) / beta + 1e-9).all()


@pytest.mark.parametrize("beta", [0.5, 2.0, 1e6])
def test_marginals_equal_brute_force(beta):
    unary, pairwise, initial, final = random_chain(B=2, T=4, K=3, per_time=True, seed=11)
    node, edge = chain_marginals(unary, pairwise, beta, initial, final, edges=True)
    for b, (paths, e) in enumerate(brute_energies(unary, pairwise, initial, final)):
        bn, be = brute_marginals(paths, e, beta, 4, 3)
        assert torch.allclose(node[b], bn, atol=1e-9)
        assert torch.allclose(edge[b], be, atol=1e-9)


def test_gradient_is_marginals_and_passes_finite_differences():
    unary, pairwise, initial, final = random_chain(B=2, T=4, K=3, seed=5)
    for t in (unary, pairwise, initial, final):
        t.requires_grad_(True)
    torch.autograd.gradcheck(lambda *a: chain_free_energy(*a[:2], 0.7, *a[2:]), (unary, pairwise, initial, final))
    pw = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    n = torch.tensor([4, 2])
    torch.autograd.gradcheck(lambda u, p: chain_free_energy(u, p, 1.3, lengths=n), (unary, pw))
    f = chain_free_energy(unary, pairwise, 0.7, initial, final)
    gu, gp = torch.autograd.grad(f.sum(), (unary, pairwise))
    node, edge = chain_marginals(unary, pairwise, 0.7, initial, final, edges=True)
    assert torch.allclose(gu, node) and torch.allclose(gp, edge.sum((0, 1)))


def test_gradient_equals_autograd_through_a_plain_recursion():
    """The custom backward sweep against autograd through an independent textbook forward recursion."""
    unary, pairwise, initial, final = random_chain(B=3, T=6, K=4, per_time=True, seed=8)
    beta = 1.7

    def plain(u, p, a, b):
        msg = -beta * (a + u[:, 0])
        for t in range(1, u.shape[1]):
            msg = torch.logsumexp(msg[:, :, None] - beta * p[:, t - 1], 1) - beta * u[:, t]
        return -torch.logsumexp(msg - beta * b, 1) / beta

    args = [t.clone().requires_grad_(True) for t in (unary, pairwise, initial, final)]
    ref = torch.autograd.grad(plain(*args).sum(), args)
    ours = torch.autograd.grad(chain_free_energy(args[0], args[1], beta, args[2], args[3]).sum(), args)
    for r, o in zip(ref, ours):
        assert torch.allclose(r, o, atol=1e-12)


def test_gradient_at_zero_temperature_is_the_viterbi_path():
    unary, pairwise, initial, final = random_chain(B=3, T=6, K=4, seed=2)
    unary.requires_grad_(True)
    (g,) = torch.autograd.grad(chain_free_energy(unary, pairwise, INF, initial, final).sum(), unary)
    _, path = viterbi(unary, pairwise, initial, final)
    assert torch.equal(g, torch.nn.functional.one_hot(path, 4).double())
    assert torch.equal(chain_marginals(unary, pairwise, INF, initial, final), g)


def test_lecture_factor_graph_as_a_trellis():
    """Z1 (2 values) -Eb- Y1 (2) -Ec- Y2 (2) -Ed- Z2 (3), with Ea on Z1: 16 factor values on trellis arcs,
    24 configurations; missing labels of the 2-valued variables are forbidden (+inf) in a K = 3 trellis."""
    g = torch.Generator().manual_seed(4)
    Ea, Eb, Ec, Ed = (torch.rand(s, generator=g, dtype=torch.float64) * 3 for s in [(2,), (2, 2), (2, 2), (2, 3)])
    K = 3
    pw = torch.full((1, 3, K, K), INF, dtype=torch.float64)
    pw[0, 0, :2, :2], pw[0, 1, :2, :2], pw[0, 2, :2, :3] = Eb, Ec, Ed
    initial = torch.tensor([Ea[0], Ea[1], INF], dtype=torch.float64)
    unary = torch.zeros(1, 4, K, dtype=torch.float64)
    configs = list(itertools.product(range(2), range(2), range(2), range(3)))
    energies = torch.tensor([float(Ea[a] + Eb[a, b] + Ec[b, c] + Ed[c, d]) for a, b, c, d in configs], dtype=torch.float64)
    e, path = viterbi(unary, pw, initial=initial)
    assert e.item() == pytest.approx(float(energies.min()))
    assert tuple(path[0].tolist()) == configs[int(energies.argmin())]
    for beta in (1.0, 3.0):
        assert chain_free_energy(unary, pw, beta, initial).item() == pytest.approx(brute_free(energies, beta))
    # 24 paths of finite energy: with all factors zero, F_1 = -log 24
    zero = torch.where(torch.isinf(pw), pw, torch.zeros_like(pw))
    assert chain_free_energy(unary, zero, 1.0, torch.tensor([0.0, 0.0, INF])).item() == pytest.approx(-math.log(24))
    ke, kp = kbest(unary, pw, 30, initial=initial)
    assert torch.allclose(ke[0, :24], energies.sort().values) and torch.isinf(ke[0, 24:]).all()


@pytest.mark.parametrize("per_time", [False, True])
def test_kbest_equals_sorted_enumeration(per_time):
    unary, pairwise, initial, final = random_chain(B=3, T=4, K=3, per_time=per_time, seed=9)
    lengths = torch.tensor([4, 3, 1])
    energies, paths = kbest(unary, pairwise, 7, initial, final, lengths=lengths)
    for b, (bp, e) in enumerate(brute_energies(unary, pairwise, initial, final, lengths)):
        n = int(lengths[b])
        order = e.argsort()
        m = min(7, len(bp))
        assert torch.allclose(energies[b, :m], e[order[:m]])
        assert [tuple(p[:n]) for p in paths[b, :m].tolist()] == [bp[int(i)] for i in order[:m]]
        assert torch.isinf(energies[b, m:]).all()
    e1, p1 = kbest(unary, pairwise, 1, initial, final)
    ev, pv = viterbi(unary, pairwise, initial, final)
    assert torch.allclose(e1[:, 0], ev) and torch.equal(p1[:, 0], pv)


def test_samples_follow_the_gibbs_distribution():
    """Chi-square test of 20000 exact (independent) draws over the 3^3 labellings, for two sequences."""
    from scipy.stats import chisquare

    unary, pairwise, initial, final = random_chain(B=2, T=3, K=3, per_time=True, seed=13)
    beta = 0.8
    g = torch.Generator().manual_seed(0)
    y = sample_chain(unary, pairwise, beta, initial, final, sample_shape=(20000,), generator=g)
    assert y.shape == (20000, 2, 3)
    for b, (paths, e) in enumerate(brute_energies(unary, pairwise, initial, final)):
        probs = torch.softmax(-beta * e, 0)
        index = {p: i for i, p in enumerate(paths)}
        counts = torch.bincount(torch.tensor([index[tuple(r)] for r in y[:, b].tolist()]), minlength=len(paths))
        assert chisquare(counts.numpy(), (probs * 20000).numpy()).pvalue > 1e-3
    g2 = torch.Generator().manual_seed(0)
    assert torch.equal(y, sample_chain(unary, pairwise, beta, initial, final, sample_shape=(20000,), generator=g2))
    z = sample_chain(unary, pairwise, INF, initial, final, sample_shape=(4,))
    assert torch.equal(z, viterbi(unary, pairwise, initial, final)[1].expand(4, 2, 3))
    assert torch.equal(sample_chain(unary, pairwise, beta, sample_shape=(7,), generator=3),
                       sample_chain(unary, pairwise, beta, sample_shape=(7,), generator=3))
    n = sample_chain(unary, pairwise, beta, lengths=torch.tensor([3, 1]), sample_shape=(5,))
    assert (n[:, 1, 1:] == -1).all() and (n[:, 0] >= 0).all()


def test_batch_dimensions_and_float32():
    unary, pairwise, initial, final = random_chain(B=6, T=5, K=3, seed=1)
    f = chain_free_energy(unary, pairwise, 1.0, initial, final)
    f2 = chain_free_energy(unary.reshape(2, 3, 5, 3), pairwise, 1.0, initial, final.reshape(2, 3, 3))
    assert f2.shape == (2, 3) and torch.allclose(f2.reshape(6), f)
    f32 = chain_free_energy(unary.float(), pairwise.float(), 1.0, initial.float(), final.float())
    assert f32.dtype == torch.float32 and torch.allclose(f32.double(), f, atol=1e-5)
    e, p = viterbi(unary.reshape(2, 3, 5, 3), pairwise)
    assert e.shape == (2, 3) and p.shape == (2, 3, 5)


def test_single_step_and_single_label():
    u = torch.tensor([[[1.0, 2.0]]], dtype=torch.float64)
    assert chain_free_energy(u, torch.zeros(2, 2), 1.0).item() == pytest.approx(-math.log(math.exp(-1) + math.exp(-2)))
    u1 = torch.randn(2, 4, 1, dtype=torch.float64)
    assert torch.allclose(chain_free_energy(u1, torch.ones(1, 1), 2.0), u1.sum((1, 2)) + 3.0)


def test_pytorch_crf_log_likelihood_and_decode_agree():
    torchcrf = pytest.importorskip("torchcrf")
    B, T, K = 4, 7, 5
    unary, pairwise, initial, final = random_chain(B=B, T=T, K=K, seed=21, ends=False)
    initial, final = torch.randn(K, dtype=torch.float64), torch.randn(K, dtype=torch.float64)
    crf = torchcrf.CRF(K, batch_first=True).double()
    with torch.no_grad():
        crf.transitions.copy_(-pairwise)
        crf.start_transitions.copy_(-initial)
        crf.end_transitions.copy_(-final)
    lengths = torch.tensor([7, 3, 5, 1])
    mask = torch.arange(T) < lengths[:, None]
    tags = torch.randint(0, K, (B, T), generator=torch.Generator().manual_seed(0)) * mask
    ll = crf(-unary, tags, mask=mask, reduction="none")
    e = chain_energy(tags, unary, pairwise, initial, final, lengths=lengths)
    f = chain_free_energy(unary, pairwise, 1.0, initial, final, lengths=lengths)
    assert torch.allclose(ll, -(e - f), atol=1e-10)
    _, path = viterbi(unary, pairwise, initial, final, lengths=lengths)
    decoded = crf.decode(-unary, mask=mask)
    assert [path[b, : lengths[b]].tolist() for b in range(B)] == decoded


def test_bad_input_names_the_argument():
    u, p, _, _ = random_chain()
    with pytest.raises(TypeError, match="unary.*lengths"):
        chain_free_energy([torch.zeros(3, 2), torch.zeros(4, 2)], p)
    with pytest.raises(ValueError, match="unary must be finite"):
        chain_free_energy(torch.tensor([[[0.0, math.nan]]]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="unary must have T >= 1"):
        chain_free_energy(torch.zeros(2, 0, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="beta must be > 0"):
        chain_free_energy(u, p, beta=0.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        chain_marginals(u, p, beta=-1.0)
    with pytest.raises(ValueError, match="pairwise must have shape"):
        chain_free_energy(u, torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="pairwise must have shape"):
        viterbi(u, torch.zeros(3, 2, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="pairwise must be finite or \\+inf"):
        chain_free_energy(u, torch.full((3, 3), -math.inf, dtype=torch.float64))
    with pytest.raises(ValueError, match="lengths must lie in"):
        chain_free_energy(u, p, lengths=torch.tensor([0, 2, 3]))
    with pytest.raises(ValueError, match="lengths must have shape"):
        chain_free_energy(u, p, lengths=torch.tensor([2, 3]))
    with pytest.raises(TypeError, match="lengths must be an integer"):
        chain_free_energy(u, p, lengths=torch.tensor([2.0, 3.0, 1.0]))
    with pytest.raises(ValueError, match="initial must have shape"):
        chain_free_energy(u, p, initial=torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="infinite energy"):
        chain_free_energy(u, torch.full((3, 3), math.inf, dtype=torch.float64))
    with pytest.raises(ValueError, match="path must hold labels"):
        chain_energy(torch.full((3, 4), 5), u, p)
    with pytest.raises(TypeError, match="k must be an integer"):
        kbest(u, p, 2.5)
    with pytest.raises(ValueError, match="sequences must be a non-empty"):
        pad_sequences([torch.zeros(0, 2)])


def test_pad_sequences_feeds_lengths():
    seqs = [torch.randn(n, 3, dtype=torch.float64) for n in (2, 5, 3)]
    u, n = pad_sequences(seqs)
    p = torch.randn(3, 3, dtype=torch.float64)
    f = chain_free_energy(u, p, 1.0, lengths=n)
    for b, s in enumerate(seqs):
        assert f[b].item() == pytest.approx(chain_free_energy(s[None], p, 1.0).item(), abs=1e-12)
