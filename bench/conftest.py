"""pytest-benchmark cases: ``python -m pytest bench``.

One group per kernel, the NumPy version first in each group as the baseline,
every result checked against shenjing._reference before it is timed, and the
rate (GB/s or GFLOP/s) in extra_info. All libraries share this process, so
thread pools are told not to spin after their work (BENCHMARKING.md, point
4): OMP_WAIT_POLICY=PASSIVE for shenjing's and PyTorch's OpenMP and
OPENBLAS_THREAD_TIMEOUT=4 for NumPy's OpenBLAS. bench/report.py, which runs
each library in its own process, is the reference for speed claims.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import cases as C  # noqa: E402

LIBRARIES = ["numpy", "shenjing", "shenjing_out", "torch"]


def case_params(*prefixes):
    """pytest params (case, library) for the cases whose name starts with a prefix."""
    return [pytest.param(c, lib, id=f"{c.name}-{lib}") for c in C.all_cases() if c.name.startswith(prefixes)
            for lib in LIBRARIES if lib in c.runners]


@pytest.fixture
def run_case():
    """run_case(benchmark, case, lib): check the library's result, then time it."""

    def run(benchmark, case, lib):
        if lib == "torch" and C._torch() is None:
            pytest.skip("PyTorch is not installed")
        data = case.make(np.random.default_rng(12345))
        fn = case.runners[lib](data)
        problem = C.check(case, data, fn())
        assert problem is None, f"{lib} gives a wrong result for {case.name}: {problem}"
        benchmark.group = case.name
        benchmark.extra_info["baseline"] = lib == "numpy"
        benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)
        benchmark.extra_info["rate"] = f"{case.work / benchmark.stats.stats.median / 1e9:.1f} {case.unit}"

    return run
