"""Weighted graphs with arc energies: forward score, Viterbi, compose and intersect against brute-force
enumeration of paths on small random graphs; gradients against the enumerated arc posteriors."""

import math
from collections import Counter

import pytest
import torch

from pyro_ebm.structured import (
    Graph,
    compose,
    forward_score,
    graph_hinge,
    graph_nll,
    graph_perceptron,
    hamming_distance,
    intersect,
    viterbi_path,
    viterbi_score,
)

BETAS = [0.3, 1.0, 2.5, math.inf]
INF = math.inf


def random_graph(gen, n_labels=3, transducer=False, max_nodes=6, self_loops=False):
    """A random graph: nodes in a random order (so ids are not topological), arcs only from lower to higher
    rank (acyclic) unless ``self_loops``, random start and accept sets, float64 tensor energies."""
    n = int(torch.randint(2, max_nodes + 1, (), generator=gen))
    rank = torch.randperm(n, generator=gen).tolist()  # rank[node]
    g = Graph()
    for _ in range(n):
        g.add_node(start=bool(torch.rand((), generator=gen) < 0.3), accept=bool(torch.rand((), generator=gen) < 0.3))
    by_rank = sorted(range(n), key=lambda v: rank[v])
    g._start[by_rank[0]] = True  # at least one start and one accept node
    g._accept[by_rank[-1]] = True
    n_arcs = int(torch.randint(1, 3 * n, (), generator=gen))
    for _ in range(n_arcs):
        a, b = sorted(torch.randint(0, n, (2,), generator=gen).tolist())
        if a == b and not self_loops:
            continue
        il = int(torch.randint(0, n_labels, (), generator=gen))
        ol = int(torch.randint(0, n_labels, (), generator=gen)) if transducer else None
        e = torch.randn((), generator=gen, dtype=torch.float64)
        g.add_arc(by_rank[a], by_rank[b], il, ol, energy=e)
    return g


def paths(g, max_len=None):
    """Every accepting path: list of (arc indices, energy, ilabels, olabels)."""
    src, dst, il, ol = g.src.tolist(), g.dst.tolist(), g.ilabel.tolist(), g.olabel.tolist()
    energy = g.energy.detach().tolist()
    start, accept = set(g.start_nodes), set(g.accept_nodes)
    out = []

    def walk(node, arcs):
        if node in accept:
            out.append((tuple(arcs), sum(energy[a] for a in arcs), tuple(il[a] for a in arcs), tuple(ol[a] for a in arcs)))
        if max_len is not None and len(arcs) >= max_len:
            return
        for a in range(len(src)):
            if src[a] == node:
                walk(dst[a], arcs + [a])

    for s in start:
        walk(s, [])
    return out


def free_energy(energies, beta):
    if not energies:
        return INF
    e = torch.tensor(energies, dtype=torch.float64)
    return float(e.min()) if math.isinf(beta) else float(-torch.logsumexp(-beta * e, 0) / beta)


def graphs(seed, count, **kw):
    gen = torch.Generator().manual_seed(seed)
    return [random_graph(gen, **kw) for _ in range(count)]


@pytest.mark.parametrize("beta", BETAS)
def test_forward_score_equals_path_enumeration(beta):
    for g in graphs(0, 40):
        want = free_energy([p[1] for p in paths(g)], beta)
        got = forward_score(g, beta).item()
        assert got == want if math.isinf(want) else abs(got - want) < 1e-10


def test_viterbi_score_and_path_equal_the_minimum_path():
    checked = 0
    for g in graphs(1, 40):
        ps = paths(g)
        if not ps:
            with pytest.raises(ValueError, match="no accepting path"):
                viterbi_path(g)
            assert viterbi_score(g).item() == INF
            continue
        best = min(ps, key=lambda p: p[1])
        assert abs(viterbi_score(g).item() - best[1]) < 1e-12
        vp = viterbi_path(g)
        assert tuple(vp.origin[0].tolist()) == best[0]
        assert tuple(vp.ilabel.tolist()) == best[2] and tuple(vp.olabel.tolist()) == best[3]
        assert abs(forward_score(vp, 1.0).item() - best[1]) < 1e-12  # a linear graph: one path
        checked += 1
    assert checked > 20


