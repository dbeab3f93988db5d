"""Benchmarks of the activations kernels against NumPy (baseline) and PyTorch."""

import pytest

from conftest import case_params


@pytest.mark.parametrize("case,lib", case_params('copy', 'sigmoid', 'tanh', 'gelu', 'softmax'))
def test_activations(benchmark, run_case, case, lib):
    run_case(benchmark, case, lib)
