"""Benchmarks of the optim kernels against NumPy (baseline) and PyTorch."""

import pytest

from conftest import case_params


@pytest.mark.parametrize("case,lib", case_params('adam_step'))
def test_optim(benchmark, run_case, case, lib):
    run_case(benchmark, case, lib)
