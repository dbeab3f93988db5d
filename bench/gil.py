"""The kernels release the GIL: two Python threads, each running a 2048^3
GEMM on one OpenMP thread, against one such GEMM alone. With the GIL held the
pair would take twice as long; released, about as long as one (2 cores).

    python bench/gil.py [--size 2048] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np

import shenjing
from shenjing import ops


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    n = args.size
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    shenjing.set_num_threads(1)
    check = ops.gemm(a[:64], b)
    assert np.allclose(check, a[:64].astype(np.float64) @ b, rtol=1e-3, atol=1e-2), "GEMM gives a wrong result"

    def one():
        ops.gemm(a, b)

    def two():
        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    one()
    alone, pair = [], []
    for _ in range(args.reps):  # alternate, so drift hits both
        start = time.perf_counter()
        one()
        alone.append(time.perf_counter() - start)
        start = time.perf_counter()
        two()
        pair.append(time.perf_counter() - start)
    t1, t2 = statistics.median(alone), statistics.median(pair)
    print(f"one {n}^3 GEMM on one thread: {t1 * 1e3:.0f} ms; two at once from two Python threads: "
          f"{t2 * 1e3:.0f} ms ({t2 / t1:.2f}x one; 2.00x would mean the GIL serialised them)")


if __name__ == "__main__":
    main()