@pytest.mark.parametrize("beta", BETAS)
def test_gradient_is_the_arc_posterior(beta):
    for g in graphs(2, 25):
        ps = paths(g)
        if not ps:
            continue
        energy = g.energy.detach().clone().requires_grad_(True)
        forward_score(g.with_energy(energy), beta).backward()
        e = torch.tensor([p[1] for p in ps], dtype=torch.float64)
        if math.isinf(beta):
            w = torch.zeros(len(ps), dtype=torch.float64)
            w[int(e.argmin())] = 1.0
        else:
            w = torch.softmax(-beta * e, 0)
        post = torch.zeros(g.num_arcs, dtype=torch.float64)
        for (arcs, *_), wp in zip(ps, w):
            for a in arcs:
                post[a] += wp
        assert torch.allclose(energy.grad, post, atol=1e-10)


def test_gradcheck_and_gradients_flow_to_add_arc_tensors():
    g = graphs(3, 10)
    g = max(g, key=lambda h: len(paths(h)))
    e = g.energy.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: forward_score(g.with_energy(x), 0.7), (e,))
    h = Graph()
    a, b, c = h.add_node(start=True), h.add_node(), h.add_node(accept=True)
    w = torch.tensor([0.5, 1.5], requires_grad=True)
    h.add_arc(a, b, 0, energy=w[0])
    h.add_arc(b, c, 1, energy=w[1])
    h.add_arc(a, c, 2, energy=3.0)
    forward_score(h).backward()
    p = 1 / (1 + math.exp(-1.0))  # paths of energy 2 and 3
    assert torch.allclose(w.grad, torch.tensor([p, p]))


