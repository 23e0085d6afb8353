"""The main demo (``pyro-ebm demo``), the examples command and the examples gallery."""

import json
import os
import re

import pytest
import torch

from pyro_ebm.cli import list_examples, main
from pyro_ebm.demo import run_demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py") and f[0] != "_")


def test_quick_demo_writes_its_report_and_its_numbers_hold_together(tmp_path, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = run_demo(str(tmp_path / "a"), seed=3, quick=True, progress=False)
        again = run_demo(str(tmp_path / "b"), seed=3, quick=True, progress=False, plots=False)
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert f"results in {os.path.abspath(tmp_path / 'a')}" in out
    for name in ("report.md", "results.json", "demo.png", "trace.png", "rank.png", "energy.png"):
        assert os.path.getsize(tmp_path / "a" / name) > 0, name
    # the same seed gives the same numbers
    numbers = lambda res: {k: v for k, v in res.items() if k not in ("seconds", "report", "figure")}  # noqa: E731
    assert numbers(r) == numbers(again)
    saved = json.load(open(tmp_path / "a" / "results.json"))
    assert saved["log_z"] == r["log_z"] and saved["heldout_nll"] == r["heldout_nll"]
    # AIS within its error bar of quadrature (4 standard errors plus the quadrature's own error)
    lz = r["log_z"]
    assert abs(lz["ais"] - lz["quadrature"]) < 4 * lz["ais_stderr"] + lz["quadrature_error"] + 1e-6
    # the held-out NLLs: the truth is the floor for every model (up to sampling noise of 500 test points)
    nll = r["heldout_nll"]
    assert nll["pyro_mixture_svi"] > nll["true"] - 0.1 and nll["ebm"] > nll["true"] - 0.1
    assert abs(nll["ebm_with_ais_log_z"] - nll["ebm"]) == pytest.approx(abs(lz["ais"] - lz["quadrature"]), abs=1e-4)
    # the report shows the numbers it was given
    text = open(tmp_path / "a" / "report.md").read()
    assert f"{nll['ebm']:.3f}" in text and f"{lz['ais']:.4f}" in text and "demo.png" in text
    neg = r["negatives"]
    assert neg["chains"] == 8 and neg["divergences"] is not None and neg["rhat_energy"] > 0.9
    assert len(r["probes"]) == 5  # ml_fit's five probes over the run


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_demo_device_cuda_without_cuda_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--device", "cuda", "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "--device cpu" in err
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        run_demo(str(tmp_path), device="tpu")


def test_examples_lists_every_script_with_one_line(capsys):
    assert main(["examples"]) == 0
    out = capsys.readouterr().out
    listed = list_examples()
    assert sorted(listed) == EXAMPLES
    for name, line in listed.items():
        assert re.search(rf"^{name}\s+{re.escape(line)}$", out, re.M), name
        assert line and line != "(no description)"


def test_examples_run_passes_the_options_and_the_exit_code(tmp_path, capsys):
    folder = tmp_path / "ex"
    folder.mkdir()
    (folder / "echo.py").write_text(
        '"""Writes its arguments."""\nimport sys\nopen(sys.argv[-1], "w").write(" ".join(sys.argv[1:-1]))\n'
        'sys.exit(3)\n')
    target = tmp_path / "args.txt"
    assert main(["examples", "--dir", str(folder), "run", "echo", "--quick", "--seed", "4", str(target)]) == 3
    assert target.read_text() == "--quick --seed 4"
    assert main(["examples", "--dir", str(folder), "run", "nosuch"]) == 2
    assert "no example named 'nosuch'" in capsys.readouterr().err


def test_every_example_is_in_the_gallery_and_smoke_tested():
    index = open(os.path.join(ROOT, "docs", "examples", "index.rst")).read()
    toctree = re.findall(r"^   (\w+)\s*$", index, re.M)
    tests = "".join(open(os.path.join(ROOT, "tests", f)).read()
                    for f in os.listdir(os.path.join(ROOT, "tests")) if f.startswith("test_examples"))
    for name in EXAMPLES:
        assert os.path.exists(os.path.join(ROOT, "docs", "examples", f"{name}.rst")), f"docs page of {name}"
        assert name in toctree, f"{name} is not in the gallery's toctree"
        assert f'"{name}"' in tests, f"{name} is not run by tests/test_examples*.py"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_demo_reaches_the_truth(seed, tmp_path):
    """The main job as a user runs it, with its defaults: the EBM's held-out NLL within 0.05 nats of the true
    density's, and check_fit calls the fit good (seeds 0-9 measured in docs/demo.rst: gaps 0.014-0.041)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI runs it (--threads 1): two test workers share the cores
    try:
        r = run_demo(out_dir=str(tmp_path), seed=seed, progress=False, plots=False)
    finally:
        torch.set_num_threads(threads)
    nll = r["heldout_nll"]
    assert nll["ebm"] - nll["true"] < 0.05, nll
    assert r["verdict"]["ok"], r["verdict"]["problems"]
    assert "GOOD FIT" in open(r["report"]).read()
