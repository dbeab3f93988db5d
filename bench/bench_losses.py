"""Benchmarks of the losses kernels against NumPy (baseline) and PyTorch."""

import pytest

from conftest import case_params


@pytest.mark.parametrize("case,lib", case_params('cross_entropy'))
def test_losses(benchmark, run_case, case, lib):
    run_case(benchmark, case, lib)
