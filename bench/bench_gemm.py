"""Benchmarks of the gemm kernels against NumPy (baseline) and PyTorch."""

import pytest

from conftest import case_params


@pytest.mark.parametrize("case,lib", case_params('sgemm'))
def test_gemm(benchmark, run_case, case, lib):
    run_case(benchmark, case, lib)
