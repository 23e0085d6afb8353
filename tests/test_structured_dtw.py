"""DTW and soft-DTW against enumeration of all monotone alignments, a plain O(NM) double loop, tslearn and
finite differences."""

import math

import pytest
import torch

from pyro_ebm.structured import dtw, soft_dtw, squared_distances

INF = math.inf


def alignments(n, m):
    """All monotone paths from (0, 0) to (n-1, m-1) with steps (1,0), (0,1), (1,1)."""
    if n == 1 and m == 1:
        return [[(0, 0)]]
    out = []
    for di, dj in ((1, 0), (0, 1), (1, 1)):
        if n - di >= 1 and m - dj >= 1:
            out += [p + [(n - 1, m - 1)] for p in alignments(n - di, m - dj)]
    return out


def brute(cost, beta, band=None):
    n, m = cost.shape
    energies = torch.tensor(
        [sum(float(cost[i, j]) for i, j in p) for p in alignments(n, m)
         if band is None or all(abs(i - j) <= band for i, j in p)],
        dtype=torch.float64,
    )
    return float(energies.min()) if math.isinf(beta) else float(-torch.logsumexp(-beta * energies, 0) / beta)


def loop_reference(cost, beta):
    """The textbook recursion, one cell at a time, in Python floats."""
    n, m = cost.shape
    R = [[INF] * (m + 1) for _ in range(n + 1)]
    R[0][0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            prev = (R[i - 1][j], R[i][j - 1], R[i - 1][j - 1])
            if math.isinf(beta):
                best = min(prev)
            else:
                lo = min(prev)
                best = lo - math.log(sum(math.exp(-beta * (v - lo)) for v in prev if v < INF)) / beta
            R[i][j] = float(cost[i - 1, j - 1]) + best
    return R[n][m]


@pytest.mark.parametrize("beta", [0.3, 1.0, 5.0, 1e6, INF])
def test_soft_dtw_equals_enumeration_of_alignments(beta):
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(3, 4, 5, generator=g, dtype=torch.float64) * 2
    v = soft_dtw(cost, beta)
    for b in range(3):
        assert v[b].item() == pytest.approx(brute(cost[b], beta), abs=1e-10)
    vb = soft_dtw(cost, beta, band=1)
    for b in range(3):
        assert vb[b].item() == pytest.approx(brute(cost[b], beta, band=1), abs=1e-10)


@pytest.mark.parametrize("beta", [0.1, 2.0, INF])
def test_soft_dtw_equals_plain_double_loop_on_rectangles(beta):
    g = torch.Generator().manual_seed(1)
    for n, m in [(1, 1), (1, 6), (7, 1), (9, 13), (13, 9)]:
        cost = torch.rand(2, n, m, generator=g, dtype=torch.float64)
        v = soft_dtw(cost, beta)
        for b in range(2):
            assert v[b].item() == pytest.approx(loop_reference(cost[b], beta), abs=1e-10)


def test_hard_dtw_value_and_path():
    g = torch.Generator().manual_seed(2)
    cost = torch.rand(4, 8, 11, generator=g, dtype=torch.float64)
    value, path = dtw(cost, return_path=True)
    for b in range(4):
        assert value[b].item() == pytest.approx(loop_reference(cost[b], INF), abs=1e-12)
        assert (cost[b] * path[b]).sum().item() == pytest.approx(value[b].item(), abs=1e-12)
        cells = path[b].nonzero().tolist()  # row-major order is the path order for a monotone path
        assert cells[0] == [0, 0] and cells[-1] == [7, 10]
        for (i0, j0), (i1, j1) in zip(cells, cells[1:]):
            assert (i1 - i0, j1 - j0) in {(1, 0), (0, 1), (1, 1)}
    c = cost.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(dtw(c).sum(), c)
    assert torch.equal(grad, path.double())
    assert torch.allclose(soft_dtw(cost, 1e6), value, atol=1e-5)


def test_gradient_passes_finite_differences_with_lengths_and_band():
    g = torch.Generator().manual_seed(3)
    cost = torch.rand(3, 5, 6, generator=g, dtype=torch.float64).requires_grad_(True)
    torch.autograd.gradcheck(lambda c: soft_dtw(c, 1.7), (cost,))
    n, m = torch.tensor([5, 2, 4]), torch.tensor([6, 3, 4])
    torch.autograd.gradcheck(lambda c: soft_dtw(c, 0.6, lengths=(n, m), band=2), (cost,))


def test_gradient_is_the_expected_alignment():
    g = torch.Generator().manual_seed(4)
    cost = torch.rand(3, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    beta = 1.5
    (grad,) = torch.autograd.grad(soft_dtw(cost, beta), cost)
    paths = alignments(3, 4)
    e = torch.stack([sum(cost[i, j] for i, j in p) for p in paths]).detach()
    w = torch.softmax(-beta * e, 0)
    expect = torch.zeros(3, 4, dtype=torch.float64)
    for p, wi in zip(paths, w):
        for i, j in p:
            expect[i, j] += wi
    assert torch.allclose(grad, expect, atol=1e-12)


def test_lengths_equal_the_cropped_problem():
    g = torch.Generator().manual_seed(5)
    cost = torch.rand(3, 6, 7, generator=g, dtype=torch.float64)
    n, m = torch.tensor([6, 2, 4]), torch.tensor([7, 5, 1])
    for beta in (0.8, INF):
        v = soft_dtw(cost, beta, lengths=(n, m))
        for b in range(3):
            crop = cost[b, : n[b], : m[b]]
            assert v[b].item() == pytest.approx(soft_dtw(crop, beta).item(), abs=1e-12)
    nan_padded = cost.clone()
    nan_padded[1, 2:] = math.nan
    assert torch.allclose(soft_dtw(nan_padded, 0.8, lengths=(n, m)), soft_dtw(cost, 0.8, lengths=(n, m)))
    c = cost.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(soft_dtw(c, 0.8, lengths=(n, m)).sum(), c)
    assert grad[1, 2:].abs().max() == 0 and grad[1, :, 5:].abs().max() == 0


def test_batch_dimensions_float32_and_squared_distances():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(2, 3, 5, 2, generator=g), torch.randn(2, 3, 4, 2, generator=g)
    cost = squared_distances(x, y)
    assert cost.shape == (2, 3, 5, 4)
    assert torch.allclose(cost[1, 2, 3, 1], ((x[1, 2, 3] - y[1, 2, 1]) ** 2).sum())
    v = soft_dtw(cost, 2.0)
    assert v.shape == (2, 3) and v.dtype == torch.float32
    assert torch.allclose(v.double(), soft_dtw(cost.double(), 2.0), atol=1e-5)


def _pair(seed=7):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 12, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 9, 3, generator=g, dtype=torch.float64)
    return x, y


@pytest.mark.parametrize("gamma", [0.1, 1.0])
def test_soft_dtw_equals_tslearn_values_and_expected_alignment(gamma):
    """tslearn's float64 SoftDTW: value and gradient with respect to the cost matrix, to 1e-10."""
    pytest.importorskip("tslearn")
    from tslearn.metrics import SoftDTW

    x, y = _pair()
    cost = squared_distances(x, y).detach().requires_grad_(True)
    ours = soft_dtw(cost, beta=1.0 / gamma)
    (e_ours,) = torch.autograd.grad(ours.sum(), cost)
    for b in range(4):
        sdtw = SoftDTW(cost[b].detach().numpy(), gamma=gamma)
        assert ours[b].item() == pytest.approx(sdtw.compute(), abs=1e-10)
        assert torch.allclose(e_ours[b], torch.from_numpy(sdtw.grad()), atol=1e-10)


@pytest.mark.slow  # tslearn compiles its batched kernels on first use (~15 s)
@pytest.mark.parametrize("gamma", [0.1, 1.0])
def test_soft_dtw_equals_tslearn_pytorch_loss(gamma):
    """tslearn's SoftDTWLossPyTorch to float32 precision: it passes the accumulated matrix through a
    float32 tensor, which moves its gradient by ~1e-5 relative (ours matches finite differences)."""
    pytest.importorskip("tslearn")
    from tslearn.metrics import SoftDTWLossPyTorch

    x, y = _pair()
    ours = soft_dtw(squared_distances(x, y), beta=1.0 / gamma)
    theirs = SoftDTWLossPyTorch(gamma=gamma)(x, y)
    assert torch.allclose(ours, theirs.to(ours.dtype), rtol=1e-6)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), x)
    assert torch.allclose(g_ours, g_theirs.to(g_ours.dtype), rtol=1e-4, atol=1e-4)


