r"""Is the *model* right? A verdict on a trained energy, independent of the sampler that trained it.

Training diagnostics (:class:`pyro_ebm.ml.SamplerDiagnostics`) ask whether the negatives of training came
from :math:`p_\theta = e^{-F_\theta}/Z_\theta`. :func:`check_fit` asks the other question: does
:math:`p_\theta` describe held-out data? It draws fresh samples of the model by a route that owes
nothing to training -- exact draws from a quadrature grid for ``y`` with one or two entries, new
tempered HMC chains from a broad start otherwise -- and compares

* the model samples with the held-out data (a kernel two-sample test, :func:`mmd_test`);
* optionally the training negatives (e.g. a persistent replay buffer) with the model samples: if they
  differ, the sampler of training did not sample the model, whatever the model is;
* the held-out negative log-likelihood :math:`\overline{F(y)} + \log Z` with that of a reference density
  (the truth of a toy data set, or a probabilistic baseline).

The two-sample statistic is the unbiased :math:`\mathrm{MMD}^2` (Gretton et al. 2012) with a weighted
sum of Gaussian kernels whose widths are the median pairwise distance of the pooled sample times
``1, 1/2, 1/4, 1/8, 1/16``; its p-value comes from permutations of the pooled sample, so it is exact
under the null whatever the kernel.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ._rng import check_seed, make_generator
from ._validation import check_positive_int, check_real
from .energy import Energy, as_energy, call_energy, check_energy_output
from .mcmc import sample
from .partition import LogPartition, log_partition
from .partition.quadrature import _DEFAULT_POINTS, _gauss_legendre

__all__ = ["check_fit", "FitCheck", "mmd_test"]

_F64 = torch.float64

#: kernel widths of :func:`mmd_test`, as multiples of the median pairwise distance
MMD_SCALES = (1.0, 0.5, 0.25, 0.125, 0.0625)

#: points per side that :func:`mmd_test` keeps (a random subsample beyond this)
MMD_MAX_POINTS = 1000

#: the outer band of the quadrature box (fraction of its width per side) and the largest share of the
#: grid's mass allowed there before the energy is called not normalizable on the box
BAND_WIDTH = 0.1
BAND_MASS = 1e-3

#: Gauss-Legendre nodes per panel of the grid (as in :func:`pyro_ebm.partition.log_partition`)
_ORDER = 8

#: times the default box is doubled about its centre when too much mass sits in its outer band
_MAX_WIDENINGS = 2


# ---------------------------------------------------------------------------------------------------
# the two-sample test
# ---------------------------------------------------------------------------------------------------


def _as_points(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a tensor [n, *event_shape], got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if value.dim() < 1:
        raise ValueError(f"{name} must have shape [n, *event_shape], got a 0-dim tensor")
    return value


def _check_rows_finite(value: torch.Tensor, name: str) -> None:
    bad = ~torch.isfinite(value.reshape(value.shape[0], -1)).all(-1)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{name} must be finite, but {int(bad.sum())} of its {value.shape[0]} rows are not "
            f"(first: row {row}, {value[row].tolist()})"
        )


def _subsample(z: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    if z.shape[0] <= k:
        return z
    idx = torch.randperm(z.shape[0], generator=gen)[:k]
    return z[idx]


def _median_distance(d2: torch.Tensor) -> float:
    n = d2.shape[0]
    iu = torch.triu_indices(n, n, 1)
    dist = d2[iu[0], iu[1]].clamp_min(0).sqrt()
    h = float(dist.median())
    if h > 0:
        return h
    positive = dist[dist > 0]  # over half the pairs coincide (discrete data): their mean spacing
    return float(positive.mean()) if positive.numel() else 0.0


def mmd_test(
    x: torch.Tensor,
    y: torch.Tensor,
    num_permutations: int = 500,
    seed=0,
    *,
    max_points: int = MMD_MAX_POINTS,
    scales: Sequence[float] = MMD_SCALES,
) -> Tuple[float, float]:
    r"""Kernel two-sample test: do ``x`` and ``y`` come from the same distribution?

    :param x: ``[n, *event_shape]`` (``n >= 2``).
    :param y: ``[m, *event_shape]`` (``m >= 2``), the same ``event_shape``.
    :param num_permutations: ``P``, random relabellings of the pooled sample.
    :param seed: int, ``torch.Generator`` or ``None``: the subsample and the permutations.
    :param max_points: each side is cut to a random subsample of at most this many points (the cost is
        ``P (n + m)^2``).
    :param scales: kernel widths as multiples of the median heuristic bandwidth.
    :returns: ``(statistic, p_value)``, floats.

    With events flattened to vectors and pooled as :math:`z = (x_1..x_n, y_1..y_m)`, the bandwidth
    :math:`h` is the median of the pairwise distances :math:`|z_i - z_j|`, ``i < j`` (the median
    heuristic), the kernel :math:`k(a, b) = \sum_s w_s \exp(-|a - b|^2 / (2 (s h)^2))` over the
    ``scales`` with weights :math:`w_s \propto s^{-2}` summing to 1 (``scales=(1,)`` is the plain
    median-heuristic Gaussian kernel), and the statistic the unbiased

    .. math:: \mathrm{MMD}^2 = \frac{\sum_{i \ne j} k(x_i, x_j)}{n(n-1)}
              + \frac{\sum_{i \ne j} k(y_i, y_j)}{m(m-1)} - \frac{2 \sum_{i,j} k(x_i, y_j)}{nm},

    whose expectation is zero exactly when the two distributions agree (it can come out negative). The
    p-value is :math:`(1 + \#\{\text{permutations with statistic} \ge \text{observed}\}) / (1 + P)`,
    every permutation splitting the pooled points into groups of ``n`` and ``m``: under the null it is
    uniform on the grid ``1/(1+P), 2/(1+P), ...`` (exactly, up to ties). All in float64; the ``P``
    statistics are quadratic forms of one kernel matrix, computed as one matrix product.

    Several widths, not the median alone: on multimodal data the median distance spans the modes, and a
    kernel that wide cannot tell eight Gaussian blobs on a circle from a ring through them (p about 0.8
    at 1000 points a side); the narrower widths can (p = 1/(1+P)). The weights favour the narrow
    widths, whose kernel values are small: with equal weights, blobs of standard deviation 0.35 instead
    of 0.2 were found in 4 of 10 samples of 500 a side, with :math:`w_s \propto s^{-2}` in 10 of 10.

    Example::

        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> a, b = torch.randn(300, 2, generator=g), torch.randn(300, 2, generator=g)
        >>> stat, p = mmd_test(a, b, num_permutations=200, seed=0)
        >>> p > 0.01
        True
        >>> stat, p = mmd_test(a, b + 1.0, num_permutations=200, seed=0)
        >>> p                                                  # the smallest possible, 1 / 201
        0.004975124378109453
    """
    x = _as_points(x, "x")
    y = _as_points(y, "y")
    if tuple(x.shape[1:]) != tuple(y.shape[1:]):
        raise ValueError(
            f"x and y must have the same event shape, got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"x and y need at least 2 points each, got {x.shape[0]} and {y.shape[0]}")
    num_permutations = check_positive_int(num_permutations, "num_permutations")
    max_points = check_positive_int(max_points, "max_points", minimum=2)
    try:
        scales = [float(s) for s in scales]
    except (TypeError, ValueError):
        raise TypeError(f"scales must be a sequence of positive numbers, got {scales!r}") from None
    if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales!r}")
    check_seed(seed)
    _check_rows_finite(x.detach(), "x")
    _check_rows_finite(y.detach(), "y")
    gen = make_generator(seed)
    with torch.no_grad():
        xs = _subsample(x.detach().cpu().to(_F64).reshape(x.shape[0], -1), max_points, gen)
        ys = _subsample(y.detach().cpu().to(_F64).reshape(y.shape[0], -1), max_points, gen)
        n, m = xs.shape[0], ys.shape[0]
        z = torch.cat([xs, ys])
        total = n + m
        sq = (z * z).sum(-1)
        d2 = (sq[:, None] + sq[None, :] - 2.0 * z @ z.T).clamp_min(0)
        d2.fill_diagonal_(0)
        h = _median_distance(d2)
        if h == 0.0:  # every point is the same point: nothing tells the samples apart
            return 0.0, 1.0
        kern = torch.zeros_like(d2)
        last_scale, last = None, None
        norm = sum(s**-2 for s in scales)
        for s in sorted(scales, reverse=True):
            if last_scale is not None and last_scale == 2.0 * s:
                last = last * last  # halving the width raises the Gaussian to the 4th power
                last *= last
            else:
                last = torch.exp(-d2 / (2.0 * (s * h) ** 2))
            last_scale = s
            kern.add_(last, alpha=s**-2 / norm)
        kern.fill_diagonal_(0)
        # row 0: the observed split; rows 1..P: random splits. a = indicator of the "x" group, b = 1 - a:
        # a'Ka, b'Kb = 1'K1 - 2 a'K1 + a'Ka and a'Kb = a'K1 - a'Ka (K with a zero diagonal)
        perm = torch.argsort(torch.rand(num_permutations, total, generator=gen), -1)
        a = torch.zeros(num_permutations + 1, total, dtype=_F64)
        a[0, :n] = 1.0
        a[1:].scatter_(1, perm[:, :n], 1.0)
        row = kern.sum(0)
        a_k_1 = a @ row
        a_k_a = ((a @ kern) * a).sum(-1)
        b_k_b = row.sum() - 2.0 * a_k_1 + a_k_a
        a_k_b = a_k_1 - a_k_a
        stats = a_k_a / (n * (n - 1)) + b_k_b / (m * (m - 1)) - 2.0 * a_k_b / (n * m)
    observed = float(stats[0])
    # a relative tolerance so that a permutation that reproduces the observed split counts as a tie
    tol = 1e-12 * max(abs(observed), 1e-300)
    exceed = int((stats[1:] >= stats[0] - tol).sum())
    return observed, (1 + exceed) / (1 + num_permutations)


# ---------------------------------------------------------------------------------------------------
# the verdict
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitCheck:
    """What :func:`check_fit` found.

    :ivar ok: no problem found.
    :ivar problems: one plain sentence per problem, with its numbers.
    :ivar mmd: :math:`\\mathrm{MMD}^2` between the model samples and the held-out data.
    :ivar p_value: its permutation p-value.
    :ivar negatives_mmd: :math:`\\mathrm{MMD}^2` between the negatives and the model samples (``None``
        without ``negatives``).
    :ivar negatives_p_value: its p-value (``None`` without ``negatives``).
    :ivar heldout_nll: :math:`\\overline{F(y)} + \\log Z` over the held-out data, nats per example.
    :ivar log_z: the :math:`\\log Z` used.
    :ivar log_z_stderr: its error (``None`` for a plain number passed as ``log_z``).
    :ivar reference_nll: :math:`-\\overline{\\log p_{ref}(y)}` (``None`` without ``reference``).
    :ivar nll_gap: ``heldout_nll - reference_nll`` (``None`` without ``reference``).
    :ivar samples: the model samples ``[num_samples, *event_shape]`` (float64).
    :ivar alpha: the family-wise level asked for.
    :ivar alpha_per_test: the level of each permutation test, ``alpha / (number of tests)``.
    :ivar nll_tolerance: the largest ``nll_gap`` accepted.
    :ivar log_z_method: ``"quadrature"``, ``"smc"`` or ``"given"``.
    :ivar sampler: how the model samples were drawn (``"grid"`` or ``"hmc"``).
    :ivar bounds: the quadrature box ``(low, high)`` (lists), ``None`` with more than 2 entries.
    """

    ok: bool
    problems: List[str]
    mmd: float
    p_value: float
    negatives_mmd: Optional[float]
    negatives_p_value: Optional[float]
    heldout_nll: float
    log_z: float
    log_z_stderr: Optional[float]
    reference_nll: Optional[float]
    nll_gap: Optional[float]
    samples: torch.Tensor = field(repr=False)
    alpha: float = 0.01
    alpha_per_test: float = 0.01
    nll_tolerance: float = 0.05
    log_z_method: str = ""
    sampler: str = ""
    bounds: Optional[Tuple[List[float], List[float]]] = None

    def summary(self) -> str:
        """A few lines for a report: the verdict, the two-sample tests, the NLL and the problems."""
        lines = [f"check_fit: {'ok' if self.ok else 'NOT OK'} "
                 f"({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}; "
                 f"level {self.alpha:g}, {self.alpha_per_test:g} per test)"]
        lines.append(f"  model samples ({self.sampler}, {self.samples.shape[0]}) vs held-out data: "
                     f"MMD^2 {self.mmd:.3g}, p = {self.p_value:.3g}")
        if self.negatives_p_value is not None:
            lines.append(f"  training negatives vs model samples: MMD^2 {self.negatives_mmd:.3g}, "
                         f"p = {self.negatives_p_value:.3g}")
        err = f" +- {self.log_z_stderr:.2g}" if self.log_z_stderr is not None else ""
        tidy = lambda v: round(v, 4) + 0.0  # noqa: E731  (no "-0.0000")
        lines.append(f"  held-out NLL {self.heldout_nll:.4f} nats (log Z {tidy(self.log_z):.4f}{err}, "
                     f"{self.log_z_method})")
        if self.reference_nll is not None:
            lines.append(f"  reference NLL {self.reference_nll:.4f}, gap {tidy(self.nll_gap):+.4f} nats "
                         f"(tolerance {self.nll_tolerance:g})")
        lines.extend(f"  - {p}" for p in self.problems)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _energy_for(energy, heldout: torch.Tensor) -> Energy:
    event = tuple(heldout.shape[1:])
    if isinstance(energy, Energy):
        if energy.has_latent:
            raise TypeError(
                "energy has a latent variable z: pass its free energy over z (pyro_ebm.free_energy) instead"
            )
        if tuple(energy.event_shape) != event:
            raise ValueError(
                f"heldout must have shape [N, *event_shape] = [N, {', '.join(map(str, energy.event_shape))}] "
                f"for this energy, got {tuple(heldout.shape)}"
            )
        return energy
    if not callable(energy):
        raise TypeError(f"energy must be an Energy or a callable F(y) -> [N], got {type(energy).__name__}")
    return as_energy(energy, event_shape=event)


def _float64_energy(energy: Energy, probe: torch.Tensor):
    """``(energy', dtype, device)``: a float64 deep copy when the energy has floating tensors of its own
    (else the energy itself), checked on ``probe``; the energy in its own dtype when it cannot compute in
    float64. ``device``: where its tensors live (else ``probe``'s)."""
    tensors = list(energy.parameters()) + list(energy.buffers())
    floating = [t for t in tensors if t.is_floating_point()]
    own = floating[0].dtype if floating else probe.dtype
    device = tensors[0].device if tensors else probe.device
    candidate = energy
    if floating and any(t.dtype != _F64 for t in floating):
        try:
            candidate = copy.deepcopy(energy).to(_F64)
        except Exception:  # an energy that cannot be copied is used as it is
            candidate = energy
    try:
        with torch.no_grad():
            call_energy(candidate, probe.to(device=device, dtype=_F64))
        return candidate, _F64, device
    except TypeError:
        return energy, own, device


def _energies(energy: Energy, y: torch.Tensor, dtype, device, name: str, chunk: int = 65536) -> torch.Tensor:
    """``F(y)`` as a float64 CPU tensor (chunks of ``chunk`` points on ``device``, no gradients), checked
    for shape."""
    out = []
    with torch.no_grad():
        for part in y.split(chunk):
            f = call_energy(energy, part.to(device=device, dtype=dtype), names=(name, "x"))
            check_energy_output(f, part.shape[:1], name=energy._label(), check_finite_values=False)
            out.append(f.detach().to(device="cpu", dtype=_F64))
    return torch.cat(out)


def _first_invalid(f: torch.Tensor) -> Tuple[int, int]:
    """``(index of the first, number of)`` energies that are NaN or ``-inf`` (``+inf`` is zero density)."""
    bad = torch.isnan(f) | torch.isneginf(f)
    count = int(bad.sum())
    return (int(bad.nonzero()[0, 0]) if count else -1), count


def _parse_bounds(bounds, d: int):
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise TypeError(f"bounds must be a pair (low, high), got {bounds!r}")
    parts = []
    for which, b in zip(("low", "high"), bounds):
        if isinstance(b, torch.Tensor):
            b = b.detach().cpu().numpy()
        try:
            arr = np.asarray(b, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise TypeError(f"bounds {which} must be a number or {d} numbers, got {b!r}") from None
        if arr.size == 1 and d > 1:
            arr = np.repeat(arr, d)
        if arr.size != d:
            raise ValueError(f"bounds {which} must give one bound per entry of y ({d}), got {arr.size}")
        if not np.isfinite(arr).all():
            raise ValueError(f"bounds {which} must be finite, got {arr.tolist()}")
        parts.append(torch.from_numpy(arr))
    low, high = parts
    if not bool((high > low).all()):
        raise ValueError(f"bounds must have high > low in every entry, got low={low.tolist()}, high={high.tolist()}")
    return low, high


def _cells(low: float, high: float, n: int):
    """The composite Gauss-Legendre nodes of :func:`log_partition`'s fine rule on ``[low, high]`` and the
    cells around them: each panel is cut at the midpoints between its nodes."""
    nodes, _ = _gauss_legendre(low, high, n, _ORDER)
    panels = nodes.reshape(-1, _ORDER)
    edges = torch.linspace(low, high, panels.shape[0] + 1, dtype=_F64)
    mids = 0.5 * (panels[:, 1:] + panels[:, :-1])
    left = torch.cat([edges[:-1, None], mids], -1).reshape(-1)
    right = torch.cat([mids, edges[1:, None]], -1).reshape(-1)
    return nodes, left, right


class _Grid:
    """``exp(-F)`` on the quadrature grid of a box: cell masses, the outer-band share, exact draws."""

    def __init__(self, energy: Energy, dtype, device, low: torch.Tensor, high: torch.Tensor, n: int):
        d = low.numel()
        self.low, self.high = low, high
        axes = [_cells(float(low[i]), float(high[i]), n) for i in range(d)]

        def mesh(k):  # every combination of the per-axis nodes (k = 0), left (1) or right (2) cell edges
            return torch.stack(torch.meshgrid(*[a[k] for a in axes], indexing="ij"), -1).reshape(-1, d)

        self.nodes, self.left, self.right = mesh(0), mesh(1), mesh(2)
        y = self.nodes.reshape((-1,) + tuple(energy.event_shape))
        f = _energies(energy, y, dtype, device, "y")
        i, count = _first_invalid(f)
        if count:
            raise ValueError(
                f"the energy does not look normalizable on the box low={low.tolist()}, high={high.tolist()}: "
                f"F is {f[i].item()} at y = {self.nodes[i].tolist()} ({count} grid points); a "
                "normalizable energy is finite (or +inf) everywhere"
            )
        self.log_mass = -f + (self.right - self.left).log().sum(-1)
        total = torch.logsumexp(self.log_mass, 0)
        if not bool(torch.isfinite(total)):
            raise ValueError(
                f"the energy does not look normalizable on the box low={low.tolist()}, high={high.tolist()}: "
                f"exp(-F) sums to {'0' if total.item() < 0 else 'inf'} on the quadrature grid"
            )
        width = high - low
        band = ((self.nodes < low + BAND_WIDTH * width) | (self.nodes > high - BAND_WIDTH * width)).any(-1)
        self.band_fraction = float(torch.exp(torch.logsumexp(self.log_mass[band], 0) - total)) if band.any() else 0.0

    def sample(self, k: int, gen: torch.Generator) -> torch.Tensor:
        prob = torch.exp(self.log_mass - self.log_mass.max())
        cell = torch.multinomial(prob, k, replacement=True, generator=gen)
        u = torch.rand(k, self.nodes.shape[1], generator=gen, dtype=_F64)
        return self.left[cell] + u * (self.right[cell] - self.left[cell])


def _mcmc_samples(energy: Energy, dtype, device, heldout: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """``k`` draws of ``exp(-F)`` from fresh tempered HMC chains started uniformly in mean +- 3 std."""
    gen = make_generator(seed)
    flat = heldout.to(device="cpu", dtype=_F64).reshape(heldout.shape[0], -1)
    mean, std = flat.mean(0), flat.std(0).clamp_min(1e-6)
    chains = min(k, 100)
    per_chain = -(-k // chains)
    thin = 5
    u = torch.rand(chains, flat.shape[1], generator=gen, dtype=_F64)
    init = (mean + 3.0 * std * (2.0 * u - 1.0)).reshape((chains,) + tuple(heldout.shape[1:]))
    init = init.to(device=device, dtype=dtype)
    s = sample(energy, init, num_warmup=200, num_samples=per_chain * thin, kernel="hmc", tempering=4,
               seed=int(torch.randint(0, 2**62, (1,), generator=gen)), progress=False)
    draws = s.draws[:, thin - 1 :: thin]  # [chains, per_chain, *event]
    draws = draws.transpose(0, 1).reshape((-1,) + tuple(heldout.shape[1:]))  # interleave the chains
    return draws[:k].detach().to(device="cpu", dtype=_F64)


def _reference_log_prob(reference, heldout: torch.Tensor) -> torch.Tensor:
    fn = getattr(reference, "log_prob", None)
    if not callable(fn):
        fn = reference if callable(reference) else None
    if fn is None:
        raise TypeError(
            f"reference must be a callable log_prob(y) -> [N] or have a .log_prob method (e.g. a "
            f"distribution), got {type(reference).__name__}"
        )
    with torch.no_grad():
        try:
            out = fn(heldout.to(_F64))
        except (TypeError, RuntimeError):
            out = fn(heldout)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (heldout.shape[0],):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"reference must give one log density per held-out row, shape ({heldout.shape[0]},), got {shape} "
            "(a distribution over vectors needs its event dimensions, e.g. .to_event(1))"
        )
    out = out.detach().to(device="cpu", dtype=_F64)
    if bool(torch.isnan(out).any()):
        raise ValueError(f"reference log_prob is NaN on heldout row {int(torch.isnan(out).nonzero()[0, 0])}")
    return out


def _alpha(alpha) -> float:
    alpha = check_real(alpha, "alpha")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return alpha


def check_fit(
    energy,
    heldout: torch.Tensor,
    *,
    negatives: Optional[torch.Tensor] = None,
    reference=None,
    log_z=None,
    bounds=None,
    num_samples: int = 2000,
    alpha: float = 0.01,
    nll_tolerance: float = 0.05,
    seed=0,
    num_permutations: int = 500,
) -> FitCheck:
    r"""A verdict on a trained energy: do its own samples and its likelihood agree with held-out data?

    :param energy: an :class:`~pyro_ebm.Energy` (``F(y)``, ``[N, *event_shape] -> [N]``) or a callable,
        whose event shape is then ``heldout.shape[1:]``.
    :param heldout: ``[N, *event_shape]`` held-out data, ``N >= 20``, finite.
    :param negatives: optional ``[M, *event_shape]`` (``M >= 2``), e.g. the replay buffer of persistent
        training: tested against the model samples.
    :param reference: optional ``log_prob(y) -> [N]`` (a callable, or any object with a ``.log_prob``
        method, such as a torch or Pyro distribution): the density to compare the held-out NLL with.
    :param log_z: ``log Z`` to use instead of estimating it (a float or a :class:`LogPartition`).
    :param bounds: ``(low, high)`` box of the quadrature for ``y`` with 1 or 2 entries (numbers or one per
        entry). By default the held-out range per coordinate widened by half the range on each side.
    :param num_samples: model samples to draw (``>= 20``).
    :param alpha: family-wise level of the two-sample tests, in ``(0, 1)``.
    :param nll_tolerance: the held-out NLL may exceed the reference's by this many nats (``>= 0``).
    :param seed: int, ``torch.Generator`` or ``None``; the same seed gives the same verdict.
    :param num_permutations: permutations per two-sample test; enough that ``1 / (1 + P)`` is below the
        level of each test.
    :returns: :class:`FitCheck`; ``print`` it for a summary. The energy is evaluated where its tensors
        live (CPU or GPU); the samples are returned on the CPU.

    **Model samples**, drawn without anything from training:

    * ``y`` with 1 or 2 entries: ``F`` is evaluated on the nodes of the fine rule of
      :func:`~pyro_ebm.partition.log_partition` (``method="quadrature"``, 1024 Gauss-Legendre nodes in
      1-D, ``256^2`` in 2-D) over the box; each node owns a cell (its panel cut at the midpoints between
      nodes) of area :math:`A_i`. A draw picks cell :math:`i` with probability proportional to
      :math:`e^{-F_i} A_i` and a uniform point in it: an exact draw of the piecewise constant density
      that the grid resolves.
    * more entries: 100 fresh HMC chains with 4 tempered replicas (:func:`pyro_ebm.mcmc.sample`),
      started uniformly in heldout mean :math:`\pm` 3 std, 200 warmup iterations, then every 5th draw.

    **Tests.** :math:`\mathrm{MMD}^2` between model samples and held-out data, and between negatives and
    model samples, by :func:`mmd_test` (at most 1000 points a side). With both tests each is run at
    ``alpha / 2`` (Bonferroni), so a correct model with exact negatives is flagged with probability at
    most ``alpha``.

    **Held-out NLL** (nats per example, float64 on a float64 deep copy of the energy):
    :math:`\mathrm{NLL} = \frac1N \sum_n F(y_n) + \log Z`, with :math:`\log Z` by quadrature on the box
    (1 or 2 entries) or by tempered SMC (``method="smc"``, base ``Normal(mean, 2 std)`` of the held-out
    data) otherwise. With ``reference``, :math:`\mathrm{NLL}_{ref} = -\frac1N \sum_n \log p_{ref}(y_n)`
    and the gap :math:`\mathrm{NLL} - \mathrm{NLL}_{ref}`.

    **Verdict**: not ok when the model samples differ from the held-out data (``p < alpha_per_test``),
    when the negatives differ from the model samples, when the gap exceeds ``nll_tolerance`` plus twice
    the error of :math:`\log Z` (nothing for quadrature, a few hundredths of a nat for SMC; a gap within
    the estimator's own error is not evidence against the model), or when the model gives a held-out
    point zero density.

    **Not normalizable**: with 1 or 2 entries, a ``ValueError`` when ``F`` is NaN or ``-inf`` on the
    grid, or when more than ``1e-3`` of the grid's mass lies in the outer 10% of the box on any side
    (after the default box has been doubled twice about its centre; a box given as ``bounds`` is used
    as it is). With more entries nothing checks it (tempered SMC and MCMC assume a density).

    Example::

        >>> import torch
        >>> import pyro.distributions as dist
        >>> from pyro_ebm import as_energy
        >>> from pyro_ebm.fit_check import check_fit
        >>> data = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))     # N(0, I) data
        >>> normal = dist.Normal(0.0, 1.0).expand([2]).to_event(1)      # the truth, as a reference
        >>> F = as_energy(lambda y: 0.5 * (y ** 2).sum(-1), event_shape=(2,))
        >>> report = check_fit(F, data, reference=normal, num_samples=500, num_permutations=200)
        >>> report.ok, round(report.log_z, 4), abs(report.nll_gap) < 1e-6     # log Z = log(2 pi)
        (True, 1.8379, True)
        >>> report.samples.shape
        torch.Size([500, 2])
        >>> shifted = as_energy(lambda y: 0.5 * ((y - 1) ** 2).sum(-1), event_shape=(2,))
        >>> bad = check_fit(shifted, data, reference=normal, num_samples=500, num_permutations=200)
        >>> bad.ok, len(bad.problems), bad.problems[0].startswith("model samples differ from the held-out")
        (False, 2, True)
    """
    heldout = _as_points(heldout, "heldout")
    energy = _energy_for(energy, heldout)
    n_held = heldout.shape[0]
    if n_held < 20:
        raise ValueError(f"heldout needs at least 20 rows (a two-sample test on fewer says little), got {n_held}")
    heldout = heldout.detach()
    _check_rows_finite(heldout, "heldout")
    event = tuple(energy.event_shape)
    d = int(math.prod(event))
    if d == 0:
        raise ValueError("heldout must have at least one entry per row (event_shape of size 0)")
    if negatives is not None:
        negatives = _as_points(negatives, "negatives").detach()
        if tuple(negatives.shape[1:]) != event:
            raise ValueError(
                f"negatives must have shape [M, *event_shape] = [M, {', '.join(map(str, event))}] (the event "
                f"shape of the energy and of heldout), got {tuple(negatives.shape)}"
            )
        if negatives.shape[0] < 2:
            raise ValueError(f"negatives needs at least 2 rows, got {negatives.shape[0]}")
        _check_rows_finite(negatives, "negatives")
    if reference is not None and not callable(getattr(reference, "log_prob", None)) and not callable(reference):
        raise TypeError(
            "reference must be a callable log_prob(y) -> [N] or have a .log_prob method, got "
            f"{type(reference).__name__}"
        )
    num_samples = check_positive_int(num_samples, "num_samples", minimum=20)
    alpha = _alpha(alpha)
    nll_tolerance = check_real(nll_tolerance, "nll_tolerance", minimum=0.0)
    num_permutations = check_positive_int(num_permutations, "num_permutations")
    check_seed(seed)
    num_tests = 1 if negatives is None else 2
    alpha_each = alpha / num_tests
    if 1.0 / (1 + num_permutations) >= alpha_each:
        raise ValueError(
            f"num_permutations={num_permutations} is too few: the smallest p-value, 1/(1 + num_permutations) "
            f"= {1.0 / (1 + num_permutations):.3g}, must be below the level of each test, {alpha_each:g}; "
            f"use at least {math.floor(1.0 / alpha_each)}"
        )
    given_log_z, given_stderr = None, None
    if log_z is not None:
        if isinstance(log_z, LogPartition):
            given_log_z, given_stderr = float(log_z.value), float(log_z.stderr)
        elif isinstance(log_z, torch.Tensor) and log_z.numel() == 1:
            given_log_z = float(log_z)
        else:
            given_log_z = check_real(log_z, "log_z")
        if not math.isfinite(given_log_z):
            raise ValueError(f"log_z must be finite, got {given_log_z}")
    if bounds is not None and d > 2:
        raise ValueError(
            f"bounds sets the quadrature box, used for y with 1 or 2 entries; this energy's y has {d}"
        )
    user_box = _parse_bounds(bounds, d) if bounds is not None else None

    gen = make_generator(seed)
    next_seed = lambda: int(torch.randint(0, 2**62, (1,), generator=gen))  # noqa: E731
    energy64, dtype, device = _float64_energy(energy, heldout[:2])

    # F on the held-out data
    f_held = _energies(energy64, heldout, dtype, device, "heldout")
    i, count = _first_invalid(f_held)
    if count:
        raise ValueError(
            f"the energy is {f_held[i].item()} on heldout row {i} ({count} rows): an energy must be "
            "finite (or +inf for zero density)"
        )
    log_p = _reference_log_prob(reference, heldout) if reference is not None else None

    box = None
    if d <= 2:
        n_nodes = 2 * _ORDER * max(1, -(-_DEFAULT_POINTS[d] // _ORDER))  # log_partition's fine rule
        if user_box is not None:
            low, high = user_box
            grid = _Grid(energy64, dtype, device, low, high, n_nodes)
            widenings = 0
        else:
            flat = heldout.to(device="cpu", dtype=_F64).reshape(n_held, d)
            lo, hi = flat.min(0).values, flat.max(0).values
            span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
            low, high = lo - 0.5 * span, hi + 0.5 * span
            for widenings in range(_MAX_WIDENINGS + 1):
                grid = _Grid(energy64, dtype, device, low, high, n_nodes)
                if grid.band_fraction <= BAND_MASS or widenings == _MAX_WIDENINGS:
                    break
                centre, half = 0.5 * (low + high), high - low
                low, high = centre - half, centre + half
        if grid.band_fraction > BAND_MASS:
            widened = f" (the default box widened {widenings} times)" if widenings else ""
            raise ValueError(
                f"the energy does not look normalizable on the box low={low.tolist()}, high={high.tolist()}"
                f"{widened}: a fraction {grid.band_fraction:.3g} of exp(-F)'s mass on the quadrature grid "
                f"lies in the outer {BAND_WIDTH:.0%} band of the box (more than {BAND_MASS:g}); if it is "
                "normalizable, pass wider bounds=(low, high)"
            )
        box = (low.tolist(), high.tolist())
        samples = grid.sample(num_samples, gen).reshape((num_samples,) + event)
        sampler = "grid"
        if given_log_z is None:
            est = log_partition(energy64, method="quadrature", low=low, high=high, dtype=dtype)
    else:
        samples = _mcmc_samples(energy64, dtype, device, heldout, num_samples, next_seed())
        sampler = "hmc"
        if given_log_z is None:
            flat = heldout.to(device="cpu", dtype=_F64).reshape(n_held, d)
            loc = flat.mean(0).reshape(event).to(device=device, dtype=dtype)
            scale = (2.0 * flat.std(0).clamp_min(1e-6)).reshape(event).to(device=device, dtype=dtype)
            est = log_partition(energy64, method="smc", loc=loc, scale=scale, seed=next_seed(), dtype=dtype)
    if given_log_z is None:
        value, stderr, method = float(est.value), float(est.stderr), est.method
    else:
        value, stderr, method = given_log_z, given_stderr, "given"

    heldout_nll = float(f_held.mean()) + value
    mmd, p_value = mmd_test(samples, heldout, num_permutations, next_seed())
    neg_mmd = neg_p = None
    if negatives is not None:
        neg_mmd, neg_p = mmd_test(negatives, samples, num_permutations, next_seed())
    reference_nll = gap = None
    if reference is not None:
        reference_nll = float(-log_p.mean())
        gap = heldout_nll - reference_nll

    problems = []
    if p_value < alpha_each:
        problems.append(
            f"model samples differ from the held-out data: MMD^2 {mmd:.3g}, p = {p_value:.3g} < {alpha_each:g}"
        )
    if neg_p is not None and neg_p < alpha_each:
        problems.append(
            f"the training negatives differ from the model's own samples: MMD^2 {neg_mmd:.3g}, "
            f"p = {neg_p:.3g} < {alpha_each:g} (the sampler of training did not sample this model)"
        )
    zero = int(torch.isposinf(f_held).sum())
    if zero:
        problems.append(f"the model gives zero density (F = +inf) to {zero} of the {n_held} held-out rows")
    slack = 2.0 * stderr if stderr is not None else 0.0
    if gap is not None and gap > nll_tolerance + slack:
        extra = f" + 2 x the log Z error {stderr:.2g}" if slack > 1e-3 * max(nll_tolerance, 1e-12) else ""
        problems.append(
            f"held-out NLL {heldout_nll:.4g} is {gap:.3g} nats above the reference's {reference_nll:.4g} "
            f"(tolerance {nll_tolerance:g}{extra})"
        )
    return FitCheck(
        ok=not problems, problems=problems, mmd=mmd, p_value=p_value, negatives_mmd=neg_mmd,
        negatives_p_value=neg_p, heldout_nll=heldout_nll, log_z=value, log_z_stderr=stderr,
        reference_nll=reference_nll, nll_gap=gap, samples=samples, alpha=alpha, alpha_per_test=alpha_each,
        nll_tolerance=nll_tolerance, log_z_method=method, sampler=sampler, bounds=box,
    )
