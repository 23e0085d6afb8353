"""Data-parallel training and surviving SIGKILL: fit and ml_fit on 2 gloo processes, killed and resumed.

One launch of ``tests/train_worker.py`` per rank (2 processes) runs every scenario in forked children (see
that file); the tests compare the saved parameters and histories.
"""

import os
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train_worker as w  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()) or not hasattr(os, "fork"),
    reason="needs torch.distributed with gloo and os.fork",
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ddp"))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "train_worker.py"), out, str(r), "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for r in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    status = {}
    for r in range(2):
        with open(os.path.join(out, f"status.rank{r}.txt")) as f:
            status[r] = dict(line.split(" ", 1) for line in f.read().splitlines())

    def load(name, rank=0):
        path = os.path.join(out, f"{name}.rank{rank}.pt")
        assert os.path.exists(path), f"{name} on rank {rank} did not finish: {status}\n" + "\n".join(logs)
        return torch.load(path, weights_only=True)

    return out, status, load


def assert_same_run(a, b):
    assert a["steps"] == b["steps"] == list(range(1, w.STEPS + 1))  # no step lost, none repeated
    assert a["loss"] == b["loss"]
    for k in a["params"]:
        assert torch.equal(a["params"][k], b["params"][k]), k


@pytest.mark.parametrize("kind", ["fit", "ml"])
def test_sigkill_then_resume_continues_bit_for_bit(runs, kind):
    out, status, load = runs
    rank = 0 if kind == "fit" else 1  # the launcher that ran this single-process scenario
    assert status[rank][f"{kind}_killed"].startswith("signal 9")
    assert status[rank][f"{kind}_resumed"].startswith("exit 0")
    ckpt = torch.load(os.path.join(out, f"{kind}.ckpt"), weights_only=True)
    assert ckpt["step"] == w.STEPS  # the resumed run wrote the last checkpoint
    assert_same_run(load(f"{kind}_resumed", rank), load(f"{kind}_full", rank))


def test_sigkill_under_ddp_then_resume_continues_bit_for_bit(runs):
    out, status, load = runs
    assert status[0]["ddp_ml_killed"].startswith("signal 9")
    assert not status[1]["ddp_ml_killed"].startswith("exit 0")  # its peer died: it stopped with an error
    killed = torch.load(os.path.join(out, "ddp_ml.ckpt"), weights_only=True)
    last = (w.KILL_AT - 1) // w.CKPT_EVERY * w.CKPT_EVERY
    assert killed["step"] == last and len(killed["ranks"]) == 2
    b0, b1 = (killed["ranks"][r]["negatives"]["buffer"] for r in range(2))
    assert b0.shape == b1.shape and not torch.equal(b0, b1)  # each rank keeps chains of its own
    for rank in range(2):
        assert_same_run(load("ddp_ml_resumed", rank), load("ddp_ml_full", rank))


def test_ddp_checkpoint_resumes_on_one_process(runs):
    _, status, load = runs
    one, full = load("ddp_ml_resumed_on_one"), load("ddp_ml_full")
    last = (w.KILL_AT - 1) // w.CKPT_EVERY * w.CKPT_EVERY
    assert one["steps"] == list(range(1, w.STEPS + 1))
    assert one["loss"][:last] == full["loss"][:last]  # the history up to the checkpoint is the DDP run's
    assert all(torch.isfinite(v).all() for v in one["params"].values())


class SplitNegatives:
    """One process drawing each half of the global batch's negatives from its own generator, as 2 ranks do."""

    def __init__(self, generators):
        self.generators = generators

    def __call__(self, energy, y, x=None):
        parts = y.chunk(len(self.generators))
        return torch.cat([g(energy, part, None) for g, part in zip(self.generators, parts)], dim=1)


def test_two_gloo_processes_equal_one_process_on_the_global_batch(runs, tmp_path):
    _, status, load = runs
    r0, r1 = load("ddp_fit", 0), load("ddp_fit", 1)
    for k in r0["params"]:
        assert torch.equal(r0["params"][k], r1["params"][k])  # the ranks stay in step
    energy, history = w.run_fit(0, checkpoint=str(tmp_path / "one.ckpt"),
                                neg=SplitNegatives([w.negatives(0), w.negatives(1)]))
    init, _ = w.build()
    assert r0["steps"] == history["step"]
    assert torch.allclose(torch.tensor(r0["loss"]), torch.tensor(history["loss"]), rtol=1e-9, atol=1e-12)
    for k, v in energy.state_dict().items():
        assert torch.allclose(r0["params"][k], v, rtol=1e-9, atol=1e-12), k
    # training moved the weights (the last bias gets no gradient from F(data) - F(negatives))
    moved = max((v - init.state_dict()[k]).abs().max() for k, v in energy.state_dict().items())
    assert moved > 1e-2
    # the same run with one generator for the whole batch is a different run: the shards matter
    energy_one, _ = w.run_fit(0, checkpoint=str(tmp_path / "one_gen.ckpt"))
    assert any(not torch.allclose(r0["params"][k], v, rtol=1e-6) for k, v in energy_one.state_dict().items())
