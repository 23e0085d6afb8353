"""Every figure the library and its example scripts draw is readable by someone who did not write it.

:func:`figure_problems` checks one matplotlib figure: every data panel has an x and a y label (an image of
values also a labelled colorbar), panel titles are distinct, no panel has more than a few lines, legends
sit off the data, labels and ticks stay off the other panels, and each panel gets about 600 x 400 pixels. The library's plotting functions and the
demo's figures are checked on every run; the example scripts (``--quick``) and the quick demo with its
``report.md`` are checked by slow tests (``-m slow``, about two minutes), each figure as it is saved.
"""

import importlib.util
import os
import re
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PathCollection, QuadMesh  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.patches import StepPatch  # noqa: E402

from pyro_ebm import demo  # noqa: E402
from pyro_ebm.diagnostics import plot_energy, plot_negatives, plot_rank, plot_trace, to_arviz  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py") and f[0] != "_")

MAX_LINES = 6  # lines (curves) per panel
MAX_LEGEND_COVER = 0.005  # fraction of a panel's plotted points a legend may hide
PANEL_PX = (600, 400)  # pixels per panel, figure area
MIN_AXES_PX = (280, 180)  # smallest plotting area of one panel
GREYS = ("gray", "gray_r", "binary", "binary_r", "Greys", "Greys_r")  # colormaps of pictures (digits)


# ------------------------------------------------------------------------------------------ the checker


def _is_colorbar(ax):
    return hasattr(ax, "_colorbar")


def _is_picture(ax):
    """A thumbnail (a digit, a scanned check): a grey or RGB image with no ticks on either axis."""
    no_ticks = (not ax.axison) or (len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0)
    images = ax.get_images()
    return no_ticks and bool(images) and all(np.ndim(im.get_array()) == 3 or im.get_cmap().name in GREYS
                                             for im in images)


def _has_data(ax):
    return bool(ax.lines or ax.collections or ax.images or ax.patches)


def _along(xy, n=300):
    """Points along a polyline (display coordinates), so that a legend over a sparse line is seen."""
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) < 2:
        return xy
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
    if s[-1] == 0:
        return xy
    t = np.linspace(0.0, s[-1], n)
    return np.vstack([xy, np.column_stack([np.interp(t, s, xy[:, 0]), np.interp(t, s, xy[:, 1])])])


def _data_points(ax):
    """Display coordinates of what is plotted in ``ax``: line vertices and the path between them, scatter
    points, bars and filled areas (images and filled contours are backgrounds, not points)."""
    pts = []
    for line in ax.get_lines():
        if not line.get_visible():
            continue
        xy = line.get_transform().transform(np.asarray(line.get_xydata(), float))
        pts.append(_along(xy) if line.get_linestyle() not in ("None", "", " ") else xy)
    for coll in ax.collections:
        if isinstance(coll, (ContourSet, QuadMesh)) or not coll.get_visible():
            continue
        offsets = np.asarray(coll.get_offsets(), float)
        if isinstance(coll, PathCollection) and len(offsets):
            pts.append(coll.get_offset_transform().transform(offsets))
        else:
            for path in coll.get_paths():
                pts.append(_along(coll.get_transform().transform(path.vertices)))
    for patch in ax.patches:
        if patch.get_visible():
            pts.append(_along(patch.get_transform().transform(patch.get_path().vertices)))
    if not pts:
        return np.zeros((0, 2))
    pts = np.vstack(pts)
    box = ax.get_window_extent()
    inside = (pts[:, 0] >= box.x0) & (pts[:, 0] <= box.x1) & (pts[:, 1] >= box.y0) & (pts[:, 1] <= box.y1)
    return pts[inside]


def _n_lines(ax):
    """Curves in ``ax``: drawn lines (not marker-only series such as error-bar caps) and step histograms."""
    curves = [line for line in ax.get_lines() if line.get_visible() and len(line.get_xdata()) > 1
              and line.get_linestyle() not in ("None", "", " ")]
    return len(curves) + sum(isinstance(p, StepPatch) for p in ax.patches)


def _value_mappables(ax):
    """Images, meshes, filled contours and colour-mapped scatters: colours that stand for values."""
    out = [im for im in ax.get_images() if np.ndim(im.get_array()) == 2]
    for coll in ax.collections:
        if isinstance(coll, QuadMesh) or (isinstance(coll, ContourSet) and coll.filled):
            out.append(coll)
        elif isinstance(coll, PathCollection) and coll.get_array() is not None:
            out.append(coll)
    return out


def _colorbar_label(cb):
    return (cb.ax.get_ylabel() if cb.orientation == "vertical" else cb.ax.get_xlabel()).strip()


