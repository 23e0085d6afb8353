"""Checkpoint files: a digest that catches any damaged byte, writers that never collide, and resumes that
either restore everything or change nothing."""

from __future__ import annotations

import copy
import multiprocessing
import os

import pytest
import torch

from pyro_ebm import Energy, losses
from pyro_ebm._checkpoint import _RECORD_LEN, _decode, _encode, _write_atomic, read_checkpoint, save_checkpoint
from pyro_ebm.negatives import PersistentNegatives
from pyro_ebm.train import DataOrder, History, fit, load_checkpoint


class MLP(Energy):
    def __init__(self, hidden=6):
        super().__init__(event_shape=(2,))
        self.net = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, 1))

    def forward(self, y, x=None):
        return self.net(y).squeeze(-1)


class Counter:
    """A callback with state: counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, step, history):
        self.calls += 1
        return False

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = int(state["calls"])


DATA = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
KW = dict(loss=losses.ml_sampled, batch_size=8, lr=1e-2, progress=False)


def _setup(hidden=6, buffer_size=8):
    torch.manual_seed(0)
    energy = MLP(hidden)
    negatives = PersistentNegatives(buffer_size=buffer_size, steps=2, step_size=0.05, seed=1)
    return energy, negatives


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A small real checkpoint of fit (2 steps; energy, Adam state, replay buffer, callback state)."""
    path = str(tmp_path_factory.mktemp("ckpt") / "good.pt")
    energy, negatives = _setup()
    fit(energy, DATA, negatives=negatives, steps=2, seed=3, checkpoint=path, callbacks=[Counter()], **KW)
    return path


def _fresh_objects():
    energy, negatives = _setup()
    optimizer = torch.optim.Adam(energy.parameters(), lr=1e-2)
    return dict(energy=energy, optimizer=optimizer, negatives=negatives, order=DataOrder(32, 8, seed=0),
                history=History(), callbacks=[Counter()])


# ---------------------------------------------------------------------------------------------- integrity


def test_the_file_reads_back_and_stays_a_torch_file(good):
    state = read_checkpoint(good)
    assert state["step"] == 2 and state["callbacks"] == [{"calls": 2}]
    assert torch.load(good, weights_only=True)["step"] == 2  # torch.load ignores the trailing record
    with open(good, "rb") as f:
        assert f.read()[-_RECORD_LEN:].startswith(b"\nPYRO_EBM_CHECKPOINT 1 sha256:")


def _flip(data: bytes, i: int, mask: int) -> bytes:
    damaged = bytearray(data)
    damaged[i] ^= mask
    return bytes(damaged)


def _assert_refused(call, path):
    with pytest.raises(ValueError) as info:
        call()
    msg = str(info.value)
    assert path in msg and ("corrupt" in msg or "not a pyro_ebm checkpoint" in msg), msg


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF], ids=["low-bit", "high-bit", "all-bits"])
def test_every_single_byte_flip_is_detected(good, mask):
    """Every byte position of the whole file (archive, magic, version, digest, final newline), flipped, is
    refused by the decoder that read_checkpoint runs on the file's bytes."""
    with open(good, "rb") as f:
        original = f.read()
    assert 1000 < len(original) < 100_000
    undetected = []
    for i in range(len(original)):
        try:
            _decode(_flip(original, i, mask), good, "resume")
        except ValueError as exc:
            msg = str(exc)
            assert good in msg and ("corrupt" in msg or "not a pyro_ebm checkpoint" in msg), (i, msg)
        else:
            undetected.append(i)
    assert undetected == [], f"{len(undetected)} of {len(original)} flips were not detected"


def test_flipped_files_are_refused_by_resume_and_change_nothing(good, tmp_path):
    """Through the file: every 50th byte and all of the integrity record, by load_checkpoint and fit."""
    with open(good, "rb") as f:
        original = f.read()
    n = len(original)
    positions = sorted(set(range(0, n, 50)) | set(range(n - _RECORD_LEN, n)))
    path = str(tmp_path / "flipped.pt")
    objects = _fresh_objects()
    before = {k: v.clone() for k, v in objects["energy"].state_dict().items()}
    for i in positions:
        with open(path, "wb") as f:
            f.write(_flip(original, i, 0x01))
        _assert_refused(lambda: load_checkpoint(path, **objects), path)
    _assert_refused(lambda: fit(objects["energy"], DATA, negatives=objects["negatives"], steps=4,
                                resume=path, **KW), path)
    for k, v in objects["energy"].state_dict().items():
        assert torch.equal(v, before[k])