@pytest.mark.parametrize("beta", [1.0, math.inf])
def test_batches_equal_one_graph_at_a_time(beta):
    gs = graphs(4, 12)
    single = torch.stack([forward_score(g, beta) for g in gs])
    assert torch.equal(forward_score(gs, beta), single)
    g = gs[0]
    e = torch.randn(3, 2, g.num_arcs, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    batched = forward_score(g.with_energy(e), beta)
    assert batched.shape == (3, 2)
    loop = torch.stack([forward_score(g.with_energy(row), beta) for row in e.reshape(6, -1)]).reshape(3, 2)
    assert torch.allclose(batched, loop, atol=1e-12)
    # a list of batched graphs: shape batch + (len,)
    both = forward_score([g.with_energy(e), gs[1]], beta)
    assert both.shape == (3, 2, 2) and torch.allclose(both[..., 0], batched) and torch.allclose(both[..., 1], single[1])
    # gradients of the union equal the separate gradients
    x = [h.energy.detach().clone().requires_grad_(True) for h in gs]
    forward_score([h.with_energy(xi) for h, xi in zip(gs, x)], beta).sum().backward()
    for h, xi in zip(gs, x):
        y = h.energy.detach().clone().requires_grad_(True)
        forward_score(h.with_energy(y), beta).backward()
        assert torch.allclose(xi.grad, y.grad)
    vps = viterbi_path([h for h in gs if paths(h)])
    for h, vp in zip([h for h in gs if paths(h)], vps):
        assert torch.equal(vp.origin[0], viterbi_path(h).origin[0])


def _multiset(items):
    return Counter((i, o, round(e, 9)) for i, o, e in items)


def test_compose_equals_its_definition_on_path_sets():
    gen = torch.Generator().manual_seed(5)
    for _ in range(30):
        g1 = random_graph(gen, n_labels=2, transducer=True)
        g2 = random_graph(gen, n_labels=2, transducer=True, self_loops=bool(torch.rand((), generator=gen) < 0.5))
        c = compose(g1, g2)
        p1 = paths(g1)
        longest = max((len(p[0]) for p in p1), default=0)
        p2 = paths(g2, max_len=longest)  # g2 may have cycles: longer paths cannot match
        want = [(a[2], b[3], a[1] + b[1]) for a in p1 for b in p2 if a[3] == b[2]]
        got = [(p[2], p[3], p[1]) for p in paths(c)]
        assert _multiset(got) == _multiset(want)
        # the origin maps each arc to its parents, and the energies are theirs added
        o1, o2 = c.origin
        assert torch.equal(c.energy, g1.energy[o1] + g2.energy[o2])
        assert torch.equal(c.ilabel, g1.ilabel[o1]) and torch.equal(c.olabel, g2.olabel[o2])
        assert torch.equal(g1.olabel[o1], g2.ilabel[o2])
        if not want:
            assert c.num_arcs == 0 and forward_score(c).item() == INF


def test_intersect_equals_its_definition_and_differentiates_both_inputs():
    gen = torch.Generator().manual_seed(6)
    for _ in range(30):
        g1, g2 = random_graph(gen, n_labels=2), random_graph(gen, n_labels=2)
        i = intersect(g1, g2)
        want = [(a[2], a[2], a[1] + b[1]) for a in paths(g1) for b in paths(g2) if a[2] == b[2]]
        assert _multiset((p[2], p[3], p[1]) for p in paths(i)) == _multiset(want)
        assert i.is_acceptor
    # gradients reach both inputs: d F(g1 & g2) / d e1 = posterior of the arcs of g1 in the intersection
    g1, g2 = graphs(7, 1, n_labels=1)[0], graphs(8, 1, n_labels=1)[0]
    e1, e2 = g1.energy.detach().clone().requires_grad_(True), g2.energy.detach().clone().requires_grad_(True)
    inter = intersect(g1.with_energy(e1), g2.with_energy(e2))
    if inter.num_arcs:
        forward_score(inter).backward()
        e = inter.energy.detach().clone().requires_grad_(True)
        forward_score(inter.with_energy(e)).backward()
        assert torch.allclose(e1.grad, torch.zeros_like(e1).index_add_(0, inter.origin[0], e.grad))


def test_compose_with_a_cyclic_grammar_gives_an_acyclic_graph():
    # recognizer: 3 positions, labels 0/1 at each step; grammar: any number of 1s, then exactly one 0
    rec = Graph()
    nodes = [rec.add_node(start=k == 0, accept=k == 3) for k in range(4)]
    for k in range(3):
        rec.add_arc(nodes[k], nodes[k + 1], 0, energy=float(k))
        rec.add_arc(nodes[k], nodes[k + 1], 1, energy=1.0)
    gram = Graph()
    a, b = gram.add_node(start=True), gram.add_node(accept=True)
    gram.add_arc(a, a, 1)
    gram.add_arc(a, b, 0)
    g = intersect(rec, gram)
    with pytest.raises(ValueError, match="acyclic"):
        forward_score(gram)
    assert [p[2] for p in paths(g)] == [(1, 1, 0)]
    assert viterbi_score(g).item() == 1.0 + 1.0 + 2.0


def _string_graph(labels, alphabet):
    """Acceptor of one string (labels) and of every other string of the same length (wrong)."""
    y = Graph()
    nodes = [y.add_node(start=k == 0, accept=k == len(labels)) for k in range(len(labels) + 1)]
    for k, l in enumerate(labels):
        y.add_arc(nodes[k], nodes[k + 1], l)
    w = Graph()
    same = [w.add_node(start=k == 0) for k in range(len(labels) + 1)]
    diff = [None] + [w.add_node(accept=k == len(labels)) for k in range(1, len(labels) + 1)]
    for k, l in enumerate(labels):
        for m in range(alphabet):
            w.add_arc(same[k], same[k + 1] if m == l else diff[k + 1], m)
            if k > 0:
                w.add_arc(diff[k], diff[k + 1], m)
    return y, w


def test_graph_losses_equal_enumeration():
    gen = torch.Generator().manual_seed(9)
    full = Graph()  # a lattice: 3 steps, 3 labels, two parallel arcs per label (a latent choice)
    nodes = [full.add_node(start=k == 0, accept=k == 3) for k in range(4)]
    for k in range(3):
        for lab in range(3):
            for _ in range(2):
                full.add_arc(nodes[k], nodes[k + 1], lab, energy=torch.randn((), generator=gen, dtype=torch.float64))
    y_labels = (2, 0, 1)
    y, wrong_acc = _string_graph(y_labels, 3)
    target, wrong = intersect(full, y), intersect(full, wrong_acc)
    ps = paths(full)
    by_answer = {}
    for p in ps:
        by_answer.setdefault(p[2], []).append(p[1])
    assert len(by_answer) == 27
    for beta in (0.5, 2.0):
        f = {k: free_energy(v, beta) for k, v in by_answer.items()}
        f_all = free_energy([p[1] for p in ps], beta)
        assert abs(graph_nll(target, full, beta).item() - (f[y_labels] - f_all)) < 1e-10
    fmin = {k: min(v) for k, v in by_answer.items()}
    assert abs(graph_perceptron(target, full).item() - (fmin[y_labels] - min(fmin.values()))) < 1e-12
    offending = min((k for k in fmin if k != y_labels), key=fmin.get)
    m = hamming_distance(y_labels, offending)
    want = max(0.0, fmin[y_labels] - fmin[offending] + m)
    got = graph_hinge(target, wrong, margin=lambda labels: hamming_distance(y_labels, labels))
    assert abs(got.item() - want) < 1e-12
    assert abs(graph_hinge(target, wrong, margin=0.25).item() - max(0.0, fmin[y_labels] - fmin[offending] + 0.25)) < 1e-12
    # batched: a list of targets and a batched full graph give one loss per example
    e = torch.randn(4, full.num_arcs, dtype=torch.float64, generator=gen, requires_grad=True)
    fb = full.with_energy(e)
    tb = intersect(fb, y)
    per = graph_nll(tb, fb, reduction="none")
    assert per.shape == (4,) and (per > 0).all()
    loop = torch.stack([graph_nll(intersect(full.with_energy(r), y), full.with_energy(r)) for r in e])
    assert torch.allclose(per, loop)
    hb = graph_hinge(tb, intersect(fb, wrong_acc), margin=lambda labels: hamming_distance(y_labels, labels), reduction="none")
    assert hb.shape == (4,)
    per.sum().backward()
    assert torch.isfinite(e.grad).all() and e.grad.abs().sum() > 0


def test_bad_inputs_name_what_was_wrong():
    g = Graph()
    a = g.add_node(start=True)
    with pytest.raises(ValueError, match="dst = 3 is not a node"):
        g.add_arc(a, 3, 0)
    with pytest.raises(ValueError, match="src"):
        g.add_arc(-1, a, 0)
    with pytest.raises(ValueError, match="ilabel"):
        g.add_arc(a, a, -2)
    with pytest.raises(ValueError, match="energy.*finite"):
        g.add_arc(a, a, 0, energy=math.nan)
    with pytest.raises(ValueError, match="energy.*finite"):
        g.add_arc(a, a, 0, energy=torch.tensor(math.inf))
    with pytest.raises(TypeError, match="energy"):
        g.add_arc(a, a, 0, energy="1")
    with pytest.raises(TypeError, match="start"):
        g.add_node(start=1)
    b = g.add_node()
    g.add_arc(a, b, 0)
    with pytest.raises(ValueError, match="no accept node"):
        forward_score(g)
    h = Graph()
    c, d = h.add_node(accept=True), h.add_node()
    h.add_arc(d, c, 0)
    with pytest.raises(ValueError, match="no start node"):
        viterbi_score(h)
    with pytest.raises(ValueError, match=r"graph 1\) has no start node"):
        forward_score([graphs(0, 1)[0], h])
    cyc = Graph()
    u, v = cyc.add_node(start=True), cyc.add_node(accept=True)
    cyc.add_arc(u, v, 0)
    cyc.add_arc(v, u, 0)
    with pytest.raises(ValueError, match="forward_score needs an acyclic graph"):
        forward_score(cyc)
    with pytest.raises(ValueError, match="viterbi_path needs an acyclic graph"):
        viterbi_path(cyc)
    with pytest.raises(ValueError, match="energy must be finite"):
        cyc.with_energy(torch.tensor([0.0, math.nan]))
    with pytest.raises(ValueError, match="energy must have shape"):
        cyc.with_energy(torch.zeros(3))
    with pytest.raises(ValueError, match="beta"):
        forward_score(cyc, beta=0.0)
    t = Graph()
    p, q = t.add_node(start=True), t.add_node(accept=True)
    t.add_arc(p, q, 0, 1)
    with pytest.raises(ValueError, match="first must be an acceptor"):
        intersect(t, cyc)
    with pytest.raises(TypeError, match="second"):
        compose(t, "graph")
    with pytest.raises(ValueError, match="fixed"):
        compose(t, t).add_node()
    with pytest.raises(ValueError, match="one energy per arc"):
        viterbi_path(t.with_energy(torch.zeros(2, 1)))
    with pytest.raises(TypeError, match="graphs"):
        forward_score([])
    y = Graph()
    s, f = y.add_node(start=True), y.add_node(accept=True)
    y.add_arc(s, f, 5)
    tt = Graph()
    s, f = tt.add_node(start=True), tt.add_node(accept=True)
    tt.add_arc(s, f, 0)
    with pytest.raises(ValueError, match="target has no accepting path"):
        graph_nll(intersect(tt, y), tt)
    with pytest.raises(ValueError, match="reduction"):
        graph_perceptron(tt, tt, reduction="avg")
    with pytest.raises(TypeError, match="margin"):
        graph_hinge(tt, tt, margin=lambda labels: "big")
    two = [tt.with_energy(torch.zeros(2, 1))]
    with pytest.raises(ValueError, match="list of batched"):
        graph_hinge(two, two, margin=lambda labels: 1.0)
    with pytest.raises(TypeError, match=r"\ba\b"):
        hamming_distance("abc", [1])
