"""Hopfield net: energy descent (property test), Hebbian storage, recall, 2-cycles, bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy import stats

from pyro_ebm.models import Hopfield


def random_symmetric(n, seed):
    g = np.random.default_rng(seed)
    a = g.normal(size=(n, n))
    w = np.triu(a, 1)
    return torch.tensor(w + w.T)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 24), seed=st.integers(0, 10_000), order_seed=st.integers(0, 100))
def test_async_updates_never_increase_the_energy(n, seed, order_seed):
    net = Hopfield(n, random_symmetric(n, seed))
    g = np.random.default_rng(seed + 1)
    y0 = torch.tensor(g.choice([-1.0, 1.0], size=(5, n)))
    energies = [net(y0)]
    # the same seed replays the same update order, so max_sweeps = s is the path's prefix after s sweeps
    for s in range(1, 6):
        energies.append(net.recall(y0, mode="async", max_sweeps=s, seed=order_seed).energy)
    e = torch.stack(energies)
    assert bool((e[1:] <= e[:-1] + 1e-9).all()), e
    # and within a sweep, every single-unit update: replay one sweep unit by unit from its definition
    W = net.weight.numpy()
    y = y0.numpy().copy()
    E = lambda y: -0.5 * np.einsum("bi,ij,bj->b", y, W, y)
    before = E(y)
    for i in np.random.default_rng(order_seed).permutation(n):
        field = y @ W[:, i]
        y[:, i] = np.where(field > 0, 1.0, np.where(field < 0, -1.0, y[:, i]))
        after = E(y)
        assert np.all(after <= before + 1e-9)
        before = after
    # a converged state is a fixed point: every unit agrees with the sign of its input
    res = net.recall(y0, mode="async", max_sweeps=200, seed=order_seed)
    assert bool(res.converged.all())
    field = res.states @ net.weight
    assert bool((field * res.states >= -1e-12).all())


def test_energy_and_hebbian_weights_match_their_definitions():
    g = np.random.default_rng(0)
    P = g.choice([-1.0, 1.0], size=(3, 10))
    net = Hopfield(10, dtype=torch.float64).store(torch.tensor(P))
    W = P.T @ P / 10
    np.fill_diagonal(W, 0)
    np.testing.assert_allclose(net.weight.numpy(), W, atol=1e-14)
    y = g.choice([-1.0, 1.0], size=(4, 10))
    np.testing.assert_allclose(net(torch.tensor(y)).numpy(), -0.5 * np.einsum("bi,ij,bj->b", y, W, y), atol=1e-12)
    net.store(np.array([P[0]]))  # storage accumulates; arrays are accepted
    assert net.num_patterns == 4


def test_recall_from_corrupted_patterns_below_capacity():
    g = torch.Generator().manual_seed(0)
    n, P = 200, 10  # alpha = 0.05, well below 0.14
    patterns = torch.where(torch.rand(P, n, generator=g) < 0.5, -1.0, 1.0).double()
    net = Hopfield(n, dtype=torch.float64).store(patterns)
    flip = torch.rand(P, n, generator=g) < 0.15
    noisy = torch.where(flip, -patterns, patterns)
    for mode in ("async", "sync"):
        res = net.recall(noisy, mode=mode, seed=0)
        m = net.overlap(res.states, patterns).diagonal()
        assert bool((m == 1).all()), (mode, m)
        assert bool(res.converged.all()) and not bool(res.cycled.any())
        assert bool((res.energy <= net(noisy)).all())


def test_one_step_bit_errors_follow_the_exact_crosstalk_law():
    """Start at a stored pattern: a bit flips iff the crosstalk sum S of (P-1)(N-1) independent +-1 terms
    is < -(N-1) (ties keep the bit). S = 2K - M with K ~ Binomial(M, 1/2), so the rate is exact."""
    g = torch.Generator().manual_seed(1)
    n, P = 200, 60  # alpha = 0.3: about 3% of the bits flip
    patterns = torch.where(torch.rand(P, n, generator=g) < 0.5, -1.0, 1.0).double()
    net = Hopfield(n, dtype=torch.float64).store(patterns)
    res = net.recall(patterns, mode="sync", max_sweeps=1)
    rate = float((res.states != patterns).double().mean())
    M = (P - 1) * (n - 1)
    # S < -(N-1)  <=>  K < (M - N + 1) / 2
    p = stats.binom.cdf(np.ceil((M - n + 1) / 2) - 1, M, 0.5)
    se = np.sqrt(p * (1 - p) / (n * P))
    assert abs(rate - p) < 5 * se, (rate, p, se)


def test_sync_two_cycle_is_detected_and_async_converges():
    net = Hopfield(2, torch.tensor([[0.0, -1.0], [-1.0, 0.0]]))
    y = torch.tensor([[1.0, 1.0]])
    res = net.recall(y, mode="sync", max_sweeps=50)
    assert bool(res.cycled.all()) and not bool(res.converged.any()) and res.sweeps == 2
    res = net.recall(y, mode="async", seed=0)
    assert bool(res.converged.all()) and float(res.states.prod()) == -1.0


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="symmetric"):
        Hopfield(2, torch.tensor([[0.0, 1.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match="square"):
        Hopfield(2, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="zero diagonal"):
        Hopfield(2, torch.eye(2))
    with pytest.raises(ValueError, match=r"weight must have shape \[3, 3\]"):
        Hopfield(3, torch.zeros(2, 2))
    with pytest.raises(TypeError, match="weight must be a tensor"):
        Hopfield(2, [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="n must be"):
        Hopfield(0)
    net = Hopfield(4)
    with pytest.raises(ValueError, match="patterns must be binary"):
        net.store(torch.tensor([[0.0, 1.0, 1.0, 0.0]]))  # 0/1, not +-1
    with pytest.raises(ValueError, match=r"patterns must have shape \[N, 4\]"):
        net.store(torch.ones(2, 5))
    with pytest.raises(ValueError, match="y must be binary"):
        net.recall(torch.tensor([0.5, 1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="mode"):
        net.recall(torch.ones(4), mode="parallel")
    with pytest.raises(ValueError, match="max_sweeps"):
        net.recall(torch.ones(4), max_sweeps=0)
