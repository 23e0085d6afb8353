import math

import pytest
import torch

from pyro_ebm import datasets
from pyro_ebm.cli import main


def test_datasets_are_deterministic_and_shaped():
    for fn in [datasets.eight_gaussians, datasets.two_moons, datasets.rings, datasets.checkerboard]:
        a, b = fn(300, seed=4), fn(300, seed=4)
        assert a.shape == (300, 2) and torch.equal(a, b)
        assert not torch.equal(a, fn(300, seed=5))
    x, y = datasets.multimodal_regression(500, noise=0.0, seed=1)
    assert x.shape == y.shape == (500, 1)
    assert torch.allclose(y.abs(), x.sqrt())  # both branches, nothing else
    assert 0.4 < (y > 0).float().mean() < 0.6
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        datasets.two_moons(0)


def test_eight_gaussians_log_prob_normalizes():
    # independent check by quadrature on a fine grid
    g = torch.linspace(-4, 4, 801, dtype=torch.float64)
    yy = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1)
    p = datasets.eight_gaussians_log_prob(yy).exp()
    h = (g[1] - g[0]).item()
    assert math.isclose(p.sum().item() * h * h, 1.0, rel_tol=1e-4)
    # the samples have the density's second moment: radius^2 + 2 std^2
    s = datasets.eight_gaussians(20000, seed=0)
    assert math.isclose((s**2).sum(-1).mean().item(), 4.0 + 2 * 0.04, rel_tol=0.02)


def test_checkerboard_only_dark_squares():
    s = datasets.checkerboard(5000, seed=2)
    i = torch.floor(s[:, 0] + 2).long()
    j = torch.floor(s[:, 1] + 2).long()
    assert ((i + j) % 2 == 0).all()


def test_tour_runs_and_its_numbers_are_right(tmp_path, capsys):
    from pyro_ebm.cli import tour

    res = tour(out_dir=str(tmp_path), seed=0, quick=True)
    out = capsys.readouterr().out
    assert "found by" in out and (tmp_path / "tour.png").exists()
    assert len(res["minima"].values) == 2
    # mode weight within 4 Monte Carlo standard errors of quadrature
    assert abs(res["frac_right"] - res["exact_right"]) < 4 * res["frac_right_se"] + 1e-9
    # free energy rises to the zero-temperature min as beta grows
    f = [res[f"free_energy_beta_{b}"] for b in [1.0, 10.0, 100.0, math.inf]]
    assert f == sorted(f)


def test_cli_entry_point(tmp_path):
    with pytest.raises(SystemExit):
        main(["--help"])
    with pytest.raises(SystemExit):
        main(["nonsense"])


def test_run_example_limits_and_restores_threads():
    from pyro_ebm.cli import example_parser, run_example

    before = torch.get_num_threads()
    p = example_parser("An example.\n\nMore text.")
    p.add_argument("--extra", type=int, default=3)
    res = run_example(lambda a: {"threads": torch.get_num_threads(), "extra": a.extra, "quick": a.quick},
                      p, ["--quick", "--threads", "1", "--extra", "5"])
    assert res == {"threads": 1, "extra": 5, "quick": True}
    assert torch.get_num_threads() == before
    with pytest.raises(SystemExit):
        run_example(lambda a: None, p, ["--seed", "not-a-number"])
