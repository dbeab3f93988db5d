"""``python -m shenjing``: what the C++ core runs on, and a quick check."""

from __future__ import annotations

import time

import numpy as np

import shenjing
from shenjing import _reference, ops


def main() -> None:
    info = shenjing.backend_info()
    print(f"shenjing {info['version']}")
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"  {key:<{width}}  {value}")

    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 1000)).astype(np.float32)
    y = rng.integers(0, 1000, size=256)
    start = time.perf_counter()
    loss = ops.cross_entropy(x, y)
    elapsed = time.perf_counter() - start
    expected = _reference.cross_entropy(x.astype(np.float64), y)
    print(f"\ncross_entropy on (256, 1000) logits: {float(loss):.6f} "
          f"(float64 reference {float(expected):.6f}) in {elapsed * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
