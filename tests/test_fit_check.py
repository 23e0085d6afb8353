"""check_fit: a verdict on the energy itself, calibrated on energies whose truth is known (no training).

The false-alarm rate is measured on the exact energy of the eight Gaussians, the power on energies and
negatives that are wrong in the ways a trained EBM goes wrong: mass spread along the ring, all mass in
one mode, modes too wide, negatives stuck in one mode or blurred by a huge sampler step.
"""

import math

import pytest
import torch

from pyro_ebm import Energy, as_energy
from pyro_ebm.datasets import eight_gaussians, eight_gaussians_log_prob
from pyro_ebm.demo import WallMLP
from pyro_ebm.fit_check import MMD_SCALES, FitCheck, check_fit, mmd_test

# 1 / (1 + 250) is below 0.005, the level of each test when negatives are given
PERMS = 250
SEEDS = range(10)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _truth():
    return as_energy(lambda y: -eight_gaussians_log_prob(y), event_shape=(2,))


def _gaussian_energy(mean, cov):
    mean = torch.as_tensor(mean, dtype=torch.float64)
    prec = torch.linalg.inv(torch.as_tensor(cov, dtype=torch.float64))

    def F(y):
        r = y - mean.to(y.dtype)
        return 0.5 * torch.einsum("...i,ij,...j->...", r, prec.to(y.dtype), r)

    return as_energy(F, event_shape=mean.shape)


# ------------------------------------------------------------------------------------------------
# the two-sample test
# ------------------------------------------------------------------------------------------------


