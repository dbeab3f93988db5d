"""Benchmarks of convolution and pooling against the NumPy reference (baseline) and PyTorch."""

import pytest

from conftest import case_params


@pytest.mark.parametrize("case,lib", case_params("conv2d", "max_pool2d", "avg_pool2d"))
def test_conv(benchmark, run_case, case, lib):
    run_case(benchmark, case, lib)
