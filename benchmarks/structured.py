"""Benchmark of :mod:`pyro_ebm.structured` against pytorch-crf and tslearn, side by side in one run.

* **Chain (linear-chain CRF)**: batch 64, length 256, 32 labels, float32. This library: the negative
  log-likelihood ``E(y) - F_1`` (``chain_energy - chain_free_energy``) + backward, then ``viterbi``.
  pytorch-crf: its log-likelihood ``CRF.forward`` + backward, then ``CRF.decode``. Same potentials (scores
  = minus energies); the run first checks that both give the same log-likelihood and the same paths.
* **soft-DTW**: 64 pairs of sequences of length 128 (8 features), ``gamma = 1`` (``beta = 1``), float32,
  forward + backward. This library: ``soft_dtw(squared_distances(x, y))``; tslearn:
  ``SoftDTWLossPyTorch(gamma)(x, y)``. Also the soft-DTW alone on a given 128 x 128 cost matrix (tslearn
  with ``dist_func`` returning the matrix), which leaves the distance computation out.

Every timing is the median of ``--repeats`` runs after one warm-up call (tslearn compiles its kernels with
numba on first use; that first call is reported separately). ``ratio = this library / competitor``: below
1 means faster. torch and numba both use ``--threads`` threads.

Run: ``python benchmarks/structured.py [--threads 1] [--repeats 7] [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

warnings.filterwarnings("ignore")


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def chain_benchmark(B, T, K, repeats):
    import torch
    import torchcrf

    from pyro_ebm.structured import chain_energy, chain_free_energy, viterbi

    g = torch.Generator().manual_seed(0)
    unary = torch.randn(B, T, K, generator=g).requires_grad_(True)
    pairwise = torch.randn(K, K, generator=g).requires_grad_(True)
    initial, final = torch.randn(K, generator=g).requires_grad_(True), torch.randn(K, generator=g).requires_grad_(True)
    tags = torch.randint(0, K, (B, T), generator=g)
    crf = torchcrf.CRF(K, batch_first=True)
    with torch.no_grad():
        crf.transitions.copy_(-pairwise)
        crf.start_transitions.copy_(-initial)
        crf.end_transitions.copy_(-final)
    emissions = (-unary).detach().requires_grad_(True)

    # same numbers first
    with torch.no_grad():
        ll_ours = -(chain_energy(tags, unary, pairwise, initial, final) - chain_free_energy(unary, pairwise, 1.0, initial, final))
        ll_crf = crf(emissions, tags, reduction="none")
        paths = viterbi(unary, pairwise, initial, final)[1]
        same_paths = paths.tolist() == crf.decode(emissions)
    max_dll = float((ll_ours - ll_crf).abs().max())
    print(f"[chain] max |log-likelihood difference| = {max_dll:.2e} (float32), Viterbi paths equal: {same_paths}")

    def ours_nll():
        nll = chain_energy(tags, unary, pairwise, initial, final) - chain_free_energy(unary, pairwise, 1.0, initial, final)
        nll.sum().backward()

    def ours_viterbi():
        viterbi(unary.detach(), pairwise.detach(), initial.detach(), final.detach())

    def crf_nll():
        (-crf(emissions, tags)).backward()

    def crf_decode():
        with torch.no_grad():
            crf.decode(emissions)

    rows = []
    t_on, t_cn = timed(ours_nll, repeats), timed(crf_nll, repeats)
    t_ov, t_cv = timed(ours_viterbi, repeats), timed(crf_decode, repeats)
    rows.append(("chain NLL + backward", t_on, "pytorch-crf", t_cn))
    rows.append(("chain Viterbi", t_ov, "pytorch-crf decode", t_cv))
    rows.append(("chain NLL + backward + Viterbi", t_on + t_ov, "pytorch-crf", t_cn + t_cv))
    return rows, dict(max_loglik_diff=max_dll, same_paths=same_paths)


def dtw_benchmark(B, N, D, repeats):
    import torch
    from tslearn.metrics import SoftDTWLossPyTorch

    from pyro_ebm.structured import soft_dtw, squared_distances

    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, N, D, generator=g).requires_grad_(True)
    y = torch.randn(B, N, D, generator=g)
    cost = squared_distances(x, y).detach().requires_grad_(True)
    loss_seq = SoftDTWLossPyTorch(gamma=1.0)
    loss_cost = SoftDTWLossPyTorch(gamma=1.0, dist_func=lambda a, b: a)

    t0 = time.perf_counter()
    loss_seq(x, y).sum().backward()
    loss_cost(cost, cost).sum().backward()
    first_call = time.perf_counter() - t0
    with torch.no_grad():
        v_ours = soft_dtw(cost, 1.0)
        c = cost.detach().clone()
        v_ts = loss_cost(c, c)
    rel = float(((v_ours - v_ts).abs() / v_ts.abs()).max())
    print(f"[soft-DTW] max relative difference of values = {rel:.2e} (float32); tslearn's first call "
          f"(numba compilation) took {first_call:.1f} s")

    def ours_seq():
        soft_dtw(squared_distances(x, y), 1.0).sum().backward()

    def ts_seq():
        loss_seq(x, y).sum().backward()

    def ours_cost():
        soft_dtw(cost, 1.0).sum().backward()

    def ts_cost():
        loss_cost(cost, cost).sum().backward()

    rows = [
        ("soft-DTW loss from sequences, fwd + bwd", timed(ours_seq, repeats), "tslearn SoftDTWLossPyTorch",
         timed(ts_seq, repeats)),
        ("soft-DTW on a cost matrix, fwd + bwd", timed(ours_cost, repeats), "tslearn SoftDTWLossPyTorch",
         timed(ts_cost, repeats)),
    ]
    return rows, dict(max_rel_diff=rel, tslearn_first_call_s=first_call)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and numba threads (default 1)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--skip-chain", action="store_true")
    parser.add_argument("--skip-dtw", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    try:
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover
        pass
    chain_size = (8, 32, 8) if args.quick else (64, 256, 32)
    dtw_size = (8, 32, 8) if args.quick else (64, 128, 8)
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {args.threads} thread(s), median of {args.repeats}")
    rows, info = [], {}
    if not args.skip_chain:
        r, i = chain_benchmark(*chain_size, args.repeats)
        rows += r
        info["chain"] = i
    if not args.skip_dtw:
        r, i = dtw_benchmark(*dtw_size, args.repeats)
        rows += r
        info["dtw"] = i
    print(f"# chain: B, T, K = {chain_size}; soft-DTW: B, N = M, features = {dtw_size}")
    print("| task | pyro_ebm (ms) | competitor | competitor (ms) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for task, ours, name, theirs in rows:
        print(f"| {task} | {ours * 1e3:.1f} | {name} | {theirs * 1e3:.1f} | {ours / theirs:.2f} x |")
    info["rows"] = rows
    return info


if __name__ == "__main__":
    main()