def figure_problems(fig, dpi=None, tight=False):
    """What makes ``fig`` hard to read, as a list of sentences (empty: readable).

    :param dpi: the resolution it is saved at (default: the figure's).
    :param tight: saved with ``bbox_inches="tight"``.
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    dpi = fig.dpi if dpi in (None, "figure") else float(dpi)
    scale = dpi / fig.dpi
    problems = []

    colorbars = [ax._colorbar for ax in fig.axes if _is_colorbar(ax)]
    panels = {}  # axes at one position (a twin axes shares its panel)
    pictures = []
    for ax in fig.axes:
        if not ax.get_visible() or _is_colorbar(ax) or not _has_data(ax):
            continue
        if _is_picture(ax):
            pictures.append(ax)
            continue
        panels.setdefault(tuple(np.round(ax.get_position().bounds, 3)), []).append(ax)

    titles = []
    for group in panels.values():
        title = " ".join(t for ax in group for t in (ax.get_title("left"), ax.get_title(), ax.get_title("right")) if t)
        name = repr(title or group[0].get_label() or "untitled panel")
        if title:
            titles.append(title)
        for ax in group:
            if not ax.xaxis.get_label_text().strip() and not any(
                    o.get_xlabel().strip() for o in ax.get_shared_x_axes().get_siblings(ax)):
                problems.append(f"panel {name} has no x label")
            if not ax.get_ylabel().strip() and not any(
                    o.get_ylabel().strip() for o in ax.get_shared_y_axes().get_siblings(ax)):
                problems.append(f"panel {name} has no y label")
            n = _n_lines(ax)
            if n > MAX_LINES:
                problems.append(f"panel {name} has {n} lines (at most {MAX_LINES})")
            for m in _value_mappables(ax):
                cb = m.colorbar or next((c for c in colorbars if c.cmap.name == m.get_cmap().name
                                         and np.allclose(c.mappable.get_clim(), m.get_clim())), None)
                if cb is None:
                    problems.append(f"panel {name} shows values as colours without a colorbar")
                elif not _colorbar_label(cb):
                    problems.append(f"the colorbar of panel {name} has no label")
        box = group[0].get_window_extent()
        if box.width * scale < MIN_AXES_PX[0] or box.height * scale < MIN_AXES_PX[1]:
            problems.append(f"panel {name} is {box.width * scale:.0f} x {box.height * scale:.0f} px "
                            f"(at least {MIN_AXES_PX[0]} x {MIN_AXES_PX[1]})")
    # the labels, ticks and legend of a panel stay off the other panels and colorbars
    others = [ax for ax in fig.axes if ax.get_visible()]
    for group in list(panels.values()) + [[ax] for ax in pictures]:
        for box in (ax.get_tightbbox(renderer) for ax in group):
            for other in others:
                if other in group:
                    continue
                o = other.get_window_extent(renderer)
                dx = min(box.x1, o.x1) - max(box.x0, o.x0)
                dy = min(box.y1, o.y1) - max(box.y0, o.y0)
                if dx > 3 and dy > 3:
                    name = group[0].get_title() or group[0].get_ylabel() or "a picture"
                    problems.append(f"panel {name!r} overlaps {'a colorbar' if _is_colorbar(other) else 'another panel'}"
                                    f" ({other.get_title() or other.get_ylabel() or other.get_xlabel()!r})")
                    break
    for title in sorted(set(titles)):
        if titles.count(title) > 1:
            problems.append(f"{titles.count(title)} panels are titled {title!r}")

    legends = [(ax.get_legend(), ax) for ax in fig.axes if ax.get_legend() is not None]
    legends += [(leg, None) for leg in fig.legends]
    for legend, owner in legends:
        lbox = legend.get_window_extent(renderer)
        for group in panels.values():
            pts = np.vstack([_data_points(ax) for ax in group])
            if not len(pts):
                continue
            covered = np.mean((pts[:, 0] >= lbox.x0) & (pts[:, 0] <= lbox.x1)
                              & (pts[:, 1] >= lbox.y0) & (pts[:, 1] <= lbox.y1))
            if covered > MAX_LEGEND_COVER:
                where = "a figure legend" if owner is None else f"the legend of {owner.get_title()!r}"
                problems.append(f"{where} covers {covered:.0%} of the points of panel "
                                f"{' '.join(ax.get_title() for ax in group)!r}")

    if tight:
        w, h = fig.get_tightbbox(renderer).size * dpi
    else:
        w, h = fig.get_size_inches() * dpi
    n_panels = len(panels) + bool(pictures)
    need = 0.8 * n_panels * PANEL_PX[0] * PANEL_PX[1]
    if w * h < need or w < 0.9 * PANEL_PX[0] or h < 0.9 * PANEL_PX[1]:
        problems.append(f"{w:.0f} x {h:.0f} px for {n_panels} panel(s) (about {PANEL_PX[0]} x {PANEL_PX[1]} "
                        "px each)")
    return problems


@pytest.fixture
def saved_figures(monkeypatch):
    """Checks each figure as it is saved; yields the list of (file name, problems)."""
    found = []
    save = Figure.savefig

    def checked_save(self, fname, *args, **kwargs):
        problems = figure_problems(self, kwargs.get("dpi"), kwargs.get("bbox_inches") == "tight")
        found.append((os.path.basename(str(fname)), problems))
        return save(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked_save)
    yield found
    plt.close("all")


def _assert_readable(found):
    bad = [f"{name}: {p}" for name, problems in found for p in problems]
    assert not bad, "\n".join(bad)


# ------------------------------------------------------------------------------------------ the checker, checked


def test_checker_flags_an_unreadable_figure():
    fig, axes = plt.subplots(1, 2, figsize=(6, 2.5))
    x = np.linspace(0, 1, 50)
    for k in range(8):
        axes[0].plot(x, x * k, label=f"chain {k}")
    axes[0].legend(loc="center")
    axes[0].set_title("y")
    axes[1].imshow(np.random.default_rng(0).normal(size=(8, 8)), aspect="auto")
    axes[1].set_title("y")
    fig.subplots_adjust(wspace=0.0)  # the tick labels of the image fall on the left panel
    text = "\n".join(figure_problems(fig))
    plt.close(fig)
    for expected in ("no x label", "no y label", "8 lines", "without a colorbar", "2 panels are titled 'y'",
                     "covers", "px for 2 panel", "overlaps another panel"):
        assert expected in text, expected


def test_checker_passes_a_readable_figure():
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained")
    x = np.linspace(0, 1, 50)
    for k in range(3):
        axes[0].plot(x, x * k, label=f"slope {k}")
    axes[0].set(xlabel="x (a.u.)", ylabel="y (a.u.)", title="lines")
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    im = axes[1].imshow(np.random.default_rng(0).normal(size=(8, 8)))
    fig.colorbar(im, ax=axes[1], label="value (a.u.)")
    axes[1].set(xlabel="column", ylabel="row", title="image")
    assert figure_problems(fig) == []
    plt.close(fig)


# ------------------------------------------------------------------------------------------ library figures


def _draws(chains=16, draws=80, divergent=True):
    rng = np.random.default_rng(1)
    stats = {"energy": rng.normal(size=(chains, draws)) + 3.0}
    if divergent:
        stats["diverging"] = rng.random((chains, draws)) < 0.02
    return to_arviz({"y": rng.normal(size=(chains, draws, 2))}, stats)


@pytest.mark.parametrize("plot", [plot_trace, plot_rank, plot_energy])
def test_arviz_plots_are_readable(plot):
    fig = plot(_draws())
    assert figure_problems(fig) == []
    plt.close(fig)


def test_trace_of_a_scalar_without_divergences_is_readable():
    fig = plot_trace({"y": np.random.default_rng(2).normal(size=(3, 60))})
    assert figure_problems(fig) == []
    plt.close(fig)


@pytest.mark.parametrize("with_energy", [False, True])
def test_plot_negatives_is_readable(with_energy):
    g = torch.Generator().manual_seed(0)
    data, negatives = torch.randn(300, 2, generator=g), 1.5 * torch.randn(4, 100, 2, generator=g)
    ax = plot_negatives(data, negatives, energy=(lambda y: 0.5 * (y**2).sum(-1)) if with_energy else None)
    assert figure_problems(ax.figure) == []
    plt.close(ax.figure)


def _history(steps=400):
    rng = np.random.default_rng(3)
    step = list(range(1, steps + 1))
    pos = list(-1.5 + 0.3 * rng.normal(size=steps))
    neg = list(-1.4 + 0.3 * rng.normal(size=steps))
    rhat = [1.0 + 0.02 * rng.random() if s % 80 == 0 else float("nan") for s in step]
    return {"step": step, "loss": [a - b for a, b in zip(pos, neg)], "energy_pos": pos, "energy_neg": neg,
            "diag_rhat_energy": rhat}


def test_demo_figures_are_readable(saved_figures, tmp_path):
    torch.manual_seed(0)
    data = torch.randn(400, 2)
    energy = lambda y: 0.5 * (y**2).sum(-1)  # noqa: E731
    demo._figure(str(tmp_path / "demo.png"), energy, data, 1.2 * torch.randn(300, 2), float(np.log(2 * np.pi)),
                 _history(), dpi=100)
    demo._diagnostic_figures(str(tmp_path), _draws(chains=8, divergent=False))
    assert [name for name, _ in saved_figures] == ["demo.png", "trace.png", "rank.png", "energy.png"]
    _assert_readable(saved_figures)


# ------------------------------------------------------------------------------------------ demo and examples (slow)


def _report_figures_have_captions(text):
    """Each figure of report.md stands alone on its line and is followed by a caption paragraph."""
    lines = text.splitlines()
    figures = [i for i, line in enumerate(lines) if "![" in line]
    assert figures
    for i in figures:
        assert re.fullmatch(r"!\[[^\]]+\]\([^)]+\)", lines[i].strip()), lines[i]
        caption = next(line for line in lines[i + 1:] if line.strip())
        assert "![" not in caption and not caption.startswith("#") and len(caption) > 40, caption


@pytest.mark.slow
def test_quick_demo_figures_and_report_are_readable(saved_figures, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        demo.run_demo(str(tmp_path), seed=3, quick=True, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert len(saved_figures) == 4
    _assert_readable(saved_figures)
    _report_figures_have_captions(open(tmp_path / "report.md").read())


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_figures_are_readable(name, saved_figures, tmp_path):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(ROOT, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # short quick runs: the samplers' probes may complain
            module.main(["--quick", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    assert saved_figures, f"{name} saved no figure"
    _assert_readable(saved_figures)
