"""This machine's measured matrix-multiply throughput: the compute limit results are compared to.

Square float32 matmuls (sgemm) through numpy's BLAS and, where installed, torch; the best
sustained rate of a few repeats is the limit. It is measured in the same run as the results,
with the same thread count, so "% of limit" compares like with like on a shared machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MatmulPeak:
    library: str
    n: int
    threads: int
    gflops: float


def _best_rate(matmul, n: int, seconds: float) -> float:
    flops = 2.0 * n**3
    matmul()  # warm-up: thread pools, page faults
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        matmul()
        best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


def numpy_sgemm(n: int, threads: int, seconds: float) -> MatmulPeak | None:
    """None without threadpoolctl (a device install): BLAS could not be held to ``threads``."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        rate = _best_rate(lambda: np.matmul(a, b, out=out), n, seconds)
    return MatmulPeak("numpy", n, threads, round(rate, 2))


def torch_sgemm(n: int, threads: int, seconds: float) -> MatmulPeak | None:
    try:
        import torch
    except ImportError:
        return None
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        with torch.inference_mode():
            rate = _best_rate(lambda: torch.mm(a, b, out=out), n, seconds)
    finally:
        torch.set_num_threads(previous)
    return MatmulPeak("torch", n, threads, round(rate, 2))


def measure(threads: int, sizes: tuple[int, ...] = (256, 512), seconds: float = 1.0) -> list[MatmulPeak]:
    """Every library at every size (each for ``seconds``); the limit is the best of them.

    Sizes stay at or below 512 so each repeat is short: on a shared CPU the best of many short
    repeats is the rate the cores can actually sustain, not what the neighbours left over.
    """
    peaks = []
    for n in sizes:
        for measured in (numpy_sgemm, torch_sgemm):
            peak = measured(n, threads, seconds / len(sizes))
            if peak is not None:
                peaks.append(peak)
    return peaks


def limit_gflops(peaks: list[MatmulPeak]) -> float | None:
    """The best sgemm rate, None where no library could be measured (ORT's kernels still are)."""
    return max((p.gflops for p in peaks), default=None)