def _brute_mmd(x, y, scales):
    """The unbiased MMD^2 by explicit double loops over the points (the definition, term by term)."""
    z = [p for p in torch.cat([x, y]).double()]
    pairs = [float((z[i] - z[j]).norm()) for i in range(len(z)) for j in range(i + 1, len(z))]
    h = sorted(pairs)[(len(pairs) - 1) // 2]  # torch's median: the lower middle value
    weights = [s**-2 for s in scales]
    total = sum(weights)

    def k(a, b):
        d2 = float(((a - b) ** 2).sum())
        return sum(w / total * math.exp(-d2 / (2 * (s * h) ** 2)) for s, w in zip(scales, weights))

    xs, ys = z[: len(x)], z[len(x):]
    n, m = len(xs), len(ys)
    kxx = sum(k(xs[i], xs[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(ys[i], ys[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(xs[i], ys[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


@pytest.mark.parametrize("scales", [MMD_SCALES, (1.0,), (0.7, 0.3)])
def test_mmd_statistic_is_the_double_loop(scales):
    g = _gen(0)
    x, y = torch.randn(6, 2, generator=g), torch.randn(4, 2, generator=g) + 0.5
    stat, p = mmd_test(x, y, num_permutations=100, seed=0, scales=scales)
    assert stat == pytest.approx(_brute_mmd(x, y, scales), rel=1e-10, abs=1e-14)
    assert 1 / 101 <= p <= 1


def test_mmd_p_value_uniform_under_the_null():
    ps = []
    for s in range(40):
        g = _gen(1000 + s)
        ps.append(mmd_test(torch.randn(200, generator=g).unsqueeze(-1), torch.randn(200, generator=g).unsqueeze(-1),
                           num_permutations=200, seed=s)[1])
    below = sum(p < 0.05 for p in ps) / len(ps)
    assert 0.0 <= below <= 0.15
    assert 0.3 < sum(ps) / len(ps) < 0.7  # uniform: mean 1/2, sd of the mean of 40 about 0.046
    assert sum(p < 0.5 for p in ps) >= 10 and sum(p > 0.5 for p in ps) >= 10


def test_mmd_p_value_tiny_for_shifted_means():
    for s in range(3):
        g = _gen(2000 + s)
        x, y = torch.randn(500, generator=g), torch.randn(500, generator=g) + 0.5
        stat, p = mmd_test(x.unsqueeze(-1), y.unsqueeze(-1), num_permutations=200, seed=s)
        assert p == pytest.approx(1 / 201) and stat > 0


def test_mmd_subsamples_and_checks_its_arguments():
    g = _gen(3)
    big = torch.randn(3000, 2, generator=g)
    stat, p = mmd_test(big, big + 0.0, num_permutations=50, seed=0, max_points=200)
    assert p > 0.02  # the same points on both sides, each subsampled to 200
    with pytest.raises(ValueError, match="event shape"):
        mmd_test(big, big[:, :1])
    with pytest.raises(ValueError, match="at least 2"):
        mmd_test(big[:1], big)
    with pytest.raises(TypeError, match="x must be a tensor"):
        mmd_test([1.0, 2.0], big)
    with pytest.raises(ValueError, match="num_permutations"):
        mmd_test(big, big, num_permutations=0)
    with pytest.raises(ValueError, match="scales"):
        mmd_test(big, big, scales=(1.0, -1.0))
    nan = big[:10].clone()
    nan[4, 1] = float("nan")
    with pytest.raises(ValueError, match="y must be finite.*row 4"):
        mmd_test(big, nan)
    assert mmd_test(torch.ones(5, 2), torch.ones(7, 2)) == (0.0, 1.0)


# ------------------------------------------------------------------------------------------------
# calibration: the truth passes, wrong models and wrong negatives are flagged
# ------------------------------------------------------------------------------------------------


def test_exact_energy_passes_and_its_nll_is_the_reference():
    F = _truth()
    results = [
        check_fit(F, eight_gaussians(1000, seed=s), negatives=eight_gaussians(1000, seed=100 + s),
                  reference=eight_gaussians_log_prob, seed=s, num_permutations=PERMS)
        for s in SEEDS
    ]
    assert sum(not r.ok for r in results) <= 1, [r.problems for r in results]
    for r in results:
        assert r.alpha_per_test == 0.005  # two tests: alpha split in half
        assert abs(r.heldout_nll - r.reference_nll) < 0.01
        assert abs(r.log_z) < 1e-3 and r.log_z_stderr < 1e-3 and r.log_z_method == "quadrature"
        assert r.samples.shape == (2000, 2) and r.samples.dtype == torch.float64
    # the p-values of a true null are not piled up near 0
    assert sum(r.p_value < 0.1 for r in results) <= 3


def _ring(y):
    return (y.norm(dim=-1) - 2.0) ** 2 / (2 * 0.2**2)


def _one_mode(y):
    center = torch.tensor([2.0, 0.0], dtype=y.dtype)
    return ((y - center) ** 2).sum(-1) / (2 * 0.2**2) + math.log(2 * math.pi * 0.2**2)


def _too_wide(y):
    return -eight_gaussians_log_prob(y, std=0.35)


def _broken(kind, seed, n=500):
    """(energy, heldout, negatives) of a broken fit; every kind is wrong in a way training produces."""
    heldout = eight_gaussians(n, seed=seed)
    energy, negatives = _truth(), None
    if kind == "ring":
        energy = as_energy(_ring, event_shape=(2,))
    elif kind == "one mode":
        energy = as_energy(_one_mode, event_shape=(2,))
    elif kind == "too wide":
        energy = as_energy(_too_wide, event_shape=(2,))
    elif kind == "negatives in one mode":
        negatives = torch.tensor([2.0, 0.0]) + 0.2 * torch.randn(n, 2, generator=_gen(200 + seed))
    elif kind == "blurred negatives":
        negatives = eight_gaussians(n, seed=100 + seed) + 0.5 * torch.randn(n, 2, generator=_gen(300 + seed))
    return energy, heldout, negatives


BROKEN = ["ring", "one mode", "too wide", "negatives in one mode", "blurred negatives"]


def test_broken_fits_are_flagged_by_the_two_sample_tests():
    flagged = {kind: 0 for kind in BROKEN}
    for kind in BROKEN:
        for s in SEEDS:
            energy, heldout, negatives = _broken(kind, s)
            r = check_fit(energy, heldout, negatives=negatives, num_samples=500, seed=s, num_permutations=PERMS)
            if not r.ok:
                flagged[kind] += 1
                expected = "training negatives differ" if "negatives" in kind else "model samples differ"
                assert any(expected in p for p in r.problems), r.problems
    total = sum(flagged.values())
    assert total >= math.ceil(0.95 * len(BROKEN) * len(SEEDS)), flagged
    assert min(flagged.values()) >= 9, flagged


@pytest.mark.parametrize("kind, gap", [("ring", 0.4), ("one mode", 50.0), ("too wide", 0.3)])
def test_broken_energies_have_an_nll_gap(kind, gap):
    energy, heldout, _ = _broken(kind, 0)
    r = check_fit(energy, heldout, reference=eight_gaussians_log_prob, num_samples=200, num_permutations=200)
    assert r.nll_gap > gap and not r.ok
    assert any("nats above the reference" in p for p in r.problems)
    assert r.reference_nll == pytest.approx(-float(eight_gaussians_log_prob(heldout.double()).mean()))


# ------------------------------------------------------------------------------------------------
# exact grid samples and log Z in 1 and 2 dimensions
# ------------------------------------------------------------------------------------------------


def test_grid_samples_of_a_1d_gaussian():
    mu, sigma, n = 0.5, 1.5, 20000
    F = as_energy(lambda y: ((y[..., 0] - mu) / sigma) ** 2 / 2, event_shape=(1,))
    heldout = mu + sigma * torch.randn(300, 1, generator=_gen(5))
    normal = torch.distributions.Normal(mu, sigma)
    r = check_fit(F, heldout, reference=lambda y: normal.log_prob(y[..., 0]), num_samples=n,
                  num_permutations=200, seed=1)
    y = r.samples[:, 0]
    assert r.samples.shape == (n, 1)
    # four standard errors of the sample mean and variance
    assert abs(float(y.mean()) - mu) < 4 * sigma / math.sqrt(n)
    assert abs(float(y.var()) - sigma**2) < 4 * sigma**2 * math.sqrt(2 / (n - 1))
    assert r.log_z == pytest.approx(0.5 * math.log(2 * math.pi * sigma**2), abs=1e-6)
    assert abs(r.nll_gap) < 1e-6 and r.ok


def test_grid_samples_of_a_correlated_2d_gaussian():
    mean, cov, n = torch.tensor([1.0, -0.5]), torch.tensor([[1.0, 0.6], [0.6, 2.0]]), 20000
    F = _gaussian_energy(mean, cov)
    truth = torch.distributions.MultivariateNormal(mean.double(), cov.double())
    heldout = mean + torch.randn(400, 2, generator=_gen(6)) @ torch.linalg.cholesky(cov).T
    r = check_fit(F, heldout, reference=truth, num_samples=n, num_permutations=200, seed=2)
    y = r.samples
    m = y.mean(0)
    c = torch.cov(y.T)
    for i in range(2):
        assert abs(float(m[i] - mean[i])) < 4 * math.sqrt(float(cov[i, i]) / n)
        for j in range(2):
            se = math.sqrt((float(cov[i, i] * cov[j, j]) + float(cov[i, j]) ** 2) / n)
            assert abs(float(c[i, j] - cov[i, j])) < 4 * se
    log_z = math.log(2 * math.pi) + 0.5 * math.log(float(torch.linalg.det(cov.double())))
    assert r.log_z == pytest.approx(log_z, abs=1e-6)
    assert abs(r.nll_gap) < 1e-6 and r.ok


def test_scalar_events():
    F = as_energy(lambda y: 0.5 * y**2, event_shape=())
    heldout = torch.randn(200, generator=_gen(8))
    r = check_fit(F, heldout, num_samples=300, num_permutations=200)
    assert r.ok and r.samples.shape == (300,)
    assert r.log_z == pytest.approx(0.5 * math.log(2 * math.pi), abs=1e-5)  # the box holds all but ~1e-6
    shifted = check_fit(lambda y: 0.5 * (y - 1.0) ** 2, heldout, num_samples=300, num_permutations=200)
    assert not shifted.ok


def test_default_box_is_widened_for_a_small_heldout_sample():
    # 20 points span about 3.7 sd: the first box, +- 3.7 sd, leaves 0.3% of the mass in its outer band
    F = as_energy(lambda y: 0.5 * (y**2).sum(-1), event_shape=(1,))
    heldout = torch.randn(20, 1, generator=_gen(7))
    r = check_fit(F, heldout, num_samples=200, num_permutations=200)
    assert r.log_z == pytest.approx(0.5 * math.log(2 * math.pi), abs=1e-6)
    low, high = r.bounds
    span = float(heldout.max() - heldout.min())
    assert high[0] - low[0] > 2 * span  # wider than the first box


def test_module_energy_is_evaluated_on_a_float64_copy():
    torch.manual_seed(0)
    F = WallMLP(width=8)
    heldout = eight_gaussians(200, seed=0)
    r = check_fit(F, heldout, num_samples=200, num_permutations=200)
    assert all(p.dtype == torch.float32 for p in F.parameters())  # the energy itself is untouched
    with torch.no_grad():
        mean_f = float(F.double()(heldout.double()).mean())
    assert r.heldout_nll == pytest.approx(mean_f + r.log_z, abs=1e-9)


# ------------------------------------------------------------------------------------------------
# not normalizable, and bad arguments
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "F",
    [lambda y: -(y**2).sum(-1), lambda y: 0.1 * y[..., 0], lambda y: torch.sqrt(y[..., 0]) + (y**2).sum(-1)],
    ids=["inverted bowl", "linear", "NaN off the half plane"],
)
def test_not_normalizable_energy_is_an_error(F):
    heldout = 0.2 + torch.rand(100, 2, generator=_gen(0))  # the default box reaches y0 < 0
    with pytest.raises(ValueError, match="does not look normalizable"):
        check_fit(as_energy(F, event_shape=(2,)), heldout, num_samples=100, num_permutations=200)


def test_too_narrow_bounds_are_an_error_that_says_so():
    F = as_energy(lambda y: 0.5 * (y**2).sum(-1), event_shape=(2,))
    heldout = torch.randn(100, 2, generator=_gen(0))
    with pytest.raises(ValueError, match=r"normalizable.*mass.*pass wider bounds"):
        check_fit(F, heldout, bounds=(-1.0, 1.0), num_samples=100, num_permutations=200)
    r = check_fit(F, heldout, bounds=([-8, -8], [8, 8]), num_samples=100, num_permutations=200)
    assert r.bounds == ([-8.0, -8.0], [8.0, 8.0]) and r.log_z == pytest.approx(math.log(2 * math.pi), abs=1e-6)


class _Bowl(Energy):
    def __init__(self):
        super().__init__(event_shape=(2,))

    def forward(self, y, x=None):
        return 0.5 * (y**2).sum(-1)


def _bad_nan():
    h = torch.randn(50, 2, generator=_gen(0))
    h[3, 1] = float("nan")
    return h


H = torch.randn(50, 2, generator=_gen(0))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(heldout=torch.randn(50, 3)), ValueError, r"heldout must have shape \[N, \*event_shape\] = \[N, 2\]"),
        (dict(heldout=_bad_nan()), ValueError, r"heldout must be finite.*row 3"),
        (dict(heldout=H[:10]), ValueError, "heldout needs at least 20 rows"),
        (dict(heldout=H.tolist()), TypeError, "heldout must be a tensor"),
        (dict(heldout=H.long()), TypeError, "heldout must be a floating-point"),
        (dict(energy=3.0), TypeError, "energy must be an Energy or a callable"),
        (dict(energy=lambda y: (y**2).sum()), ValueError, "one value per batch element"),
        (dict(energy=as_energy(lambda y, z: (y**2).sum(-1), event_shape=(2,), latent_shape=(1,))), TypeError,
         "latent variable"),
        (dict(alpha=0.0), ValueError, r"alpha must be in \(0, 1\)"),
        (dict(alpha=1.5), ValueError, r"alpha must be in \(0, 1\)"),
        (dict(alpha="0.1"), TypeError, "alpha must be a real number"),
        (dict(num_samples=10), ValueError, "num_samples must be an integer >= 20"),
        (dict(num_samples=100.0), TypeError, "num_samples"),
        (dict(reference=5), TypeError, "reference must be a callable"),
        (dict(reference=lambda y: y), ValueError, r"reference must give one log density per held-out row"),
        (dict(negatives=torch.randn(30, 3)), ValueError, r"negatives must have shape \[M, \*event_shape\]"),
        (dict(negatives=_bad_nan()), ValueError, r"negatives must be finite.*row 3"),
        (dict(nll_tolerance=-0.1), ValueError, "nll_tolerance"),
        (dict(num_permutations=50), ValueError, "num_permutations=50 is too few"),
        (dict(negatives=H, num_permutations=150), ValueError, "num_permutations=150 is too few"),
        (dict(bounds=(1.0,)), TypeError, r"bounds must be a pair"),
        (dict(bounds=([0, 0, 0], [1, 1, 1])), ValueError, "bounds low must give one bound per entry"),
        (dict(bounds=(1.0, -1.0)), ValueError, "bounds must have high > low"),
        (dict(bounds=(-math.inf, 1.0)), ValueError, "bounds low must be finite"),
        (dict(log_z=float("nan")), ValueError, "log_z must be a number"),
        (dict(log_z="1"), TypeError, "log_z must be a real number"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
        (dict(seed=1.5), TypeError, "seed must be an int"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    args = dict(energy=_Bowl(), heldout=H, num_samples=50, num_permutations=200)
    args.update(kwargs)
    energy, heldout = args.pop("energy"), args.pop("heldout")
    with pytest.raises(error, match=match):
        check_fit(energy, heldout, **args)


def test_energy_that_is_minus_infinity_on_heldout_is_an_error_and_plus_infinity_a_problem():
    heldout = torch.randn(50, 2, generator=_gen(0))
    with pytest.raises(ValueError, match="heldout row"):
        check_fit(lambda y: torch.where(y[..., 0] > 1.5, -math.inf, 0.5 * (y**2).sum(-1)), heldout,
                  bounds=(-1.0, 1.0), num_samples=50, num_permutations=200)
    # zero density beyond y0 > 1.5: log Z is finite, the held-out rows past it are impossible
    r = check_fit(lambda y: torch.where(y[..., 0] > 1.5, math.inf, 0.5 * (y**2).sum(-1)), heldout,
                  num_samples=50, num_permutations=200)
    assert math.isinf(r.heldout_nll) and not r.ok
    assert any("zero density" in p for p in r.problems)


# ------------------------------------------------------------------------------------------------
# more than two entries: SMC for log Z, tempered HMC for the samples
# ------------------------------------------------------------------------------------------------


def test_3d_gaussian_passes_and_shifted_one_fails():
    heldout = torch.randn(300, 3, generator=_gen(11))
    normal = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(3), torch.ones(3)), 1)
    good = check_fit(lambda y: 0.5 * (y**2).sum(-1), heldout, reference=normal, num_samples=300,
                     num_permutations=200, seed=0)
    assert good.ok, good.problems
    assert good.log_z_method == "smc" and good.samples.shape == (300, 3)
    assert abs(good.nll_gap) < 4 * good.log_z_stderr + 0.02  # the gap is the error of log Z
    truth = 1.5 * math.log(2 * math.pi)
    assert abs(good.log_z - truth) < 4 * good.log_z_stderr + 0.02
    assert abs(float(good.samples.mean())) < 0.2 and abs(float(good.samples.var()) - 1) < 0.25
    bad = check_fit(lambda y: 0.5 * ((y - 1.0) ** 2).sum(-1), heldout, num_samples=300, num_permutations=200,
                    seed=0)
    assert not bad.ok and bad.p_value < 0.01
    assert abs(float(bad.samples.mean()) - 1) < 0.2  # the samples are the model's, not the data's


# ------------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------------


def test_report_is_a_frozen_summary():
    energy, heldout, negatives = _broken("blurred negatives", 0, n=300)
    r = check_fit(energy, heldout, negatives=negatives, reference=eight_gaussians_log_prob, num_samples=300,
                  num_permutations=PERMS, log_z=0.0)
    assert isinstance(r, FitCheck) and not r.ok
    assert r.log_z == 0.0 and r.log_z_stderr is None and r.log_z_method == "given"
    text = str(r)
    assert text == r.summary() and text.startswith("check_fit: NOT OK (1 problem")
    assert "training negatives vs model samples" in text and "reference NLL" in text
    assert r.problems[0] in text
    with pytest.raises(Exception):
        r.ok = True
    again = check_fit(energy, heldout, negatives=negatives, reference=eight_gaussians_log_prob,
                      num_samples=300, num_permutations=PERMS, log_z=0.0)
    assert again.p_value == r.p_value and torch.equal(again.samples, r.samples)  # same seed, same verdict