def test_files_without_the_record_and_truncated_files_are_refused(good, tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save(read_checkpoint(good), plain)  # the same contents, written by torch.save alone
    with pytest.raises(ValueError, match=r"plain\.pt.*not a pyro_ebm checkpoint"):
        read_checkpoint(plain)
    with open(good, "rb") as f:
        data = f.read()
    for n in (0, 10, len(data) // 2, len(data) - 1):
        cut = tmp_path / f"cut{n}.pt"
        cut.write_bytes(data[:n])
        with pytest.raises(ValueError, match=rf"cut{n}\.pt.*corrupt"):
            read_checkpoint(cut)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_checkpoint(tmp_path / "missing.pt")


# ---------------------------------------------------------------------------------------------- writers


def _writer(path, worker, barrier, errors):
    """Write ``path`` 20 times (steps worker*100 + i), reading it back after every write."""
    try:
        torch.manual_seed(worker)
        energy = torch.nn.Linear(64, 64)  # ~17 kB of parameters: writes that take a moment
        optimizer = torch.optim.SGD(energy.parameters(), lr=0.1)
        order, history = DataOrder(16, 4, seed=worker), History()
        barrier.wait()
        for i in range(20):
            save_checkpoint(path, step=worker * 100 + i, energy=energy, optimizer=optimizer, negatives=None,
                            order=order, history=history)
            assert read_checkpoint(path)["step"] in {j * 100 + k for j in range(2) for k in range(20)}
    except BaseException as exc:  # report it to the parent, which asserts there is none
        errors.put(f"worker {worker}: {type(exc).__name__}: {exc}")
        raise


def test_two_processes_writing_one_path_never_collide(tmp_path):
    # fork where there is one (quick: no fresh interpreter importing torch), else spawn
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    path = str(tmp_path / "shared.pt")
    barrier, errors = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(path, w, barrier, errors)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == [] and [p.exitcode for p in procs] == [0, 0], found
    state = read_checkpoint(path)
    assert state["step"] in (19, 119)  # the last write of one of them, complete
    energy = torch.nn.Linear(64, 64)
    load_checkpoint(path, energy=energy, optimizer=torch.optim.SGD(energy.parameters(), lr=0.1), negatives=None,
                    order=DataOrder(16, 4, seed=0), history=History())
    assert os.listdir(tmp_path) == ["shared.pt"]  # no temporary file left behind


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = str(tmp_path / "c.pt")
    objects = _fresh_objects()
    del objects["callbacks"]

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, step=1, **objects)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------- resumes


def _rewrite(good, path, change):
    """A checkpoint with a correct digest whose contents ``change`` alters (written the way fit writes)."""
    state = read_checkpoint(good)
    change(state)
    _write_atomic(path, _encode(state))


def _other_architecture(state):
    state["energy"] = MLP(hidden=5).state_dict()


def _nan_parameter(state):
    w = state["energy"]["net.0.weight"].clone()
    w[0, 0] = float("nan")
    state["energy"]["net.0.weight"] = w


def _buffer_of_other_states(state):
    state["negatives"]["buffer"] = torch.zeros(8, 3)


def _buffer_of_other_size(state):
    state["negatives"]["buffer"] = torch.zeros(5, 2)


def _data_order_of_other_data(state):
    state["data_order"]["perm"] = torch.arange(40)


def _snapshot(energy, optimizer, negatives, callback):
    return {
        "energy": {k: v.clone() for k, v in energy.state_dict().items()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "negatives": copy.deepcopy(negatives.state_dict()),
        "callback": callback.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }


def _assert_identical(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_identical(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_identical(x, y)
    else:
        assert a == b


@pytest.mark.parametrize(
    "change, message",
    [
        (_other_architecture, r"another architecture.*net\.0\.weight \(5, 2\) saved, \(6, 2\) here"),
        (_nan_parameter, r"NaN or infinite values .*net\.0\.weight"),
        (_buffer_of_other_states, r"replay buffer holds states of shape \(3,\).*event_shape is \(2,\)"),
        (_buffer_of_other_size, r"negatives.*5 entries, but buffer_size is 8"),
        (_data_order_of_other_data, r"data order.*n=32"),
    ],
    ids=["architecture", "nan", "buffer-event-shape", "buffer-size", "data-size"],
)
def test_a_failed_resume_changes_nothing(good, tmp_path, change, message):
    bad = str(tmp_path / "bad.pt")
    _rewrite(good, bad, change)
    energy, negatives = _setup()
    optimizer = torch.optim.Adam(energy.parameters(), lr=1e-2)
    callback = Counter()
    # train a little first: Adam state, live replay chains, a callback that has counted
    fit(energy, DATA, negatives=negatives, optimizer=optimizer, steps=3, seed=5, callbacks=[callback], **KW)
    torch.manual_seed(1234)
    before = _snapshot(energy, optimizer, negatives, callback)
    with pytest.raises(ValueError, match=message) as info:
        fit(energy, DATA, negatives=negatives, optimizer=optimizer, steps=6, seed=None, callbacks=[callback],
            resume=bad, **KW)
    assert "bad.pt" in str(info.value) and "nothing was restored" in str(info.value)
    _assert_identical(before, _snapshot(energy, optimizer, negatives, callback))


def test_the_good_checkpoint_resumes_into_the_same_objects(good):
    """The same objects that refused a bad checkpoint take a good one (the step counter and the state)."""
    objects = _fresh_objects()
    assert load_checkpoint(good, **objects) == 2
    state = read_checkpoint(good)
    for k, v in objects["energy"].state_dict().items():
        assert torch.equal(v, state["energy"][k])
    assert objects["callbacks"][0].calls == 2
    assert torch.equal(torch.get_rng_state(), state["torch_rng"])


def test_a_data_parallel_checkpoint_restores_each_ranks_own_state(tmp_path):
    from pyro_ebm._checkpoint import _rank_state

    path = str(tmp_path / "ddp.pt")
    objects = _fresh_objects()
    fit(objects["energy"], DATA, negatives=objects["negatives"], optimizer=objects["optimizer"], steps=2,
        seed=3, **KW)
    ranks = []
    for r in range(2):
        torch.manual_seed(100 + r)
        ranks.append(copy.deepcopy(_rank_state(objects["negatives"], objects["callbacks"])))
    save_checkpoint(path, step=2, ranks=ranks, **objects)
    for r in range(2):
        fresh = _fresh_objects()
        torch.manual_seed(7)
        assert load_checkpoint(path, rank=r, **fresh) == 2
        assert torch.equal(torch.get_rng_state(), ranks[r]["torch_rng"])
        assert torch.equal(fresh["negatives"].state_dict()["buffer"], ranks[r]["negatives"]["buffer"])
    fresh = _fresh_objects()  # a rank the checkpoint has no entry for keeps its chains and random state
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    load_checkpoint(path, rank=2, **fresh)
    assert torch.equal(torch.get_rng_state(), rng) and fresh["negatives"].state_dict()["buffer"] is None