def test_bad_input_names_the_argument():
    c = torch.rand(2, 4, 5)
    with pytest.raises(TypeError, match="cost must be a tensor.*lengths"):
        soft_dtw([torch.rand(3, 3), torch.rand(4, 3)])
    with pytest.raises(ValueError, match="cost must be finite"):
        soft_dtw(torch.tensor([[0.0, math.inf]]))
    with pytest.raises(ValueError, match="cost must be finite"):
        dtw(torch.tensor([[math.nan]]))
    with pytest.raises(ValueError, match="no empty sequences"):
        soft_dtw(torch.rand(2, 0, 3))
    with pytest.raises(ValueError, match="beta must be > 0"):
        soft_dtw(c, beta=0.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        soft_dtw(c, beta=-2.0)
    with pytest.raises(ValueError, match=r"lengths\[0\] must lie in"):
        soft_dtw(c, lengths=(torch.tensor([0, 4]), torch.tensor([5, 5])))
    with pytest.raises(ValueError, match=r"lengths\[1\] must have shape"):
        soft_dtw(c, lengths=(torch.tensor([4, 4]), torch.tensor([5])))
    with pytest.raises(TypeError, match="lengths must be a pair"):
        soft_dtw(c, lengths=torch.tensor([4, 4]))
    with pytest.raises(ValueError, match="band = 0 is too narrow"):
        soft_dtw(c, band=0)
    with pytest.raises(ValueError, match="band must be a non-negative integer"):
        dtw(c, band=-1)
    with pytest.raises(TypeError, match="cost must be a floating-point"):
        dtw(torch.ones(3, 3, dtype=torch.long))
