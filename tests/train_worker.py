"""Training runs for tests/test_distributed.py, launched as separate processes (one per rank).

``python tests/train_worker.py OUT_DIR RANK WORLD`` imports the library once, then runs every scenario
in a forked child process, so that a scenario can be killed with SIGKILL while the launcher survives
(the parent uses one torch thread, so no thread pool is inherited by the children). Each finished run saves its parameters and history to
``OUT_DIR/<name>.rank<R>.pt``; ``OUT_DIR/status.rank<R>.txt`` lists how each child ended.

Scenarios (N = STEPS steps, checkpoints every CKPT_EVERY steps, a kill right after step KILL_AT):

* ``fit_full``, ``fit_killed``, ``fit_resumed`` -- :func:`pyro_ebm.train.fit`, one process (rank 0);
* ``ml_full``, ``ml_killed``, ``ml_resumed`` -- :func:`pyro_ebm.ml.ml_fit`, one process (rank 1 runs
  them, in parallel with rank 0's);
* ``ddp_fit`` -- fit on WORLD processes (gloo), for the equivalence with one process;
* ``ddp_ml_full``, ``ddp_ml_killed``, ``ddp_ml_resumed`` -- ml_fit on WORLD processes, killed and resumed;
* ``ddp_ml_resumed_on_one`` -- the DDP checkpoint resumed by one process (rank 0 alone).
"""

import os
import signal
import sys
import time
import traceback

STEPS, CKPT_EVERY, KILL_AT, BATCH = 12, 3, 8, 32


def build(rank=0):
    """Data and a small float64 energy, the same in every process."""
    import torch

    from pyro_ebm import Energy
    from pyro_ebm.datasets import eight_gaussians

    class Small(Energy):
        def __init__(self):
            super().__init__(event_shape=(2,))
            self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

        def forward(self, y, x=None):
            return self.net(y).squeeze(-1) + 0.05 * (y**2).sum(-1)

    torch.manual_seed(0)
    energy = Small().double()
    data = eight_gaussians(256, seed=0).double()
    return energy, data


def negatives(seed):
    from pyro_ebm.negatives import PersistentNegatives

    return PersistentNegatives(buffer_size=64, kernel="hmc", steps=2, step_size=0.1, n_leapfrog=3, seed=seed)


def killer(kill_at):
    def callback(step, history):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return False

    return callback


def run_fit(rank, checkpoint, resume=None, kill_at=None, neg=None):
    from pyro_ebm import losses
    from pyro_ebm.train import fit

    energy, data = build()
    history = fit(energy, data, losses.ml_sampled, negatives(rank) if neg is None else neg, steps=STEPS, batch_size=BATCH, lr=0.01,
                  seed=0, checkpoint=checkpoint, checkpoint_every=CKPT_EVERY, resume=resume,
                  callbacks=[killer(kill_at)] if kill_at and rank == 0 else [], progress=False)
    return energy, history


def run_ml(rank, checkpoint, resume=None, kill_at=None):
    from pyro_ebm.ml import ml_fit

    energy, data = build()
    run = ml_fit(energy, data, sampler="persistent",
                 sampler_options=dict(buffer_size=64, steps=2, step_size=0.1, n_leapfrog=3),
                 diagnose_every=4, diagnostics_options=dict(num_chains=4, num_draws=8, warn=False),
                 steps=STEPS, batch_size=BATCH, lr=0.01, seed=0, checkpoint=checkpoint,
                 checkpoint_every=CKPT_EVERY, resume=resume,
                 callbacks=[killer(kill_at)] if kill_at and rank == 0 else [], progress=False)
    return energy, run.history


def child(out, name, rank, world, fn, **kw):
    """Run ``fn`` in a forked child (in a process group of ``world`` when > 1); returns how it ended."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            import datetime

            import torch

            torch.set_num_threads(1)
            if world > 1:
                torch.distributed.init_process_group(
                    "gloo", init_method="file://" + os.path.join(out, f"{name}.group"), rank=rank,
                    world_size=world, timeout=datetime.timedelta(seconds=60))
            energy, history = fn(rank if world > 1 else 0, **kw)
            torch.save({"params": {k: v.detach().clone() for k, v in energy.state_dict().items()},
                        "steps": history["step"], "loss": history["loss"]},
                       os.path.join(out, f"{name}.rank{rank}.pt"))
            if world > 1:
                torch.distributed.destroy_process_group()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"


def main(out, rank, world):
    import torch

    # one thread, set before any tensor work, so that no thread pool exists when the children are forked;
    # one warm-up run of each kind here, so that the children start with torch's lazy set-up done
    torch.set_num_threads(1)
    run_fit(0, checkpoint=os.path.join(out, f"warmup.rank{rank}.ckpt"))
    run_ml(0, checkpoint=os.path.join(out, f"warmup.rank{rank}.ckpt"))

    ck = lambda name: os.path.join(out, f"{name}.ckpt")  # noqa: E731
    jobs = []
    if rank == 0:
        jobs += [("fit_full", 1, run_fit, dict(checkpoint=ck("fit_full"))),
                 ("fit_killed", 1, run_fit, dict(checkpoint=ck("fit"), kill_at=KILL_AT)),
                 ("fit_resumed", 1, run_fit, dict(checkpoint=ck("fit"), resume=ck("fit")))]
    else:
        jobs += [("ml_full", 1, run_ml, dict(checkpoint=ck("ml_full"))),
                 ("ml_killed", 1, run_ml, dict(checkpoint=ck("ml"), kill_at=KILL_AT)),
                 ("ml_resumed", 1, run_ml, dict(checkpoint=ck("ml"), resume=ck("ml")))]
    jobs += [("ddp_fit", world, run_fit, dict(checkpoint=ck("ddp_fit"))),
             ("ddp_ml_full", world, run_ml, dict(checkpoint=ck("ddp_ml_full"))),
             ("ddp_ml_killed", world, run_ml, dict(checkpoint=ck("ddp_ml"), kill_at=KILL_AT)),
             ("ddp_ml_resumed", world, run_ml, dict(checkpoint=ck("ddp_ml_2"), resume=ck("ddp_ml")))]
    if rank == 0:
        jobs.append(("ddp_ml_resumed_on_one", 1, run_ml, dict(checkpoint=ck("ddp_ml_1"), resume=ck("ddp_ml"))))
    lines = []
    for name, size, fn, kw in jobs:
        t0 = time.time()
        how = child(out, name, rank, size, fn, **kw)
        lines.append(f"{name} {how} {time.time() - t0:.1f}")
    with open(os.path.join(out, f"status.rank{rank}.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
